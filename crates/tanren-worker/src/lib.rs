//! The worker service: a gRPC server (`proto/tanren/v1/worker.proto`) that runs up to `slots` trials
//! at once on its device (each admitted only if its memory estimate fits) with the trainer, fetches datasets from the control plane over HTTP (cached by sha256), uploads the
//! trained weights, and registers itself with the control plane on a heartbeat.
//!
//! API boundary: `run(config, listener, shutdown)`; the binary only parses flags.

mod admission;
pub mod cli;
mod dataset;
pub mod metrics;
mod register;
mod service;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use metrics::MetricsEndpoint;
pub use service::WorkerService;

#[derive(Debug, Clone)]
pub struct Config {
    /// Control plane base URL (e.g. `http://127.0.0.1:8080`); when set the worker registers there.
    pub control_url: Option<String>,
    /// gRPC URL the control plane should dial; defaults to `http://<listener address>` (`https://` with
    /// `tls`).
    pub advertise_url: Option<String>,
    pub worker_id: String,
    /// Dataset downloads, extracted datasets and the decode cache live here.
    pub data_dir: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// CPU threads for libtorch; `None` keeps libtorch's default.
    pub threads: Option<i32>,
    /// Trials run at once on the device (at least 1); each is admitted only if its estimated memory
    /// fits beside the others.
    pub slots: u32,
    pub heartbeat: Duration,
    /// The control plane's join token (`TANREN_JOIN_TOKEN`), sent with every registration.
    pub join_token: String,
    /// Serve gRPC over TLS with this PEM certificate (chain) and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra root certificate (PEM) for an `https://` control plane, besides the OS trust store.
    pub ca_cert: Option<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics`) there; `None`: no metrics endpoint.
    pub metrics: Option<MetricsEndpoint>,
}

/// The secret the control plane handed this worker at registration; every RPC must present it as
/// `authorization: Bearer …`. Empty until the first registration succeeds: until then nothing is served.
#[derive(Clone, Default)]
pub struct Credential(Arc<RwLock<Option<String>>>);

impl Credential {
    pub fn set(&self, v: &str) {
        let mut c = self.0.write().unwrap_or_else(|p| p.into_inner());
        if c.as_deref() != Some(v) {
            *c = Some(v.to_string());
        }
    }

    /// The gRPC interceptor: the request must carry the current credential.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let current = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(current) = current else {
            return Err(tonic::Status::unauthenticated(
                "this worker has not registered with its control plane yet",
            ));
        };
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if same(p.as_bytes(), current.as_bytes()) => Ok(req),
            _ => Err(tonic::Status::unauthenticated(
                "only the control plane this worker registered with may call it",
            )),
        }
    }
}

/// Constant-time comparison (the length of the credential is not secret).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Some(n) = config.threads {
        tch::set_num_threads(n);
    }
    let device = tanren_trainer::pick_device(&config.device).map_err(anyhow::Error::msg)?;
    let report = tanren_trainer::device_report(device);
    tracing::info!(
        worker_id = %config.worker_id,
        device = %report.device,
        device_name = %report.device_name,
        torch_cuda = %report.torch_cuda.describe(),
        torch = %report.torch_version,
        cuda = report.cuda_available,
        cudnn = report.cudnn_available,
        slots = config.slots,
        "worker starting"
    );
    if let Device::Cuda(_) = device {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let addr = listener.local_addr()?;
    let server_tls = match &config.tls {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None => None,
    };
    let http = tls::http_client(config.ca_cert.as_deref())?;
    let scheme = if server_tls.is_some() { "https" } else { "http" };
    let advertise = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let service = WorkerService::new(config.clone(), device, report.clone(), http.clone());
    let info = service.info_message();
    if let Some(endpoint) = config.metrics.clone() {
        let about = metrics::About {
            worker_id: config.worker_id.clone(),
            device,
            device_label: tanren_trainer::device::device_label(device),
            device_name: report.device_name.clone(),
            torch_version: report.torch_version.clone(),
            slots: info.slots,
        };
        let (m, stop) = (service.metrics(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = endpoint.serve(m, about, stop).await {
                tracing::error!(error = %e, "worker metrics endpoint stopped");
            }
        });
    }
    let credential = Credential::default();
    if let Some(control) = config.control_url.clone() {
        tokio::spawn(register::heartbeat(
            http,
            control,
            advertise.clone(),
            info,
            config.heartbeat,
            config.join_token.clone(),
            credential.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(%addr, %advertise, tls = server_tls.is_some(), "worker listening (gRPC)");
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = server_tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(tanren_proto::v1::worker_server::WorkerServer::with_interceptor(
            service,
            move |req| credential.check(req),
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled(),
        )
        .await?;
    Ok(())
}

use tch::Device;
