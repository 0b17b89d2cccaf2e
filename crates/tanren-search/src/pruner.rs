//! Pruners: median, asynchronous successive halving (ASHA) and Hyperband over ASHA brackets.
//!
//! Decisions are pure functions of the study config and trial records, so they survive
//! restarts. Ports of Optuna's `MedianPruner` (`PercentilePruner`), `SuccessiveHalvingPruner` and
//! `HyperbandPruner`; ASHA's per-rung values are re-derived from each trial's intermediate values
//! rather than stored as system attributes.

use crate::config::{Direction, PrunerConfig, StudyConfig};
use crate::rng::{mix, purpose};
use crate::study::{PruneDecision, TrialRecord, TrialStatus};

/// Decision for trial `number`, whose latest report is already recorded.
pub(crate) fn decide(config: &StudyConfig, trials: &[TrialRecord], number: u64) -> PruneDecision {
    let dir = config.directions[0];
    let trial = &trials[number as usize];
    let prune = match &config.pruner {
        PrunerConfig::None => false,
        PrunerConfig::Median {
            n_startup_trials,
            n_warmup_steps,
            interval_steps,
            n_min_trials,
        } => median(
            trials,
            trial,
            dir,
            *n_startup_trials,
            *n_warmup_steps,
            *interval_steps,
            *n_min_trials,
        ),
        PrunerConfig::Asha {
            min_resource,
            reduction_factor,
            min_early_stopping_rate,
            bootstrap_count,
        } => {
            let sh = Halving {
                min_resource: *min_resource,
                rf: *reduction_factor,
                rate: *min_early_stopping_rate,
                bootstrap: *bootstrap_count,
            };
            sh.prune(trials.iter(), trial, dir)
        }
        PrunerConfig::Hyperband {
            min_resource,
            max_resource,
            reduction_factor,
            bootstrap_count,
        } => hyperband(
            config,
            trials,
            trial,
            *min_resource,
            *max_resource,
            *reduction_factor,
            *bootstrap_count,
        ),
    };
    if prune {
        PruneDecision::Prune
    } else {
        PruneDecision::Continue
    }
}

fn median(
    trials: &[TrialRecord],
    trial: &TrialRecord,
    dir: Direction,
    n_startup: u64,
    warmup: u64,
    interval: u64,
    n_min: u64,
) -> bool {
    let Some((step, _)) = trial.last_intermediate() else {
        return false;
    };
    let complete: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Complete)
        .collect();
    if (complete.len() as u64) < n_startup
        || step < warmup
        || (step - warmup).checked_rem(interval) != Some(0)
    {
        return false;
    }
    // The trial's best value so far is compared, so one noisy epoch does not prune it.
    let losses = trial.intermediate.iter().map(|&(_, v)| dir.loss(v));
    let best = losses.fold(f64::INFINITY, f64::min);
    if trial.intermediate.iter().all(|&(_, v)| v.is_nan()) {
        return true;
    }
    let mut at_step: Vec<f64> = complete
        .iter()
        .filter_map(|t| t.intermediate.iter().find(|&&(s, _)| s == step))
        .filter(|&&(_, v)| !v.is_nan()) // numpy's nanpercentile ignores NaN
        .map(|&(_, v)| dir.loss(v))
        .collect();
    if (at_step.len() as u64) < n_min.max(1) {
        return false;
    }
    at_step.sort_by(f64::total_cmp);
    best > percentile_50(&at_step)
}

