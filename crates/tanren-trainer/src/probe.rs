//! The advisor's probes (`tanren_core::probe::ProbePlan`): short, bounded measurements on a dataset.
//!
//! - Learning-rate range test per optimizer: the base network trained on random batches of the real
//!   training split while the learning rate grows geometrically; it stops once the loss blew up.
//!   A few warm-up steps time the device first, and the sweep takes as many steps as fit its share
//!   (`sweep_steps`), so a slow CPU sweeps the whole range in fewer, larger steps.
//! - Batch sizes: a few steps of the base network per size on random images; on CUDA until one runs
//!   out of memory (caught), on the CPU until images/s stop rising.
//! - Timing: steps of each configuration on random images (time does not depend on the pixels) for
//!   its share of what is left of the deadline (at least the plan's `timing_steps`),
//!   plus two evaluation batches, extrapolated to an epoch of this dataset; and what a trial does
//!   after training (test and validation passes, the inference timing, saving the weights) on the
//!   base network, timed as the per-trial overhead.
//!
//! Unlike training, probes read the loss (or synchronise the device) after every step: they measure
//! steps, so they must wait for them. Every part has a share of the plan's deadline and checks it
//! between steps, as it checks `cancelled`.

use crate::augment::Augment;
use crate::data::{batch, normalize, DeviceData};
use crate::model::build;
use crate::train::optimizer;
use crate::TrainError;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tanren_core::probe::{
    analyse_lr, extrapolate, knee, memory_limit, sweep_steps, BatchProbe, BatchTry, LrCurve, ProbeOverhead,
    ProbePlan, ProbeReport, TimingProbe,
};
use tanren_core::{OptimizerKind, TrainConfig};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

/// Shares of the deadline: range tests, batch sizes, timing.
const SHARES: [f64; 3] = [0.5, 0.2, 0.3];
/// Timed steps per batch size (after two warm-up steps), and at least this long: a few
/// milliseconds' steps are mostly scheduling noise, and one noisy size ends the CPU's search early.
const BATCH_STEPS: u32 = 3;
const BATCH_MIN_SECONDS: f64 = 0.25;
/// A timing configuration is measured for its share of what is left, at most this long, and at
/// least the plan's `timing_steps` (after two warm-up steps: the first steps of a new network
/// allocate and pick kernels, and inflated every epoch estimate).
const TIMING_MAX_SECONDS: f64 = 3.0;
const WARMUP_STEPS: u32 = 2;
/// Steps at the lowest learning rate that time a range test's steps before it picks its length.
const LR_WARMUP_STEPS: u32 = 3;

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// One training step of `net` on `x` (uint8) and `y`; the loss stays on the device.
fn step(net: &crate::Net, opt: &mut nn::Optimizer, cfg: &TrainConfig, x: &Tensor, y: &Tensor) -> Tensor {
    let augment = Augment {
        crop_padding: cfg.crop_padding,
        horizontal_flip: cfg.horizontal_flip,
    };
    let x = normalize(&augment.apply(x), cfg.normalize);
    let loss = net.forward_t(&x, true).cross_entropy_loss::<Tensor>(
        y,
        None,
        Reduction::Mean,
        -100,
        cfg.label_smoothing,
    );
    opt.backward_step(&loss);
    loss.detach()
}

/// Random uint8 images and labels of `cfg`'s shape on `device`.
fn random_batch(cfg: &TrainConfig, n: i64, device: Device) -> (Tensor, Tensor) {
    let s = cfg.image_size as i64;
    let x = Tensor::randint(256, [n, cfg.channels() as i64, s, s], (Kind::Uint8, device));
    let y = Tensor::randint(cfg.model.num_classes() as i64, [n], (Kind::Int64, device));
    (x, y)
}

/// Run `f`, turning a libtorch panic (a CUDA out-of-memory error surfaces as one through tch's
/// infallible calls) into `None`.
fn catching<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

struct Clock {
    start: Instant,
    deadline: Instant,
}

impl Clock {
    /// The end of part `k` (its share added to the shares before it), never past the deadline.
    fn part_end(&self, k: usize, total: Duration) -> Instant {
        let share: f64 = SHARES[..=k].iter().sum();
        (self.start + total.mul_f64(share)).min(self.deadline)
    }
}

/// Seconds of what a trial of `cfg` does after training, on a fresh network: the test and validation
/// passes, the inference timing and saving the weights (as the worker's trial does).
fn tail(cfg: &TrainConfig, data: &DeviceData, device: Device) -> Result<f64, TrainError> {
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = build(&vs.root(), &cfg.model);
    let t = Instant::now();
    crate::train::evaluate(&net, &data.test_x, &data.test_y, cfg.normalize)?;
    crate::train::evaluate(&net, &data.val_x, &data.val_y, cfg.normalize)?;
    crate::train::measure_inference(&net, &data.test_x, cfg.normalize)?;
    let path = std::env::temp_dir().join(format!(
        "tanren-probe-{}-{:?}.safetensors",
        std::process::id(),
        std::thread::current().id()
    ));
    let saved = crate::train::save_weights(&vs, &path);
    let _ = std::fs::remove_file(&path);
    saved?;
    Ok(t.elapsed().as_secs_f64())
}

