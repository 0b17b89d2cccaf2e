//! The worker's command line, shared by the `tanren-worker` binary and the e2e tests' worker process.

use clap::Parser;
use std::path::{Path, PathBuf};
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
    /// gRPC URL the control plane should use to reach this worker (default: http://<listen>, or
    /// https://<listen> with --tls-cert).
    #[arg(long, env = "TANREN_WORKER_ADVERTISE")]
    advertise_url: Option<String>,
    /// Serve gRPC over TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "TANREN_WORKER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "TANREN_WORKER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra root certificate (PEM) to trust for an https:// control plane, besides the OS store.
    #[arg(long, env = "TANREN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Stable worker id (default: <host>-<port>-<suffix>, the suffix random once and kept in the data dir).
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
    /// Trials to run at once on the device; each is admitted only if its estimated peak memory fits
    /// beside the running ones (otherwise the control plane hears "busy" and retries it later).
    #[arg(long, env = "TANREN_WORKER_SLOTS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    slots: u32,
    /// The control plane's join token (it writes one to <its data dir>/join-token unless given
    /// TANREN_JOIN_TOKEN); required to register.
    #[arg(long, env = "TANREN_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`, plain HTTP) on this address, e.g. 127.0.0.1:9464
    /// (default: no metrics endpoint). Beyond loopback it needs --metrics-token.
    #[arg(long, env = "TANREN_WORKER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Bearer token a scraper must present to the metrics endpoint.
    #[arg(long, env = "TANREN_WORKER_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Milliseconds between registrations (heartbeats) with the control plane.
    #[arg(long, env = "TANREN_HEARTBEAT_MS", default_value_t = 5000)]
    heartbeat_ms: u64,
    /// Print what this binary sees of libtorch and CUDA as one JSON line and exit: 0 when libtorch_cuda
    /// is loaded (or the torch in use has none), 1 when the torch has CUDA but it could not be loaded.
    #[arg(long)]
    self_check: bool,
}

const ID_SUFFIX_FILE: &str = "worker-id-suffix";

/// `<host>-<port>-<suffix>`: two hosts listening on the same port get different ids, and a worker that
/// restarts with the same data dir keeps its id (its suffix is stored there the first time).
pub fn default_worker_id(data_dir: &Path, port: u16) -> anyhow::Result<String> {
    let host = hostname();
    let path = data_dir.join(ID_SUFFIX_FILE);
    let suffix = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            std::fs::create_dir_all(data_dir)?;
            let suffix = random_suffix();
            // Written whole then renamed, so a crash never leaves an empty suffix behind.
            let tmp = tempfile::NamedTempFile::new_in(data_dir)?;
            std::fs::write(tmp.path(), &suffix)?;
            tmp.persist(&path)?;
            suffix
        }
    };
    Ok(format!("{host}-{port}-{suffix}"))
}

fn hostname() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "worker".into()
    } else {
        clean
    }
}

/// Six hex digits from the standard library's per-process random hasher keys (no extra dependency).
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:06x}", h.finish() & 0xff_ffff)
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
    let Some(join_token) = args.join_token.filter(|t| !t.trim().is_empty()) else {
        anyhow::bail!(
            "set TANREN_JOIN_TOKEN (or --join-token) to the control plane's join token: the value it was \
             started with, or the contents of its data dir's `join-token` file"
        );
    };
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("metrics endpoint: cannot listen on {addr}: {e}"))?;
            Some(crate::MetricsEndpoint::new(l, args.metrics_token.clone())?)
        }
        None => None,
    };
    let port = listener.local_addr()?.port();
    let config = crate::Config {
        control_url: Some(args.control_url),
        advertise_url: args.advertise_url,
        worker_id: match args.id {
            Some(id) => id,
            None => default_worker_id(&args.data_dir, port)?,
        },
        data_dir: args.data_dir,
        device: args.device,
        threads: args.threads,
        slots: args.slots,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        join_token: join_token.trim().to_string(),
        tls: args.tls_cert.zip(args.tls_key),
        ca_cert: args.ca_cert,
        metrics,
    };
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        s.cancel();
    });
    crate::run(config, listener, shutdown).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_id_is_host_port_and_a_suffix_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = default_worker_id(dir.path(), 50051).unwrap();
        let again = default_worker_id(dir.path(), 50051).unwrap();
        assert_eq!(a, again, "a restarted worker keeps its id");
        assert!(a.starts_with(&format!("{}-50051-", hostname())), "{a}");
        assert_eq!(a.rsplit('-').next().unwrap().len(), 6, "{a}");
        let other_port = default_worker_id(dir.path(), 50052).unwrap();
        assert_ne!(a, other_port);
        let other_host = tempfile::tempdir().unwrap();
        let b = default_worker_id(other_host.path(), 50051).unwrap();
        assert_ne!(a, b, "another data dir (another host) draws another suffix");
    }
}
