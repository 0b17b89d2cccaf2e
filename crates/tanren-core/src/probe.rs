//! The advisor's probes: what the control plane asks a worker to measure on a dataset before a study
//! (`ProbePlan`, sent as JSON in the `Probe` RPC), what comes back (`ProbeReport`), and the pure
//! arithmetic both sides use: where a learning-rate range test fell fastest and where it blew up,
//! the knee of images/s over batch sizes, and the probe timings as time-model measurements.
//!
//! The worker runs the plan (tanren-trainer's `probe`); the control plane plans and reads. No IO.

use crate::config::{OptimizerKind, TrainConfig};
use crate::estimate::{DataSize, Measurement};
use crate::space::{train_config, ImageSpace};
use crate::warnings::Measured;
use serde::{Deserialize, Serialize};
use tanren_search::{ParamValue, Params};

/// What a worker is asked to measure. Every part is bounded by steps and by `deadline_seconds`, the
/// whole probe's wall-clock budget (dataset fetch and decode not counted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbePlan {
    /// The network and data of the learning-rate test and the batch probe (its batch is the test's).
    pub base: TrainConfig,
    /// One learning-rate range test per optimizer.
    pub optimizers: Vec<OptimizerKind>,
    pub lr_min: f64,
    pub lr_max: f64,
    /// Most steps of each range test; the learning rate grows geometrically from `lr_min` to
    /// `lr_max`. The worker takes fewer when its measured step time would not reach `lr_max` within
    /// the test's share of the deadline (`sweep_steps`).
    pub lr_steps: u32,
    /// Batch sizes to try, increasing (the base network on random images).
    pub batches: Vec<u32>,
    /// Configurations whose epoch time is measured (a few steps each on random images).
    pub timing: Vec<TrainConfig>,
    /// Timed steps per configuration (after one warm-up step).
    pub timing_steps: u32,
    pub deadline_seconds: f64,
}

/// The loss along one range test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrCurve {
    pub optimizer: OptimizerKind,
    /// Learning rate and raw training loss per step (a non-finite loss ends the curve, as `None`).
    pub lrs: Vec<f64>,
    pub losses: Vec<Option<f64>>,
    /// Where the smoothed loss fell fastest per unit of log learning rate.
    pub steepest_lr: Option<f64>,
    /// The first learning rate at which the smoothed loss rose past four times its lowest value (or
    /// the loss stopped being a number); `None` when the test never blew up.
    pub divergence_lr: Option<f64>,
}

/// One batch size tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchTry {
    pub batch: u32,
    /// Training images per second; `None` when it ran out of device memory.
    pub images_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchProbe {
    pub tries: Vec<BatchTry>,
    /// CUDA: the largest batch that ran when a larger one ran out of memory (`None`: nothing tried ran
    /// out). CPU: always `None` (host memory is not the limit).
    pub max_batch: Option<u32>,
    /// Past this batch images/s stop rising by 10% per doubling.
    pub knee_batch: Option<u32>,
}

/// One configuration's measured step time, extrapolated to an epoch of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingProbe {
    pub config: TrainConfig,
    /// Steps timed (after warm-up steps).
    pub steps: u32,
    pub seconds_per_step: f64,
    /// Seconds of one evaluation batch (64 images, no gradients).
    pub seconds_per_eval_batch: f64,
    /// `seconds_per_step × steps per epoch + seconds_per_eval_batch × validation batches`.
    pub epoch_seconds: f64,
}

/// What a trial spends outside its epochs, measured on the probe's base configuration: loading and
/// resizing the dataset (a cache miss, as every trial at a new image size pays), and the tail after
/// training (test and validation passes, the inference timing, saving the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeOverhead {
    pub config: TrainConfig,
    pub prepare_seconds: f64,
    pub tail_seconds: f64,
}

/// What a worker measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `cpu`, `cuda:0`.
    pub device: String,
    pub lr: Vec<LrCurve>,
    pub batch: Option<BatchProbe>,
    pub timing: Vec<TimingProbe>,
    /// A trial's time outside its epochs (absent when the deadline came first).
    #[serde(default)]
    pub overhead: Option<ProbeOverhead>,
    /// Wall seconds of the probes (without the dataset fetch).
    pub seconds: f64,
    /// Parts cut short by the deadline, in words; empty when everything ran.
    #[serde(default)]
    pub cut_short: Vec<String>,
}

