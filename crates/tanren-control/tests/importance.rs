//! `GET /api/v1/studies/{id}/importance` on the real control plane (port 0, temp data dir, SQLite)
//! with a fake worker (the real tonic service, no libtorch) whose accuracy depends on the learning
//! rate alone: 404 for an unknown study, a note while there are too few trials, then the learning
//! rate ranked first, said in words, and narrowed bounds that create a study.

use serde_json::{json, Value};
use std::pin::Pin;
use std::time::{Duration, Instant};
use tanren_core::TrialResult;
use tanren_proto::v1::worker_server::{Worker, WorkerServer};
use tanren_proto::v1::{trial_event::Event, InfoRequest, TrialEvent, TrialRequest, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const ADMIN: &str = "tnr_importance_test_admin_token";
const JOIN: &str = "importance-test-join-token";

/// Every REST call of this file goes through here: the one place that adds credentials. (The fake
/// worker registers with the join token and uploads weights with its trial token instead.)
fn send(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.bearer_auth(ADMIN)
}

struct App {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl App {
    async fn spawn() -> (App, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = tanren_control::Config::new(dir.path().join("control"));
        c.tick = Duration::from_millis(50);
        c.admin_token = Some(ADMIN.into());
        c.join_token = Some(JOIN.into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tanren_control::start(c, listener, shutdown.clone())
            .await
            .unwrap();
        let url = server.url().to_string();
        let ds = server
            .state
            .store
            .insert_dataset(tanren_store::NewDataset {
                name: "fake",
                sha256: "00ff",
                num_classes: 2,
                num_train: 10,
                num_test: 4,
                size_bytes: 1,
                summary: "{\"split_seed\": 1}",
            })
            .await
            .unwrap();
        tokio::spawn(server.serve());
        let app = App {
            url,
            http: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        };
        (app, ds.id)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = send(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = send(self.http.post(format!("{}{path}", self.url)).json(body))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}

/// Validation accuracy peaks at learning rate 10^-2.5 and falls with its log distance; nothing
/// else matters.
fn accuracy(config_json: &str) -> f64 {
    let cfg = tanren_proto::decode_config(config_json).unwrap();
    0.95 - 0.1 * (cfg.learning_rate.log10() + 2.5).powi(2)
}

#[derive(Clone)]
struct Fake {
    http: reqwest::Client,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TrialEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for Fake {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<WorkerInfo>, Status> {
        Ok(Response::new(WorkerInfo::default()))
    }

    type RunTrialStream = EventStream;

    async fn run_trial(&self, req: Request<TrialRequest>) -> Result<Response<EventStream>, Status> {
        let req = req.into_inner();
        let acc = accuracy(&req.config_json);
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
            inference_ms_per_image: 0.1,
            inference_images_per_second: 1000.0,
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

/// Serves the fake on port 0 and registers it every 100 ms until `stop`.
async fn fake_worker(app: &App, stop: CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", listener.local_addr().unwrap());
    let fake = Fake {
        http: app.http.clone(),
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
    let (http, url) = (app.http.clone(), app.url.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importance_names_the_learning_rate_and_narrows_it() {
    let (app, dataset_id) = App::spawn().await;

    let (status, body) = app.get("/api/v1/studies/999/importance").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    let create = json!({"dataset_id": dataset_id, "sampler": "random", "seed": 3, "budget": {"trials": 24}});
    let (status, study) = app.post("/api/v1/studies", &create).await;
    assert_eq!(status, 201, "{study}");
    let id = study["id"].as_i64().unwrap();

    // No worker yet: no trial has finished.
    let (status, body) = app.get(&format!("/api/v1/studies/{id}/importance")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["importances"], json!([]), "{body}");
    assert_eq!(body["trials_used"], 0);
    let note = body["note"].as_str().unwrap();
    assert!(note.contains("at least 6 complete trials"), "{note}");
    assert_eq!(
        body["narrowed"]["learning_rate"],
        json!({"low": 1e-4, "high": 1e-2}),
        "{body}"
    );

    let stop = CancellationToken::new();
    fake_worker(&app, stop.clone()).await;
    let start = Instant::now();
    loop {
        let (_, s) = app.get(&format!("/api/v1/studies/{id}")).await;
        if s["state"] != "running" {
            assert_eq!(s["state"], "complete", "{s}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "study still running: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();

    let (status, body) = app.get(&format!("/api/v1/studies/{id}/importance")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "ped-anova");
    assert_eq!(body["trials_used"], 24, "{body}");
    assert!(body["note"].is_null(), "{body}");
    let imps = body["importances"].as_array().unwrap();
    assert_eq!(imps.len(), 8, "the default search's eight parameters: {body}");
    assert_eq!(imps[0]["param"], "learning_rate", "{body}");
    assert_eq!(imps[0]["label"], "learning rate");
    assert_eq!(
        (&imps[0]["notable"], &imps[0]["narrowed"]),
        (&json!(true), &json!(true)),
        "{body}"
    );
    // Measured 0.46, conv blocks second at 0.29 (seeded random search and one worker, so
    // deterministic; 24 trials leave that much noise).
    assert!(imps[0]["importance"].as_f64().unwrap() > 0.4, "{body}");
    let sum: f64 = imps.iter().map(|p| p["importance"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    let first = body["sentences"][0].as_str().unwrap();
    assert!(first.starts_with("Learning rate"), "{body}");

    // fANOVA on request says the same; an unknown method is refused, naming the field.
    let (status, fa) = app
        .get(&format!("/api/v1/studies/{id}/importance?method=fanova"))
        .await;
    assert_eq!(status, 200, "{fa}");
    assert_eq!(fa["method"], "fanova");
    assert_eq!(fa["importances"][0]["param"], "learning_rate", "{fa}");
    let (status, bad) = app
        .get(&format!("/api/v1/studies/{id}/importance?method=shap"))
        .await;
    assert_eq!((status, &bad["error"]["field"]), (400, &json!("method")), "{bad}");

    // The best trials' learning rates lie around 10^-2.5; the narrowed range holds them, is
    // narrower than 1e-4..1e-2, and a study can be created from it as is.
    let lr = &body["narrowed"]["learning_rate"];
    let (low, high) = (lr["low"].as_f64().unwrap(), lr["high"].as_f64().unwrap());
    let best = &imps[0]["best_range"];
    assert!(
        low <= best["low"].as_f64().unwrap() && high >= best["high"].as_f64().unwrap(),
        "{body}"
    );
    assert!(
        low >= 1e-4 && high <= 1e-2 && (low, high) != (1e-4, 1e-2),
        "{body}"
    );
    let again = json!({"dataset_id": dataset_id, "bounds": body["narrowed"], "budget": {"trials": 1}});
    let (status, created) = app.post("/api/v1/studies", &again).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["space"]["space"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "learning_rate")
            .unwrap()["low"],
        json!(low)
    );
}
