//! One control plane per database. On PostgreSQL, `start` takes the leader lock
//! (`tanren_store::LeaderLock`, a session advisory lock) before it touches any trial: a second control
//! plane on the same database is a **standby** — it answers every request, `/healthz` included, with
//! 503 `standby` (so a load balancer or readiness probe sends it nothing), logs that it waits, and
//! neither marks trials interrupted, nor restores studies, nor starts the scheduler. When the leader
//! dies its session ends, the lock is free, and the standby's next attempt (every second) takes it and
//! starts as if the leader had restarted. The leader checks its lock every second; if another session
//! holds it (its connection broke and a standby was quicker), it shuts down at once with an error, so
//! two schedulers never run for longer than that second. SQLite needs no lock: one file, one process.

use crate::tls::TlsListener;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tanren_store::{LeaderLock, LockCheck};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(1);
/// How often a waiting standby says so in the log.
const SAY_WAITING: Duration = Duration::from_secs(30);

pub const STANDBY_MESSAGE: &str = "this control plane is a standby: another control plane holds the \
    lock on its PostgreSQL database; it takes over (within a few seconds) when that one stops";

async fn standby_answer() -> impl IntoResponse {
    let body = serde_json::json!({"error": {"code": "standby", "message": STANDBY_MESSAGE}});
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        axum::Json(body),
    )
}

/// Wait until this process holds the leader lock of `database_url`, answering 503 on a clone of
/// `listener` meanwhile. `None` when `shutdown` came first.
pub async fn acquire(
    database_url: &str,
    listener: &TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<LeaderLock>> {
    if let Some(lock) = LeaderLock::try_acquire(database_url).await? {
        return Ok(Some(lock));
    }
    tracing::warn!(
        "standby: another control plane holds the lock on this PostgreSQL database; waiting to take \
         over (answering 503 meanwhile)"
    );
    let acquired = CancellationToken::new();
    let clone = TcpListener::from_std(clone_std(listener)?)?;
    let app = axum::Router::new().fallback(standby_answer);
    let stop = acquired.clone();
    let server = tokio::spawn(async move {
        let r = match tls {
            Some(tls) => {
                axum::serve(TlsListener::new(clone, tls)?, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
            None => {
                axum::serve(clone, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
        };
        r
    });
    let mut said = tokio::time::Instant::now();
    let lock = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            _ = tokio::time::sleep(RETRY) => {}
        }
        match LeaderLock::try_acquire(database_url).await {
            Ok(Some(lock)) => break Some(lock),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "standby: cannot reach the database; still waiting"),
        }
        if said.elapsed() >= SAY_WAITING {
            tracing::info!("standby: still waiting for the control plane holding the lock to stop");
            said = tokio::time::Instant::now();
        }
    };
    acquired.cancel();
    let _ = server.await;
    if lock.is_some() {
        tracing::info!("took the leader lock: this control plane is now active");
    }
    Ok(lock)
}

fn clone_std(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{AsFd, BorrowedFd};
    let fd: BorrowedFd<'_> = listener.as_fd();
    let owned = fd.try_clone_to_owned()?;
    let std = std::net::TcpListener::from(owned);
    std.set_nonblocking(true)?;
    Ok(std)
}

/// Keep checking the lock until `shutdown`, then hand it back (released once trial tasks are drained,
/// so a standby takes over at once after a clean stop). When another session holds it, set `lost` and
/// shut down.
pub async fn watch(
    mut lock: LeaderLock,
    shutdown: CancellationToken,
    lost: Arc<AtomicBool>,
) -> Option<LeaderLock> {
    let mut unreachable_said = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
        match lock.check().await {
            LockCheck::Held => {
                if unreachable_said {
                    tracing::info!("database reachable again; still the leader");
                    unreachable_said = false;
                }
            }
            LockCheck::Unreachable(e) => {
                if !unreachable_said {
                    tracing::warn!(error = %e, "cannot reach the database to check the leader lock; retrying");
                    unreachable_said = true;
                }
            }
            LockCheck::Lost => {
                tracing::error!(
                    "another control plane took the leader lock (this one's database connection broke); \
                     shutting down so only one schedules"
                );
                lost.store(true, Ordering::SeqCst);
                shutdown.cancel();
                return None;
            }
        }
    }
    Some(lock)
}
