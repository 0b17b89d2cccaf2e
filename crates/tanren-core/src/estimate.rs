//! The time model: how long a trial takes, from its parameters and the dataset's size.
//!
//! One epoch costs `work` (in GFLOP-equivalents): per training image three forward passes' FLOPs
//! (forward, backward for inputs and weights) plus a per-pixel cost of batching, augmenting and
//! normalising; per validation image one forward pass; per optimizer step a fixed launch cost plus a
//! pass over the weights. A trial costs `overhead + epochs × work × seconds_per_work` plus the final
//! evaluation. `seconds_per_work` is the one number that depends on the device: a prior per device
//! kind, then fitted as the geometric mean of measured/predicted over finished trials (the study's own
//! and earlier ones), with the spread of those ratios as the model's uncertainty.
//!
//! No IO: the control plane gathers the measurements and calls [`TimeModel::fit`].

use crate::config::{Head, ModelSpec, TrainConfig};
use crate::space::{train_config, ImageSpace};
use serde::{Deserialize, Serialize};
use tanren_search::{Distribution, ParamValue, Params};

/// How epoch time grows with work before anything was measured: a network with 100× the work per
/// epoch takes about 25× as long on a CPU (small convolutions waste most of the device).
const PRIOR_EXPONENT: f64 = 0.7;

/// Two-sided 80% quantile of the standard normal.
pub const Z80: f64 = 1.2816;

/// Per-pixel cost of preparing a training image (gather, augment, normalise), in FLOP-equivalents.
const PIXEL_COST: f64 = 60.0;
/// Fixed cost of one optimizer step (op launches, zeroing gradients), in FLOP-equivalents.
const STEP_COST: f64 = 4.0e6;
/// Cost per weight of one optimizer update (Adam reads and writes four tensors per weight).
const WEIGHT_COST: f64 = 20.0;
/// Evaluation runs in batches of 64 (trainer's `EVAL_BATCH`).
const EVAL_BATCH: f64 = 64.0;

/// How many images a trial sees: the training split (validation is held out of it) and the test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataSize {
    pub train: usize,
    pub test: usize,
}

/// FLOPs of one forward pass of one image (a multiply-add counts 2), convolutions and linear layers
/// only: pooling, ReLU and batch norm are a few percent and memory-bound anyway. A training step costs
/// about 3× this (forward, and backward for inputs and weights).
pub fn forward_flops(spec: &ModelSpec) -> u64 {
    let conv = |cin: u64, cout: u64, k: u64, side: u64| 2 * cin * k * k * cout * side * side;
    match spec {
        ModelSpec::Cnn(c) => {
            let (mut flops, mut cin, mut side) = (0u64, c.in_channels as u64, c.image_size as u64);
            for b in &c.blocks {
                flops += conv(cin, b.out_channels as u64, b.kernel as u64, side);
                cin = b.out_channels as u64;
                side /= 2;
            }
            let features = match c.head {
                Head::Flatten => cin * side * side,
                Head::GlobalAvgPool => cin,
            };
            flops + 2 * features * c.num_classes as u64
        }
        ModelSpec::Resnet(r) => {
            let n = (r.depth.saturating_sub(2) / 6) as u64;
            let w = r.width as u64;
            let mut side = r.image_size as u64;
            let mut flops = conv(r.in_channels as u64, w, 3, side);
            let mut cin = w;
            for s in 0..3u32 {
                let cout = w << s;
                for b in 0..n {
                    if s > 0 && b == 0 {
                        side = side.div_ceil(2);
                    }
                    flops += conv(cin, cout, 3, side) + conv(cout, cout, 3, side);
                    if cin != cout {
                        flops += conv(cin, cout, 1, side);
                    }
                    cin = cout;
                }
            }
            flops + 2 * cin * r.num_classes as u64
        }
    }
}

