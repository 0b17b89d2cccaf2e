//! Sentences and narrowed bounds from hand-made importances and trials (exact expectations), and
//! from real PED-ANOVA runs over the full catalogue (the narrowed bounds must always validate).

use super::*;
use crate::params::{param, wider_bounds};
use tanren_search::importance::{ped_anova, ParamImportance, PedAnova};
use tanren_search::{Params, PrunerConfig, SamplerConfig, Study, StudyConfig, TellOutcome};

fn obs(value: f64, pairs: &[(&str, ParamValue)]) -> Observation {
    Observation {
        params: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        value,
    }
}
fn f(x: f64) -> ParamValue {
    ParamValue::Float(x)
}
fn i(x: i64) -> ParamValue {
    ParamValue::Int(x)
}
fn c(x: &str) -> ParamValue {
    ParamValue::Cat(x.into())
}
fn range(low: f64, high: f64) -> Bound {
    Bound::Range { low, high }
}
fn choices(xs: &[&str]) -> Bound {
    Bound::Choices {
        choices: xs.iter().map(|s| s.to_string()).collect(),
    }
}
fn report(imps: &[(&str, f64)], n: usize) -> ImportanceReport {
    ImportanceReport {
        trials_used: n,
        top_trials: 3,
        importances: imps
            .iter()
            .map(|(p, x)| ParamImportance {
                param: p.to_string(),
                importance: *x,
            })
            .collect(),
    }
}

/// The default search (lr, batch, epochs, image size, optimizer, conv blocks, channels, dropout)
/// and ten trials: the best three used lr 2e-3..6e-3, 3 and 4 conv blocks, adam.
fn default_study() -> (ImageSpace, Vec<Observation>) {
    let space = ImageSpace::from_bounds(&Bounds::new()).unwrap();
    let t = |v: f64, lr: f64, blocks: i64, opt: &str, epochs: i64| {
        obs(
            v,
            &[
                (param::LEARNING_RATE, f(lr)),
                (param::BATCH_SIZE, i(32)),
                (param::EPOCHS, i(epochs)),
                (param::IMAGE_SIZE, i(64)),
                (param::OPTIMIZER, c(opt)),
                (param::CONV_BLOCKS, i(blocks)),
                (param::CHANNELS, i(16)),
                (param::DROPOUT, f(0.1)),
            ],
        )
    };
    let trials = vec![
        t(0.91, 2e-3, 3, "adam", 8),
        t(0.93, 6e-3, 4, "adam", 9),
        t(0.92, 3.1e-3, 3, "adam", 8),
        t(0.50, 1e-4, 2, "sgd", 8),
        t(0.40, 9e-3, 1, "adamw", 2),
        t(0.55, 2e-4, 3, "sgd", 5),
        t(0.60, 8e-3, 4, "adam", 9),
        t(0.45, 1.5e-4, 2, "adamw", 3),
        t(0.52, 9.5e-3, 1, "sgd", 9),
        t(0.30, 1e-4, 2, "sgd", 1),
    ];
    (space, trials)
}

#[test]
fn sentences_name_what_mattered_with_the_best_trials_ranges() {
    let (space, trials) = default_study();
    let rep = report(
        &[
            (param::LEARNING_RATE, 0.62),
            (param::EPOCHS, 0.2),
            (param::OPTIMIZER, 0.1),
            (param::CONV_BLOCKS, 0.04),
            (param::DROPOUT, 0.03),
            (param::CHANNELS, 0.01),
        ],
        10,
    );
    let insight = explain(&space, &rep, &trials, Direction::Maximize);
    assert_eq!(insight.best_trials, 3);
    assert_eq!(
        insight.sentences,
        vec![
            "Learning rate decided most of the result (62%); the best trials used 2e-3 to 6e-3.",
            "Epochs mattered too (20%); the best trials used 8 to 9.",
            "Optimizer mattered a little (10%).",
            "Conv blocks, dropout and channels barely mattered.",
        ]
    );
    let lr = &insight.importances[0];
    assert_eq!(lr.label, "learning rate");
    assert_eq!(lr.best_range, Some(range(2e-3, 6e-3)));
    assert_eq!(insight.importances[2].best_range_text.as_deref(), Some("adam"));
}

