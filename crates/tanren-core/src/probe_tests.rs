use super::*;
use crate::advisor::advise;
use crate::dataset_stats::{DatasetStats, ImageInfo};
use crate::estimate::{epoch_work, TimeModel};
use crate::warnings::{check, Context};

/// A range test's loss: flat at low learning rates, falling fastest around `fast`, lowest a little
/// after, then rising steeply past `blow`.
fn curve(fast: f64, blow: f64, steps: u32) -> (Vec<f64>, Vec<Option<f64>>) {
    let plan_lr = |i: u32| (1e-6f64.ln() + i as f64 / (steps - 1) as f64 * (10f64.ln() - 1e-6f64.ln())).exp();
    let lrs: Vec<f64> = (0..steps).map(plan_lr).collect();
    let losses = lrs
        .iter()
        .map(|&lr| {
            let x = (lr / fast).ln();
            // A logistic fall centred at `fast` (steepest there), then growth past `blow`.
            let fall = 2.3 - 2.0 / (1.0 + (-2.0 * x).exp());
            let rise = if lr > blow { (lr / blow).powi(3) } else { 0.0 };
            let l = fall + rise;
            l.is_finite().then_some(l)
        })
        .collect();
    (lrs, losses)
}

#[test]
fn range_test_finds_the_fast_fall_and_the_blow_up() {
    let (lrs, losses) = curve(3e-3, 0.1, 200);
    let (steepest, divergence) = analyse_lr(&lrs, &losses);
    let st = steepest.expect("a steepest point");
    assert!((1e-3..1e-2).contains(&st), "steepest {st}");
    let d = divergence.expect("it blew up");
    assert!((0.1..0.6).contains(&d), "divergence {d}");
}

/// `curve` over `steps` from 1e-5 to 10 with deterministic batch noise of ±`noise`.
fn noisy(fast: f64, blow: f64, steps: u32, noise: f64) -> (Vec<f64>, Vec<Option<f64>>) {
    let lrs: Vec<f64> = (0..steps)
        .map(|i| (1e-5f64.ln() + i as f64 / (steps - 1) as f64 * (10f64.ln() - 1e-5f64.ln())).exp())
        .collect();
    let mut seed = 0x2545_f491_u64;
    let losses = lrs
        .iter()
        .map(|&lr| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let x = (lr / fast).ln();
            let fall = 2.3 - 2.0 / (1.0 + (-2.0 * x).exp());
            let rise = if lr > blow { (lr / blow).powi(3) } else { 0.0 };
            let l = (fall + rise) * (1.0 + noise * (2.0 * u - 1.0));
            l.is_finite().then_some(l)
        })
        .collect();
    (lrs, losses)
}

#[test]
fn short_sweeps_find_the_steepest_point_too() {
    // A CPU sweeps in 20-100 steps: the smoothing must not drag the steepest point a decade late.
    // Batches are noisy: ±20% per step must not move it either.
    for (steps, noise) in [20, 40, 60, 100, 300]
        .into_iter()
        .flat_map(|s| [(s, 0.05), (s, 0.2)])
    {
        for fast in [3e-4, 3e-3, 3e-2] {
            let (lrs, losses) = noisy(fast, 30.0 * fast, steps, noise);
            let (st, d) = analyse_lr(&lrs, &losses);
            let st = st.unwrap_or_else(|| panic!("{steps} steps, {fast}: no steepest point"));
            assert!(
                (fast / 3.0..fast * 3.0).contains(&st),
                "{steps} steps, noise {noise}: steepest {st} for a fall at {fast}"
            );
            assert!(d.is_some(), "{steps} steps, {fast}: never blew up");
        }
    }
}

#[test]
fn the_sweep_fits_its_time_share() {
    // 7.5 s left at 40 ms a step: 168 steps fit, the plan allows 100.
    assert_eq!(sweep_steps(7.5, 0.04, 100), 100);
    // At 0.25 s a step only 27 fit: the sweep takes 27 steps and still reaches the top.
    assert_eq!(sweep_steps(7.5, 0.25, 100), 27);
    // Slower still: the floor, and the test will be cut short (and say so).
    assert_eq!(sweep_steps(7.5, 2.0, 100), MIN_SWEEP_STEPS);
    assert_eq!(sweep_steps(7.5, 0.0, 100), 100);
    let p = ProbePlan {
        lr_steps: 100,
        ..sample_plan()
    };
    for steps in [20, 27, 100] {
        assert!((p.lr_of(0, steps) / p.lr_min - 1.0).abs() < 1e-9);
        assert!((p.lr_of(steps - 1, steps) / p.lr_max - 1.0).abs() < 1e-9);
    }
}

/// A plan for the arithmetic tests (the 28 px space's).
fn sample_plan() -> ProbePlan {
    let a = advise(&stats(28, 6000), data(6000), None, &TimeModel::prior(false));
    let space = ImageSpace::from_bounds(&a.bounds).unwrap();
    let limits = PlanLimits {
        cuda: false,
        deadline_seconds: 30.0,
    };
    plan(&space, 10, data(6000), &[OptimizerKind::Adam], &limits).unwrap()
}

