//! The gRPC `Worker` service: up to `slots` trials at once on the one device, each admitted only if
//! its estimated peak memory fits beside the running ones (crate::admission); training runs on a
//! blocking thread and talks to the response stream through a channel. A closed stream (the control
//! plane cancelled: prune, stop, budget, or it went away) makes the trainer stop before its next step,
//! so the slot is free again within one batch rather than one epoch.
//!
//! Refusals: `RESOURCE_EXHAUSTED` is "busy, retry later" (every slot taken, or not enough memory
//! beside the running trials); `FAILED_PRECONDITION` is a trial this device can never hold.
//!
//! `Probe` (the advisor's measurements) takes every slot: it never shares the device with training.

use crate::admission::{Ledger, Reservation};
use crate::metrics::{Outcome, WorkerMetrics};
use crate::{dataset, Config};
use std::sync::Arc;
use std::time::Instant;
use tanren_core::memory::{dataset_bytes, human_bytes, trial_memory, Admission, MemoryEstimate};
use tanren_core::{TrainConfig, TrialResult};
use tanren_proto::v1::{self, trial_event::Event, worker_server::Worker};
use tanren_trainer::{DeviceReport, EpochControl, TrainError};
use tch::Device;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

#[derive(Clone)]
pub struct WorkerService {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    device: Device,
    report: DeviceReport,
    slots: Arc<Semaphore>,
    memory: Arc<Ledger>,
    datasets: dataset::Fetches,
    http: reqwest::Client,
    metrics: Arc<WorkerMetrics>,
}

/// How long a new trial waits for a slot or memory held by a cancelled trial: normally one training
/// step, but evaluation, inference timing and saving are not interruptible.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

type Tx = mpsc::Sender<Result<v1::TrialEvent, Status>>;

impl WorkerService {
    /// `http` carries dataset downloads and weight uploads (crate::tls::http_client).
    pub fn new(config: Config, device: Device, report: DeviceReport, http: reqwest::Client) -> Self {
        let slots = config.slots.max(1) as usize;
        WorkerService {
            inner: Arc::new(Inner {
                config,
                device,
                report,
                slots: Arc::new(Semaphore::new(slots)),
                memory: Ledger::new(device),
                datasets: dataset::Fetches::default(),
                http,
                metrics: Arc::default(),
            }),
        }
    }

    /// The counters the metrics endpoint renders.
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.inner.metrics.clone()
    }

    pub fn info_message(&self) -> v1::WorkerInfo {
        let r = &self.inner.report;
        v1::WorkerInfo {
            worker_id: self.inner.config.worker_id.clone(),
            device: r.device.clone(),
            device_name: r.device_name.clone(),
            torch_version: r.torch_version.clone(),
            cuda_available: r.cuda_available,
            cudnn_available: r.cudnn_available,
            slots: self.inner.config.slots.max(1),
        }
    }
}

fn event(e: Event) -> Result<v1::TrialEvent, Status> {
    Ok(v1::TrialEvent { event: Some(e) })
}

/// The control plane answered the weight upload with an error: say what it said. A full disk there
/// (507) will not heal by retrying the trial elsewhere, so it is a trial failure carrying the control
/// plane's own words; other server errors may pass (the trial is retried).
async fn refused_upload(answer: reqwest::Response) -> Status {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let said = serde_json::from_str::<tanren_api::ErrorBody>(&text)
        .map(|b| b.error.message)
        .unwrap_or(text);
    let msg = format!("the control plane refused the trial's weights ({status}): {said}");
    if status.is_server_error() && status != reqwest::StatusCode::INSUFFICIENT_STORAGE {
        Status::unavailable(msg)
    } else {
        Status::failed_precondition(msg)
    }
}

fn train_status(e: TrainError) -> Status {
    match e {
        TrainError::InvalidConfig(m) => Status::invalid_argument(m),
        TrainError::Dataset(e) => Status::failed_precondition(e.to_string()),
        TrainError::Diverged { .. } => Status::aborted(e.to_string()),
        TrainError::Cancelled { .. } => Status::cancelled(e.to_string()),
        TrainError::Torch(e) => Status::internal(format!("libtorch: {e}")),
        TrainError::Io(e) => Status::internal(format!("worker disk: {e}")),
    }
}

