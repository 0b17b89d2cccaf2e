//! Shared helpers for the integration tests: spaces and study constructors.
#![allow(dead_code)]

use tanren_search::*;

pub fn float(name: &str, low: f64, high: f64, log: bool) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution: Distribution::Float { low, high, log },
        condition: None,
    }
}

pub fn int(name: &str, low: i64, high: i64, log: bool, step: Option<i64>) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution: Distribution::Int { low, high, log, step },
        condition: None,
    }
}

pub fn cat(name: &str, choices: &[&str]) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution: Distribution::Categorical {
            choices: choices.iter().map(|s| s.to_string()).collect(),
        },
        condition: None,
    }
}

pub fn when(mut def: ParamDef, parent: &str, values: &[&str]) -> ParamDef {
    def.condition = Some(Condition {
        parent: parent.into(),
        values: values.iter().map(|s| s.to_string()).collect(),
        min: None,
        max: None,
    });
    def
}

pub fn when_at_least(mut def: ParamDef, parent: &str, min: i64) -> ParamDef {
    def.condition = Some(Condition {
        parent: parent.into(),
        values: vec![],
        min: Some(min),
        max: None,
    });
    def
}

/// A CNN-shaped conditional space: optimizer with sgd-only momentum, 1-3 blocks with per-block
/// channels, log-scaled learning rate.
pub fn cnn_space() -> Space {
    Space::new(vec![
        float("lr", 1e-4, 1e-1, true),
        cat("optimizer", &["sgd", "adam"]),
        when(float("momentum", 0.0, 0.99, false), "optimizer", &["sgd"]),
        int("n_blocks", 1, 3, false, None),
        int("ch_0", 8, 64, true, None),
        when_at_least(int("ch_1", 8, 64, true, None), "n_blocks", 2),
        when_at_least(int("ch_2", 8, 64, true, None), "n_blocks", 3),
        int("batch", 16, 128, false, Some(16)),
    ])
    .unwrap()
}

pub fn study(space: Space, dir: Direction, sampler: SamplerConfig, seed: u64) -> Study {
    Study::new(StudyConfig {
        space,
        directions: vec![dir],
        sampler,
        pruner: PrunerConfig::None,
        seed,
    })
    .unwrap()
}
