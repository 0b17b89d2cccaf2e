//! A study's progress and remaining time, computed in one place for REST (`GET /studies/{id}`), the
//! WebSocket `progress` event and the CLI. The ETA comes from measured trial durations and the number of
//! live workers; when few trials have finished it is a wide range, not a confident number.

use crate::AppState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tanren_core::{Candidate, EndReason, FailureKind, Objectives, StudyState, TrialState};
use tanren_store::{now_ms, StoreError, StudyRow, TrialCount, TrialRow, TrialScore};
use tokio::sync::OnceCell;

pub use tanren_api::Progress;

/// Failed because its worker or connection went away; retried, so it uses no budget.
pub fn is_interrupted(t: &TrialRow) -> bool {
    t.failure_kind.as_deref() == Some(FailureKind::Interrupted.as_str())
}

/// What a stored study optimises (accuracy alone for specs from before objectives existed).
pub fn objectives_of(row: &StudyRow) -> Objectives {
    serde_json::from_str::<serde_json::Value>(&row.spec)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("objectives")?.clone()).ok())
        .unwrap_or_default()
}

/// Complete trials as model selection sees them, in the given (trial number) order.
pub fn candidates(trials: &[TrialRow]) -> Vec<Candidate> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete.as_str())
        .filter_map(|t| {
            Some(Candidate {
                id: t.id,
                val_accuracy: t.val_accuracy?,
                inference_ms: t.inference_ms,
            })
        })
        .collect()
}

/// The same from the store's four-column read of the complete trials (`Store::complete_scores`).
pub fn candidates_of(scores: &[TrialScore]) -> Vec<Candidate> {
    scores
        .iter()
        .map(|t| Candidate {
            id: t.id,
            val_accuracy: t.val_accuracy,
            inference_ms: t.inference_ms,
        })
        .collect()
}

/// How many of a study's trials are in each state; `interrupted` (failed, retried) are also among
/// `failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub complete: usize,
    pub pruned: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub interrupted: usize,
}

impl Counts {
    fn add(&mut self, state: &str, failure_kind: Option<&str>, n: usize) {
        match state.parse::<TrialState>() {
            Ok(TrialState::Complete) => self.complete += n,
            Ok(TrialState::Pruned) => self.pruned += n,
            Ok(TrialState::Failed) => self.failed += n,
            Ok(TrialState::Running) => self.running += n,
            Ok(TrialState::Queued) => self.queued += n,
            Err(_) => {}
        }
        if failure_kind == Some(FailureKind::Interrupted.as_str()) {
            self.interrupted += n;
        }
    }

    pub fn of_rows(trials: &[TrialRow]) -> Counts {
        let mut c = Counts::default();
        for t in trials {
            c.add(&t.state, t.failure_kind.as_deref(), 1);
        }
        c
    }

    /// Trials that count as done: finished, less the interrupted ones (retried, so they use no
    /// budget).
    pub fn done(&self) -> usize {
        (self.complete + self.pruned + self.failed).saturating_sub(self.interrupted)
    }

    /// From the database's `GROUP BY` (`Store::trial_counts`), without reading a trial.
    pub fn of_counts(rows: &[TrialCount]) -> Counts {
        let mut c = Counts::default();
        for r in rows {
            c.add(&r.state, r.failure_kind.as_deref(), r.count.max(0) as usize);
        }
        c
    }
}

/// What the study view and the `progress` event show besides the study row: its progress, the
/// complete trials' scores and the best trial. Read with a count, a four-column read of the complete
/// trials and one row; only a running study's ETA reads its trials (without their result blobs).
pub struct Summary {
    pub progress: Progress,
    pub scores: Vec<TrialScore>,
    pub best: Option<TrialRow>,
}

/// A running study's ETA and its range.
pub type Eta = (Option<f64>, Option<[f64; 2]>);

/// How long a running study's ETA is reused. Computing it reads the study's trials (without blobs),
/// fits the time model and prices the search space; the study page, the study list, snapshots and
/// progress events all ask, and an estimate of minutes does not change within a second.
pub const ETA_TTL: Duration = Duration::from_secs(1);

/// Running studies' ETAs of the last `ETA_TTL` (see `summary`). Single flight: when one expires, the
/// first request computes it again and the others that arrive meanwhile wait for that answer instead
/// of each reading the study's trials (200 clients polling a live study would otherwise all recompute
/// in the same instant, every second). A failed computation is not kept.
#[derive(Default)]
pub struct EtaCache(Mutex<HashMap<i64, (Instant, EtaCell)>>);

type EtaCell = Arc<OnceCell<Eta>>;