/// Trainable weights of a model built from `spec` (as the trainer builds it).
pub fn weight_count(spec: &ModelSpec) -> u64 {
    match spec {
        ModelSpec::Cnn(c) => {
            let (mut n, mut cin, mut side) = (0u64, c.in_channels as u64, c.image_size as u64);
            for b in &c.blocks {
                let (k, cout) = (b.kernel as u64, b.out_channels as u64);
                n += cin * cout * k * k + if c.batch_norm { 2 * cout } else { cout };
                cin = cout;
                side /= 2;
            }
            let features = match c.head {
                Head::Flatten => cin * side * side,
                Head::GlobalAvgPool => cin,
            };
            n + (features + 1) * c.num_classes as u64
        }
        ModelSpec::Resnet(r) => {
            let n = (r.depth.saturating_sub(2) / 6) as u64;
            let w = r.width as u64;
            let mut total = r.in_channels as u64 * w * 9 + 2 * w;
            let mut cin = w;
            for s in 0..3u32 {
                let cout = w << s;
                for _ in 0..n {
                    total += cin * cout * 9 + cout * cout * 9 + 4 * cout;
                    if cin != cout {
                        total += cin * cout + 2 * cout;
                    }
                    cin = cout;
                }
            }
            total + (cin + 1) * r.num_classes as u64
        }
    }
}

fn split(cfg: &TrainConfig, data: DataSize) -> (f64, f64) {
    let val = (data.train as f64 * cfg.val_fraction).round();
    ((data.train as f64 - val).max(1.0), val)
}

/// Work of one epoch in GFLOP-equivalents: training steps plus the validation pass.
pub fn epoch_work(cfg: &TrainConfig, data: DataSize) -> f64 {
    let f = forward_flops(&cfg.model) as f64;
    let pixels = (cfg.image_size as f64).powi(2) * cfg.channels() as f64;
    let (fit, val) = split(cfg, data);
    let steps = (fit / cfg.batch_size.max(1) as f64).ceil();
    let train = fit * (3.0 * f + PIXEL_COST * pixels)
        + steps * (STEP_COST + WEIGHT_COST * weight_count(&cfg.model) as f64);
    let eval = val * (f + 0.25 * PIXEL_COST * pixels) + (val / EVAL_BATCH).ceil() * STEP_COST;
    (train + eval) / 1e9
}

/// Images of the inference timing at most (200 single images and 50 batches of 64), and its time
/// budget (0.5 s and 1 s): whichever comes first ends it.
const INFERENCE_IMAGES: f64 = 200.0 + 50.0 * 64.0;
const INFERENCE_SECONDS: f64 = 1.5;

/// Work after training: the test set and the validation set once more, and the inference timing
/// (about 200 single images and 50 batches of 64, or 1.5 s, whichever comes first).
pub fn final_work(cfg: &TrainConfig, data: DataSize) -> f64 {
    let f = forward_flops(&cfg.model) as f64;
    let (_, val) = split(cfg, data);
    (f * (data.test as f64 + val + INFERENCE_IMAGES)) / 1e9
}

/// Seconds per GFLOP-equivalent and per-trial overhead, with their uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeModel {
    /// Seconds of an epoch of one GFLOP-equivalent of `epoch_work`.
    pub seconds_per_work: f64,
    /// Epoch seconds grow as `work^exponent`: below 1 because small networks use the device poorly
    /// (per-op overheads) and large ones well.
    pub exponent: f64,
    /// Standard deviation of ln(measured / predicted) of one trial's training time.
    pub log_sd: f64,
    /// Seconds per trial outside training: dataset preparation, final evaluation, weight upload.
    pub overhead_seconds: f64,
    /// Measurements the model was fitted on (0: the device prior).
    pub fitted_on: usize,
}

/// One finished (or pruned) trial as the model learns from it.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub config: TrainConfig,
    pub data: DataSize,
    /// Epochs actually trained (fewer than configured when pruned).
    pub epochs: u32,
    /// Seconds of the training loop (`train_seconds`).
    pub train_seconds: f64,
    /// Start to finish of the whole trial, when known.
    pub wall_seconds: Option<f64>,
}

impl TimeModel {
    /// Before anything was measured: a CPU core pair does roughly 8 GFLOP/s on these small networks; a
    /// GPU is launch-bound on them, so far less than its peak. Both are a factor 3 either way.
    pub fn prior(cuda: bool) -> TimeModel {
        TimeModel {
            seconds_per_work: if cuda { 1.0 / 400.0 } else { 1.0 / 8.0 },
            exponent: PRIOR_EXPONENT,
            log_sd: 3f64.ln() / Z80,
            overhead_seconds: if cuda { 4.0 } else { 3.0 },
            fitted_on: 0,
        }
    }