#[test]
fn a_cut_short_test_is_not_swept() {
    let c = |lrs: Vec<f64>, d: Option<f64>| LrCurve {
        optimizer: OptimizerKind::Adam,
        losses: lrs.iter().map(|_| Some(2.3)).collect(),
        lrs,
        steepest_lr: Some(1e-5),
        divergence_lr: d,
    };
    assert!(!c(vec![1e-5, 1e-4, 1e-3], None).swept());
    assert!(c(vec![1e-5, 1e-2, 0.2], None).swept());
    assert!(c(vec![1e-5, 1e-3], Some(1e-3)).swept());
}

#[test]
fn a_loss_that_stops_being_a_number_diverges_there_and_a_calm_one_never() {
    let lrs: Vec<f64> = (0..50).map(|i| 1e-4 * 1.2f64.powi(i)).collect();
    let mut losses: Vec<Option<f64>> = (0..50).map(|i| Some(2.3 - 0.02 * i as f64)).collect();
    let (_, d) = analyse_lr(&lrs, &losses);
    assert_eq!(d, None, "a steadily falling loss never diverged");
    losses[30] = None;
    losses.truncate(31);
    let (_, d) = analyse_lr(&lrs, &losses);
    assert_eq!(d, Some(lrs[30]));
}

#[test]
fn knee_and_memory_limit() {
    let t = |batch, ips| BatchTry {
        batch,
        images_per_second: ips,
    };
    let cpu = [
        t(8, Some(100.0)),
        t(16, Some(190.0)),
        t(32, Some(350.0)),
        t(64, Some(370.0)),
        t(128, Some(380.0)),
    ];
    assert_eq!(knee(&cpu), Some(32));
    assert_eq!(memory_limit(&cpu), None, "nothing ran out of memory");
    let gpu = [t(256, Some(5e4)), t(512, Some(9e4)), t(1024, None), t(2048, None)];
    assert_eq!(memory_limit(&gpu), Some(512));
    assert_eq!(knee(&gpu), Some(512));
    assert_eq!(knee(&[t(8, None)]), None);
}

fn stats(side: u32, n: usize) -> DatasetStats {
    let infos = vec![
        ImageInfo {
            width: side,
            height: side,
            colour: false
        };
        n
    ];
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    DatasetStats::from_images(&infos, &labels, &labels[..n * 4 / 5], 10)
}

fn data(n: usize) -> DataSize {
    DataSize {
        train: n * 4 / 5,
        test: n / 5,
    }
}

