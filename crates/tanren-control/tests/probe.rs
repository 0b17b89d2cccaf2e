//! The advice with probes: the control plane plans them, sends them to a free worker over the real
//! tonic service (a scripted fake here, no libtorch), and its bounds, reasons, estimate and later
//! warnings follow what the worker measured; without a worker it says it fell back.

mod common;

use common::App;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tanren_core::estimate::epoch_work;
use tanren_core::probe::{BatchProbe, BatchTry, LrCurve, ProbeReport, TimingProbe};
use tanren_proto::v1::worker_server::{Worker, WorkerServer};
use tanren_proto::v1::{InfoRequest, ProbeReply, ProbeRequest, TrialEvent, TrialRequest, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Answers `Probe` with a scripted report (after downloading the dataset with the probe's token, as
/// the real worker does); refuses trials.
#[derive(Clone)]
struct ProbeFake {
    /// (the download token, the status its download got)
    seen: Arc<Mutex<Vec<(String, String, u16)>>>,
}

type EventStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<TrialEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for ProbeFake {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<WorkerInfo>, Status> {
        Ok(Response::new(WorkerInfo::default()))
    }

    type RunTrialStream = EventStream;

    async fn run_trial(&self, _: Request<TrialRequest>) -> Result<Response<EventStream>, Status> {
        Err(Status::unimplemented("this fake only probes"))
    }

    async fn probe(&self, req: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        let req = req.into_inner();
        let plan = tanren_proto::decode_probe_plan(&req.plan_json)?;
        let got = reqwest::Client::new()
            .get(&req.dataset_url)
            .bearer_auth(&req.trial_token)
            .send()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.seen.lock().unwrap().push((
            req.trial_token.clone(),
            req.dataset_url.clone(),
            got.status().as_u16(),
        ));
        // The dataset of the test: 24 images, 2 classes (19 train after the 80/20 split).
        let data = tanren_core::estimate::DataSize { train: 19, test: 5 };
        let lr = |o| LrCurve {
            optimizer: o,
            lrs: vec![1e-4, 1e-3, 1e-2, 1e-1],
            losses: vec![Some(0.7), Some(0.6), Some(0.3), None],
            steepest_lr: Some(3e-3),
            divergence_lr: Some(0.1),
        };
        let report = ProbeReport {
            device: "cpu".into(),
            lr: plan.optimizers.iter().map(|&o| lr(o)).collect(),
            batch: Some(BatchProbe {
                tries: vec![BatchTry {
                    batch: 8,
                    images_per_second: Some(800.0),
                }],
                // As a CUDA worker would report it: larger batches ran out of memory.
                max_batch: Some(8),
                knee_batch: Some(8),
            }),
            timing: plan
                .timing
                .iter()
                .map(|c| TimingProbe {
                    config: c.clone(),
                    steps: plan.timing_steps,
                    seconds_per_step: 0.01,
                    seconds_per_eval_batch: 0.01,
                    epoch_seconds: 0.5 * epoch_work(c, data).powf(0.8),
                })
                .collect(),
            overhead: None,
            seconds: 1.5,
            cut_short: vec![],
        };
        Ok(Response::new(ProbeReply {
            report_json: serde_json::to_string(&report).unwrap(),
        }))
    }
}

/// The fake on port 0, registered every 100 ms until `stop`.
async fn probe_worker(app: &App, stop: CancellationToken) -> ProbeFake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", listener.local_addr().unwrap());
    let fake = ProbeFake { seen: Arc::default() };
    let (f, s) = (fake.clone(), stop.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(WorkerServer::new(f))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                s.cancelled(),
            )
            .await
    });
    let (http, url) = (app.http.clone(), app.url.clone());
    tokio::spawn(async move {
        loop {
            let body = json!({"id": "prober", "grpc_url": grpc_url, "device": "cpu"});
            let _ = http
                .post(format!("{url}/api/v1/workers"))
                .bearer_auth(common::JOIN)
                .json(&body)
                .send()
                .await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    fake
}

/// A zip of two class folders of greyscale 20x20 PNGs.
fn tiny_zip() -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (class, base) in [("dark", 40u8), ("light", 200u8)] {
        for i in 0..12u32 {
            let img = image::GrayImage::from_fn(20, 20, |x, y| {
                image::Luma([base.wrapping_add(((x * 7 + y * 3 + i) % 23) as u8)])
            });
            let mut png = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageLuma8(img)
                .write_to(&mut png, image::ImageFormat::Png)
                .unwrap();
            w.start_file(
                format!("{class}/{i}.png"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(&png.into_inner()).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

async fn upload(app: &App) -> i64 {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(tiny_zip()).file_name("tiny.zip"),
    );
    let r = app
        .http
        .post(format!("{}/api/v1/datasets", app.url))
        .bearer_auth(common::ADMIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

fn reason<'a>(advice: &'a Value, param: &str) -> &'a str {
    advice["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["param"] == param)
        .and_then(|s| s["reason"].as_str())
        .unwrap_or_else(|| panic!("no {param} in {advice}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_without_a_worker_falls_back_to_statistics_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn_with(dir.path(), 10, 400, 100).await;
    let id = upload(&app).await;
    let (status, advice) = app
        .post(&format!("/api/v1/datasets/{id}/advice"), &json!({}))
        .await;
    assert_eq!(status, 200, "{advice}");
    assert_eq!(advice["probe"]["ran"], false, "{advice}");
    let note = advice["probe"]["note"].as_str().unwrap();
    assert!(
        note.contains("no worker") && note.contains("statistics"),
        "{note}"
    );
    // The body is optional; an unknown field or optimizer is refused with the field named.
    let r = app
        .http
        .post(format!("{}/api/v1/datasets/{id}/advice", app.url))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, e) = app
        .post(
            &format!("/api/v1/datasets/{id}/advice"),
            &json!({"optimizers": ["lion"]}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "optimizers", "{e}");
    let (status, _) = app
        .post(&format!("/api/v1/datasets/{id}/advice"), &json!({"probes": true}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_shape_the_advice_the_estimate_and_later_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn_with(dir.path(), 10, 400, 100).await;
    let id = upload(&app).await;
    let stop = CancellationToken::new();
    let fake = probe_worker(&app, stop.clone()).await;
    // Wait for the worker to be live.
    for _ in 0..100 {
        let (_, w) = app.get("/api/v1/workers").await;
        if w["workers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w["alive"] == true))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, advice) = app
        .post(
            &format!("/api/v1/datasets/{id}/advice"),
            &json!({"optimizers": ["adam"]}),
        )
        .await;
    assert_eq!(status, 200, "{advice}");
    assert_eq!(advice["probe"]["ran"], true, "{advice}");
    assert_eq!(advice["probe"]["worker_id"], "prober", "{advice}");
    // The worker downloaded the dataset with the probe's token.
    let (token, url, got) = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(got, 200, "the probe token must open the dataset download");
    // The token died with the probe.
    let after = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 401);

    let lr = reason(&advice, "learning_rate");
    assert!(lr.contains("3e-3") && lr.contains("0.1"), "{lr}");
    let high = advice["bounds"]["learning_rate"]["high"].as_f64().unwrap();
    assert!(high <= 0.1 / 3.0 + 1e-12, "{advice}");
    assert!(
        advice["bounds"]["batch_size"]["high"].as_f64().unwrap() <= 8.0,
        "{advice}"
    );
    assert_eq!(advice["warnings"], json!([]), "{advice}");
    let timings = advice["probe"]["report"]["timing"].as_array().unwrap().len();
    assert!((3..=5).contains(&timings), "{advice}");
    assert_eq!(
        advice["estimate"]["calibrated_on_probes"].as_u64(),
        Some(timings as u64),
        "{advice}"
    );
    assert!(advice["measured"]["timing"]
        .as_array()
        .is_some_and(|t| t.len() == timings));

    // A study past the range test's blow-up is warned; a batch past the measured memory is refused.
    let body = json!({"dataset_id": id, "bounds": {"learning_rate": {"low": 1e-3, "high": 0.5}}});
    let (status, est) = app.post("/api/v1/studies/estimate", &body).await;
    assert_eq!(status, 200, "{est}");
    assert!(
        est["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["param"] == "learning_rate" && w["message"].as_str().unwrap().contains("blew up")),
        "{est}"
    );
    assert_eq!(
        est["estimate"]["calibrated_on_probes"].as_u64(),
        Some(timings as u64),
        "{est}"
    );
    let body = json!({"dataset_id": id, "bounds": {"batch_size": {"low": 4, "high": 16}}});
    let (status, e) = app.post("/api/v1/studies", &body).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "bounds.batch_size", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("limit is 8"),
        "{e}"
    );

    // Asked not to probe: the earlier probes still count, and the answer says so.
    let (status, again) = app
        .post(&format!("/api/v1/datasets/{id}/advice"), &json!({"probe": false}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["probe"]["ran"], false);
    assert!(
        again["probe"]["note"]
            .as_str()
            .unwrap()
            .contains("measured earlier"),
        "{again}"
    );
    assert_eq!(again["bounds"], advice["bounds"]);
    assert_eq!(fake.seen.lock().unwrap().len(), 1, "no second probe");
    stop.cancel();
}
