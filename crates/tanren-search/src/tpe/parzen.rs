//! The Parzen estimator: a weighted mixture of product kernels (truncated normals for numbers,
//! smoothed one-hots for categories) fitted to one group of trials. Port of Optuna 5.0's
//! `_ParzenEstimator` and `_MixtureOfProductDistribution`.
//!
//! Values are in "external" numeric form: floats and ints as themselves, categories as the index
//! of the choice. Log scales and int steps are handled inside, as in Optuna.

use super::math::{log_gauss_mass, truncnorm_ppf};
use crate::rng::Rng;

const LOG_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// See `DiscreteTable::new`.
const FAR: f64 = 12.0;

/// What one dimension of the estimator models.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DimSpec {
    Cat {
        n: usize,
    },
    /// `step` for ints (always at least 1, as Optuna treats ints as discrete).
    Num {
        low: f64,
        high: f64,
        log: bool,
        step: Option<f64>,
    },
}

/// Settings shared by every estimator of a sampler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub prior_weight: f64,
    pub magic_clip: bool,
    pub consider_endpoints: bool,
}

enum Dim {
    /// Kernel `k < n_obs` puts `hi` on its observed choice and `lo` elsewhere; the prior kernel
    /// (last) is uniform. Stored as logs of those three numbers instead of a full matrix.
    Cat {
        n: usize,
        obs: Vec<usize>,
        log_hi: f64,
        log_lo: f64,
    },
    Num {
        spec_low: f64,
        spec_high: f64,
        log: bool,
        step: Option<f64>,
        /// Bounds in the kernel's space: widened by half a step for ints, then logged if log.
        alow: f64,
        ahigh: f64,
        mu: Vec<f64>,
        sigma: Vec<f64>,
    },
}

pub(crate) struct Parzen {
    weights: Vec<f64>,
    dims: Vec<Dim>,
}

