//! The time model: how long a trial takes, from its parameters and the dataset's size.
//!
//! A trial is built from three device costs, each fitted on what was measured:
//! - per image, `seconds_per_work × work^exponent`, where `work` is that image's GFLOP-equivalents:
//!   three forward passes' FLOPs when training (forward, backward for inputs and weights) or one
//!   when evaluating, plus a per-pixel cost of gathering, augmenting and normalising it, plus a
//!   per-activation cost of the memory-bound layers. The exponent
//!   is below 1 because small networks use a device poorly (per-op overheads) and large ones well;
//!   it applies per image, so twice the images cost twice the time.
//! - per training step, `step_seconds` whatever its batch (op launches, the optimizer's pass), plus
//!   the optimizer's pass over the weights as work.
//! - per forward-only call, `call_seconds` (an evaluation batch of 64, one inference call).
//!
//! An epoch is its training steps plus the validation pass; a trial is `overhead + epochs × epoch +
//! final`, where the final part is the test and validation passes and the inference timing (200
//! single images for at most 0.5 s, 50 batches of 64 for at most 1 s, each after 3 warm-up calls).
//! For a fixed exponent every measured quantity (an epoch, a single-image or a 64-image forward
//! call) is linear in the three costs, so [`TimeModel::fit`] solves a small weighted least-squares
//! problem per exponent and keeps the best exponent. A device prior per kind comes first; the
//! spread of the measured epochs around the fit is the model's uncertainty.
//!
//! One scale for the whole trial (the earlier model: `seconds_per_work × epoch_work^exponent`)
//! could not hold both a 6,000-image and a 600-image dataset, nor batch 4 and batch 128: the
//! exponent shrank the dataset's size along with the network's, and the fixed cost of a step was a
//! constant inside the power.
//!
//! No IO: the control plane gathers the measurements and calls [`TimeModel::fit`].

use crate::config::{Head, ModelSpec, TrainConfig};
use crate::space::{train_config, ImageSpace};
use serde::{Deserialize, Serialize};
use tanren_search::{Distribution, ParamValue, Params};

/// How per-image time grows with per-image work before anything was measured: a network with 100×
/// the FLOPs per image takes about 40× as long on a CPU (small convolutions waste most of it).
const PRIOR_EXPONENT: f64 = 0.8;
/// The exponents the fit tries, and how far (its standard deviation) it trusts the prior's.
const EXPONENT_RANGE: (f64, f64) = (0.4, 1.2);
const EXPONENT_PRIOR_SD: f64 = 0.15;
/// The prior counts as this many measurements for each cost (a ridge towards it): a cost the
/// measurements cannot separate (every probe at one batch size) stays near its prior.
const PRIOR_WEIGHT: f64 = 0.02;

/// Two-sided 80% quantile of the standard normal.
pub const Z80: f64 = 1.2816;

/// Per-pixel cost of preparing a training image (gather, augment, normalise), in FLOP-equivalents.
const PIXEL_COST: f64 = 60.0;
/// Cost per activation float (`memory::activation_floats`) of a training step, in FLOP-equivalents:
/// the memory-bound work that grows with the feature maps (ReLU, pooling, batch norm, forward and
/// backward, and convolutions over few channels), which FLOPs miss. Without it, 94–96 px trials
/// trained 2–3× slower than predicted; on the advice bench's 198 recorded trials (5 runs) the share
/// within ±30% rose with it up to 160–320 and fell past that.
const ACTIVATION_COST: f64 = 200.0;
/// Cost per weight of one optimizer update (Adam reads and writes four tensors per weight).
const WEIGHT_COST: f64 = 20.0;
/// Evaluation runs in batches of 64 (trainer's `EVAL_BATCH`).
const EVAL_BATCH: f64 = 64.0;
/// The inference timing (trainer's `measure_inference`): (calls at most, seconds budget) for single
/// images and for batches of 64, each after 3 warm-up calls.
const INFERENCE_SINGLE: (f64, f64) = (200.0, 0.5);
const INFERENCE_BATCHED: (f64, f64) = (50.0, 1.0);
const INFERENCE_WARMUP: f64 = 3.0;

/// How many images a trial sees: the training split (validation is held out of it) and the test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataSize {
    pub train: usize,
    pub test: usize,
}

