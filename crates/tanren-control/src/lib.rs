//! The tanren control plane: REST API over datasets, studies, trials and workers; the scheduler that
//! asks the search engine for trials and dispatches them over gRPC to workers; dataset and model files
//! on disk; the database through tanren-store; the live event stream (WebSocket) and the embedded
//! dashboard. It never links libtorch.
//!
//! API boundary: `run(config, listener, shutdown)` (or `start` then `Server::serve`, for tests that need
//! the state); the binary only parses flags and binds.

pub mod api;
pub mod assets;
pub mod auth;
pub mod data_lock;
pub mod error;
pub mod estimate;
pub mod events;
pub mod files;
pub mod leader;
pub mod metrics;
pub mod model_card;
pub mod onnx;
pub mod openapi;
pub mod probe;
pub mod progress;
pub mod scheduler;
pub mod study_spec;
pub mod tls;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tanren_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Config {
    /// Datasets, models, uploads and (by default) the SQLite database live here.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default `sqlite://<data_dir>/tanren.db`.
    pub database_url: Option<String>,
    /// Base URL workers use to reach this server (dataset downloads, weight uploads);
    /// default `http://<listener address>` (`https://` with `tls`).
    pub public_url: Option<String>,
    pub max_upload_bytes: u64,
    /// A worker not heard from for this long gets no new trials.
    pub worker_timeout: Duration,
    /// How often an interrupted trial (worker lost, connection refused) is retried with the same
    /// parameters; a study's own `max_retries` overrides it.
    pub max_retries: u32,
    /// Hard cap on one trial, dataset preparation included: past it the trial is interrupted.
    pub trial_timeout: Duration,
    /// Once epochs are measured, a worker silent for 5 mean epochs plus this long has hung: the trial is
    /// interrupted (and retried elsewhere) even if the worker still heartbeats.
    pub trial_silence: Duration,
    /// How often the scheduler looks for work when nothing wakes it.
    pub tick: Duration,
    /// An admin API token to accept (`TANREN_ADMIN_TOKEN`, e.g. from a Kubernetes Secret). Without one,
    /// the first start creates an admin token and keeps it in `<data_dir>/admin-token`.
    pub admin_token: Option<String>,
    /// The secret workers register with (`TANREN_JOIN_TOKEN`); default: made once and kept in
    /// `<data_dir>/join-token`.
    pub join_token: Option<String>,
    /// Where the admin token is also written for the CLI (`~/.config/tanren/credentials.json`);
    /// `None` writes nowhere outside the data dir.
    pub credentials_file: Option<PathBuf>,
    /// Host names (besides loopback, the listen address and the public URL's host) requests may name
    /// in `Host`; `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// Serve REST on a non-loopback address without TLS (behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Serve REST and the WebSocket over HTTPS with this certificate and key (`--tls-cert`/`--tls-key`).
    pub tls: Option<tls::TlsPaths>,
    /// Root certificate (PEM) trusted when dialling `https://` workers, instead of the OS trust store.
    pub worker_ca_cert: Option<PathBuf>,
    /// State-changing requests per second per token (a minute's worth as burst, at most 120); 0 = off.
    pub mutations_per_second: f64,
    /// Largest weights upload from a worker, in bytes.
    pub max_weights_bytes: u64,
    /// Dataset uploads processed at once; more get 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// How many events a WebSocket client may fall behind before it is dropped.
    pub event_buffer: usize,
    /// How many recent events per study are kept for clients resuming with `?since=`.
    pub event_ring: usize,
    /// A client that does not take one message within this long is dropped.
    pub event_send_timeout: Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            public_url: None,
            max_upload_bytes: 2 << 30,
            worker_timeout: Duration::from_secs(20),
            max_retries: 2,
            trial_timeout: Duration::from_secs(24 * 3600),
            trial_silence: Duration::from_secs(120),
            tick: Duration::from_millis(500),
            event_buffer: 1024,
            event_ring: 4096,
            event_send_timeout: Duration::from_secs(10),
            admin_token: None,
            join_token: None,
            credentials_file: None,
            allowed_hosts: Vec::new(),
            insecure_http: false,
            tls: None,
            worker_ca_cert: None,
            mutations_per_second: 10.0,
            max_weights_bytes: 1 << 30,
            max_concurrent_uploads: 4,
        }
    }
}

