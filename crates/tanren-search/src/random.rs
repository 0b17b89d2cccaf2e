//! Independent uniform sampling (the random sampler, and TPE's start-up and fallback draws).
//!
//! Follows Optuna's `RandomSampler`: log scales are uniform in log space, and log-scaled ints are
//! drawn in `[ln(low - 0.5), ln(high + 0.5)]` and rounded so every integer keeps its share.

use crate::rng::Rng;
use crate::space::{Distribution, ParamValue, Params, Space};

/// `u` in [0, 1) mapped onto a float or a log-scaled int distribution, as the random sampler maps
/// its uniform draws; `None` for linear ints and categoricals, which are drawn by index instead.
/// The quasi-random start-up (qmc.rs) maps its points through the same function.
pub(crate) fn from_unit(dist: &Distribution, u: f64) -> Option<ParamValue> {
    match dist {
        Distribution::Float { low, high, log } => {
            let v = if *log {
                (low.ln() + u * (high.ln() - low.ln())).exp()
            } else {
                low + u * (high - low)
            };
            Some(ParamValue::Float(v.clamp(*low, *high)))
        }
        Distribution::Int {
            low, high, log: true, ..
        } => {
            let (a, b) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
            Some(ParamValue::Int(
                ((a + u * (b - a)).exp().round() as i64).clamp(*low, *high),
            ))
        }
        Distribution::Int { log: false, .. } | Distribution::Categorical { .. } => None,
    }
}

/// One value drawn uniformly from a distribution.
pub(crate) fn sample_value(dist: &Distribution, rng: &mut Rng) -> ParamValue {
    match dist {
        Distribution::Float { .. } | Distribution::Int { log: true, .. } => {
            from_unit(dist, rng.f64()).expect("float and log-int map from a unit draw")
        }
        Distribution::Int { low, high, step, .. } => {
            let step = step.unwrap_or(1);
            let n = ((high - low) / step) as u64 + 1;
            ParamValue::Int(low + rng.below(n) as i64 * step)
        }
        Distribution::Categorical { choices } => {
            ParamValue::Cat(choices[rng.below(choices.len() as u64) as usize].clone())
        }
    }
}

/// A full configuration drawn uniformly, respecting conditions (parents are drawn first).
pub(crate) fn sample_params(space: &Space, rng: &mut Rng) -> Params {
    let mut params = Params::new();
    for def in space.params() {
        if space.is_active(def, &params) {
            params.insert(def.name.clone(), sample_value(&def.distribution, rng));
        }
    }
    params
}
