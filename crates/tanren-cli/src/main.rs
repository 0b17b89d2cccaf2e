//! `tanren`: drive a control plane from the shell. Every command is one or two REST calls; server
//! errors are printed as the server's message and exit non-zero. `--json` prints raw JSON for scripts.
//! `study watch` follows the study's WebSocket event stream (watch.rs); study requests can come from
//! `--set` flags and a `--space` TOML file (space.rs).

#[macro_use]
mod out;
mod predict;
mod space;
mod watch;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "tanren",
    about = "Find the best image classifier for your pictures",
    version
)]
struct Cli {
    /// Control plane URL.
    #[arg(
        long,
        global = true,
        env = "TANREN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API token (default: the one tanren-control saved for this URL in
    /// ~/.config/tanren/credentials.json, or $TANREN_CREDENTIALS_FILE).
    #[arg(long, global = true, env = "TANREN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra root certificate (PEM) to trust for an https:// control plane (a private CA), besides
    /// the OS trust store.
    #[arg(long, global = true, env = "TANREN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Datasets: upload a zip of image folders, list them.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Studies: create, list, show, watch, importance, stop.
    #[command(subcommand)]
    Study(StudyCmd),
    /// Trials.
    #[command(subcommand)]
    Trial(TrialCmd),
    /// Download models.
    #[command(subcommand)]
    Model(ModelCmd),
    /// List workers.
    Workers,
    /// API tokens (admin): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Classify image files with a running tanren-serve: one line per image (file, class, probability).
    Predict {
        /// Image files.
        files: Vec<PathBuf>,
        /// tanren-serve URL.
        #[arg(long, env = "TANREN_SERVE_URL", default_value = "http://127.0.0.1:8500")]
        server: String,
        /// Model name (default: the server's only model).
        #[arg(long)]
        model: Option<String>,
        /// Classes per image in --json output.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Images per request.
        #[arg(long, default_value_t = 32)]
        chunk: usize,
    },
}

#[derive(Subcommand)]
enum DatasetCmd {
    /// Upload a zip: train/<class>/*, test/<class>/* (or only <class>/* folders, split 80/20).
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    Ls,
}

#[derive(Subcommand)]
enum StudyCmd {
    /// Create a study. Bounds: --set learning_rate=1e-4..1e-2 --set optimizer=adam,sgd --set epochs=3,
    /// or a TOML file with --space (flags override the file).
    Create {
        /// Dataset id (or `dataset = ID` in the space file).
        #[arg(long)]
        dataset: Option<i64>,
        /// TOML file: budget, sampler, seed and a [bounds] table.
        #[arg(long)]
        space: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        trials: Option<u32>,
        #[arg(long)]
        minutes: Option<f64>,
        #[arg(long = "set", value_name = "PARAM=LOW..HIGH|A,B|VALUE")]
        set: Vec<String>,
        /// tpe (default), random or nsga2.
        #[arg(long)]
        sampler: Option<String>,
        /// What to optimise: `accuracy` (default) or `accuracy,latency` (trade validation accuracy
        /// against inference ms per image; the study gets a Pareto front).
        #[arg(long, value_delimiter = ',')]
        objectives: Vec<String>,
        /// Only models at most this many ms per image count (never best, never on the front).
        #[arg(long)]
        max_latency_ms: Option<f64>,
        /// none (default), median, asha or hyperband: stop weak trials early.
        #[arg(long)]
        pruner: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Do not run the seed's baseline configuration first.
        #[arg(long)]
        no_baseline: bool,
    },
    Ls,
    Show {
        id: i64,
    },
    /// Follow a study live (WebSocket) until it ends: progress, ETA, best so far.
    Watch {
        id: i64,
    },
    /// What mattered: each parameter's importance (PED-ANOVA over the complete trials), in
    /// sentences and a table, and a `study create` command with the bounds narrowed around the best
    /// trials.
    Importance {
        id: i64,
        /// ped-anova (default) or fanova.
        #[arg(long)]
        method: Option<String>,
    },
    Stop {
        id: i64,
    },
    /// Suggested bounds for a dataset, each with its reason, and a budget: from short probes on a
    /// free worker (learning-rate range test, batch sizes, epoch times) and the dataset's statistics.
    /// Ends with the `study create` command that uses them.
    Advise {
        dataset: i64,
        /// Do not run probes: statistics (and earlier probes of this dataset) only.
        #[arg(long)]
        no_probe: bool,
        /// Optimizers to range-test (default adam,sgd).
        #[arg(long, value_delimiter = ',')]
        optimizers: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TrialCmd {
    Show { id: i64 },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; its secret is printed once.
    Create {
        /// read (look), write (upload, create and stop studies) or admin (also manage tokens).
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        /// A name to recognise it by in `token list`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token; its dashboard sessions end too. Rotation: create the new one, then revoke.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Download the best model of a study (or one trial's) as a zip: weights, model.json, model.onnx.
    Download {
        study: i64,
        #[arg(long)]
        trial: Option<i64>,
        /// Also include model.int8.onnx (INT8 QDQ, calibrated on the study's training images).
        #[arg(long)]
        int8: bool,
        /// The fastest model within this many accuracy points of the best, instead of the best.
        #[arg(long, conflicts_with = "trial")]
        within_points: Option<f64>,
        /// Only models at most this many ms per image.
        #[arg(long, conflicts_with = "trial")]
        max_latency_ms: Option<f64>,
        #[arg(short, long, default_value = "model.zip")]
        output: PathBuf,
    },
}

struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    /// The `--ca-cert` PEM, for the WebSocket (`study watch`).
    ca_pem: Option<Vec<u8>>,
}

/// `$TANREN_CREDENTIALS_FILE`, else `$XDG_CONFIG_HOME/tanren/credentials.json`, else
/// `~/.config/tanren/credentials.json` (where tanren-control writes its first admin token).
fn credentials_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANREN_CREDENTIALS_FILE") {
        return Some(p.into());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tanren").join("credentials.json"))
}

/// The token saved for this server URL, if any.
fn saved_token(base: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(credentials_file()?).ok()?).ok()?;
    doc["servers"][base]["token"].as_str().map(String::from)
}

