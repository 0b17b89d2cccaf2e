//! What the control plane's REST-level tests share: the real control plane on port 0 (temp data dir,
//! SQLite, a fake dataset row) and a fake worker serving the real tonic service without libtorch,
//! whose trial results come from a function of the trial's config.

#![allow(dead_code)] // each test file uses part of it

use serde_json::{json, Value};
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tanren_core::{TrainConfig, TrialResult};
use tanren_proto::v1::worker_server::{Worker, WorkerServer};
use tanren_proto::v1::{trial_event::Event, InfoRequest, TrialEvent, TrialRequest, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub const ADMIN: &str = "tnr_rest_test_admin_token";
pub const JOIN: &str = "rest-test-join-token";

/// Every REST call goes through here: the one place that adds credentials. (The fake worker
/// registers with the join token and uploads weights with its trial token instead.)
fn send(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.bearer_auth(ADMIN)
}

pub struct App {
    pub url: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub dataset_id: i64,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl App {
    /// The control plane on `data_dir` (created with a fake dataset of 2 classes, 10 training and 4
    /// test images, the first time).
    pub async fn spawn(data_dir: &Path) -> App {
        App::spawn_with(data_dir, 2, 10, 4).await
    }

    /// The control plane with a fake dataset row of this size (no files: only the counts are known).
    pub async fn spawn_with(data_dir: &Path, num_classes: i64, num_train: i64, num_test: i64) -> App {
        let mut c = tanren_control::Config::new(data_dir.join("control"));
        c.tick = Duration::from_millis(50);
        c.admin_token = Some(ADMIN.into());
        c.join_token = Some(JOIN.into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tanren_control::start(c, listener, shutdown.clone())
            .await
            .unwrap();
        let url = server.url().to_string();
        let store = &server.state.store;
        let dataset_id = match store.datasets().await.unwrap().first() {
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
                    .await
                    .unwrap()
                    .id
            }
        };
        tokio::spawn(server.serve());
        App {
            url,
            http: reqwest::Client::new(),
            shutdown,
            dataset_id,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = send(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = send(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = send(self.http.post(format!("{}{path}", self.url)).json(body))
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

    /// Serves a fake worker on port 0 and registers it every 100 ms until `stop`.
    pub async fn fake_worker(&self, score: Score, stop: CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Fake {
            http: self.http.clone(),
            score,
        };
        let s = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(WorkerServer::new(fake))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    s.cancelled(),
                )
                .await
        });
        let (http, url) = (self.http.clone(), self.url.clone());
        tokio::spawn(async move {
            loop {
                let body = json!({"id": "fake", "grpc_url": grpc_url, "device": "cpu"});
                let _ = http
                    .post(format!("{url}/api/v1/workers"))
                    .bearer_auth(JOIN)
                    .json(&body)
                    .send()
                    .await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
    }
}

/// A trial's (validation accuracy, inference ms per image) from its config.
pub type Score = fn(&TrainConfig) -> (f64, f64);

#[derive(Clone)]
struct Fake {
    http: reqwest::Client,
    score: Score,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TrialEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for Fake {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<WorkerInfo>, Status> {
        Ok(Response::new(WorkerInfo::default()))
    }

    type RunTrialStream = EventStream;

    async fn probe(
        &self,
        _: Request<tanren_proto::v1::ProbeRequest>,
    ) -> Result<Response<tanren_proto::v1::ProbeReply>, Status> {
        Err(Status::unimplemented("this fake runs trials only"))
    }

    async fn run_trial(&self, req: Request<TrialRequest>) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let cfg = tanren_proto::decode_config(&req.config_json)?;
        let (acc, ms) = (self.score)(&cfg);
        let weights = self
            .http
            .put(&req.artifact_url)
            .bearer_auth(&req.trial_token)
            .body(vec![7u8; 64])
            .send()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if !weights.status().is_success() {
            return Err(Status::internal("weights refused"));
        }
        let started = tanren_proto::v1::Started {
            device: "cpu".into(),
            dataset_cache_hit: true,
            prepare_seconds: 0.0,
        };
        let result = TrialResult {
            val_accuracy: acc,
            val_loss: 1.0 - acc,
            // What the confusion matrix below says (results are checked on receive).
            test_accuracy: 0.75,
            test_loss: 1.0 - acc,
            per_class_accuracy: vec![0.5, 1.0],
            confusion: vec![vec![1, 1], vec![0, 2]],
            test_predictions: vec![0, 1, 1, 1],
            train_seconds: 0.1,
            prepare_seconds: 0.0,
            inference_ms_per_image: ms,
            inference_images_per_second: 1000.0 / ms,
            parameter_count: 10,
            model_bytes: 64,
            epochs_completed: 1,
            device: "cpu".into(),
            stopped_early: false,
            peak_memory_bytes: None,
        };
        let events = vec![
            Ok(TrialEvent {
                event: Some(Event::Started(started)),
            }),
            Ok(TrialEvent {
                event: Some(Event::Epoch(tanren_proto::v1::Epoch {
                    epoch: 1,
                    train_loss: 1.0,
                    val_loss: 1.0 - acc,
                    val_accuracy: acc,
                    elapsed_seconds: 0.1,
                })),
            }),
            Ok(TrialEvent {
                event: Some(Event::Result(tanren_proto::encode_result(&result))),
            }),
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }
}
