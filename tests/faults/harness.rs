//! Real processes for the fault scenarios: the control plane binary, worker binaries, a TCP proxy the
//! test can cut, a PostgreSQL server of the test's own; and the checks every scenario ends with.

use crate::common::{client_trusting, shapes_zip, ADMIN_TOKEN, JOIN_TOKEN};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A port nobody listens on right now (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .into()
}

/// A child process killed (SIGKILL) when dropped; its stdout and stderr go to `log`.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The control plane binary on 127.0.0.1:`port` with `data_dir`; SQLite unless `database_url`.
pub struct ControlSpec {
    pub data_dir: PathBuf,
    pub port: u16,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub log: PathBuf,
}

impl ControlSpec {
    pub fn new(dir: &Path, name: &str) -> ControlSpec {
        ControlSpec {
            data_dir: dir.join(name),
            port: free_port(),
            database_url: None,
            public_url: None,
            log: dir.join(format!("{name}.log")),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the process (default settings: 20 s worker timeout, 2 retries); does not wait.
    pub fn spawn(&self) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tanren-e2e-control"));
        cmd.env("TANREN_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("TANREN_DATA_DIR", &self.data_dir)
            .env("TANREN_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TANREN_JOIN_TOKEN", JOIN_TOKEN)
            .env("TANREN_CREDENTIALS_FILE", "none")
            .env("TANREN_MUTATIONS_PER_SECOND", "0")
            .env("RUST_LOG", "info")
            .stdout(log_file(&self.log))
            .stderr(log_file(&self.log));
        if let Some(db) = &self.database_url {
            cmd.env("TANREN_DATABASE_URL", db);
        }
        if let Some(p) = &self.public_url {
            cmd.env("TANREN_PUBLIC_URL", p);
        }
        Proc {
            child: Some(cmd.spawn().expect("start control plane process")),
            log: self.log.clone(),
        }
    }

    /// Start and wait until `/healthz` answers 200.
    pub async fn start(&self) -> Proc {
        let p = self.spawn();
        let api = Api::new(&self.url());
        api.wait_until(Duration::from_secs(30), "control plane healthy", || async {
            api.status("/healthz").await == Some(200)
        })
        .await;
        p
    }
}

/// A worker process (the e2e worker binary: the real worker CLI) on CPU, one thread, 300 ms heartbeat.
pub struct WorkerSpec {
    pub id: String,
    pub control_url: String,
    pub data_dir: PathBuf,
    pub port: u16,
    /// What it tells the control plane to dial (a proxy in front of it); default its own address.
    pub advertise: Option<String>,
    pub log: PathBuf,
}

impl WorkerSpec {
    pub fn new(dir: &Path, id: &str, control_url: &str) -> WorkerSpec {
        WorkerSpec {
            id: id.into(),
            control_url: control_url.into(),
            data_dir: dir.join(id),
            port: free_port(),
            advertise: None,
            log: dir.join(format!("{id}.log")),
        }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    pub fn spawn(&self) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tanren-e2e-worker"));
        cmd.env("TANREN_CONTROL_URL", &self.control_url)
            .env("TANREN_WORKER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("TANREN_WORKER_ID", &self.id)
            .env("TANREN_WORKER_DATA", &self.data_dir)
            .env("TANREN_DEVICE", "cpu")
            .env("TANREN_THREADS", "1")
            .env("TANREN_HEARTBEAT_MS", "300")
            .env("TANREN_JOIN_TOKEN", JOIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(log_file(&self.log))
            .stderr(log_file(&self.log));
        if let Some(a) = &self.advertise {
            cmd.env("TANREN_WORKER_ADVERTISE", a);
        }
        Proc {
            child: Some(cmd.spawn().expect("start worker process")),
            log: self.log.clone(),
        }
    }

    /// Start and wait until `api` lists it alive.
    pub async fn start(&self, api: &Api) -> Proc {
        let p = self.spawn();
        api.wait_worker(&self.id).await;
        p
    }
}

/// REST with the admin token.
pub struct Api {
    pub url: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            url: url.to_string(),
            http: client_trusting(ADMIN_TOKEN, None),
        }
    }

    /// The status of a GET, `None` when nothing answered.
    pub async fn status(&self, path: &str) -> Option<u16> {
        self.http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// A GET that may fail (the control plane is down): `None` then.
    pub async fn try_get(&self, path: &str) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    /// Upload a dataset zip; its id.
    pub async fn upload(&self, zip: Vec<u8>) -> i64 {
        let part = reqwest::multipart::Part::bytes(zip).file_name("shapes.zip");
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = self
            .http
            .post(format!("{}/api/v1/datasets", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 201, "upload: {v}");
        v["id"].as_i64().unwrap()
    }

    /// Create a study; its id.
    pub async fn study(&self, body: serde_json::Value) -> i64 {
        let (status, v) = self.post("/api/v1/studies", &body).await;
        assert_eq!(status, 201, "create study: {v}");
        v["id"].as_i64().unwrap()
    }

    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !f().await {
            assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_worker(&self, id: &str) {
        self.wait_until(
            Duration::from_secs(60),
            &format!("worker {id} registered"),
            || async {
                self.try_get("/api/v1/workers").await.is_some_and(|v| {
                    v["workers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|w| w["id"] == id && w["alive"] == true)
                })
            },
        )
        .await;
    }

    pub async fn trials(&self, study: i64) -> Vec<serde_json::Value> {
        self.get(&format!("/api/v1/studies/{study}/trials")).await["trials"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The first trial of `study` that reported an epoch and is still running.
    pub async fn wait_running_epoch(&self, study: i64, timeout: Duration) -> serde_json::Value {
        self.wait_running_after(study, 0, timeout).await
    }

    /// A trial of `study` still running with an epoch reported, once `complete` trials are complete:
    /// the moment to break something mid-study.
    pub async fn wait_running_after(
        &self,
        study: i64,
        complete: usize,
        timeout: Duration,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < timeout,
                "study {study}: no trial running with an epoch after {complete} complete, in time"
            );
            if let Some(v) = self.try_get(&format!("/api/v1/studies/{study}/trials")).await {
                let trials = v["trials"].as_array().unwrap();
                let done = trials.iter().filter(|t| t["state"] == "complete").count();
                if done < complete {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                for t in trials {
                    if t["state"] != "running" {
                        continue;
                    }
                    let full = self.get(&format!("/api/v1/trials/{}", t["id"])).await;
                    if !full["epochs"].as_array().unwrap().is_empty() {
                        return full;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll until the study leaves `running` (tolerating a control plane that is down meanwhile).
    pub async fn wait_study(&self, id: i64, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_get(&format!("/api/v1/studies/{id}")).await {
                if s["state"] != "running" {
                    return s;
                }
                assert!(
                    start.elapsed() < timeout,
                    "study {id} still running after {timeout:?}: {s}"
                );
            }
            assert!(start.elapsed() < timeout, "study {id}: control plane unreachable");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn completed_ids(&self, study: i64) -> Vec<i64> {
        self.trials(study)
            .await
            .iter()
            .filter(|t| t["state"] == "complete")
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    }
}

/// Small shapes (16 px, one 4-channel block, batch 16) for `epochs` epochs: a few seconds per trial.
pub fn quick_study(dataset: i64, trials: u32, epochs: u32) -> serde_json::Value {
    serde_json::json!({
        "dataset_id": dataset,
        "bounds": {"epochs": {"low": epochs, "high": epochs}, "image_size": {"low": 16, "high": 16},
                   "conv_blocks": {"low": 1, "high": 1}, "channels": {"low": 4, "high": 8},
                   "batch_size": {"low": 16, "high": 16}},
        "budget": {"trials": trials},
        "sampler": "random",
        "seed": 3
    })
}

/// The small dataset every quick study trains on.
pub fn quick_zip() -> Vec<u8> {
    shapes_zip(10, 3, 5)
}

/// What every scenario ends with: the study is over with `complete` trials complete; nothing queued or
/// running; every complete trial has its weights; no model files for trials that did not complete and
/// no half-written upload anywhere. Returns the study.
pub async fn check_clean(api: &Api, study: i64, data_dir: &Path) -> Vec<serde_json::Value> {
    let trials = api.trials(study).await;
    let numbers: Vec<i64> = trials.iter().map(|t| t["number"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..numbers.len() as i64).collect();
    assert_eq!(numbers, expected, "trial numbers are gap-free");
    for t in &trials {
        let state = t["state"].as_str().unwrap();
        assert!(
            matches!(state, "complete" | "pruned" | "failed"),
            "trial left {state}: {t}"
        );
        let id = t["id"].as_i64().unwrap();
        let dir = data_dir.join("models").join(id.to_string());
        if state == "complete" {
            assert!(
                dir.join("model.safetensors").is_file(),
                "complete trial {id} lost its weights"
            );
        } else {
            assert!(!dir.exists(), "orphan model dir for {state} trial {id}: {t}");
        }
    }
    let leftovers: Vec<PathBuf> = walk(data_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part" || e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "half-written files left: {leftovers:?}");
    trials
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A TCP proxy to a target it can switch, whose traffic the test can cut: while cut, every connection
/// (open or new) is held open and nothing is forwarded either way, as a network that drops packets
/// without a FIN or RST would look to both ends.
pub struct Proxy {
    pub port: u16,
    target: Arc<Mutex<SocketAddr>>,
    cut: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(target));
        let (cut, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let (t, c, s) = (target.clone(), cut.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => match a { Ok((c, _)) => c, Err(_) => continue },
                };
                let to = *t.lock().unwrap();
                let (mut cut_rx, s) = (c.subscribe(), s.clone());
                tokio::spawn(async move {
                    let mut client = client;
                    if !*cut_rx.borrow() {
                        if let Ok(mut upstream) = TcpStream::connect(to).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
                                _ = cut_rx.wait_for(|cut| *cut) => {}
                                _ = s.cancelled() => return,
                            }
                            // Cut: hold both ends open, forward nothing.
                            s.cancelled().await;
                            drop(upstream);
                            return;
                        }
                        return;
                    }
                    s.cancelled().await;
                    drop(client);
                });
            }
        });
        Proxy {
            port,
            target,
            cut,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    pub fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }
}

/// A PostgreSQL server of the test's own (so it may restart it), from /usr/lib/postgresql/*/bin, run
/// as the `postgres` user when the test runs as root (as .ci/run does). `None` when there is none.
pub struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .collect();
        bins.sort();
        let bin = bins.pop()?;
        let data = tempfile::Builder::new()
            .prefix("tanren-faults-pg")
            .tempdir()
            .ok()?;
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
        };
        if is_root() {
            Command::new("chown")
                .args(["postgres", pg.data.path().to_str().unwrap()])
                .status()
                .ok()?;
        }
        let ok = pg
            .as_pg("initdb")
            .args([
                "-D",
                pg.data.path().to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ])
            .stdout(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        pg.ctl(&["start", "-w"]).then_some(pg)
    }

    fn as_pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn ctl(&self, args: &[&str]) -> bool {
        let data = self.data.path().to_str().unwrap().to_string();
        let log = format!("{data}/log");
        let opts = format!("-p {} -k /tmp -c listen_addresses=127.0.0.1", self.port);
        self.as_pg("pg_ctl")
            .args(["-D", &data, "-o", &opts, "-l", &log])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A fresh database on this server, as a URL.
    pub fn database(&self, name: &str) -> String {
        let ok = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-qc",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not create database {name}");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stop (fast: connections are cut) and start again.
    pub fn restart(&self) {
        assert!(
            self.ctl(&["restart", "-m", "fast", "-w"]),
            "pg_ctl restart failed"
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.ctl(&["stop", "-m", "immediate"]);
    }
}

pub fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
