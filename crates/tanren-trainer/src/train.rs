//! The training loop, evaluation, inference timing, and weight files.
//!
//! Reproducibility: `tch::manual_seed(cfg.seed)` before the model is built fixes init, and because
//! shuffling, augmentation and dropout all draw from libtorch's generator in a fixed order, the seed
//! fixes them too; on the CPU a repeat is bit-for-bit equal (tests/repro.rs). The generator is
//! process-wide, which is fine for a worker (one trial at a time) but means two trainings in parallel
//! threads of one process do not repeat.

use crate::augment::Augment;
use crate::cuda_ffi;
use crate::data::{batch, normalize, DeviceData};
use crate::memory::PeakMemory;
use crate::model::{build, Net};
use crate::schedule::lr_at;
use crate::TrainError;
use std::path::Path;
use std::time::Instant;
use tanren_core::{EpochMetrics, LrSchedule, ModelSpec, Normalize, OptimizerKind, TrainConfig};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

/// What the caller says after each epoch: go on, or stop now (pruned, cancelled) and keep what we have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochControl {
    Continue,
    Stop,
}

pub struct Trained {
    pub vs: nn::VarStore,
    pub net: Net,
    pub epochs: Vec<EpochMetrics>,
    pub train_seconds: f64,
    pub stopped_early: bool,
    /// See `memory::PeakMemory`; `None` on the CPU.
    pub peak_memory_bytes: Option<u64>,
}

const EVAL_BATCH: i64 = 64;

pub(crate) fn optimizer(cfg: &TrainConfig, vs: &nn::VarStore) -> Result<nn::Optimizer, TrainError> {
    let lr = cfg.learning_rate;
    Ok(match cfg.optimizer {
        OptimizerKind::Adam => nn::Adam {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(vs, lr)?,
        OptimizerKind::Adamw => nn::AdamW {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(vs, lr)?,
        OptimizerKind::Sgd => nn::Sgd {
            momentum: cfg.momentum,
            wd: cfg.weight_decay,
            nesterov: cfg.nesterov,
            ..Default::default()
        }
        .build(vs, lr)?,
    })
}

/// bf16 autocast only where it exists: CUDA, and a libtorch that lets us pick bf16 over its fp16
/// default (fp16 without a gradient scaler could underflow, so we never fall back to it).
fn autocast_enabled(cfg: &TrainConfig, device: Device) -> bool {
    if !cfg.bf16_autocast {
        return false;
    }
    if !device.is_cuda() {
        tracing::info!("bf16_autocast is set but training runs on the CPU; training in f32");
        return false;
    }
    if !cuda_ffi::set_cuda_autocast_bf16() {
        tracing::warn!("this libtorch cannot set the autocast dtype to bf16; training in f32");
        return false;
    }
    true
}

pub fn train(
    cfg: &TrainConfig,
    data: &DeviceData,
    device: Device,
    on_epoch: impl FnMut(&EpochMetrics) -> EpochControl,
) -> Result<Trained, TrainError> {
    train_until(cfg, data, device, || false, on_epoch)
}

/// `train`, asking `cancelled` before every step: once it says yes, training ends with
/// `TrainError::Cancelled` within one step (a stop must not wait for the epoch to end). It is called
/// once per batch, so it must be cheap (an atomic load, a channel's closed flag).
pub fn train_until(
    cfg: &TrainConfig,
    data: &DeviceData,
    device: Device,
    cancelled: impl Fn() -> bool,
    mut on_epoch: impl FnMut(&EpochMetrics) -> EpochControl,
) -> Result<Trained, TrainError> {
    cfg.validate().map_err(TrainError::InvalidConfig)?;
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = build(&vs.root(), &cfg.model);
    let mut opt = optimizer(cfg, &vs)?;
    let autocast = autocast_enabled(cfg, device);
    let augment = Augment {
        crop_padding: cfg.crop_padding,
        horizontal_flip: cfg.horizontal_flip,
    };
    let storage = data.train_x.device();
    let n = data.train_x.size()[0];
    let bs = cfg.batch_size as i64;
    let total_steps = (n as u64).div_ceil(bs as u64) * cfg.epochs as u64;
    let mut step = 0u64;
    let mut memory = PeakMemory::new(device);
    let start = Instant::now();
    let mut epochs = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, storage));
        // Summed on the device; read once at the end of the epoch (no per-step host sync).
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        for idx in perm.split(bs, 0) {
            if cancelled() {
                return Err(TrainError::Cancelled { epoch });
            }
            if cfg.lr_schedule != LrSchedule::Constant {
                opt.set_lr(lr_at(cfg.lr_schedule, cfg.learning_rate, step, total_steps));
            }
            let x = normalize(&augment.apply(&batch(&data.train_x, &idx, device)), cfg.normalize);
            let y = batch(&data.train_y, &idx, device);
            let loss = tch::autocast(autocast, || {
                net.forward_t(&x, true).cross_entropy_loss::<Tensor>(
                    &y,
                    None,
                    Reduction::Mean,
                    -100,
                    cfg.label_smoothing,
                )
            });
            opt.backward_step(&loss);
            loss_sum += loss.detach().to_kind(Kind::Float) * idx.size()[0] as f64;
            step += 1;
            if step == 1 {
                memory.sample();
            }
        }
        let train_loss = f64::try_from(&loss_sum)? / n as f64;
        memory.sample();
        if !train_loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                loss: train_loss,
            });
        }
        let val = evaluate(&net, &data.val_x, &data.val_y, cfg.normalize)?;
        let m = EpochMetrics {
            epoch,
            train_loss,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            elapsed_seconds: start.elapsed().as_secs_f64(),
        };
        let control = on_epoch(&m);
        epochs.push(m);
        if control == EpochControl::Stop && epoch < cfg.epochs {
            stopped_early = true;
            break;
        }
    }
    Ok(Trained {
        vs,
        net,
        epochs,
        train_seconds: start.elapsed().as_secs_f64(),
        stopped_early,
        peak_memory_bytes: memory.peak(),
    })
}

pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// Predicted class per sample, in input order (on the CPU).
    pub predictions: Vec<i64>,
}

/// Mean cross-entropy (no label smoothing), accuracy and predictions in eval mode without gradients.
/// `x`, `y` may live in host memory (streamed data); batches move to the net's device.
pub fn evaluate(net: &Net, x: &Tensor, y: &Tensor, norm: Normalize) -> Result<Evaluation, TrainError> {
    let device = net.device();
    let n = x.size()[0];
    if n == 0 {
        return Ok(Evaluation {
            loss: f64::NAN,
            accuracy: f64::NAN,
            predictions: Vec::new(),
        });
    }
    let (loss_sum, preds) = tch::no_grad(|| {
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut preds = Vec::new();
        for (xb, yb) in x.split(EVAL_BATCH, 0).iter().zip(y.split(EVAL_BATCH, 0).iter()) {
            let yb = yb.to_device(device);
            let logits = net.forward_t(&normalize(&xb.to_device(device), norm), false);
            loss_sum += logits.cross_entropy_for_logits(&yb) * xb.size()[0] as f64;
            preds.push(logits.argmax(-1, false));
        }
        (loss_sum, Tensor::cat(&preds, 0))
    });
    let correct = f64::try_from(preds.eq_tensor(&y.to_device(device)).sum(Kind::Float))?;
    let predictions = Vec::<i64>::try_from(preds.to_device(Device::Cpu))?;
    Ok(Evaluation {
        loss: f64::try_from(&loss_sum)? / n as f64,
        accuracy: correct / n as f64,
        predictions,
    })
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// (ms per image at batch 1, images per second at batch 64), eval mode, no grad, after warm-up.
pub fn measure_inference(net: &Net, sample: &Tensor, norm: Normalize) -> Result<(f64, f64), TrainError> {
    let device = net.device();
    let one = sample.narrow(0, 0, 1).to_device(device);
    let many = one.repeat([64, 1, 1, 1]);
    let run = |x: &Tensor| tch::no_grad(|| net.forward_t(&normalize(x, norm), false));
    let time = |x: &Tensor, budget_s: f64, max_iters: u32| {
        for _ in 0..3 {
            let _ = run(x);
        }
        sync(device);
        let start = Instant::now();
        let mut iters = 0;
        while iters < max_iters && (iters < 3 || start.elapsed().as_secs_f64() < budget_s) {
            let _ = run(x);
            iters += 1;
        }
        sync(device);
        start.elapsed().as_secs_f64() / iters as f64
    };
    let per_batch1 = time(&one, 0.5, 200);
    let per_batch64 = time(&many, 1.0, 50);
    Ok((per_batch1 * 1000.0, 64.0 / per_batch64))
}

/// Save weights as safetensors; returns the file size.
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<u64, TrainError> {
    vs.save(path)?;
    Ok(std::fs::metadata(path)?.len())
}

/// Rebuild a model from its spec and a safetensors file.
pub fn load_model(
    spec: &ModelSpec,
    weights: &Path,
    device: Device,
) -> Result<(nn::VarStore, Net), TrainError> {
    spec.validate().map_err(TrainError::InvalidConfig)?;
    let mut vs = nn::VarStore::new(device);
    let net = build(&vs.root(), spec);
    vs.load(weights)?;
    Ok((vs, net))
}