/// A client that sends the token with every request and trusts `ca_pem` besides the OS store.
fn http_client(token: Option<&str>, ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .context("the API token has characters a header cannot carry")?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder().default_headers(headers);
    for cert in ca_pem
        .map(reqwest::Certificate::from_pem_bundle)
        .transpose()?
        .unwrap_or_default()
    {
        b = b.add_root_certificate(cert);
    }
    Ok(b.build()?)
}

/// The `--ca-cert` file, checked to hold at least one certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read CA certificate {}", path.display()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "CA certificate {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        );
    }
    Ok(pem)
}

impl Api {
    async fn check(r: reqwest::Response) -> Result<reqwest::Response> {
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The server's first clause says why (no token, revoked…); the rest is for other clients.
            let why = body["error"]["message"].as_str().unwrap_or("not signed in");
            bail!(
                "{} ({status}): pass --token or set TANREN_TOKEN, or use the account whose \
                 credentials file tanren-control wrote (~/.config/tanren/credentials.json); an admin \
                 makes tokens with `tanren token create --scope write`",
                why.split(':').next().unwrap_or(why)
            );
        }
        match body["error"]["message"].as_str() {
            Some(m) => bail!("{m} ({status})"),
            None => bail!("server answered {status}"),
        }
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        Ok(Self::check(r).await?.json().await?)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        Ok(Self::check(r).await?.json().await?)
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the control plane at {} (is it running? set --url or TANREN_URL)",
            self.base
        )
    }
}

/// `café` as `caf\u{e9}` or `cafe\u{301}`: spellings that look the same, told apart.
fn code_points(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{{{:x}}}", u32::from(c))
            }
        })
        .collect()
}

fn print_study(s: &Value) {
    for line in study_lines(s) {
        outln!("{line}");
    }
}

