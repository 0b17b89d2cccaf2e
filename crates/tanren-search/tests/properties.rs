//! Property tests: suggestions always valid (bounds, int/log/step grid, active set exactly as
//! the conditions say), same seed gives the same sequence, and a restored study continues
//! exactly as the original.

mod common;
use common::*;
use proptest::prelude::*;
use tanren_search::*;

fn samplers() -> Vec<SamplerConfig> {
    vec![
        SamplerConfig::Random,
        SamplerConfig::Tpe {
            n_startup_trials: 3,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            consider_magic_clip: true,
            consider_endpoints: false,
            multivariate: Some(false),
            constant_liar: true,
            quasi_random_startup: true,
            n_local_candidates: 4,
            local_every: 2,
            local_top: 1,
            local_bandwidth: 0.5,
        },
        SamplerConfig::tpe_optuna(),
        SamplerConfig::tpe(),
        SamplerConfig::Nsga2 {
            population_size: 4,
            mutation_prob: None,
            crossover_prob: 0.9,
            swapping_prob: 0.5,
        },
    ]
}

/// A made-up objective over the CNN space, so samplers have something to model.
fn score(p: &Params) -> f64 {
    let lr = p["lr"].as_f64().unwrap().log10();
    let blocks = p["n_blocks"].as_i64().unwrap() as f64;
    (lr + 2.0).powi(2)
        + (blocks - 2.0).powi(2)
        + p.get("momentum").and_then(ParamValue::as_f64).unwrap_or(0.5)
}

/// Drives a study with a mix of outcomes (complete, pruned with a curve, failed, left running).
fn drive(study: &mut Study, n: usize) -> Vec<Params> {
    let mut out = Vec::new();
    for i in 0..n {
        let (num, p) = study.ask().unwrap();
        let v = score(&p);
        match i % 7 {
            3 => {
                study.report(num, 1, v).unwrap();
                study.tell(num, TellOutcome::Pruned).unwrap();
            }
            5 => study.tell(num, TellOutcome::Failed).unwrap(),
            6 => {} // left running: constant liar sees it
            _ => study.tell(num, TellOutcome::Complete(vec![v])).unwrap(),
        }
        out.push(p);
    }
    out
}

fn check_on_grid(space: &Space, p: &Params) {
    space.validate_params(p).unwrap();
    for def in space.params() {
        if let (
            Distribution::Int {
                low,
                step: Some(step),
                ..
            },
            Some(v),
        ) = (&def.distribution, p.get(&def.name))
        {
            assert_eq!((v.as_i64().unwrap() - low) % step, 0);
        }
    }
    // Conditional parameters are present exactly when enabled.
    assert_eq!(p.contains_key("momentum"), p["optimizer"].as_str() == Some("sgd"));
    let blocks = p["n_blocks"].as_i64().unwrap();
    assert_eq!(p.contains_key("ch_1"), blocks >= 2);
    assert_eq!(p.contains_key("ch_2"), blocks >= 3);
}

proptest! {
    // No failure persistence: a failing case prints its inputs, and CI should not write files.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn suggestions_are_valid_and_reproducible(seed in any::<u64>(), which in 0usize..4) {
        let sampler = samplers()[which].clone();
        let mut a = study(cnn_space(), Direction::Minimize, sampler.clone(), seed);
        let mut b = study(cnn_space(), Direction::Minimize, sampler, seed);
        let pa = drive(&mut a, 30);
        let pb = drive(&mut b, 30);
        for p in &pa {
            check_on_grid(&cnn_space(), p);
        }
        prop_assert_eq!(pa, pb);
    }

    #[test]
    fn restored_study_continues_identically(seed in any::<u64>(), which in 0usize..4, split in 1usize..25) {
        let sampler = samplers()[which].clone();
        let mut original = study(cnn_space(), Direction::Minimize, sampler, seed);
        drive(&mut original, split);
        let mut restored = Study::restore(original.config().clone(), original.trials().to_vec()).unwrap();
        // Round-trip the records through JSON too, as storage would.
        let json = serde_json::to_string(original.trials()).unwrap();
        let mut from_json = Study::restore(original.config().clone(), serde_json::from_str(&json).unwrap()).unwrap();
        let a = drive(&mut original, 15);
        let b = drive(&mut restored, 15);
        let c = drive(&mut from_json, 15);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }

    #[test]
    fn random_values_respect_log_and_step(seed in any::<u64>()) {
        let space = Space::new(vec![
            float("lr", 1e-6, 1e-1, true),
            int("units", 1, 1000, true, None),
            int("batch", 8, 512, false, Some(8)),
        ]).unwrap();
        let mut s = study(space.clone(), Direction::Maximize, SamplerConfig::tpe(), seed);
        for _ in 0..25 {
            let (n, p) = s.ask().unwrap();
            space.validate_params(&p).unwrap();
            prop_assert_eq!((p["batch"].as_i64().unwrap() - 8) % 8, 0);
            let v = p["lr"].as_f64().unwrap().ln() + p["units"].as_f64().unwrap();
            s.tell(n, TellOutcome::Complete(vec![v])).unwrap();
        }
    }
}
