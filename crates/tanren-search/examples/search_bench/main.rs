//! Benchmark driver: runs tanren's TPE and random samplers on the problems in `problems.rs`
//! and measures ask+tell latency; writes JSON for `bench/search/report.py`. Run through
//! `bench/search/run.sh`, which also runs Optuna on the same problems.
//!
//! Usage: search_bench [--trials N] [--seeds N] [--first-seed S] [--tpe SAMPLER_JSON] [--out FILE]
//!        [--latency-only | --no-latency]
//! `--first-seed` and `--tpe` are for checking changes to the TPE defaults on seeds other than
//! the reported 0..10, e.g. `--first-seed 100 --seeds 120 --no-latency --tpe
//! '{"type":"tpe","local_every":0,"n_local_candidates":0}'` (Optuna's TPE) against the defaults.

mod problems;

use std::time::Instant;
use tanren_search::*;

fn run(problem: &problems::Problem, sampler: SamplerConfig, seed: u64, n_trials: usize) -> (f64, Params) {
    let config = StudyConfig {
        space: problem.space.clone(),
        directions: vec![Direction::Minimize],
        sampler,
        pruner: PrunerConfig::None,
        seed,
    };
    let mut study = Study::new(config).expect("valid study");
    for _ in 0..n_trials {
        let (n, p) = study.ask().expect("ask");
        let v = (problem.f)(&p);
        study.tell(n, TellOutcome::Complete(vec![v])).expect("tell");
    }
    let best = study.best_trial().expect("some trial");
    (best.values.as_ref().unwrap()[0], best.params.clone())
}

/// Median milliseconds of one ask+tell with `n` completed trials already in the study
/// (restored from random records, so building the study does not dominate the run).
fn latency(problem: &problems::Problem, tpe: &SamplerConfig, n: usize, reps: usize) -> f64 {
    let mut fill = Study::new(StudyConfig {
        space: problem.space.clone(),
        directions: vec![Direction::Minimize],
        sampler: SamplerConfig::Random,
        pruner: PrunerConfig::None,
        seed: 12345,
    })
    .unwrap();
    for _ in 0..n {
        let (k, p) = fill.ask().unwrap();
        fill.tell(k, TellOutcome::Complete(vec![(problem.f)(&p)]))
            .unwrap();
    }
    let config = StudyConfig {
        sampler: tpe.clone(),
        ..fill.config().clone()
    };
    let mut study = Study::restore(config, fill.trials().to_vec()).unwrap();
    let mut times = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let (k, p) = study.ask().unwrap();
        let v = (problem.f)(&p);
        study.tell(k, TellOutcome::Complete(vec![v])).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or(default.into())
    };
    let n_trials: usize = arg("--trials", "80").parse().unwrap();
    let n_seeds: u64 = arg("--seeds", "10").parse().unwrap();
    let out = arg("--out", "tanren_results.json");
    let first_seed: u64 = arg("--first-seed", "0").parse().unwrap();
    let tpe: SamplerConfig = match args.iter().position(|a| a == "--tpe") {
        Some(i) => serde_json::from_str(&args[i + 1]).expect("--tpe: a sampler config as JSON"),
        None => SamplerConfig::tpe(),
    };

    let mut results = serde_json::Map::new();
    let skip_quality = args.iter().any(|a| a == "--latency-only");
    for problem in problems::all().into_iter().filter(|_| !skip_quality) {
        let mut entry = serde_json::Map::new();
        for (label, sampler) in [
            ("tanren_tpe", tpe.clone()),
            ("tanren_random", SamplerConfig::Random),
        ] {
            let t0 = Instant::now();
            let runs: Vec<(f64, Params)> = (0..n_seeds)
                .map(|seed| run(&problem, sampler.clone(), first_seed + seed, n_trials))
                .collect();
            eprintln!(
                "{:<18} {:<14} {:.2}s",
                problem.name,
                label,
                t0.elapsed().as_secs_f64()
            );
            entry.insert(
                label.into(),
                serde_json::json!(runs.iter().map(|r| r.0).collect::<Vec<_>>()),
            );
            entry.insert(
                format!("{label}_params"),
                runs.iter().map(|r| problems::json_params(&r.1)).collect(),
            );
        }
        results.insert(problem.name.into(), serde_json::Value::Object(entry));
    }
    let mut lat = serde_json::Map::new();
    let skip_latency = args.iter().any(|a| a == "--no-latency");
    for problem in problems::all()
        .into_iter()
        .filter(|p| !skip_latency && (p.name == "hartmann6" || p.name == "cnn_a_mixed"))
    {
        let mut row = serde_json::Map::new();
        for n in [100usize, 1_000, 10_000] {
            let ms = latency(&problem, &tpe, n, if n >= 10_000 { 10 } else { 30 });
            eprintln!("latency {:<14} n={n:<6} {ms:.3} ms", problem.name);
            row.insert(n.to_string(), serde_json::json!(ms));
        }
        lat.insert(problem.name.into(), serde_json::Value::Object(row));
    }
    let doc = serde_json::json!({ "n_trials": n_trials, "n_seeds": n_seeds, "results": results, "latency_ms": lat });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).expect("write results");
    eprintln!("wrote {out}");
}
