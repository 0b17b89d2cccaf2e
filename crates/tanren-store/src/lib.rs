//! Storage for tanren: datasets, studies, trials, per-epoch metrics and workers, through sqlx's `Any`
//! driver so one set of queries serves SQLite (embedded default, WAL) and PostgreSQL (at scale).
//!
//! Invariants: times are unix milliseconds; structured values are JSON text defined by tanren-core
//! types; every write that must be all-or-nothing runs in one transaction. Each backend has its own
//! `migrations/` directory holding the same schema.

mod leader;
mod rows;
mod store;

pub use leader::{LeaderLock, LockCheck, LEADER_LOCK_KEY};
pub use rows::*;
pub use store::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url `{0}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} not found")]
    NotFound(String),
}

impl StoreError {
    /// Worth trying again: the database was busy or unreachable, not a violated constraint or a bug.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(d)) => {
                !(d.is_unique_violation() || d.is_foreign_key_violation() || d.is_check_violation())
            }
            StoreError::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Db(_) => false,
            StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::Json(_)
            | StoreError::NotFound(_) => false,
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