impl EtaCache {
    async fn get_or_compute<F, Fut>(&self, study_id: i64, compute: F) -> Result<Eta, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Eta, StoreError>>,
    {
        let cell = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, (at, _)| at.elapsed() < ETA_TTL);
            map.entry(study_id)
                .or_insert_with(|| (Instant::now(), Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_try_init(compute).await.copied()
    }
}

/// The views of finished studies. A finished study's trials never change, so its view (progress,
/// best trial, Pareto front; the scores of every complete trial went into it) is built once, not on
/// every request: a 10,000-trial study's page is then a clone. Kept while the row's state, end,
/// finish time and name are the ones it was built from, and only once no trial of it runs.
#[derive(Default)]
pub struct FinishedViews(Mutex<HashMap<i64, FinishedView>>);

/// The row fields it was built from, the view, and the scores it was built from.
type FinishedView = (ViewKey, tanren_api::Study, Arc<Vec<TrialScore>>);

type ViewKey = (String, Option<i64>, Option<String>, Option<String>, String);

fn view_key(row: &StudyRow) -> ViewKey {
    (
        row.state.clone(),
        row.finished_at,
        row.end_reason.clone(),
        row.error.clone(),
        row.name.clone(),
    )
}

/// Finished studies whose views are kept at most; past it the cache starts over.
const MAX_FINISHED_VIEWS: usize = 1024;

impl FinishedViews {
    pub fn get(&self, row: &StudyRow) -> Option<tanren_api::Study> {
        if row.state == StudyState::Running.as_str() {
            return None;
        }
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&row.id)
            .filter(|(k, _, _)| *k == view_key(row))
            .map(|(_, v, _)| v.clone())
    }

    /// The complete trials' scores the view was built from (the model download chooses from them).
    pub fn scores(&self, row: &StudyRow) -> Option<Arc<Vec<TrialScore>>> {
        if row.state == StudyState::Running.as_str() {
            return None;
        }
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&row.id)
            .filter(|(k, _, _)| *k == view_key(row))
            .map(|(_, _, s)| s.clone())
    }

    pub fn put(&self, row: &StudyRow, view: &tanren_api::Study, scores: Vec<TrialScore>) {
        // A stopped or failed study's cancelled trials end a moment after its row does: kept only
        // once none of them is left running or queued.
        let settled = view.progress.running == 0 && view.progress.queued == 0;
        if row.state == StudyState::Running.as_str() || row.finished_at.is_none() || !settled {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_FINISHED_VIEWS {
            map.clear();
        }
        map.insert(row.id, (view_key(row), view.clone(), Arc::new(scores)));
    }
}

pub async fn summary(state: &AppState, row: &StudyRow) -> Result<Summary, StoreError> {
    let counts = Counts::of_counts(&state.store.trial_counts(row.id).await?);
    let scores = state.store.complete_scores(row.id).await?;
    let best = match objectives_of(row).best(&candidates_of(&scores)) {
        Some(c) => Some(state.store.trial(c.id).await?),
        None => None,
    };
    let eta = if row.state != StudyState::Running.as_str() {
        (Some(0.0), Some([0.0, 0.0]))
    } else {
        state
            .eta_cache
            .get_or_compute(row.id, || async {
                let trials = state.store.trials_light(row.id).await?;
                let parallel = state
                    .scheduler
                    .slots_per_study(&state.scheduler.live_workers(state.store.workers().await?));
                let inputs = crate::estimate::eta_inputs(state, row, &trials).await;
                Ok(remaining(row, counts, &trials, parallel, inputs.as_ref()))
            })
            .await?
    };
    Ok(Summary {
        progress: progress(row, counts, eta),
        scores,
        best,
    })
}

/// A running study's remaining time from its rows (`counts` are the same trials by state).
/// `parallel` is how many of its trials run at once: the live workers' slots shared among the running
/// studies (at least 1). `eta_inputs` (see crate::estimate) gives
/// the ETA from the time model; without it, from the mean of the measured trial durations.
pub fn remaining(
    row: &StudyRow,
    counts: Counts,
    trials: &[TrialRow],
    parallel: usize,
    eta_inputs: Option<&crate::estimate::EtaInputs>,
) -> Eta {
    let done = counts.done();
    match eta_inputs {
        Some(inputs) => crate::estimate::eta(row, trials, done, parallel.max(1), inputs),
        None => eta(row, trials, done, counts.running, parallel.max(1)),
    }
}

