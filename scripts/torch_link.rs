// Shared by the build.rs of every crate whose binaries or tests link libtorch (trainer, worker, e2e tests).
//
// Why: torch-sys links libtorch_cuda, but the default `--as-needed` drops it because no symbol of it is
// referenced directly, and then `Cuda::is_available()` is false on a GPU host. Link-args from a
// dependency's build script do not reach the final binary, so each linking crate repeats them here.
// The rpath lets the binaries find libtorch without LD_LIBRARY_PATH.
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
