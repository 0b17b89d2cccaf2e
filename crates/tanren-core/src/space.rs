//! The image-classification search space: the tunable parameters, their default bounds, how a person's
//! bounds override them, the seed's baseline configuration, and how sampled parameters become a
//! `TrainConfig`. REST, the scheduler and the dashboard all use these definitions.

use crate::config::{ConvBlock, Head, LrSchedule, ModelSpec, Normalize, OptimizerKind, TrainConfig};
use crate::CnnSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tanren_search::{Distribution, ParamDef, ParamValue, Params, Space};

/// A bound a person sets on one parameter. `low == high` fixes the parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Bound {
    Range { low: f64, high: f64 },
    Choices { choices: Vec<String> },
}

/// The person's bounds by parameter name; anything not named keeps its default.
pub type Bounds = BTreeMap<String, Bound>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("parameter `{param}`: {message}")]
pub struct BoundsError {
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> BoundsError {
    BoundsError {
        param: param.to_string(),
        message: message.into(),
    }
}

/// The searched space plus the parameters a person pinned to one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpace {
    pub space: Space,
    pub fixed: Params,
}

/// Parameter names, defined once.
pub mod param {
    pub const LEARNING_RATE: &str = "learning_rate";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const EPOCHS: &str = "epochs";
    pub const IMAGE_SIZE: &str = "image_size";
    pub const OPTIMIZER: &str = "optimizer";
    pub const CONV_BLOCKS: &str = "conv_blocks";
    pub const CHANNELS: &str = "channels";
    pub const DROPOUT: &str = "dropout";
}

/// Default bounds, in the order the dashboard shows them.
pub fn default_param_defs() -> Vec<ParamDef> {
    use param::*;
    let float = |name: &str, low, high, log| ParamDef {
        name: name.into(),
        distribution: Distribution::Float { low, high, log },
        condition: None,
    };
    let int = |name: &str, low, high, log| ParamDef {
        name: name.into(),
        distribution: Distribution::Int {
            low,
            high,
            log,
            step: None,
        },
        condition: None,
    };
    vec![
        float(LEARNING_RATE, 1e-4, 1e-2, true),
        int(BATCH_SIZE, 8, 128, true),
        int(EPOCHS, 1, 10, false),
        int(IMAGE_SIZE, 28, 128, false),
        ParamDef {
            name: OPTIMIZER.into(),
            distribution: Distribution::Categorical {
                choices: OptimizerKind::ALL.iter().map(|s| s.to_string()).collect(),
            },
            condition: None,
        },
        int(CONV_BLOCKS, 1, 4, false),
        int(CHANNELS, 8, 64, true),
        float(DROPOUT, 0.0, 0.5, false),
    ]
}

/// The seed's configuration, as parameter values.
pub fn seed_params() -> Params {
    use param::*;
    let mut p = Params::new();
    p.insert(LEARNING_RATE.into(), ParamValue::Float(1e-3));
    p.insert(BATCH_SIZE.into(), ParamValue::Int(10));
    p.insert(EPOCHS.into(), ParamValue::Int(5));
    p.insert(IMAGE_SIZE.into(), ParamValue::Int(128));
    p.insert(OPTIMIZER.into(), ParamValue::Cat("adam".into()));
    p.insert(CONV_BLOCKS.into(), ParamValue::Int(1));
    p.insert(CHANNELS.into(), ParamValue::Int(16));
    p.insert(DROPOUT.into(), ParamValue::Float(0.0));
    p
}

impl ImageSpace {
    /// Apply a person's bounds over the defaults. Unknown names, NaN/inf, lower > upper, log bounds
    /// that are not positive, and choices outside the known set are refused, naming the parameter.
    pub fn from_bounds(bounds: &Bounds) -> Result<ImageSpace, BoundsError> {
        let mut defs = default_param_defs();
        let mut fixed = Params::new();
        for (name, bound) in bounds {
            let Some(pos) = defs.iter().position(|d| &d.name == name) else {
                let known: Vec<_> = default_param_defs().into_iter().map(|d| d.name).collect();
                return Err(err(
                    name,
                    format!("unknown parameter; known parameters: {}", known.join(", ")),
                ));
            };
            let def = &mut defs[pos];
            match (&mut def.distribution, bound) {
                (Distribution::Float { low, high, log }, Bound::Range { low: l, high: h }) => {
                    check_range(name, *l, *h, *log)?;
                    if l == h {
                        fixed.insert(name.clone(), ParamValue::Float(*l));
                    }
                    (*low, *high) = (*l, *h);
                }
                (Distribution::Int { low, high, log, .. }, Bound::Range { low: l, high: h }) => {
                    check_range(name, *l, *h, *log)?;
                    if l.fract() != 0.0 || h.fract() != 0.0 {
                        return Err(err(name, format!("bounds must be whole numbers, got {l}..{h}")));
                    }
                    let (l, h) = (*l as i64, *h as i64);
                    let (min, max) = int_limits(name);
                    if l < min || h > max {
                        return Err(err(
                            name,
                            format!("bounds must lie within {min}..{max}, got {l}..{h}"),
                        ));
                    }
                    if l == h {
                        fixed.insert(name.clone(), ParamValue::Int(l));
                    }
                    (*low, *high) = (l, h);
                }
                (Distribution::Categorical { choices }, Bound::Choices { choices: c }) => {
                    if c.is_empty() {
                        return Err(err(name, "choices must not be empty"));
                    }
                    let mut seen = Vec::new();
                    for x in c {
                        if !choices.contains(x) {
                            return Err(err(
                                name,
                                format!("unknown choice `{x}`; known: {}", choices.join(", ")),
                            ));
                        }
                        if seen.contains(x) {
                            return Err(err(name, format!("choice `{x}` is listed twice")));
                        }
                        seen.push(x.clone());
                    }
                    if c.len() == 1 {
                        fixed.insert(name.clone(), ParamValue::Cat(c[0].clone()));
                    }
                    *choices = c.clone();
                }
                (Distribution::Categorical { .. }, Bound::Range { .. }) => {
                    return Err(err(name, "is categorical: give {\"choices\": [...]}"));
                }
                (_, Bound::Choices { .. }) => {
                    return Err(err(name, "is numeric: give {\"low\": ..., \"high\": ...}"));
                }
            }
        }
        defs.retain(|d| !fixed.contains_key(&d.name));
        let space = Space::new(defs).map_err(|e| err(e.param().unwrap_or("space"), e.to_string()))?;
        let s = ImageSpace { space, fixed };
        s.check_consistency()?;
        Ok(s)
    }

