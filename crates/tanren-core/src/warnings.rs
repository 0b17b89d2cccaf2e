//! Bounds that waste compute or cannot work, said so a beginner understands. A study is created
//! anyway (they are the person's to choose) except for a batch that cannot exist: larger than the
//! training set, or past the memory limit a probe measured.
//!
//! No IO: the caller gathers the dataset statistics, the cost estimate and any stored advice.

use crate::dataset_stats::DatasetStats;
use crate::estimate::{DataSize, SpaceCost};
use crate::params::param;
use crate::space::{Bounds, ImageSpace};
use serde::{Deserialize, Serialize};
use tanren_search::{Distribution, ParamValue};

/// One warning about one parameter (or `budget.trials` / `budget.minutes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub param: String,
    pub message: String,
}

/// A bound that is refused: the parameter and why, naming the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub param: String,
    pub message: String,
}

/// What probes measured on this dataset (absent until an advice was made).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Per optimizer: the learning rate where the range test's loss blew up.
    #[serde(default)]
    pub divergence_lr: std::collections::BTreeMap<String, f64>,
    /// Epochs after which validation accuracy stopped improving in earlier trials on this dataset
    /// (`plateau_epochs`); the probes are too short to see it.
    #[serde(default)]
    pub plateau_epochs: Option<u32>,
    /// Largest batch that fits the worker's device memory (measured on CUDA: a larger one ran out);
    /// a bound past it is refused.
    #[serde(default)]
    pub max_batch: Option<u32>,
    /// Per optimizer: the learning rate where the range test's loss fell fastest.
    #[serde(default)]
    pub steepest_lr: std::collections::BTreeMap<String, f64>,
    /// Past this batch images/s stop rising (a CPU's knee, or a GPU's): larger batches only cost
    /// steps per epoch.
    #[serde(default)]
    pub knee_batch: Option<u32>,
    /// The device the probes ran on (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: Option<String>,
    /// Measured epoch times of a few configurations: they calibrate the time model.
    #[serde(default)]
    pub timing: Vec<crate::probe::TimingProbe>,
    /// A trial's measured time outside its epochs (dataset preparation, the evaluation after
    /// training): it calibrates the model's per-trial overhead.
    #[serde(default)]
    pub overhead: Option<crate::probe::ProbeOverhead>,
}

/// Everything the checks read besides the space.
pub struct Context<'a> {
    /// The bounds the person gave (the rest are defaults, which are never refused).
    pub given: &'a Bounds,
    pub stats: Option<&'a DatasetStats>,
    pub data: DataSize,
    pub val_fraction: f64,
    pub measured: Option<&'a Measured>,
    pub cost: Option<&'a SpaceCost>,
    pub trials: Option<u32>,
    pub minutes: Option<f64>,
}

fn range(space: &ImageSpace, name: &str) -> Option<(f64, f64)> {
    if let Some(d) = space.space.get(name) {
        return match d.distribution {
            Distribution::Float { low, high, .. } => Some((low, high)),
            Distribution::Int { low, high, .. } => Some((low as f64, high as f64)),
            Distribution::Categorical { .. } => None,
        };
    }
    match space.fixed.get(name)? {
        ParamValue::Float(x) => Some((*x, *x)),
        ParamValue::Int(x) => Some((*x as f64, *x as f64)),
        ParamValue::Cat(_) => None,
    }
}

/// The values a categorical parameter can take (searched choices, pinned value, or the seed's).
fn choices(space: &ImageSpace, name: &str) -> Vec<String> {
    if let Some(d) = space.space.get(name) {
        if let Distribution::Categorical { choices } = &d.distribution {
            return choices.clone();
        }
    }
    match space.fixed.get(name) {
        Some(ParamValue::Cat(c)) => vec![c.clone()],
        _ => crate::params::param_info(name)
            .and_then(|i| i.seed.as_str().map(str::to_string))
            .into_iter()
            .collect(),
    }
}

