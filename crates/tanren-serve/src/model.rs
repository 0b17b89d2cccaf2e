//! A model as the server holds it: read from a tanren model zip (`model.json` + `model.safetensors`,
//! written by the control plane's model card), rebuilt with the trainer's own network code, moved to
//! the serving device and precision, and warmed up before the server says it is ready.

use crate::error::ServeError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use tanren_core::{ModelSpec, Normalize};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

/// Precision the forward pass runs in. Reduced precision only where it pays: CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" | "fp16" => Ok(Self::F16),
            other => Err(format!("unknown precision `{other}`; use f32, bf16 or fp16")),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
            Self::F16 => Kind::Half,
        }
    }
}

/// What a client may know about a model (shapes, classes); also the v2 metadata.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    /// First 12 hex digits of the zip's sha256: changes whenever the model does.
    pub version: String,
    pub classes: Vec<String>,
    pub channels: u32,
    pub image_size: u32,
    pub normalize: Normalize,
    pub spec: ModelSpec,
    /// From the model card, when present: which study and trial made it.
    pub provenance: serde_json::Value,
}

/// The network on its device. Only the batcher thread runs it.
pub struct Loaded {
    pub info: ModelInfo,
    net: tanren_trainer::Net,
    _vs: tch::nn::VarStore,
    device: Device,
    precision: Precision,
}

impl Loaded {
    /// Only the architecture from a model zip's `model.json` (to size batches before loading).
    pub fn read_spec(path: &Path) -> Result<ModelSpec, ServeError> {
        let bad = |msg: String| ServeError::BadModel(format!("{}: {msg}", path.display()));
        let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut z = zip::ZipArchive::new(f).map_err(|e| bad(format!("not a model zip ({e})")))?;
        let card = read_card(&mut z, &bad)?;
        serde_json::from_value(card["architecture"].clone())
            .map_err(|e| bad(format!("model.json architecture: {e}")))
    }

    /// Read a model zip, rebuild the network on `device` in `precision`, and warm it up at batch 1
    /// and `max_batch` so the first request pays no allocation or kernel-selection cost.
    pub fn from_zip(
        name: &str,
        path: &Path,
        device: Device,
        precision: Precision,
        max_batch: usize,
    ) -> Result<Self, ServeError> {
        let bad = |msg: String| ServeError::BadModel(format!("{}: {msg}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let version = hex::encode(Sha256::digest(&bytes))[..12].to_string();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
            .map_err(|e| bad(format!("not a model zip ({e})")))?;
        let card = read_card(&mut z, &bad)?;
        let spec: ModelSpec = serde_json::from_value(card["architecture"].clone())
            .map_err(|e| bad(format!("model.json architecture: {e}")))?;
        spec.validate()
            .map_err(|e| bad(format!("model.json architecture: {e}")))?;
        let normalize: Normalize = serde_json::from_value(card["input"]["normalize"].clone())
            .map_err(|e| bad(format!("model.json input.normalize: {e}")))?;
        let classes: Vec<String> = serde_json::from_value(card["classes"].clone())
            .map_err(|e| bad(format!("model.json classes: {e}")))?;
        if classes.len() != spec.num_classes() as usize {
            return Err(bad(format!(
                "model.json names {} classes but the network has {} outputs",
                classes.len(),
                spec.num_classes()
            )));
        }
        let dir = tempfile::tempdir().map_err(ServeError::internal)?;
        // The trainer loads safetensors by file extension.
        let weights = dir.path().join("model.safetensors");
        {
            let mut entry = z
                .by_name("model.safetensors")
                .map_err(|_| bad("no model.safetensors in the zip".into()))?;
            let mut f = std::fs::File::create(&weights).map_err(ServeError::internal)?;
            std::io::copy(&mut entry, &mut f).map_err(ServeError::internal)?;
        }
        let (mut vs, net) = tanren_trainer::load_model(&spec, &weights, device)
            .map_err(|e| bad(format!("weights do not fit the architecture: {e}")))?;
        if precision != Precision::F32 {
            vs.set_kind(precision.kind());
        }
        let info = ModelInfo {
            name: name.to_string(),
            version,
            classes,
            channels: spec.in_channels(),
            image_size: spec.image_size(),
            normalize,
            spec,
            provenance: card["provenance"].clone(),
        };
        let model = Loaded {
            info,
            net,
            _vs: vs,
            device,
            precision,
        };
        let (c, s) = (model.info.channels as i64, model.info.image_size as i64);
        for n in [1, max_batch.max(1) as i64] {
            let x = Tensor::zeros([n, c, s, s], (Kind::Uint8, Device::Cpu));
            model.forward(Input::Pixels(x))?;
        }
        Ok(model)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// One forward pass over a batch. Returns (logits, probabilities) as f32 on the CPU, row-major
    /// `[n, classes]`.
    pub fn forward(&self, input: Input) -> Result<(Vec<f32>, Vec<f32>), ServeError> {
        let x = match input {
            // uint8 pixels -> float -> normalised on the device: the trainer's own function.
            Input::Pixels(x) => {
                tanren_trainer::data::normalize(&x.to_device(self.device), self.info.normalize)
            }
            Input::Normalized(x) => x.to_device(self.device),
        };
        let x = x.to_kind(self.precision.kind());
        let logits = tch::no_grad(|| self.net.forward_t(&x, false)).to_kind(Kind::Float);
        let probs = logits.softmax(-1, Kind::Float);
        let to_vec = |t: Tensor| -> Result<Vec<f32>, ServeError> {
            Vec::<f32>::try_from(t.to_device(Device::Cpu).contiguous().view(-1)).map_err(ServeError::internal)
        };
        Ok((to_vec(logits)?, to_vec(probs)?))
    }
}

/// `model.json` of an open model zip, parsed.
fn read_card<R: std::io::Read + std::io::Seek>(
    z: &mut zip::ZipArchive<R>,
    bad: &dyn Fn(String) -> ServeError,
) -> Result<serde_json::Value, ServeError> {
    let mut card = String::new();
    z.by_name("model.json")
        .map_err(|_| bad("no model.json in the zip (is it a tanren model download?)".into()))?
        .read_to_string(&mut card)
        .map_err(|e| bad(format!("model.json: {e}")))?;
    serde_json::from_str(&card).map_err(|e| bad(format!("model.json is not JSON: {e}")))
}

/// A batch for [`Loaded::forward`], NCHW.
pub enum Input {
    /// uint8 pixels as decoded and resized by the training pipeline.
    Pixels(Tensor),
    /// float32, already `(pixel / 255 - mean) / std`: what the ONNX export and v2 FP32 clients send.
    Normalized(Tensor),
}
