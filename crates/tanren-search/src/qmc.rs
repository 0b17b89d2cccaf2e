//! Scrambled Halton points for TPE's start-up trials: better coverage of the space than
//! independent uniform draws for the same number of trials.
//!
//! Point `i` of a study depends only on (seed, i), so a restored study draws the same points.
//! Dimension `d` (the parameter's index in the space) uses the `d`-th prime as its base, and
//! every digit position of every dimension gets its own seeded random permutation of the digits
//! (Owen-style digit scrambling, as in `scipy.stats.qmc.Halton(scramble=True)`), which removes
//! the strong correlation plain Halton has between dimensions with large bases.

use crate::rng::{mix, purpose, Rng};
use crate::space::{Distribution, ParamValue, Params, Space};

/// The `n`-th prime (0-based), by trial division; `n` is the number of parameters, small.
fn prime(n: usize) -> u64 {
    let mut found = 0;
    let mut c = 2u64;
    loop {
        if (2..).take_while(|d| d * d <= c).all(|d| !c.is_multiple_of(d)) {
            if found == n {
                return c;
            }
            found += 1;
        }
        c += 1;
    }
}

/// Coordinate `dim` of scrambled Halton point `index`, in [0, 1).
fn coordinate(seed: u64, dim: usize, index: u64) -> f64 {
    let base = prime(dim);
    let inv = 1.0 / base as f64;
    let mut scale = inv;
    let mut rest = index;
    let mut u = 0.0;
    let mut position = 0u64;
    // Digits beyond the index's own are zeros, scrambled too (a seeded offset below the last
    // significant digit); stop once they cannot change an f64.
    while scale > 1e-17 {
        let digit = (rest % base) as usize;
        rest /= base;
        // The permutation of digit values for this (dimension, position): a seeded shuffle.
        let mut rng = Rng::new(mix(&[seed, dim as u64, position, purpose::QMC]));
        let mut perm: Vec<u64> = (0..base).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        u += perm[digit] as f64 * scale;
        scale *= inv;
        position += 1;
    }
    u.min(1.0 - f64::EPSILON / 2.0)
}

/// `u` in [0, 1) mapped onto a distribution the way the random sampler maps its uniform draws
/// (floats and log ints through `random::from_unit`; linear ints and choices by index).
fn value(dist: &Distribution, u: f64) -> ParamValue {
    if let Some(v) = crate::random::from_unit(dist, u) {
        return v;
    }
    match dist {
        Distribution::Int { low, high, step, .. } => {
            let step = step.unwrap_or(1);
            let n = (high - low) / step + 1;
            let k = ((u * n as f64) as i64).min(n - 1);
            ParamValue::Int(low + k * step)
        }
        Distribution::Categorical { choices } => {
            ParamValue::Cat(choices[((u * choices.len() as f64) as usize).min(choices.len() - 1)].clone())
        }
        Distribution::Float { .. } => unreachable!("floats map through from_unit"),
    }
}

/// Start-up configuration `index` of a study: point `index` of the scrambled Halton sequence,
/// respecting conditions (an inactive parameter's coordinate is simply unused).
pub(crate) fn sample_params(space: &Space, seed: u64, index: u64) -> Params {
    let mut params = Params::new();
    for (d, def) in space.params().iter().enumerate() {
        if space.is_active(def, &params) {
            params.insert(
                def.name.clone(),
                value(&def.distribution, coordinate(seed, d, index)),
            );
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let p: Vec<u64> = (0..8).map(prime).collect();
        assert_eq!(p, vec![2, 3, 5, 7, 11, 13, 17, 19]);
    }

    #[test]
    fn first_points_stratify_every_dimension() {
        // The first b points of dimension with base b fall one in each of b equal strata.
        for dim in 0..6 {
            let b = prime(dim);
            let mut strata: Vec<u64> = (0..b)
                .map(|i| (coordinate(7, dim, i) * b as f64) as u64)
                .collect();
            strata.sort_unstable();
            assert_eq!(strata, (0..b).collect::<Vec<_>>(), "dim {dim}");
        }
        assert_ne!(coordinate(7, 0, 0), coordinate(8, 0, 0));
        assert_eq!(coordinate(7, 3, 5), coordinate(7, 3, 5));
    }
}
