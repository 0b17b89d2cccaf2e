//! Which device a worker trains on and what it can say about it (logged at start, sent over gRPC).

use tch::{Cuda, Device};

#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub device: String,
    pub device_name: String,
    pub torch_version: String,
    pub cuda_available: bool,
    pub cudnn_available: bool,
}

/// `auto` picks CUDA when libtorch can see a GPU; `cpu` and `cuda` / `cuda:N` force one.
pub fn pick_device(spec: &str) -> Result<Device, String> {
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx = s
                .strip_prefix("cuda:")
                .map(|i| i.parse::<usize>())
                .transpose()
                .map_err(|e| e.to_string())?;
            if !Cuda::is_available() {
                return Err("CUDA was asked for but libtorch sees no GPU (is the binary linked with libtorch_cuda? check `ldd`)".into());
            }
            Ok(Device::Cuda(idx.unwrap_or(0)))
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
    let cuda_available = Cuda::is_available();
    let device_name = match device {
        Device::Cuda(i) => format!("CUDA device {i} of {}", Cuda::device_count()),
        _ => format!("cpu ({} threads)", tch::get_num_threads()),
    };
    DeviceReport {
        device: device_label(device),
        device_name,
        torch_version: torch_version(),
        cuda_available,
        cudnn_available: Cuda::cudnn_is_available(),
    }
}

/// torch-sys checks the version at build time; this is the version the build accepted.
fn torch_version() -> String {
    "2.11.0".into()
}
