//! Device memory: the peak-memory metric and the check that decides whether a dataset lives on the
//! device or streams from host memory.
//!
//! What "peak" means: the most device memory in use (driver view, all processes, CUDA context
//! included) at the sample points — after the first step and at the end of every epoch. libtorch's
//! caching allocator keeps what it reserved until the process ends, so the end-of-epoch reading is the
//! peak reserved memory of training so far; the CUDA context (a few hundred MB) is included.

use crate::cuda_ffi::{cuda_mem_info, cuda_total_memory};
use tch::Device;

/// Keep the uint8 dataset on the device only if it takes at most this share of the free memory; the
/// rest is for weights, activations and the allocator's slack.
pub const DEVICE_DATA_SHARE: f64 = 0.5;

/// Free bytes on a CUDA device; `None` on the CPU or when the runtime does not say.
pub fn free_bytes(device: Device) -> Option<u64> {
    match device {
        Device::Cuda(i) => cuda_mem_info(i).map(|(free, _)| free),
        _ => None,
    }
}

/// (free, total) bytes of a CUDA device as the driver sees it (all processes); the free part is
/// `None` when `cudaMemGetInfo` does not answer but the device's properties give its total. `None` on
/// the CPU or without a CUDA runtime.
pub fn device_memory(device: Device) -> Option<(Option<u64>, u64)> {
    match device {
        Device::Cuda(i) => match cuda_mem_info(i) {
            Some((free, total)) => Some((Some(free), total)),
            None => cuda_total_memory(i).map(|total| (None, total)),
        },
        _ => None,
    }
}

/// Whether `bytes` of data should go onto a device with `free` bytes free (unknown: assume it fits).
pub fn fits(bytes: u64, free: Option<u64>) -> bool {
    free.is_none_or(|f| bytes as f64 <= f as f64 * DEVICE_DATA_SHARE)
}

#[derive(Debug)]
pub struct PeakMemory {
    cuda_index: Option<usize>,
    peak: Option<u64>,
}

impl PeakMemory {
    pub fn new(device: Device) -> Self {
        let cuda_index = match device {
            Device::Cuda(i) => Some(i),
            _ => None,
        };
        PeakMemory {
            cuda_index,
            peak: None,
        }
    }

    /// Reads the driver's counter; no device synchronisation.
    pub fn sample(&mut self) {
        if let Some((free, total)) = self.cuda_index.and_then(cuda_mem_info) {
            let used = total.saturating_sub(free);
            self.peak = Some(self.peak.map_or(used, |p| p.max(used)));
        }
    }

    pub fn peak(&self) -> Option<u64> {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_check_and_cpu_reports_nothing() {
        assert!(fits(10, None));
        assert!(fits(50, Some(100)));
        assert!(!fits(51, Some(100)));
        let mut m = PeakMemory::new(Device::Cpu);
        m.sample();
        assert_eq!(m.peak(), None);
        assert_eq!(free_bytes(Device::Cpu), None);
        assert_eq!(device_memory(Device::Cpu), None);
    }
}
