// Shared by the build.rs of every crate whose binaries or tests link libtorch (trainer, worker, e2e tests).
//
// The rpath lets the binaries find libtorch without LD_LIBRARY_PATH (and lets `dlopen` find
// libtorch_cuda's siblings).
//
// libtorch_cuda is NOT guaranteed by these flags: torch-sys already put `-ltorch_cuda` on the command
// line under `--as-needed`, and while GNU ld honours the later `--no-as-needed` copy below, mold keeps
// the first flag it sees for a library and drops it. The guarantee is at run time instead:
// `tanren_trainer::ensure_torch_cuda()` dlopens it at start-up, whatever the linker did (see
// crates/tanren-trainer/src/torch_cuda.rs), and tests/e2e/cuda_link.rs checks every libtorch binary.
// The flags stay so GNU-ld builds also record it as NEEDED (`readelf -d`).
fn torch_link() {
    println!("cargo:rerun-if-env-changed=TANREN_TORCH_LIB");
    let lib = std::env::var("TANREN_TORCH_LIB").ok().or_else(|| {
        let py = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(py)
            .args(["-c", "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))"])
            .output()
            .ok()?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    });
    let Some(lib) = lib.filter(|l| !l.is_empty()) else {
        println!("cargo:warning=torch lib dir not found; run scripts/setup.sh (binaries will need LD_LIBRARY_PATH)");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
