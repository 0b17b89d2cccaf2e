//! A scripted fake worker: the real tonic worker service, no libtorch, whose trials follow a script
//! (`Step`: complete after a while, lose the connection, hang while heartbeating, answer "busy", or
//! misuse its trial token). The scheduler's integration tests drive the control plane's failure paths
//! with it; `fake` is the timed, scored one for benches.

use serde_json::json;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tanren_proto::v1::worker_server::{Worker, WorkerServer};
use tanren_proto::v1::{trial_event::Event, InfoRequest, TrialEvent, TrialRequest, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// One epoch, then the connection is lost.
    Lost,
    /// Epochs, weights, result after this long.
    Complete(Duration),
    /// Two quick epochs, then nothing, ever (the worker still heartbeats).
    Hang,
    /// Like `Complete`, but first misuses its trial token (and others'), then replays its upload; the
    /// answers are recorded in `probes`.
    Probe,
    /// "Busy" (RESOURCE_EXHAUSTED, as a worker short of memory answers) if another trial runs here,
    /// else like `Complete`.
    AloneOrBusy(Duration),
}

#[derive(Clone)]
struct Fake {
    script: Arc<Mutex<VecDeque<Step>>>,
    /// Every request it got, in order.
    seen: Arc<Mutex<Vec<TrialRequest>>>,
    /// (what was tried, HTTP status) for `Probe` steps.
    probes: Arc<Mutex<Vec<(&'static str, u16)>>>,
    http: reqwest::Client,
    /// Trials running now, and the most that ever ran at once.
    running: Arc<Mutex<(usize, usize)>>,
}

/// Counts a trial as running until dropped (with the task that streams it).
struct Running(Arc<Mutex<(usize, usize)>>);

impl Running {
    fn start(c: &Arc<Mutex<(usize, usize)>>) -> Running {
        let mut g = c.lock().unwrap();
        g.0 += 1;
        g.1 = g.1.max(g.0);
        Running(c.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.lock().unwrap().0 -= 1;
    }
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
        self.seen.lock().unwrap().push(req.clone());
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Complete(Duration::ZERO));
        let step = match step {
            Step::AloneOrBusy(_) if self.running.lock().unwrap().0 > 0 => {
                return Err(Status::resource_exhausted(
                    "worker is busy: this trial needs about 3.0 GiB of GPU memory and 1.0 GiB is free",
                ))
            }
            Step::AloneOrBusy(after) => Step::Complete(after),
            other => other,
        };
        let running = Running::start(&self.running);
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let http = self.http.clone();
        let probes = self.probes.clone();
        tokio::spawn(async move {
            let _running = running;
            let started = tanren_proto::v1::Started {
                device: "cpu".into(),
                dataset_cache_hit: true,
                prepare_seconds: 0.0,
            };
            let _ = tx
                .send(Ok(TrialEvent {
                    event: Some(Event::Started(started)),
                }))
                .await;
            let epoch = |e: u32| TrialEvent {
                event: Some(Event::Epoch(tanren_proto::v1::Epoch {
                    epoch: e,
                    train_loss: 1.0,
                    val_loss: 1.0,
                    val_accuracy: 0.5,
                    elapsed_seconds: e as f64,
                })),
            };
            if let Step::Hang = step {
                for e in 1..=2u32 {
                    let mut ev = epoch(e);
                    if let Some(Event::Epoch(m)) = &mut ev.event {
                        m.elapsed_seconds = 0.1 * e as f64;
                    }
                    let _ = tx.send(Ok(ev)).await;
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            let _ = tx.send(Ok(epoch(1))).await;
            match step {
                Step::Hang | Step::AloneOrBusy(_) => unreachable!(),
                Step::Lost => {
                    let _ = tx
                        .send(Err(Status::unavailable("connection reset by peer")))
                        .await;
                }
                Step::Probe => {
                    let put = |url: String, token: Option<&str>| {
                        let mut r = http.put(url).body(vec![7u8; 64]);
                        if let Some(t) = token {
                            r = r.bearer_auth(t);
                        }
                        async { r.send().await.unwrap().status().as_u16() }
                    };
                    let own = req.trial_token.as_str();
                    let other_trial = req.artifact_url.replace(
                        &format!("/trials/{}/", req.trial_id),
                        &format!("/trials/{}/", req.trial_id + 1000),
                    );
                    let other_sha = req.dataset_url.replace(&req.dataset_sha256, &"ab".repeat(32));
                    let mut got = vec![
                        (
                            "upload without a token",
                            put(req.artifact_url.clone(), None).await,
                        ),
                        (
                            "upload with a forged token",
                            put(req.artifact_url.clone(), Some("forged")).await,
                        ),
                        ("upload to another trial", put(other_trial, Some(own)).await),
                    ];
                    let get = |url: String| {
                        let r = http.get(url).bearer_auth(own);
                        async { r.send().await.unwrap().status().as_u16() }
                    };
                    got.push(("download another dataset", get(other_sha).await));
                    got.push(("download its own dataset", get(req.dataset_url.clone()).await));
                    got.push(("its own upload", put(req.artifact_url.clone(), Some(own)).await));
                    got.push((
                        "the upload replayed",
                        put(req.artifact_url.clone(), Some(own)).await,
                    ));
                    probes.lock().unwrap().extend(got);
                    let _ = tx
                        .send(Ok(TrialEvent {
                            event: Some(Event::Result(tanren_proto::encode_result(&crate::fake::result(
                                0.75, 0.1, 1, 0.1,
                            )))),
                        }))
                        .await;
                    // After the trial ended its token is dead.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let late = put(req.artifact_url.clone(), Some(own)).await;
                    probes
                        .lock()
                        .unwrap()
                        .push(("an upload after the trial ended", late));
                }
                Step::Complete(after) => {
                    tokio::time::sleep(after).await;
                    let r = http
                        .put(&req.artifact_url)
                        .bearer_auth(&req.trial_token)
                        .body(vec![7u8; 64])
                        .send()
                        .await
                        .unwrap();
                    if !r.status().is_success() {
                        let _ = tx.send(Err(Status::internal("weights refused"))).await;
                        return;
                    }
                    let _ = tx
                        .send(Ok(TrialEvent {
                            event: Some(Event::Result(tanren_proto::encode_result(&crate::fake::result(
                                0.75, 0.1, 1, 0.1,
                            )))),
                        }))
                        .await;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }
}

pub struct ScriptedWorker {
    /// Every trial request it got, in order.
    pub seen: Arc<Mutex<Vec<TrialRequest>>>,
    /// (what was tried, HTTP status) for `Step::Probe` trials.
    pub probes: Arc<Mutex<Vec<(&'static str, u16)>>>,
    running: Arc<Mutex<(usize, usize)>>,
    stop: CancellationToken,
}

impl ScriptedWorker {
    /// The most trials it ever ran at once.
    pub fn most_at_once(&self) -> usize {
        self.running.lock().unwrap().1
    }
}

impl Drop for ScriptedWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ScriptedWorker {
    /// Serve gRPC on 127.0.0.1, port 0, and register `slots` slots with the control plane at
    /// `control_url` (with `join_token`) every 100 ms until dropped. Trials follow `script` in
    /// arrival order, then complete at once.
    pub async fn spawn(
        control_url: &str,
        join_token: &str,
        id: &str,
        slots: u32,
        script: Vec<Step>,
    ) -> ScriptedWorker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Fake {
            script: Arc::new(Mutex::new(script.into())),
            seen: Arc::default(),
            probes: Arc::default(),
            http: reqwest::Client::new(),
            running: Arc::default(),
        };
        let seen = fake.seen.clone();
        let probes = fake.probes.clone();
        let running = fake.running.clone();
        let stop = CancellationToken::new();
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
        let (http, url, join, id, g, s) = (
            reqwest::Client::new(),
            control_url.to_string(),
            join_token.to_string(),
            id.to_string(),
            grpc_url.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let _ = http
                    .post(format!("{url}/api/v1/workers"))
                    .bearer_auth(&join)
                    .json(&json!({"id": id, "grpc_url": g, "device": "cpu", "slots": slots}))
                    .send()
                    .await;
                tokio::select! {
                    _ = s.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        ScriptedWorker {
            seen,
            probes,
            running,
            stop,
        }
    }
}