impl WorkerService {
    /// Reserve the trial's estimated peak memory, or refuse it: busy (retry later) when it does not
    /// fit beside the running trials, never when it does not fit this device at all. Memory held by
    /// a trial already cancelled is waited for, as a slot is.
    async fn reserve(
        &self,
        req: &v1::TrialRequest,
        cfg: &TrainConfig,
        tx: &Tx,
    ) -> Result<Reservation, Status> {
        let inner = &self.inner;
        let cuda = matches!(inner.device, Device::Cuda(_));
        let images = dataset::cached_images(&inner.config.data_dir, &req.dataset_sha256).await;
        let mut data = images.map_or(0, |n| dataset_bytes(cfg, n));
        // On CUDA a dataset too large for the device streams from host memory (tanren_trainer::data).
        let total = inner.memory.total().unwrap_or(u64::MAX);
        if cuda && data as f64 > total as f64 * tanren_trainer::memory::DEVICE_DATA_SHARE {
            data = 0;
        }
        let estimate = trial_memory(cfg, data, cuda);
        let need = estimate.total();
        let started = std::time::Instant::now();
        loop {
            let closed = tx.clone();
            match inner
                .memory
                .try_reserve(need, Box::new(move || closed.is_closed()))
            {
                Ok(r) => {
                    tracing::info!(trial_id = req.trial_id, need = %human_bytes(need), "memory reserved");
                    return Ok(r);
                }
                Err((Admission::Busy { .. }, _))
                    if inner.memory.any_closing() && started.elapsed() < BUSY_WAIT =>
                {
                    inner.memory.released().await
                }
                Err((Admission::Busy { need, free }, running)) => {
                    return Err(Status::resource_exhausted(format!(
                        "worker is busy: this trial needs about {} of {} memory ({}) and {} is free \
                         beside the {running} trial(s) running; retry later",
                        human_bytes(need),
                        self.device_label(),
                        parts(&estimate, cfg),
                        human_bytes(free),
                    )))
                }
                Err((Admission::Never { need, limit }, _)) => {
                    return Err(Status::failed_precondition(format!(
                        "this trial needs about {} of {} memory ({}) but this worker's device has {} in \
                         all; lower the batch size or image size, or run it on a worker with more memory",
                        human_bytes(need),
                        self.device_label(),
                        parts(&estimate, cfg),
                        human_bytes(limit),
                    )))
                }
                Err((Admission::Fits, _)) => unreachable!("a fitting trial is reserved"),
            }
        }
    }

    fn device_label(&self) -> &'static str {
        match self.inner.device {
            Device::Cuda(_) => "GPU",
            _ => "host",
        }
    }
}

