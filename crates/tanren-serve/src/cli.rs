//! The `tanren-serve` command line: every flag also reads a `TANREN_SERVE_…` environment variable.

use crate::batcher::BatchConfig;
use crate::model::Precision;
use crate::{Config, ModelSource};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tanren-serve",
    about = "Serve tanren models over HTTP (dynamic batching, Open Inference Protocol v2)"
)]
struct Args {
    /// A model zip to serve: PATH (named after the file: best.zip -> `best`) or NAME=PATH. Repeatable.
    #[arg(long = "model", env = "TANREN_SERVE_MODEL", value_delimiter = ',')]
    models: Vec<String>,
    /// Control plane to download study models from (with --study).
    #[arg(long, env = "TANREN_CONTROL_URL")]
    control_url: Option<String>,
    /// Serve this study's best model, downloaded from --control-url, as `study-ID`. Repeatable.
    #[arg(long = "study")]
    studies: Vec<i64>,
    /// Bearer token for the control plane, if it asks for one.
    #[arg(long, env = "TANREN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra root certificate (PEM) to trust for an https:// --control-url (a private CA).
    #[arg(long, env = "TANREN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// HTTP address.
    #[arg(long, env = "TANREN_SERVE_LISTEN", default_value = "127.0.0.1:8500")]
    listen: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, env = "TANREN_DEVICE", default_value = "auto")]
    device: String,
    /// f32, or on CUDA bf16 / fp16.
    #[arg(long, env = "TANREN_SERVE_PRECISION", default_value = "f32")]
    precision: String,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long, env = "TANREN_THREADS")]
    threads: Option<i32>,
    /// Images per forward pass, at most.
    #[arg(long, env = "TANREN_SERVE_MAX_BATCH", default_value_t = 64)]
    max_batch: usize,
    /// Longest the oldest queued image waits for a fuller batch, in milliseconds.
    #[arg(long, env = "TANREN_SERVE_MAX_DELAY_MS", default_value_t = 2.0)]
    max_delay_ms: f64,
    /// Images waiting per model, at most; a request that does not fit gets 503 + Retry-After.
    #[arg(long, env = "TANREN_SERVE_MAX_QUEUE", default_value_t = 2048)]
    max_queue: usize,
    /// Images in one request, at most.
    #[arg(long, env = "TANREN_SERVE_MAX_IMAGES", default_value_t = 256)]
    max_images_per_request: usize,
    /// Largest request body, MiB.
    #[arg(long, env = "TANREN_SERVE_MAX_BODY_MB", default_value_t = 32)]
    max_body_mb: usize,
    /// Requests decoding or waiting at once, at most; more get 503 + Retry-After.
    #[arg(long, env = "TANREN_SERVE_MAX_INFLIGHT", default_value_t = 256)]
    max_inflight: usize,
    /// Longest a request may take, ms (clients may ask for less with `x-request-timeout-ms`).
    #[arg(long, env = "TANREN_SERVE_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Where downloaded study models are kept.
    #[arg(long, env = "TANREN_SERVE_DATA", default_value = "data/serve")]
    data_dir: PathBuf,
    /// Print what this binary sees of libtorch and CUDA as one JSON line and exit (as tanren-worker).
    #[arg(long)]
    self_check: bool,
}

/// `NAME=PATH` or `PATH` (named after the file stem).
pub fn parse_model(arg: &str) -> Result<ModelSource, String> {
    let (name, path) = match arg.split_once('=') {
        Some((n, p)) => (n.to_string(), PathBuf::from(p)),
        None => {
            let p = PathBuf::from(arg);
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
            (stem, p)
        }
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(format!(
            "model name `{name}` (from `{arg}`) must be letters, digits, '-', '_' or '.'; use --model NAME=PATH"
        ));
    }
    Ok(ModelSource::Zip { name, path })
}

pub async fn main() -> anyhow::Result<()> {
    // Before anything asks libtorch about CUDA (it caches the first answer); see torch_cuda.rs.
    tanren_trainer::ensure_torch_cuda();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.self_check {
        std::process::exit(tanren_trainer::torch_cuda::self_check_main(&args.device));
    }
    let mut models = Vec::new();
    for m in &args.models {
        models.push(parse_model(m).map_err(anyhow::Error::msg)?);
    }
    if !args.studies.is_empty() {
        let Some(url) = args.control_url.clone() else {
            anyhow::bail!("--study needs --control-url (the control plane to download the model from)");
        };
        for &study in &args.studies {
            models.push(ModelSource::Study {
                name: format!("study-{study}"),
                control_url: url.clone(),
                study,
                token: args.token.clone(),
                ca_cert: args.ca_cert.clone(),
            });
        }
    }
    if !(args.max_delay_ms.is_finite() && args.max_delay_ms >= 0.0) {
        anyhow::bail!("--max-delay-ms must be a non-negative number of milliseconds");
    }
    if args.max_batch == 0 || args.max_queue < args.max_batch.max(args.max_images_per_request) {
        anyhow::bail!(
            "--max-batch must be at least 1, and --max-queue at least --max-batch and --max-images-per-request"
        );
    }
    let mut config = Config::new(models);
    config.device = args.device;
    config.precision = Precision::parse(&args.precision).map_err(anyhow::Error::msg)?;
    config.threads = args.threads;
    config.batch = BatchConfig {
        max_batch: args.max_batch,
        max_delay: Duration::from_secs_f64(args.max_delay_ms / 1000.0),
        max_queue: args.max_queue,
    };
    config.max_images_per_request = args.max_images_per_request.max(1);
    config.max_body_bytes = args.max_body_mb.max(1) << 20;
    config.max_inflight = args.max_inflight.max(1);
    config.request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    config.data_dir = args.data_dir;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        s.cancel();
    });
    crate::run(config, listener, shutdown).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