#[test]
fn sentences_for_a_flat_top_a_single_value_a_branch_not_taken_and_mixed_choices() {
    let imp = |param: &str, importance: f64, best_range: Option<Bound>, text: Option<&str>| ParamInsight {
        param: param.into(),
        label: label(param),
        importance,
        best_range,
        best_range_text: text.map(str::to_string),
        notable: importance >= NOTABLE,
        narrowed: false,
    };
    let s = sentences(&[
        imp(
            param::OPTIMIZER,
            0.3,
            Some(choices(&["adam", "sgd"])),
            Some("adam (2) or sgd (1)"),
        ),
        imp(param::IMAGE_SIZE, 0.3, Some(range(64.0, 64.0)), Some("64")),
        imp(param::RESNET_DEPTH, 0.2, None, None),
        imp(param::ARCHITECTURE, 0.2, Some(choices(&["cnn"])), Some("cnn")),
    ]);
    assert_eq!(
        s,
        vec![
            "Optimizer mattered most (30%); the best trials used adam (2) or sgd (1).",
            "Image size mattered too (30%); the best trials all used 64.",
            "ResNet depth mattered too (20%); none of the best trials used it.",
            "Architecture mattered too (20%); the best trials all used cnn.",
        ]
    );
}

#[test]
fn numbers_are_written_as_a_person_would() {
    let log = Distribution::Float {
        low: 1e-4,
        high: 1e-2,
        log: true,
    };
    let lin = Distribution::Float {
        low: 0.0,
        high: 0.5,
        log: false,
    };
    let int = Distribution::Int {
        low: 1,
        high: 10,
        log: false,
        step: None,
    };
    let cases = [
        (&log, 0.002, "2e-3"),
        (&log, 0.0025, "2.5e-3"),
        (&log, 0.00061234, "6.1e-4"),
        (&log, 0.05, "0.05"),
        (&lin, 0.25, "0.25"),
        (&lin, 0.3333, "0.33"),
        (&lin, 0.0, "0"),
        (&lin, 0.5, "0.5"),
        (&int, 7.0, "7"),
    ];
    for (d, x, want) in cases {
        assert_eq!(format_value(d, x), want, "{x}");
    }
}

#[test]
fn narrowing_keeps_what_mattered_near_the_best_trials() {
    let (space, trials) = default_study();
    let rep = report(
        &[
            (param::LEARNING_RATE, 0.5),
            (param::OPTIMIZER, 0.2),
            (param::CONV_BLOCKS, 0.16),
            (param::DROPOUT, 0.1),
            (param::EPOCHS, 0.04),
        ],
        10,
    );
    let insight = explain(&space, &rep, &trials, Direction::Maximize);
    let b = &insight.narrowed;
    let Some(Bound::Range { low, high }) = b.get(param::LEARNING_RATE) else {
        panic!("{b:?}")
    };
    // 2e-3..6e-3 widened by a quarter of its log width: about 1.5e-3..7.9e-3, two digits.
    assert!((1e-4..2e-3).contains(low) && *low > 1e-3, "{low}");
    assert!(*high > 6e-3 && *high <= 1e-2, "{high}");
    assert_eq!(format!("{low}"), "0.0015");
    assert_eq!(b.get(param::OPTIMIZER), Some(&choices(&["adam"])));
    assert_eq!(b.get(param::CONV_BLOCKS), Some(&range(3.0, 4.0)));
    let flags: Vec<(&str, bool, bool)> = insight
        .importances
        .iter()
        .map(|p| (p.param.as_str(), p.notable, p.narrowed))
        .collect();
    assert_eq!(
        flags,
        [
            (param::LEARNING_RATE, true, true),
            (param::OPTIMIZER, true, true),
            (param::CONV_BLOCKS, true, true),
            (param::DROPOUT, false, false),
            (param::EPOCHS, false, false),
        ]
    );
    // Below NOTABLE: the study's own bounds.
    assert_eq!(b.get(param::DROPOUT), Some(&range(0.0, 0.5)));
    assert_eq!(b.get(param::EPOCHS), Some(&range(1.0, 10.0)));
    ImageSpace::from_bounds(b).unwrap();
}

