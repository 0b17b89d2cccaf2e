//! The ask/tell contract the control plane codes against: serde shapes, enqueue, errors, restore.

mod common;
use common::*;
use tanren_search::*;

#[test]
fn config_json_shape_and_defaults() {
    let json = r#"{
        "space": [
            {"name": "lr", "type": "float", "low": 0.0001, "high": 0.1, "log": true},
            {"name": "optimizer", "type": "categorical", "choices": ["sgd", "adam"]},
            {"name": "momentum", "type": "float", "low": 0.0, "high": 0.99,
             "condition": {"parent": "optimizer", "values": ["sgd"]}},
            {"name": "n_blocks", "type": "int", "low": 1, "high": 4},
            {"name": "ch_3", "type": "int", "low": 8, "high": 64, "step": 8,
             "condition": {"parent": "n_blocks", "min": 4}}
        ],
        "directions": ["maximize"]
    }"#;
    let config: StudyConfig = serde_json::from_str(json).unwrap();
    assert_eq!(config.sampler, SamplerConfig::tpe());
    // Optuna's exact TPE stays reachable: tanren's local refinement off.
    let optuna: SamplerConfig =
        serde_json::from_str(r#"{"type": "tpe", "n_local_candidates": 0, "local_every": 0}"#).unwrap();
    assert_eq!(optuna, SamplerConfig::tpe_optuna());
    assert_eq!(config.pruner, PrunerConfig::None);
    assert_eq!(config.seed, 0);
    let back: StudyConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    let pruner: PrunerConfig = serde_json::from_str(r#"{"type": "asha"}"#).unwrap();
    assert_eq!(
        pruner,
        PrunerConfig::Asha {
            min_resource: 1,
            reduction_factor: 4,
            min_early_stopping_rate: 0,
            bootstrap_count: 0
        }
    );
    let values: Params = serde_json::from_str(r#"{"a": 3, "b": 0.5, "c": "sgd"}"#).unwrap();
    assert_eq!(values["a"], ParamValue::Int(3));
    assert_eq!(values["b"].as_f64(), Some(0.5));
    assert_eq!(values["c"].as_str(), Some("sgd"));
}

#[test]
fn invalid_space_errors_name_the_parameter() {
    let err = Space::new(vec![float("lr", 0.1, 0.01, false)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter `lr`: lower bound 0.1 is not below upper bound 0.01"
    );
    assert_eq!(err.param(), Some("lr"));
    let cases = vec![
        (vec![float("lr", 0.0, 1.0, true)], "lr"),
        (vec![float("x", f64::NAN, 1.0, false)], "x"),
        (vec![cat("opt", &[])], "opt"),
        (
            vec![float("a", 0.0, 1.0, false), float("a", 0.0, 1.0, false)],
            "a",
        ),
        (vec![int("n", 1, 10, false, Some(4))], "n"),
        (vec![when(float("m", 0.0, 1.0, false), "opt", &["sgd"])], "m"),
        (
            vec![
                cat("opt", &["a"]),
                when(float("m", 0.0, 1.0, false), "opt", &["sgd"]),
            ],
            "m",
        ),
    ];
    for (defs, name) in cases {
        let err = Space::new(defs).unwrap_err();
        assert_eq!(err.param(), Some(name), "{err}");
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
    let from_json: Result<Space, _> = serde_json::from_str(r#"[{"name":"k","type":"int","low":5,"high":1}]"#);
    assert!(from_json.unwrap_err().to_string().contains("`k`"));
}

#[test]
fn enqueued_configs_come_first_in_order_and_are_validated() {
    let mut s = study(cnn_space(), Direction::Maximize, SamplerConfig::Random, 1);
    let mut base = Params::new();
    base.insert("lr".into(), ParamValue::Int(0)); // int for a float: rejected as out of range
    base.insert("optimizer".into(), ParamValue::Cat("adam".into()));
    base.insert("n_blocks".into(), ParamValue::Int(1));
    base.insert("ch_0".into(), ParamValue::Int(16));
    base.insert("batch".into(), ParamValue::Int(32));
    assert!(matches!(
        s.enqueue(base.clone()),
        Err(StudyError::InvalidParams(_))
    ));
    base.insert("lr".into(), ParamValue::Float(0.01));
    s.enqueue(base.clone()).unwrap();
    let mut second = base.clone();
    second.insert("batch".into(), ParamValue::Int(64));
    s.enqueue(second.clone()).unwrap();
    let mut bad = base.clone();
    bad.insert("momentum".into(), ParamValue::Float(0.9)); // inactive for adam
    let err = s.enqueue(bad).unwrap_err();
    assert!(err.to_string().contains("`momentum`"), "{err}");
    assert_eq!(s.ask().unwrap(), (0, base));
    assert_eq!(s.ask().unwrap(), (1, second));
    let (n, p) = s.ask().unwrap();
    assert_eq!(n, 2);
    s.config().space.validate_params(&p).unwrap();
}

#[test]
fn tell_errors() {
    let mut s = study(cnn_space(), Direction::Minimize, SamplerConfig::Random, 1);
    let (n, _) = s.ask().unwrap();
    assert!(matches!(
        s.tell(7, TellOutcome::Failed),
        Err(StudyError::UnknownTrial(7))
    ));
    assert!(matches!(
        s.tell(n, TellOutcome::Complete(vec![1.0, 2.0])),
        Err(StudyError::WrongValueCount { expected: 1, got: 2 })
    ));
    s.tell(n, TellOutcome::Complete(vec![1.0])).unwrap();
    assert!(matches!(
        s.tell(n, TellOutcome::Failed),
        Err(StudyError::TrialFinished { .. })
    ));
    assert!(matches!(
        s.report(n, 1, 0.5),
        Err(StudyError::TrialFinished { .. })
    ));
    assert_eq!(s.best_trial().unwrap().number, 0);
    let no_dirs = StudyConfig {
        space: cnn_space(),
        directions: vec![],
        sampler: SamplerConfig::Random,
        pruner: PrunerConfig::None,
        seed: 0,
    };
    assert!(matches!(Study::new(no_dirs), Err(StudyError::NoDirections)));
}

#[test]
fn grid_reports_size_and_refuses_continuous_or_huge() {
    let space = Space::new(vec![cat("opt", &["sgd", "adam"]), int("n", 1, 5, false, None)]).unwrap();
    assert_eq!(space.grid_size(), Some(10));
    let mut s = study(space, Direction::Minimize, SamplerConfig::Grid, 3);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (n, p) = s.ask().unwrap();
        assert!(seen.insert(serde_json::to_string(&p).unwrap()));
        s.tell(n, TellOutcome::Complete(vec![0.0])).unwrap();
    }
    assert!(matches!(s.ask(), Err(StudyError::GridExhausted { size: 10 })));
    assert_eq!(cnn_space().grid_size(), None);
    let cfg = |space| StudyConfig {
        space,
        directions: vec![Direction::Minimize],
        sampler: SamplerConfig::Grid,
        pruner: PrunerConfig::None,
        seed: 0,
    };
    assert!(matches!(
        Study::new(cfg(cnn_space())),
        Err(StudyError::GridNotDiscrete { .. })
    ));
    let huge = Space::new(vec![
        int("a", 0, 9999, false, None),
        int("b", 0, 9999, false, None),
    ])
    .unwrap();
    assert!(matches!(
        Study::new(cfg(huge)),
        Err(StudyError::GridTooLarge {
            size: 100_000_000,
            ..
        })
    ));
}