impl ProbePlan {
    /// Refuse a plan no worker should run: invalid configs, empty or absurd ranges.
    pub fn validate(&self) -> Result<(), String> {
        self.base.validate().map_err(|e| format!("base: {e}"))?;
        for (i, c) in self.timing.iter().enumerate() {
            c.validate().map_err(|e| format!("timing[{i}]: {e}"))?;
        }
        if !(self.lr_min > 0.0 && self.lr_min < self.lr_max && self.lr_max <= 100.0) {
            return Err(format!(
                "lr_min {} and lr_max {} must satisfy 0 < lr_min < lr_max <= 100",
                self.lr_min, self.lr_max
            ));
        }
        if !(2..=2000).contains(&self.lr_steps) {
            return Err(format!("lr_steps must be 2..=2000, got {}", self.lr_steps));
        }
        if self.optimizers.len() > 3 || self.timing.len() > 8 || self.batches.len() > 16 {
            return Err("at most 3 optimizers, 8 timing configurations and 16 batch sizes".into());
        }
        if self.batches.iter().any(|&b| b == 0 || b > 4096) || !self.batches.is_sorted() {
            return Err("batches must be increasing sizes in 1..=4096".into());
        }
        if !(1..=50).contains(&self.timing_steps) {
            return Err(format!("timing_steps must be 1..=50, got {}", self.timing_steps));
        }
        if !(self.deadline_seconds > 0.0 && self.deadline_seconds <= 600.0) {
            return Err(format!(
                "deadline_seconds must be in (0, 600], got {}",
                self.deadline_seconds
            ));
        }
        Ok(())
    }

    /// The learning rate of step `i` of a range test of `self.lr_steps` steps.
    pub fn lr_at(&self, i: u32) -> f64 {
        self.lr_of(i, self.lr_steps)
    }

    /// The learning rate of step `i` of a sweep from `lr_min` to `lr_max` in `steps` steps.
    pub fn lr_of(&self, i: u32, steps: u32) -> f64 {
        let t = i as f64 / (steps.max(2) - 1) as f64;
        (self.lr_min.ln() + t * (self.lr_max.ln() - self.lr_min.ln())).exp()
    }
}

/// Fewest steps a range test sweeps in: with fewer, each step raises the learning rate by more than
/// a third of a decade and the steepest point is a guess.
pub const MIN_SWEEP_STEPS: u32 = 20;

/// Steps of a range test that reach the top learning rate within `seconds_left` at the measured
/// `seconds_per_step` (10% kept for the loss read-back and noise), at most `max_steps`. When even
/// `MIN_SWEEP_STEPS` do not fit it answers that: the test will be cut short and say so.
pub fn sweep_steps(seconds_left: f64, seconds_per_step: f64, max_steps: u32) -> u32 {
    let fit = 0.9 * seconds_left / seconds_per_step.max(1e-6);
    if !fit.is_finite() {
        return max_steps.max(2);
    }
    (fit.floor() as u32).clamp(MIN_SWEEP_STEPS.min(max_steps), max_steps.max(2))
}

/// A range test's loss blew up: smoothed loss above four times its lowest, or not a number.
pub const DIVERGENCE_FACTOR: f64 = 4.0;

/// Exponential smoothing with bias correction (as in the fast.ai range test), `None` once a loss is
/// not finite.
fn smooth(losses: &[Option<f64>]) -> Vec<f64> {
    let beta: f64 = 0.9;
    let mut avg = 0.0;
    let mut out = Vec::new();
    for (i, l) in losses.iter().enumerate() {
        let Some(l) = l.filter(|l| l.is_finite()) else {
            break;
        };
        avg = beta * avg + (1.0 - beta) * l;
        out.push(avg / (1.0 - beta.powi(i as i32 + 1)));
    }
    out
}

/// The steepest-descent and divergence learning rates of a range test (`lrs` increasing).
pub fn analyse_lr(lrs: &[f64], losses: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let s = smooth(losses);
    let n = s.len().min(lrs.len());
    let mut best = f64::INFINITY;
    let mut diverged_at = None;
    for (i, &x) in s.iter().enumerate().take(n) {
        best = best.min(x);
        // Ignore the first steps: the bias-corrected average still moves with single batches.
        if i >= 5 && x > DIVERGENCE_FACTOR * best {
            diverged_at = Some(i);
            break;
        }
    }
    if diverged_at.is_none() && n < losses.len().min(lrs.len()) {
        diverged_at = Some(n);
    }
    let end = diverged_at.unwrap_or(n);
    // The running average lags by some ten steps, which on a short sweep is a decade of learning
    // rate: the steepest point is read from a centred average instead (the test is over by then),
    // over a quarter decade either side, and the slope over half a decade, however many steps the
    // sweep took: single batches are noisy, and a narrower window finds the noise's steepest dip.
    let per_step = match lrs {
        [a, b, ..] if *a > 0.0 && b > a => (b / a).ln(),
        _ => 1.0,
    };
    let span = |decades: f64| (decades * 10f64.ln() / per_step).round() as usize;
    let c = centred(&losses[..end], span(0.25).max(1));
    // Slope of the centred loss against ln(lr), up to the lowest loss before the blow-up: the
    // learning rate where it falls fastest.
    let lowest = (0..c.len()).min_by(|&a, &b| c[a].total_cmp(&c[b]));
    let steepest = lowest.and_then(|lo| {
        let w = span(0.5).max(2);
        (w..=lo)
            .filter_map(|i| {
                let dx = lrs[i].ln() - lrs[i - w].ln();
                (dx > 0.0).then(|| ((c[i] - c[i - w]) / dx, i - w / 2))
            })
            .filter(|(slope, _)| *slope < 0.0)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| lrs[i])
    });
    (steepest, diverged_at.and_then(|i| lrs.get(i).copied()))
}