#[test]
fn plans_are_valid_bounded_and_span_the_space() {
    for (side, n) in [(8, 100), (28, 6000), (32, 1200), (100, 500), (500, 20000)] {
        let a = advise(&stats(side, n), data(n), None, &TimeModel::prior(false));
        let space = ImageSpace::from_bounds(&a.bounds).unwrap();
        for cuda in [false, true] {
            let p = plan(
                &space,
                10,
                data(n),
                &[OptimizerKind::Adam, OptimizerKind::Sgd],
                &PlanLimits {
                    cuda,
                    deadline_seconds: 30.0,
                },
            )
            .unwrap_or_else(|| panic!("{side} px: no plan"));
            p.validate().unwrap_or_else(|e| panic!("{side} px: {e}"));
            assert!(
                (3..=5).contains(&p.timing.len()),
                "{side} px: {} timings",
                p.timing.len()
            );
            let works: Vec<f64> = p.timing.iter().map(|c| epoch_work(c, data(n))).collect();
            let (lo, hi) = works
                .iter()
                .fold((f64::MAX, 0f64), |(a, b), &w| (a.min(w), b.max(w)));
            assert!(
                hi > 2.0 * lo,
                "{side} px: timings span too little work: {works:?}"
            );
            let fit = (data(n).train as f64 * 0.85) as u32;
            assert!(p.batches.iter().all(|&b| b <= fit.max(8)));
            assert!((p.lr_at(0) / p.lr_min - 1.0).abs() < 1e-9);
            assert!((p.lr_at(p.lr_steps - 1) / p.lr_max - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn probe_timings_calibrate_the_time_model() {
    // A device whose epochs take 0.02 s × work^0.85: five probe timings teach the model that, so it
    // predicts a configuration it never saw within 10% (the prior is off by far more).
    let n = 6000;
    let a = advise(&stats(28, n), data(n), None, &TimeModel::prior(false));
    let space = ImageSpace::from_bounds(&a.bounds).unwrap();
    let limits = PlanLimits {
        cuda: false,
        deadline_seconds: 30.0,
    };
    let p = plan(&space, 10, data(n), &[OptimizerKind::Adam], &limits).unwrap();
    let device = crate::estimate::tests::device();
    let truth = |c: &TrainConfig| device.epoch_seconds(c, data(n));
    let report = ProbeReport {
        device: "cpu".into(),
        lr: vec![],
        batch: None,
        timing: p
            .timing
            .iter()
            .map(|c| TimingProbe {
                config: c.clone(),
                steps: 4,
                seconds_per_step: 0.0,
                seconds_per_eval_batch: 0.0,
                epoch_seconds: truth(c),
            })
            .collect(),
        overhead: None,
        seconds: 1.0,
        cut_short: vec![],
    };
    let model = TimeModel::fit(
        &TimeModel::prior(false),
        &measurements(&report.timing, None, data(n)),
    );
    assert_eq!(model.fitted_on, p.timing.len());
    let mut other = p.base.clone();
    other.batch_size = 48;
    let predicted = model.epoch_seconds(&other, data(n));
    let ratio = predicted / truth(&other);
    assert!((0.9..1.1).contains(&ratio), "predicted/true = {ratio}");
}

#[test]
fn advice_from_probes_names_them_and_draws_no_warnings() {
    let n = 6000;
    let mut m = Measured::default();
    m.steepest_lr.insert("adam".into(), 3e-3);
    m.divergence_lr.insert("adam".into(), 0.1);
    m.divergence_lr.insert("sgd".into(), 0.5);
    m.knee_batch = Some(32);
    let a = advise(&stats(28, n), data(n), Some(&m), &TimeModel::prior(false));
    let lr = a.suggestions.iter().find(|s| s.param == "learning_rate").unwrap();
    assert!(
        lr.reason.contains("3e-3") && lr.reason.contains("0.1"),
        "{}",
        lr.reason
    );
    match &a.bounds["learning_rate"] {
        crate::space::Bound::Range { low, high } => {
            assert!(*low < 3e-3 && 3e-3 < *high && *high <= 0.1 / 3.0, "{low}..{high}");
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(
        a.bounds["batch_size"],
        crate::space::Bound::Range {
            low: 16.0,
            high: 64.0
        }
    );
    // The warnings for `bounds` with what the probes measured and the advised budget.
    let warnings = |bounds: &crate::space::Bounds| {
        check(
            &ImageSpace::from_bounds(bounds).unwrap(),
            &Context {
                given: bounds,
                stats: None,
                data: data(n),
                val_fraction: 0.15,
                measured: Some(&m),
                cost: None,
                trials: Some(a.budget.trials),
                minutes: None,
            },
        )
        .unwrap()
    };
    let ws = warnings(&a.bounds);
    assert!(ws.is_empty(), "{ws:?}");
    // Past the measured blow-up: a warning naming it.
    let mut past = a.bounds.clone();
    past.insert(
        "learning_rate".into(),
        crate::space::Bound::Range { low: 1e-3, high: 0.5 },
    );
    let ws = warnings(&past);
    assert!(
        ws.iter()
            .any(|w| w.param == "learning_rate" && w.message.contains("blew up")),
        "{ws:?}"
    );
}

#[test]
fn report_round_trips_and_feeds_measured() {
    let report = ProbeReport {
        device: "cuda:0".into(),
        lr: vec![LrCurve {
            optimizer: OptimizerKind::Adam,
            lrs: vec![1e-3, 1e-2],
            losses: vec![Some(2.0), None],
            steepest_lr: Some(1e-3),
            divergence_lr: Some(1e-2),
        }],
        batch: Some(BatchProbe {
            tries: vec![],
            max_batch: Some(512),
            knee_batch: Some(256),
        }),
        timing: vec![],
        overhead: None,
        seconds: 3.0,
        cut_short: vec![],
    };
    let back: ProbeReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back, report);
    let m = Measured::from_report(&report);
    assert_eq!(m.divergence_lr["adam"], 1e-2);
    assert_eq!(m.steepest_lr["adam"], 1e-3);
    assert_eq!(
        (m.max_batch, m.knee_batch, m.on_cuda()),
        (Some(512), Some(256), Some(true))
    );
}

#[test]
fn a_range_test_cut_short_at_low_rates_says_nothing_about_the_steepest_point() {
    let curve = |lrs: Vec<f64>| LrCurve {
        optimizer: OptimizerKind::Adam,
        losses: lrs.iter().map(|_| Some(1.0)).collect(),
        lrs,
        steepest_lr: Some(1e-6),
        divergence_lr: None,
    };
    let report = |c| ProbeReport {
        device: "cpu".into(),
        lr: vec![c],
        batch: None,
        timing: vec![],
        overhead: None,
        seconds: 10.0,
        cut_short: vec!["cut".into()],
    };
    let m = Measured::from_report(&report(curve(vec![1e-6, 2e-6, 4e-6])));
    assert!(m.steepest_lr.is_empty(), "{m:?}");
    let m = Measured::from_report(&report(curve(vec![1e-6, 1e-3, 0.5])));
    assert_eq!(m.steepest_lr["adam"], 1e-6);
}
