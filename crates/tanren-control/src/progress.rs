//! A study's progress and remaining time, computed in one place for REST (`GET /studies/{id}`), the
//! WebSocket `progress` event and the CLI. The ETA comes from measured trial durations and the number of
//! live workers; when few trials have finished it is a wide range, not a confident number.

use tanren_api::Trial;
use tanren_core::{Candidate, EndReason, FailureKind, Objectives, StudyState, TrialState};
use tanren_store::{now_ms, StudyRow, TrialRow};

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

fn row_of(trials: &[TrialRow], c: Option<Candidate>) -> Option<&TrialRow> {
    let id = c?.id;
    trials.iter().find(|t| t.id == id)
}

/// Best complete trial by validation accuracy within the study's latency limit (earlier trial wins
/// a tie).
pub fn best_trial<'a>(objectives: &Objectives, trials: &'a [TrialRow]) -> Option<&'a TrialRow> {
    row_of(trials, objectives.best(&candidates(trials)))
}

pub fn best_view(objectives: &Objectives, trials: &[TrialRow]) -> Option<Trial> {
    best_trial(objectives, trials).map(crate::views::trial)
}

/// `parallel` is the number of live workers (at least 1).
/// `eta` (see crate::estimate) gives the ETA from the time model; without it, from the mean of the
/// measured trial durations.
pub fn progress(
    row: &StudyRow,
    trials: &[TrialRow],
    parallel: usize,
    eta_inputs: Option<&crate::estimate::EtaInputs>,
) -> Progress {
    let count = |st: TrialState| trials.iter().filter(|t| t.state == st.as_str()).count();
    let interrupted = trials.iter().filter(|t| is_interrupted(t)).count();
    let (complete, pruned, failed, running, queued) = (
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Failed),
        count(TrialState::Running),
        count(TrialState::Queued),
    );
    let done = (complete + pruned + failed).saturating_sub(interrupted);
    let finished = row.state != StudyState::Running.as_str();
    let (eta, range) = if finished {
        (Some(0.0), Some([0.0, 0.0]))
    } else if let Some(inputs) = eta_inputs {
        crate::estimate::eta(row, trials, done, parallel.max(1), inputs)
    } else {
        eta(row, trials, done, running, parallel.max(1))
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