/// Mean of each loss with its `h` neighbours on either side (fewer at the ends); the losses must be
/// finite (`analyse_lr` cuts the curve at its first non-number).
fn centred(losses: &[Option<f64>], h: usize) -> Vec<f64> {
    let v: Vec<f64> = losses.iter().map_while(|l| *l).collect();
    (0..v.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(h), (i + h + 1).min(v.len()));
            v[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

impl LrCurve {
    /// Whether the test saw the whole fall: it blew up, or it reached learning rates (0.1) where
    /// every optimizer here has long passed its fast part. A test cut short before that has only
    /// seen its first steps, and its "steepest" point would be one of them.
    pub fn swept(&self) -> bool {
        self.divergence_lr.is_some() || self.lrs.last().is_some_and(|&l| l >= 0.1)
    }
}

/// The batch past which doubling gains less than 10% images/s (the largest batch when it never
/// stops rising). Batches that ran out of memory are ignored.
pub fn knee(tries: &[BatchTry]) -> Option<u32> {
    let ok: Vec<(u32, f64)> = tries
        .iter()
        .filter_map(|t| t.images_per_second.map(|r| (t.batch, r)))
        .collect();
    let mut best = ok.first()?.1;
    let mut knee = ok[0].0;
    for &(b, r) in &ok[1..] {
        if r < 1.1 * best {
            break;
        }
        best = r;
        knee = b;
    }
    Some(knee)
}

/// The largest batch that ran below the first one that ran out of memory.
pub fn memory_limit(tries: &[BatchTry]) -> Option<u32> {
    let first_oom = tries.iter().position(|t| t.images_per_second.is_none())?;
    tries[..first_oom].last().map(|t| t.batch)
}

/// The probe timings as time-model measurements (one epoch each, no wall time), and the measured
/// overhead as a trial of no epochs whose wall time is that overhead: the model takes a trial's
/// overhead from wall time less training and final evaluation, so this one counts like a trial's.
pub fn measurements(
    timing: &[TimingProbe],
    overhead: Option<&ProbeOverhead>,
    data: DataSize,
) -> Vec<Measurement> {
    let mut out: Vec<Measurement> = timing
        .iter()
        .filter(|t| t.epoch_seconds.is_finite() && t.epoch_seconds > 0.0)
        .map(|t| Measurement {
            // The evaluation batch it timed is a 64-image forward call.
            inference_ips: (t.seconds_per_eval_batch.is_finite() && t.seconds_per_eval_batch > 0.0)
                .then(|| 64.0 / t.seconds_per_eval_batch),
            ..Measurement::epochs_only(t.config.clone(), data, 1, t.epoch_seconds)
        })
        .collect();
    if let Some(o) = overhead {
        let wall = o.prepare_seconds + o.tail_seconds;
        if wall.is_finite() && wall > 0.0 {
            out.push(Measurement {
                wall_seconds: Some(wall),
                ..Measurement::epochs_only(o.config.clone(), data, 0, 0.0)
            });
        }
    }
    out
}

/// Epoch seconds from a step time: the training steps of one epoch over `fit` images and the
/// validation pass over `val` images (in batches of 64, as the trainer evaluates).
pub fn extrapolate(batch: u32, fit: usize, val: usize, step: f64, eval_batch: f64) -> f64 {
    (fit.max(1) as f64 / batch.max(1) as f64).ceil() * step + (val as f64 / 64.0).ceil() * eval_batch
}

impl Measured {
    /// What the advisor and the warnings keep of a probe report.
    pub fn from_report(r: &ProbeReport) -> Measured {
        let name = |o: OptimizerKind| {
            serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Measured {
            divergence_lr: r
                .lr
                .iter()
                .filter_map(|c| Some((name(c.optimizer), c.divergence_lr?)))
                .collect(),
            // A test cut short before it reached high learning rates (and never blew up) has not
            // seen where the loss falls fastest: its steepest point is only its first steps.
            steepest_lr: r
                .lr
                .iter()
                .filter(|c| c.swept())
                .filter_map(|c| Some((name(c.optimizer), c.steepest_lr?)))
                .collect(),
            plateau_epochs: None,
            max_batch: r.batch.as_ref().and_then(|b| b.max_batch),
            knee_batch: r.batch.as_ref().and_then(|b| b.knee_batch),
            device: Some(r.device.clone()),
            timing: r.timing.clone(),
            overhead: r.overhead.clone(),
        }
    }

    /// Whether the probes ran on a CUDA device.
    pub fn on_cuda(&self) -> Option<bool> {
        self.device.as_deref().map(|d| d.starts_with("cuda"))
    }
}

/// The configuration of `space` at its baseline with some values replaced (`None` when the trainer
/// would refuse it).
fn config_at(space: &ImageSpace, set: &[(&str, ParamValue)], classes: u32) -> Option<TrainConfig> {
    let mut p: Params = space.baseline();
    for (k, v) in set {
        p.insert((*k).to_string(), v.clone());
    }
    train_config(&space.full_params(&p), classes.max(2), 0).ok()
}

/// Tuning knobs of a plan: CPU probes are kept small so the whole advice takes well under a minute.
pub struct PlanLimits {
    pub cuda: bool,
    pub deadline_seconds: f64,
}

/// The plan for a dataset from the bounds the statistics suggest: the range test at the smallest
/// suggested image and a mid batch, batches up to what the training set allows, and timing at the
/// corners of the suggested space (cheap, expensive, wide, deep, middle).
pub fn plan(
    space: &ImageSpace,
    classes: u32,
    data: DataSize,
    optimizers: &[OptimizerKind],
    limits: &PlanLimits,
) -> Option<ProbePlan> {
    use crate::params::param::*;
    let range = |name: &str| -> Option<(i64, i64)> {
        match &space.space.get(name)?.distribution {
            tanren_search::Distribution::Int { low, high, .. } => Some((*low, *high)),
            _ => None,
        }
    };
    let (img_lo, img_hi) = range(IMAGE_SIZE).unwrap_or((28, 28));
    let (b_lo, b_hi) = range(BATCH_SIZE).unwrap_or((32, 32));
    let (c_lo, c_hi) = range(CHANNELS).unwrap_or((16, 16));
    let (k_lo, k_hi) = range(CONV_BLOCKS).unwrap_or((1, 1));
    let mid = |a: i64, b: i64| ((a as f64 * b as f64).sqrt().round() as i64).clamp(a, b);
    let int = ParamValue::Int;
    let b_mid = mid(b_lo, b_hi);
    let base = config_at(
        space,
        &[
            (IMAGE_SIZE, int(img_lo)),
            (BATCH_SIZE, int(b_mid)),
            (CHANNELS, int(mid(c_lo, c_hi))),
            (CONV_BLOCKS, int(k_lo.max(1).min(k_hi))),
            (EPOCHS, int(1)),
            (OPTIMIZER, ParamValue::Cat("adam".into())),
            (LEARNING_RATE, ParamValue::Float(1e-3)),
            (DROPOUT, ParamValue::Float(0.0)),
        ],
        classes,
    )?;
    let corners = [
        (img_lo, b_hi, c_lo, k_lo),
        (img_hi, b_lo, c_hi, k_hi),
        (img_hi, b_hi, c_hi, k_lo),
        (img_lo, b_lo, c_hi, k_hi),
        (mid(img_lo, img_hi), b_mid, mid(c_lo, c_hi), mid(k_lo, k_hi)),
    ];
    let mut timing: Vec<TrainConfig> = Vec::new();
    for (img, b, c, k) in corners {
        let cfg = config_at(
            space,
            &[
                (IMAGE_SIZE, int(img)),
                (BATCH_SIZE, int(b)),
                (CHANNELS, int(c)),
                (CONV_BLOCKS, int(k)),
                (EPOCHS, int(1)),
            ],
            classes,
        );
        if let Some(cfg) = cfg {
            if !timing.contains(&cfg) {
                timing.push(cfg);
            }
        }
    }
    let fit = ((data.train as f64) * (1.0 - base.val_fraction)).floor().max(1.0) as u32;
    let cap = if limits.cuda { 4096 } else { 512 };
    let batches: Vec<u32> = (3..=12)
        .map(|p| 1u32 << p)
        .filter(|&b| b <= cap && b <= fit.max(8))
        .collect();
    Some(ProbePlan {
        base,
        optimizers: optimizers.to_vec(),
        // Adam's useful rates start near 1e-5 and SGD's end below 10; a CPU sweeps in fewer steps
        // (the worker takes fewer still when its steps are slow).
        lr_min: 1e-5,
        lr_max: 10.0,
        lr_steps: if limits.cuda { 300 } else { 100 },
        batches,
        timing,
        timing_steps: 4,
        deadline_seconds: limits.deadline_seconds,
    })
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
