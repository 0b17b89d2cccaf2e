//! What a trial reports: per-epoch metrics while it runs and one `TrialResult` at the end. The worker
//! produces these, gRPC carries them, the store writes them, REST and the model card show them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Seconds since training started (excludes dataset preparation).
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub val_accuracy: f64,
    pub val_loss: f64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// Accuracy on the test split per class, in class-index order.
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]` counts on the test split.
    pub confusion: Vec<Vec<u64>>,
    /// Predicted class index of every test sample, in the dataset manifest's test order.
    pub test_predictions: Vec<u32>,
    pub train_seconds: f64,
    /// Dataset fetch/decode before the first epoch.
    pub prepare_seconds: f64,
    /// Latency of one image at batch 1, eval mode, no grad, after warm-up.
    pub inference_ms_per_image: f64,
    /// Throughput at batch 64, eval mode, no grad, after warm-up.
    pub inference_images_per_second: f64,
    pub parameter_count: u64,
    /// Size of the saved weights (safetensors) in bytes.
    pub model_bytes: u64,
    pub epochs_completed: u32,
    /// `cuda:0` or `cpu`.
    pub device: String,
    /// True when training stopped early because the control plane asked it to.
    pub stopped_early: bool,
    /// Peak device memory in bytes while training, where the device reports it (CUDA); `None` on the
    /// CPU. See the trainer's `memory` module for exactly what is measured.
    #[serde(default)]
    pub peak_memory_bytes: Option<u64>,
}
