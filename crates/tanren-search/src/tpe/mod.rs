//! TPE sampler: Optuna 5.0's `TPESampler` (defaults, trial split, constant liar, multivariate
//! over the always-present parameters with univariate fallback for conditional ones, and
//! multi-objective splitting by non-dominated rank).
//!
//! Deviation from Optuna, documented: in multi-objective studies the last non-dominated rank is
//! cut by crowding distance rather than by hypervolume subset selection.
//!
//! tanren's additions, on by default and off in [`SamplerConfig::tpe_optuna`]:
//! - local refinement: some EI candidates (and, every `local_every`-th trial, all of them) are
//!   drawn from the best good trials' kernels with bandwidths scaled down (`local_bandwidth`),
//!   then ranked by l(x)/g(x) with the rest. At 80 trials Optuna's TPE keeps its kernels at least
//!   1/(n_good + 2) of the range wide, so it rarely refines its incumbent; this does.
//! - optional scrambled-Halton start-up trials (`quasi_random_startup`, off by default).

pub(crate) mod math;
mod parzen;

use crate::config::{Direction, SamplerConfig, StudyConfig};
use crate::multi;
use crate::rng::Rng;
use crate::sampler::Rows;
use crate::space::{Distribution, ParamValue, Params, Space};
use crate::study::{TrialRecord, TrialStatus};
use parzen::{DimSpec, Parzen, Settings};

struct Tpe {
    /// The trial being suggested (local-refinement trials are chosen by number).
    number: u64,
    n_ei_candidates: usize,
    local: Local,
    settings: Settings,
}

/// tanren's local-refinement settings (see [`SamplerConfig::Tpe`]).
struct Local {
    candidates: usize,
    every: u64,
    top: usize,
    bandwidth: f64,
}

pub(crate) fn suggest(
    config: &StudyConfig,
    trials: &[TrialRecord],
    rows: &Rows,
    number: u64,
    rng: &mut Rng,
) -> Params {
    let SamplerConfig::Tpe {
        n_startup_trials,
        n_ei_candidates,
        prior_weight,
        consider_magic_clip,
        consider_endpoints,
        multivariate,
        constant_liar,
        quasi_random_startup,
        n_local_candidates,
        local_every,
        local_top,
        local_bandwidth,
    } = config.sampler
    else {
        unreachable!("tpe::suggest called for another sampler")
    };
    let finished = |t: &&TrialRecord| matches!(t.status, TrialStatus::Complete | TrialStatus::Pruned);
    let n_finished = trials.iter().filter(finished).count();
    if n_finished < n_startup_trials {
        if quasi_random_startup {
            return crate::qmc::sample_params(&config.space, config.seed, number);
        }
        return crate::random::sample_params(&config.space, rng);
    }
    let tpe = Tpe {
        number,
        n_ei_candidates,
        local: Local {
            candidates: n_local_candidates,
            every: local_every,
            top: local_top,
            bandwidth: local_bandwidth,
        },
        settings: Settings {
            prior_weight,
            magic_clip: consider_magic_clip,
            consider_endpoints,
        },
    };
    // The trials the model sees: finished ones, plus running ones (which always land in the
    // "above" group) when lying, so concurrent asks are pushed away from pending points.
    let used: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| finished(t) || (constant_liar && t.status == TrialStatus::Running))
        .collect();
    let n_below = gamma(n_finished, config.directions.len());
    let (below, above) = split(&used, n_below, &config.directions);
    let multi_objective = config.directions.len() > 1;
    let ctx = Ctx {
        space: &config.space,
        rows,
        below: &below,
        above: &above,
        multi_objective,
        directions: &config.directions,
    };

    // Optuna 5.0: multivariate by default for one objective, independent for several.
    let mut joint = Params::new();
    if multivariate.unwrap_or(!multi_objective) {
        // Joint model over the parameters every finished trial has (Optuna's intersection
        // search space); conditional parameters fall back to one-dimensional models below.
        let group: Vec<usize> = (0..config.space.params().len())
            .filter(|&i| {
                trials
                    .iter()
                    .filter(finished)
                    .all(|t| !rows.get(t.number as usize)[i].is_nan())
            })
            .collect();
        if !group.is_empty() {
            joint = tpe.sample_group(&ctx, &group, rng);
        }
    }
    let mut params = Params::new();
    for (i, def) in config.space.params().iter().enumerate() {
        if !config.space.is_active(def, &params) {
            continue;
        }
        let value = match joint.remove(&def.name) {
            Some(v) => v,
            None => tpe
                .sample_group(&ctx, &[i], rng)
                .remove(&def.name)
                .expect("sampled"),
        };
        params.insert(def.name.clone(), value);
    }
    params
}