    /// Fit to measurements (those with no training time are ignored): ln(epoch seconds) against
    /// ln(work), the slope shrunk towards the prior's exponent (weight 1 in units of ln(work)², so a
    /// few similar trials keep the prior's). The spread is shrunk towards 0.25 (what the formula
    /// cannot know: other load on the machine, caches) with weight 2.
    pub fn fit(prior: &TimeModel, measured: &[Measurement]) -> TimeModel {
        let pts: Vec<(f64, f64)> = measured
            .iter()
            .filter(|m| m.epochs > 0 && m.train_seconds > 0.0)
            .map(|m| {
                let x = epoch_work(&m.config, m.data).ln();
                (x, (m.train_seconds / m.epochs as f64).ln())
            })
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if pts.is_empty() {
            return prior.clone();
        }
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let exponent = ((sxy + prior.exponent) / (sxx + 1.0)).clamp(0.3, 1.2);
        let intercept = my - exponent * mx;
        let ss: f64 = pts
            .iter()
            .map(|p| (p.1 - intercept - exponent * p.0).powi(2))
            .sum();
        let log_sd = ((2.0 * 0.25f64.powi(2) + ss) / (2.0 + n - 1.0)).sqrt();
        let spw = intercept.exp();
        let mut over: Vec<f64> = measured
            .iter()
            .filter_map(|m| {
                let w = m.wall_seconds?;
                let model = TimeModel {
                    seconds_per_work: spw,
                    exponent,
                    ..prior.clone()
                };
                Some((w - m.train_seconds - model.final_seconds(&m.config, m.data)).max(0.0))
            })
            .collect();
        over.sort_by(f64::total_cmp);
        TimeModel {
            seconds_per_work: spw,
            exponent,
            log_sd,
            overhead_seconds: over
                .get(over.len() / 2)
                .copied()
                .unwrap_or(prior.overhead_seconds),
            fitted_on: pts.len(),
        }
    }

    pub fn epoch_seconds(&self, cfg: &TrainConfig, data: DataSize) -> f64 {
        self.seconds_per_work * epoch_work(cfg, data).powf(self.exponent)
    }

    /// Seconds of the evaluation after training. The inference timing in it stops on time (the
    /// trainer's `measure_inference` budgets 0.5 s for single images and 1 s for batches), so its
    /// share is capped there: counted as work it made a heavy network's trial seconds too long.
    pub fn final_seconds(&self, cfg: &TrainConfig, data: DataSize) -> f64 {
        let secs = |work: f64| self.seconds_per_work * work.powf(self.exponent);
        let all = secs(final_work(cfg, data));
        let f = forward_flops(&cfg.model) as f64;
        let eval = secs(final_work(cfg, data) - f * INFERENCE_IMAGES / 1e9);
        eval + (all - eval).min(INFERENCE_SECONDS)
    }

    /// Expected seconds of a whole trial that trains `cfg.epochs` epochs.
    pub fn trial_seconds(&self, cfg: &TrainConfig, data: DataSize) -> f64 {
        self.overhead_seconds
            + cfg.epochs as f64 * self.epoch_seconds(cfg, data)
            + self.final_seconds(cfg, data)
    }

    /// The standard deviation of ln(the scale), i.e. of the mean of the fitted ratios: shared by
    /// every prediction of this model.
    pub fn scale_log_sd(&self) -> f64 {
        if self.fitted_on == 0 {
            self.log_sd
        } else {
            self.log_sd / (self.fitted_on as f64).sqrt()
        }
    }
}

/// Expected and worst-case cost of a space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceCost {
    /// Mean trial seconds over configurations drawn uniformly from the space.
    pub mean_trial_seconds: f64,
    /// Spread (standard deviation) of trial seconds over the space.
    pub sd_trial_seconds: f64,
    /// The most expensive configuration found (the extremes of every cost-relevant parameter).
    pub worst_trial_seconds: f64,
    pub worst_params: Params,
    /// The cheapest configuration found.
    pub best_trial_seconds: f64,
}

/// Parameters that change the time of a trial; the others only change what it learns.
const COSTLY: [&str; 9] = [
    "image_size",
    "batch_size",
    "epochs",
    "architecture",
    "conv_blocks",
    "channels",
    "head",
    "resnet_depth",
    "resnet_width",
];

