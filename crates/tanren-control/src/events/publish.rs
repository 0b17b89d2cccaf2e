//! The publishers: read what the scheduler wrote and publish it on the hub (trial changes, a study's
//! end, debounced progress, workers up and down).

use super::Event;
use crate::AppState;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tanren_core::StudyState;
use tokio_util::sync::CancellationToken;

/// Progress events are debounced to at most one per study per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(400);
/// Workers not heard from for this long are forgotten (their rows deleted), checked this often.
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(24 * 3600);
const FORGET_WORKERS_EVERY: Duration = Duration::from_secs(60);

/// Re-read a trial after the scheduler wrote it and publish its new state. Errors are logged only:
/// a missed event must not fail a trial (a reconnecting client gets a snapshot from the database).
pub async fn trial_changed(state: &AppState, trial_id: i64) {
    match state.store.trial(trial_id).await {
        Ok(t) => state.events.trial(&t),
        Err(e) => tracing::warn!(trial_id, error = %e, "trial event not published"),
    }
}

/// A study left `running`: publish its final progress right away (not debounced), then its final
/// state, so `study_finished` is the last event and a client never ends on stale counts.
pub async fn study_finished(state: &AppState, study_id: i64) {
    match state.store.study(study_id).await {
        Ok(row) if row.state != StudyState::Running.as_str() => {
            if let Err(e) = publish_progress(state, study_id).await {
                tracing::warn!(study_id, error = %e, "final progress event not published");
            }
            state.events.publish(
                study_id,
                Event::StudyFinished {
                    state: row.state,
                    error: row.error,
                    end_reason: row.end_reason,
                },
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(study_id, error = %e, "study event not published"),
    }
}

/// Background task: debounced progress events, and worker up/down from heartbeats (a worker is down
/// when it has not been heard from within the worker timeout, which no request announces).
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut live: Option<HashSet<String>> = None;
    let mut forgot_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.events.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for id in state.events.take_dirty() {
            if let Err(e) = publish_progress(&state, id).await {
                tracing::warn!(study_id = id, error = %e, "progress event not published");
            }
        }
        if let Err(e) = workers_changed(&state, &mut live).await {
            tracing::warn!(error = %e, "worker events not published");
        }
        state.events.forget_idle();
        if forgot_at.is_none_or(|at| at.elapsed() >= FORGET_WORKERS_EVERY) {
            forgot_at = Some(std::time::Instant::now());
            let before = tanren_store::now_ms() - FORGET_WORKERS_AFTER.as_millis() as i64;
            match state.store.forget_workers(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(forgotten = n, "forgot workers not heard from in 24 h"),
                Err(e) => tracing::warn!(error = %e, "old workers not forgotten"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
    }
}

async fn publish_progress(state: &AppState, study_id: i64) -> Result<(), tanren_store::StoreError> {
    let row = state.store.study(study_id).await?;
    let sum = crate::progress::summary(state, &row).await?;
    let best_trial = sum.best.as_ref().map(crate::views::trial);
    state.events.publish(
        study_id,
        Event::Progress {
            progress: sum.progress,
            best_trial,
        },
    );
    Ok(())
}

async fn workers_changed(
    state: &AppState,
    prev: &mut Option<HashSet<String>>,
) -> Result<(), tanren_store::StoreError> {
    let all = state.store.workers().await?;
    let live = state.scheduler.live_workers(all.clone());
    let now: HashSet<String> = live.iter().map(|w| w.id.clone()).collect();
    if let Some(before) = prev.as_ref() {
        let busy = state.scheduler.busy_workers().await;
        for w in live.iter().filter(|w| !before.contains(&w.id)) {
            state.events.publish_all(Event::WorkerUp {
                worker: crate::views::worker(w, true, busy.get(&w.id).map_or(&[][..], Vec::as_slice)),
            });
        }
        for id in before.iter().filter(|id| !now.contains(*id)) {
            state.events.publish_all(Event::WorkerDown {
                worker_id: id.clone(),
            });
        }
    }
    *prev = Some(now);
    Ok(())
}
