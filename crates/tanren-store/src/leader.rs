//! The leader lock: a PostgreSQL session-level advisory lock that one control plane per database
//! holds for as long as it runs, so a second one on the same database waits as a standby instead of
//! scheduling the same studies. It lives on a connection of its own (never the pool's), because the
//! lock belongs to the session: when the holder dies, or its connection does, PostgreSQL releases it
//! and a standby's next attempt takes it.

use crate::StoreError;
use sqlx::{AnyConnection, Connection};

/// The advisory lock key: "tanren" in ASCII. Other applications sharing the database should not use it.
pub const LEADER_LOCK_KEY: i64 = 0x7461_6e72_656e;

/// What the holder learns when it checks its lock.
#[derive(Debug, PartialEq, Eq)]
pub enum LockCheck {
    /// Still held (possibly taken again on a new connection after the old one broke).
    Held,
    /// The database cannot be reached right now; whether the lock is still ours is unknown.
    Unreachable(String),
    /// Another session holds it now: this process is no longer the leader.
    Lost,
}

pub struct LeaderLock {
    url: String,
    conn: Option<AnyConnection>,
}

impl LeaderLock {
    /// One attempt: `Some` when this process now holds the lock, `None` when another session does.
    pub async fn try_acquire(url: &str) -> Result<Option<LeaderLock>, StoreError> {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url).await?;
        if try_lock(&mut conn).await? {
            Ok(Some(LeaderLock {
                url: url.to_string(),
                conn: Some(conn),
            }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Is the lock still ours? A broken connection lost it (the server ends the session), so it is
    /// taken again on a new one if nobody else was quicker.
    pub async fn check(&mut self) -> LockCheck {
        if let Some(conn) = self.conn.as_mut() {
            if conn.ping().await.is_ok() {
                return LockCheck::Held;
            }
        }
        self.conn = None;
        let mut conn = match AnyConnection::connect(&self.url).await {
            Ok(c) => c,
            Err(e) => return LockCheck::Unreachable(e.to_string()),
        };
        match try_lock(&mut conn).await {
            Ok(true) => {
                self.conn = Some(conn);
                LockCheck::Held
            }
            Ok(false) => LockCheck::Lost,
            Err(e) => LockCheck::Unreachable(e.to_string()),
        }
    }

    /// Let go at a clean shutdown, so a standby takes over at once.
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

async fn try_lock(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK_KEY)
        .fetch_one(conn)
        .await?)
}