struct Ctx<'a> {
    space: &'a Space,
    rows: &'a Rows,
    below: &'a [&'a TrialRecord],
    above: &'a [&'a TrialRecord],
    multi_objective: bool,
    directions: &'a [Direction],
}

impl Tpe {
    /// Samples the parameters `group` jointly: candidates from l(x) (the good trials' density)
    /// and, unless in Optuna mode, from narrowed kernels around the best trials, keeping the one
    /// maximising l(x) / g(x).
    fn sample_group(&self, ctx: &Ctx, group: &[usize], rng: &mut Rng) -> Params {
        let defs: Vec<_> = group.iter().map(|&i| &ctx.space.params()[i]).collect();
        let specs: Vec<DimSpec> = defs.iter().map(|d| dim_spec(&d.distribution)).collect();
        // Trials lacking any parameter of the group (inactive there) are left out, as in Optuna.
        let observe = |ts: &[&TrialRecord], kept: &mut Vec<usize>| -> Vec<Vec<f64>> {
            let mut columns = vec![Vec::with_capacity(ts.len()); group.len()];
            for (j, t) in ts.iter().enumerate() {
                let row = ctx.rows.get(t.number as usize);
                if group.iter().all(|&i| !row[i].is_nan()) {
                    kept.push(j);
                    for (col, &i) in columns.iter_mut().zip(group) {
                        col.push(row[i]);
                    }
                }
            }
            columns
        };
        let mut kept_below = Vec::new();
        let obs_below = observe(ctx.below, &mut kept_below);
        let obs_above = observe(ctx.above, &mut Vec::new());
        // Multi-objective TPE weighs the good trials equally (no fading of old ones).
        let w_below = ctx.multi_objective.then(|| vec![1.0; obs_below[0].len()]);
        let l = Parzen::new(&obs_below, &specs, w_below, self.settings);
        let g = Parzen::new(&obs_above, &specs, None, self.settings);
        // tanren's local refinement (off in Optuna mode): every `local_every`-th trial draws all
        // its candidates around the best good trials with narrowed kernels; the other trials
        // swap `n_local_candidates` of their l(x) draws for such local ones. The candidate count,
        // hence the cost of ranking them, is unchanged.
        let local_trial = self.local.every > 0 && self.number.is_multiple_of(self.local.every);
        let n_local = if local_trial {
            self.n_ei_candidates
        } else {
            self.local.candidates.min(self.n_ei_candidates)
        };
        let mut candidates = l.sample(rng, self.n_ei_candidates - n_local);
        if n_local > 0 {
            let centres = self.local_centres(ctx, &kept_below);
            candidates.extend(l.sample_local(rng, n_local, self.local.bandwidth, &centres));
        }
        let ll = l.log_pdf(&candidates);
        let lg = g.log_pdf(&candidates);
        // argmax like numpy: first maximum wins; NaN (should not happen) loses.
        let mut best = 0;
        let mut best_acq = f64::NEG_INFINITY;
        for (i, (a, b)) in ll.iter().zip(&lg).enumerate() {
            let acq = a - b;
            if acq > best_acq {
                best_acq = acq;
                best = i;
            }
        }
        defs.iter()
            .zip(&candidates[best])
            .map(|(d, &x)| (d.name.clone(), from_numeric(&d.distribution, x)))
            .collect()
    }
}

impl Tpe {
    /// Which good trials (indices into the kept part of `ctx.below`) local candidates are drawn
    /// around, as 0/1 weights: the `local.top` best by value (trial number breaking ties); with
    /// several objectives all of them, as they are already the non-dominated elite.
    fn local_centres(&self, ctx: &Ctx, kept_below: &[usize]) -> Vec<f64> {
        let n = kept_below.len();
        if ctx.multi_objective || self.local.top == 0 || self.local.top >= n {
            return vec![1.0; n];
        }
        // The order `split` ranks good trials in: complete ones by value, then pruned ones by
        // (latest step, value at it); the trial number breaks ties.
        let dir = ctx.directions[0];
        let key = |i: usize| {
            let t = ctx.below[i];
            match t.status {
                TrialStatus::Complete => (0.0, value_loss(t, ctx.directions), 0.0, t.number),
                _ => {
                    let (step, v) = pruned_score(t, dir);
                    (1.0, step, v, t.number)
                }
            }
        };
        let mut order: Vec<(usize, (f64, f64, f64, u64))> =
            kept_below.iter().enumerate().map(|(j, &i)| (j, key(i))).collect();
        order.sort_unstable_by(|a, b| {
            let (x, y) = (a.1, b.1);
            x.0.total_cmp(&y.0)
                .then(x.1.total_cmp(&y.1))
                .then(x.2.total_cmp(&y.2))
                .then(x.3.cmp(&y.3))
        });
        let mut w = vec![0.0; n];
        for &(j, _) in &order[..self.local.top] {
            w[j] = 1.0;
        }
        w
    }
}

