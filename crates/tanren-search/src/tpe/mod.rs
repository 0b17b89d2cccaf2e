//! TPE sampler: Optuna 5.0's `TPESampler` (defaults, trial split, constant liar, multivariate
//! over the always-present parameters with univariate fallback for conditional ones, and
//! multi-objective splitting by non-dominated rank).
//!
//! Deviation from Optuna, documented: in multi-objective studies the last non-dominated rank is
//! cut by crowding distance rather than by hypervolume subset selection.

mod math;
mod parzen;

use crate::config::{Direction, SamplerConfig, StudyConfig};
use crate::multi;
use crate::rng::Rng;
use crate::sampler::Rows;
use crate::space::{Distribution, ParamValue, Params, Space};
use crate::study::{TrialRecord, TrialStatus};
use parzen::{DimSpec, Parzen, Settings};

struct Tpe {
    n_ei_candidates: usize,
    settings: Settings,
}

pub(crate) fn suggest(config: &StudyConfig, trials: &[TrialRecord], rows: &Rows, rng: &mut Rng) -> Params {
    let SamplerConfig::Tpe {
        n_startup_trials,
        n_ei_candidates,
        prior_weight,
        consider_magic_clip,
        consider_endpoints,
        multivariate,
        constant_liar,
    } = config.sampler
    else {
        unreachable!("tpe::suggest called for another sampler")
    };
    let finished = |t: &&TrialRecord| matches!(t.status, TrialStatus::Complete | TrialStatus::Pruned);
    let n_finished = trials.iter().filter(finished).count();
    if n_finished < n_startup_trials {
        return crate::random::sample_params(&config.space, rng);
    }
    let tpe = Tpe {
        n_ei_candidates,
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
}

impl Tpe {
    /// Samples the parameters `group` jointly: candidates from l(x) (the good trials' density),
    /// keeping the one maximising l(x) / g(x).
    fn sample_group(&self, ctx: &Ctx, group: &[usize], rng: &mut Rng) -> Params {
        let defs: Vec<_> = group.iter().map(|&i| &ctx.space.params()[i]).collect();
        let specs: Vec<DimSpec> = defs.iter().map(|d| dim_spec(&d.distribution)).collect();
        // Trials lacking any parameter of the group (inactive there) are left out, as in Optuna.
        let observe = |ts: &[&TrialRecord]| -> Vec<Vec<f64>> {
            let mut columns = vec![Vec::with_capacity(ts.len()); group.len()];
            for t in ts {
                let row = ctx.rows.get(t.number as usize);
                if group.iter().all(|&i| !row[i].is_nan()) {
                    for (col, &i) in columns.iter_mut().zip(group) {
                        col.push(row[i]);
                    }
                }
            }
            columns
        };
        let obs_below = observe(ctx.below);
        let obs_above = observe(ctx.above);
        // Multi-objective TPE weighs the good trials equally (no fading of old ones).
        let w_below = ctx.multi_objective.then(|| vec![1.0; obs_below[0].len()]);
        let l = Parzen::new(&obs_below, &specs, w_below, self.settings);
        let g = Parzen::new(&obs_above, &specs, None, self.settings);
        let candidates = l.sample(rng, self.n_ei_candidates);
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
