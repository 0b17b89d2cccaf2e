//! Makes sure libtorch's CUDA half (`libtorch_cuda.so`) is in the process whenever the libtorch this
//! binary runs with has one, and says whether it is.
//!
//! Why not the linker: torch-sys links `-ltorch_cuda` under `--as-needed`, and since no symbol of it is
//! referenced directly it is dropped. Repeating it later under `--no-as-needed` works with GNU ld, but
//! mold keeps the *first* flag it sees for a library and drops it anyway (seen: `readelf -d
//! tanren-worker` had no `libtorch_cuda.so`), and any future binary or linker change could lose it
//! again. Without it libtorch never registers CUDA: `Cuda::is_available()` is false on a GPU host and
//! every trial silently runs on the CPU. So every binary that links libtorch calls [`ensure_loaded`]
//! first thing, which `dlopen`s `libtorch_cuda.so` from the directory of the `libtorch_cpu.so` this
//! process actually mapped (so CPU and CUDA halves always come from the same torch), independent of
//! linker and flags. `RTLD_GLOBAL` so `cudaMemGetInfo` and friends resolve through `dlsym`.
//!
//! It must run before the first CUDA query: libtorch caches its CUDA hooks on first use
//! (`at::detail::getCUDAHooks`), so a query made before the load would keep answering "no CUDA".
//! [`crate::pick_device`] and [`crate::device_report`] call it too, as a safety net.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What [`ensure_loaded`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorchCuda {
    /// `libtorch_cuda.so` is mapped in this process (linked, or loaded at start-up).
    Loaded { path: PathBuf },
    /// The libtorch in use is a CPU-only build: there is nothing to load.
    NotInTorch { torch_lib: PathBuf },
    /// The library exists but could not be loaded (a missing CUDA runtime dependency, usually).
    LoadFailed { path: PathBuf, error: String },
    /// `libtorch_cpu.so` is not mapped either: this binary does not link libtorch dynamically.
    TorchNotFound,
}

impl TorchCuda {
    pub fn is_loaded(&self) -> bool {
        matches!(self, TorchCuda::Loaded { .. })
    }

    /// One line for logs and for the error of `--device cuda` on a host without CUDA.
    pub fn describe(&self) -> String {
        match self {
            TorchCuda::Loaded { path } => format!("libtorch_cuda loaded ({})", path.display()),
            TorchCuda::NotInTorch { torch_lib } => format!(
                "the libtorch in {} is a CPU-only build (no libtorch_cuda.so); install a CUDA build of torch {}",
                torch_lib.display(),
                crate::device::TORCH_VERSION
            ),
            TorchCuda::LoadFailed { path, error } => {
                format!("libtorch_cuda could not be loaded from {}: {error}", path.display())
            }
            TorchCuda::TorchNotFound => {
                "libtorch_cpu.so is not mapped in this process, so libtorch_cuda cannot be located".into()
            }
        }
    }
}

static STATUS: OnceLock<TorchCuda> = OnceLock::new();

/// Load `libtorch_cuda.so` if the libtorch in use has it (once per process) and report the outcome.
pub fn ensure_loaded() -> &'static TorchCuda {
    STATUS.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        if let Some(path) = mapped(&maps, "libtorch_cuda.so") {
            return TorchCuda::Loaded { path };
        }
        let Some(cpu) = mapped(&maps, "libtorch_cpu.so") else {
            return TorchCuda::TorchNotFound;
        };
        let dir = cpu.parent().unwrap_or(Path::new("/")).to_path_buf();
        let path = dir.join("libtorch_cuda.so");
        if !path.exists() {
            return TorchCuda::NotInTorch { torch_lib: dir };
        }
        match crate::cuda_ffi::dlopen_global(&path) {
            Ok(()) => TorchCuda::Loaded { path },
            Err(error) => TorchCuda::LoadFailed { path, error },
        }
    })
}

/// Whether `libtorch_cuda.so` is mapped right now (read from `/proc/self/maps`, not from our own
/// bookkeeping), for tests and self-checks.
pub fn mapped_now() -> Option<PathBuf> {
    mapped_library("libtorch_cuda.so")
}

/// Where the shared library with file name `name` is mapped from in this process, if it is.
pub fn mapped_library(name: &str) -> Option<PathBuf> {
    mapped(&std::fs::read_to_string("/proc/self/maps").ok()?, name)
}

/// `--self-check` of every libtorch binary (worker, serve): what this process sees of libtorch and
/// CUDA, as one JSON object, and whether it is consistent (libtorch_cuda loaded, or the torch in use
/// has none). Tests and `bench/gpu/run.sh` read it from the binaries as built.
pub fn self_check(device_spec: &str) -> (serde_json::Value, bool) {
    let torch_cuda = ensure_loaded();
    let device = crate::pick_device(device_spec);
    let report = crate::device_report(*device.as_ref().unwrap_or(&tch::Device::Cpu));
    let line = serde_json::json!({
        "torch_version": report.torch_version,
        "torch_lib": mapped_library("libtorch_cpu.so").and_then(|p| p.parent().map(|d| d.display().to_string())),
        "torch_cuda_loaded": torch_cuda.is_loaded(),
        "torch_cuda": torch_cuda.describe(),
        "torch_cuda_mapped": mapped_now().map(|p| p.display().to_string()),
        "cuda_available": report.cuda_available,
        "cuda_device_count": tch::Cuda::device_count(),
        "cudnn_available": report.cudnn_available,
        "device": device.as_ref().ok().map(|_| report.device.clone()),
        "device_error": device.as_ref().err(),
        "device_name": report.device_name,
    });
    let consistent = matches!(
        torch_cuda,
        TorchCuda::Loaded { .. } | TorchCuda::NotInTorch { .. }
    );
    (line, consistent)
}

/// `--self-check` as a command: print the JSON line, return the exit code (0 consistent, 1 not).
pub fn self_check_main(device_spec: &str) -> i32 {
    let (line, consistent) = self_check(device_spec);
    println!("{line}");
    i32::from(!consistent)
}

/// The path of the first mapping whose file name is exactly `name`.
fn mapped(maps: &str, name: &str) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| p.file_name().is_some_and(|f| f == name))
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_mapping_by_exact_file_name() {
        let maps = "7f00-7f01 r-xp 00000000 fd:01 42 /venv/torch/lib/libtorch_cpu.so\n\
                    7f02-7f03 r--p 00000000 fd:01 43 /venv/torch/lib/libtorch_cuda_linalg.so\n\
                    7f04-7f05 rw-p 00000000 00:00 0\n";
        assert_eq!(
            mapped(maps, "libtorch_cpu.so"),
            Some(PathBuf::from("/venv/torch/lib/libtorch_cpu.so"))
        );
        assert_eq!(
            mapped(maps, "libtorch_cuda.so"),
            None,
            "a prefix match is not a match"
        );
    }

    /// The guarantee itself, on this test binary (which links libtorch like the worker does): when the
    /// torch we run with has a CUDA half, it ends up mapped in the process, GPU or not.
    #[test]
    fn libtorch_cuda_is_mapped_whenever_torch_has_it() {
        // This test binary must really link libtorch (with `--as-needed`, an unused libtorch_cpu is
        // dropped, as a binary that never calls tch would drop it); a CPU tensor asks nothing of CUDA.
        let _ = tch::Tensor::from_slice(&[1f32]);
        match ensure_loaded() {
            TorchCuda::Loaded { .. } => assert!(mapped_now().is_some()),
            TorchCuda::NotInTorch { .. } => assert!(mapped_now().is_none()),
            other => panic!("{}", other.describe()),
        }
    }
}
