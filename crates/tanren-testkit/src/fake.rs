//! A fake worker: the real tonic worker service (`tanren_proto`), no libtorch. A trial takes
//! `Behaviour::trial_time` (its epochs spread evenly over it), uploads 64 bytes of weights with its
//! trial token, and ends with a result scored from its config. It registers with the join token
//! every `heartbeat`, as a real worker does, and keeps a log of when each trial arrived and when its
//! result left, from which the load bench measures the scheduler's dispatch overhead.

use serde_json::json;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tanren_core::{TrainConfig, TrialResult};
use tanren_proto::v1::worker_server::{Worker, WorkerServer};
use tanren_proto::v1::{trial_event::Event, InfoRequest, TrialEvent, TrialRequest, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// A trial's (validation accuracy, inference ms per image) from its config.
pub type Score = fn(&TrainConfig) -> (f64, f64);

fn constant_score(_: &TrainConfig) -> (f64, f64) {
    (0.75, 0.1)
}

#[derive(Clone, Copy)]
pub struct Behaviour {
    pub score: Score,
    /// How long a trial takes from its arrival to its result (zero: at once).
    pub trial_time: Duration,
    /// Epochs reported per trial (at least 1).
    pub epochs: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            score: constant_score,
            trial_time: Duration::ZERO,
            epochs: 1,
        }
    }
}

/// When one trial reached the worker and when its result was sent back.
#[derive(Debug, Clone, Copy)]
pub struct Visit {
    pub trial_id: i64,
    pub arrived: Instant,
    pub result_sent: Option<Instant>,
}

pub struct FakeWorker {
    pub id: String,
    pub grpc_url: String,
    /// Every trial in arrival order.
    pub visits: Arc<Mutex<Vec<Visit>>>,
    stop: CancellationToken,
    stop_on_drop: bool,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop.cancel();
        }
    }
}

impl FakeWorker {
    /// Serve gRPC on 127.0.0.1, port 0, and register with the control plane at `control_url` every
    /// `heartbeat` (the first time at once) until `stop` or the handle is dropped.
    pub async fn spawn(
        control_url: &str,
        join_token: &str,
        id: &str,
        behaviour: Behaviour,
        heartbeat: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<FakeWorker> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc_url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::new();
        let visits: Arc<Mutex<Vec<Visit>>> = Arc::default();
        let fake = Fake {
            http: http.clone(),
            behaviour,
            visits: visits.clone(),
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
        let (url, token, s) = (control_url.to_string(), join_token.to_string(), stop.clone());
        let body = json!({"id": id, "grpc_url": grpc_url, "device": "cpu"});
        tokio::spawn(async move {
            loop {
                let _ = http
                    .post(format!("{url}/api/v1/workers"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(heartbeat) => {}
                }
            }
        });
        Ok(FakeWorker {
            id: id.to_string(),
            grpc_url,
            visits,
            stop,
            stop_on_drop: true,
        })
    }

    /// Let the worker run until its `stop` token is cancelled, not until this handle goes.
    pub fn keep_running(mut self) {
        self.stop_on_drop = false;
    }

    pub fn visits(&self) -> Vec<Visit> {
        self.visits.lock().expect("visits lock").clone()
    }
}

#[derive(Clone)]
struct Fake {
    http: reqwest::Client,
    behaviour: Behaviour,
    visits: Arc<Mutex<Vec<Visit>>>,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TrialEvent, Status>> + Send>>;

fn event(e: Event) -> Result<TrialEvent, Status> {
    Ok(TrialEvent { event: Some(e) })
}

/// What the fake reports for a trial scored `(acc, ms)`; it matches the fake dataset of 2 classes and
/// 4 test images (results are checked on receive).
pub fn result(acc: f64, ms: f64, epochs: u32, seconds: f64) -> TrialResult {
    TrialResult {
        val_accuracy: acc,
        val_loss: 1.0 - acc,
        test_accuracy: 0.75,
        test_loss: 1.0 - acc,
        per_class_accuracy: vec![0.5, 1.0],
        confusion: vec![vec![1, 1], vec![0, 2]],
        test_predictions: vec![0, 1, 1, 1],
        train_seconds: seconds.max(0.1),
        prepare_seconds: 0.0,
        inference_ms_per_image: ms,
        inference_images_per_second: 1000.0 / ms,
        parameter_count: 10,
        model_bytes: 64,
        epochs_completed: epochs,
        device: "cpu".into(),
        stopped_early: false,
        peak_memory_bytes: None,
    }
}

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
        let arrived = Instant::now();
        let req = req.into_inner();
        let visit = {
            let mut v = self.visits.lock().expect("visits lock");
            v.push(Visit {
                trial_id: req.trial_id,
                arrived,
                result_sent: None,
            });
            v.len() - 1
        };
        let cfg = tanren_proto::decode_config(&req.config_json)?;
        let (acc, ms) = (self.behaviour.score)(&cfg);
        let b = self.behaviour;
        let epochs = b.epochs.max(1);
        let started = tanren_proto::v1::Started {
            device: "cpu".into(),
            dataset_cache_hit: true,
            prepare_seconds: 0.0,
        };
        let epoch = move |e: u32| {
            event(Event::Epoch(tanren_proto::v1::Epoch {
                epoch: e,
                train_loss: 1.0,
                val_loss: 1.0 - acc,
                val_accuracy: acc,
                elapsed_seconds: b.trial_time.as_secs_f64() * e as f64 / epochs as f64 + 0.1,
            }))
        };
        let upload = |http: reqwest::Client, req: TrialRequest| async move {
            let r = http
                .put(&req.artifact_url)
                .bearer_auth(&req.trial_token)
                .body(vec![7u8; 64])
                .send()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if !r.status().is_success() {
                return Err(Status::internal("weights refused"));
            }
            Ok(())
        };
        let final_result = event(Event::Result(tanren_proto::encode_result(&result(
            acc,
            ms,
            epochs,
            b.trial_time.as_secs_f64(),
        ))));
        if b.trial_time.is_zero() {
            // At once: weights, then the whole stream in one go.
            upload(self.http.clone(), req).await?;
            self.visits.lock().expect("visits lock")[visit].result_sent = Some(Instant::now());
            let mut events = vec![event(Event::Started(started))];
            events.extend((1..=epochs).map(epoch));
            events.push(final_result);
            return Ok(Response::new(Box::pin(futures::stream::iter(events))));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let (http, visits) = (self.http.clone(), self.visits.clone());
        tokio::spawn(async move {
            let _ = tx.send(event(Event::Started(started))).await;
            let step = b.trial_time / epochs;
            for e in 1..=epochs {
                tokio::time::sleep_until((arrived + step * e).into()).await;
                if tx.send(epoch(e)).await.is_err() {
                    return; // the control plane closed the stream (stop, prune, shutdown)
                }
            }
            if let Err(status) = upload(http, req).await {
                let _ = tx.send(Err(status)).await;
                return;
            }
            visits.lock().expect("visits lock")[visit].result_sent = Some(Instant::now());
            let _ = tx.send(final_result).await;
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }
}
