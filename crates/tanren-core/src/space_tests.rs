//! Tests of the image search space: the default search unchanged, old specs reading, conditional
//! parameters, every parameter reaching the TrainConfig, and sampled configs always validating.

use super::*;
use crate::params::catalogue;

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

fn b(pairs: &[(&str, Bound)]) -> Bounds {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}
fn range(low: f64, high: f64) -> Bound {
    Bound::Range { low, high }
}
fn choices(xs: &[&str]) -> Bound {
    Bound::Choices {
        choices: xs.iter().map(|s| s.to_string()).collect(),
    }
}

/// The default search, exactly as the seed project defined it before the wider space existed.
const TODAYS_DEFAULT_SPACE: &str = r#"[
  {"name":"learning_rate","type":"float","low":0.0001,"high":0.01,"log":true},
  {"name":"batch_size","type":"int","low":8,"high":128,"log":true,"step":null},
  {"name":"epochs","type":"int","low":1,"high":10,"log":false,"step":null},
  {"name":"image_size","type":"int","low":28,"high":128,"log":false,"step":null},
  {"name":"optimizer","type":"categorical","choices":["adam","adamw","sgd"]},
  {"name":"conv_blocks","type":"int","low":1,"high":4,"log":false,"step":null},
  {"name":"channels","type":"int","low":8,"high":64,"log":true,"step":null},
  {"name":"dropout","type":"float","low":0.0,"high":0.5,"log":false}
]"#;

#[test]
fn the_default_search_is_unchanged() {
    let s = ImageSpace::from_bounds(&Bounds::new()).unwrap();
    let today: Space = serde_json::from_str(TODAYS_DEFAULT_SPACE).unwrap();
    assert_eq!(s.space, today);
    assert!(s.fixed.is_empty(), "{:?}", s.fixed);
    let seed: Params = serde_json::from_str(
        r#"{"learning_rate":0.001,"batch_size":10,"epochs":5,"image_size":128,"optimizer":"adam","conv_blocks":1,"channels":16,"dropout":0.0}"#,
    )
    .unwrap();
    assert_eq!(seed_params(), seed);
    assert_eq!(s.baseline(), seed);
    assert_eq!(s.full_params(&seed), seed, "nothing new is recorded");
    // The seed's TrainConfig, field by field as before, and the optimizer-specific defaults.
    let cfg = train_config(&seed, 2, 0).unwrap();
    let mut expected = serde_json::json!({
        "model": {"family":"cnn","in_channels":3,"num_classes":2,"image_size":128,
                  "blocks":[{"out_channels":16,"kernel":3}],"batch_norm":false,"dropout":0.0,"head":"flatten"},
        "image_size":128,"batch_size":10,"epochs":5,"optimizer":"adam","learning_rate":0.001,
        "momentum":0.0,"weight_decay":0.0,"normalize":{"mean":0.5,"std":0.5},"val_fraction":0.15,"seed":0,
        "nesterov":false,"lr_schedule":"constant","label_smoothing":0.0,"crop_padding":0,
        "horizontal_flip":false,"bf16_autocast":false
    });
    assert_eq!(serde_json::to_value(&cfg).unwrap(), expected);
    for (opt, momentum, wd) in [("sgd", 0.9, 0.0), ("adamw", 0.0, 1e-2)] {
        let mut p = seed.clone();
        p.insert("optimizer".into(), ParamValue::Cat(opt.into()));
        let cfg = train_config(&p, 2, 0).unwrap();
        expected["optimizer"] = opt.into();
        expected["momentum"] = momentum.into();
        expected["weight_decay"] = wd.into();
        assert_eq!(serde_json::to_value(&cfg).unwrap(), expected, "{opt}");
    }
}

