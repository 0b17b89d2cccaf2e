//! The downloadable model: `model.safetensors` plus `model.json`, which carries everything needed to
//! rebuild and run the model elsewhere (architecture spec, variable naming, class names in index order,
//! input size and normalisation, the params that made it, its metrics, the files beside it), and the
//! same model as ONNX (`model.onnx`, and `model.int8.onnx` on request; see `onnx.rs`).

use std::io::Write;
use tanren_core::TrainConfig;
use tanren_store::{DatasetRow, StudyRow, TrialRow};

pub const FORMAT: &str = "tanren-model/1";

pub fn model_json(t: &TrialRow, study: &StudyRow, dataset: &DatasetRow) -> Result<serde_json::Value, String> {
    let cfg: TrainConfig =
        serde_json::from_str(&t.config).map_err(|e| format!("trial {} config: {e}", t.id))?;
    let summary: serde_json::Value = serde_json::from_str(&dataset.summary).unwrap_or_default();
    let classes: Vec<serde_json::Value> = summary["classes"]
        .as_array()
        .map(|a| a.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    let result: serde_json::Value = t
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    Ok(serde_json::json!({
        "format": FORMAT,
        "weights": "model.safetensors",
        "files": ["model.json", "model.safetensors", crate::onnx::FP32_FILE],
        "onnx": {
            "input": tanren_onnx::INPUT,
            "output": tanren_onnx::OUTPUT,
            "opset": tanren_onnx::OPSET,
            "input_values": "float32 NCHW, normalised exactly as `input` says; dynamic batch",
            "output_values": "logits (softmax not applied), one per class in `classes` order",
            "int8": "model.int8.onnx when downloaded with ?int8=true: QDQ, per-channel int8 weights, per-tensor int8 activations calibrated on training images",
        },
        "architecture": cfg.model,
        "variables": "blocks.{i}.conv.{weight,bias}, blocks.{i}.bn.{weight,bias,running_mean,running_var}, fc.{weight,bias}",
        "classes": classes,
        "input": {
            "size": [cfg.image_size, cfg.image_size],
            "channels": cfg.channels(),
            "layout": "NCHW",
            "resize": "exact size x size, bilinear with antialiasing (aspect ratio not kept)",
            "color": if cfg.channels() == 3 { "RGB (grayscale replicated)" } else { "luma" },
            "scale": "pixel / 255",
            "normalize": cfg.normalize,
        },
        "params": serde_json::from_str::<serde_json::Value>(&t.params).unwrap_or_default(),
        "train_config": cfg,
        "metrics": {
            "val_accuracy": t.val_accuracy,
            "val_loss": t.val_loss,
            "test_accuracy": t.test_accuracy,
            "test_loss": t.test_loss,
            "train_seconds": t.train_seconds,
            "inference_ms_per_image": t.inference_ms,
            "inference_images_per_second": t.inference_ips,
            "parameter_count": t.parameter_count,
            "per_class_accuracy": result["per_class_accuracy"],
            "confusion": result["confusion"],
        },
        "provenance": {
            "study_id": study.id,
            "study_name": study.name,
            "trial_id": t.id,
            "trial_number": t.number,
            "dataset_id": dataset.id,
            "dataset_sha256": dataset.sha256,
            "device": t.device,
            "worker_id": t.worker_id,
        },
    }))
}

/// The zip: `model.json` first, then `files` (name, bytes) in order.
pub fn zip(card: &serde_json::Value, files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let e = |e: zip::result::ZipError| e.to_string();
    z.start_file("model.json", opts).map_err(e)?;
    z.write_all(
        serde_json::to_string_pretty(card)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    for (name, bytes) in files {
        z.start_file(*name, opts).map_err(e)?;
        z.write_all(bytes).map_err(|e| e.to_string())?;
    }
    z.finish().map_err(e)?;
    Ok(out.into_inner())
}