    /// Combinations that can never train are refused up front rather than as failed trials.
    fn check_consistency(&self) -> Result<(), BoundsError> {
        let (_, max_blocks) = self.int_range(param::CONV_BLOCKS);
        let (min_size, _) = self.int_range(param::IMAGE_SIZE);
        if min_size >> max_blocks == 0 {
            return Err(err(
                param::CONV_BLOCKS,
                format!("{max_blocks} pooling blocks need images of at least {} px; raise image_size's lower bound or lower conv_blocks", 1 << max_blocks),
            ));
        }
        Ok(())
    }

    fn int_range(&self, name: &str) -> (i64, i64) {
        if let Some(v) = self.fixed.get(name).and_then(|v| v.as_i64()) {
            return (v, v);
        }
        match self.space.get(name).map(|d| &d.distribution) {
            Some(Distribution::Int { low, high, .. }) => (*low, *high),
            _ => unreachable!("{name} is an int parameter of the image space"),
        }
    }

    /// The seed's configuration moved inside the person's bounds: every value the bounds allow is kept;
    /// a value outside is clamped to the nearest bound (a disallowed optimizer becomes the first choice).
    pub fn baseline(&self) -> Params {
        let mut out = Params::new();
        for (name, seed) in seed_params() {
            if self.fixed.contains_key(&name) {
                continue;
            }
            let Some(def) = self.space.get(&name) else {
                continue;
            };
            let v = match (&def.distribution, seed) {
                (Distribution::Float { low, high, .. }, ParamValue::Float(x)) => {
                    ParamValue::Float(x.clamp(*low, *high))
                }
                (Distribution::Int { low, high, .. }, ParamValue::Int(x)) => {
                    ParamValue::Int(x.clamp(*low, *high))
                }
                (Distribution::Categorical { choices }, ParamValue::Cat(x)) => {
                    ParamValue::Cat(if choices.contains(&x) {
                        x
                    } else {
                        choices[0].clone()
                    })
                }
                (_, v) => v,
            };
            out.insert(name, v);
        }
        out
    }

    /// Sampled params + fixed params, complete.
    pub fn full_params(&self, sampled: &Params) -> Params {
        let mut p = sampled.clone();
        p.extend(self.fixed.clone());
        p
    }
}

fn check_range(name: &str, low: f64, high: f64, log: bool) -> Result<(), BoundsError> {
    if !low.is_finite() || !high.is_finite() {
        return Err(err(name, "bounds must be finite numbers"));
    }
    if low > high {
        return Err(err(
            name,
            format!("lower bound {low} is above upper bound {high}"),
        ));
    }
    if log && low <= 0.0 {
        return Err(err(
            name,
            format!("is searched on a log scale, so the lower bound must be > 0, got {low}"),
        ));
    }
    if name == param::DROPOUT && !(0.0..0.95).contains(&high) {
        return Err(err(name, "must lie within [0, 0.95)"));
    }
    if name == param::DROPOUT && low < 0.0 {
        return Err(err(name, "must lie within [0, 0.95)"));
    }
    Ok(())
}

