//! Sampler behaviour: TPE beats random on a quadratic (statistically, with a stated margin),
//! constant liar spreads concurrent asks, pruned trials feed TPE, multi-objective fronts.
//!
//! The TPE-vs-random margin is stated in the test; measured on this code: TPE reaches the region
//! in a median of 49 trials, random in 1,428 (20 seeds).

mod common;
use common::*;
use tanren_search::*;

fn quadratic(p: &Params) -> f64 {
    ["x", "y", "z"]
        .iter()
        .map(|k| (p[*k].as_f64().unwrap() - 1.0).powi(2))
        .sum()
}

fn quad_space() -> Space {
    Space::new(vec![
        float("x", -10.0, 10.0, false),
        float("y", -10.0, 10.0, false),
        float("z", -10.0, 10.0, false),
    ])
    .unwrap()
}

/// Trials until a value below 1.0 (the optimum region, ~0.05% of the box), capped at `budget`.
fn trials_to_region(sampler: SamplerConfig, seed: u64, budget: usize) -> usize {
    let mut s = study(quad_space(), Direction::Minimize, sampler, seed);
    for i in 0..budget {
        let (n, p) = s.ask().unwrap();
        let v = quadratic(&p);
        s.tell(n, TellOutcome::Complete(vec![v])).unwrap();
        if v < 1.0 {
            return i + 1;
        }
    }
    budget
}

#[test]
fn tpe_reaches_the_optimum_region_far_faster_than_random() {
    // Margin: over 20 seeds, TPE's median number of trials to reach the region must be at most
    // a quarter of random search's (random needs ~2,000 on average: the region is 1/1,910 of
    // the box), and TPE must get there within 150 trials on at least 18 of the 20 seeds.
    let budget = 3000;
    let mut tpe: Vec<usize> = (0..20)
        .map(|s| trials_to_region(SamplerConfig::tpe(), s, budget))
        .collect();
    let mut random: Vec<usize> = (0..20)
        .map(|s| trials_to_region(SamplerConfig::Random, s, budget))
        .collect();
    tpe.sort();
    random.sort();
    let (mt, mr) = (tpe[10], random[10]);
    eprintln!("trials to region: tpe median {mt} {tpe:?}; random median {mr} {random:?}");
    assert!(mt * 4 <= mr, "tpe median {mt} vs random median {mr}");
    assert!(tpe.iter().filter(|&&t| t <= 150).count() >= 18, "{tpe:?}");
}

#[test]
fn constant_liar_gives_concurrent_workers_distinct_suggestions() {
    // A small discrete space makes collisions likely without the lie.
    let space = Space::new(vec![int("a", 0, 9, false, None), int("b", 0, 9, false, None)]).unwrap();
    for seed in 0..5 {
        let mut s = study(space.clone(), Direction::Minimize, SamplerConfig::tpe(), seed);
        for _ in 0..20 {
            let (n, p) = s.ask().unwrap();
            let v = (p["a"].as_f64().unwrap() - 3.0).powi(2) + (p["b"].as_f64().unwrap() - 6.0).powi(2);
            s.tell(n, TellOutcome::Complete(vec![v])).unwrap();
        }
        // Eight workers ask at once, before anyone tells.
        let asked: Vec<Params> = (0..8).map(|_| s.ask().unwrap().1).collect();
        let distinct: std::collections::HashSet<String> =
            asked.iter().map(|p| serde_json::to_string(p).unwrap()).collect();
        assert!(distinct.len() >= 7, "seed {seed}: {asked:?}");
    }
    // Continuous: all distinct.
    let mut s = study(quad_space(), Direction::Minimize, SamplerConfig::tpe(), 9);
    for _ in 0..30 {
        let (n, p) = s.ask().unwrap();
        s.tell(n, TellOutcome::Complete(vec![quadratic(&p)])).unwrap();
    }
    let asked: Vec<String> = (0..16)
        .map(|_| serde_json::to_string(&s.ask().unwrap().1).unwrap())
        .collect();
    let distinct: std::collections::HashSet<&String> = asked.iter().collect();
    assert_eq!(distinct.len(), 16);
}

