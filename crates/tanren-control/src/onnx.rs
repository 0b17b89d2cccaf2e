//! The ONNX files of a model download (tanren-onnx, no libtorch): `model.onnx`, FP32, made on every
//! download since it takes milliseconds; and on request `model.int8.onnx`, INT8 QDQ calibrated on up to
//! `CALIBRATION_IMAGES` of the study's training images (a seeded, stratified choice, decoded exactly as
//! training decodes them), cached next to the weights because calibration takes seconds. Everything here
//! blocks: handlers call it from `spawn_blocking`.

use crate::files::Files;
use std::io::Write;
use std::path::Path;
use tanren_core::TrainConfig;
use tanren_onnx::ExportOptions;

pub const FP32_FILE: &str = "model.onnx";
pub const INT8_FILE: &str = "model.int8.onnx";

/// Enough images for stable min/max ranges; more only costs time.
pub const CALIBRATION_IMAGES: usize = 300;
/// Cap on calibration floats held at once (256 MiB), which bounds the image count at large sizes.
const CALIBRATION_VALUES: usize = 64 << 20;

fn options(cfg: &TrainConfig, classes: &[String]) -> ExportOptions {
    ExportOptions {
        classes: classes.to_vec(),
        normalize: Some(cfg.normalize),
        uint8_input: None,
    }
}

pub fn fp32(cfg: &TrainConfig, weights: &[u8], classes: &[String]) -> Result<Vec<u8>, String> {
    tanren_onnx::export_fp32(&cfg.model, weights, &options(cfg, classes))
        .map_err(|e| format!("onnx export: {e}"))
}

/// The cached INT8 model of `trial_id`, made (and written atomically) on first request. Weights never
/// change once a trial is complete, so the cache needs no invalidation.
pub fn int8(
    files: &Files,
    trial_id: i64,
    dataset_dir: &Path,
    cfg: &TrainConfig,
    weights: &[u8],
    classes: &[String],
) -> Result<Vec<u8>, String> {
    let path = files.model_dir(trial_id).join(INT8_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let calibration = calibration_batch(dataset_dir, cfg)?;
    let bytes = tanren_onnx::export_int8_qdq(&cfg.model, weights, &calibration, &options(cfg, classes))
        .map_err(|e| format!("int8 onnx export: {e}"))?;
    let io = |e: std::io::Error| format!("caching {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .suffix(".part")
        .tempfile_in(files.model_dir(trial_id))
        .map_err(io)?;
    tmp.write_all(&bytes).map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    tracing::info!(
        trial_id,
        bytes = bytes.len(),
        "int8 onnx model calibrated and cached"
    );
    Ok(bytes)
}

/// Up to `CALIBRATION_IMAGES` training images (every class represented, chosen by the trial's seed),
/// decoded and resized as the cache does and normalised as the trainer does, NCHW.
pub fn calibration_batch(dataset_dir: &Path, cfg: &TrainConfig) -> Result<Vec<f32>, String> {
    let manifest = tanren_dataset::load_manifest(dataset_dir).map_err(|e| format!("dataset: {e}"))?;
    let (size, channels) = (cfg.image_size, cfg.channels());
    let per_image = (channels * size * size) as usize;
    let want = CALIBRATION_IMAGES.min(CALIBRATION_VALUES / per_image).max(1);
    let labels: Vec<usize> = manifest.train.iter().map(|s| s.label).collect();
    let chosen: Vec<usize> = if labels.len() <= want {
        (0..labels.len()).collect()
    } else {
        let fraction = want as f64 / labels.len() as f64;
        let (_, mut held) = tanren_dataset::stratified_split(&labels, fraction, cfg.seed);
        held.truncate(want);
        held
    };
    if chosen.is_empty() {
        return Err("dataset has no training images to calibrate on".into());
    }
    // The trainer's arithmetic (data.rs `normalize`): pixel · 1/(255·std) − mean/std.
    let scale = 1.0 / (255.0 * cfg.normalize.std);
    let offset = cfg.normalize.mean / cfg.normalize.std;
    let mut out = Vec::with_capacity(chosen.len() * per_image);
    for i in chosen {
        let sample = &manifest.train[i];
        let bytes =
            std::fs::read(dataset_dir.join(&sample.path)).map_err(|e| format!("{}: {e}", sample.path))?;
        let pixels = tanren_dataset::decode_resize(&bytes, size, channels)
            .map_err(|e| format!("{}: {e}", sample.path))?;
        out.extend(pixels.iter().map(|&p| (p as f64 * scale - offset) as f32));
    }
    Ok(out)
}
