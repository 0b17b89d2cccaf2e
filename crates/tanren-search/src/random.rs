//! Independent uniform sampling (the random sampler, and TPE's start-up and fallback draws).
//!
//! Follows Optuna's `RandomSampler`: log scales are uniform in log space, and log-scaled ints are
//! drawn in `[ln(low - 0.5), ln(high + 0.5)]` and rounded so every integer keeps its share.

use crate::rng::Rng;
use crate::space::{Distribution, ParamValue, Params, Space};

/// One value drawn uniformly from a distribution.
pub(crate) fn sample_value(dist: &Distribution, rng: &mut Rng) -> ParamValue {
    match dist {
        Distribution::Float { low, high, log } => {
            let u = rng.f64();
            let v = if *log {
                (low.ln() + u * (high.ln() - low.ln())).exp()
            } else {
                low + u * (high - low)
            };
            ParamValue::Float(v.clamp(*low, *high))
        }
        Distribution::Int { low, high, log, step } => {
            if *log {
                let (a, b) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
                let v = (a + rng.f64() * (b - a)).exp().round() as i64;
                ParamValue::Int(v.clamp(*low, *high))
            } else {
                let step = step.unwrap_or(1);
                let n = ((high - low) / step) as u64 + 1;
                ParamValue::Int(low + rng.below(n) as i64 * step)
            }
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