/// A duration for a person: "45 s", "12 min", "3.5 h".
pub fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Check bounds. `Err` only for a batch that cannot exist as given.
pub fn check(space: &ImageSpace, ctx: &Context<'_>) -> Result<Vec<Warning>, Refusal> {
    use param::*;
    let mut out = Vec::new();
    let mut warn = |param: &str, message: String| {
        out.push(Warning {
            param: param.into(),
            message,
        })
    };

    // Batch: past the training set it still trains (each step sees the whole set): a warning. Past the
    // measured memory limit it cannot run: refused when the person asked for it.
    let fit = (ctx.data.train as f64 * (1.0 - ctx.val_fraction))
        .floor()
        .max(1.0);
    if let Some((_, high)) = range(space, BATCH_SIZE) {
        let given = ctx.given.contains_key(BATCH_SIZE);
        if high > fit {
            let msg = format!(
                "batch size up to {high} is larger than the training set ({fit} images after holding out validation); every step would see the whole set"
            );
            warn(BATCH_SIZE, format!("{msg} (at most {fit} makes a difference)"));
        }
        if let Some(max) = ctx.measured.and_then(|m| m.max_batch) {
            if high > max as f64 && given {
                return Err(Refusal {
                    param: BATCH_SIZE.into(),
                    message: format!(
                        "batch size up to {high} does not fit the worker: the probe's limit is {max}"
                    ),
                });
            }
        }
    }

    // Image size against the source images.
    if let (Some((_, high)), Some(st)) = (range(space, IMAGE_SIZE), ctx.stats) {
        let src = st.short_side.median.max(1) as f64;
        let useful = (2.0 * src).max(32.0);
        if high > useful {
            warn(
                IMAGE_SIZE,
                format!(
                    "your images are about {src:.0} px; sizes above {useful:.0} px only add cost (upscaling adds no detail), and {high:.0} px costs {:.0}× the pixels of {useful:.0} px",
                    (high / useful).powi(2)
                ),
            );
        }
    }

    // Learning rate: past the range test's divergence point, or absurd for the optimizer.
    if let Some((low, high)) = range(space, LEARNING_RATE) {
        let opts = choices(space, OPTIMIZER);
        let measured_div = ctx.measured.map(|m| &m.divergence_lr);
        let mut said = false;
        for opt in &opts {
            let div = measured_div.and_then(|d| d.get(opt)).copied();
            let (limit, why) = match (div, opt.as_str()) {
                (Some(d), _) => (d, "where the probe's loss blew up on your data"),
                (None, "sgd") => (1.0, "where SGD almost always diverges"),
                (None, _) => (0.05, "where Adam almost always diverges"),
            };
            if high > limit && !said {
                warn(
                    LEARNING_RATE,
                    format!(
                        "learning rates up to {high} are past {limit:.2e} for {opt}, {why}; those trials will learn nothing"
                    ),
                );
                said = true;
            }
        }
        if low < 1e-6 {
            warn(
                LEARNING_RATE,
                format!("learning rates down to {low:.0e} barely move the weights in a short study; 1e-5 is a sensible floor"),
            );
        }
        let decades = (high / low.max(1e-12)).log10();
        if let Some(t) = ctx.trials {
            if decades > 4.0 && (t as f64) < 6.0 * decades {
                warn(
                    LEARNING_RATE,
                    format!(
                        "the learning rate spans {decades:.0} powers of ten but the budget is {t} trials: each power of ten gets about {:.0} tries",
                        t as f64 / decades
                    ),
                );
            }
        }
    }

    // Epochs past a plateau.
    if let Some((_, high)) = range(space, EPOCHS) {
        let plateau = ctx.measured.and_then(|m| m.plateau_epochs);
        let limit = plateau.map_or(100.0, |p| (3 * p).max(10) as f64);
        if high > limit {
            let why = match plateau {
                Some(p) => format!("earlier trials on this dataset stopped improving after about {p} epochs"),
                None => "small image sets usually stop improving after a few dozen epochs".into(),
            };
            warn(
                EPOCHS,
                format!("up to {high:.0} epochs is far past where training stops helping ({why}); the extra epochs only cost time"),
            );
        }
    }

    // Other ranges that rarely work.
    if let Some((_, high)) = range(space, DROPOUT) {
        if high > 0.7 {
            warn(DROPOUT, format!("dropout up to {high} throws away most of what the network learned; above 0.5 rarely helps"));
        }
    }
    if let Some((_, high)) = range(space, LABEL_SMOOTHING) {
        if high > 0.3 {
            warn(LABEL_SMOOTHING, format!("label smoothing up to {high} blurs the labels so much that the classes get hard to tell apart; 0.05–0.15 is typical"));
        }
    }
    if let Some((_, high)) = range(space, WEIGHT_DECAY) {
        if high > 0.01 {
            warn(WEIGHT_DECAY, format!("weight decay up to {high} with Adam or SGD pulls the weights to zero faster than they learn; 1e-5 to 1e-3 is typical"));
        }
    }
    if let Some((_, high)) = range(space, CHANNELS) {
        if high > 128.0 {
            if let Some(st) = ctx.stats {
                if st.images < 20_000 {
                    warn(CHANNELS, format!("up to {high:.0} channels for {} images: networks this wide mostly memorise small sets and cost many times more", st.images));
                }
            }
        }
    }

    // Cost against the budget.
    if let Some(cost) = ctx.cost {
        if let Some(m) = ctx.minutes {
            if cost.worst_trial_seconds > m * 60.0 {
                warn(
                    "budget.minutes",
                    format!(
                        "the most expensive trial these bounds allow would take about {}, longer than the whole budget of {m} minutes; it would be cut off unfinished",
                        human_seconds(cost.worst_trial_seconds)
                    ),
                );
            }
        }
    }
    let searched = space.space.params().len();
    if let Some(t) = ctx.trials {
        if searched > 0 && (t as usize) < 2 * searched && t < 20 {
            warn(
                "budget.trials",
                format!("{t} trials for {searched} searched parameters is too few to learn which settings matter; narrow the bounds or allow at least {} trials", 2 * searched),
            );
        }
    }
    Ok(out)
}

