//! Puts a dataset on the device once: the packed uint8 cache (decoded and resized once per
//! (sha256, size, channels) by tanren-dataset) becomes NCHW uint8 tensors; the validation holdout is a
//! stratified, seeded split of train. Conversion to float and normalisation happen per batch, on the
//! device (`normalize`), never per image on the CPU.

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
}

fn to_tensors(p: &Packed, device: Device) -> (Tensor, Tensor) {
    let s = p.size as i64;
    let x = Tensor::from_slice(&p.pixels)
        .view([p.n as i64, p.channels as i64, s, s])
        .to_device(device);
    let y = Tensor::from_slice(&p.labels).to_device(device);
    (x, y)
}

pub fn prepare(
    dataset_dir: &Path,
    manifest: &Manifest,
    cfg: &TrainConfig,
    cache_dir: &Path,
    device: Device,
) -> Result<DeviceData, TrainError> {
    let (train, s1) = load_or_build(
        dataset_dir,
        manifest,
        Split::Train,
        cfg.image_size,
        cfg.channels(),
        cache_dir,
    )?;
    let (test, s2) = load_or_build(
        dataset_dir,
        manifest,
        Split::Test,
        cfg.image_size,
        cfg.channels(),
        cache_dir,
    )?;
    let labels: Vec<usize> = train.labels.iter().map(|&l| l as usize).collect();
    let (keep, holdout) = stratified_split(&labels, cfg.val_fraction, cfg.seed);
    let (all_x, all_y) = to_tensors(&train, device);
    let idx =
        |v: &[usize]| Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device);
    let (keep, holdout) = (idx(&keep), idx(&holdout));
    let (test_x, test_y) = to_tensors(&test, device);
    Ok(DeviceData {
        train_x: all_x.index_select(0, &keep),
        train_y: all_y.index_select(0, &keep),
        val_x: all_x.index_select(0, &holdout),
        val_y: all_y.index_select(0, &holdout),
        test_x,
        test_y,
        cache_hit: s1 == CacheStatus::Hit && s2 == CacheStatus::Hit,
    })
}

/// uint8 NCHW -> normalised float, as one fused expression on the device.
pub fn normalize(x: &Tensor, n: Normalize) -> Tensor {
    let scale = 1.0 / (255.0 * n.std);
    x.to_kind(Kind::Float) * scale - n.mean / n.std
}