fn int_limits(name: &str) -> (i64, i64) {
    match name {
        param::BATCH_SIZE => (1, 4096),
        param::EPOCHS => (1, 1000),
        param::IMAGE_SIZE => (8, 512),
        param::CONV_BLOCKS => (1, 6),
        param::CHANNELS => (1, 512),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Turn complete parameters into what the worker trains. The channel width doubles per block (capped
/// at 256) so one `channels` parameter shapes the whole network.
pub fn train_config(params: &Params, num_classes: u32, seed: u64) -> Result<TrainConfig, BoundsError> {
    use param::*;
    let f = |n: &str| {
        params
            .get(n)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| err(n, "missing"))
    };
    let i = |n: &str| {
        params
            .get(n)
            .and_then(|v| v.as_i64())
            .ok_or_else(|| err(n, "missing"))
    };
    let optimizer_name = params
        .get(OPTIMIZER)
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(OPTIMIZER, "missing"))?;
    let optimizer =
        OptimizerKind::parse(optimizer_name).ok_or_else(|| err(OPTIMIZER, "unknown optimizer"))?;
    let image_size = i(IMAGE_SIZE)? as u32;
    let channels = i(CHANNELS)? as u32;
    let blocks = (0..i(CONV_BLOCKS)? as u32)
        .map(|b| ConvBlock {
            out_channels: (channels << b).min(256),
            kernel: 3,
        })
        .collect();
    let model = ModelSpec::Cnn(CnnSpec {
        in_channels: 3,
        num_classes,
        image_size,
        blocks,
        batch_norm: false,
        dropout: f(DROPOUT)?,
        head: Head::Flatten,
    });
    let cfg = TrainConfig {
        model,
        image_size,
        batch_size: i(BATCH_SIZE)? as u32,
        epochs: i(EPOCHS)? as u32,
        optimizer,
        learning_rate: f(LEARNING_RATE)?,
        momentum: if optimizer == OptimizerKind::Sgd { 0.9 } else { 0.0 },
        weight_decay: if optimizer == OptimizerKind::Adamw {
            1e-2
        } else {
            0.0
        },
        normalize: Normalize { mean: 0.5, std: 0.5 },
        val_fraction: 0.15,
        seed,
        // Not searched (yet): the seed's behaviour. The trainer supports them for configs sent directly.
        nesterov: false,
        lr_schedule: LrSchedule::Constant,
        label_smoothing: 0.0,
        crop_padding: 0,
        horizontal_flip: false,
        bf16_autocast: false,
    };
    cfg.validate().map_err(|m| err("config", m))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_params_make_the_seed_model() {
        let cfg = train_config(&seed_params(), 2, 0).unwrap();
        assert_eq!(cfg.model, ModelSpec::seed_cnn(2, 128));
        assert_eq!(
            (cfg.batch_size, cfg.epochs, cfg.optimizer),
            (10, 5, OptimizerKind::Adam)
        );
        assert_eq!(cfg.learning_rate, 1e-3);
    }

    #[test]
    fn bounds_override_and_refuse() {
        let mut b = Bounds::new();
        b.insert("epochs".into(), Bound::Range { low: 1.0, high: 3.0 });
        b.insert(
            "image_size".into(),
            Bound::Range {
                low: 28.0,
                high: 32.0,
            },
        );
        let s = ImageSpace::from_bounds(&b).unwrap();
        let base = s.baseline();
        assert_eq!(base["epochs"], ParamValue::Int(3));
        assert_eq!(base["image_size"], ParamValue::Int(32));
        assert_eq!(base["batch_size"], ParamValue::Int(10));
        s.space.validate_params(&base).unwrap();

        let mut bad = Bounds::new();
        bad.insert("learning_rate".into(), Bound::Range { low: 0.1, high: 0.01 });
        assert_eq!(ImageSpace::from_bounds(&bad).unwrap_err().param, "learning_rate");
        let mut bad = Bounds::new();
        bad.insert("wings".into(), Bound::Range { low: 1.0, high: 2.0 });
        assert_eq!(ImageSpace::from_bounds(&bad).unwrap_err().param, "wings");
        let mut bad = Bounds::new();
        bad.insert(
            "dropout".into(),
            Bound::Range {
                low: f64::NAN,
                high: 0.2,
            },
        );
        assert_eq!(ImageSpace::from_bounds(&bad).unwrap_err().param, "dropout");
        let mut bad = Bounds::new();
        bad.insert(
            "optimizer".into(),
            Bound::Choices {
                choices: vec!["rmsprop".into()],
            },
        );
        assert!(ImageSpace::from_bounds(&bad)
            .unwrap_err()
            .message
            .contains("rmsprop"));
    }

    #[test]
    fn equal_bounds_fix_a_parameter() {
        let mut b = Bounds::new();
        b.insert("epochs".into(), Bound::Range { low: 2.0, high: 2.0 });
        let s = ImageSpace::from_bounds(&b).unwrap();
        assert!(s.space.get("epochs").is_none());
        let full = s.full_params(&s.baseline());
        assert_eq!(full["epochs"], ParamValue::Int(2));
        train_config(&full, 3, 1).unwrap();
    }

    #[test]
    fn too_many_blocks_for_tiny_images_is_refused() {
        let mut b = Bounds::new();
        b.insert("image_size".into(), Bound::Range { low: 8.0, high: 16.0 });
        b.insert("conv_blocks".into(), Bound::Range { low: 1.0, high: 4.0 });
        assert_eq!(ImageSpace::from_bounds(&b).unwrap_err().param, "conv_blocks");
    }
}