/// Validation accuracy within this of a trial's best counts as its plateau.
const PLATEAU_TOLERANCE: f64 = 0.01;
/// Trials that must have levelled off before their plateau is believed.
const PLATEAU_TRIALS: usize = 3;

/// Where validation accuracy stops improving on a dataset, from finished trials' per-epoch curves:
/// per trial, the first epoch within a point of its best. Only the better half of the trials (by
/// best accuracy) speak, since a trial that learned nothing levels off at once; a trial whose last
/// epoch was still its best only says "more than its length". The answer is the latest plateau
/// among them, and `None` unless at least three levelled off before their last epoch and no more
/// than half were still improving.
pub fn plateau_epochs(curves: &[Vec<f64>]) -> Option<u32> {
    let mut trials: Vec<(f64, usize, bool)> = curves
        .iter()
        .filter(|c| c.len() >= 2 && c.iter().all(|a| a.is_finite()))
        .map(|c| {
            let best = c.iter().copied().fold(f64::MIN, f64::max);
            let at = c.iter().position(|&a| a >= best - PLATEAU_TOLERANCE).unwrap_or(0);
            (best, at + 1, at + 1 < c.len())
        })
        .collect();
    trials.sort_by(|a, b| b.0.total_cmp(&a.0));
    let better = &trials[..trials.len().div_ceil(2)];
    let levelled: Vec<usize> = better.iter().filter(|t| t.2).map(|t| t.1).collect();
    if levelled.len() < PLATEAU_TRIALS || 2 * levelled.len() < better.len() {
        return None;
    }
    levelled.iter().max().map(|&e| e as u32)
}

#[cfg(test)]
#[path = "warnings_tests.rs"]
mod tests;
