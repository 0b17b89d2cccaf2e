//! tanren-serve: puts trained models to work. Loads tanren model zips (from files, or a study's best
//! model from a control plane), keeps each network on the device, and answers HTTP requests through
//! a dynamic batcher: tanren's own `POST /v1/models/{name}/classify` (images in, top-k classes out)
//! and the KServe/Triton Open Inference Protocol v2 (`/v2/...`) for existing clients.
//!
//! API boundary: `run(config, listener, shutdown)`; the binary only parses flags (`cli.rs`).
//! Architecture invariant: never touches the control plane's database; a model is a zip.
//! Start-up: the listener answers at once (`/v2/health/live`), models load and warm up in the
//! background, and `/v2/health/ready` turns 200 only when every model has.

pub mod batcher;
pub mod cli;
pub mod error;
mod fetch;
mod http;
pub mod model;
pub mod preprocess;
mod v2;

use crate::batcher::{BatchConfig, Batcher};
use crate::model::{Loaded, ModelInfo, Precision};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where one served model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A model zip on disk, served under `name`.
    Zip { name: String, path: PathBuf },
    /// The best model of study `study` on the control plane at `control_url`, downloaded at start.
    Study {
        name: String,
        control_url: String,
        study: i64,
        token: Option<String>,
        /// Extra root certificate (PEM) for an `https://` control plane, besides the OS trust store.
        ca_cert: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub models: Vec<ModelSource>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    pub precision: Precision,
    pub threads: Option<i32>,
    pub batch: BatchConfig,
    /// Images in one request, at most.
    pub max_images_per_request: usize,
    pub max_body_bytes: usize,
    /// Requests being decoded or waiting for the batcher, at most; more are refused with 503.
    pub max_inflight: usize,
    /// Longest a request may take; a client may ask for less with `x-request-timeout-ms`.
    pub request_timeout: Duration,
    /// Downloaded study models are kept here.
    pub data_dir: PathBuf,
}

impl Config {
    pub fn new(models: Vec<ModelSource>) -> Self {
        Config {
            models,
            device: "auto".into(),
            precision: Precision::F32,
            threads: None,
            batch: BatchConfig {
                max_batch: 64,
                max_delay: Duration::from_millis(2),
                max_queue: 2048,
            },
            max_images_per_request: 256,
            max_body_bytes: 32 << 20,
            max_inflight: 256,
            request_timeout: Duration::from_secs(30),
            data_dir: PathBuf::from("data/serve"),
        }
    }
}

pub struct Served {
    pub info: ModelInfo,
    pub batcher: Batcher,
}

pub struct AppState {
    pub config: Config,
    /// Set once, when every model has loaded and warmed up.
    pub models: OnceLock<BTreeMap<String, Arc<Served>>>,
    pub inflight: Arc<tokio::sync::Semaphore>,
    pub device_label: String,
}

pub type S = Arc<AppState>;

/// Serve until `shutdown`, then stop accepting, let in-flight requests finish, and return. A model
/// that fails to load ends `run` with that error (the binary exits non-zero saying why).
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    tanren_trainer::ensure_torch_cuda();
    if config.models.is_empty() {
        anyhow::bail!("no model to serve: pass --model PATH (or NAME=PATH), or --control-url URL --study ID");
    }
    let mut names = std::collections::HashSet::new();
    for m in &config.models {
        let name = match m {
            ModelSource::Zip { name, .. } | ModelSource::Study { name, .. } => name,
        };
        if !names.insert(name.clone()) {
            anyhow::bail!("two models are named `{name}`; name them apart with --model NAME=PATH");
        }
    }
    if let Some(n) = config.threads {
        tch::set_num_threads(n);
    }
    let device = tanren_trainer::pick_device(&config.device).map_err(anyhow::Error::msg)?;
    if config.precision != Precision::F32 && device == tch::Device::Cpu {
        anyhow::bail!(
            "--precision {:?} needs a CUDA device; on the CPU serve in f32",
            config.precision
        );
    }
    let report = tanren_trainer::device_report(device);
    tracing::info!(device = %report.device, device_name = %report.device_name,
        torch_cuda = %report.torch_cuda.describe(), "tanren-serve starting");
    let state = Arc::new(AppState {
        inflight: Arc::new(tokio::sync::Semaphore::new(config.max_inflight.max(1))),
        config: config.clone(),
        models: OnceLock::new(),
        device_label: report.device.clone(),
    });
    let addr = listener.local_addr()?;
    let app = http::router(state.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    tracing::info!(%addr, "listening; loading models");

    let loading = load_all(&config, device);
    let loaded = tokio::select! {
        r = loading => r,
        _ = shutdown.cancelled() => return Ok(()),
    };
    match loaded {
        Ok(models) => {
            for s in models.values() {
                tracing::info!(model = %s.info.name, version = %s.info.version, classes = s.info.classes.len(),
                    size = s.info.image_size, "model ready");
            }
            let _ = state.models.set(models);
            tracing::info!(%addr, "ready");
        }
        Err(e) => {
            shutdown.cancel();
            let _ = server.await;
            return Err(e);
        }
    }
    server.await??;
    Ok(())
}