pub fn run(
    plan: &ProbePlan,
    data: &DeviceData,
    device: Device,
    cancelled: impl Fn() -> bool,
) -> Result<ProbeReport, TrainError> {
    plan.validate().map_err(TrainError::InvalidConfig)?;
    let total = Duration::from_secs_f64(plan.deadline_seconds);
    let clock = Clock {
        start: Instant::now(),
        deadline: Instant::now() + total,
    };
    let mut cut_short = Vec::new();
    let stop = |until: Instant| cancelled() || Instant::now() >= until;

    // 1. Learning-rate range tests on the real training split.
    let mut curves = Vec::new();
    let n = data.train_x.size()[0];
    let lr_end = clock.part_end(0, total);
    for (k, &kind) in plan.optimizers.iter().enumerate() {
        // Each optimizer gets an equal part of what is left of this share.
        let left = lr_end.saturating_duration_since(Instant::now());
        let until = Instant::now() + left / (plan.optimizers.len() - k) as u32;
        let mut cfg = plan.base.clone();
        cfg.optimizer = kind;
        cfg.momentum = if kind == OptimizerKind::Sgd { 0.9 } else { 0.0 };
        cfg.learning_rate = plan.lr_min;
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = build(&vs.root(), &cfg.model);
        let mut opt = optimizer(&cfg, &vs)?;
        let storage = data.train_x.device();
        let bs = (cfg.batch_size as i64).min(n.max(1));
        let one = |opt: &mut nn::Optimizer| -> Result<f64, TrainError> {
            let idx = Tensor::randint(n, [bs], (Kind::Int64, storage));
            let x = batch(&data.train_x, &idx, device);
            let y = batch(&data.train_y, &idx, device);
            Ok(f64::try_from(step(&net, opt, &cfg, &x, &y).to_kind(Kind::Float))?)
        };
        // Time a few steps at the lowest rate (they barely move the weights), then sweep in as many
        // steps as fit what is left of this test's share.
        let t = Instant::now();
        let mut warm = 0;
        while warm < LR_WARMUP_STEPS && !stop(until) {
            opt.set_lr(plan.lr_min);
            one(&mut opt)?;
            warm += 1;
        }
        let per_step = t.elapsed().as_secs_f64() / warm.max(1) as f64;
        let left = until.saturating_duration_since(Instant::now()).as_secs_f64();
        let steps = sweep_steps(left, per_step, plan.lr_steps);
        let (mut lrs, mut losses) = (Vec::new(), Vec::new());
        for i in 0..steps {
            if stop(until) {
                cut_short.push(format!(
                    "the {} learning-rate test stopped after {i} of {steps} steps at lr {:.0e} ({:.2} s a step); it did not reach high rates, so the advice keeps the statistics' learning-rate range",
                    format!("{kind:?}").to_lowercase(),
                    lrs.last().copied().unwrap_or(plan.lr_min),
                    per_step
                ));
                break;
            }
            let lr = plan.lr_of(i, steps);
            opt.set_lr(lr);
            let loss = one(&mut opt)?;
            lrs.push(lr);
            losses.push(loss.is_finite().then_some(loss));
            if analyse_lr(&lrs, &losses).1.is_some() {
                break;
            }
        }
        let (steepest_lr, divergence_lr) = analyse_lr(&lrs, &losses);
        curves.push(LrCurve {
            optimizer: kind,
            lrs,
            losses,
            steepest_lr,
            divergence_lr,
        });
    }

    // 2. Batch sizes, the base network on random images.
    let batch_end = clock.part_end(1, total);
    let mut tries: Vec<BatchTry> = Vec::new();
    {
        let cfg = &plan.base;
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = build(&vs.root(), &cfg.model);
        let mut opt = optimizer(cfg, &vs)?;
        let mut last_step = 0.0f64;
        for &b in &plan.batches {
            // The next size takes about twice the last one's steps: skip it if it cannot finish.
            let need = Duration::from_secs_f64(
                (2.0 * last_step * (BATCH_STEPS + WARMUP_STEPS) as f64).max(BATCH_MIN_SECONDS),
            );
            if stop(batch_end) || Instant::now() + need > batch_end {
                cut_short.push(format!(
                    "batch sizes above {} were not tried before the deadline",
                    tries.last().map_or(0, |t| t.batch)
                ));
                break;
            }
            let measured = catching(|| -> Result<f64, TrainError> {
                let (x, y) = random_batch(cfg, b as i64, device);
                for _ in 0..WARMUP_STEPS {
                    let _ = step(&net, &mut opt, cfg, &x, &y);
                }
                sync(device);
                let t = Instant::now();
                let mut steps = 0;
                while steps < BATCH_STEPS
                    || (t.elapsed().as_secs_f64() < BATCH_MIN_SECONDS && Instant::now() < batch_end)
                {
                    let _ = step(&net, &mut opt, cfg, &x, &y);
                    steps += 1;
                    if steps >= BATCH_STEPS {
                        sync(device);
                    }
                }
                sync(device);
                Ok(t.elapsed().as_secs_f64() / steps as f64)
            });
            let per_step = match measured {
                Some(r) => Some(r?),
                None => None,
            };
            tries.push(BatchTry {
                batch: b,
                images_per_second: per_step.map(|s| b as f64 / s.max(1e-9)),
            });
            match per_step {
                // Out of memory: larger batches will not fit either.
                None => break,
                Some(s) => last_step = s,
            }
            // On the CPU, stop once images/s stopped rising: the knee is behind us.
            if !device.is_cuda() && knee(&tries).is_some_and(|k| k < b) {
                break;
            }
        }
    }
    let batches = (!tries.is_empty()).then(|| BatchProbe {
        max_batch: if device.is_cuda() {
            memory_limit(&tries)
        } else {
            None
        },
        knee_batch: knee(&tries),
        tries,
    });

    // 3. What a trial does after training (first: without it every estimate misses that time),
    // then the epoch times of the timing configurations.
    let overhead = if stop(clock.deadline) {
        cut_short.push("the time after training (evaluation, inference timing) was not measured".into());
        None
    } else {
        Some(ProbeOverhead {
            config: plan.base.clone(),
            prepare_seconds: 0.0,
            tail_seconds: tail(&plan.base, data, device)?,
        })
    };
    let fit = n.max(0) as usize;
    let val = data.val_x.size()[0].max(0) as usize;
    let mut timing = Vec::new();
    for (k, cfg) in plan.timing.iter().enumerate() {
        let left = clock
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let window = (left / (plan.timing.len() - k) as f64).min(TIMING_MAX_SECONDS);
        if stop(clock.deadline) {
            cut_short.push(format!(
                "{} of {} timing configurations were measured before the deadline",
                k,
                plan.timing.len()
            ));
            break;
        }
        let measured = catching(|| -> Result<(f64, f64, u32), TrainError> {
            tch::manual_seed(cfg.seed as i64);
            let vs = nn::VarStore::new(device);
            let net = build(&vs.root(), &cfg.model);
            let mut opt = optimizer(cfg, &vs)?;
            let b = cfg.batch_size as i64;
            // A pool of two batches, gathered like an epoch gathers its shuffled batches.
            let (pool_x, pool_y) = random_batch(cfg, 2 * b, device);
            let mut one = || {
                let idx = Tensor::randint(2 * b, [b], (Kind::Int64, device));
                step(
                    &net,
                    &mut opt,
                    cfg,
                    &batch(&pool_x, &idx, device),
                    &batch(&pool_y, &idx, device),
                )
            };
            for _ in 0..WARMUP_STEPS {
                let _ = one();
            }
            sync(device);
            let t = Instant::now();
            let mut steps = 0;
            while steps == 0
                || (Instant::now() < clock.deadline
                    && (steps < plan.timing_steps || t.elapsed().as_secs_f64() < window))
            {
                let _ = one();
                steps += 1;
                if steps >= plan.timing_steps {
                    sync(device);
                }
            }
            sync(device);
            let per_step = t.elapsed().as_secs_f64() / steps as f64;
            let (ex, _) = random_batch(cfg, 64, device);
            let _ = tch::no_grad(|| net.forward_t(&normalize(&ex, cfg.normalize), false));
            let t = Instant::now();
            for _ in 0..2 {
                let _ = tch::no_grad(|| net.forward_t(&normalize(&ex, cfg.normalize), false));
            }
            sync(device);
            Ok((per_step, t.elapsed().as_secs_f64() / 2.0, steps))
        });
        let Some(measured) = measured else {
            cut_short.push(format!("timing configuration {} ran out of device memory", k + 1));
            continue;
        };
        let (per_step, per_eval, steps) = measured?;
        timing.push(TimingProbe {
            config: cfg.clone(),
            steps,
            seconds_per_step: per_step,
            seconds_per_eval_batch: per_eval,
            epoch_seconds: extrapolate(cfg.batch_size, fit, val, per_step, per_eval),
        });
    }
    Ok(ProbeReport {
        device: crate::device::device_label(device),
        lr: curves,
        batch: batches,
        timing,
        overhead,
        seconds: clock.start.elapsed().as_secs_f64(),
        cut_short,
    })
}
