//! The `tanren` binary against a real control plane (no worker: nothing here trains) booted in this
//! test process on port 0: the server's message on stderr and a non-zero exit for every refusal,
//! uploads, `study create --space`, and `study watch` over the WebSocket.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Control {
    url: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Each control plane's credentials file, by URL: the CLI finds its token there, as it finds the one
/// a real first start writes to ~/.config/tanren/credentials.json.
static CREDENTIALS: std::sync::Mutex<Vec<(String, std::path::PathBuf)>> = std::sync::Mutex::new(Vec::new());

async fn control() -> Control {
    control_with(None).await
}

/// `tls`: (certificate, key, the CA that signed it) for an HTTPS control plane.
async fn control_with(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Control {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tanren_control::Config::new(dir.path().join("control"));
    config.tick = Duration::from_millis(100);
    let mut http = reqwest::Client::builder();
    if let Some((cert, key, ca)) = tls {
        config.tls = Some(tanren_control::tls::TlsPaths { cert, key });
        http =
            http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    }
    let http = http.build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let creds = dir.path().join("credentials.json");
    config.credentials_file = Some(creds.clone());
    CREDENTIALS.lock().unwrap().push((url.clone(), creds.clone()));
    let shutdown = CancellationToken::new();
    tokio::spawn(tanren_control::run(config, listener, shutdown.clone()));
    // Serving (and the credentials file written) only once start-up is done: wait for both.
    for _ in 0..200 {
        let healthy = http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy && creds.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Control { url, dir, shutdown }
}

fn tanren_cmd(url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tanren"));
    cmd.arg("--url").arg(url).env_remove("TANREN_TOKEN");
    let creds = CREDENTIALS.lock().unwrap();
    match creds.iter().find(|(u, _)| u == url) {
        Some((_, path)) => cmd.env("TANREN_CREDENTIALS_FILE", path),
        None => cmd.env("TANREN_CREDENTIALS_FILE", "/nonexistent/credentials.json"),
    };
    cmd
}

async fn tanren(url: &str, args: &[&str]) -> Output {
    let mut cmd = tanren_cmd(url);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `tanren … | head -0`: stdout is a pipe whose reader has already gone, so the first write fails
/// with EPIPE (Rust ignores SIGPIPE). Closing before the command writes makes that deterministic;
/// `head -1` would race with the pipe's buffer.
async fn tanren_into_closed_pipe(url: &str, args: &[&str]) -> Output {
    let mut cmd = tanren_cmd(url);
    cmd.args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn shapes_zip() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default();
    for split in ["train", "test"] {
        for (c, class) in ["dark", "light"].iter().enumerate() {
            for i in 0..4u8 {
                let v = if c == 0 { 20 + i } else { 220 - i };
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([v, v, v]));
                let mut png = std::io::Cursor::new(Vec::new());
                img.write_to(&mut png, image::ImageFormat::Png).unwrap();
                z.start_file(format!("{split}/{class}/{i}.png"), opts).unwrap();
                z.write_all(png.get_ref()).unwrap();
            }
        }
    }
    z.finish().unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_print_the_servers_message_and_exit_non_zero() {
    let c = control().await;
    let o = tanren(&c.url, &["study", "show", "999"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "tanren: study 999 does not exist (404 Not Found)"
    );
    assert!(o.stdout.is_empty());

    let o = tanren(&c.url, &["study", "create", "--dataset", "999", "--trials", "2"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("dataset 999 does not exist; upload one first"),
        "{}",
        stderr(&o)
    );

    let o = tanren(&c.url, &["study", "watch", "999"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("study 999 does not exist"), "{}", stderr(&o));

    let bad = c.dir.path().join("not-a.zip");
    std::fs::write(&bad, b"certainly not a zip").unwrap();
    let o = tanren(&c.url, &["dataset", "upload", bad.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("(422 Unprocessable Entity)"),
        "{}",
        stderr(&o)
    );

    let o = tanren("http://127.0.0.1:1", &["workers"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the control plane at http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );

    let o = tanren(&c.url, &["trial", "show", "not-a-number"]).await;
    assert_eq!(o.status.code(), Some(2), "usage errors are clap's exit code 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_says_which_folders_it_merged() {
    let c = control().await;
    // `café` composed (as Linux writes it) in train/, decomposed (as macOS can) in test/.
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default();
    for (split, cafe) in [("train", "caf\u{e9}"), ("test", "cafe\u{301}")] {
        for (c, class) in [cafe, "tea"].iter().enumerate() {
            for i in 0..2u8 {
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([40 * c as u8 + i, 0, 0]));
                let mut png = std::io::Cursor::new(Vec::new());
                img.write_to(&mut png, image::ImageFormat::Png).unwrap();
                z.start_file(format!("{split}/{class}/{i}.png"), opts).unwrap();
                z.write_all(png.get_ref()).unwrap();
            }
        }
    }
    z.finish().unwrap();
    let zip = c.dir.path().join("drinks.zip");
    std::fs::write(&zip, out.into_inner()).unwrap();
    let o = tanren(&c.url, &["dataset", "upload", zip.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "[0] caf\u{e9}: 2 train, 2 test\n      merged from folders whose names differ only by \
             Unicode normalisation: cafe\\u{301}, caf\\u{e9}\n  [1] tea"
        ),
        "{text}"
    );
    let ls = json(&tanren(&c.url, &["--json", "dataset", "ls"]).await);
    let classes = &ls["datasets"][0]["classes"];
    assert_eq!(
        classes[0]["merged_spellings"],
        serde_json::json!(["cafe\u{301}", "caf\u{e9}"])
    );
    assert!(classes[1].get("merged_spellings").is_none(), "{classes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_command_quietly() {
    let c = control().await;
    let zip = c.dir.path().join("shapes.zip");
    std::fs::write(&zip, shapes_zip()).unwrap();
    let ds = json(&tanren(&c.url, &["--json", "dataset", "upload", zip.to_str().unwrap()]).await);
    let dataset = ds["id"].to_string();
    let study = json(
        &tanren(
            &c.url,
            &[
                "--json",
                "study",
                "create",
                "--dataset",
                &dataset,
                "--trials",
                "2",
            ],
        )
        .await,
    );
    let sid = study["id"].to_string();
    // No worker: the study stays running, so `watch` would follow it forever if it kept going.
    for args in [
        &["study", "show", &sid][..],
        &["--json", "study", "show", &sid],
        &["dataset", "ls"],
        &["study", "ls"],
        &["study", "watch", &sid],
        &["--json", "study", "watch", &sid],
    ] {
        let o = tanren_into_closed_pipe(&c.url, args).await;
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
    // Errors still go to stderr with status 1 when stdout is closed.
    let o = tanren_into_closed_pipe(&c.url, &["study", "show", "999"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("study 999 does not exist"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_create_from_a_space_file_stop_and_watch() {
    let c = control().await;
    let zip = c.dir.path().join("shapes.zip");
    std::fs::write(&zip, shapes_zip()).unwrap();
    let ds = json(&tanren(&c.url, &["--json", "dataset", "upload", zip.to_str().unwrap()]).await);
    assert_eq!(ds["num_classes"], 2);
    let id = ds["id"].as_i64().unwrap();
    let ls = json(&tanren(&c.url, &["--json", "dataset", "ls"]).await);
    assert_eq!(ls["datasets"][0]["id"], id);

    // A bad bound in the file: the server's message names the parameter.
    let space = c.dir.path().join("space.toml");
    std::fs::write(
        &space,
        format!("dataset = {id}\n[bounds]\nlearning_rate = {{ low = 0.1, high = 0.01 }}\n"),
    )
    .unwrap();
    let o = tanren(&c.url, &["study", "create", "--space", space.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("learning_rate"), "{}", stderr(&o));
    assert!(stderr(&o).contains("(400 Bad Request)"), "{}", stderr(&o));

    std::fs::write(
        &space,
        format!("dataset = {id}\ntrials = 7\nsampler = \"random\"\n[bounds]\noptimizer = [\"adam\", \"sgd\"]\nepochs = 2\nimage_size = \"16..24\"\n"),
    )
    .unwrap();
    let study = json(
        &tanren(
            &c.url,
            &[
                "--json",
                "study",
                "create",
                "--space",
                space.to_str().unwrap(),
                "--trials",
                "3",
            ],
        )
        .await,
    );
    assert_eq!(study["state"], "running");
    assert_eq!(study["budget"]["trials"], 3, "flags override the file");
    assert_eq!(study["sampler"]["type"], "random", "{}", study["sampler"]);
    let sid = study["id"].as_i64().unwrap().to_string();

    let stopped = json(&tanren(&c.url, &["--json", "study", "stop", &sid]).await);
    assert_eq!(stopped["state"], "stopped");
    let o = tanren(&c.url, &["study", "stop", &sid]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("already stopped (409 Conflict)"),
        "{}",
        stderr(&o)
    );

    // Watching a finished study: the snapshot says it is over, so watch prints the summary and ends.
    let o = tanren(&c.url, &["study", "watch", &sid]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("stopped"), "{text}");
    let o = tanren(&c.url, &["--json", "study", "watch", &sid]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["study"]["state"], "stopped");
}

/// A CA and a certificate for 127.0.0.1 it signed: (cert, key, ca).
fn make_pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_control_plane_with_ca_cert_and_a_wss_watch() {
    let pki = tempfile::tempdir().unwrap();
    let (cert, key, ca) = make_pki(pki.path());
    let c = control_with(Some((cert, key, ca.clone()))).await;
    assert!(c.url.starts_with("https://"), "{}", c.url);

    // Not trusting the CA: refused, and the message says why.
    let o = tanren(&c.url, &["dataset", "ls"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));

    let ca = ca.to_str().unwrap();
    let zip = c.dir.path().join("shapes.zip");
    std::fs::write(&zip, shapes_zip()).unwrap();
    let ds = json(
        &tanren(
            &c.url,
            &[
                "--ca-cert",
                ca,
                "--json",
                "dataset",
                "upload",
                zip.to_str().unwrap(),
            ],
        )
        .await,
    );
    let id = ds["id"].as_i64().unwrap().to_string();
    let study = json(
        &tanren(
            &c.url,
            &["--ca-cert", ca, "--json", "study", "create", "--dataset", &id],
        )
        .await,
    );
    let sid = study["id"].as_i64().unwrap().to_string();
    json(&tanren(&c.url, &["--ca-cert", ca, "--json", "study", "stop", &sid]).await);
    // `study watch` over wss:// with the same CA.
    let o = tanren(&c.url, &["--ca-cert", ca, "--json", "study", "watch", &sid]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "snapshot");
}
