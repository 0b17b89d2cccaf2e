//! The two CUDA facts tch 0.24 does not expose, looked up at run time with `dlsym` in the libraries
//! libtorch already loaded (so a CPU-only libtorch still links and simply gets `None`/`false`):
//!
//! - `cudaMemGetInfo` (CUDA runtime C API): device memory in use, for the peak-memory metric, the
//!   "does the dataset fit on the device" check and a worker's admission of one more trial;
//!   `cudaGetDeviceProperties_v2` for the device's name and, should `cudaMemGetInfo` fail, its total.
//! - `at::autocast::set_autocast_dtype(DeviceType, ScalarType)`: tch's `autocast` turns CUDA autocast
//!   on, but its dtype defaults to fp16; bf16 needs this setter. Its two arguments are `int8_t` enum
//!   classes, which the x86-64 and AArch64 C ABIs pass like plain `i8`.
//!
//! - `dlopen(libtorch_cuda.so, RTLD_NOW | RTLD_GLOBAL)`: loads libtorch's CUDA half at start-up
//!   (see `torch_cuda.rs` for why the linker cannot be trusted to do it).
//!
//! This is the only unsafe code in tanren; each call checks that the symbol exists first.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void, CStr, CString};

const SET_AUTOCAST_DTYPE: &CStr = c"_ZN2at8autocast17set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE";
const CUDA_MEM_GET_INFO: &CStr = c"cudaMemGetInfo";
const CUDA_SET_DEVICE: &CStr = c"cudaSetDevice";
/// CUDA 12+ name of `cudaGetDeviceProperties` (the unsuffixed one is a macro there).
const CUDA_GET_DEVICE_PROPERTIES: &CStr = c"cudaGetDeviceProperties_v2";
/// `cudaDeviceProp` is about 1 KiB in CUDA 12/13 and only ever grows; its first field is `char name[256]`.
const DEVICE_PROP_BUFFER: usize = 16 << 10;
/// `c10::DeviceType::CUDA` and `c10::ScalarType::BFloat16`.
const DEVICE_TYPE_CUDA: i8 = 1;
const SCALAR_TYPE_BFLOAT16: i8 = 15;

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the loaded libraries' symbol tables.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Make CUDA autocast use bf16. False when this libtorch has no such function.
pub fn set_cuda_autocast_bf16() -> bool {
    let Some(p) = symbol(SET_AUTOCAST_DTYPE) else {
        return false;
    };
    // SAFETY: the symbol is libtorch's `void set_autocast_dtype(DeviceType, ScalarType)`.
    unsafe {
        let f: extern "C" fn(i8, i8) = std::mem::transmute(p);
        f(DEVICE_TYPE_CUDA, SCALAR_TYPE_BFLOAT16);
    }
    true
}

/// (free, total) bytes of CUDA device `index` as the driver sees it (all processes), or `None` when the
/// CUDA runtime is not loaded or the call fails. Makes `index` the calling thread's current device.
pub fn cuda_mem_info(index: usize) -> Option<(u64, u64)> {
    let set_device = symbol(CUDA_SET_DEVICE)?;
    let mem_get_info = symbol(CUDA_MEM_GET_INFO)?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: CUDA runtime signatures `cudaError_t cudaSetDevice(int)` and
    // `cudaError_t cudaMemGetInfo(size_t*, size_t*)`; cudaError_t is a C enum (int), 0 = success.
    let ok = unsafe {
        let set: extern "C" fn(c_int) -> c_int = std::mem::transmute(set_device);
        let get: extern "C" fn(*mut usize, *mut usize) -> c_int = std::mem::transmute(mem_get_info);
        set(index as c_int) == 0 && get(&mut free, &mut total) == 0
    };
    ok.then_some((free as u64, total as u64))
}

/// The raw `cudaDeviceProp` of CUDA device `index`, or `None` without a CUDA runtime.
fn cuda_device_properties(index: usize) -> Option<Vec<u8>> {
    let get = symbol(CUDA_GET_DEVICE_PROPERTIES)?;
    let mut prop = vec![0u8; DEVICE_PROP_BUFFER];
    // SAFETY: `cudaError_t cudaGetDeviceProperties_v2(cudaDeviceProp*, int)`; the buffer is far larger
    // than the struct, and only its leading fields (layout fixed since CUDA 10) are read back.
    let ok = unsafe {
        let f: extern "C" fn(*mut c_void, c_int) -> c_int = std::mem::transmute(get);
        f(prop.as_mut_ptr().cast(), index as c_int) == 0
    };
    ok.then_some(prop)
}

/// The marketing name of CUDA device `index` ("NVIDIA H200"), or `None` without a CUDA runtime.
pub fn cuda_device_name(index: usize) -> Option<String> {
    let prop = cuda_device_properties(index)?;
    let name = CStr::from_bytes_until_nul(&prop[..256]).ok()?;
    Some(name.to_string_lossy().into_owned())
}

/// `totalGlobalMem` of CUDA device `index`: after `char name[256]`, `cudaUUID_t uuid` (16 bytes),
/// `char luid[8]` and `unsigned int luidDeviceNodeMask`, aligned to 8 for the `size_t`.
const TOTAL_GLOBAL_MEM_OFFSET: usize = 288;

/// Total memory of CUDA device `index` from its properties: the fallback when `cudaMemGetInfo`
/// does not answer.
pub fn cuda_total_memory(index: usize) -> Option<u64> {
    let prop = cuda_device_properties(index)?;
    let bytes: [u8; 8] = prop[TOTAL_GLOBAL_MEM_OFFSET..TOTAL_GLOBAL_MEM_OFFSET + 8]
        .try_into()
        .ok()?;
    Some(u64::from_ne_bytes(bytes)).filter(|&b| b > 0)
}

/// `dlopen(path, RTLD_NOW | RTLD_GLOBAL)`: the library's static initialisers run (libtorch_cuda
/// registers its CUDA hooks and kernels there) and its symbols become visible to `dlsym` above. The
/// handle is never closed: the library stays for the life of the process. `Err` carries `dlerror()`.
pub fn dlopen_global(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; dlopen runs the library's initialisers, which is the point.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if !handle.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns a thread-local C string (or null) describing the last dl* failure.
    let err = unsafe { libc::dlerror() };
    Err(if err.is_null() {
        "dlopen failed without a reason".into()
    } else {
        // SAFETY: non-null dlerror() results are valid NUL-terminated strings until the next dl* call.
        unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
    })
}
