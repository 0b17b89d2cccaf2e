//! The image-classification search space: how a person's bounds override the catalogue's defaults
//! (`params.rs`), which parameters that leaves active, searched, pinned or out, the seed's baseline
//! inside the bounds, and how sampled parameters become a `TrainConfig`. REST, the scheduler and the
//! dashboard all use these definitions.

use crate::config::{ConvBlock, Head, LrSchedule, ModelSpec, Normalize, OptimizerKind, TrainConfig};
use crate::params::{catalogue, param, ParamInfo};
use crate::{CnnSpec, ResnetSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tanren_search::{Condition, Distribution, ParamDef, ParamValue, Params, Space};

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

/// The searched space plus the parameters a person pinned to one value. Parameters in neither are
/// inactive or at the seed's behaviour (`ParamInfo::implicit`); the shape is the one stored in
/// `studies.spec` since the first release, so older studies read unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpace {
    pub space: Space,
    pub fixed: Params,
}

/// The seed's configuration, as parameter values (the parameters it has always had; the later ones
/// are at their implicit seed values when left out).
pub fn seed_params() -> Params {
    use param::*;
    catalogue()
        .into_iter()
        .filter(|p| {
            [
                LEARNING_RATE,
                BATCH_SIZE,
                EPOCHS,
                IMAGE_SIZE,
                OPTIMIZER,
                CONV_BLOCKS,
                CHANNELS,
                DROPOUT,
            ]
            .contains(&p.name)
        })
        .map(|p| (p.name.to_string(), p.seed))
        .collect()
}

/// What bounds made of one parameter while resolving the space.
enum State {
    /// Never active for these bounds.
    Off,
    /// Always this value when active (pinned, or the implicit seed value).
    Value(ParamValue),
    /// In the searched space; the categorical choices when it is a parent.
    Searched(Option<Vec<String>>),
}

/// Whether a parameter is active given its parent's state: never, always, or under a condition on a
/// searched parent (restricted to the parent's choices, as the search engine requires).
enum Activity {
    Never,
    Always,
    When(Condition),
}

fn activity(cond: &Option<Condition>, states: &BTreeMap<&str, State>) -> Activity {
    let Some(cond) = cond else {
        return Activity::Always;
    };
    match states.get(cond.parent.as_str()) {
        None | Some(State::Off) => Activity::Never,
        Some(State::Value(v)) if cond.holds(v) => Activity::Always,
        Some(State::Value(_)) => Activity::Never,
        Some(State::Searched(choices)) => {
            let choices = choices.as_deref().unwrap_or_default();
            let values: Vec<String> = choices
                .iter()
                .filter(|c| cond.values.contains(c))
                .cloned()
                .collect();
            if values.is_empty() {
                Activity::Never
            } else if values.len() == choices.len() {
                Activity::Always
            } else {
                Activity::When(Condition {
                    values,
                    ..cond.clone()
                })
            }
        }
    }
}

fn same_bound(a: &Bound, b: &Bound) -> bool {
    match (a, b) {
        (Bound::Choices { choices: x }, Bound::Choices { choices: y }) => {
            x.len() == y.len() && x.iter().all(|c| y.contains(c))
        }
        _ => a == b,
    }
}

