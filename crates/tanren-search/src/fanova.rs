//! fANOVA (Hutter et al., 2014, "An Efficient Approach for Assessing Hyperparameter Importance"),
//! as Optuna's `FanovaImportanceEvaluator` computes it: a random forest (64 bootstrapped CART
//! regression trees, no depth limit, every feature at each split) fitted to the objective, and for
//! each parameter the share of each tree's variance over the bounded space that the parameter's
//! marginal explains, averaged over the trees and normalised.
//!
//! Kept for measurement (`importance_tests.rs` compares its run-to-run agreement with PED-ANOVA's);
//! the control plane serves PED-ANOVA. Differences from Optuna: categories are one feature over
//! their choice indices (Optuna one-hot encodes and groups the columns), and conditional
//! parameters get 0, as in Optuna, which evaluates only parameters every trial has.

use crate::config::Direction;
use crate::importance::{ImportanceError, ImportanceReport, Observation, ParamImportance};
use crate::rng::Rng;
use crate::space::{Distribution, Space};

/// One feature's domain on the scale the forest sees: log for log parameters, ints widened by half
/// a step each side, categories as choice indices (each choice a unit-wide cell).
fn domain(d: &Distribution) -> (f64, f64) {
    let on = |x: f64, log: bool| if log { x.ln() } else { x };
    match d {
        Distribution::Float { low, high, log } => (on(*low, *log), on(*high, *log)),
        Distribution::Int { low, high, log, .. } => {
            (on(*low as f64 - 0.5, *log), on(*high as f64 + 0.5, *log))
        }
        Distribution::Categorical { choices } => (-0.5, choices.len() as f64 - 0.5),
    }
}

fn value(d: &Distribution, v: &crate::ParamValue) -> Option<f64> {
    match d {
        Distribution::Categorical { choices } => v
            .as_str()
            .and_then(|s| choices.iter().position(|c| c == s))
            .map(|i| i as f64),
        Distribution::Float { log, .. } | Distribution::Int { log, .. } => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| if *log { x.max(f64::MIN_POSITIVE).ln() } else { x }),
    }
}

enum Node {
    Leaf {
        value: f64,
        /// The leaf's box: per feature, [lo, hi).
        bounds: Vec<(f64, f64)>,
    },
    Split,
}

/// A CART regression tree, kept as its leaves (fANOVA needs only their boxes and values).
struct Tree {
    leaves: Vec<Node>,
}

fn build(x: &[Vec<f64>], y: &[f64], rows: Vec<usize>, bounds: Vec<(f64, f64)>, leaves: &mut Vec<Node>) {
    let mean = rows.iter().map(|&r| y[r]).sum::<f64>() / rows.len() as f64;
    let sse = |rs: &[usize]| {
        let m = rs.iter().map(|&r| y[r]).sum::<f64>() / rs.len() as f64;
        rs.iter().map(|&r| (y[r] - m).powi(2)).sum::<f64>()
    };
    let total = sse(&rows);
    // Best split: the lowest summed squared error over features and midpoints between distinct
    // values (first found on ties, so the tree is a function of its rows).
    let mut best: Option<(f64, usize, f64)> = None;
    if rows.len() >= 2 && total > 1e-15 {
        for (f, _) in bounds.iter().enumerate() {
            let mut sorted = rows.clone();
            sorted.sort_by(|&a, &b| x[a][f].total_cmp(&x[b][f]));
            let (mut sum_l, mut sq_l) = (0.0, 0.0);
            let (sum_all, sq_all) = sorted
                .iter()
                .fold((0.0, 0.0), |(s, q), &r| (s + y[r], q + y[r] * y[r]));
            for i in 0..sorted.len() - 1 {
                let r = sorted[i];
                sum_l += y[r];
                sq_l += y[r] * y[r];
                let (a, b) = (x[r][f], x[sorted[i + 1]][f]);
                if a == b {
                    continue;
                }
                let (nl, nr) = ((i + 1) as f64, (sorted.len() - i - 1) as f64);
                let sse_l = sq_l - sum_l * sum_l / nl;
                let sse_r = (sq_all - sq_l) - (sum_all - sum_l).powi(2) / nr;
                let err = sse_l + sse_r;
                if best.is_none_or(|(e, _, _)| err < e - 1e-12) {
                    best = Some((err, f, (a + b) / 2.0));
                }
            }
        }
    }
    let Some((_, f, t)) = best else {
        leaves.push(Node::Leaf { value: mean, bounds });
        return;
    };
    let (left, right): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&r| x[r][f] < t);
    let (mut lb, mut rb) = (bounds.clone(), bounds);
    lb[f].1 = t.min(lb[f].1);
    rb[f].0 = t.max(rb[f].0);
    leaves.push(Node::Split);
    build(x, y, left, lb, leaves);
    build(x, y, right, rb, leaves);
}

impl Tree {
    fn fit(x: &[Vec<f64>], y: &[f64], rows: Vec<usize>, domain: &[(f64, f64)]) -> Tree {
        let mut leaves = Vec::new();
        build(x, y, rows, domain.to_vec(), &mut leaves);
        leaves.retain(|n| matches!(n, Node::Leaf { .. }));
        Tree { leaves }
    }

