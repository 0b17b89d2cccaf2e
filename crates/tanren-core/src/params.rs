//! The catalogue of the image search space: every parameter a study can search, once. Each entry has
//! the widest range a person may ask for (`allowed`), the bounds a study gets when the person says
//! nothing (`default`), when it is active (`condition`), the seed's value, and whether leaving it out
//! means that value (`implicit`).
//!
//! The defaults keep the search the seed project had: the parameters added later (ResNet, schedules,
//! augmentation, regularisation) are pinned to the seed's behaviour and so are not searched, and not
//! recorded, until someone widens them — a person in the form or CLI, or the advisor through
//! [`wider_bounds`].

use crate::config::{LrSchedule, OptimizerKind};
use crate::space::{Bound, Bounds};
use serde::Serialize;
use tanren_search::{Condition, Distribution, ParamDef, ParamValue};

/// Parameter names, defined once.
pub mod param {
    pub const LEARNING_RATE: &str = "learning_rate";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const EPOCHS: &str = "epochs";
    pub const IMAGE_SIZE: &str = "image_size";
    pub const OPTIMIZER: &str = "optimizer";
    pub const ARCHITECTURE: &str = "architecture";
    pub const CONV_BLOCKS: &str = "conv_blocks";
    pub const CHANNELS: &str = "channels";
    pub const DROPOUT: &str = "dropout";
    pub const BATCH_NORM: &str = "batch_norm";
    pub const HEAD: &str = "head";
    pub const RESNET_DEPTH: &str = "resnet_depth";
    pub const RESNET_WIDTH: &str = "resnet_width";
    pub const LR_SCHEDULE: &str = "lr_schedule";
    pub const MOMENTUM: &str = "momentum";
    pub const NESTEROV: &str = "nesterov";
    pub const WEIGHT_DECAY: &str = "weight_decay";
    pub const ADAMW_WEIGHT_DECAY: &str = "adamw_weight_decay";
    pub const LABEL_SMOOTHING: &str = "label_smoothing";
    pub const CROP_PADDING: &str = "crop_padding";
    pub const HORIZONTAL_FLIP: &str = "horizontal_flip";
}

pub const ARCHITECTURES: [&str; 2] = ["cnn", "resnet"];
pub const HEADS: [&str; 2] = ["flatten", "global_avg_pool"];
pub const BOOLS: [&str; 2] = ["false", "true"];

/// One parameter of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub name: &'static str,
    /// What a person calls it, lower case unless a name ("learning rate", "ResNet depth").
    pub label: &'static str,
    /// The bounds a study gets when the person gives none for this parameter.
    pub default: Distribution,
    /// The widest bounds accepted.
    pub allowed: Distribution,
    /// Active only when this holds (parent defined earlier in the catalogue).
    pub condition: Option<Condition>,
    /// The seed's value: trial 0 starts here (moved inside the bounds).
    pub seed: ParamValue,
    /// Leaving the parameter out means `seed`: pinning it there is the same as not naming it, so it is
    /// neither searched nor recorded (that is how the default search stays the seed project's).
    pub implicit: bool,
    /// One sentence for the form.
    pub help: &'static str,
    /// Searched on a log scale exactly when the lower bound is above 0 (weight decay: 0 must stay
    /// reachable for the default, but 1e-5..1e-2 wants a log scale).
    pub log_when_positive: bool,
}

impl ParamInfo {
    pub fn default_def(&self) -> ParamDef {
        ParamDef {
            name: self.name.into(),
            distribution: self.default.clone(),
            condition: self.condition.clone(),
        }
    }
}

/// What `GET /api/v1/search-space` lists for one parameter: the default bounds in the search engine's
/// `ParamDef` shape (what older clients read), plus the widest range and a sentence for the form.
#[derive(Debug, Clone, Serialize)]
pub struct ParamDoc {
    #[serde(flatten)]
    pub default: ParamDef,
    pub label: &'static str,
    pub allowed: Distribution,
    pub help: &'static str,
}

fn cats(xs: &[&str]) -> Distribution {
    Distribution::Categorical {
        choices: xs.iter().map(|s| s.to_string()).collect(),
    }
}
fn float(low: f64, high: f64, log: bool) -> Distribution {
    Distribution::Float { low, high, log }
}
fn int(low: i64, high: i64, log: bool) -> Distribution {
    Distribution::Int {
        low,
        high,
        log,
        step: None,
    }
}
fn when(parent: &str, values: &[&str]) -> Option<Condition> {
    Some(Condition {
        parent: parent.into(),
        values: values.iter().map(|s| s.to_string()).collect(),
        min: None,
        max: None,
    })
}
fn cat(s: &str) -> ParamValue {
    ParamValue::Cat(s.into())
}