impl ImageSpace {
    /// Apply a person's bounds over the defaults. Unknown names, NaN/inf, lower > upper, log bounds
    /// that are not positive, bounds outside the allowed range, choices outside the known set, and
    /// widening a parameter that the other bounds leave inactive are refused, naming the parameter.
    pub fn from_bounds(bounds: &Bounds) -> Result<ImageSpace, BoundsError> {
        let cat = catalogue();
        if let Some(name) = bounds.keys().find(|n| !cat.iter().any(|p| p.name == n.as_str())) {
            let known: Vec<_> = cat.iter().map(|p| p.name).collect();
            return Err(err(
                name,
                format!("unknown parameter; known parameters: {}", known.join(", ")),
            ));
        }
        let mut states: BTreeMap<&str, State> = BTreeMap::new();
        let mut defs = Vec::new();
        let mut fixed = Params::new();
        for info in &cat {
            let name = info.name;
            let given = bounds.get(name);
            let dist = match given {
                Some(b) => distribution(info, b)?,
                None => info.default.clone(),
            };
            let act = activity(&info.condition, &states);
            if let Activity::Never = act {
                if given.is_some_and(|b| !same_bound(b, &crate::params::bound_of(&info.default))) {
                    let cond = info
                        .condition
                        .as_ref()
                        .expect("only conditional params are never active");
                    return Err(err(
                        name,
                        format!(
                            "only used when {} is {}, which the other bounds rule out; leave it out or widen {}",
                            cond.parent,
                            cond.values.join(" or "),
                            cond.parent
                        ),
                    ));
                }
                states.insert(name, State::Off);
                continue;
            }
            if let Some(v) = single_value(&dist) {
                if !(info.implicit && v == info.seed) {
                    fixed.insert(name.to_string(), v.clone());
                }
                states.insert(name, State::Value(v));
                continue;
            }
            let choices = match &dist {
                Distribution::Categorical { choices } => Some(choices.clone()),
                _ => None,
            };
            defs.push(ParamDef {
                name: name.into(),
                distribution: dist,
                condition: match act {
                    Activity::When(c) => Some(c),
                    _ => None,
                },
            });
            states.insert(name, State::Searched(choices));
        }
        let space = Space::new(defs).map_err(|e| err(e.param().unwrap_or("space"), e.to_string()))?;
        let s = ImageSpace { space, fixed };
        s.check_consistency()?;
        Ok(s)
    }

    /// Combinations that can never train are refused up front rather than as failed trials.
    fn check_consistency(&self) -> Result<(), BoundsError> {
        let (min_size, _) = self
            .int_range(param::IMAGE_SIZE)
            .expect("image_size is always active");
        if let Some((_, max_blocks)) = self.int_range(param::CONV_BLOCKS) {
            if min_size >> max_blocks == 0 {
                return Err(err(
                    param::CONV_BLOCKS,
                    format!("{max_blocks} pooling blocks need images of at least {} px; raise image_size's lower bound or lower conv_blocks", 1 << max_blocks),
                ));
            }
        }
        // The trainer pads then crops back; more than half the image would crop mostly padding.
        if let Some((_, max_pad)) = self.int_range(param::CROP_PADDING) {
            if max_pad > min_size / 2 {
                return Err(err(
                    param::CROP_PADDING,
                    format!("padding up to {max_pad} px needs images of at least {} px (at most half the image); raise image_size's lower bound or lower crop_padding", 2 * max_pad),
                ));
            }
        }
        Ok(())
    }

    /// The range an int parameter can take, or `None` when it is never active.
    fn int_range(&self, name: &str) -> Option<(i64, i64)> {
        if let Some(v) = self.fixed.get(name).and_then(|v| v.as_i64()) {
            return Some((v, v));
        }
        match self.space.get(name).map(|d| &d.distribution) {
            Some(Distribution::Int { low, high, .. }) => Some((*low, *high)),
            _ => {
                let info = crate::params::param_info(name)?;
                // Left out: the seed's value when implicit and active.
                let active = match &info.condition {
                    None => true,
                    Some(c) => self.value_or_implicit(&c.parent).is_some_and(|v| c.holds(&v)),
                };
                (info.implicit && active)
                    .then(|| info.seed.as_i64())
                    .flatten()
                    .map(|v| (v, v))
            }
        }
    }

    fn value_or_implicit(&self, name: &str) -> Option<ParamValue> {
        if let Some(v) = self.fixed.get(name) {
            return Some(v.clone());
        }
        let info = crate::params::param_info(name)?;
        (info.implicit && self.space.get(name).is_none()).then_some(info.seed)
    }

