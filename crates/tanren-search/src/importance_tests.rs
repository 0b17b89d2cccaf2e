//! PED-ANOVA and fANOVA on objectives whose answer is known, the refusals, and how well two
//! independently seeded runs of one study agree on the ranking (the number the default settings
//! were chosen by, and the comparison of the two methods).

use super::*;
use crate::rng::Rng;
use crate::space::{Condition, ParamDef};
use crate::study::{Study, TellOutcome};
use crate::{PrunerConfig, SamplerConfig, StudyConfig};

fn def(name: &str, distribution: Distribution) -> ParamDef {
    ParamDef {
        name: name.into(),
        distribution,
        condition: None,
    }
}
fn float(name: &str, low: f64, high: f64, log: bool) -> ParamDef {
    def(name, Distribution::Float { low, high, log })
}
fn int(name: &str, low: i64, high: i64, log: bool) -> ParamDef {
    def(
        name,
        Distribution::Int {
            low,
            high,
            log,
            step: None,
        },
    )
}
fn cat(name: &str, choices: &[&str]) -> ParamDef {
    def(
        name,
        Distribution::Categorical {
            choices: choices.iter().map(|s| s.to_string()).collect(),
        },
    )
}
fn when(mut d: ParamDef, parent: &str, values: &[&str]) -> ParamDef {
    d.condition = Some(Condition {
        parent: parent.into(),
        values: values.iter().map(|s| s.to_string()).collect(),
        min: None,
        max: None,
    });
    d
}
fn num(p: &Params, k: &str) -> f64 {
    p[k].as_f64().unwrap()
}

/// Runs a study of `n` trials on `objective` (maximised) and returns its observations.
fn run(
    space: &Space,
    sampler: SamplerConfig,
    seed: u64,
    n: usize,
    objective: impl Fn(&Params, &mut Rng) -> f64,
) -> Vec<Observation> {
    let mut study = Study::new(StudyConfig {
        space: space.clone(),
        directions: vec![Direction::Maximize],
        sampler,
        pruner: PrunerConfig::None,
        seed,
    })
    .unwrap();
    // The objective's noise has its own stream, so two seeds differ in both sampling and noise.
    let mut noise = Rng::new(seed ^ 0x005e_ed0f_0b1e_c71e);
    for _ in 0..n {
        let (number, params) = study.ask().unwrap();
        let v = objective(&params, &mut noise);
        study.tell(number, TellOutcome::Complete(vec![v])).unwrap();
    }
    Observation::from_records(study.trials())
}