/// Optuna's `default_gamma` (single objective, capped at 25) and multi-objective variant.
fn gamma(n: usize, n_objectives: usize) -> usize {
    let g = (0.1 * n as f64).ceil() as usize;
    if n_objectives > 1 {
        g
    } else {
        g.min(25)
    }
}

fn dim_spec(dist: &Distribution) -> DimSpec {
    match dist {
        Distribution::Float { low, high, log } => DimSpec::Num {
            low: *low,
            high: *high,
            log: *log,
            step: None,
        },
        Distribution::Int { low, high, log, step } => DimSpec::Num {
            low: *low as f64,
            high: *high as f64,
            log: *log,
            step: Some(step.unwrap_or(1) as f64),
        },
        Distribution::Categorical { choices } => DimSpec::Cat { n: choices.len() },
    }
}

fn from_numeric(dist: &Distribution, x: f64) -> ParamValue {
    match dist {
        Distribution::Float { low, high, .. } => ParamValue::Float(x.clamp(*low, *high)),
        Distribution::Int { low, high, .. } => ParamValue::Int((x.round() as i64).clamp(*low, *high)),
        Distribution::Categorical { choices } => {
            ParamValue::Cat(choices[(x as usize).min(choices.len() - 1)].clone())
        }
    }
}

/// Splits trials into the `n_below` best ("below", modelled by l) and the rest ("above", g):
/// complete trials first by value, then pruned ones by (latest step, value at it); running
/// trials are always above. Both lists come back in trial-number order.
fn split<'a>(
    used: &[&'a TrialRecord],
    n_below: usize,
    directions: &[Direction],
) -> (Vec<&'a TrialRecord>, Vec<&'a TrialRecord>) {
    let of = |s: TrialStatus| used.iter().copied().filter(move |t| t.status == s);
    let complete: Vec<&TrialRecord> = of(TrialStatus::Complete).collect();
    let pruned: Vec<&TrialRecord> = of(TrialStatus::Pruned).collect();
    let n_complete_below = n_below.min(complete.len());
    let mut below_numbers: Vec<u64> = if directions.len() == 1 {
        // The trial number breaks ties, as Python's stable `sorted` over trials in order does.
        let keyed = complete
            .iter()
            .map(|t| ((value_loss(t, directions), 0.0), t.number))
            .collect();
        best_numbers(keyed, n_complete_below)
    } else {
        let points: Vec<Vec<f64>> = complete.iter().map(|t| multi::losses(directions, t)).collect();
        let order = multi::elite_order(&points, n_complete_below);
        order[..n_complete_below]
            .iter()
            .map(|&i| complete[i].number)
            .collect()
    };
    let n_pruned_below = (n_below - n_complete_below).min(pruned.len());
    let dir = directions[0];
    let keyed = pruned
        .iter()
        .map(|t| {
            let (step, v) = pruned_score(t, dir);
            ((step, v), t.number)
        })
        .collect();
    below_numbers.extend(best_numbers(keyed, n_pruned_below));
    below_numbers.sort_unstable();
    // `used` is in trial-number order, so both halves come out in that order too.
    used.iter()
        .partition(|t| t.status != TrialStatus::Running && below_numbers.binary_search(&t.number).is_ok())
}

/// Numbers of the `n` trials with the smallest `(key, number)`, by selection rather than a full
/// sort, since `n` is at most a few dozen while a study may hold many thousands of trials.
fn best_numbers(mut keyed: Vec<((f64, f64), u64)>, n: usize) -> Vec<u64> {
    let cmp = |a: &((f64, f64), u64), b: &((f64, f64), u64)| {
        a.0 .0
            .total_cmp(&b.0 .0)
            .then(a.0 .1.total_cmp(&b.0 .1))
            .then(a.1.cmp(&b.1))
    };
    if n == 0 {
        return Vec::new();
    }
    if n < keyed.len() {
        keyed.select_nth_unstable_by(n - 1, cmp);
    }
    keyed[..n].iter().map(|k| k.1).collect()
}

fn value_loss(t: &TrialRecord, directions: &[Direction]) -> f64 {
    t.values
        .as_ref()
        .map_or(f64::INFINITY, |v| directions[0].loss(v[0]))
}

/// Optuna's `_get_pruned_trial_score`: trials that got further rank first, then by their last
/// value; trials pruned before any report rank last.
fn pruned_score(t: &TrialRecord, dir: Direction) -> (f64, f64) {
    match t.last_intermediate() {
        Some((step, v)) => (-(step as f64), dir.loss(v)),
        None => (1.0, 0.0),
    }
}

#[cfg(test)]
mod tests;