/// Optuna's `default_weights`: old observations fade linearly once there are more than 25.
pub(crate) fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp_len = n - 25;
    let start = 1.0 / n as f64;
    let mut w: Vec<f64> = (0..ramp_len)
        .map(|i| {
            if ramp_len == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp_len - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Parzen {
    /// `columns[d][i]`: observation `i` (in trial-number order) in dimension `d`.
    /// `weights`: per-observation weights (default: [`default_weights`]).
    pub(crate) fn new(
        columns: &[Vec<f64>],
        specs: &[DimSpec],
        weights: Option<Vec<f64>>,
        s: Settings,
    ) -> Parzen {
        let n = columns.first().map_or(0, Vec::len);
        let mut w = if n == 0 {
            vec![1.0]
        } else {
            let mut w = weights.unwrap_or_else(|| default_weights(n));
            w.push(s.prior_weight);
            w
        };
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= total);
        let dims = specs
            .iter()
            .enumerate()
            .map(|(d, spec)| {
                let column = &columns[d];
                match *spec {
                    DimSpec::Cat { n: n_choices } => cat_dim(column, n_choices, s.prior_weight),
                    DimSpec::Num { low, high, log, step } => num_dim(column, low, high, log, step, s),
                }
            })
            .collect();
        Parzen { weights: w, dims }
    }

    /// `count` draws from the mixture.
    pub(crate) fn sample(&self, rng: &mut Rng, count: usize) -> Vec<Vec<f64>> {
        (0..count)
            .map(|_| {
                let k = rng.weighted_index(&self.weights);
                self.dims.iter().map(|d| sample_dim(d, k, rng)).collect()
            })
            .collect()
    }

    /// `count` draws from the observed kernels only (never the prior), picked by their weight
    /// times `centres[k]`, with every numeric kernel's bandwidth multiplied by `scale`: local
    /// refinement around the chosen good trials. Categorical dimensions use their usual kernel.
    pub(crate) fn sample_local(
        &self,
        rng: &mut Rng,
        count: usize,
        scale: f64,
        centres: &[f64],
    ) -> Vec<Vec<f64>> {
        let n_obs = self.weights.len() - 1;
        if n_obs == 0 {
            return self.sample(rng, count);
        }
        let obs_weights: Vec<f64> = self.weights[..n_obs]
            .iter()
            .zip(centres)
            .map(|(w, c)| w * c)
            .collect();
        let obs_weights = &obs_weights[..];
        (0..count)
            .map(|_| {
                let k = rng.weighted_index(obs_weights);
                self.dims
                    .iter()
                    .map(|d| sample_dim_scaled(d, k, scale, rng))
                    .collect()
            })
            .collect()
    }

    /// Log density (log mass for discrete dimensions) of each sample under the mixture.
    pub(crate) fn log_pdf(&self, samples: &[Vec<f64>]) -> Vec<f64> {
        let nk = self.weights.len();
        // Everything that depends on the kernel only is folded into one base term per kernel;
        // discrete dimensions get a (unique value x unique kernel) table. The per-sample loop
        // then runs over one cache-resident row of kernels at a time.
        let mut base: Vec<f64> = self.weights.iter().map(|w| w.ln()).collect();
        let mut tables = Vec::new();
        let mut cont = Vec::new();
        for (d, dim) in self.dims.iter().enumerate() {
            match dim {
                Dim::Cat { .. } => {}
                Dim::Num {
                    step: None,
                    alow,
                    ahigh,
                    mu,
                    sigma,
                    log,
                    ..
                } => {
                    // Most kernels of a large study share the clipped minimum sigma: reuse its log.
                    let mut memo = (f64::NAN, f64::NAN);
                    for ((b, &m), &sd) in base.iter_mut().zip(mu).zip(sigma) {
                        if sd != memo.0 {
                            memo = (sd, sd.ln());
                        }
                        *b += -memo.1 - LOG_SQRT_2PI - log_gauss_mass((alow - m) / sd, (ahigh - m) / sd);
                    }
                    let inv: Vec<f64> = sigma.iter().map(|s| 1.0 / s).collect();
                    cont.push((d, *log, *alow, *ahigh, mu, inv));
                }
                Dim::Num {
                    step: Some(step),
                    alow,
                    ahigh,
                    mu,
                    sigma,
                    log,
                    ..
                } => {
                    let xs: Vec<f64> = samples.iter().map(|s| s[d]).collect();
                    tables.push((d, DiscreteTable::new(&xs, *step, *log, *alow, *ahigh, mu, sigma)));
                }
            }
        }
        let mut row = vec![0.0; nk];
        samples
            .iter()
            .map(|sample| {
                row.copy_from_slice(&base);
                for (d, log, alow, ahigh, mu, inv) in &cont {
                    // Clamped so a value on a bound up to rounding (after exp/ln) is not -inf in
                    // both densities, which would make the acquisition NaN.
                    let x = if *log { sample[*d].ln() } else { sample[*d] }.clamp(*alow, *ahigh);
                    for ((r, &m), &iv) in row.iter_mut().zip(mu.iter()).zip(inv) {
                        let z = (x - m) * iv;
                        *r -= 0.5 * z * z;
                    }
                }
                for (d, table) in &tables {
                    table.add(&mut row, sample[*d]);
                }
                for (d, dim) in self.dims.iter().enumerate() {
                    if let Dim::Cat {
                        n,
                        obs,
                        log_hi,
                        log_lo,
                    } = dim
                    {
                        let x = sample[d] as usize;
                        for (r, &o) in row.iter_mut().zip(obs) {
                            *r += if o == x { *log_hi } else { *log_lo };
                        }
                        row[nk - 1] -= (*n as f64).ln();
                    }
                }
                log_sum_exp(&row)
            })
            .collect()
    }
}

fn log_sum_exp(row: &[f64]) -> f64 {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    // Terms more than e^-50 below the largest cannot change the f64 sum; skipping their exp()
    // avoids libm's slow underflow path, which dominated large studies.
    m + row
        .iter()
        .filter(|&&v| v - m > -50.0)
        .map(|v| (v - m).exp())
        .sum::<f64>()
        .ln()
}

fn cat_dim(column: &[f64], n_choices: usize, prior_weight: f64) -> Dim {
    let obs: Vec<usize> = column.iter().map(|&x| x as usize).collect();
    // Each observed kernel: prior_weight / n_kernels on every choice, +1 on its own; normalised.
    let nk = (obs.len() + 1) as f64;
    let lo = prior_weight / nk;
    let row_sum = lo * n_choices as f64 + 1.0;
    Dim::Cat {
        n: n_choices,
        obs,
        log_hi: ((lo + 1.0) / row_sum).ln(),
        log_lo: (lo / row_sum).ln(),
    }
}

fn num_dim(column: &[f64], low: f64, high: f64, log: bool, step: Option<f64>, s: Settings) -> Dim {
    let half = step.map_or(0.0, |st| st / 2.0);
    let (mut alow, mut ahigh) = (low - half, high + half);
    let mut mus: Vec<f64> = column.to_vec();
    if log {
        alow = alow.ln();
        ahigh = ahigh.ln();
        mus.iter_mut().for_each(|m| *m = m.ln());
    }
    let range = ahigh - alow;
    let n = mus.len();
    // Bandwidth of each kernel: the larger gap to its sorted neighbours (bounds included).
    // Sorting integer keys (order-preserving bit pattern of the value, then index) is several
    // times faster than comparing floats, and this sort runs per dimension on every ask.
    let mut sorted: Vec<(u64, u32)> = mus
        .iter()
        .enumerate()
        .map(|(i, &m)| (order_key(m), i as u32))
        .collect();
    sorted.sort_unstable();
    let mut ext = Vec::with_capacity(n + 2);
    ext.push(alow);
    ext.extend(sorted.iter().map(|p| mus[p.1 as usize]));
    ext.push(ahigh);
    let mut sorted_sigma: Vec<f64> = (1..=n)
        .map(|i| (ext[i] - ext[i - 1]).max(ext[i + 1] - ext[i]))
        .collect();
    if !s.consider_endpoints && ext.len() >= 4 {
        sorted_sigma[0] = ext[2] - ext[1];
        sorted_sigma[n - 1] = ext[n] - ext[n - 1];
    }
    let min_sigma = if s.magic_clip {
        range / (1.0 + (n + 1) as f64).min(100.0)
    } else {
        1e-12
    };
    let mut sigma = vec![0.0; n];
    for (rank, &(_, i)) in sorted.iter().enumerate() {
        sigma[i as usize] = sorted_sigma[rank].clamp(min_sigma, range);
    }
    mus.push(0.5 * (alow + ahigh));
    sigma.push(range);
    Dim::Num {
        spec_low: low,
        spec_high: high,
        log,
        step,
        alow,
        ahigh,
        mu: mus,
        sigma,
    }
}

/// Maps an f64 to a u64 with the same order (for finite values and infinities).
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn sample_dim(dim: &Dim, k: usize, rng: &mut Rng) -> f64 {
    sample_dim_scaled(dim, k, 1.0, rng)
}

fn sample_dim_scaled(dim: &Dim, k: usize, scale: f64, rng: &mut Rng) -> f64 {
    match dim {
        Dim::Cat {
            n,
            obs,
            log_hi,
            log_lo,
        } => {
            let u = rng.f64();
            match obs.get(k) {
                None => ((u * *n as f64) as usize).min(n - 1) as f64,
                Some(&o) => {
                    let (hi, lo) = (log_hi.exp(), log_lo.exp());
                    let mut cum = 0.0;
                    for c in 0..*n {
                        cum += if c == o { hi } else { lo };
                        if u < cum {
                            return c as f64;
                        }
                    }
                    (n - 1) as f64
                }
            }
        }
        Dim::Num {
            spec_low,
            spec_high,
            log,
            step,
            alow,
            ahigh,
            mu,
            sigma,
        } => {
            let (m, sd) = (mu[k], sigma[k] * scale);
            let z = truncnorm_ppf(rng.f64(), (alow - m) / sd, (ahigh - m) / sd);
            let mut x = z * sd + m;
            if *log {
                x = x.exp();
            }
            if let Some(st) = step {
                x = spec_low + ((x - spec_low) / st).round() * st;
            }
            x.clamp(*spec_low, *spec_high)
        }
    }
}

/// Log probability mass of each (candidate value, kernel) pair for a discrete dimension.
struct DiscreteTable {
    values: Vec<f64>,
    kernel_idx: Vec<usize>,
    /// `table[value][unique kernel]`.
    table: Vec<Vec<f64>>,
}

impl DiscreteTable {
    fn new(
        xs: &[f64],
        step: f64,
        log: bool,
        alow: f64,
        ahigh: f64,
        mu: &[f64],
        sigma: &[f64],
    ) -> DiscreteTable {
        // Many kernels share (mu, sigma) and many samples share a value, so the interval masses
        // are computed once per unique pair, as Optuna does; this keeps large studies fast.
        let mut keyed: Vec<(u64, u64, u32)> = mu
            .iter()
            .zip(sigma)
            .enumerate()
            .map(|(k, (&m, &sd))| (order_key(m), order_key(sd), k as u32))
            .collect();
        keyed.sort_unstable();
        let mut kernels: Vec<(f64, f64)> = Vec::new();
        let mut kernel_idx = vec![0usize; mu.len()];
        let mut last = None;
        for &(km, ks, k) in &keyed {
            if last != Some((km, ks)) {
                kernels.push((mu[k as usize], sigma[k as usize]));
                last = Some((km, ks));
            }
            kernel_idx[k as usize] = kernels.len() - 1;
        }
        let accept: Vec<f64> = kernels
            .iter()
            .map(|&(m, sd)| log_gauss_mass((alow - m) / sd, (ahigh - m) / sd))
            .collect();
        let mut values: Vec<f64> = xs.to_vec();
        values.sort_unstable_by(f64::total_cmp);
        values.dedup();
        let table = values
            .iter()
            .map(|&x| {
                let (mut l, mut r) = (x - step / 2.0, x + step / 2.0);
                if log {
                    l = l.ln();
                    r = r.ln();
                }
                kernels
                    .iter()
                    .zip(&accept)
                    .map(|(&(m, sd), acc_k)| {
                        let (a, b) = ((l - m) / sd, (r - m) / sd);
                        // More than 12 sigma away the kernel's mass is below e^-72, far under the
                        // prior kernel's (whose sigma spans the whole range), so it cannot move
                        // the log-sum-exp; skipping the tail series saves most of the work.
                        if a > FAR || b < -FAR {
                            f64::NEG_INFINITY
                        } else {
                            log_gauss_mass(a, b) - acc_k
                        }
                    })
                    .collect()
            })
            .collect();
        DiscreteTable {
            values,
            kernel_idx,
            table,
        }
    }

    fn add(&self, row: &mut [f64], x: f64) {
        let u = self
            .values
            .binary_search_by(|v| v.total_cmp(&x))
            .expect("value present");
        let t = &self.table[u];
        for (r, &k) in row.iter_mut().zip(&self.kernel_idx) {
            *r += t[k];
        }
    }
}