/// The estimate by part, for a refusal's message.
fn parts(e: &MemoryEstimate, cfg: &TrainConfig) -> String {
    let mut out = format!(
        "weights and optimizer {}, activations for batch {} {}, input {}",
        human_bytes(e.weights),
        cfg.batch_size,
        human_bytes(e.activations),
        human_bytes(e.input)
    );
    if e.data > 0 {
        out.push_str(&format!(", dataset {}", human_bytes(e.data)));
    }
    out
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn info(&self, _: Request<v1::InfoRequest>) -> Result<Response<v1::WorkerInfo>, Status> {
        Ok(Response::new(self.info_message()))
    }

    type RunTrialStream = ReceiverStream<Result<v1::TrialEvent, Status>>;

    async fn run_trial(
        &self,
        req: Request<v1::TrialRequest>,
    ) -> Result<Response<Self::RunTrialStream>, Status> {
        let req = req.into_inner();
        let cfg = tanren_proto::decode_config(&req.config_json)?;
        if !dataset::valid_sha(&req.dataset_sha256) {
            return Err(Status::invalid_argument(
                "dataset_sha256 must be 64 lowercase hex digits",
            ));
        }
        // The control plane sends at most `slots` trials at once, but a trial it just pruned or
        // stopped may still be finishing its current step (or its evaluation) here: wait for it rather
        // than refuse, so the next trial is not wasted on "busy".
        let permit = tokio::time::timeout(BUSY_WAIT, self.inner.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "worker is busy: all {} of its slots are running trials",
                    self.inner.config.slots.max(1)
                ))
            })?
            .map_err(|_| Status::unavailable("worker is shutting down"))?;
        let (tx, rx) = mpsc::channel(32);
        let reservation = self.reserve(&req, &cfg, &tx).await?;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _reservation = reservation;
            let span = tracing::info_span!("trial", trial_id = req.trial_id, study_id = req.study_id);
            let _g = span.enter();
            let metrics = inner.metrics.clone();
            let running = metrics.trial_started();
            let start = Instant::now();
            let outcome = match run(inner, req, cfg, tx.clone()).await {
                Ok(ended) => ended,
                Err(status) => {
                    tracing::warn!(error = %status.message(), "trial failed");
                    let _ = tx.send(Err(status)).await;
                    Outcome::Failed
                }
            };
            drop(running);
            metrics.trial_ended(outcome, start.elapsed().as_secs_f64());
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn probe(&self, req: Request<v1::ProbeRequest>) -> Result<Response<v1::ProbeReply>, Status> {
        let req = req.into_inner();
        let plan = tanren_proto::decode_probe_plan(&req.plan_json)?;
        if !dataset::valid_sha(&req.dataset_sha256) {
            return Err(Status::invalid_argument(
                "dataset_sha256 must be 64 lowercase hex digits",
            ));
        }
        // Every slot: a probe never shares the device with training (its timings would be wrong and
        // the trials slower). It waits only briefly: the advice can do without it.
        let all_slots = self.inner.config.slots.max(1);
        let permit = tokio::time::timeout(
            PROBE_BUSY_WAIT,
            self.inner.slots.clone().acquire_many_owned(all_slots),
        )
        .await
        .map_err(|_| Status::resource_exhausted("worker is busy with a trial"))?
        .map_err(|_| Status::unavailable("worker is shutting down"))?;
        let span = tracing::info_span!("probe", dataset = %&req.dataset_sha256[..12]);
        let inner = self.inner.clone();
        // Dropped when the call is cancelled (the control plane gave up): the probe stops at its next step.
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _guard = SetOnDrop(cancelled.clone());
        async move {
            let (dir, manifest) = fetch_dataset(
                &inner,
                &req.dataset_sha256,
                &req.dataset_url,
                &req.trial_token,
                req.split_seed,
                plan.base.model.num_classes(),
                "the probe's model",
            )
            .await?;
            let device = inner.device;
            let cache_dir = inner.config.data_dir.join("cache");
            // The slot is held until the trainer thread ends, even when the call went away before.
            let report = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let t = Instant::now();
                let data = tanren_trainer::prepare(&dir, &manifest, &plan.base, &cache_dir, device)?;
                let prepared = t.elapsed().as_secs_f64();
                let mut report = tanren_trainer::probe::run(&plan, &data, device, || {
                    cancelled.load(std::sync::atomic::Ordering::Relaxed)
                })?;
                // A trial prepares its data as this did (decode and resize, unless cached).
                if let Some(o) = report.overhead.as_mut() {
                    o.prepare_seconds = prepared;
                }
                Ok::<_, TrainError>(report)
            })
            .await
            .map_err(|e| Status::internal(format!("probe thread: {e}")))?
            .map_err(train_status)?;
            tracing::info!(
                seconds = report.seconds,
                cut_short = report.cut_short.len(),
                "probe done"
            );
            let report_json = serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(v1::ProbeReply { report_json }))
        }
        .instrument(span)
        .await
    }
}

/// How long a probe waits for the trial slot.
const PROBE_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets its flag when dropped.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The dataset `sha` (downloaded with `token` unless cached, split with `split_seed`), refused when
/// it does not have the `classes` that `what` (a trial's or a probe's model) was built for.
async fn fetch_dataset(
    inner: &Inner,
    sha: &str,
    url: &str,
    token: &str,
    split_seed: u64,
    classes: u32,
    what: &str,
) -> Result<(std::path::PathBuf, tanren_dataset::Manifest), Status> {
    let (dir, manifest, _) = inner
        .datasets
        .ensure(&inner.http, &inner.config.data_dir, sha, url, token, split_seed)
        .await?;
    if manifest.classes.len() as u32 != classes {
        return Err(Status::invalid_argument(format!(
            "{what} has {classes} classes but the dataset has {}",
            manifest.classes.len()
        )));
    }
    Ok((dir, manifest))
}

