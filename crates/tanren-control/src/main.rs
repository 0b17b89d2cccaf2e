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
    /// URL workers use to reach this server (default http://<listen>, https://<listen> with TLS).
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
    /// An admin API token to accept (at least 16 characters). Without it the first start creates one,
    /// keeps it in <data-dir>/admin-token and prints its login URL.
    #[arg(long, env = "TANREN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The secret workers register with (same value on every worker). Default: made once and kept in
    /// <data-dir>/join-token.
    #[arg(long, env = "TANREN_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Where the admin token is also written for the `tanren` CLI (default:
    /// ~/.config/tanren/credentials.json); `none` to write nowhere.
    #[arg(long, env = "TANREN_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// Host name the dashboard and API may be reached by, besides loopback, the listen address and the
    /// public URL's host (repeat, or comma-separated in the env var); `*` allows any (DNS-rebinding
    /// protection off).
    #[arg(long = "allowed-host", env = "TANREN_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Serve REST on a non-loopback address without TLS: only behind a TLS-terminating proxy or on a
    /// network you trust.
    #[arg(long, env = "TANREN_INSECURE_HTTP")]
    insecure_http: bool,
    /// Serve REST, the dashboard and the WebSocket over HTTPS with this PEM certificate (chain);
    /// needs --tls-key.
    #[arg(long, env = "TANREN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "TANREN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Root certificate (PEM) to trust for workers that advertise https:// (default: the OS store).
    #[arg(long, env = "TANREN_WORKER_CA_CERT")]
    worker_ca_cert: Option<PathBuf>,
    /// State-changing requests per second per API token (bursts of a minute's worth, at most 120).
    #[arg(long, env = "TANREN_MUTATIONS_PER_SECOND", default_value_t = 10.0)]
    mutations_per_second: f64,
    /// Largest weights upload a worker may make, in bytes.
    #[arg(long, env = "TANREN_MAX_WEIGHTS_BYTES", default_value_t = 1 << 30)]
    max_weights_bytes: u64,
    /// Dataset uploads processed at once; more are answered 503 with Retry-After.
    #[arg(long, env = "TANREN_MAX_CONCURRENT_UPLOADS", default_value_t = 4)]
    max_concurrent_uploads: usize,
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
    config.admin_token = a.admin_token;
    config.join_token = a.join_token;
    config.credentials_file = match a.credentials_file {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p),
        None => tanren_control::auth::default_credentials_file(),
    };
    config.allowed_hosts = a.allowed_hosts;
    config.insecure_http = a.insecure_http;
    config.tls = a
        .tls_cert
        .zip(a.tls_key)
        .map(|(cert, key)| tanren_control::tls::TlsPaths { cert, key });
    config.worker_ca_cert = a.worker_ca_cert;
    config.mutations_per_second = a.mutations_per_second;
    config.max_weights_bytes = a.max_weights_bytes;
    config.max_concurrent_uploads = a.max_concurrent_uploads;
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        s.cancel();
    });
    tanren_control::run(config, listener, shutdown).await
}

/// Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send) starts a graceful shutdown.
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