    /// Per feature, the variance of its marginal prediction as a share of the tree's variance over
    /// the domain; `None` for a tree that predicts one value everywhere.
    fn shares(&self, domain: &[(f64, f64)]) -> Option<Vec<f64>> {
        let width = |(lo, hi): (f64, f64)| (hi - lo).max(0.0);
        let leaves: Vec<(f64, &Vec<(f64, f64)>)> = self
            .leaves
            .iter()
            .filter_map(|n| match n {
                Node::Leaf { value, bounds } => Some((*value, bounds)),
                Node::Split => None,
            })
            .collect();
        // Each leaf's share of the domain along each feature, and of its whole volume.
        let fr: Vec<Vec<f64>> = leaves
            .iter()
            .map(|(_, b)| {
                b.iter()
                    .zip(domain)
                    .map(|(&bb, &d)| width(bb) / width(d))
                    .collect()
            })
            .collect();
        let vol: Vec<f64> = fr.iter().map(|f| f.iter().product()).collect();
        let mean: f64 = leaves.iter().zip(&vol).map(|((v, _), w)| v * w).sum();
        let total: f64 = leaves
            .iter()
            .zip(&vol)
            .map(|((v, _), w)| w * (v - mean).powi(2))
            .sum();
        if total <= 1e-15 {
            return None;
        }
        let shares = (0..domain.len())
            .map(|f| {
                // The feature's cells: between consecutive split points of any leaf.
                let mut cuts: Vec<f64> = leaves
                    .iter()
                    .flat_map(|(_, b)| [b[f].0, b[f].1])
                    .filter(|c| (domain[f].0..=domain[f].1).contains(c))
                    .collect();
                cuts.push(domain[f].0);
                cuts.push(domain[f].1);
                cuts.sort_by(f64::total_cmp);
                cuts.dedup();
                let mut var = 0.0;
                for w in cuts.windows(2) {
                    let (lo, hi) = (w[0], w[1]);
                    let cell = (hi - lo) / width(domain[f]);
                    if cell <= 0.0 {
                        continue;
                    }
                    // The marginal at this cell: the leaves over it, each weighted by its volume
                    // in the other features.
                    let mid = (lo + hi) / 2.0;
                    let marginal: f64 = leaves
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, b))| b[f].0 <= mid && mid < b[f].1)
                        .map(|(l, (v, _))| v * vol[l] / fr[l][f])
                        .sum();
                    var += cell * (marginal - mean).powi(2);
                }
                var / total
            })
            .collect();
        Some(shares)
    }
}

/// fANOVA importances of the unconditional parameters of `space` (conditional ones get 0).
pub fn fanova(
    space: &Space,
    observations: &[Observation],
    direction: Direction,
    n_trees: usize,
    seed: u64,
) -> Result<ImportanceReport, ImportanceError> {
    let obs: Vec<&Observation> = observations.iter().filter(|o| o.value.is_finite()).collect();
    let n = obs.len();
    if n < 6 {
        return Err(ImportanceError::TooFewTrials {
            complete: n,
            needed: 6,
        });
    }
    let features: Vec<usize> = (0..space.params().len())
        .filter(|&i| space.params()[i].condition.is_none())
        .filter(|&i| domain(&space.params()[i].distribution).1 > domain(&space.params()[i].distribution).0)
        .collect();
    if features.is_empty() {
        return Err(ImportanceError::NothingSearched);
    }
    let defs: Vec<&Distribution> = features
        .iter()
        .map(|&i| &space.params()[i].distribution)
        .collect();
    let dom: Vec<(f64, f64)> = defs.iter().map(|d| domain(d)).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for o in &obs {
        let row: Option<Vec<f64>> = features
            .iter()
            .zip(&defs)
            .map(|(&i, d)| o.params.get(&space.params()[i].name).and_then(|v| value(d, v)))
            .collect();
        if let Some(row) = row {
            x.push(row);
            y.push(-direction.loss(o.value));
        }
    }
    if y.iter().all(|&v| v == y[0]) {
        return Err(ImportanceError::AllEqual { complete: n });
    }
    let mut rng = Rng::new(seed);
    let mut sums = vec![0.0; features.len()];
    let mut used = 0usize;
    for _ in 0..n_trees {
        let rows: Vec<usize> = (0..y.len()).map(|_| rng.below(y.len() as u64) as usize).collect();
        if let Some(s) = Tree::fit(&x, &y, rows, &dom).shares(&dom) {
            for (a, b) in sums.iter_mut().zip(s) {
                *a += b;
            }
            used += 1;
        }
    }
    let total: f64 = sums.iter().sum();
    let mut importances: Vec<ParamImportance> = space
        .params()
        .iter()
        .enumerate()
        .map(|(i, def)| ParamImportance {
            param: def.name.clone(),
            importance: features
                .iter()
                .position(|&f| f == i)
                .filter(|_| used > 0 && total > 0.0)
                .map_or(0.0, |k| sums[k] / total),
        })
        .collect();
    importances.sort_by(|a, b| b.importance.total_cmp(&a.importance));
    Ok(ImportanceReport {
        trials_used: n,
        top_trials: 0,
        importances,
    })
}