/// Shared by every handler and the scheduler.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub files: files::Files,
    pub scheduler: scheduler::Scheduler,
    pub events: events::Hub,
    /// Cancelled when the server stops; long-lived connections (WebSockets) end with it.
    pub shutdown: CancellationToken,
    /// One lock per dataset sha256 being ingested, so identical uploads at once take turns.
    pub upload_locks: api::UploadLocks,
    /// Trial tokens, rate limits, allowed hosts (API tokens and sessions are in the store).
    pub auth: auth::Auth,
    /// Dataset uploads being processed (bounded by `max_concurrent_uploads`).
    pub uploads: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    /// Running studies' ETAs, reused for a second (`progress::summary`).
    pub eta_cache: progress::EtaCache,
    /// Finished studies' views, built once (`progress::FinishedViews`).
    pub finished_views: progress::FinishedViews,
    /// Each study's last WebSocket snapshot, shared by the watchers that connect at the same event.
    pub snapshots: api::SnapshotCache,
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    match start(config, listener, shutdown.clone()).await {
        Ok(server) => server.serve().await,
        // Stopped while a standby: nothing was started, nothing to drain.
        Err(_) if shutdown.is_cancelled() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A control plane that is set up (database migrated, state restored) but not yet serving; tests use
/// `state` to reach the event hub directly.
pub struct Server {
    pub state: Arc<AppState>,
    listener: TcpListener,
    /// Loaded at start, so a bad certificate or key stops `start`, not the first handshake.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    url: String,
    /// PostgreSQL: the leader lock this process holds (crate::leader).
    leader: Option<tanren_store::LeaderLock>,
    /// SQLite: the data dir's lock (crate::data_lock), released after the store is closed.
    data_lock: Option<data_lock::DataDirLock>,
}

impl Server {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn serve(self) -> anyhow::Result<()> {
        let state = self.state;
        let data_lock = self.data_lock;
        let shutdown = state.shutdown.clone();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let leader = self
            .leader
            .map(|lock| tokio::spawn(leader::watch(lock, shutdown.clone(), lost.clone())));
        let sched = tokio::spawn(scheduler::run_loop(state.clone(), shutdown.clone()));
        let events = tokio::spawn(events::run(state.clone(), shutdown.clone()));
        let app = api::router(state.clone());
        match self.tls {
            Some(tls) => {
                axum::serve(tls::TlsListener::new(self.listener, tls)?, app)
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                    .await?
            }
            None => {
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                    .await?
            }
        }
        shutdown.cancel();
        let _ = sched.await;
        let _ = events.await;
        state.store.close().await;
        drop(data_lock);
        if let Some(leader) = leader {
            if let Ok(Some(lock)) = leader.await {
                lock.release().await;
            }
        }
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!(
                "stopped: another control plane took over this PostgreSQL database after this one's \
                 connection broke; start this one again to run as its standby"
            );
        }
        Ok(())
    }
}

pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    if !addr.ip().is_loopback() && !config.insecure_http && tls.is_none() {
        anyhow::bail!(
            "refusing to serve REST on {addr} without TLS: API tokens and session cookies would cross \
             the network in clear. Bind 127.0.0.1, give --tls-cert and --tls-key (TANREN_TLS_CERT, \
             TANREN_TLS_KEY), or put a TLS-terminating proxy (or Ingress) in front and pass \
             --insecure-http (TANREN_INSECURE_HTTP=true) to say so"
        );
    }
    let worker_tls = tls::worker_client_config(config.worker_ca_cert.as_deref())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let files = files::Files::new(&config.data_dir)?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("tanren.db").display()));
    // SQLite: before the database is opened, a second control plane on this data dir refuses to start.
    let data_lock = if url.starts_with("sqlite:") {
        Some(data_lock::acquire(
            &config.data_dir,
            &format!("{scheme}://{addr}"),
        )?)
    } else {
        None
    };
    let store = Store::connect(&url).await?;
    // Before any trial is touched: a second control plane on this database waits here as a standby.
    let leader = match store.backend() {
        tanren_store::Backend::Postgres => {
            match leader::acquire(&url, &listener, tls.clone(), &shutdown).await? {
                Some(lock) => Some(lock),
                None => anyhow::bail!("shut down while waiting as a standby"),
            }
        }
        tanren_store::Backend::Sqlite => None,
    };
    let interrupted = store
        .fail_unfinished_trials(scheduler::INTERRUPTED_RESTART)
        .await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "trials left running by a previous control plane were marked failed"
        );
    }
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let scheduler = scheduler::Scheduler::new(public_url.clone(), config.worker_timeout, config.max_retries)
        .with_worker_tls(worker_tls);
    let browse_url = if addr.ip().is_unspecified() {
        format!("{scheme}://127.0.0.1:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    };
    auth::bootstrap(
        &store,
        &config.data_dir,
        config.admin_token.as_deref(),
        config.credentials_file.as_deref(),
        &browse_url,
    )
    .await?;
    let join_token = auth::join_token(&config.data_dir, config.join_token.as_deref())?;
    let allowed_hosts = if config.allowed_hosts.iter().any(|h| h.trim() == "*") {
        None
    } else {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(String::from).to_vec();
        hosts.push(match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
        if let Some(h) = public_url.split("://").nth(1).and_then(|r| r.split('/').next()) {
            hosts.push(h.to_string());
        }
        hosts.extend(config.allowed_hosts.iter().cloned());
        Some(hosts)
    };
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        files,
        scheduler,
        events: events::Hub::new(config.event_buffer, config.event_ring),
        shutdown,
        upload_locks: Default::default(),
        auth: auth::Auth::new(join_token, allowed_hosts, config.mutations_per_second),
        uploads: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_uploads.max(1))),
        metrics: Default::default(),
        eta_cache: Default::default(),
        finished_views: Default::default(),
        snapshots: Default::default(),
    });
    // A study that cannot be resumed is marked failed; only an unreadable database stops the start.
    state.scheduler.restore(&state).await?;
    if let Err(e) = scheduler::sweep_orphan_models(&state).await {
        tracing::warn!(error = %e, "could not look for weights of trials that did not complete");
    }
    tracing::info!(%addr, %public_url, tls = tls.is_some(), database = %url, data_dir = %config.data_dir.display(), "control plane listening");
    Ok(Server {
        state,
        listener,
        tls,
        url: format!("{scheme}://{addr}"),
        leader,
        data_lock,
    })
}
