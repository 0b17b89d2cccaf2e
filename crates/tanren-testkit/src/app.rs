//! The real control plane on port 0 (temp data dir, SQLite, a fake dataset row), with request
//! helpers that carry the admin token.

use crate::fake::{Behaviour, FakeWorker, Score};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "tnr_rest_test_admin_token";
pub const JOIN: &str = "rest-test-join-token";

pub struct App {
    pub url: String,
    /// Sends the admin token with every request.
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub dataset_id: i64,
    pub state: Arc<tanren_control::AppState>,
    /// The database the control plane uses (fixtures write into it).
    pub database_url: String,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The control plane's defaults, with the test tokens and a quick scheduler tick.
pub fn test_config(data_dir: &Path) -> tanren_control::Config {
    let mut c = tanren_control::Config::new(data_dir.join("control"));
    c.tick = Duration::from_millis(50);
    c.admin_token = Some(ADMIN.into());
    c.join_token = Some(JOIN.into());
    c
}

/// A client that sends the admin token with every request.
pub fn admin_client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .expect("reqwest client")
}

impl App {
    /// The control plane on `data_dir` (created with a fake dataset of 2 classes, 10 training and 4
    /// test images, the first time).
    pub async fn spawn(data_dir: &Path) -> App {
        App::spawn_with(data_dir, 2, 10, 4).await
    }

    /// The control plane with a fake dataset row of this size (no files: only the counts are known).
    pub async fn spawn_with(data_dir: &Path, num_classes: i64, num_train: i64, num_test: i64) -> App {
        App::start(test_config(data_dir), num_classes, num_train, num_test)
            .await
            .expect("control plane starts")
    }

    /// The control plane with this configuration (its tokens must be `ADMIN` and `JOIN`), and a fake
    /// dataset row of this size unless one exists.
    pub async fn start(
        config: tanren_control::Config,
        num_classes: i64,
        num_train: i64,
        num_test: i64,
    ) -> anyhow::Result<App> {
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("tanren.db").display()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = CancellationToken::new();
        let server = tanren_control::start(config, listener, shutdown.clone()).await?;
        let url = server.url().to_string();
        let state = server.state.clone();
        let store = &state.store;
        let dataset_id = match store.datasets().await?.first() {
            Some(d) => d.id,
            None => {
                store
                    .insert_dataset(tanren_store::NewDataset {
                        name: "fake",
                        sha256: "00ff",
                        num_classes,
                        num_train,
                        num_test,
                        size_bytes: 1,
                        summary: "{\"split_seed\": 1}",
                    })
                    .await?
                    .id
            }
        };
        let server = Some(tokio::spawn(server.serve()));
        Ok(App {
            url,
            http: admin_client(),
            shutdown,
            dataset_id,
            state,
            database_url,
            server,
        })
    }

    /// Shut the control plane down and wait until it has (its data dir is free again).
    pub async fn shut_down(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    /// Polls the study until it is no longer running (at most `limit`), and returns it.
    pub async fn wait_until_done(&self, id: i64, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (_, s) = self.get(&format!("/api/v1/studies/{id}")).await;
            if s["state"] != "running" {
                return s;
            }
            assert!(start.elapsed() < limit, "study still running: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fake worker (id `fake`) whose trials finish at once with the score of their config; it
    /// registers every 100 ms until `stop`.
    pub async fn fake_worker(&self, score: Score, stop: CancellationToken) {
        let behaviour = Behaviour {
            score,
            ..Behaviour::default()
        };
        let w = self
            .worker("fake", behaviour, Duration::from_millis(100), stop)
            .await;
        // Served until `stop`, not until the handle goes.
        w.keep_running();
    }

    /// A fake worker with this id and behaviour, registering every `heartbeat` until it is dropped or
    /// `stop` is cancelled.
    pub async fn worker(
        &self,
        id: &str,
        behaviour: Behaviour,
        heartbeat: Duration,
        stop: CancellationToken,
    ) -> FakeWorker {
        FakeWorker::spawn(&self.url, JOIN, id, behaviour, heartbeat, stop)
            .await
            .expect("fake worker starts")
    }
}