const FORM_DEFAULTS: &str = r#"{"learning_rate":{"low":0.0001,"high":0.01},"batch_size":{"low":8,"high":128},"epochs":{"low":1,"high":10},"image_size":{"low":28,"high":128},"optimizer":{"choices":["adam","adamw","sgd"]},"architecture":{"choices":["cnn"]},"conv_blocks":{"low":1,"high":4},"channels":{"low":8,"high":64},"dropout":{"low":0,"high":0.5},"batch_norm":{"choices":["false"]},"head":{"choices":["flatten"]},"resnet_depth":{"low":8,"high":20},"resnet_width":{"low":16,"high":32},"lr_schedule":{"choices":["constant"]},"momentum":{"low":0.9,"high":0.9},"nesterov":{"choices":["false"]},"weight_decay":{"low":0,"high":0},"adamw_weight_decay":{"low":0.01,"high":0.01},"label_smoothing":{"low":0,"high":0},"crop_padding":{"low":0,"high":0},"horizontal_flip":{"choices":["false"]}}"#;

/// The form sends every parameter's default bounds; that must be the same as sending none.
#[test]
fn default_bounds_given_explicitly_are_the_default_search() {
    let all: Bounds = catalogue()
        .iter()
        .map(|p| (p.name.to_string(), crate::params::bound_of(&p.default)))
        .collect();
    assert_eq!(all.len(), 21);
    assert_eq!(
        ImageSpace::from_bounds(&all).unwrap(),
        ImageSpace::from_bounds(&Bounds::new()).unwrap()
    );
    // What the dashboard's form posts untouched (captured from web/src/pages/new-study.js).
    let form: Bounds = serde_json::from_str(FORM_DEFAULTS).unwrap();
    assert_eq!(form, all);
}

/// A spec stored before the wider space (`studies.spec`'s `image_space`) reads and trains the same.
#[test]
fn stored_spaces_from_before_still_read() {
    let old = r#"{"space":[
      {"name":"learning_rate","type":"float","low":0.001,"high":0.005,"log":true},
      {"name":"batch_size","type":"int","low":8,"high":32,"log":true},
      {"name":"image_size","type":"int","low":16,"high":24,"log":false},
      {"name":"optimizer","type":"categorical","choices":["adam","sgd"]},
      {"name":"conv_blocks","type":"int","low":1,"high":2,"log":false},
      {"name":"channels","type":"int","low":8,"high":16,"log":true},
      {"name":"dropout","type":"float","low":0.0,"high":0.5,"log":false}
    ],"fixed":{"epochs":3}}"#;
    let s: ImageSpace = serde_json::from_str(old).unwrap();
    let base = s.baseline();
    s.space.validate_params(&base).unwrap();
    let full = s.full_params(&base);
    assert_eq!(full.len(), 8);
    let cfg = train_config(&full, 3, 1).unwrap();
    assert_eq!(
        cfg.model,
        ModelSpec::Cnn(CnnSpec {
            in_channels: 3,
            num_classes: 3,
            image_size: 24,
            blocks: vec![ConvBlock {
                out_channels: 16,
                kernel: 3
            }],
            batch_norm: false,
            dropout: 0.0,
            head: Head::Flatten,
        })
    );
    assert_eq!((cfg.epochs, cfg.batch_size, cfg.learning_rate), (3, 10, 0.001));
    let mut sgd = full.clone();
    sgd.insert("optimizer".into(), ParamValue::Cat("sgd".into()));
    let cfg = train_config(&sgd, 3, 1).unwrap();
    assert_eq!(
        (cfg.momentum, cfg.nesterov, cfg.lr_schedule),
        (0.9, false, LrSchedule::Constant)
    );
}

