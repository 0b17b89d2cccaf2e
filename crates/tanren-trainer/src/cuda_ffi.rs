//! The two CUDA facts tch 0.24 does not expose, looked up at run time with `dlsym` in the libraries
//! libtorch already loaded (so a CPU-only libtorch still links and simply gets `None`/`false`):
//!
//! - `cudaMemGetInfo` (CUDA runtime C API): device memory in use, for the peak-memory metric and the
//!   "does the dataset fit on the device" check.
//! - `at::autocast::set_autocast_dtype(DeviceType, ScalarType)`: tch's `autocast` turns CUDA autocast
//!   on, but its dtype defaults to fp16; bf16 needs this setter. Its two arguments are `int8_t` enum
//!   classes, which the x86-64 and AArch64 C ABIs pass like plain `i8`.
//!
//! This is the only unsafe code in tanren; each call checks that the symbol exists first.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void, CStr};

const SET_AUTOCAST_DTYPE: &CStr = c"_ZN2at8autocast17set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE";
const CUDA_MEM_GET_INFO: &CStr = c"cudaMemGetInfo";
const CUDA_SET_DEVICE: &CStr = c"cudaSetDevice";
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