fn gauss(rng: &mut Rng) -> f64 {
    // Box-Muller; 1 - u keeps the log finite.
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn importances(space: &Space, obs: &[Observation]) -> Vec<(String, f64)> {
    let r = ped_anova(space, obs, Direction::Maximize, &PedAnova::default()).unwrap();
    r.importances
        .into_iter()
        .map(|p| (p.param, p.importance))
        .collect()
}

fn share(imp: &[(String, f64)], name: &str) -> f64 {
    imp.iter().find(|(p, _)| p == name).unwrap().1
}

fn abcd() -> Space {
    Space::new(vec![
        float("a", 1e-4, 1e-1, true),
        float("b", 0.0, 1.0, false),
        int("c", 1, 10, false),
        cat("d", &["x", "y", "z"]),
    ])
    .unwrap()
}

#[test]
fn only_a_matters_and_gets_most_of_the_mass() {
    let space = abcd();
    for seed in 0..5 {
        let obs = run(&space, SamplerConfig::Random, seed, 60, |p, _| {
            -(num(p, "a").log10() + 2.5).powi(2)
        });
        let imp = importances(&space, &obs);
        assert_eq!(imp[0].0, "a", "seed {seed}: {imp:?}");
        assert!(imp[0].1 > 0.6, "seed {seed}: {imp:?}");
        let sum: f64 = imp.iter().map(|x| x.1).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    }
}

#[test]
fn a_and_b_matter_and_c_is_noise() {
    let space = abcd();
    for seed in 0..5 {
        let obs = run(&space, SamplerConfig::Random, seed, 80, |p, rng| {
            -(num(p, "a").log10() + 2.5).powi(2) - 4.0 * (num(p, "b") - 0.7).powi(2) + 0.02 * gauss(rng)
        });
        let imp = importances(&space, &obs);
        let top2: Vec<&str> = imp[..2].iter().map(|x| x.0.as_str()).collect();
        assert!(top2.contains(&"a") && top2.contains(&"b"), "seed {seed}: {imp:?}");
        assert!(
            share(&imp, "c") < 0.15 && share(&imp, "d") < 0.15,
            "seed {seed}: {imp:?}"
        );
    }
}

#[test]
fn a_categorical_that_decides_the_result_ranks_first() {
    let space = abcd();
    for seed in 0..5 {
        let obs = run(&space, SamplerConfig::Random, seed, 60, |p, rng| {
            let d = match p["d"].as_str().unwrap() {
                "x" => 1.0,
                "y" => 0.2,
                _ => 0.0,
            };
            d + 0.05 * gauss(rng)
        });
        let imp = importances(&space, &obs);
        assert_eq!(imp[0].0, "d", "seed {seed}: {imp:?}");
        assert!(imp[0].1 > 0.5, "seed {seed}: {imp:?}");
    }
}

fn conditional_space() -> Space {
    Space::new(vec![
        float("lr", 1e-4, 1e-1, true),
        cat("optimizer", &["adam", "sgd"]),
        when(float("momentum", 0.0, 0.99, false), "optimizer", &["sgd"]),
        when(int("unused", 1, 8, false), "optimizer", &["sgd"]),
    ])
    .unwrap()
}

#[test]
fn conditional_parameters_are_measured_where_they_are_active() {
    // sgd trials are only good with high momentum; adam trials are middling; lr does nothing.
    let space = conditional_space();
    for seed in 0..5 {
        let obs = run(&space, SamplerConfig::Random, seed, 80, |p, rng| {
            let v = match p.get("momentum") {
                Some(m) => 2.0 * m.as_f64().unwrap() - 1.0,
                None => 0.5,
            };
            v + 0.02 * gauss(rng)
        });
        let imp = importances(&space, &obs);
        assert!(obs.iter().any(|o| !o.params.contains_key("momentum")));
        assert!(
            share(&imp, "momentum") > share(&imp, "unused") && share(&imp, "momentum") > share(&imp, "lr"),
            "seed {seed}: {imp:?}"
        );
        assert!(share(&imp, "momentum") > 0.3, "seed {seed}: {imp:?}");
    }
}

#[test]
fn a_conditional_parameter_no_top_trial_has_gets_zero() {
    // Every adam trial beats every sgd trial: momentum is in no top trial.
    let space = conditional_space();
    let obs = run(&space, SamplerConfig::Random, 3, 40, |p, rng| {
        let base = if p["optimizer"].as_str() == Some("adam") {
            1.0
        } else {
            0.0
        };
        base + 0.01 * gauss(rng)
    });
    let imp = importances(&space, &obs);
    assert_eq!(share(&imp, "momentum"), 0.0, "{imp:?}");
    assert_eq!(imp[0].0, "optimizer", "{imp:?}");
}

#[test]
fn a_parameter_whose_values_bunch_up_is_not_made_important_by_smoothing() {
    // `batch` takes only 8, 16 or 32 of 8..32 (a person's favourite sizes; most trials at 32) and
    // does not matter. Smoothed each with its own Scott's-rule bandwidth, the 2,000 trials come out
    // sharper than the 400 best, and the gaps between the bunches read as a difference.
    let space = Space::new(vec![float("a", 0.0, 1.0, false), int("batch", 8, 32, true)]).unwrap();
    let mut rng = Rng::new(9);
    let obs: Vec<Observation> = (0..2000)
        .map(|i| {
            let a = rng.f64();
            Observation {
                params: Params::from([
                    ("a".to_string(), ParamValue::Float(a)),
                    ("batch".to_string(), ParamValue::Int([8, 16, 32, 32, 32][i % 5])),
                ]),
                value: a + 0.05 * gauss(&mut rng),
            }
        })
        .collect();
    let shared = importances(&space, &obs);
    let own_cfg = PedAnova {
        shared_bandwidth: false,
        ..PedAnova::default()
    };
    let own = ped_anova(&space, &obs, Direction::Maximize, &own_cfg).unwrap();
    eprintln!("shared bandwidth: {shared:?}\nown bandwidths: {own:?}");
    // Measured: batch 0.0004 shared, 0.025 with its own bandwidths (60 times more).
    assert!(share(&shared, "batch") < 0.005, "{shared:?}");
}

#[test]
fn a_single_valued_parameter_is_listed_with_zero() {
    let space = Space::new(vec![float("a", 0.0, 1.0, false), cat("only", &["one"])]).unwrap();
    let obs = run(&space, SamplerConfig::Random, 1, 20, |p, _| num(p, "a"));
    let imp = importances(&space, &obs);
    assert_eq!(imp, vec![("a".to_string(), 1.0), ("only".to_string(), 0.0)]);
}

#[test]
fn refusals_say_what_is_missing() {
    let space = abcd();
    let obs = run(&space, SamplerConfig::Random, 1, 5, |p, _| num(p, "b"));
    let cfg = PedAnova::default();
    let err = ped_anova(&space, &obs, Direction::Maximize, &cfg).unwrap_err();
    assert_eq!(
        err,
        ImportanceError::TooFewTrials {
            complete: 5,
            needed: 6
        }
    );
    assert!(err.to_string().contains("at least 6 complete trials"), "{err}");

    // Non-finite values do not count as trials.
    let mut obs = run(&space, SamplerConfig::Random, 1, 8, |p, _| num(p, "b"));
    obs[0].value = f64::NAN;
    obs[1].value = f64::INFINITY;
    obs[2].value = f64::NEG_INFINITY;
    let err = ped_anova(&space, &obs, Direction::Maximize, &cfg).unwrap_err();
    assert_eq!(
        err,
        ImportanceError::TooFewTrials {
            complete: 5,
            needed: 6
        }
    );

    let flat = run(&space, SamplerConfig::Random, 1, 10, |_, _| 0.5);
    let err = ped_anova(&space, &flat, Direction::Maximize, &cfg).unwrap_err();
    assert_eq!(err, ImportanceError::AllEqual { complete: 10 });

    let pinned = Space::new(vec![cat("only", &["one"])]).unwrap();
    let obs: Vec<Observation> = (0..10)
        .map(|i| Observation {
            params: Params::from([("only".to_string(), ParamValue::Cat("one".into()))]),
            value: i as f64,
        })
        .collect();
    let err = ped_anova(&pinned, &obs, Direction::Maximize, &cfg).unwrap_err();
    assert_eq!(err, ImportanceError::NothingSearched);
}

#[test]
fn direction_decides_which_trials_are_the_top_ones() {
    // Maximising: the best trials have a near 1e-1; minimising: near 1e-4. Both say `a` matters,
    // but through different top sets, so the estimators must see the sign.
    let space = abcd();
    let obs = run(&space, SamplerConfig::Random, 2, 60, |p, _| num(p, "a").log10());
    for dir in [Direction::Maximize, Direction::Minimize] {
        let r = ped_anova(&space, &obs, dir, &PedAnova::default()).unwrap();
        assert_eq!(r.importances[0].param, "a", "{dir:?}: {r:?}");
        assert_eq!(r.trials_used, 60);
        assert_eq!(r.top_trials, 12);
        let best = best_k(&obs, dir, 3);
        let a = num(&obs[best[0]].params, "a");
        assert!(
            if dir == Direction::Maximize {
                a > 0.05
            } else {
                a < 2e-4
            },
            "{a}"
        );
    }
}

#[test]
fn ties_and_order_do_not_change_the_answer() {
    // Ties in the objective all join the top set; reordering the trials changes nothing.
    let space = abcd();
    let obs = run(&space, SamplerConfig::Random, 4, 30, |p, _| {
        (num(p, "b") * 4.0).floor()
    });
    let a = ped_anova(&space, &obs, Direction::Maximize, &PedAnova::default()).unwrap();
    let mut reversed = obs.clone();
    reversed.reverse();
    let b = ped_anova(&space, &reversed, Direction::Maximize, &PedAnova::default()).unwrap();
    assert_eq!(a.importances.len(), b.importances.len());
    for (x, y) in a.importances.iter().zip(&b.importances) {
        assert_eq!(x.param, y.param);
        assert!((x.importance - y.importance).abs() < 1e-12, "{a:?} {b:?}");
    }
    // The 6th best value (20% of 30) is the cut; every trial as good joins.
    let mut values: Vec<f64> = obs.iter().map(|o| o.value).collect();
    values.sort_by(|x, y| y.total_cmp(x));
    let at_least_cut = values.iter().filter(|&&v| v >= values[5]).count();
    assert!(at_least_cut > 6, "the test needs ties at the cut: {values:?}");
    assert_eq!(a.top_trials, at_least_cut, "{a:?}");
    assert_eq!(a.importances[0].param, "b");
}

#[test]
fn fanova_finds_what_matters_and_skips_conditional_parameters() {
    let space = abcd();
    for seed in 0..3 {
        let obs = run(&space, SamplerConfig::Random, seed, 60, |p, rng| {
            -(num(p, "a").log10() + 2.5).powi(2) + 0.02 * gauss(rng)
        });
        let r = fanova(&space, &obs, Direction::Maximize, 64, 0).unwrap();
        assert_eq!(r.importances[0].param, "a", "seed {seed}: {r:?}");
        assert!(r.importances[0].importance > 0.8, "seed {seed}: {r:?}");
        let sum: f64 = r.importances.iter().map(|p| p.importance).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        // Seeded: the same forest every time.
        assert_eq!(r, fanova(&space, &obs, Direction::Maximize, 64, 0).unwrap());

        let obs = run(&space, SamplerConfig::Random, seed, 60, |p, rng| {
            f64::from(p["d"].as_str() == Some("x")) + 0.05 * gauss(rng)
        });
        let r = fanova(&space, &obs, Direction::Maximize, 64, 0).unwrap();
        assert_eq!(r.importances[0].param, "d", "seed {seed}: {r:?}");
    }
    let space = conditional_space();
    let obs = run(&space, SamplerConfig::Random, 1, 40, |p, _| num(p, "lr"));
    let r = fanova(&space, &obs, Direction::Maximize, 16, 0).unwrap();
    assert_eq!(r.importances[0].param, "lr", "{r:?}");
    let zero = |name: &str| {
        r.importances
            .iter()
            .any(|p| p.param == name && p.importance == 0.0)
    };
    assert!(zero("momentum") && zero("unused"), "{r:?}");
    let few = run(&space, SamplerConfig::Random, 1, 5, |p, _| num(p, "lr"));
    assert_eq!(
        fanova(&space, &few, Direction::Maximize, 16, 0).unwrap_err(),
        ImportanceError::TooFewTrials {
            complete: 5,
            needed: 6
        }
    );
}

#[test]
fn top_count_is_a_fifth_at_least_three() {
    assert_eq!(
        [0, 1, 3, 5, 10, 15, 16, 20, 21, 100].map(top_count),
        [0, 1, 3, 3, 3, 3, 4, 4, 5, 20]
    );
}

// --- Agreement between two independently seeded runs of one study ---

/// An image-classifier-like objective: learning rate decides most, epochs some, the optimizer a
/// little, batch size barely; conv blocks and dropout not at all; noise like a validation split's.
fn classifier_space() -> Space {
    Space::new(vec![
        float("lr", 1e-4, 1e-1, true),
        int("batch", 8, 128, true),
        int("epochs", 1, 10, false),
        cat("optimizer", &["adam", "adamw", "sgd"]),
        int("conv_blocks", 1, 4, false),
        float("dropout", 0.0, 0.5, false),
        when(float("momentum", 0.0, 0.99, false), "optimizer", &["sgd"]),
    ])
    .unwrap()
}

fn classifier(p: &Params, rng: &mut Rng) -> f64 {
    let lr = 0.08 * (num(p, "lr") / 3e-3).log10().powi(2);
    let epochs = 0.04 * (1.0 - num(p, "epochs") / 10.0);
    let opt = match p["optimizer"].as_str().unwrap() {
        "adamw" => 0.0,
        "adam" => 0.01,
        _ => 0.03,
    };
    let batch = 0.005 * (num(p, "batch") / 32.0).log2().abs() / 2.0;
    0.95 - lr - epochs - opt - batch + 0.01 * gauss(rng)
}

/// Spearman's rank correlation with average ranks for ties.
fn spearman(x: &[f64], y: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// How importances are computed: PED-ANOVA with some settings, or fANOVA.
#[derive(Clone)]
enum Method {
    Ped(PedAnova),
    Fanova,
}

/// Importances of every parameter of the space, in the space's order.
fn vector(space: &Space, obs: &[Observation], method: &Method) -> Vec<f64> {
    let r = match method {
        Method::Ped(cfg) => ped_anova(space, obs, Direction::Maximize, cfg).unwrap(),
        Method::Fanova => fanova(space, obs, Direction::Maximize, 64, 0).unwrap(),
    };
    space
        .params()
        .iter()
        .map(|d| {
            r.importances
                .iter()
                .find(|p| p.param == d.name)
                .unwrap()
                .importance
        })
        .collect()
}

struct Agreement {
    /// Mean Spearman correlation between the two runs' importance vectors.
    spearman: f64,
    /// Share of run pairs whose most important parameter is the same.
    same_top: f64,
    /// Share of runs that put the learning rate first (the truth).
    lr_first: f64,
}

fn agreement(sampler: &SamplerConfig, cfg: &Method, trials: usize, pairs: u64) -> Agreement {
    let space = classifier_space();
    let (mut rho, mut same, mut lr) = (0.0, 0.0, 0.0);
    for pair in 0..pairs {
        let a = vector(
            &space,
            &run(&space, sampler.clone(), 2 * pair, trials, classifier),
            cfg,
        );
        let b = vector(
            &space,
            &run(&space, sampler.clone(), 2 * pair + 1, trials, classifier),
            cfg,
        );
        rho += spearman(&a, &b);
        if std::env::var_os("TANREN_IMPORTANCE_VECTORS").is_some() {
            eprintln!("  {a:.2?}\n  {b:.2?}");
        }
        let argmax = |v: &[f64]| {
            (0..v.len())
                .max_by(|&i, &j| v[i].total_cmp(&v[j]).then(j.cmp(&i)))
                .unwrap()
        };
        same += f64::from(argmax(&a) == argmax(&b));
        lr += (f64::from(argmax(&a) == 0) + f64::from(argmax(&b) == 0)) / 2.0;
    }
    let n = pairs as f64;
    Agreement {
        spearman: rho / n,
        same_top: same / n,
        lr_first: lr / n,
    }
}

#[test]
fn two_seeded_runs_of_a_study_agree_on_what_mattered() {
    // Printed with `cargo test --release -p tanren-search importance -- --nocapture`; the numbers
    // in the report and the default quantile come from this table.
    let pairs = 20;
    let global = |c: PedAnova| PedAnova { local: false, ..c };
    let configs = [
        ("tanren: q=0.2 min 3 shared bw", Method::Ped(PedAnova::default())),
        ("optuna: q=0.1 min 2 own bw", Method::Ped(PedAnova::optuna())),
        (
            "q=0.2 min 3 own bw",
            Method::Ped(PedAnova {
                shared_bandwidth: false,
                ..PedAnova::default()
            }),
        ),
        (
            "q=0.1 min 2 shared bw",
            Method::Ped(PedAnova {
                shared_bandwidth: true,
                ..PedAnova::optuna()
            }),
        ),
        ("q=0.2 min 3 global", Method::Ped(global(PedAnova::default()))),
        ("q=0.1 min 2 global", Method::Ped(global(PedAnova::optuna()))),
        ("fanova: 64 trees", Method::Fanova),
    ];
    let mut table = Vec::new();
    for (sampler_name, sampler) in [("tpe", SamplerConfig::tpe()), ("random", SamplerConfig::Random)] {
        for trials in [20, 50] {
            for (name, cfg) in &configs {
                let a = agreement(&sampler, cfg, trials, pairs);
                eprintln!(
                    "{sampler_name:6} {trials:3} trials  {name:30} spearman {:.2}  same top {:.0}%  lr first {:.0}%",
                    a.spearman,
                    100.0 * a.same_top,
                    100.0 * a.lr_first
                );
                table.push((sampler_name, trials, *name, a));
            }
        }
    }
    let get =
        |s: &str, t: usize, c: &str| &table.iter().find(|r| r.0 == s && r.1 == t && r.2 == c).unwrap().3;
    let (ours, optuna) = (configs[0].0, configs[1].0);
    // Margins, measured 0.73 / 92% / 0.74 (deterministic: every run is seeded). With random search
    // the learning rate's effect is plain and must be found; two TPE runs must rank broadly alike.
    let random50 = get("random", 50, ours);
    assert!(
        random50.lr_first >= 0.8,
        "lr first in {:.0}% of runs",
        100.0 * random50.lr_first
    );
    assert!(random50.spearman >= 0.6, "spearman {:.2}", random50.spearman);
    assert!(get("tpe", 50, ours).spearman >= 0.6);
    // fANOVA (measured: spearman 0.73-0.85, learning rate first in 88-100% of runs) is checked
    // here only for finding the learning rate; the control plane serves PED-ANOVA (see
    // importance.rs for why).
    assert!(get("random", 50, "fanova: 64 trees").lr_first >= 0.9);
    // The default settings were chosen for agreeing better than Optuna's, and finding the
    // learning rate more often, in every setting.
    for (s, t) in [("tpe", 20), ("tpe", 50), ("random", 20), ("random", 50)] {
        let (a, b) = (get(s, t, ours), get(s, t, optuna));
        assert!(a.spearman >= b.spearman && a.lr_first >= b.lr_first, "{s} {t}");
    }
}
