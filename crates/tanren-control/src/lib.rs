//! The tanren control plane: REST API over datasets, studies, trials and workers; the scheduler that
//! asks the search engine for trials and dispatches them over gRPC to workers; dataset and model files
//! on disk; the database through tanren-store. It never links libtorch.
//!
//! API boundary: `run(config, listener, shutdown)`; the binary only parses flags and binds.

pub mod api;
pub mod error;
pub mod files;
pub mod model_card;
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
    /// How often the scheduler looks for work when nothing wakes it.
    pub tick: Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            public_url: None,
            max_upload_bytes: 2 << 30,
            worker_timeout: Duration::from_secs(20),
            tick: Duration::from_millis(500),
        }
    }
}

/// Shared by every handler and the scheduler.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub files: files::Files,
    pub scheduler: scheduler::Scheduler,
}

pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
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
    let scheduler = scheduler::Scheduler::new(public_url.clone(), config.worker_timeout);
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        files,
        scheduler,
    });
    state.scheduler.restore(&state).await?;
    let sched = tokio::spawn(scheduler::run_loop(state.clone(), shutdown.clone()));
    let app = api::router(state.clone());
    tracing::info!(%addr, %public_url, database = %url, data_dir = %config.data_dir.display(), "control plane listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = sched.await;
    state.store.close().await;
    Ok(())
}