/// A CPU batch's largest activation is kept to about this many bytes. Past it a bigger batch only
/// adds memory traffic (measured: the 128 px seed CNN served 0.9x the throughput at batch 64 that it
/// did at batch 1); the per-call overhead that batching saves is already amortised well before.
const CPU_BATCH_ACTIVATION_BYTES: u64 = 8 << 20;

/// `max_batch`, or on the CPU less when one image's activations are large (see above).
pub fn effective_max_batch(spec: &tanren_core::ModelSpec, device: tch::Device, max_batch: usize) -> usize {
    if device != tch::Device::Cpu {
        return max_batch;
    }
    let per_image = 4 * tanren_trainer::peak_activation_elems(spec).max(1);
    max_batch.min((CPU_BATCH_ACTIVATION_BYTES / per_image).max(1) as usize)
}

async fn load_all(config: &Config, device: tch::Device) -> anyhow::Result<BTreeMap<String, Arc<Served>>> {
    let mut out = BTreeMap::new();
    for source in &config.models {
        let (name, path) = match source {
            ModelSource::Zip { name, path } => (name.clone(), path.clone()),
            ModelSource::Study {
                name,
                control_url,
                study,
                token,
                ca_cert,
            } => {
                let path = fetch::study_model(
                    control_url,
                    *study,
                    token.as_deref(),
                    ca_cert.as_deref(),
                    &config.data_dir,
                )
                .await?;
                (name.clone(), path)
            }
        };
        let precision = config.precision;
        let n = name.clone();
        let mut batch = config.batch;
        let (loaded, batch) = tokio::task::spawn_blocking(move || {
            // The spec is only known once the zip is read; warm up at the batch this model will use.
            let spec = Loaded::read_spec(&path)?;
            batch.max_batch = effective_max_batch(&spec, device, batch.max_batch);
            Loaded::from_zip(&n, &path, device, precision, batch.max_batch).map(|m| (m, batch))
        })
        .await??;
        if batch.max_batch < config.batch.max_batch {
            tracing::info!(model = %name, max_batch = batch.max_batch,
                "CPU batch capped so one batch's largest activation stays near the caches");
        }
        let info = loaded.info.clone();
        let batcher = Batcher::start(loaded, batch);
        out.insert(name, Arc::new(Served { info, batcher }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tanren_core::ModelSpec;

    #[test]
    fn cpu_batches_shrink_for_large_activations_only() {
        // The seed's SimpleCNN at 128 px: 16 x 128 x 128 floats = 1 MiB per image -> 8 per batch.
        assert_eq!(
            effective_max_batch(&ModelSpec::seed_cnn(10, 128), tch::Device::Cpu, 64),
            8
        );
        // At 28 px it is 50 KiB: the flag's 64 stands.
        assert_eq!(
            effective_max_batch(&ModelSpec::seed_cnn(10, 28), tch::Device::Cpu, 64),
            64
        );
        // Never below 1, and CUDA keeps the flag.
        assert_eq!(
            effective_max_batch(&ModelSpec::seed_cnn(10, 1024), tch::Device::Cpu, 64),
            1
        );
        assert_eq!(
            effective_max_batch(&ModelSpec::seed_cnn(10, 128), tch::Device::Cuda(0), 64),
            64
        );
    }
}
