//! The training loop, evaluation, inference timing, and weight files.

use crate::data::{normalize, DeviceData};
use crate::model::{build, Net};
use crate::TrainError;
use std::path::Path;
use std::time::Instant;
use tanren_core::{EpochMetrics, ModelSpec, Normalize, OptimizerKind, TrainConfig};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

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
}

const EVAL_BATCH: i64 = 256;

pub fn train(
    cfg: &TrainConfig,
    data: &DeviceData,
    device: Device,
    mut on_epoch: impl FnMut(&EpochMetrics) -> EpochControl,
) -> Result<Trained, TrainError> {
    cfg.validate().map_err(TrainError::InvalidConfig)?;
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = build(&vs.root(), &cfg.model);
    let lr = cfg.learning_rate;
    let mut opt = match cfg.optimizer {
        OptimizerKind::Adam => nn::Adam {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&vs, lr)?,
        OptimizerKind::Adamw => nn::AdamW {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&vs, lr)?,
        OptimizerKind::Sgd => nn::Sgd {
            momentum: cfg.momentum,
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(&vs, lr)?,
    };
    let n = data.train_x.size()[0];
    let bs = cfg.batch_size as i64;
    let start = Instant::now();
    let mut epochs = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, device));
        // Summed on the device; read once at the end of the epoch (no per-step host sync).
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        for idx in perm.split(bs, 0) {
            let x = normalize(&data.train_x.index_select(0, &idx), cfg.normalize);
            let y = data.train_y.index_select(0, &idx);
            let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            loss_sum += loss.detach() * idx.size()[0] as f64;
        }
        let train_loss = f64::try_from(&loss_sum)? / n as f64;
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
    })
}

pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// Predicted class per sample, in input order (on the CPU).
    pub predictions: Vec<i64>,
}

/// Mean cross-entropy, accuracy and predictions in eval mode without gradients.
pub fn evaluate(net: &Net, x: &Tensor, y: &Tensor, norm: Normalize) -> Result<Evaluation, TrainError> {
    let n = x.size()[0];
    if n == 0 {
        return Ok(Evaluation {
            loss: f64::NAN,
            accuracy: f64::NAN,
            predictions: Vec::new(),
        });
    }
    let (loss_sum, preds) = tch::no_grad(|| {
        let mut loss_sum = Tensor::zeros([], (Kind::Float, x.device()));
        let mut preds = Vec::new();
        for (xb, yb) in x.split(EVAL_BATCH, 0).iter().zip(y.split(EVAL_BATCH, 0).iter()) {
            let logits = net.forward_t(&normalize(xb, norm), false);
            loss_sum += logits.cross_entropy_for_logits(yb) * xb.size()[0] as f64;
            preds.push(logits.argmax(-1, false));
        }
        (loss_sum, Tensor::cat(&preds, 0))
    });
    let correct = f64::try_from(preds.eq_tensor(y).sum(Kind::Float))?;
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
    let device = sample.device();
    let one = sample.narrow(0, 0, 1);
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