/// FLOPs of one forward pass of one image (a multiply-add counts 2), convolutions and linear layers
/// only: pooling, ReLU and batch norm are memory-bound, and the time model counts them by their
/// activations. A training step costs about 3× this (forward, and backward for inputs and weights).
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

/// (images trained on, validation images) of one epoch.
fn split(cfg: &TrainConfig, data: DataSize) -> (f64, f64) {
    let val = (data.train as f64 * cfg.val_fraction).round();
    ((data.train as f64 - val).max(1.0), val)
}

/// GFLOP-equivalents of one image in a training step and in a forward-only pass.
fn image_work(cfg: &TrainConfig) -> (f64, f64) {
    let f = forward_flops(&cfg.model) as f64;
    let pixels = (cfg.image_size as f64).powi(2) * cfg.channels() as f64;
    let acts = crate::memory::activation_floats(&cfg.model) as f64;
    (
        (3.0 * f + PIXEL_COST * pixels + ACTIVATION_COST * acts) / 1e9,
        (f + 0.25 * PIXEL_COST * pixels + ACTIVATION_COST / 3.0 * acts) / 1e9,
    )
}

/// Work of one epoch in GFLOP-equivalents (training steps, the optimizer's passes over the weights
/// and the validation pass): a size for comparing configurations, not a time.
pub fn epoch_work(cfg: &TrainConfig, data: DataSize) -> f64 {
    let (train, eval) = image_work(cfg);
    let (fit, val) = split(cfg, data);
    let steps = (fit / cfg.batch_size.max(1) as f64).ceil();
    fit * train + steps * WEIGHT_COST * weight_count(&cfg.model) as f64 / 1e9 + val * eval
}

/// A quantity linear in the three costs for a fixed exponent: seconds =
/// `seconds_per_work × work + step_seconds × steps + call_seconds × calls`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Terms {
    work: f64,
    steps: f64,
    calls: f64,
}

impl Terms {
    fn seconds(&self, m: &TimeModel) -> f64 {
        m.seconds_per_work * self.work + m.step_seconds * self.steps + m.call_seconds * self.calls
    }
}

/// One epoch: the training steps and the validation pass.
fn epoch_terms(cfg: &TrainConfig, data: DataSize, exponent: f64) -> Terms {
    let (train, eval) = image_work(cfg);
    let (fit, val) = split(cfg, data);
    let steps = (fit / cfg.batch_size.max(1) as f64).ceil();
    let weights = WEIGHT_COST * weight_count(&cfg.model) as f64 / 1e9;
    Terms {
        work: fit * train.powf(exponent) + steps * weights.powf(exponent) + val * eval.powf(exponent),
        steps,
        calls: (val / EVAL_BATCH).ceil(),
    }
}

/// One forward-only call on `images` images.
fn call_terms(cfg: &TrainConfig, images: f64, exponent: f64) -> Terms {
    Terms {
        work: images * image_work(cfg).1.powf(exponent),
        steps: 0.0,
        calls: 1.0,
    }
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
    /// Milliseconds of one single-image forward call, when measured (the trial's inference timing).
    pub inference_ms: Option<f64>,
    /// Images per second of forward calls on batches of 64, when measured.
    pub inference_ips: Option<f64>,
}

impl Measurement {
    /// A trial's training time alone (what the probes' timing configurations give).
    pub fn epochs_only(config: TrainConfig, data: DataSize, epochs: u32, train_seconds: f64) -> Measurement {
        Measurement {
            config,
            data,
            epochs,
            train_seconds,
            wall_seconds: None,
            inference_ms: None,
            inference_ips: None,
        }
    }
}

/// The device's costs, the per-trial overhead, and their uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeModel {
    /// Seconds of one image of one GFLOP-equivalent of work (see the module's documentation).
    pub seconds_per_work: f64,
    /// Per-image seconds grow as `work^exponent`.
    pub exponent: f64,
    /// Fixed seconds of one training step, whatever its batch.
    #[serde(default)]
    pub step_seconds: f64,
    /// Fixed seconds of one forward-only call (an evaluation batch, one inference call).
    #[serde(default)]
    pub call_seconds: f64,
    /// Standard deviation of ln(measured / predicted) of one trial's training time.
    pub log_sd: f64,
    /// Seconds per trial outside training and the final evaluation: dataset preparation, building
    /// the network, saving and uploading the weights.
    pub overhead_seconds: f64,
    /// Epoch measurements the model was fitted on (0: the device prior).
    pub fitted_on: usize,
}