/// A small deterministic generator (splitmix64): the estimate must not change between calls.
struct Mix(u64);
impl Mix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn draw(d: &Distribution, u: f64) -> ParamValue {
    match d {
        Distribution::Float { low, high, log } => ParamValue::Float(if *log {
            (low.ln() + u * (high.ln() - low.ln())).exp()
        } else {
            low + u * (high - low)
        }),
        Distribution::Int { low, high, log, step } => {
            let step = step.unwrap_or(1).max(1);
            let x = if *log {
                let (a, b) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
                (a + u * (b - a)).exp().round() as i64
            } else {
                low + ((u * ((high - low) / step + 1) as f64) as i64).min((high - low) / step) * step
            };
            let x = x.clamp(*low, *high);
            ParamValue::Int(low + (x - low) / step * step)
        }
        Distribution::Categorical { choices } => {
            let i = ((u * choices.len() as f64) as usize).min(choices.len() - 1);
            ParamValue::Cat(choices[i].clone())
        }
    }
}

/// Extremes of a distribution: its two ends, or every choice.
fn extremes(d: &Distribution) -> Vec<ParamValue> {
    match d {
        Distribution::Categorical { choices } => choices.iter().cloned().map(ParamValue::Cat).collect(),
        _ => vec![draw(d, 0.0), draw(d, 1.0 - 1e-12)],
    }
}

/// A full configuration from sampled values, respecting conditions.
fn complete(space: &ImageSpace, pick: &mut dyn FnMut(&str, &Distribution) -> ParamValue) -> Params {
    let mut p = Params::new();
    for def in space.space.params() {
        if space.space.is_active(def, &p) {
            p.insert(def.name.clone(), pick(&def.name, &def.distribution));
        }
    }
    space.full_params(&p)
}

/// Expected, cheapest and worst trial time over a space for a model: `samples` uniform draws for the
/// mean and spread, and every combination of the extremes of the cost-relevant parameters (the
/// others at the baseline) for the worst and best case. Configurations the trainer would refuse (too
/// many pooling blocks for the image) are skipped, as the scheduler skips them.
pub fn space_cost(
    space: &ImageSpace,
    num_classes: u32,
    data: DataSize,
    model: &TimeModel,
    samples: usize,
) -> Option<SpaceCost> {
    let cost = |p: &Params| {
        train_config(p, num_classes.max(2), 0)
            .ok()
            .map(|c| model.trial_seconds(&c, data))
    };
    let mut mix = Mix(0x7a6e);
    let times: Vec<f64> = (0..samples)
        .filter_map(|_| cost(&complete(space, &mut |_, d| draw(d, mix.unit()))))
        .collect();
    // Corners: enumerate extremes of the costly parameters that are searched.
    let baseline = space.baseline();
    let costly: Vec<(String, Vec<ParamValue>)> = space
        .space
        .params()
        .iter()
        .filter(|d| COSTLY.contains(&d.name.as_str()))
        .map(|d| (d.name.clone(), extremes(&d.distribution)))
        .collect();
    let combos: usize = costly.iter().map(|(_, v)| v.len()).product();
    let (mut worst, mut worst_params, mut best) = (f64::NAN, Params::new(), f64::NAN);
    for mut k in 0..combos.min(1 << 14) {
        let mut chosen = std::collections::BTreeMap::new();
        for (name, vals) in &costly {
            chosen.insert(name.as_str(), vals[k % vals.len()].clone());
            k /= vals.len();
        }
        let p = complete(space, &mut |name, d| {
            chosen
                .get(name)
                .cloned()
                .or_else(|| baseline.get(name).cloned())
                .unwrap_or_else(|| draw(d, 0.5))
        });
        if let Some(t) = cost(&p) {
            if worst.is_nan() || t > worst {
                worst = t;
                worst_params = p;
            }
            if best.is_nan() || t < best {
                best = t;
            }
        }
    }
    if times.is_empty() && worst.is_nan() {
        return None;
    }
    let n = times.len().max(1) as f64;
    let mean = if times.is_empty() {
        worst
    } else {
        times.iter().sum::<f64>() / n
    };
    let sd = (times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
    let max_drawn = times.iter().copied().fold(f64::NAN, f64::max);
    let min_drawn = times.iter().copied().fold(f64::NAN, f64::min);
    Some(SpaceCost {
        mean_trial_seconds: mean,
        sd_trial_seconds: sd,
        worst_trial_seconds: worst.max(max_drawn),
        worst_params,
        best_trial_seconds: best.min(min_drawn),
    })
}

#[cfg(test)]
#[path = "estimate_tests.rs"]
mod tests;