/// numpy's default (linear interpolation) 50th percentile of sorted values.
fn percentile_50(sorted: &[f64]) -> f64 {
    let pos = 0.5 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Successive-halving settings of one ASHA bracket.
struct Halving {
    min_resource: u64,
    rf: u64,
    rate: u64,
    bootstrap: u64,
}

impl Halving {
    fn promotion_step(&self, rung: u32) -> u64 {
        self.min_resource
            .saturating_mul(self.rf.saturating_pow(self.rate as u32 + rung))
    }

    /// Values a trial recorded at each rung it reached: the value reported at the first step at
    /// or past each rung's promotion step (what Optuna stores in `completed_rung_<r>`).
    fn rung_values(&self, t: &TrialRecord) -> Vec<f64> {
        let mut out = Vec::new();
        for &(step, value) in &t.intermediate {
            while step >= self.promotion_step(out.len() as u32) && out.len() < 64 {
                out.push(value);
                if value.is_nan() {
                    return out;
                }
            }
        }
        out
    }

    fn prune<'a>(
        &self,
        trials: impl Iterator<Item = &'a TrialRecord> + Clone,
        trial: &TrialRecord,
        dir: Direction,
    ) -> bool {
        let Some((step, value)) = trial.last_intermediate() else {
            return false;
        };
        // Rungs this trial had already passed before this report need no new decision.
        let before: Vec<(u64, f64)> = trial
            .intermediate
            .iter()
            .copied()
            .filter(|&(s, _)| s != step)
            .collect();
        let prior = TrialRecord {
            intermediate: before,
            ..trial.clone()
        };
        let mut rung = self.rung_values(&prior).len() as u32;
        loop {
            if step < self.promotion_step(rung) {
                return false;
            }
            if value.is_nan() {
                return true;
            }
            let mut competing: Vec<f64> = trials
                .clone()
                .filter(|t| t.number != trial.number)
                .filter_map(|t| self.rung_values(t).get(rung as usize).copied())
                .map(|v| dir.loss(v))
                .collect();
            competing.push(dir.loss(value));
            if competing.len() as u64 <= self.bootstrap {
                return true;
            }
            // The top 1/rf continue; while fewer than rf trials reached the rung, only the best
            // does (Optuna cannot pause trials to wait for a rung to fill, and neither do we).
            let idx = (competing.len() / self.rf as usize).saturating_sub(1);
            competing.sort_by(f64::total_cmp);
            if dir.loss(value) > competing[idx] {
                return true;
            }
            rung += 1;
        }
    }
}

fn hyperband(
    config: &StudyConfig,
    trials: &[TrialRecord],
    trial: &TrialRecord,
    min_resource: u64,
    max_resource: Option<u64>,
    rf: u64,
    bootstrap: u64,
) -> bool {
    let max_resource = match max_resource {
        Some(m) => m,
        None => match trials
            .iter()
            .filter(|t| t.status == TrialStatus::Complete)
            .filter_map(|t| t.last_intermediate().map(|(s, _)| s))
            .max()
        {
            Some(m) => m.max(min_resource),
            None => return false,
        },
    };
    let n_brackets = n_brackets(min_resource, max_resource, rf);
    let bracket = bracket_of(config.seed, trial.number, n_brackets, rf);
    let sh = Halving {
        min_resource,
        rf,
        rate: bracket,
        bootstrap,
    };
    let same_bracket = trials
        .iter()
        .filter(|t| bracket_of(config.seed, t.number, n_brackets, rf) == bracket);
    sh.prune(same_bracket, trial, config.directions[0])
}

/// Optuna: `floor(log_rf(max / min)) + 1` brackets.
fn n_brackets(min_resource: u64, max_resource: u64, rf: u64) -> u64 {
    let mut n = 1;
    let mut r = min_resource;
    while r.saturating_mul(rf) <= max_resource {
        r *= rf;
        n += 1;
    }
    n
}

/// Bracket of a trial: a hash of (seed, number) spread over brackets in proportion to Optuna's
/// trial-allocation budgets `ceil(n * rf^s / (s + 1))`, so aggressive brackets get more trials.
fn bracket_of(seed: u64, number: u64, n_brackets: u64, rf: u64) -> u64 {
    let budgets: Vec<u64> = (0..n_brackets)
        .map(|id| {
            let s = n_brackets - 1 - id;
            let num = n_brackets.saturating_mul(rf.saturating_pow(s as u32));
            num.div_ceil(s + 1)
        })
        .collect();
    let total: u64 = budgets.iter().sum();
    let mut n = mix(&[seed, number, purpose::BRACKET]) % total.max(1);
    for (id, b) in budgets.iter().enumerate() {
        if n < *b {
            return id as u64;
        }
        n -= b;
    }
    0
}

#[cfg(test)]
#[path = "pruner_tests.rs"]
mod tests;