/// One measured quantity for the fit: its terms at exponent `e`, its seconds, its weight, and
/// whether it is an epoch (the spread is measured on epochs).
struct Obs<'a> {
    terms: Box<dyn Fn(f64) -> Terms + 'a>,
    seconds: f64,
    weight: f64,
    epoch: bool,
}

/// Solve the 3×3 system `a x = b` (Cramer's rule); `None` when singular.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, xk) in x.iter_mut().enumerate() {
        let mut m = a;
        for (row, bv) in m.iter_mut().zip(b) {
            row[k] = bv;
        }
        *xk = det(m) / d;
    }
    Some(x)
}

impl TimeModel {
    /// Before anything was measured: a CPU runs these small networks at a few GFLOP/s with about
    /// a millisecond per training step; a GPU is launch-bound on them (several milliseconds a step,
    /// images almost free). Both are a factor 3 either way.
    pub fn prior(cuda: bool) -> TimeModel {
        TimeModel {
            seconds_per_work: if cuda { 1.5e-4 } else { 0.012 },
            exponent: PRIOR_EXPONENT,
            step_seconds: if cuda { 4e-3 } else { 1e-3 },
            call_seconds: if cuda { 1.5e-3 } else { 3e-4 },
            log_sd: 3f64.ln() / Z80,
            overhead_seconds: 1.0,
            fitted_on: 0,
        }
    }

    fn costs(&self) -> [f64; 3] {
        [self.seconds_per_work, self.step_seconds, self.call_seconds]
    }

