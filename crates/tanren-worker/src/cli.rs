//! The worker's command line, shared by the `tanren-worker` binary and the e2e tests' worker process.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "tanren-worker", about = "tanren training worker (gRPC)")]
struct Args {
    /// Address to listen on for gRPC from the control plane.
    #[arg(long, env = "TANREN_WORKER_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Control plane URL to register with.
    #[arg(long, env = "TANREN_CONTROL_URL", default_value = "http://127.0.0.1:8080")]
    control_url: String,
    /// gRPC URL the control plane should use to reach this worker (default: http://<listen>).
    #[arg(long, env = "TANREN_WORKER_ADVERTISE")]
    advertise_url: Option<String>,
    /// Stable worker id (default: worker-<port>).
    #[arg(long, env = "TANREN_WORKER_ID")]
    id: Option<String>,
    /// Where datasets and the decode cache are kept.
    #[arg(long, env = "TANREN_WORKER_DATA", default_value = "data/worker")]
    data_dir: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, env = "TANREN_DEVICE", default_value = "auto")]
    device: String,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long, env = "TANREN_THREADS")]
    threads: Option<i32>,
    /// Milliseconds between registrations (heartbeats) with the control plane.
    #[arg(long, env = "TANREN_HEARTBEAT_MS", default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Print what this binary sees of libtorch and CUDA as one JSON line and exit: 0 when libtorch_cuda
    /// is loaded (or the torch in use has none), 1 when the torch has CUDA but it could not be loaded.
    #[arg(long)]
    self_check: bool,
}

/// Parse flags from the environment and command line, bind, serve until Ctrl-C.
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
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let port = listener.local_addr()?.port();
    let config = crate::Config {
        control_url: Some(args.control_url),
        advertise_url: args.advertise_url,
        worker_id: args.id.unwrap_or_else(|| format!("worker-{port}")),
        data_dir: args.data_dir,
        device: args.device,
        threads: args.threads,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
    };
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    crate::run(config, listener, shutdown).await
}
