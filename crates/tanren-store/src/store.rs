//! The `Store`: a pool plus the queries the control plane needs. Placeholders are `$n`, which both
//! SQLite and PostgreSQL accept.

use crate::{
    now_ms, DatasetRow, EpochRow, StoreError, StudyRow, TokenRow, TrialCount, TrialRow, TrialScore, WorkerRow,
};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tanren_core::{EndReason, EpochMetrics, FailureKind, StudyState, TrialResult, TrialState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Every trial column but the result blob (read as NULL).
const LIGHT_COLUMNS: &str =
    "id, study_id, number, state, params, config, worker_id, device, val_accuracy, val_loss,
    test_accuracy, test_loss, train_seconds, prepare_seconds, inference_ms, inference_ips, parameter_count,
    model_bytes, epochs_completed, CAST(NULL AS TEXT) AS result, error, failure_kind, retry_of, attempt,
    weights_path, model_sha256, created_at, started_at, finished_at";
/// What a list shows: also without the training config (read as '').
const PAGE_COLUMNS: &str =
    "id, study_id, number, state, params, '' AS config, worker_id, device, val_accuracy, val_loss,
    test_accuracy, test_loss, train_seconds, prepare_seconds, inference_ms, inference_ips, parameter_count,
    model_bytes, epochs_completed, CAST(NULL AS TEXT) AS result, error, failure_kind, retry_of, attempt,
    weights_path, model_sha256, created_at, started_at, finished_at";

pub struct NewDataset<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
    pub num_classes: i64,
    pub num_train: i64,
    pub num_test: i64,
    pub size_bytes: i64,
    pub summary: &'a str,
}

/// A trial's end with a result (`Complete`, or `Pruned` after its last epoch), written in one
/// transaction: the row, epochs that could not be stored while it ran, and where its weights are.
pub struct FinishedTrial<'a> {
    pub state: TrialState,
    pub result: &'a TrialResult,
    pub epochs: &'a [EpochMetrics],
    pub weights_path: Option<&'a str>,
    pub model_sha256: Option<&'a str>,
}

pub struct NewStudy<'a> {
    pub name: &'a str,
    pub dataset_id: i64,
    pub spec: &'a str,
    pub max_trials: Option<i64>,
    pub max_minutes: Option<f64>,
}