#[test]
fn conditional_parameters_follow_their_parents() {
    let s = ImageSpace::from_bounds(&b(&[
        ("architecture", choices(&["cnn", "resnet"])),
        ("optimizer", choices(&["adam", "sgd"])),
        ("momentum", range(0.8, 0.95)),
    ]))
    .unwrap();
    let cond = |n: &str| {
        s.space
            .get(n)
            .unwrap()
            .condition
            .clone()
            .map(|c| (c.parent, c.values))
    };
    assert_eq!(
        cond("conv_blocks"),
        Some(("architecture".into(), vec!["cnn".into()]))
    );
    assert_eq!(
        cond("resnet_depth"),
        Some(("architecture".into(), vec!["resnet".into()]))
    );
    assert_eq!(cond("momentum"), Some(("optimizer".into(), vec!["sgd".into()])));
    assert!(
        s.space.get("weight_decay").is_none(),
        "pinned at the seed's 0: not searched"
    );
    assert!(
        s.space.get("adamw_weight_decay").is_none(),
        "adamw is not a choice"
    );

    // A resnet configuration needs no CNN parameters, and may not carry them.
    let mut p = s.baseline();
    assert_eq!(p["architecture"], ParamValue::Cat("cnn".into()));
    assert!(p.contains_key("conv_blocks") && !p.contains_key("resnet_depth"));
    s.space.validate_params(&p).unwrap();
    p.insert("architecture".into(), ParamValue::Cat("resnet".into()));
    let err = s.space.validate_params(&p).unwrap_err();
    assert_eq!(err.param(), Some("conv_blocks"));
    for n in ["conv_blocks", "channels", "dropout"] {
        p.remove(n);
    }
    p.insert("resnet_depth".into(), ParamValue::Int(14));
    p.insert("resnet_width".into(), ParamValue::Int(16));
    s.space.validate_params(&p).unwrap();
    let cfg = train_config(&s.full_params(&p), 4, 0).unwrap();
    assert!(matches!(
        cfg.model,
        ModelSpec::Resnet(ResnetSpec {
            depth: 14,
            width: 16,
            ..
        })
    ));

    // Only resnet: its parameters are plain, the CNN's are gone, the baseline is a ResNet-20.
    let s = ImageSpace::from_bounds(&b(&[("architecture", choices(&["resnet"]))])).unwrap();
    assert!(s.space.get("conv_blocks").is_none() && s.space.get("channels").is_none());
    assert_eq!(s.space.get("resnet_depth").unwrap().condition, None);
    assert_eq!(s.fixed["architecture"], ParamValue::Cat("resnet".into()));
    let base = s.full_params(&s.baseline());
    let cfg = train_config(&base, 2, 0).unwrap();
    assert!(matches!(
        cfg.model,
        ModelSpec::Resnet(ResnetSpec {
            depth: 20,
            width: 16,
            ..
        })
    ));

    // A pinned CNN parameter is left out of resnet trials.
    let s = ImageSpace::from_bounds(&b(&[
        ("architecture", choices(&["cnn", "resnet"])),
        ("conv_blocks", range(2.0, 2.0)),
    ]))
    .unwrap();
    let mut resnet = Params::new();
    resnet.insert("architecture".into(), ParamValue::Cat("resnet".into()));
    assert!(!s.full_params(&resnet).contains_key("conv_blocks"));
    let mut cnn = Params::new();
    cnn.insert("architecture".into(), ParamValue::Cat("cnn".into()));
    assert_eq!(s.full_params(&cnn)["conv_blocks"], ParamValue::Int(2));

    // Widening something the other bounds switch off is refused, naming it; its default is fine.
    let e = ImageSpace::from_bounds(&b(&[
        ("optimizer", choices(&["adam"])),
        ("momentum", range(0.5, 0.9)),
    ]))
    .unwrap_err();
    assert_eq!(e.param, "momentum");
    assert!(e.message.contains("optimizer is sgd"), "{e}");
    ImageSpace::from_bounds(&b(&[
        ("optimizer", choices(&["adam"])),
        ("momentum", range(0.9, 0.9)),
    ]))
    .unwrap();
    let e = ImageSpace::from_bounds(&b(&[("resnet_depth", range(8.0, 14.0))])).unwrap_err();
    assert_eq!(e.param, "resnet_depth");
}

