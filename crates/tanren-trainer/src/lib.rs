//! The only library that links libtorch. It turns a `ModelSpec` into a network, trains it on packed
//! uint8 image tensors that live on the device (or stream from host memory when they do not fit),
//! augments and normalises batches there, evaluates, times inference, and saves/loads weights as
//! safetensors. It knows nothing of gRPC or HTTP: the worker drives it.
//!
//! Architecture invariant: no per-step host synchronisation. Losses and accuracies are accumulated as
//! device tensors and read once per epoch.

pub mod augment;
mod cuda_ffi;
pub mod data;
pub mod device;
pub mod memory;
pub mod model;
pub mod probe;
pub mod resnet;
pub mod schedule;
pub mod torch_cuda;
pub mod train;

pub use augment::Augment;
pub use data::{from_packed, prepare, DeviceData};
pub use device::{device_report, pick_device, DeviceReport};
pub use model::{build, parameter_count, peak_activation_elems, Net};
/// FLOPs of one forward pass of one image: the time model's count, for the networks built here.
pub use tanren_core::estimate::forward_flops;
pub use torch_cuda::{ensure_loaded as ensure_torch_cuda, TorchCuda};
pub use train::{
    evaluate, load_model, measure_inference, save_weights, train, train_until, EpochControl, Trained,
};

/// Errors the trainer reports; the worker maps them to gRPC statuses.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    #[error("dataset: {0}")]
    Dataset(#[from] tanren_dataset::IngestError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("cancelled during epoch {epoch}")]
    Cancelled { epoch: u32 },
    #[error("training diverged at epoch {epoch}: loss is {loss}; try a lower learning rate")]
    Diverged { epoch: u32, loss: f64 },
}