    /// Fit to measurements: each trial's epoch time, its single-image and 64-image forward calls
    /// (`inference_ms`, `inference_ips`), and the probes' epochs. For each exponent on a grid, the
    /// three costs minimise the squared relative error (weighted least squares, a ridge towards the
    /// prior's costs, none negative); the exponent with the smallest squared log error plus its
    /// distance from the prior's wins. The spread of the epochs' log errors is shrunk towards 0.25
    /// (what the formula cannot know: other load on the machine, caches) with weight 2. The
    /// overhead is the median of what the trials' wall time leaves after training and the final
    /// evaluation. Nothing usable: the prior.
    pub fn fit(prior: &TimeModel, measured: &[Measurement]) -> TimeModel {
        let mut obs: Vec<Obs> = Vec::new();
        for m in measured {
            let d = m.data;
            if m.epochs > 0 && m.train_seconds > 0.0 && m.train_seconds.is_finite() {
                obs.push(Obs {
                    terms: Box::new(move |e| epoch_terms(&m.config, d, e)),
                    seconds: m.train_seconds / m.epochs as f64,
                    weight: 1.0,
                    epoch: true,
                });
            }
            if let Some(ms) = m.inference_ms.filter(|x| x.is_finite() && *x > 0.0) {
                obs.push(Obs {
                    terms: Box::new(move |e| call_terms(&m.config, 1.0, e)),
                    seconds: ms / 1000.0,
                    weight: 0.5,
                    epoch: false,
                });
            }
            if let Some(ips) = m.inference_ips.filter(|x| x.is_finite() && *x > 0.0) {
                obs.push(Obs {
                    terms: Box::new(move |e| call_terms(&m.config, EVAL_BATCH, e)),
                    seconds: EVAL_BATCH / ips,
                    weight: 0.5,
                    epoch: false,
                });
            }
        }
        let epochs = obs.iter().filter(|o| o.epoch).count();
        if epochs == 0 {
            return prior.clone();
        }
        let p = prior.costs();
        let mut best: Option<(f64, TimeModel, f64)> = None;
        let steps = 40;
        for i in 0..=steps {
            let e = EXPONENT_RANGE.0 + (EXPONENT_RANGE.1 - EXPONENT_RANGE.0) * i as f64 / steps as f64;
            let rows: Vec<([f64; 3], f64, f64, bool)> = obs
                .iter()
                .map(|o| {
                    let t = (o.terms)(e);
                    ([t.work, t.steps, t.calls], o.seconds, o.weight, o.epoch)
                })
                .filter(|(x, y, _, _)| x.iter().all(|v| v.is_finite()) && y.is_finite() && *y > 0.0)
                .collect();
            // Unknowns scaled by the prior's costs: θ_k = cost_k / prior_k, ridge pulls θ to 1.
            let mut free = [true; 3];
            let theta = loop {
                let mut a = [[0.0; 3]; 3];
                let mut b = [0.0; 3];
                for (x, y, w, _) in &rows {
                    let z: Vec<f64> = (0..3)
                        .map(|k| if free[k] { x[k] * p[k] / y } else { 0.0 })
                        .collect();
                    for r in 0..3 {
                        b[r] += w * z[r];
                        for c in 0..3 {
                            a[r][c] += w * z[r] * z[c];
                        }
                    }
                }
                for k in 0..3 {
                    if free[k] {
                        a[k][k] += PRIOR_WEIGHT;
                        b[k] += PRIOR_WEIGHT;
                    } else {
                        a[k] = [0.0; 3];
                        a[k][k] = 1.0;
                        b[k] = 0.0;
                    }
                }
                let Some(t) = solve3(a, b) else { break None };
                match (0..3).find(|&k| free[k] && t[k] < 0.0) {
                    Some(k) => free[k] = false,
                    None => break Some(t),
                }
            };
            let Some(theta) = theta else { continue };
            let model = TimeModel {
                seconds_per_work: theta[0] * p[0],
                exponent: e,
                step_seconds: theta[1] * p[1],
                call_seconds: theta[2] * p[2],
                ..prior.clone()
            };
            if model.seconds_per_work <= 0.0 {
                continue;
            }
            let (mut ss, mut ss_epochs) = (0.0, 0.0);
            for (x, y, w, epoch) in &rows {
                let pred =
                    x[0] * model.seconds_per_work + x[1] * model.step_seconds + x[2] * model.call_seconds;
                let r = (pred.max(1e-12) / y).ln().powi(2);
                ss += w * r;
                if *epoch {
                    ss_epochs += r;
                }
            }
            let score = ss + 0.04 * ((e - prior.exponent) / EXPONENT_PRIOR_SD).powi(2);
            if best.as_ref().is_none_or(|(s, _, _)| score < *s) {
                best = Some((score, model, ss_epochs));
            }
        }
        let Some((_, mut model, ss_epochs)) = best else {
            return prior.clone();
        };
        let n = epochs as f64;
        model.log_sd = ((2.0 * 0.25f64.powi(2) + ss_epochs) / (2.0 + n - 1.0)).sqrt();
        model.fitted_on = epochs;
        let mut over: Vec<f64> = measured
            .iter()
            .filter_map(|m| {
                let w = m.wall_seconds?;
                Some((w - m.train_seconds - model.final_seconds(&m.config, m.data)).max(0.0))
            })
            .collect();
        over.sort_by(f64::total_cmp);
        model.overhead_seconds = over
            .get(over.len() / 2)
            .copied()
            .unwrap_or(prior.overhead_seconds);
        model
    }

    pub fn epoch_seconds(&self, cfg: &TrainConfig, data: DataSize) -> f64 {
        epoch_terms(cfg, data, self.exponent).seconds(self)
    }

    /// Seconds of the evaluation after training: the test and validation passes in batches of 64,
    /// and the inference timing, which stops on its budgets (it is not a number of images).
    pub fn final_seconds(&self, cfg: &TrainConfig, data: DataSize) -> f64 {
        let (_, val) = split(cfg, data);
        let per_image = self.seconds_per_work * image_work(cfg).1.powf(self.exponent);
        let batches = (data.test as f64 / EVAL_BATCH).ceil() + (val / EVAL_BATCH).ceil();
        let eval = (data.test as f64 + val) * per_image + batches * self.call_seconds;
        let timed = |call: f64, (calls, budget): (f64, f64)| {
            INFERENCE_WARMUP * call + (calls * call).min(budget.max(INFERENCE_WARMUP * call))
        };
        let one = self.call_seconds + per_image;
        let batch = self.call_seconds + EVAL_BATCH * per_image;
        eval + timed(one, INFERENCE_SINGLE) + timed(batch, INFERENCE_BATCHED)
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
    /// The drawn configurations' trial seconds, for simulating the trials a study has not sampled.
    #[serde(skip)]
    pub drawn_trial_seconds: Vec<f64>,
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
        drawn_trial_seconds: times,
    })
}