#[test]
fn every_new_parameter_reaches_the_train_config() {
    let mut p = seed_params();
    let mut set = |k: &str, v: ParamValue| {
        p.insert(k.into(), v);
    };
    set("batch_norm", ParamValue::Cat("true".into()));
    set("head", ParamValue::Cat("global_avg_pool".into()));
    set("lr_schedule", ParamValue::Cat("one_cycle".into()));
    set("weight_decay", ParamValue::Float(3e-4));
    set("label_smoothing", ParamValue::Float(0.1));
    set("crop_padding", ParamValue::Int(4));
    set("horizontal_flip", ParamValue::Cat("true".into()));
    let cfg = train_config(&p, 2, 0).unwrap();
    let ModelSpec::Cnn(cnn) = &cfg.model else { panic!() };
    assert!(cnn.batch_norm);
    assert_eq!(cnn.head, Head::GlobalAvgPool);
    assert_eq!(cfg.lr_schedule, LrSchedule::OneCycle);
    assert_eq!(cfg.weight_decay, 3e-4);
    assert_eq!(cfg.label_smoothing, 0.1);
    assert_eq!(cfg.crop_padding, 4);
    assert!(cfg.horizontal_flip);

    p.insert("optimizer".into(), ParamValue::Cat("sgd".into()));
    p.insert("momentum".into(), ParamValue::Float(0.85));
    p.insert("nesterov".into(), ParamValue::Cat("true".into()));
    p.insert("lr_schedule".into(), ParamValue::Cat("cosine".into()));
    let cfg = train_config(&p, 2, 0).unwrap();
    assert_eq!((cfg.momentum, cfg.nesterov, cfg.weight_decay), (0.85, true, 3e-4));
    assert_eq!(cfg.lr_schedule, LrSchedule::Cosine);
    p.insert("momentum".into(), ParamValue::Float(0.0));
    assert!(
        !train_config(&p, 2, 0).unwrap().nesterov,
        "nesterov without momentum is plain sgd"
    );

    p.insert("optimizer".into(), ParamValue::Cat("adamw".into()));
    p.insert("adamw_weight_decay".into(), ParamValue::Float(0.05));
    let cfg = train_config(&p, 2, 0).unwrap();
    assert_eq!((cfg.momentum, cfg.nesterov, cfg.weight_decay), (0.0, false, 0.05));

    for k in ["conv_blocks", "channels", "dropout", "batch_norm", "head"] {
        p.remove(k);
    }
    p.insert("architecture".into(), ParamValue::Cat("resnet".into()));
    p.insert("resnet_depth".into(), ParamValue::Int(8));
    p.insert("resnet_width".into(), ParamValue::Int(24));
    let cfg = train_config(&p, 5, 0).unwrap();
    assert_eq!(
        cfg.model,
        ModelSpec::Resnet(ResnetSpec {
            in_channels: 3,
            num_classes: 5,
            image_size: 128,
            depth: 8,
            width: 24
        })
    );
    p.remove("resnet_width");
    assert_eq!(train_config(&p, 5, 0).unwrap_err().param, "resnet_width");
}

#[test]
fn impossible_combinations_are_refused_naming_the_parameter() {
    let e = ImageSpace::from_bounds(&b(&[("crop_padding", range(0.0, 16.0))])).unwrap_err();
    assert_eq!(e.param, "crop_padding");
    assert!(e.message.contains("32 px"), "{e}");
    ImageSpace::from_bounds(&b(&[("crop_padding", range(0.0, 14.0))])).unwrap();
    let e = ImageSpace::from_bounds(&b(&[
        ("architecture", choices(&["resnet"])),
        ("resnet_depth", range(8.0, 15.0)),
    ]))
    .unwrap_err();
    assert_eq!(e.param, "resnet_depth");
    assert!(e.message.contains("8, 14, 20"), "{e}");
    let e = ImageSpace::from_bounds(&b(&[("label_smoothing", range(0.0, 0.9))])).unwrap_err();
    assert_eq!(e.param, "label_smoothing");
    let e = ImageSpace::from_bounds(&b(&[("horizontal_flip", choices(&["maybe"]))])).unwrap_err();
    assert_eq!(e.param, "horizontal_flip");
    // ResNets only: tiny images and many CNN blocks no longer conflict, the blocks are off.
    ImageSpace::from_bounds(&b(&[
        ("architecture", choices(&["resnet"])),
        ("image_size", range(8.0, 16.0)),
    ]))
    .unwrap();
    // Weight decay goes log-scaled once it cannot be 0.
    let s = ImageSpace::from_bounds(&b(&[("weight_decay", range(1e-5, 1e-2))])).unwrap();
    assert!(matches!(
        s.space.get("weight_decay").unwrap().distribution,
        Distribution::Float { log: true, .. }
    ));
}

