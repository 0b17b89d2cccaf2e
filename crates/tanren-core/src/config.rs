//! What one trial trains: the model architecture (`ModelSpec`, also written into `model.json`) and the
//! training procedure (`TrainConfig`). Validated here so every receiver (worker over gRPC, control plane
//! over REST) refuses the same bad configs with the same message.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

impl OptimizerKind {
    pub const ALL: [&'static str; 3] = ["adam", "adamw", "sgd"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "adam" => Some(Self::Adam),
            "adamw" => Some(Self::Adamw),
            "sgd" => Some(Self::Sgd),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Flatten the last feature map into one linear layer (the seed's SimpleCNN).
    Flatten,
    /// Global average pooling, then one linear layer.
    GlobalAvgPool,
}

impl Head {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "flatten" => Some(Self::Flatten),
            "global_avg_pool" => Some(Self::GlobalAvgPool),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvBlock {
    pub out_channels: u32,
    pub kernel: u32,
}

/// A plain CNN: each block is conv(k, pad k/2) [+ batch norm] + ReLU + 2x2 max-pool; then dropout and a
/// linear head. One block of 16 3x3 channels with a flatten head is exactly the seed's SimpleCNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnSpec {
    pub in_channels: u32,
    pub num_classes: u32,
    pub image_size: u32,
    pub blocks: Vec<ConvBlock>,
    #[serde(default)]
    pub batch_norm: bool,
    #[serde(default)]
    pub dropout: f64,
    pub head: Head,
}

/// A CIFAR-style ResNet of depth 6n+2 (8, 14, 20, ...): a 3x3 stem, three stages of n basic blocks
/// (two 3x3 conv + batch norm, identity or 1x1-projection shortcut) at widths w, 2w, 4w with stride 2
/// between stages, then global average pooling and one linear layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResnetSpec {
    pub in_channels: u32,
    pub num_classes: u32,
    pub image_size: u32,
    /// 6n+2: 8, 14, 20, 26, ... up to 56.
    pub depth: u32,
    /// Channels of the first stage (16 in the paper's CIFAR models).
    #[serde(default = "default_resnet_width")]
    pub width: u32,
}

fn default_resnet_width() -> u32 {
    16
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelSpec {
    Cnn(CnnSpec),
    Resnet(ResnetSpec),
}

impl ModelSpec {
    /// The seed's SimpleCNN: conv 3->16 3x3 pad 1, ReLU, 2x2 max-pool, one linear layer.
    pub fn seed_cnn(num_classes: u32, image_size: u32) -> Self {
        ModelSpec::Cnn(CnnSpec {
            in_channels: 3,
            num_classes,
            image_size,
            blocks: vec![ConvBlock {
                out_channels: 16,
                kernel: 3,
            }],
            batch_norm: false,
            dropout: 0.0,
            head: Head::Flatten,
        })
    }

    pub fn num_classes(&self) -> u32 {
        match self {
            ModelSpec::Cnn(c) => c.num_classes,
            ModelSpec::Resnet(r) => r.num_classes,
        }
    }

    pub fn in_channels(&self) -> u32 {
        match self {
            ModelSpec::Cnn(c) => c.in_channels,
            ModelSpec::Resnet(r) => r.in_channels,
        }
    }

    pub fn image_size(&self) -> u32 {
        match self {
            ModelSpec::Cnn(c) => c.image_size,
            ModelSpec::Resnet(r) => r.image_size,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.in_channels()) {
            return Err(format!("in_channels must be 1..=4, got {}", self.in_channels()));
        }
        if self.num_classes() < 2 {
            return Err(format!(
                "num_classes must be at least 2, got {}",
                self.num_classes()
            ));
        }
        match self {
            ModelSpec::Resnet(r) => {
                if r.depth < 8 || r.depth > 56 || (r.depth - 2) % 6 != 0 {
                    return Err(format!(
                        "resnet depth must be 6n+2 in 8..=56 (8, 14, 20, ...), got {}",
                        r.depth
                    ));
                }
                if !(4..=256).contains(&r.width) {
                    return Err(format!("resnet width must be 4..=256, got {}", r.width));
                }
                // Two stride-2 stages: anything below 4 px would vanish before the pooling head.
                if r.image_size < 4 {
                    return Err(format!("image size {} is too small for a resnet", r.image_size));
                }
                Ok(())
            }
            ModelSpec::Cnn(c) => {
                if c.blocks.is_empty() || c.blocks.len() > 8 {
                    return Err(format!("a CNN needs 1 to 8 conv blocks, got {}", c.blocks.len()));
                }
                if c.image_size >> c.blocks.len() == 0 {
                    return Err(format!(
                        "image size {} is too small for {} pooling blocks",
                        c.image_size,
                        c.blocks.len()
                    ));
                }
                for (i, b) in c.blocks.iter().enumerate() {
                    if b.out_channels == 0 || b.out_channels > 1024 {
                        return Err(format!("block {i}: out_channels must be 1..=1024"));
                    }
                    if b.kernel % 2 == 0 || b.kernel > 7 {
                        return Err(format!("block {i}: kernel must be 1, 3, 5 or 7"));
                    }
                }
                if !(0.0..1.0).contains(&c.dropout) {
                    return Err(format!("dropout must be in [0, 1), got {}", c.dropout));
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: f64,
    pub std: f64,
}

/// How the learning rate moves over the run (updated every step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The seed's behaviour.
    #[default]
    Constant,
    /// Cosine decay from `learning_rate` to 0 over all steps.
    Cosine,
    /// Warm up from lr/25 to `learning_rate` over the first 30% of steps, then cosine down to lr/1e4
    /// (PyTorch's `OneCycleLR` defaults, without momentum cycling).
    OneCycle,
}

impl LrSchedule {
    pub const ALL: [&'static str; 3] = ["constant", "cosine", "one_cycle"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "constant" => Some(Self::Constant),
            "cosine" => Some(Self::Cosine),
            "one_cycle" => Some(Self::OneCycle),
            _ => None,
        }
    }
}

/// Everything a worker needs to train one trial, besides the data.
///
/// Fields added after the first release are `#[serde(default)]` and default to the seed's behaviour, so
/// older JSON (stored trials, other control planes) still reads and trains the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelSpec,
    pub image_size: u32,
    pub batch_size: u32,
    pub epochs: u32,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    pub normalize: Normalize,
    /// Fraction of the train split held out (stratified) for the objective.
    pub val_fraction: f64,
    /// Fixes init, shuffling, augmentation, dropout and the validation split.
    pub seed: u64,
    /// SGD only: Nesterov momentum (needs `momentum > 0`).
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Cross-entropy label smoothing in [0, 1); 0 is plain cross-entropy.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Random crop: pad each side by this many pixels (zeros) and crop back to the image size at a random
    /// offset; 0 is off.
    #[serde(default)]
    pub crop_padding: u32,
    /// Random horizontal flip with probability 1/2.
    #[serde(default)]
    pub horizontal_flip: bool,
    /// Run forward and loss under bf16 autocast on CUDA; ignored (with a log line) on the CPU.
    #[serde(default)]
    pub bf16_autocast: bool,
}

impl TrainConfig {
    pub fn channels(&self) -> u32 {
        self.model.in_channels()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        if self.model.image_size() != self.image_size {
            return Err(format!(
                "model image size {} != config image size {}",
                self.model.image_size(),
                self.image_size
            ));
        }
        if !(8..=1024).contains(&self.image_size) {
            return Err(format!("image_size must be 8..=1024, got {}", self.image_size));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return Err(format!("batch_size must be 1..=4096, got {}", self.batch_size));
        }
        if self.epochs == 0 || self.epochs > 1000 {
            return Err(format!("epochs must be 1..=1000, got {}", self.epochs));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.05..=0.5).contains(&self.val_fraction) {
            return Err(format!(
                "val_fraction must be in [0.05, 0.5], got {}",
                self.val_fraction
            ));
        }
        if !self.normalize.std.is_finite() || self.normalize.std <= 0.0 {
            return Err("normalize.std must be positive".into());
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum <= 0.0) {
            return Err("nesterov needs the sgd optimizer and momentum > 0".into());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if self.crop_padding > self.image_size / 2 {
            return Err(format!(
                "crop_padding must be at most half the image size ({}), got {}",
                self.image_size / 2,
                self.crop_padding
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON written before the augmentation/schedule/precision fields existed still reads, as the
    /// seed's behaviour.
    #[test]
    fn configs_without_the_newer_fields_still_read() {
        let cfg = crate::train_config(&crate::seed_params(), 2, 3).unwrap();
        let mut v = serde_json::to_value(&cfg).unwrap();
        let obj = v.as_object_mut().unwrap();
        for k in [
            "nesterov",
            "lr_schedule",
            "label_smoothing",
            "crop_padding",
            "horizontal_flip",
            "bf16_autocast",
        ] {
            assert!(obj.remove(k).is_some(), "{k} is serialized");
        }
        let back: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn resnet_specs_validate() {
        let r = |depth, image_size| {
            ModelSpec::Resnet(ResnetSpec {
                in_channels: 3,
                num_classes: 10,
                image_size,
                depth,
                width: 16,
            })
        };
        for d in [8, 14, 20] {
            r(d, 32).validate().unwrap();
        }
        assert!(r(10, 32).validate().is_err());
        assert!(r(62, 32).validate().is_err());
        let json = r#"{"family":"resnet","in_channels":1,"num_classes":2,"image_size":28,"depth":8}"#;
        let spec: ModelSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec.in_channels(), 1);
        spec.validate().unwrap();
    }
}