#[test]
fn pruned_trials_count_as_tpe_data() {
    // Optuna's rule: a pruned trial counts towards start-up and is modelled by its last
    // intermediate value (all trials here stop at the same step, so the ranking is by value).
    // So a study whose trials are all pruned at step 3 with value v must make exactly the same
    // suggestions as one whose trials complete with value v.
    for seed in 0..5 {
        let run = |pruned: bool| {
            let mut s = study(quad_space(), Direction::Minimize, SamplerConfig::tpe(), seed);
            for _ in 0..40 {
                let (n, p) = s.ask().unwrap();
                let v = quadratic(&p);
                if pruned {
                    s.report(n, 3, v).unwrap();
                    s.tell(n, TellOutcome::Pruned).unwrap();
                } else {
                    s.tell(n, TellOutcome::Complete(vec![v])).unwrap();
                }
            }
            s.trials().iter().map(|t| t.params.clone()).collect::<Vec<_>>()
        };
        assert_eq!(run(true), run(false));
    }
}

fn two_objectives(p: &Params) -> Vec<f64> {
    let x = p["x"].as_f64().unwrap();
    let y = p["y"].as_f64().unwrap();
    // Accuracy-like (maximise) and latency-like (minimise) in tension.
    vec![1.0 - (x - 1.0).powi(2) - 0.1 * y * y, x * x + y.abs()]
}

#[test]
fn multi_objective_samplers_find_a_pareto_front() {
    let space = Space::new(vec![float("x", -2.0, 3.0, false), float("y", -1.0, 1.0, false)]).unwrap();
    for sampler in [
        SamplerConfig::tpe(),
        SamplerConfig::Nsga2 {
            population_size: 10,
            mutation_prob: None,
            crossover_prob: 0.9,
            swapping_prob: 0.5,
        },
        SamplerConfig::Random,
    ] {
        let mut s = Study::new(StudyConfig {
            space: space.clone(),
            directions: vec![Direction::Maximize, Direction::Minimize],
            sampler: sampler.clone(),
            pruner: PrunerConfig::None,
            seed: 3,
        })
        .unwrap();
        for _ in 0..80 {
            let (n, p) = s.ask().unwrap();
            s.tell(n, TellOutcome::Complete(two_objectives(&p))).unwrap();
        }
        assert!(s.best_trial().is_none());
        let front = s.pareto_front();
        assert!(front.len() >= 3, "{sampler:?}: {}", front.len());
        // No member of the front is dominated by any complete trial.
        for f in &front {
            let fv = f.values.as_ref().unwrap();
            for t in s.trials() {
                let tv = t.values.as_ref().unwrap();
                let dominates = tv[0] >= fv[0] && tv[1] <= fv[1] && (tv[0] > fv[0] || tv[1] < fv[1]);
                assert!(!dominates, "{sampler:?}");
            }
        }
    }
}

/// Best quadratic value after `n` trials.
fn best_after(sampler: SamplerConfig, seed: u64, n: usize) -> f64 {
    let mut s = study(quad_space(), Direction::Minimize, sampler, seed);
    let mut best = f64::INFINITY;
    for _ in 0..n {
        let (k, p) = s.ask().unwrap();
        let v = quadratic(&p);
        best = best.min(v);
        s.tell(k, TellOutcome::Complete(vec![v])).unwrap();
    }
    best
}

#[test]
fn local_refinement_beats_optuna_tpe_on_a_quadratic() {
    // tanren's default TPE (local refinement on) against Optuna's exact TPE, 20 seeds x 80
    // trials. Stated margin: the median best value at least 2x smaller and better on at least
    // 14 of the 20 seeds. Measured on this code: medians 0.090 vs 0.250, better on 15/20.
    let ours: Vec<f64> = (0..20).map(|s| best_after(SamplerConfig::tpe(), s, 80)).collect();
    let optuna: Vec<f64> = (0..20)
        .map(|s| best_after(SamplerConfig::tpe_optuna(), s, 80))
        .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mo, mp) = (median(&ours), median(&optuna));
    let better = ours.iter().zip(&optuna).filter(|(a, b)| a < b).count();
    eprintln!("median best: tanren {mo:.4} vs optuna-mode {mp:.4}; better on {better}/20 seeds");
    assert!(mo * 2.0 <= mp, "tanren {mo} vs optuna-mode {mp}");
    assert!(better >= 14, "better on {better}/20");
}