/// Every parameter, parents before children, in the order the dashboard shows them.
pub fn catalogue() -> Vec<ParamInfo> {
    use param::*;
    let p = |name, label, default, allowed, condition, seed, implicit, help| ParamInfo {
        name,
        label,
        default,
        allowed,
        condition,
        seed,
        implicit,
        help,
        log_when_positive: false,
    };
    let cnn = || when(ARCHITECTURE, &["cnn"]);
    let resnet = || when(ARCHITECTURE, &["resnet"]);
    let depth = |low, high| Distribution::Int {
        low,
        high,
        log: false,
        step: Some(6),
    };
    let schedules: Vec<&str> = LrSchedule::ALL.to_vec();
    vec![
        p(
            LEARNING_RATE,
            "learning rate",
            float(1e-4, 1e-2, true),
            float(1e-7, 10.0, true),
            None,
            ParamValue::Float(1e-3),
            false,
            "Step size of the optimizer; the most important parameter, searched on a log scale.",
        ),
        p(
            BATCH_SIZE,
            "batch size",
            int(8, 128, true),
            int(1, 4096, true),
            None,
            ParamValue::Int(10),
            false,
            "Images per training step.",
        ),
        p(
            EPOCHS,
            "epochs",
            int(1, 10, false),
            int(1, 1000, false),
            None,
            ParamValue::Int(5),
            false,
            "Passes over the training images.",
        ),
        p(
            IMAGE_SIZE,
            "image size",
            int(28, 128, false),
            int(8, 512, false),
            None,
            ParamValue::Int(128),
            false,
            "Images are resized to this many pixels square.",
        ),
        p(
            OPTIMIZER,
            "optimizer",
            cats(&OptimizerKind::ALL),
            cats(&OptimizerKind::ALL),
            None,
            cat("adam"),
            false,
            "adam, adamw (decoupled weight decay) or sgd (with momentum).",
        ),
        p(
            ARCHITECTURE,
            "architecture",
            cats(&["cnn"]),
            cats(&ARCHITECTURES),
            None,
            cat("cnn"),
            true,
            "cnn: conv blocks with max-pooling (the seed's family); resnet: CIFAR-style ResNet-6n+2.",
        ),
        p(
            CONV_BLOCKS,
            "conv blocks",
            int(1, 4, false),
            int(1, 6, false),
            cnn(),
            ParamValue::Int(1),
            false,
            "cnn only: conv + pool blocks; each halves the image and doubles the channels.",
        ),
        p(
            CHANNELS,
            "channels",
            int(8, 64, true),
            int(1, 512, true),
            cnn(),
            ParamValue::Int(16),
            false,
            "cnn only: channels of the first block (doubling per block, at most 256).",
        ),
        p(
            DROPOUT,
            "dropout",
            float(0.0, 0.5, false),
            float(0.0, 0.9, false),
            cnn(),
            ParamValue::Float(0.0),
            false,
            "cnn only: dropout before the classifier.",
        ),
        p(
            BATCH_NORM,
            "batch norm",
            cats(&["false"]),
            cats(&BOOLS),
            cnn(),
            cat("false"),
            true,
            "cnn only: batch normalisation after each convolution.",
        ),
        p(
            HEAD,
            "classifier head",
            cats(&["flatten"]),
            cats(&HEADS),
            cnn(),
            cat("flatten"),
            true,
            "cnn only: flatten the last feature map into the classifier, or global average pooling.",
        ),
        p(
            RESNET_DEPTH,
            "ResNet depth",
            depth(8, 20),
            depth(8, 56),
            resnet(),
            ParamValue::Int(20),
            false,
            "resnet only: depth 6n+2 (8, 14, 20, ... 56).",
        ),
        p(
            RESNET_WIDTH,
            "ResNet width",
            int(16, 32, true),
            int(4, 256, true),
            resnet(),
            ParamValue::Int(16),
            false,
            "resnet only: channels of the first of three stages (doubling per stage).",
        ),
        p(
            LR_SCHEDULE,
            "LR schedule",
            cats(&["constant"]),
            cats(&schedules),
            None,
            cat("constant"),
            true,
            "How the learning rate moves: constant, cosine decay to 0, or one-cycle warm-up then decay.",
        ),
        p(
            MOMENTUM,
            "momentum",
            float(0.9, 0.9, false),
            float(0.0, 0.99, false),
            when(OPTIMIZER, &["sgd"]),
            ParamValue::Float(0.9),
            true,
            "sgd only: momentum.",
        ),
        p(
            NESTEROV,
            "Nesterov momentum",
            cats(&["false"]),
            cats(&BOOLS),
            when(OPTIMIZER, &["sgd"]),
            cat("false"),
            true,
            "sgd only: Nesterov momentum (no effect at momentum 0).",
        ),
        ParamInfo {
            log_when_positive: true,
            ..p(
                WEIGHT_DECAY,
                "weight decay",
                float(0.0, 0.0, false),
                float(0.0, 0.1, false),
                when(OPTIMIZER, &["adam", "sgd"]),
                ParamValue::Float(0.0),
                true,
                "adam and sgd: L2 penalty on the weights (log scale when the lower bound is above 0).",
            )
        },
        ParamInfo {
            log_when_positive: true,
            ..p(
                ADAMW_WEIGHT_DECAY,
                "AdamW weight decay",
                float(0.01, 0.01, false),
                float(0.0, 1.0, false),
                when(OPTIMIZER, &["adamw"]),
                ParamValue::Float(0.01),
                true,
                "adamw only: decoupled weight decay (log scale when the lower bound is above 0).",
            )
        },
        p(
            LABEL_SMOOTHING,
            "label smoothing",
            float(0.0, 0.0, false),
            float(0.0, 0.5, false),
            None,
            ParamValue::Float(0.0),
            true,
            "Softens the targets: 0.1 moves 10% of each label's weight to the other classes.",
        ),
        p(
            CROP_PADDING,
            "crop padding",
            int(0, 0, false),
            int(0, 32, false),
            None,
            ParamValue::Int(0),
            true,
            "Augmentation: random crop after padding this many pixels (at most half the smallest image).",
        ),
        p(
            HORIZONTAL_FLIP,
            "horizontal flips",
            cats(&["false"]),
            cats(&BOOLS),
            None,
            cat("false"),
            true,
            "Augmentation: mirror images at random; only for classes that survive mirroring (not text).",
        ),
    ]
}