/// Runs one trial to its end: `Completed` once the result is sent, `Stopped` when the control plane
/// cancelled it (closed the stream).
async fn run(inner: Arc<Inner>, req: v1::TrialRequest, cfg: TrainConfig, tx: Tx) -> Result<Outcome, Status> {
    let prep_start = Instant::now();
    let (dir, manifest) = fetch_dataset(
        &inner,
        &req.dataset_sha256,
        &req.dataset_url,
        &req.trial_token,
        req.split_seed,
        cfg.model.num_classes(),
        "model",
    )
    .await?;
    let device = inner.device;
    let cache_dir = inner.config.data_dir.join("cache");
    let weights_dir =
        tempfile::tempdir_in(&inner.config.data_dir).map_err(|e| Status::internal(e.to_string()))?;
    let weights = weights_dir.path().join("model.safetensors");
    let tx2 = tx.clone();
    let weights2 = weights.clone();
    let metrics = inner.metrics.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Option<TrialResult>, TrainError> {
        let data = tanren_trainer::prepare(&dir, &manifest, &cfg, &cache_dir, device)?;
        let prepare_seconds = prep_start.elapsed().as_secs_f64();
        metrics.prepared(prepare_seconds, data.cache_hit);
        let started = v1::Started {
            device: tanren_trainer::device::device_label(device),
            dataset_cache_hit: data.cache_hit,
            prepare_seconds,
        };
        if tx2.blocking_send(event(Event::Started(started))).is_err() {
            return Ok(None);
        }
        let mut last_elapsed = 0.0;
        let trained = tanren_trainer::train_until(
            &cfg,
            &data,
            device,
            || tx2.is_closed(),
            |m| {
                metrics.epoch(m.elapsed_seconds - last_elapsed);
                last_elapsed = m.elapsed_seconds;
                match tx2.blocking_send(event(Event::Epoch(m.into()))) {
                    Ok(()) => EpochControl::Continue,
                    Err(_) => EpochControl::Stop,
                }
            },
        );
        let trained = match trained {
            Err(TrainError::Cancelled { epoch }) => {
                tracing::info!(epoch, "trial cancelled mid-epoch");
                return Ok(None);
            }
            other => other?,
        };
        if tx2.is_closed() {
            return Ok(None);
        }
        let test = tanren_trainer::evaluate(&trained.net, &data.test_x, &data.test_y, cfg.normalize)?;
        let val = tanren_trainer::evaluate(&trained.net, &data.val_x, &data.val_y, cfg.normalize)?;
        let (ms, ips) = tanren_trainer::measure_inference(&trained.net, &data.test_x, cfg.normalize)?;
        let model_bytes = tanren_trainer::save_weights(&trained.vs, &weights2)?;
        let k = manifest.classes.len();
        let labels: Vec<i64> = Vec::<i64>::try_from(data.test_y.to_device(Device::Cpu))?;
        let mut confusion = vec![vec![0u64; k]; k];
        for (&t, &p) in labels.iter().zip(&test.predictions) {
            confusion[t as usize][p as usize] += 1;
        }
        let per_class_accuracy = confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                if n == 0 {
                    f64::NAN
                } else {
                    row[i] as f64 / n as f64
                }
            })
            .collect();
        Ok(Some(TrialResult {
            val_accuracy: val.accuracy,
            val_loss: val.loss,
            test_accuracy: test.accuracy,
            test_loss: test.loss,
            per_class_accuracy,
            confusion,
            test_predictions: test.predictions.iter().map(|&p| p as u32).collect(),
            train_seconds: trained.train_seconds,
            prepare_seconds,
            inference_ms_per_image: ms,
            inference_images_per_second: ips,
            parameter_count: tanren_trainer::parameter_count(&trained.vs),
            model_bytes,
            epochs_completed: trained.epochs.len() as u32,
            device: tanren_trainer::device::device_label(device),
            stopped_early: trained.stopped_early,
            peak_memory_bytes: trained.peak_memory_bytes,
        }))
    })
    .await
    .map_err(|e| Status::internal(format!("trainer thread: {e}")))?
    .map_err(train_status)?;
    let Some(result) = result else {
        tracing::info!("control plane went away; trial stopped");
        return Ok(Outcome::Stopped);
    };
    inner.metrics.peak_memory(result.peak_memory_bytes);
    let body = tokio::fs::read(&weights)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let answer = inner
        .http
        .put(&req.artifact_url)
        .bearer_auth(&req.trial_token)
        .body(body)
        .send()
        .await
        .map_err(|e| Status::unavailable(format!("uploading weights to {}: {e}", req.artifact_url)))?;
    if !answer.status().is_success() {
        return Err(refused_upload(answer).await);
    }
    tracing::info!(
        val_accuracy = result.val_accuracy,
        test_accuracy = result.test_accuracy,
        "trial complete"
    );
    let _ = tx
        .send(event(Event::Result(tanren_proto::encode_result(&result))))
        .await;
    Ok(Outcome::Completed)
}
