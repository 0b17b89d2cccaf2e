//! `tanren-control`: parse flags, bind, run until Ctrl-C. Everything else is in the library.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tanren-control",
    about = "tanren control plane (REST API + scheduler)"
)]
struct Args {
    /// Address to serve the REST API on.
    #[arg(long, env = "TANREN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Datasets, models and the SQLite database live here.
    #[arg(long, env = "TANREN_DATA_DIR", default_value = "data/control")]
    data_dir: PathBuf,
    /// Database URL (default sqlite://<data-dir>/tanren.db); postgres://... works too.
    #[arg(long, env = "TANREN_DATABASE_URL")]
    database_url: Option<String>,
    /// URL workers use to reach this server (default http://<listen>).
    #[arg(long, env = "TANREN_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest accepted dataset upload, in bytes.
    #[arg(long, env = "TANREN_MAX_UPLOAD_BYTES", default_value_t = 2 << 30)]
    max_upload_bytes: u64,
    /// Seconds without a heartbeat after which a worker gets no new trials.
    #[arg(long, env = "TANREN_WORKER_TIMEOUT", default_value_t = 20)]
    worker_timeout: u64,
    /// How many times an interrupted trial (worker lost, connection refused) is retried with the same
    /// parameters before it counts as failed; a study's `max_retries` overrides it.
    #[arg(long, env = "TANREN_MAX_RETRIES", default_value_t = 2)]
    max_retries: u32,
    /// Minutes one trial may take at most (preparation included) before it is interrupted and retried.
    #[arg(long, env = "TANREN_TRIAL_TIMEOUT", default_value_t = 1440)]
    trial_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    let mut config = tanren_control::Config::new(a.data_dir);
    config.database_url = a.database_url;
    config.public_url = a.public_url;
    config.max_upload_bytes = a.max_upload_bytes;
    config.worker_timeout = Duration::from_secs(a.worker_timeout);
    config.max_retries = a.max_retries;
    config.trial_timeout = Duration::from_secs(a.trial_timeout * 60);
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    tanren_control::run(config, listener, shutdown).await
}