impl Store {
    /// Connect and migrate. `sqlite://path` (created if missing, WAL) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_string(),
        };
        let mut opts = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 16 });
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    // ---- datasets ----

    pub async fn insert_dataset(&self, d: NewDataset<'_>) -> Result<DatasetRow, StoreError> {
        let row: DatasetRow = sqlx::query_as(
            "INSERT INTO datasets (name, sha256, num_classes, num_train, num_test, size_bytes, summary, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(d.name)
        .bind(d.sha256)
        .bind(d.num_classes)
        .bind(d.num_train)
        .bind(d.num_test)
        .bind(d.size_bytes)
        .bind(d.summary)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    pub async fn dataset(&self, id: i64) -> Result<DatasetRow, StoreError> {
        sqlx::query_as("SELECT * FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("dataset {id}")))
    }

    pub async fn dataset_by_sha(&self, sha256: &str) -> Result<Option<DatasetRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM datasets WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn datasets(&self) -> Result<Vec<DatasetRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM datasets ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    // ---- studies ----

    pub async fn insert_study(&self, s: NewStudy<'_>) -> Result<StudyRow, StoreError> {
        Ok(sqlx::query_as(
            "INSERT INTO studies (name, dataset_id, state, spec, max_trials, max_minutes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        )
        .bind(s.name)
        .bind(s.dataset_id)
        .bind(StudyState::Running.as_str())
        .bind(s.spec)
        .bind(s.max_trials)
        .bind(s.max_minutes)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn study(&self, id: i64) -> Result<StudyRow, StoreError> {
        sqlx::query_as("SELECT * FROM studies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("study {id}")))
    }

    pub async fn studies(&self) -> Result<Vec<StudyRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM studies ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn studies_in_state(&self, state: StudyState) -> Result<Vec<StudyRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM studies WHERE state = $1 ORDER BY id")
                .bind(state.as_str())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Move a running study to a final state with the reason it ended; a study already finished keeps
    /// its state.
    pub async fn finish_study(
        &self,
        id: i64,
        state: StudyState,
        reason: EndReason,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE studies SET state = $1, error = $2, finished_at = $3, end_reason = $6 WHERE id = $4 AND state = $5",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(StudyState::Running.as_str())
        .bind(reason.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- trials ----

    pub async fn insert_trial(
        &self,
        study_id: i64,
        number: i64,
        params: &str,
        config: &str,
    ) -> Result<TrialRow, StoreError> {
        self.insert_trial_attempt(study_id, number, params, config, None, 0)
            .await
    }

    /// A queued trial; `retry_of` names the interrupted trial it repeats (same parameters) and
    /// `attempt` counts the retries so far.
    pub async fn insert_trial_attempt(
        &self,
        study_id: i64,
        number: i64,
        params: &str,
        config: &str,
        retry_of: Option<i64>,
        attempt: i64,
    ) -> Result<TrialRow, StoreError> {
        Ok(sqlx::query_as(
            "INSERT INTO trials (study_id, number, state, params, config, created_at, retry_of, attempt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(study_id)
        .bind(number)
        .bind(TrialState::Queued.as_str())
        .bind(params)
        .bind(config)
        .bind(now_ms())
        .bind(retry_of)
        .bind(attempt)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn start_trial(&self, id: i64, worker_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE trials SET state = $1, worker_id = $2, started_at = $3 WHERE id = $4")
            .bind(TrialState::Running.as_str())
            .bind(worker_id)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_trial_device(&self, id: i64, device: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE trials SET device = $1 WHERE id = $2")
            .bind(device)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_epoch(&self, trial_id: i64, m: &EpochMetrics) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trial_epochs (trial_id, epoch, train_loss, val_loss, val_accuracy, elapsed_seconds)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(trial_id)
        .bind(m.epoch as i64)
        .bind(m.train_loss)
        .bind(m.val_loss)
        .bind(m.val_accuracy)
        .bind(m.elapsed_seconds)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a finished trial's result, the epochs not yet stored and its weights in one transaction:
    /// either all of it is there or the trial is still unfinished.
    pub async fn finish_trial(&self, id: i64, f: &FinishedTrial<'_>) -> Result<(), StoreError> {
        let r = f.result;
        let json = serde_json::to_string(r)?;
        let mut tx = self.pool.begin().await?;
        for m in f.epochs {
            sqlx::query(
                "INSERT INTO trial_epochs (trial_id, epoch, train_loss, val_loss, val_accuracy, elapsed_seconds)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (trial_id, epoch) DO NOTHING",
            )
            .bind(id)
            .bind(m.epoch as i64)
            .bind(m.train_loss)
            .bind(m.val_loss)
            .bind(m.val_accuracy)
            .bind(m.elapsed_seconds)
            .execute(&mut *tx)
            .await?;
        }
        let updated = sqlx::query(
            "UPDATE trials SET state = $1, device = $2, val_accuracy = $3, val_loss = $4, test_accuracy = $5,
             test_loss = $6, train_seconds = $7, prepare_seconds = $8, inference_ms = $9, inference_ips = $10,
             parameter_count = $11, model_bytes = $12, epochs_completed = $13, result = $14, finished_at = $15,
             weights_path = $17, model_sha256 = $18, failure_kind = NULL, error = NULL
             WHERE id = $16",
        )
        .bind(f.state.as_str())
        .bind(&r.device)
        .bind(r.val_accuracy)
        .bind(r.val_loss)
        .bind(r.test_accuracy)
        .bind(r.test_loss)
        .bind(r.train_seconds)
        .bind(r.prepare_seconds)
        .bind(r.inference_ms_per_image)
        .bind(r.inference_images_per_second)
        .bind(r.parameter_count as i64)
        .bind(r.model_bytes as i64)
        .bind(r.epochs_completed as i64)
        .bind(json)
        .bind(now_ms())
        .bind(id)
        .bind(f.weights_path)
        .bind(f.model_sha256)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::NotFound(format!("trial {id}")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Mark a trial failed (with why) or pruned without a result, unless it already finished.
    pub async fn end_trial_without_result(
        &self,
        id: i64,
        state: TrialState,
        kind: Option<FailureKind>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE trials SET state = $1, error = $2, finished_at = $3, failure_kind = $5
             WHERE id = $4 AND state IN ('queued', 'running')",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(kind.map(FailureKind::as_str))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Change why a failed trial failed (an interrupted trial that can no longer be retried).
    pub async fn set_failure_kind(&self, id: i64, kind: FailureKind, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE trials SET failure_kind = $1, error = $2 WHERE id = $3 AND state = $4")
            .bind(kind.as_str())
            .bind(error)
            .bind(id)
            .bind(TrialState::Failed.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// At start-up nothing can be running: trials left queued/running by a previous process were
    /// interrupted (and are retried when their study resumes).
    pub async fn fail_unfinished_trials(&self, reason: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE trials SET state = $1, error = $2, finished_at = $3, failure_kind = $4
             WHERE state IN ('queued', 'running')",
        )
        .bind(TrialState::Failed.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(FailureKind::Interrupted.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn trial(&self, id: i64) -> Result<TrialRow, StoreError> {
        sqlx::query_as("SELECT * FROM trials WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("trial {id}")))
    }

    pub async fn trial_by_number(&self, study_id: i64, number: i64) -> Result<Option<TrialRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM trials WHERE study_id = $1 AND number = $2")
                .bind(study_id)
                .bind(number)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn trials(&self, study_id: i64) -> Result<Vec<TrialRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM trials WHERE study_id = $1 ORDER BY number")
                .bind(study_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One page of a study's trials in insertion order (ascending id; for a study that is trial
    /// number order), after the trial `after` (an id), at most `limit`; without the result blob and
    /// the training config (`result` is `None`, `config` empty), which a list never shows. A keyset
    /// page: trials inserted while a client pages appear after every older one, so a walk sees each
    /// trial exactly once.
    pub async fn trial_page(
        &self,
        study_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TrialRow>, StoreError> {
        let sql =
            format!("SELECT {PAGE_COLUMNS} FROM trials WHERE study_id = $1 AND id > $2 ORDER BY id LIMIT $3");
        Ok(sqlx::query_as(&sql)
            .bind(study_id)
            .bind(after.unwrap_or(i64::MIN))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A study's trials in number order without their result blobs (`result` is `None`): what
    /// progress, the ETA, the event snapshot and model choice read.
    pub async fn trials_light(&self, study_id: i64) -> Result<Vec<TrialRow>, StoreError> {
        let sql = format!("SELECT {LIGHT_COLUMNS} FROM trials WHERE study_id = $1 ORDER BY number");
        Ok(sqlx::query_as(&sql).bind(study_id).fetch_all(&self.pool).await?)
    }

    /// How many of a study's trials are in each (state, failure kind), without reading them.
    pub async fn trial_counts(&self, study_id: i64) -> Result<Vec<TrialCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT state, failure_kind, COUNT(*) AS count FROM trials WHERE study_id = $1
             GROUP BY state, failure_kind",
        )
        .bind(study_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A study's complete trials with a validation accuracy, in number order, as model selection
    /// (best trial, Pareto front, fastest within X points) needs them: four columns each.
    pub async fn complete_scores(&self, study_id: i64) -> Result<Vec<TrialScore>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, number, val_accuracy, inference_ms FROM trials
             WHERE study_id = $1 AND state = $2 AND val_accuracy IS NOT NULL ORDER BY number",
        )
        .bind(study_id)
        .bind(TrialState::Complete.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// (state, count) over every trial: the metrics' gauges, read at scrape time.
    pub async fn trial_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM trials GROUP BY state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn epochs(&self, trial_id: i64) -> Result<Vec<EpochRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM trial_epochs WHERE trial_id = $1 ORDER BY epoch")
                .bind(trial_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn epochs_for_study(&self, study_id: i64) -> Result<Vec<EpochRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT e.* FROM trial_epochs e JOIN trials t ON t.id = e.trial_id WHERE t.study_id = $1 ORDER BY e.trial_id, e.epoch",
        )
        .bind(study_id)
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- workers ----

    /// Register or refresh a worker (registration doubles as heartbeat).
    pub async fn upsert_worker(&self, w: &WorkerRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, grpc_url, device, device_name, torch_version, cuda_available, slots, registered_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET grpc_url = excluded.grpc_url, device = excluded.device,
               device_name = excluded.device_name, torch_version = excluded.torch_version,
               cuda_available = excluded.cuda_available, slots = excluded.slots, last_seen_at = excluded.last_seen_at",
        )
        .bind(&w.id)
        .bind(&w.grpc_url)
        .bind(&w.device)
        .bind(&w.device_name)
        .bind(&w.torch_version)
        .bind(w.cuda_available)
        .bind(w.slots)
        .bind(w.registered_at)
        .bind(w.last_seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM workers ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Forget workers not heard from since `seen_before` (unix ms): the workers table and every read of
    /// it (each scheduler tick, registration and worker list) stay the size of the fleet, not of
    /// every worker that ever registered. A forgotten worker that comes back registers again.
    pub async fn forget_workers(&self, seen_before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM workers WHERE last_seen_at < $1")
            .bind(seen_before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    // ---- API tokens and dashboard sessions (secrets only as SHA-256) ----

    pub async fn insert_token(
        &self,
        name: &str,
        scope: &str,
        token_sha256: &str,
    ) -> Result<TokenRow, StoreError> {
        Ok(sqlx::query_as(
            "INSERT INTO api_tokens (name, scope, token_sha256, created_at) VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(name)
        .bind(scope)
        .bind(token_sha256)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?)
    }

    /// A token that is not revoked, by the SHA-256 of its secret.
    pub async fn live_token(&self, token_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL")
                .bind(token_sha256)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Whether any admin token is still valid (the first start creates one when none is).
    pub async fn has_live_admin_token(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens WHERE scope = 'admin' AND revoked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Revoke a token and end its sessions, in one transaction.
    pub async fn revoke_token(&self, id: i64) -> Result<TokenRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TokenRow> = sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
        sqlx::query("DELETE FROM sessions WHERE token_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Best effort, at most once a minute per token (the caller decides): when a token was last used.
    pub async fn touch_token(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_session(
        &self,
        session_sha256: &str,
        token_id: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (session_sha256, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(session_sha256)
        .bind(token_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live token behind an unexpired session.
    pub async fn session_token(&self, session_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT t.* FROM sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.session_sha256 = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(session_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE session_sha256 = $1 OR expires_at <= $2")
            .bind(session_sha256)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
