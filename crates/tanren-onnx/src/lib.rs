//! ONNX export of a trained tanren model, without libtorch: `ModelSpec` + the trainer's safetensors
//! weights → an ONNX file (FP32, or INT8 QDQ calibrated on images) that onnxruntime, TensorRT and friends
//! can serve. Torch-free so the control plane can export at download time.
//!
//! How: the weights are lowered to a flat op list with batch norm folded into the convolutions
//! (`net.rs`); that list is written as an ONNX graph (`export.rs`) and also run by a small f32
//! interpreter (`interp.rs`) which calibrates INT8 activation ranges and gives tests a libtorch-free
//! reference. The graph input is `input`, float32 `[batch, C, H, W]` already normalised exactly as the
//! trainer does (`x = pixel/255·(1/std) − mean/std`), unless `ExportOptions::uint8_input` moves that
//! normalisation into the graph; the output is `logits`, float32 `[batch, classes]`.
//!
//! API boundary: `export_fp32`, `export_int8_qdq`, `infer_fp32`, `expected_tensors`; `ort` runs a model
//! in onnxruntime (through python) for tests and tools, never from the library itself.

mod export;
mod interp;
mod net;
pub mod ort;
pub mod proto;
pub mod safetensors;

pub use export::{INPUT, IR_VERSION, OPSET, OUTPUT};
pub use net::expected_tensors;
use tanren_core::{ModelSpec, Normalize};

/// The value of the `format` metadata key: the same format name as the model zip's `model.json`.
pub const FORMAT: &str = "tanren-model/1";

/// Everything that can refuse an export. All are caused by the caller's inputs (a spec and weights that
/// do not belong together, a bad calibration batch), so each says which tensor or value is at fault.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),
    #[error("weights file is not valid safetensors: {0}")]
    Safetensors(String),
    #[error("weights have no tensor `{name}` the model spec needs (weights from another architecture?)")]
    MissingTensor { name: String },
    #[error("weights tensor `{name}` has shape {got:?}, the model spec needs {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("weights tensor `{name}` is {dtype}; only F32 weights (what the trainer saves) can be exported")]
    WrongDtype { name: String, dtype: String },
    #[error(
        "weights have a tensor `{name}` the model spec does not use (weights from another architecture?)"
    )]
    UnexpectedTensor { name: String },
    #[error("input batch: {0}")]
    BadInput(String),
}

/// What goes into the model besides the graph.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Class names in index order (logit `i` is `classes[i]`); written to the `classes` metadata.
    pub classes: Vec<String>,
    /// How the input was normalised in training; written to the `input` metadata.
    pub normalize: Option<Normalize>,
    /// Make the graph input uint8 pixels `[batch, C, H, W]` (0..=255) and normalise inside the graph with
    /// these statistics, so a server feeds decoded pixels straight in.
    pub uint8_input: Option<Normalize>,
}

/// An FP32 ONNX model of `spec` with `weights` (the trainer's `model.safetensors`).
pub fn export_fp32(spec: &ModelSpec, weights: &[u8], opts: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    let net = net::Net::load(spec, weights)?;
    let meta = metadata(spec, &net, opts, None);
    Ok(prost::Message::encode_to_vec(&export::model(
        &net, opts, None, meta,
    )))
}

/// A static INT8 ONNX model in QDQ form: per-channel symmetric int8 weights, per-tensor symmetric int8
/// activations at every Conv/Gemm input and residual shortcut, their ranges the min/max over `calibration` — a batch of
/// normalised float images, NCHW, `n · C · H · W` values (a few hundred training images is plenty).
pub fn export_int8_qdq(
    spec: &ModelSpec,
    weights: &[u8],
    calibration: &[f32],
    opts: &ExportOptions,
) -> Result<Vec<u8>, OnnxError> {
    let net = net::Net::load(spec, weights)?;
    let images = check_batch(&net, calibration)?;
    let ranges = interp::ranges(&net, calibration);
    let quant = export::Quant { ranges: &ranges };
    let meta = metadata(spec, &net, opts, Some(images));
    Ok(prost::Message::encode_to_vec(&export::model(
        &net,
        opts,
        Some(quant),
        meta,
    )))
}

/// Logits (`n · classes`, row-major) of the reference interpreter for a normalised NCHW batch: what the
/// FP32 export computes, without any runtime.
pub fn infer_fp32(spec: &ModelSpec, weights: &[u8], batch: &[f32]) -> Result<Vec<f32>, OnnxError> {
    let net = net::Net::load(spec, weights)?;
    check_batch(&net, batch)?;
    Ok(interp::forward(&net, batch))
}

/// The number of images in `batch`, after checking it is a whole, non-empty, finite NCHW batch.
fn check_batch(net: &net::Net, batch: &[f32]) -> Result<usize, OnnxError> {
    let per: usize = net.input.iter().product();
    if batch.is_empty() || !batch.len().is_multiple_of(per) {
        return Err(OnnxError::BadInput(format!(
            "{} values is not a whole number of {:?} images ({per} values each)",
            batch.len(),
            net.input
        )));
    }
    if let Some(i) = batch.iter().position(|v| !v.is_finite()) {
        return Err(OnnxError::BadInput(format!("value {i} is {}", batch[i])));
    }
    Ok(batch.len() / per)
}

/// `metadata_props`: the format, the architecture (the spec's JSON, as in `model.json`), classes, the
/// input contract, and for INT8 how it was quantised.
fn metadata(
    spec: &ModelSpec,
    net: &net::Net,
    opts: &ExportOptions,
    calibration_images: Option<usize>,
) -> Vec<(String, String)> {
    let [c, h, w] = net.input;
    let norm = opts.uint8_input.or(opts.normalize);
    let input = match opts.uint8_input {
        Some(_) => serde_json::json!({
            "name": INPUT, "dtype": "uint8", "layout": "NCHW", "shape": ["batch", c, h, w],
            "values": "pixels 0..=255; normalised inside the graph", "normalize": norm,
        }),
        None => serde_json::json!({
            "name": INPUT, "dtype": "float32", "layout": "NCHW", "shape": ["batch", c, h, w],
            "values": "(pixel / 255 - mean) / std", "normalize": norm,
        }),
    };
    let mut m = vec![
        ("format".to_string(), FORMAT.to_string()),
        ("architecture".into(), serde_json::json!(spec).to_string()),
        ("input".into(), input.to_string()),
        ("output".into(), serde_json::json!({"name": OUTPUT, "shape": ["batch", net.classes], "values": "logits (softmax not applied)"}).to_string()),
        ("classes".into(), serde_json::json!(opts.classes).to_string()),
    ];
    if let Some(n) = calibration_images {
        m.push((
            "quantization".into(),
            serde_json::json!({
                "scheme": "int8 QDQ",
                "weights": "per-output-channel symmetric int8 (axis 0)",
                "activations": "per-tensor symmetric int8 at every Conv/Gemm input and residual Add shortcut, min/max calibration",
                "calibration_images": n,
            })
            .to_string(),
        ));
    }
    m
}