/// Property: whatever the sampler draws from the widest consistent space trains (validates), and
/// the conditional parameters both switch on and off.
#[test]
fn samples_from_the_widest_space_always_make_valid_configs() {
    use tanren_search::{Direction, PrunerConfig, SamplerConfig, Study, StudyConfig, TellOutcome};
    let mut widest = crate::params::allowed_bounds();
    // The only cap: six pooling blocks and 32 px crops need 64 px images.
    widest.insert("image_size".into(), range(64.0, 512.0));
    let mut small = crate::params::allowed_bounds();
    small.insert("image_size".into(), range(8.0, 64.0));
    small.insert("conv_blocks".into(), range(1.0, 3.0));
    small.insert("crop_padding".into(), range(0.0, 4.0));
    let mut wider = crate::params::wider_bounds(true);
    wider.insert("image_size".into(), range(8.0, 32.0));
    wider.insert("conv_blocks".into(), range(1.0, 3.0));
    for (bounds, sampler) in [
        (widest, SamplerConfig::Random),
        (small, SamplerConfig::Random),
        (wider, SamplerConfig::default()),
    ] {
        let s = ImageSpace::from_bounds(&bounds).unwrap();
        let mut study = Study::new(StudyConfig {
            space: s.space.clone(),
            directions: vec![Direction::Maximize],
            sampler,
            pruner: PrunerConfig::None,
            seed: 11,
        })
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let (n, sampled) = study.ask().unwrap();
            let full = s.full_params(&sampled);
            let cfg = train_config(&full, 10, n).unwrap_or_else(|e| panic!("{full:?}: {e}"));
            seen.insert(match cfg.model {
                ModelSpec::Cnn(_) => "cnn",
                ModelSpec::Resnet(_) => "resnet",
            });
            seen.insert(if cfg.optimizer == OptimizerKind::Sgd {
                "sgd"
            } else {
                "other"
            });
            let score = cfg.learning_rate.ln() + f64::from(cfg.crop_padding);
            study.tell(n, TellOutcome::Complete(vec![score])).unwrap();
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }
}

#[test]
fn the_listing_has_defaults_and_allowed_ranges() {
    let docs = serde_json::to_value(crate::params::param_docs()).unwrap();
    let arch = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "architecture")
        .unwrap();
    assert_eq!(arch["choices"], serde_json::json!(["cnn"]));
    assert_eq!(arch["allowed"]["choices"], serde_json::json!(["cnn", "resnet"]));
    let m = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "momentum")
        .unwrap();
    assert_eq!((m["low"].as_f64(), m["high"].as_f64()), (Some(0.9), Some(0.9)));
    assert_eq!(m["condition"]["parent"], "optimizer");
    assert!(m["help"].as_str().unwrap().contains("sgd"));
    // Every default lies inside its allowed range: the form's prefill is always accepted.
    for p in catalogue() {
        let bound = crate::params::bound_of(&p.default);
        let mut one = Bounds::new();
        one.insert(p.name.into(), bound);
        distribution(&p, &one[p.name]).unwrap_or_else(|e| panic!("{e}"));
    }
}