#[test]
fn narrowing_an_optimizer_drops_the_momentum_it_switches_off_and_steps_stay_on_the_grid() {
    let mut bounds = wider_bounds(true);
    bounds.insert(param::OPTIMIZER.into(), choices(&["adam", "sgd"]));
    bounds.insert(param::ARCHITECTURE.into(), choices(&["resnet"]));
    bounds.insert(param::RESNET_DEPTH.into(), range(8.0, 56.0));
    bounds.remove(param::BATCH_NORM);
    bounds.remove(param::HEAD);
    bounds.remove(param::ADAMW_WEIGHT_DECAY);
    let space = ImageSpace::from_bounds(&bounds).unwrap();
    assert!(space.space.get(param::MOMENTUM).is_some());
    let t = |v: f64, depth: i64| {
        obs(
            v,
            &[(param::OPTIMIZER, c("adam")), (param::RESNET_DEPTH, i(depth))],
        )
    };
    let trials = vec![
        t(0.9, 20),
        t(0.8, 26),
        t(0.85, 20),
        t(0.1, 8),
        t(0.2, 56),
        t(0.3, 50),
    ];
    let rep = report(&[(param::OPTIMIZER, 0.6), (param::RESNET_DEPTH, 0.4)], 6);
    let b = explain(&space, &rep, &trials, Direction::Maximize).narrowed;
    assert_eq!(b.get(param::OPTIMIZER), Some(&choices(&["adam"])));
    assert!(
        !b.contains_key(param::MOMENTUM) && !b.contains_key(param::NESTEROV),
        "{b:?}"
    );
    let Some(Bound::Range { low, high }) = b.get(param::RESNET_DEPTH) else {
        panic!("{b:?}")
    };
    assert!(
        *low <= 20.0 && *high >= 26.0 && (*low, *high) != (8.0, 56.0),
        "{low}..{high}"
    );
    assert_eq!((*low as i64 - 8) % 6, 0);
    assert_eq!((*high as i64 - 8) % 6, 0);
    let again = ImageSpace::from_bounds(&b).unwrap();
    assert!(again.space.get(param::MOMENTUM).is_none());
}

#[test]
fn current_bounds_rebuild_the_study() {
    let mut bounds = Bounds::new();
    bounds.insert(param::EPOCHS.into(), range(3.0, 3.0));
    bounds.insert(param::OPTIMIZER.into(), choices(&["sgd", "adam"]));
    let space = ImageSpace::from_bounds(&bounds).unwrap();
    let again = ImageSpace::from_bounds(&current_bounds(&space)).unwrap();
    assert_eq!(again, space);
}

/// Real studies over every parameter of the catalogue (random search, an objective that rewards
/// some branches), real PED-ANOVA: whatever it says, the narrowed bounds must validate and stay
/// inside the old ones.
#[test]
fn narrowed_bounds_always_validate() {
    let mut bounds = wider_bounds(true);
    bounds.insert(param::EPOCHS.into(), range(1.0, 4.0));
    let space = ImageSpace::from_bounds(&bounds).unwrap();
    for seed in 0..12u64 {
        let mut study = Study::new(StudyConfig {
            space: space.space.clone(),
            directions: vec![Direction::Maximize],
            sampler: SamplerConfig::Random,
            pruner: PrunerConfig::None,
            seed,
        })
        .unwrap();
        let mut observations = Vec::new();
        for _ in 0..30 {
            let (n, p) = study.ask().unwrap();
            let full: Params = space.full_params(&p);
            let lr = full[param::LEARNING_RATE].as_f64().unwrap();
            let mut v = -(lr.log10() + 2.5).abs();
            if full.get(param::OPTIMIZER).and_then(ParamValue::as_str)
                == Some(["adam", "sgd", "adamw"][seed as usize % 3])
            {
                v += 1.0;
            }
            if let Some(d) = full.get(param::RESNET_DEPTH) {
                v += d.as_f64().unwrap() / 100.0;
            }
            study.tell(n, TellOutcome::Complete(vec![v])).unwrap();
            observations.push(Observation {
                params: full,
                value: v,
            });
        }
        let rep = ped_anova(
            &space.space,
            &observations,
            Direction::Maximize,
            &PedAnova::default(),
        )
        .unwrap();
        let insight = explain(&space, &rep, &observations, Direction::Maximize);
        let narrowed = ImageSpace::from_bounds(&insight.narrowed)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", insight.narrowed));
        assert_ne!(
            insight.narrowed,
            current_bounds(&space),
            "seed {seed}: nothing narrowed"
        );
        for def in narrowed.space.params() {
            let old = &space.space.get(&def.name).unwrap().distribution;
            match (old, &def.distribution) {
                (Distribution::Float { low, high, .. }, Distribution::Float { low: l, high: h, .. }) => {
                    assert!(l >= low && h <= high, "seed {seed}: {}", def.name)
                }
                (Distribution::Int { low, high, .. }, Distribution::Int { low: l, high: h, .. }) => {
                    assert!(l >= low && h <= high, "seed {seed}: {}", def.name)
                }
                (Distribution::Categorical { choices }, Distribution::Categorical { choices: cs }) => {
                    assert!(
                        cs.iter().all(|x| choices.contains(x)),
                        "seed {seed}: {}",
                        def.name
                    )
                }
                _ => panic!("seed {seed}: {} changed type", def.name),
            }
        }
        assert!(!insight.sentences.is_empty());
    }
}
