//! Every binary that links libtorch must have libtorch_cuda in the process whenever the torch it runs
//! with has one (issue: mold dropped it at link time, so GPU hosts trained on the CPU). Checked on the
//! artifacts, not on flags: each binary's `--self-check` reads its own `/proc/self/maps`. Runs on CPU-only
//! machines too: the PyPI torch is a CUDA build, and loading its CUDA half needs no GPU.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The release dir holding this test binary's sibling executables (`target/release/deps/e2e-…`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn self_check(bin: &Path) -> serde_json::Value {
    assert!(
        bin.exists(),
        "{} is not built; run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    let out = Command::new(bin)
        .args(["--self-check", "--device", "auto"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{} --self-check printed no JSON ({e}): stdout {stdout:?} stderr {:?}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{} --self-check failed: {v}", bin.display());
    v
}

/// Whether the torch in `dir` ships a CUDA half (then it must be loaded).
fn torch_has_cuda(dir: &str) -> bool {
    Path::new(dir).join("libtorch_cuda.so").exists()
}

#[test]
fn every_libtorch_binary_loads_libtorch_cuda_when_torch_has_it() {
    let dir = bin_dir();
    let mut binaries = vec![
        PathBuf::from(env!("CARGO_BIN_EXE_tanren-e2e-worker")),
        dir.join("tanren-worker"),
    ];
    let serve = dir.join("tanren-serve");
    if Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/tanren-serve")
        .exists()
    {
        binaries.push(serve);
    }
    for bin in binaries {
        let v = self_check(&bin);
        let torch_lib = v["torch_lib"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no libtorch mapped: {v}", bin.display()));
        // The build's torch (scripts/env.sh) and the one the binary runs with must be the same install.
        if let Ok(expected) = std::env::var("TANREN_TORCH_LIB") {
            assert_eq!(
                std::fs::canonicalize(torch_lib).unwrap(),
                std::fs::canonicalize(&expected).unwrap(),
                "{} runs with another torch than the build's",
                bin.display()
            );
        }
        if torch_has_cuda(torch_lib) {
            assert_eq!(v["torch_cuda_loaded"], true, "{}: {v}", bin.display());
            let mapped = v["torch_cuda_mapped"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: libtorch_cuda.so not in /proc/self/maps: {v}", bin.display()));
            assert!(mapped.ends_with("/libtorch_cuda.so"), "{mapped}");
        } else {
            assert_eq!(v["torch_cuda_loaded"], false, "{v}");
        }
    }
}

/// This test binary links libtorch too.
#[test]
fn the_test_process_itself_loads_libtorch_cuda() {
    let status = tanren_trainer::ensure_torch_cuda();
    let cpu =
        tanren_trainer::torch_cuda::mapped_library("libtorch_cpu.so").expect("libtorch_cpu.so is mapped");
    if torch_has_cuda(cpu.parent().unwrap().to_str().unwrap()) {
        assert!(status.is_loaded(), "{}", status.describe());
        assert!(tanren_trainer::torch_cuda::mapped_now().is_some());
    }
}

/// `--device cuda` on a host without a usable GPU fails, and says why.
#[test]
fn cuda_without_a_gpu_fails_with_the_reason() {
    tanren_trainer::ensure_torch_cuda();
    if tch::Cuda::is_available() {
        return; // a GPU host: bench/gpu/run.sh checks this side
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tanren-e2e-worker"))
        .args([
            "--device",
            "cuda",
            "--listen",
            "127.0.0.1:0",
            "--control-url",
            "http://127.0.0.1:9",
        ])
        .env("TANREN_JOIN_TOKEN", "join-token-for-this-test")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device `cuda` was asked for"), "{err}");
    assert!(err.contains("libtorch_cuda") || err.contains("no GPU"), "{err}");
}
