//! Puts a dataset where training reads it: the packed uint8 cache (decoded and resized once per
//! (sha256, size, channels) by tanren-dataset) becomes NCHW uint8 tensors; the validation holdout is a
//! stratified, seeded split of train. Conversion to float and normalisation happen per batch, on the
//! device (`normalize`), never per image on the CPU.
//!
//! Placement: on the compute device when the uint8 data takes at most half of its free memory
//! (`memory::fits`); otherwise the tensors stay in host memory and `batch`
//! copies each shuffled batch over — streaming from the packed tensor in RAM, not from disk, so the
//! dataset must still fit in host memory (it already has: the cache file was read into it).

use crate::memory;
use crate::TrainError;
use std::path::Path;
use tanren_core::{Normalize, TrainConfig};
use tanren_dataset::{load_or_build, stratified_split, CacheStatus, Manifest, Packed, Split};
use tch::{Device, Kind, Tensor};

pub struct DeviceData {
    pub train_x: Tensor,
    pub train_y: Tensor,
    pub val_x: Tensor,
    pub val_y: Tensor,
    pub test_x: Tensor,
    pub test_y: Tensor,
    /// True when both splits came from the decode cache without decoding.
    pub cache_hit: bool,
    /// True when the data stayed in host memory and batches are copied to the device one at a time.
    pub streamed: bool,
}

fn to_tensors(p: &Packed, storage: Device) -> (Tensor, Tensor) {
    let s = p.size as i64;
    let x = Tensor::from_slice(&p.pixels).view([p.n as i64, p.channels as i64, s, s]);
    let y = Tensor::from_slice(&p.labels);
    (x.to_device(storage), y.to_device(storage))
}

/// Where the data should live for training on `device`: the device itself, or host memory.
fn storage_for(bytes: u64, device: Device) -> Device {
    let free = memory::free_bytes(device);
    if memory::fits(bytes, free) {
        return device;
    }
    tracing::warn!(
        dataset_mb = bytes >> 20,
        free_mb = free.unwrap_or(0) >> 20,
        "dataset does not fit comfortably on the device; keeping it in host memory and streaming batches"
    );
    Device::Cpu
}

pub fn prepare(
    dataset_dir: &Path,
    manifest: &Manifest,
    cfg: &TrainConfig,
    cache_dir: &Path,
    device: Device,
) -> Result<DeviceData, TrainError> {
    let load = |split| {
        load_or_build(
            dataset_dir,
            manifest,
            split,
            cfg.image_size,
            cfg.channels(),
            cache_dir,
        )
    };
    let (train, s1) = load(Split::Train)?;
    let (test, s2) = load(Split::Test)?;
    let labels: Vec<usize> = train.labels.iter().map(|&l| l as usize).collect();
    let (keep, holdout) = stratified_split(&labels, cfg.val_fraction, cfg.seed);
    let cache_hit = s1 == CacheStatus::Hit && s2 == CacheStatus::Hit;
    Ok(from_packed(
        &train,
        &test,
        Some((&keep, &holdout)),
        cache_hit,
        device,
    ))
}

/// Tensors from packed splits. `split` = (train indices, validation indices) into `train`; `None` uses
/// all of train for training and the test split for validation (the benchmark, which reproduces a
/// pipeline without a holdout).
pub fn from_packed(
    train: &Packed,
    test: &Packed,
    split: Option<(&[usize], &[usize])>,
    cache_hit: bool,
    device: Device,
) -> DeviceData {
    let storage = storage_for((train.pixels.len() + test.pixels.len()) as u64, device);
    let (all_x, all_y) = to_tensors(train, storage);
    let (test_x, test_y) = to_tensors(test, storage);
    let (train_x, train_y, val_x, val_y) = match split {
        Some((keep, holdout)) => {
            let idx = |v: &[usize]| {
                let v: Vec<i64> = v.iter().map(|&i| i as i64).collect();
                Tensor::from_slice(&v).to_device(storage)
            };
            let (keep, holdout) = (idx(keep), idx(holdout));
            (
                all_x.index_select(0, &keep),
                all_y.index_select(0, &keep),
                all_x.index_select(0, &holdout),
                all_y.index_select(0, &holdout),
            )
        }
        None => (all_x, all_y, test_x.shallow_clone(), test_y.shallow_clone()),
    };
    DeviceData {
        train_x,
        train_y,
        val_x,
        val_y,
        test_x,
        test_y,
        cache_hit,
        streamed: storage != device,
    }
}

/// Rows `idx` of `t` (on `t`'s device), on `device`: a no-op move when the data lives there already.
pub fn batch(t: &Tensor, idx: &Tensor, device: Device) -> Tensor {
    let b = t.index_select(0, idx);
    if b.device() == device {
        b
    } else {
        b.to_device(device)
    }
}

/// uint8 NCHW -> normalised float, as one fused expression on the device.
pub fn normalize(x: &Tensor, n: Normalize) -> Tensor {
    let scale = 1.0 / (255.0 * n.std);
    x.to_kind(Kind::Float) * scale - n.mean / n.std
}