/// The study's progress from its trial counts and (for a running study) its ETA; a finished study's
/// ETA is 0 whatever `eta` says.
pub fn progress(row: &StudyRow, counts: Counts, eta: Eta) -> Progress {
    let Counts {
        complete,
        pruned,
        failed,
        running,
        queued,
        interrupted,
    } = counts;
    let done = counts.done();
    let finished = row.state != StudyState::Running.as_str();
    let (eta, range) = if finished {
        (Some(0.0), Some([0.0, 0.0]))
    } else {
        eta
    };
    // A study that did all it was going to do (its minutes budget or search space ran out before its
    // trial budget) reads as complete: `done` of `done`, not "4 / 20".
    let ended_done = row
        .end_reason
        .as_deref()
        .and_then(|r| r.parse::<EndReason>().ok())
        .is_some_and(EndReason::is_done);
    let total = if ended_done {
        Some(done as i64)
    } else {
        row.max_trials
    };
    Progress {
        done,
        total,
        complete,
        pruned,
        failed,
        interrupted,
        running,
        queued,
        elapsed_seconds: (row.finished_at.unwrap_or_else(now_ms) - row.created_at) as f64 / 1000.0,
        eta_seconds: eta,
        eta_range_seconds: range,
    }
}

/// Remaining time = what is left of the running trials + rounds of `parallel` trials still to start,
/// each round one mean trial duration. The range treats trial durations as independent draws with the
/// measured spread (a prior of ±50% while fewer than two are measured) plus the error of the mean;
/// both are capped by the minutes budget. `None` until one trial has finished (unless only minutes bound
/// the study).
fn eta(
    row: &StudyRow,
    trials: &[TrialRow],
    done: usize,
    running: usize,
    parallel: usize,
) -> (Option<f64>, Option<[f64; 2]>) {
    let durations: Vec<f64> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete.as_str() || t.state == TrialState::Pruned.as_str())
        .filter_map(|t| Some((t.finished_at? - t.started_at?) as f64 / 1000.0))
        .collect();
    let now = now_ms();
    let by_deadline = row
        .max_minutes
        .map(|m| ((row.created_at + (m * 60_000.0) as i64 - now) as f64 / 1000.0).max(0.0));
    let cap = |x: f64| by_deadline.map_or(x, |d| x.min(d));
    if durations.is_empty() {
        let only_deadline = by_deadline.filter(|_| row.max_trials.is_none());
        return (only_deadline, only_deadline.map(|d| [d, d]));
    }
    let n = durations.len() as f64;
    let mean = durations.iter().sum::<f64>() / n;
    let sd = if durations.len() < 2 {
        0.5 * mean
    } else {
        (durations.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0))
            .sqrt()
            .max(0.05 * mean)
    };
    let Some(max) = row.max_trials else {
        return (by_deadline, by_deadline.map(|d| [d, d]));
    };
    let not_started = (max as usize).saturating_sub(done + running);
    let running_left: f64 = trials
        .iter()
        .filter(|t| t.state == TrialState::Running.as_str())
        .filter_map(|t| t.started_at)
        .map(|s| (mean - (now - s) as f64 / 1000.0).max(0.0))
        .fold(0.0, f64::max);
    let rounds = (not_started as f64 / parallel as f64).ceil();
    let central = running_left + rounds * mean;
    // Spread of a sum of `rounds` durations, plus `rounds` times the uncertainty of the mean; the
    // running trials contribute one more draw when there are any.
    let draws = rounds + if running > 0 { 1.0 } else { 0.0 };
    let spread = (draws * sd * sd + draws * draws * sd * sd / n).sqrt();
    let z = 1.2816; // 80% two-sided
    let lo = (central - z * spread).max(0.0);
    let hi = central + z * spread;
    (Some(cap(central)), Some([cap(lo), cap(hi)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> StudyRow {
        StudyRow {
            id: 7,
            name: "s".into(),
            dataset_id: 1,
            state: state.into(),
            spec: "{}".into(),
            max_trials: Some(3),
            max_minutes: None,
            error: None,
            end_reason: Some("stopped".into()),
            created_at: 0,
            finished_at: Some(1_000),
        }
    }

    fn view(row: &StudyRow, counts: Counts) -> tanren_api::Study {
        crate::views::study(row, &[], None, progress(row, counts, (None, None)))
    }

    #[test]
    fn a_finished_view_is_kept_only_once_nothing_of_it_runs_and_while_its_row_is_unchanged() {
        let cache = FinishedViews::default();
        let mut r = row("stopped");
        // Stopped with its cancelled trial still running: not kept (it ends a moment later).
        let running = Counts {
            running: 1,
            ..Counts::default()
        };
        cache.put(&r, &view(&r, running), Vec::new());
        assert!(cache.get(&r).is_none());
        let ended = Counts {
            failed: 1,
            ..Counts::default()
        };
        let v = view(&r, ended);
        cache.put(&r, &v, Vec::new());
        assert_eq!(cache.get(&r), Some(v));
        assert!(cache.scores(&r).is_some());
        r.name = "renamed".into();
        assert!(cache.get(&r).is_none(), "a changed row is built again");
        let running_row = row("running");
        cache.put(&running_row, &view(&running_row, ended), Vec::new());
        assert!(cache.get(&running_row).is_none(), "a running study is never kept");
    }
}
