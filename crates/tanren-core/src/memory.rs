//! How much memory one trial needs at its peak, and whether a worker can take it now: the estimate a
//! worker with several slots checks before it accepts a trial.
//!
//! The peak is training (evaluation runs forward only, in batches of 64): the weights with their
//! gradients and optimizer state, the activations the backward pass keeps for one batch (with room for
//! their gradients and the allocator's slack), the batch's input after augmentation, the trial's uint8
//! copy of the dataset (each trial decodes its own, at its own image size), and a fixed allowance
//! (libtorch's per-thread buffers; on CUDA the cuDNN workspace). It errs on the large side: a trial
//! refused as busy is retried a moment later, one that runs out of memory is lost.
//!
//! No IO: the worker reads what is free and what its running trials reserved, and calls [`admit`].

use crate::config::{Head, ModelSpec, OptimizerKind, TrainConfig};
use crate::estimate::weight_count;
use serde::{Deserialize, Serialize};

const F32: u64 = 4;
/// Saved activations are matched by their gradients during backward, and the caching allocator
/// rounds and fragments: twice the saved floats covers both in practice.
const ACTIVATION_FACTOR: u64 = 2;
/// Floats per input pixel of a batch: the uint8 gather turned float, the padded crop, the flip and
/// the normalised result.
const INPUT_COPIES: u64 = 4;
/// Per-trial allowance besides tensors: libtorch's thread-local buffers on the CPU.
const CPU_OVERHEAD: u64 = 64 << 20;
/// ... and on CUDA the cuDNN workspace (benchmark mode may pick algorithms that use a lot of it).
const CUDA_OVERHEAD: u64 = 256 << 20;

/// One trial's peak memory, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Weights, gradients and optimizer state.
    pub weights: u64,
    /// Activations kept for the backward pass of one training batch, their gradients and slack.
    pub activations: u64,
    /// One training batch's input, augmented and normalised.
    pub input: u64,
    /// The trial's uint8 copy of the dataset (0 when it is not where this estimate is counted).
    pub data: u64,
    /// Fixed per-trial allowance.
    pub overhead: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.activations + self.input + self.data + self.overhead
    }
}

/// Floats kept for the backward pass per image: every layer's output the autograd graph saves
/// (convolution, batch norm, ReLU and pooling outputs; max-pool indices are int64, two floats' worth).
pub fn activation_floats(spec: &ModelSpec) -> u64 {
    match spec {
        ModelSpec::Cnn(c) => {
            let (mut n, mut cin, mut side) = (0u64, c.in_channels as u64, c.image_size as u64);
            n += cin * side * side;
            for b in &c.blocks {
                let cout = b.out_channels as u64;
                let per_map = cout * side * side;
                // conv, [batch norm,] ReLU at full size; pooled output and its indices at a quarter.
                n += per_map * (2 + c.batch_norm as u64) + 3 * cout * (side / 2) * (side / 2);
                cin = cout;
                side /= 2;
            }
            let features = match c.head {
                Head::Flatten => cin * side * side,
                Head::GlobalAvgPool => cin,
            };
            // Dropout keeps its mask; the head's logits and softmax.
            n + 2 * features + 2 * c.num_classes as u64
        }
        ModelSpec::Resnet(r) => {
            let blocks = (r.depth.saturating_sub(2) / 6) as u64;
            let w = r.width as u64;
            let mut side = r.image_size as u64;
            // Input, then the stem's conv, batch norm and ReLU.
            let mut n = r.in_channels as u64 * side * side + 3 * w * side * side;
            let mut cin = w;
            for s in 0..3u32 {
                let cout = w << s;
                for b in 0..blocks {
                    if s > 0 && b == 0 {
                        side = side.div_ceil(2);
                    }
                    // Two conv + batch norm pairs, the ReLU between, the sum and the ReLU after it.
                    n += 7 * cout * side * side;
                    if cin != cout {
                        n += 2 * cout * side * side; // projection conv + batch norm
                    }
                    cin = cout;
                }
            }
            n + 2 * cin + 2 * r.num_classes as u64
        }
    }
}

/// Optimizer tensors per weight besides the weight and its gradient.
fn optimizer_states(cfg: &TrainConfig) -> u64 {
    match cfg.optimizer {
        OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd if cfg.momentum > 0.0 => 1,
        OptimizerKind::Sgd => 0,
    }
}

/// Bytes of the uint8 dataset a trial decodes: `images` (train, validation and test together) at the
/// trial's image size and channels.
pub fn dataset_bytes(cfg: &TrainConfig, images: u64) -> u64 {
    images * cfg.channels() as u64 * (cfg.image_size as u64).pow(2)
}

/// The peak memory of one trial on one device. `data_bytes` is the dataset copy to count here (see
/// [`dataset_bytes`]); pass 0 when it is unknown or kept elsewhere (on CUDA a dataset too large for the
/// device streams from host memory).
pub fn trial_memory(cfg: &TrainConfig, data_bytes: u64, cuda: bool) -> MemoryEstimate {
    let weights = weight_count(&cfg.model) * F32 * (2 + optimizer_states(cfg));
    let batch = cfg.batch_size as u64;
    let activations = activation_floats(&cfg.model) * batch * F32 * ACTIVATION_FACTOR;
    let padded = (cfg.image_size + 2 * cfg.crop_padding) as u64;
    let input = batch * cfg.channels() as u64 * padded * padded * F32 * INPUT_COPIES;
    MemoryEstimate {
        weights,
        activations,
        input,
        data: data_bytes,
        overhead: if cuda { CUDA_OVERHEAD } else { CPU_OVERHEAD },
    }
}

/// What a worker knows about its memory at the moment a trial asks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryState {
    /// All the device has (CPU: `MemTotal` or the cgroup's limit; CUDA: the device's total).
    pub total: u64,
    /// Free now as the OS or driver sees it (CPU: `MemAvailable`; CUDA: `cudaMemGetInfo`); `None`
    /// when it cannot be read.
    pub free_now: Option<u64>,
    /// Free the last time none of this worker's trials ran (`total` if never read): running trials
    /// have not all reached their peak yet, so what they reserved comes off this, not off `free_now`.
    pub free_idle: u64,
    /// Sum of the estimates of the trials running now.
    pub reserved: u64,
}

/// The answer to "may this trial run now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Fits,
    /// Not now: what is free beside the running trials is less than the trial needs.
    Busy {
        need: u64,
        free: u64,
    },
    /// Never on this device: it needs more than the device has.
    Never {
        need: u64,
        limit: u64,
    },
}

/// Whether a trial needing `need` bytes may start: never past the device's total; otherwise only if
/// it fits in what was free with nothing running less the running trials' reservations, and in what
/// is free right now.
pub fn admit(need: u64, m: &MemoryState) -> Admission {
    if need > m.total {
        return Admission::Never { need, limit: m.total };
    }
    let free = m
        .free_idle
        .saturating_sub(m.reserved)
        .min(m.free_now.unwrap_or(u64::MAX));
    if need <= free {
        Admission::Fits
    } else {
        Admission::Busy { need, free }
    }
}

/// Bytes for a person: "812 MiB", "3.4 GiB".
pub fn human_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = b as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", (b / MIB).max(1.0))
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
