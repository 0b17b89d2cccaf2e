//! The tanren control plane: REST API over datasets, studies, trials and workers; the scheduler that
//! asks the search engine for trials and dispatches them over gRPC to workers; dataset and model files
//! on disk; the database through tanren-store; the live event stream (WebSocket) and the embedded
//! dashboard. It never links libtorch.
//!
//! API boundary: `run(config, listener, shutdown)` (or `start` then `Server::serve`, for tests that need
//! the state); the binary only parses flags and binds.

pub mod api;
pub mod assets;
pub mod error;
pub mod events;
pub mod files;
pub mod model_card;
pub mod onnx;
pub mod progress;
pub mod scheduler;
pub mod study_spec;

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
    /// default `http://<listener address>`.
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
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, listener, shutdown).await?.serve().await
}

/// A control plane that is set up (database migrated, state restored) but not yet serving; tests use
/// `state` to reach the event hub directly.
pub struct Server {
    pub state: Arc<AppState>,
    listener: TcpListener,
    url: String,
}

impl Server {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn serve(self) -> anyhow::Result<()> {
        let state = self.state;
        let shutdown = state.shutdown.clone();
        let sched = tokio::spawn(scheduler::run_loop(state.clone(), shutdown.clone()));
        let events = tokio::spawn(events::run(state.clone(), shutdown.clone()));
        let app = api::router(state.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await?;
        shutdown.cancel();
        let _ = sched.await;
        let _ = events.await;
        state.store.close().await;
        Ok(())
    }
}

pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let files = files::Files::new(&config.data_dir)?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("tanren.db").display()));
    let store = Store::connect(&url).await?;
    let interrupted = store
        .fail_unfinished_trials(scheduler::INTERRUPTED_RESTART)
        .await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "trials left running by a previous control plane were marked failed"
        );
    }
    let addr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let scheduler = scheduler::Scheduler::new(public_url.clone(), config.worker_timeout, config.max_retries);
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        files,
        scheduler,
        events: events::Hub::new(config.event_buffer, config.event_ring),
        shutdown,
        upload_locks: Default::default(),
    });
    // A study that cannot be resumed is marked failed; only an unreadable database stops the start.
    state.scheduler.restore(&state).await?;
    tracing::info!(%addr, %public_url, database = %url, data_dir = %config.data_dir.display(), "control plane listening");
    Ok(Server {
        state,
        listener,
        url: format!("http://{addr}"),
    })
}