/// What is left of a study, as [`remaining`] simulates it.
#[derive(Debug, Clone, Default)]
pub struct Remaining<'a> {
    /// (predicted seconds, log-sd) of each running or queued trial.
    pub pieces: &'a [(f64, f64)],
    /// Trials not sampled yet. Each one's seconds are drawn from `recent` (the study's latest trials'
    /// predictions: a sampler that has found a region keeps sampling near it) with probability
    /// `recent_share`, else from `space` (configurations drawn from the bounds).
    pub rest: usize,
    pub space: &'a [f64],
    pub recent: &'a [f64],
    pub recent_share: f64,
    /// The model's error of one trial and of its shared scale (log standard deviations).
    pub log_sd: f64,
    pub scale_log_sd: f64,
    /// Trials at a time.
    pub parallel: usize,
}

/// Simulations behind [`remaining`]; past `EXACT_REST` unsampled trials their sum is drawn as a
/// normal of the same mean and variance (many trials' sum is close to one).
const SIMULATIONS: usize = 600;
const EXACT_REST: usize = 64;

/// The remaining seconds of a study: the median and the 80% range (10% and 90%) of a deterministic
/// simulation of every piece with its own error, the unsampled trials drawn as [`Remaining`] says,
/// one shared scale error, and nothing ending before its longest piece. A moment formula misses the shape: with a few trials left from a
/// space whose cost is heavy-tailed (a handful of big configurations), the sum is usually well
/// below its mean and now and then far above it.
pub fn remaining(r: &Remaining) -> (f64, [f64; 2]) {
    let mut mix = Mix(0x05ee_de7a);
    let mut normal = move || {
        let (u1, u2) = (1.0 - mix.unit(), mix.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let mut uniform = {
        let mut m = Mix(0x9ec3);
        move || m.unit()
    };
    let sources: Vec<&[f64]> = [r.space, r.recent]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    // One unsampled trial's mean and second moment, for the normal past EXACT_REST.
    let moments = |xs: &[f64]| {
        let n = xs.len().max(1) as f64;
        (
            xs.iter().sum::<f64>() / n,
            xs.iter().map(|x| x * x).sum::<f64>() / n,
        )
    };
    let share = if r.space.is_empty() {
        1.0
    } else if r.recent.is_empty() {
        0.0
    } else {
        r.recent_share
    };
    let (ms, qs) = moments(r.space);
    let (mr, qr) = moments(r.recent);
    let noise = (r.log_sd * r.log_sd).exp();
    let mean1 = ((1.0 - share) * ms + share * mr) * noise.sqrt();
    let var1 = (((1.0 - share) * qs + share * qr) * noise * noise - mean1 * mean1).max(0.0);
    let p = r.parallel.max(1) as f64;
    let mut totals: Vec<f64> = (0..SIMULATIONS)
        .map(|_| {
            // However the slots share the work, nothing ends before its longest piece.
            let (mut t, mut longest) = (0.0f64, 0.0f64);
            for (x, sd) in r.pieces {
                let piece = x * (sd * normal()).exp();
                t += piece;
                longest = longest.max(piece);
            }
            if !sources.is_empty() {
                if r.rest > EXACT_REST {
                    let n = r.rest as f64;
                    t += (n * mean1 + (n * var1).sqrt() * normal()).max(0.0);
                } else {
                    for _ in 0..r.rest {
                        let from = if uniform() < share { r.recent } else { r.space };
                        let i = ((uniform() * from.len() as f64) as usize).min(from.len() - 1);
                        t += from[i] * (r.log_sd * normal()).exp();
                    }
                }
            }
            let scale = (r.scale_log_sd * normal()).exp();
            (t / p).max(longest) * scale
        })
        .collect();
    totals.sort_by(f64::total_cmp);
    let q = |f: f64| totals[((f * SIMULATIONS as f64) as usize).min(SIMULATIONS - 1)];
    (q(0.5), [q(0.1), q(0.9)])
}

#[cfg(test)]
#[path = "estimate_tests.rs"]
pub(crate) mod tests;