/// `study show`: state, why it ended, counts, time left, best trial.
fn study_lines(s: &Value) -> Vec<String> {
    let p = &s["progress"];
    let mut out = vec![format!(
        "study {} `{}`: {}",
        s["id"],
        s["name"].as_str().unwrap_or(""),
        s["state"].as_str().unwrap_or("")
    )];
    match s["end_reason_text"].as_str() {
        // Includes the error of a failed study.
        Some(why) => out.push(format!("  ended: {why}")),
        None => {
            if let Some(err) = s["error"].as_str() {
                out.push(format!("  error: {err}"));
            }
        }
    }
    out.push(format!(
        "  trials: {} done of {} ({} complete, {} failed, {} running{})",
        p["done"],
        p["total"],
        p["complete"],
        p["failed"],
        p["running"],
        match p["interrupted"].as_u64() {
            Some(n) if n > 0 => format!(", {n} interrupted and retried"),
            _ => String::new(),
        }
    ));
    if let Some(eta) = p["eta_seconds"].as_f64().filter(|_| s["state"] == "running") {
        out.push(format!("  remaining: ~{:.0}s", eta));
    }
    let b = &s["best_trial"];
    if !b.is_null() {
        out.push(format!(
            "  best: trial {} (#{}) val acc {:.4}, test acc {:.4}, params {}",
            b["id"],
            b["number"],
            b["val_accuracy"].as_f64().unwrap_or(f64::NAN),
            b["test_accuracy"].as_f64().unwrap_or(f64::NAN),
            b["params"]
        ));
    }
    if let Some(ms) = s["max_latency_ms"].as_f64() {
        out.push(format!(
            "  latency limit: {ms} ms per image (slower trials never count)"
        ));
    }
    if let Some(front) = s["pareto_front"].as_array() {
        out.push(format!(
            "  accuracy vs latency: {} trial(s) on the Pareto front, fastest first",
            front.len()
        ));
        for p in front {
            out.push(format!(
                "    trial {} (#{}): val acc {:.4}, {:.3} ms/image",
                p["trial_id"],
                p["number"],
                p["val_accuracy"].as_f64().unwrap_or(f64::NAN),
                p["inference_ms"].as_f64().unwrap_or(f64::NAN)
            ));
        }
        if !front.is_empty() {
            out.push(format!(
                "  download one: tanren model download {} --within-points 1   (or --max-latency-ms X)",
                s["id"]
            ));
        }
    }
    out
}