    /// The seed's configuration moved inside the person's bounds: every value the bounds allow is kept;
    /// a value outside is clamped to the nearest bound (a disallowed choice becomes the first choice).
    /// Only parameters active for the resulting configuration are included.
    pub fn baseline(&self) -> Params {
        let mut out = Params::new();
        for def in self.space.params() {
            if !self.space.is_active(def, &out) {
                continue;
            }
            let Some(seed) = crate::params::param_info(&def.name).map(|i| i.seed) else {
                continue;
            };
            let v = match (&def.distribution, seed) {
                (Distribution::Float { low, high, .. }, ParamValue::Float(x)) => {
                    ParamValue::Float(x.clamp(*low, *high))
                }
                (Distribution::Int { low, high, step, .. }, ParamValue::Int(x)) => {
                    let step = step.unwrap_or(1);
                    let x = x.clamp(*low, *high);
                    ParamValue::Int(low + (x - low) / step * step)
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
            out.insert(def.name.clone(), v);
        }
        out
    }

    /// Sampled params + fixed params, complete: a fixed parameter whose condition does not hold for
    /// this configuration (a pinned `conv_blocks` in a resnet trial) is left out.
    pub fn full_params(&self, sampled: &Params) -> Params {
        let mut p = sampled.clone();
        p.extend(self.fixed.clone());
        for info in catalogue() {
            let Some(cond) = &info.condition else { continue };
            if !p.contains_key(info.name) {
                continue;
            }
            let parent = p.get(&cond.parent).cloned().or_else(|| {
                crate::params::param_info(&cond.parent)
                    .filter(|i| i.implicit)
                    .map(|i| i.seed)
            });
            if !parent.is_some_and(|v| cond.holds(&v)) {
                p.remove(info.name);
            }
        }
        p
    }
}

fn single_value(d: &Distribution) -> Option<ParamValue> {
    match d {
        Distribution::Float { low, high, .. } if low == high => Some(ParamValue::Float(*low)),
        Distribution::Int { low, high, .. } if low == high => Some(ParamValue::Int(*low)),
        Distribution::Categorical { choices } if choices.len() == 1 => {
            Some(ParamValue::Cat(choices[0].clone()))
        }
        _ => None,
    }
}

/// A person's bound for one parameter, checked against the catalogue's allowed range.
fn distribution(info: &ParamInfo, bound: &Bound) -> Result<Distribution, BoundsError> {
    let name = info.name;
    match (&info.allowed, bound) {
        (
            Distribution::Float {
                low: min,
                high: max,
                log,
            },
            Bound::Range { low: l, high: h },
        ) => {
            let log = *log || (info.log_when_positive && *l > 0.0);
            check_range(name, *l, *h, log)?;
            if *l < *min || *h > *max {
                return Err(err(
                    name,
                    format!("bounds must lie within {min}..{max}, got {l}..{h}"),
                ));
            }
            Ok(Distribution::Float {
                low: *l,
                high: *h,
                log,
            })
        }
        (
            Distribution::Int {
                low: min,
                high: max,
                log,
                step,
            },
            Bound::Range { low: l, high: h },
        ) => {
            check_range(name, *l, *h, *log)?;
            if l.fract() != 0.0 || h.fract() != 0.0 {
                return Err(err(name, format!("bounds must be whole numbers, got {l}..{h}")));
            }
            let (l, h) = (*l as i64, *h as i64);
            if l < *min || h > *max {
                return Err(err(
                    name,
                    format!("bounds must lie within {min}..{max}, got {l}..{h}"),
                ));
            }
            if let Some(step) = step {
                if (l - min) % step != 0 || (h - min) % step != 0 {
                    return Err(err(
                        name,
                        format!(
                            "bounds must be on the grid {min}, {}, {}, ..., got {l}..{h}",
                            min + step,
                            min + 2 * step
                        ),
                    ));
                }
            }
            Ok(Distribution::Int {
                low: l,
                high: h,
                log: *log,
                step: *step,
            })
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
            Ok(Distribution::Categorical { choices: c.clone() })
        }
        (Distribution::Categorical { .. }, Bound::Range { .. }) => {
            Err(err(name, "is categorical: give {\"choices\": [...]}"))
        }
        (_, Bound::Choices { .. }) => Err(err(name, "is numeric: give {\"low\": ..., \"high\": ...}")),
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
    Ok(())
}

/// Turn complete parameters into what the worker trains. Inactive parameters are absent and ignored;
/// an absent implicit parameter means the seed's behaviour. The CNN's channel width doubles per block
/// (capped at 256) so one `channels` parameter shapes the whole network.
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
    // Implicit parameters: absent means the seed's value.
    let implicit = |n: &str| {
        params
            .get(n)
            .cloned()
            .or_else(|| {
                crate::params::param_info(n)
                    .filter(|p| p.implicit)
                    .map(|p| p.seed)
            })
            .ok_or_else(|| err(n, "missing"))
    };
    let flag = |n: &str| match implicit(n)?.as_str() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(err(n, "must be \"true\" or \"false\"")),
    };
    let num = |n: &str| implicit(n)?.as_f64().ok_or_else(|| err(n, "must be a number"));
    let choice = |n: &str| -> Result<String, BoundsError> {
        implicit(n)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| err(n, "must be a choice"))
    };
    let optimizer_name = params
        .get(OPTIMIZER)
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(OPTIMIZER, "missing"))?;
    let optimizer =
        OptimizerKind::parse(optimizer_name).ok_or_else(|| err(OPTIMIZER, "unknown optimizer"))?;
    let image_size = i(IMAGE_SIZE)? as u32;
    let model = match choice(ARCHITECTURE)?.as_str() {
        "cnn" => {
            let channels = i(CHANNELS)? as u32;
            let blocks = (0..i(CONV_BLOCKS)? as u32)
                .map(|b| ConvBlock {
                    out_channels: (channels << b).min(256),
                    kernel: 3,
                })
                .collect();
            ModelSpec::Cnn(CnnSpec {
                in_channels: 3,
                num_classes,
                image_size,
                blocks,
                batch_norm: flag(BATCH_NORM)?,
                dropout: f(DROPOUT)?,
                head: Head::parse(&choice(HEAD)?).ok_or_else(|| err(HEAD, "unknown head"))?,
            })
        }
        "resnet" => ModelSpec::Resnet(ResnetSpec {
            in_channels: 3,
            num_classes,
            image_size,
            depth: i(RESNET_DEPTH)? as u32,
            width: i(RESNET_WIDTH)? as u32,
        }),
        other => return Err(err(ARCHITECTURE, format!("unknown architecture `{other}`"))),
    };
    let sgd = optimizer == OptimizerKind::Sgd;
    let momentum = if sgd { num(MOMENTUM)? } else { 0.0 };
    let cfg = TrainConfig {
        model,
        image_size,
        batch_size: i(BATCH_SIZE)? as u32,
        epochs: i(EPOCHS)? as u32,
        optimizer,
        learning_rate: f(LEARNING_RATE)?,
        momentum,
        weight_decay: if optimizer == OptimizerKind::Adamw {
            num(ADAMW_WEIGHT_DECAY)?
        } else {
            num(WEIGHT_DECAY)?
        },
        normalize: Normalize { mean: 0.5, std: 0.5 },
        val_fraction: 0.15,
        seed,
        // Nesterov's look-ahead with no momentum is plain SGD, so momentum 0 just turns it off.
        nesterov: sgd && flag(NESTEROV)? && momentum > 0.0,
        lr_schedule: LrSchedule::parse(&choice(LR_SCHEDULE)?)
            .ok_or_else(|| err(LR_SCHEDULE, "unknown schedule"))?,
        label_smoothing: num(LABEL_SMOOTHING)?,
        crop_padding: implicit(CROP_PADDING)?
            .as_i64()
            .filter(|p| *p >= 0)
            .ok_or_else(|| err(CROP_PADDING, "must be a whole number >= 0"))? as u32,
        horizontal_flip: flag(HORIZONTAL_FLIP)?,
        bf16_autocast: false,
    };
    cfg.validate().map_err(|m| err("config", m))?;
    Ok(cfg)
}

#[cfg(test)]
#[path = "space_tests.rs"]
mod tests;
