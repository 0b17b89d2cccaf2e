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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelSpec {
    Cnn(CnnSpec),
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
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelSpec::Cnn(c) => {
                if !(1..=4).contains(&c.in_channels) {
                    return Err(format!("in_channels must be 1..=4, got {}", c.in_channels));
                }
                if c.num_classes < 2 {
                    return Err(format!("num_classes must be at least 2, got {}", c.num_classes));
                }
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

/// Everything a worker needs to train one trial, besides the data.
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
    /// Fixes init, shuffling and the validation split.
    pub seed: u64,
}

impl TrainConfig {
    pub fn channels(&self) -> u32 {
        match &self.model {
            ModelSpec::Cnn(c) => c.in_channels,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        let ModelSpec::Cnn(c) = &self.model;
        if c.image_size != self.image_size {
            return Err(format!(
                "model image size {} != config image size {}",
                c.image_size, self.image_size
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
        Ok(())
    }
}