/// `study importance`: the sentences, a table (parameter, share, what the best trials used), and the
/// command that runs the study again with the narrowed bounds.
fn importance_lines(id: i64, dataset: &Value, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let imps = v["importances"].as_array().cloned().unwrap_or_default();
    if imps.is_empty() {
        out.push(format!(
            "study {id}: {}",
            v["note"].as_str().unwrap_or("no importances yet")
        ));
        return out;
    }
    out.push(match v["top_trials"].as_u64().filter(|&n| n > 0) {
        Some(top) => format!(
            "study {id}: what mattered ({} over {} complete trials, best {top} compared with the rest)",
            v["method"].as_str().unwrap_or(""),
            v["trials_used"],
        ),
        None => format!(
            "study {id}: what mattered ({} over {} complete trials)",
            v["method"].as_str().unwrap_or(""),
            v["trials_used"],
        ),
    });
    for s in v["sentences"].as_array().into_iter().flatten() {
        out.push(format!("  {}", s.as_str().unwrap_or("")));
    }
    out.push(String::new());
    let width = imps
        .iter()
        .map(|p| p["label"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(0)
        .max("parameter".len());
    out.push(format!("  {:width$}  share  best trials used", "parameter"));
    for p in &imps {
        out.push(format!(
            "  {:width$}  {:>4.0}%  {}",
            p["label"].as_str().unwrap_or(""),
            100.0 * p["importance"].as_f64().unwrap_or(0.0),
            p["best_range_text"].as_str().unwrap_or("-")
        ));
    }
    let sets: Vec<String> = v["narrowed"]
        .as_object()
        .into_iter()
        .flatten()
        .map(
            |(k, b)| match (b["low"].as_f64(), b["high"].as_f64(), b["choices"].as_array()) {
                (Some(l), Some(h), _) if l == h => format!("--set {k}={l}"),
                (Some(l), Some(h), _) => format!("--set {k}={l}..{h}"),
                (_, _, Some(c)) => format!(
                    "--set {k}={}",
                    c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                ),
                _ => String::new(),
            },
        )
        .filter(|s| !s.is_empty())
        .collect();
    out.push(String::new());
    out.push("  narrow the bounds and run again:".into());
    out.push(format!(
        "  tanren study create --dataset {dataset} {}",
        sets.join(" ")
    ));
    out
}

/// A bound as `--set` writes it: `name=LOW..HIGH`, `name=VALUE` or `name=A,B`.
fn set_arg(name: &str, b: &Value) -> Option<String> {
    match (b["low"].as_f64(), b["high"].as_f64(), b["choices"].as_array()) {
        (Some(l), Some(h), _) if l == h => Some(format!("{name}={l}")),
        (Some(l), Some(h), _) => Some(format!("{name}={l}..{h}")),
        (_, _, Some(c)) => Some(format!(
            "{name}={}",
            c.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(",")
        )),
        _ => None,
    }
}

/// `study advise`: each bound with its reason, the budget, what the probes did, and the command.
fn advice_lines(dataset: i64, v: &Value) -> Vec<String> {
    let mut out = vec![format!("dataset {dataset}: suggested bounds")];
    let sugg = v["suggestions"].as_array().cloned().unwrap_or_default();
    let shown: Vec<(String, String)> = sugg
        .iter()
        .map(|s| {
            let name = s["param"].as_str().unwrap_or("");
            let text = set_arg(name, &s["bound"])
                .and_then(|a| a.split_once('=').map(|(_, r)| r.to_string()))
                .unwrap_or_default();
            (name.to_string(), text)
        })
        .collect();
    let w1 = shown.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    let w2 = shown.iter().map(|(_, b)| b.chars().count()).max().unwrap_or(0);
    for ((name, bound), s) in shown.iter().zip(&sugg) {
        out.push(format!(
            "  {name:w1$}  {bound:w2$}  {}",
            s["reason"].as_str().unwrap_or("")
        ));
    }
    let b = &v["budget"];
    out.push(String::new());
    out.push(format!(
        "  budget: {} trials, about {} minutes: {}",
        b["trials"],
        b["minutes"].as_f64().map_or("?".into(), |m| format!("{m:.0}")),
        b["reason"].as_str().unwrap_or("")
    ));
    if let Some(note) = v["probe"]["note"].as_str() {
        out.push(format!("  probes: {note}"));
    }
    if let Some(summary) = v["estimate"]["summary"].as_str().filter(|s| !s.is_empty()) {
        out.push(format!("  estimate: {summary}"));
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        out.push(format!(
            "  warning ({}): {}",
            w["param"].as_str().unwrap_or(""),
            w["message"].as_str().unwrap_or("")
        ));
    }
    let sets: Vec<String> = v["bounds"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, b)| set_arg(k, b))
        .map(|a| format!("--set {a}"))
        .collect();
    out.push(String::new());
    out.push("  create the study with them:".into());
    out.push(format!(
        "  tanren study create --dataset {dataset} --trials {} {}",
        b["trials"],
        sets.join(" ")
    ));
    out
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        errln!("tanren: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let base = cli.url.trim_end_matches('/').to_string();
    let token = cli.token.clone().or_else(|| saved_token(&base));
    let ca_pem = cli.ca_cert.as_deref().map(read_ca).transpose()?;
    let api = Api {
        http: http_client(token.as_deref(), ca_pem.as_deref())?,
        base,
        token,
        ca_pem,
    };
    let out = |v: &Value, text: &dyn Fn(&Value)| {
        if cli.json {
            outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            text(v)
        }
    };
    match cli.cmd {
        Cmd::Predict {
            files,
            server,
            model,
            top_k,
            chunk,
        } => {
            let p = predict::Predict {
                server,
                model,
                files,
                top_k,
                chunk,
                json: cli.json,
            };
            let failed = predict::run(p).await?;
            if failed > 0 {
                bail!("{failed} image(s) could not be classified");
            }
        }
        Cmd::Dataset(DatasetCmd::Upload { file, name }) => {
            let r = upload(&api, &file, name, !cli.json && std::io::stderr().is_terminal()).await?;
            let v: Value = r.json().await?;
            out(&v, &|d| {
                outln!(
                    "dataset {} `{}` sha256 {}",
                    d["id"],
                    d["name"].as_str().unwrap_or(""),
                    d["sha256"].as_str().unwrap_or("")
                );
                for c in d["classes"].as_array().into_iter().flatten() {
                    outln!(
                        "  [{}] {}: {} train, {} test",
                        c["index"],
                        c["name"].as_str().unwrap_or(""),
                        c["train"],
                        c["test"]
                    );
                    let merged: Vec<String> = c["merged_spellings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str().map(code_points))
                        .collect();
                    if !merged.is_empty() {
                        outln!(
                            "      merged from folders whose names differ only by Unicode normalisation: {}",
                            merged.join(", ")
                        );
                    }
                }
                let skipped = d["skipped"].as_array().map_or(0, |s| s.len());
                if skipped > 0 {
                    outln!("  {skipped} files skipped (see --json)");
                }
            });
        }
        Cmd::Dataset(DatasetCmd::Ls) => {
            let v = api.get("/api/v1/datasets").await?;
            out(&v, &|v| {
                for d in v["datasets"].as_array().into_iter().flatten() {
                    outln!(
                        "{}\t{}\t{} classes\t{} train\t{} test",
                        d["id"],
                        d["name"].as_str().unwrap_or(""),
                        d["num_classes"],
                        d["num_train"],
                        d["num_test"]
                    );
                }
            });
        }
        Cmd::Study(StudyCmd::Create {
            dataset,
            space,
            name,
            trials,
            minutes,
            set,
            sampler,
            objectives,
            max_latency_ms,
            pruner,
            seed,
            no_baseline,
        }) => {
            let file = match &space {
                Some(p) => {
                    let text = tokio::fs::read_to_string(p)
                        .await
                        .with_context(|| format!("reading {}", p.display()))?;
                    Some(space::parse_space_file(&text, &p.display().to_string())?)
                }
                None => None,
            };
            let dataset = dataset
                .or(file.as_ref().and_then(|f| f.dataset))
                .context("which dataset? pass --dataset ID (or `dataset = ID` in the --space file)")?;
            let (mut body, mut bounds) = match file {
                Some(f) => (Value::Object(f.body), f.bounds),
                None => (json!({}), serde_json::Map::new()),
            };
            for s in &set {
                let (k, v) = space::parse_bound(s)?;
                bounds.insert(k, v);
            }
            body["dataset_id"] = json!(dataset);
            body["bounds"] = Value::Object(bounds);
            if trials.is_some() || minutes.is_some() || body.get("budget").is_none() {
                let b = &mut body["budget"];
                if let Some(t) = trials {
                    b["trials"] = json!(t);
                }
                if let Some(m) = minutes {
                    b["minutes"] = json!(m);
                }
                if b.is_null() {
                    *b = json!({});
                }
            }
            if space.is_none() || seed != 0 {
                body["seed"] = json!(seed);
            }
            if no_baseline {
                body["baseline"] = json!(false);
            }
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(p) = pruner {
                body["pruner"] = json!(p);
            }
            if let Some(s) = sampler {
                body["sampler"] = json!(s);
            }
            if !objectives.is_empty() {
                body["objectives"] = json!(objectives);
            }
            if let Some(ms) = max_latency_ms {
                body["max_latency_ms"] = json!(ms);
            }
            let v = api.post("/api/v1/studies", &body).await?;
            out(&v, &print_study);
        }
        Cmd::Study(StudyCmd::Ls) => {
            let v = api.get("/api/v1/studies").await?;
            out(&v, &|v| {
                for s in v["studies"].as_array().into_iter().flatten() {
                    let best = s["best_trial"]["val_accuracy"]
                        .as_f64()
                        .map(|a| format!("{a:.4}"))
                        .unwrap_or("-".into());
                    outln!(
                        "{}\t{}\t{}\t{}/{}\tbest {}",
                        s["id"],
                        s["name"].as_str().unwrap_or(""),
                        s["state"].as_str().unwrap_or(""),
                        s["progress"]["done"],
                        s["progress"]["total"],
                        best
                    );
                }
            });
        }
        Cmd::Study(StudyCmd::Show { id }) => {
            out(&api.get(&format!("/api/v1/studies/{id}")).await?, &print_study)
        }
        Cmd::Study(StudyCmd::Stop { id }) => out(
            &api.post(&format!("/api/v1/studies/{id}/stop"), &json!({}))
                .await?,
            &print_study,
        ),
        Cmd::Study(StudyCmd::Watch { id }) => {
            // A plain GET first: an unknown study gets the server's own message, not a handshake error.
            api.get(&format!("/api/v1/studies/{id}")).await?;
            watch::watch(
                &api.base,
                api.token.as_deref(),
                api.ca_pem.as_deref(),
                id,
                cli.json,
            )
            .await?;
            if !cli.json {
                print_study(&api.get(&format!("/api/v1/studies/{id}")).await?);
            }
        }
        Cmd::Study(StudyCmd::Importance { id, method }) => {
            let query = method.map(|m| format!("?method={m}")).unwrap_or_default();
            let v = api
                .get(&format!("/api/v1/studies/{id}/importance{query}"))
                .await?;
            let dataset = if cli.json {
                Value::Null
            } else {
                api.get(&format!("/api/v1/studies/{id}")).await?["dataset_id"].clone()
            };
            out(&v, &|v| {
                for line in importance_lines(id, &dataset, v) {
                    outln!("{line}");
                }
            });
        }
        Cmd::Study(StudyCmd::Advise {
            dataset,
            no_probe,
            optimizers,
        }) => {
            let mut body = serde_json::json!({ "probe": !no_probe });
            if !optimizers.is_empty() {
                body["optimizers"] = serde_json::json!(optimizers);
            }
            if !no_probe && !cli.json {
                eprintln!("probing on a free worker (a learning-rate test, batch sizes, epoch times)...");
            }
            let v = api
                .post(&format!("/api/v1/datasets/{dataset}/advice"), &body)
                .await?;
            out(&v, &|v| {
                for line in advice_lines(dataset, v) {
                    outln!("{line}");
                }
            });
        }
        Cmd::Trial(TrialCmd::Show { id }) => {
            let v = api.get(&format!("/api/v1/trials/{id}")).await?;
            out(&v, &|t| {
                outln!(
                    "trial {} (#{}) of study {}: {}",
                    t["id"],
                    t["number"],
                    t["study_id"],
                    t["state"].as_str().unwrap_or("")
                );
                outln!("  params: {}", t["params"]);
                outln!(
                    "  val acc {} test acc {} train {}s, {} ms/image, {} params, worker {} on {}",
                    t["val_accuracy"],
                    t["test_accuracy"],
                    t["train_seconds"],
                    t["inference_ms"],
                    t["parameter_count"],
                    t["worker_id"],
                    t["device"]
                );
                for e in t["epochs"].as_array().into_iter().flatten() {
                    outln!(
                        "  epoch {}: train loss {:.4} val loss {:.4} val acc {:.4}",
                        e["epoch"],
                        e["train_loss"].as_f64().unwrap_or(f64::NAN),
                        e["val_loss"].as_f64().unwrap_or(f64::NAN),
                        e["val_accuracy"].as_f64().unwrap_or(f64::NAN)
                    );
                }
                if let Some(err) = t["error"].as_str() {
                    outln!("  error: {err}");
                }
            });
        }
        Cmd::Model(ModelCmd::Download {
            study,
            trial,
            int8,
            within_points,
            max_latency_ms,
            output,
        }) => {
            let path = match trial {
                Some(t) => format!("/api/v1/trials/{t}/model?int8={int8}"),
                None => {
                    let mut p = format!("/api/v1/studies/{study}/model?int8={int8}");
                    if let Some(x) = within_points {
                        p += &format!("&within_points={x}");
                    }
                    if let Some(ms) = max_latency_ms {
                        p += &format!("&max_latency_ms={ms}");
                    }
                    p
                }
            };
            let r = api
                .http
                .get(format!("{}{path}", api.base))
                .send()
                .await
                .with_context(|| api.unreachable())?;
            let r = Api::check(r).await?;
            let trial_id: Option<i64> = r
                .headers()
                .get("x-tanren-trial-id")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .or(trial);
            let bytes = r.bytes().await?;
            tokio::fs::write(&output, &bytes)
                .await
                .with_context(|| format!("writing {}", output.display()))?;
            let v = json!({"path": output, "bytes": bytes.len(), "trial_id": trial_id});
            out(&v, &|_| {
                let from = trial_id.map(|t| format!(", trial {t}")).unwrap_or_default();
                outln!("wrote {} ({} bytes{from})", output.display(), bytes.len())
            });
        }
        Cmd::Workers => {
            let v = api.get("/api/v1/workers").await?;
            out(&v, &|v| {
                for w in v["workers"].as_array().into_iter().flatten() {
                    let state = if w["alive"] == true {
                        if w["busy"] == true {
                            "busy"
                        } else {
                            "idle"
                        }
                    } else {
                        "down"
                    };
                    // Slots in use of the worker's slots, then the trials it runs ("study/trial").
                    let running: Vec<String> = w["running"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["trial_id"].as_i64().unwrap_or(0) > 0)
                        .map(|t| format!("{}/{}", t["study_id"], t["trial_id"]))
                        .collect();
                    outln!(
                        "{}\t{}\t{}/{} slots\t{}\t{}\t{}\ttorch {}",
                        w["id"].as_str().unwrap_or(""),
                        state,
                        w["slots_in_use"].as_i64().unwrap_or(0),
                        w["slots"].as_i64().unwrap_or(1),
                        if running.is_empty() {
                            "-".to_string()
                        } else {
                            running.join(",")
                        },
                        w["device"].as_str().unwrap_or(""),
                        w["grpc_url"].as_str().unwrap_or(""),
                        w["torch_version"].as_str().unwrap_or("")
                    );
                }
            });
        }
        Cmd::Token(TokenCmd::Create { scope, name }) => {
            let mut body = json!({ "scope": scope });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let v = api.post("/api/v1/tokens", &body).await?;
            out(&v, &|v| {
                outln!("{}", v["token"].as_str().unwrap_or(""));
                errln!(
                    "token {} `{}` ({}): shown once, keep it safe. Use it as TANREN_TOKEN, or sign in at {}/login?token=…",
                    v["id"],
                    v["name"].as_str().unwrap_or(""),
                    v["scope"].as_str().unwrap_or(""),
                    api.base
                );
            });
        }
        Cmd::Token(TokenCmd::List) => {
            let v = api.get("/api/v1/tokens").await?;
            out(&v, &|v| {
                for t in v["tokens"].as_array().into_iter().flatten() {
                    outln!(
                        "{}\t{}\t{}\t{}",
                        t["id"],
                        t["scope"].as_str().unwrap_or(""),
                        if t["revoked_at"].is_null() {
                            "live"
                        } else {
                            "revoked"
                        },
                        t["name"].as_str().unwrap_or("")
                    );
                }
            });
        }
        Cmd::Token(TokenCmd::Revoke { id }) => {
            let r = api
                .http
                .delete(format!("{}/api/v1/tokens/{id}", api.base))
                .send()
                .await
                .with_context(|| api.unreachable())?;
            let v: Value = Api::check(r).await?.json().await?;
            out(&v, &|_| outln!("token {id} revoked"));
        }
    }
    Ok(())
}

/// Stream the zip from disk (not read whole into memory) and draw a progress bar on stderr.
async fn upload(
    api: &Api,
    file: &std::path::Path,
    name: Option<String>,
    bar: bool,
) -> Result<reqwest::Response> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let len = f.metadata().await?.len();
    let fname = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data.zip".into());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let stream = futures::StreamExt::inspect(tokio_util::io::ReaderStream::new(f), move |c| {
        if let Ok(c) = c {
            counter.fetch_add(c.len() as u64, Ordering::Relaxed);
        }
    });
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
        .file_name(fname);
    let mut req = api
        .http
        .post(format!("{}/api/v1/datasets", api.base))
        .multipart(reqwest::multipart::Form::new().part("file", part));
    if let Some(n) = name {
        req = req.query(&[("name", n)]);
    }
    let draw = bar.then(|| {
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                let n = sent.load(Ordering::Relaxed);
                err!("\r\x1b[2K{}", upload_line(n, len));
                if n >= len {
                    err!(" (server is checking the zip)");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    });
    let r = req.send().await;
    if let Some(d) = draw {
        d.abort();
        errln!("\r\x1b[2K{}", upload_line(sent.load(Ordering::Relaxed), len));
    }
    Api::check(r.with_context(|| api.unreachable())?).await
}

fn upload_line(sent: u64, len: u64) -> String {
    let width = 30usize;
    let f = if len == 0 { 1.0 } else { sent as f64 / len as f64 };
    let filled = ((f * width as f64).round() as usize).min(width);
    let mb = |b: u64| b as f64 / 1_048_576.0;
    format!(
        "uploading [{}{}] {:>3.0}% {:.1}/{:.1} MB",
        "#".repeat(filled),
        ".".repeat(width - filled),
        f * 100.0,
        mb(sent),
        mb(len)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_show_says_why_a_study_ended() {
        let s = json!({"id": 3, "name": "pets", "state": "complete", "end_reason": "minutes_budget",
            "end_reason_text": "minutes budget reached", "error": null, "best_trial": null,
            "progress": {"done": 4, "total": 4, "complete": 4, "failed": 0, "running": 0, "interrupted": 1,
                         "eta_seconds": 0.0}});
        let lines = study_lines(&s);
        assert_eq!(lines[1], "  ended: minutes budget reached");
        assert_eq!(
            lines[2],
            "  trials: 4 done of 4 (4 complete, 0 failed, 0 running, 1 interrupted and retried)"
        );
        assert_eq!(lines.len(), 3, "no time left on an ended study: {lines:?}");
        let failed = json!({"id": 4, "name": "x", "state": "failed", "end_reason": "failed",
            "end_reason_text": "failed: 5 trials in a row failed; last error: diverged", "error": "5 trials in a row failed; last error: diverged",
            "best_trial": null, "progress": {"done": 5, "total": 20, "complete": 0, "failed": 5, "running": 0}});
        let lines = study_lines(&failed);
        assert_eq!(
            lines[1],
            "  ended: failed: 5 trials in a row failed; last error: diverged"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("  error:")),
            "the reason is not printed twice"
        );
    }

    #[test]
    fn study_show_prints_the_limit_and_the_pareto_front() {
        let s = json!({"id": 7, "name": "fast", "state": "running", "best_trial": null, "max_latency_ms": 2.0,
            "progress": {"done": 2, "total": 9, "complete": 2, "failed": 0, "running": 1},
            "pareto_front": [{"trial_id": 12, "number": 3, "val_accuracy": 0.9, "inference_ms": 0.25},
                             {"trial_id": 10, "number": 1, "val_accuracy": 0.95, "inference_ms": 1.5}]});
        let lines = study_lines(&s);
        assert_eq!(
            lines[2..],
            [
                "  latency limit: 2 ms per image (slower trials never count)",
                "  accuracy vs latency: 2 trial(s) on the Pareto front, fastest first",
                "    trial 12 (#3): val acc 0.9000, 0.250 ms/image",
                "    trial 10 (#1): val acc 0.9500, 1.500 ms/image",
                "  download one: tanren model download 7 --within-points 1   (or --max-latency-ms X)",
            ]
        );
    }

    #[test]
    fn study_importance_prints_sentences_a_table_and_the_rerun_command() {
        let v = json!({"trials_used": 24, "method": "ped-anova", "top_trials": 5, "note": null,
            "importances": [
                {"param": "learning_rate", "label": "learning rate", "importance": 0.62, "best_range_text": "2e-3 to 6e-3"},
                {"param": "optimizer", "label": "optimizer", "importance": 0.38, "best_range_text": "adam"}],
            "sentences": ["Learning rate decided most of the result (62%); the best trials used 2e-3 to 6e-3.",
                          "Optimizer mattered too (38%); the best trials all used adam."],
            "narrowed": {"learning_rate": {"low": 0.0015, "high": 0.0079}, "optimizer": {"choices": ["adam"]},
                         "epochs": {"low": 3.0, "high": 3.0}}});
        let lines = importance_lines(7, &json!(2), &v);
        assert_eq!(
            lines,
            [
                "study 7: what mattered (ped-anova over 24 complete trials, best 5 compared with the rest)",
                "  Learning rate decided most of the result (62%); the best trials used 2e-3 to 6e-3.",
                "  Optimizer mattered too (38%); the best trials all used adam.",
                "",
                "  parameter      share  best trials used",
                "  learning rate    62%  2e-3 to 6e-3",
                "  optimizer        38%  adam",
                "",
                "  narrow the bounds and run again:",
                "  tanren study create --dataset 2 --set epochs=3 --set learning_rate=0.0015..0.0079 --set optimizer=adam",
            ]
        );
        // Each --set parses back to the bound it came from.
        for set in lines.last().unwrap().split(" --set ").skip(1) {
            let (k, b) = space::parse_bound(set).unwrap();
            assert_eq!(b, v["narrowed"][&k], "{set}");
        }
        let few = json!({"importances": [], "note": "importance needs at least 6 complete trials with a finite result; there are 2 so far"});
        assert_eq!(
            importance_lines(7, &json!(2), &few),
            ["study 7: importance needs at least 6 complete trials with a finite result; there are 2 so far"]
        );
    }

    #[test]
    fn study_advise_prints_each_bound_with_its_reason_the_budget_and_the_command() {
        let v = serde_json::json!({
            "bounds": {"learning_rate": {"low": 6e-4, "high": 0.03}, "optimizer": {"choices": ["adam", "adamw"]}},
            "suggestions": [
                {"param": "learning_rate", "bound": {"low": 6e-4, "high": 0.03},
                 "reason": "the loss fell fastest at lr 3e-3 and diverged past 0.1"},
                {"param": "optimizer", "bound": {"choices": ["adam", "adamw"]}, "reason": "Adam and AdamW share a range"}
            ],
            "budget": {"trials": 18, "minutes": 7.0, "reason": "6 searched parameters want about 18 trials"},
            "probe": {"ran": true, "note": "probes ran on worker w1 in 12 s"},
            "estimate": {"summary": "about 20 s per trial"},
            "warnings": []
        });
        let lines = advice_lines(3, &v);
        let text = lines.join("\n");
        assert!(text.contains("learning_rate  0.0006..0.03"), "{text}");
        assert!(text.contains("diverged past 0.1"), "{text}");
        assert!(text.contains("budget: 18 trials, about 7 minutes"), "{text}");
        assert!(text.contains("probes: probes ran on worker w1"), "{text}");
        assert_eq!(
            lines.last().unwrap(),
            "  tanren study create --dataset 3 --trials 18 --set learning_rate=0.0006..0.03 --set optimizer=adam,adamw"
        );
    }

    #[test]
    fn spellings_that_look_alike_print_apart() {
        assert_eq!(super::code_points("caf\u{e9}"), "caf\\u{e9}");
        assert_eq!(super::code_points("cafe\u{301}"), "cafe\\u{301}");
    }
}
