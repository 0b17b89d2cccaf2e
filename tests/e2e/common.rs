//! One helper to boot the platform (`TestApp::spawn`) plus generated test data (drawn shapes).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The admin token and join token every test control plane is started with.
pub const ADMIN_TOKEN: &str = "tnr_test_admin_0123456789abcdef";
pub const JOIN_TOKEN: &str = "test-join-token-0123456789abcdef";

/// A client that sends `token` as a bearer with every request, trusting the PEM CA certificate at
/// `ca` too (TLS tests).
pub fn client_trusting(token: &str, ca: Option<&std::path::Path>) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let mut b = reqwest::Client::builder().default_headers(h);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// A WebSocket request to `url` carrying the admin token.
pub fn ws_request(url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    req
}

pub struct TestApp {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// Stops in-process workers (and everything at drop).
    shutdown: CancellationToken,
    /// Stops only the control plane (restart tests).
    control_shutdown: CancellationToken,
    control: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    config: tanren_control::Config,
    /// The CA that signed the control plane's certificate (TLS tests); worker processes trust it.
    ca_cert: Option<PathBuf>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.control_shutdown.cancel();
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// A control plane on 127.0.0.1:0 with a temp data dir and SQLite database; no workers yet. `http`
    /// carries the admin token.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Like `spawn`, with a chance to change the control plane's config first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut tanren_control::Config)) -> TestApp {
        Self::spawn_trusting(None, tweak).await
    }

    /// Like `spawn_with`; `ca_cert` (a PEM file) is trusted by `http` and by worker processes, for a
    /// control plane the tweak gives TLS.
    pub async fn spawn_trusting(
        ca_cert: Option<PathBuf>,
        tweak: impl FnOnce(&mut tanren_control::Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tanren_control::Config::new(dir.path().join("control"));
        config.worker_timeout = Duration::from_secs(3);
        config.tick = Duration::from_millis(100);
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.join_token = Some(JOIN_TOKEN.into());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let control_shutdown = CancellationToken::new();
        let control = tokio::spawn(tanren_control::run(
            config.clone(),
            listener,
            control_shutdown.clone(),
        ));
        let app = TestApp {
            url,
            dir,
            http: client_trusting(ADMIN_TOKEN, ca_cert.as_deref()),
            shutdown: CancellationToken::new(),
            control_shutdown,
            control: Some(control),
            config,
            ca_cert,
        };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&self) {
        self.wait_until(Duration::from_secs(20), || async {
            self.http
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                .is_ok()
        })
        .await;
    }

    /// Stop the control plane (as a deploy or crash would) and start a new one on the same address
    /// and data dir. Workers keep running and re-register through their heartbeat.
    pub async fn restart_control(&mut self) {
        self.control_shutdown.cancel();
        self.control.take().unwrap().await.unwrap().unwrap();
        let addr = self.url.split_once("://").unwrap().1.to_string();
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        self.control_shutdown = CancellationToken::new();
        let run = tanren_control::run(self.config.clone(), listener, self.control_shutdown.clone());
        self.control = Some(tokio::spawn(run));
        self.wait_healthy().await;
    }

    /// A worker inside this test process (shares its runtime), training on CPU. Answers where its
    /// metrics endpoint listens (loopback, no token).
    pub async fn spawn_worker(&self, id: &str) -> std::net::SocketAddr {
        self.spawn_worker_with_slots(id, 1).await
    }

    /// Like `spawn_worker`, running up to `slots` trials at once.
    pub async fn spawn_worker_with_slots(&self, id: &str, slots: u32) -> std::net::SocketAddr {
        let metrics_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = tanren_worker::MetricsEndpoint::new(metrics_listener, None).unwrap();
        let metrics_addr = metrics.local_addr();
        let config = tanren_worker::Config {
            control_url: Some(self.url.clone()),
            advertise_url: None,
            worker_id: id.into(),
            data_dir: self.dir.path().join(id),
            device: "cpu".into(),
            threads: Some(2),
            slots,
            heartbeat: Duration::from_millis(300),
            join_token: JOIN_TOKEN.into(),
            tls: None,
            ca_cert: None,
            metrics: Some(metrics),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tokio::spawn(tanren_worker::run(config, listener, self.shutdown.clone()));
        self.wait_for_worker(id).await;
        metrics_addr
    }

    /// A worker as a separate OS process (so a test can kill it).
    pub async fn spawn_worker_process(&self, id: &str) -> Child {
        self.spawn_worker_process_with(id, &[]).await
    }

    /// Like `spawn_worker_process`, with more environment (e.g. the worker's TLS certificate).
    pub async fn spawn_worker_process_with(&self, id: &str, env: &[(&str, &std::ffi::OsStr)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tanren-e2e-worker"));
        if let Some(ca) = &self.ca_cert {
            cmd.env("TANREN_CA_CERT", ca);
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .env("TANREN_CONTROL_URL", &self.url)
            .env("TANREN_WORKER_LISTEN", "127.0.0.1:0")
            .env("TANREN_WORKER_ID", id)
            .env("TANREN_WORKER_DATA", self.dir.path().join(id))
            .env("TANREN_DEVICE", "cpu")
            .env("TANREN_THREADS", "1")
            .env("TANREN_HEARTBEAT_MS", "300")
            .env("TANREN_JOIN_TOKEN", JOIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start worker process");
        self.wait_for_worker(id).await;
        child
    }

    async fn wait_for_worker(&self, id: &str) {
        self.wait_until(Duration::from_secs(60), || async {
            let v = self.get("/api/v1/workers").await;
            v["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["id"] == id && w["alive"] == true)
        })
        .await;
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

    pub async fn upload(&self, zip: Vec<u8>, name: &str) -> (u16, serde_json::Value) {
        let part = reqwest::multipart::Part::bytes(zip).file_name(format!("{name}.zip"));
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = self
            .http
            .post(format!("{}/api/v1/datasets", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    pub async fn wait_until<F, Fut>(&self, timeout: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !f().await {
            assert!(start.elapsed() < timeout, "condition not met within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll a study until it leaves `running`.
    pub async fn wait_study(&self, id: i64, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.get(&format!("/api/v1/studies/{id}")).await;
            if s["state"] != "running" {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "study {id} still running after {timeout:?}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn data_path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// Tiny deterministic RNG so generated data is the same on every run.
pub struct Lcg(u64);
impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.next() % (hi - lo)
    }
}

pub const SHAPES: [&str; 3] = ["circle", "square", "stripe"];

/// A noisy 32x32 PNG of one shape, in a random colour, size and place.
pub fn shape_png(kind: &str, rng: &mut Lcg) -> Vec<u8> {
    let s = 32u32;
    let bg = rng.range(0, 80) as u8;
    let color = [
        rng.range(150, 256) as u8,
        rng.range(150, 256) as u8,
        rng.range(150, 256) as u8,
    ];
    let r = rng.range(5, 9) as i32;
    let cx = rng.range(r as u32 + 1, s - r as u32 - 1) as i32;
    let cy = rng.range(r as u32 + 1, s - r as u32 - 1) as i32;
    let mut img = image::RgbImage::new(s, s);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as i32 - cx, y as i32 - cy);
        let inside = match kind {
            "circle" => dx * dx + dy * dy <= r * r,
            "square" => dx.abs() <= r && dy.abs() <= r,
            _ => dy.abs() <= 1 && dx.abs() <= r + 4,
        };
        let noise = (rng.next() % 30) as u8;
        *p = if inside {
            image::Rgb(color)
        } else {
            image::Rgb([bg + noise, bg + noise, bg + noise])
        };
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A zip in the seed's layout: `train/<class>/*.png` and `test/<class>/*.png`.
pub fn shapes_zip(train_per_class: usize, test_per_class: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg::new(seed);
    let mut files = Vec::new();
    for (split, n) in [("train", train_per_class), ("test", test_per_class)] {
        for class in SHAPES {
            for i in 0..n {
                files.push((format!("{split}/{class}/{i:03}.png"), shape_png(class, &mut rng)));
            }
        }
    }
    zip_of(&files)
}

pub fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}
