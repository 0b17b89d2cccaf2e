//! Which device a worker trains on and what it can say about it (logged at start, sent over gRPC).

use tch::{Cuda, Device};

#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub device: String,
    /// Whether libtorch_cuda is mapped in this process, and where from or why not.
    pub torch_cuda: crate::torch_cuda::TorchCuda,
    pub device_name: String,
    pub torch_version: String,
    pub cuda_available: bool,
    pub cudnn_available: bool,
}

/// The torch version torch-sys checked at build time (tch 0.24 <-> torch 2.11.0).
pub const TORCH_VERSION: &str = "2.11.0";

/// `auto` picks CUDA when libtorch can see a GPU; `cpu` and `cuda` / `cuda:N` force one. Loads
/// libtorch_cuda first (see `torch_cuda.rs`), so a CUDA request fails with the actual reason.
pub fn pick_device(spec: &str) -> Result<Device, String> {
    let torch_cuda = crate::torch_cuda::ensure_loaded();
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx = s
                .strip_prefix("cuda:")
                .map(|i| i.parse::<usize>())
                .transpose()
                .map_err(|e| e.to_string())?;
            if !torch_cuda.is_loaded() {
                return Err(format!(
                    "device `{s}` was asked for, but {}",
                    torch_cuda.describe()
                ));
            }
            if !Cuda::is_available() {
                return Err(format!(
                    "device `{s}` was asked for; libtorch_cuda is loaded but sees no GPU (driver missing, or CUDA_VISIBLE_DEVICES hides it?)"
                ));
            }
            let idx = idx.unwrap_or(0);
            let count = Cuda::device_count() as usize;
            if idx >= count {
                return Err(format!(
                    "device `{s}` was asked for, but only {count} CUDA device(s) are visible"
                ));
            }
            Ok(Device::Cuda(idx))
        }
        other => Err(format!("unknown device `{other}`; use auto, cpu, cuda or cuda:N")),
    }
}

pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

pub fn device_report(device: Device) -> DeviceReport {
    let torch_cuda = crate::torch_cuda::ensure_loaded().clone();
    let cuda_available = Cuda::is_available();
    let device_name = match device {
        Device::Cuda(i) => match crate::cuda_ffi::cuda_device_name(i) {
            Some(name) => format!("{name} (CUDA device {i} of {})", Cuda::device_count()),
            None => format!("CUDA device {i} of {}", Cuda::device_count()),
        },
        _ => format!("cpu ({} threads)", tch::get_num_threads()),
    };
    DeviceReport {
        device: device_label(device),
        torch_cuda,
        device_name,
        torch_version: TORCH_VERSION.into(),
        cuda_available,
        cudnn_available: Cuda::cudnn_is_available(),
    }
}