pub fn param_info(name: &str) -> Option<ParamInfo> {
    catalogue().into_iter().find(|p| p.name == name)
}

/// The listing of `GET /api/v1/search-space`.
pub fn param_docs() -> Vec<ParamDoc> {
    catalogue()
        .into_iter()
        .map(|p| ParamDoc {
            default: p.default_def(),
            label: p.label,
            allowed: p.allowed.clone(),
            help: p.help,
        })
        .collect()
}

/// Default bounds of every parameter, with conditions, in the order the dashboard shows them. The
/// search a study gets from them is `ImageSpace::from_bounds(&Bounds::new())`, where the pinned and
/// inactive ones drop out.
pub fn default_param_defs() -> Vec<ParamDef> {
    catalogue().iter().map(ParamInfo::default_def).collect()
}

/// A distribution as the bound a person would write for it.
pub fn bound_of(d: &Distribution) -> Bound {
    match d {
        Distribution::Float { low, high, .. } => Bound::Range {
            low: *low,
            high: *high,
        },
        Distribution::Int { low, high, .. } => Bound::Range {
            low: *low as f64,
            high: *high as f64,
        },
        Distribution::Categorical { choices } => Bound::Choices {
            choices: choices.clone(),
        },
    }
}

/// The widest bounds accepted for every parameter. Not every combination of them is consistent (six
/// pooling blocks need 64 px images; see `ImageSpace::from_bounds`).
pub fn allowed_bounds() -> Bounds {
    catalogue()
        .iter()
        .map(|p| (p.name.to_string(), bound_of(&p.allowed)))
        .collect()
}

/// Bounds that switch on the parameters the default search leaves at the seed's behaviour, at ranges
/// that usually help small image datasets: both architectures, LR schedules, label smoothing, weight
/// decay, SGD momentum and Nesterov, batch norm and the pooling head, random crops. Flips only when
/// `mirror_safe` (the classes survive mirroring: not digits or text). Meant to be merged over the
/// advisor's bounds for the rest (`extend`), which then override nothing here. Crops stay within the
/// default smallest image (28 px); a caller narrowing `image_size` below 8 px must narrow crops too.
pub fn wider_bounds(mirror_safe: bool) -> Bounds {
    use param::*;
    let range = |low: f64, high: f64| Bound::Range { low, high };
    let choices = |xs: &[&str]| Bound::Choices {
        choices: xs.iter().map(|s| s.to_string()).collect(),
    };
    let mut b = Bounds::new();
    b.insert(ARCHITECTURE.into(), choices(&ARCHITECTURES));
    b.insert(BATCH_NORM.into(), choices(&BOOLS));
    b.insert(HEAD.into(), choices(&HEADS));
    b.insert(RESNET_DEPTH.into(), range(8.0, 20.0));
    b.insert(RESNET_WIDTH.into(), range(16.0, 32.0));
    b.insert(LR_SCHEDULE.into(), choices(&LrSchedule::ALL));
    b.insert(MOMENTUM.into(), range(0.8, 0.95));
    b.insert(NESTEROV.into(), choices(&BOOLS));
    b.insert(WEIGHT_DECAY.into(), range(1e-5, 1e-3));
    b.insert(ADAMW_WEIGHT_DECAY.into(), range(1e-3, 1e-1));
    b.insert(LABEL_SMOOTHING.into(), range(0.0, 0.15));
    b.insert(CROP_PADDING.into(), range(0.0, 4.0));
    if mirror_safe {
        b.insert(HORIZONTAL_FLIP.into(), choices(&BOOLS));
    }
    b
}
