//! Pruner tests on hand-built learning curves (accuracy-like values, maximised unless noted).

use super::*;
use crate::config::{Direction, PrunerConfig, SamplerConfig, StudyConfig};
use crate::space::{Distribution, ParamDef, Space};
use crate::study::{Study, TellOutcome};

fn study(pruner: PrunerConfig, dir: Direction) -> Study {
    let space = Space::new(vec![ParamDef {
        name: "x".into(),
        distribution: Distribution::Float {
            low: 0.0,
            high: 1.0,
            log: false,
        },
        condition: None,
    }])
    .unwrap();
    Study::new(StudyConfig {
        space,
        directions: vec![dir],
        sampler: SamplerConfig::Random,
        pruner,
        seed: 7,
    })
    .unwrap()
}

/// Runs one trial through `curve` (values at steps 1, 2, ...), completing it if never pruned.
/// Returns the step at which it was pruned, if it was.
fn run_curve(s: &mut Study, curve: &[f64]) -> Option<u64> {
    let (n, _) = s.ask().unwrap();
    for (i, &v) in curve.iter().enumerate() {
        let step = i as u64 + 1;
        if s.report(n, step, v).unwrap() == PruneDecision::Prune {
            s.tell(n, TellOutcome::Pruned).unwrap();
            return Some(step);
        }
    }
    s.tell(n, TellOutcome::Complete(vec![*curve.last().unwrap()]))
        .unwrap();
    None
}

fn median(n_startup_trials: u64, n_warmup_steps: u64) -> PrunerConfig {
    PrunerConfig::Median {
        n_startup_trials,
        n_warmup_steps,
        interval_steps: 1,
        n_min_trials: 1,
    }
}

#[test]
fn median_prunes_below_median_after_startup_and_warmup() {
    let mut s = study(median(3, 2), Direction::Maximize);
    // Three reference curves: medians at each step are the middle curve.
    for curve in [[0.3, 0.5, 0.6, 0.7], [0.4, 0.6, 0.7, 0.8], [0.5, 0.7, 0.8, 0.9]] {
        assert_eq!(run_curve(&mut s, &curve), None, "startup trials are never pruned");
    }
    // Worse than the median everywhere: step 1 is inside the 2-step warm-up, so it is pruned
    // at step 2, the first step judged.
    assert_eq!(run_curve(&mut s, &[0.1, 0.2, 0.3, 0.4]), Some(2));
    // At or above the median: never pruned.
    assert_eq!(run_curve(&mut s, &[0.4, 0.6, 0.7, 0.8]), None);
    // Its best value so far counts, so one bad epoch after a good one does not prune.
    assert_eq!(run_curve(&mut s, &[0.9, 0.2, 0.75, 0.85]), None);
}

#[test]
fn median_respects_direction_and_startup() {
    let mut s = study(median(2, 0), Direction::Minimize);
    assert_eq!(run_curve(&mut s, &[1.0, 0.5]), None);
    // Only one complete trial: still in start-up.
    assert_eq!(run_curve(&mut s, &[5.0, 5.0]), None);
    // Two complete trials now; a loss curve above their median is pruned at step 1.
    assert_eq!(run_curve(&mut s, &[9.0, 9.0]), Some(1));
    assert_eq!(run_curve(&mut s, &[0.1, 0.05]), None);
}

fn asha(rf: u64) -> PrunerConfig {
    PrunerConfig::Asha {
        min_resource: 1,
        reduction_factor: rf,
        min_early_stopping_rate: 0,
        bootstrap_count: 0,
    }
}

#[test]
fn asha_promotes_top_fraction_per_rung_without_waiting() {
    // rf = 2: rungs at steps 1, 2, 4, 8.
    let mut s = study(asha(2), Direction::Maximize);
    // The first trial is alone at every rung, so it is the best there and always continues.
    assert_eq!(run_curve(&mut s, &[0.5; 8]), None);
    // Rung 0 now holds {0.5, 0.4}: 2 // 2 = 1 promotable; 0.4 is not the best -> pruned at step 1.
    assert_eq!(run_curve(&mut s, &[0.4; 8]), Some(1));
    // Better than everything seen: promoted at every rung.
    assert_eq!(run_curve(&mut s, &[0.9; 8]), None);
    // Good at rung 0 (top half of {0.5, 0.4, 0.9, 0.6}) but falls behind by rung 1 (step 2).
    assert_eq!(
        run_curve(&mut s, &[0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
        Some(2)
    );
    // Steps between rungs never prune.
    let mut s2 = study(asha(4), Direction::Maximize);
    assert_eq!(run_curve(&mut s2, &[0.5; 3]), None);
    assert_eq!(run_curve(&mut s2, &[0.1, 0.9, 0.9]), Some(1));
}

#[test]
fn asha_rung_values_come_from_reports() {
    let h = Halving {
        min_resource: 1,
        rf: 3,
        rate: 0,
        bootstrap: 0,
    };
    let t = TrialRecord {
        number: 0,
        params: Default::default(),
        status: TrialStatus::Complete,
        values: None,
        // Reports at steps 2, 5 and 9: rung 0 (step 1) and rung 1 (step 3) are first reached by
        // the reports at steps 2 and 5, rung 2 (step 9) by the report at step 9.
        intermediate: vec![(2, 0.1), (5, 0.2), (9, 0.3)],
    };
    assert_eq!(h.rung_values(&t), vec![0.1, 0.2, 0.3]);
}

#[test]
fn hyperband_brackets_follow_optuna_budgets() {
    assert_eq!(n_brackets(1, 27, 3), 4);
    assert_eq!(n_brackets(1, 26, 3), 3);
    assert_eq!(n_brackets(1, 1, 3), 1);
    // Budgets for 4 brackets, rf 3: ceil(4*27/4)=27, ceil(4*9/3)=12, ceil(4*3/2)=6, ceil(4/1)=4.
    let mut counts = [0u32; 4];
    for n in 0..4900 {
        counts[bracket_of(1, n, 4, 3) as usize] += 1;
    }
    let share = |i: usize| counts[i] as f64 / 4900.0;
    for (i, want) in [27.0, 12.0, 6.0, 4.0].iter().enumerate() {
        assert!((share(i) - want / 49.0).abs() < 0.03, "bracket {i}: {}", share(i));
    }
}

#[test]
fn hyperband_waits_for_a_complete_trial_when_max_resource_is_auto() {
    let hb = PrunerConfig::Hyperband {
        min_resource: 1,
        max_resource: None,
        reduction_factor: 3,
        bootstrap_count: 0,
    };
    let mut s = study(hb, Direction::Maximize);
    let (n, _) = s.ask().unwrap();
    assert_eq!(s.report(n, 1, 0.5).unwrap(), PruneDecision::Continue);
    s.tell(n, TellOutcome::Complete(vec![0.5])).unwrap();
    // With max_resource known, a clearly worse trial is pruned in some bracket at some rung.
    let mut pruned = 0;
    for _ in 0..20 {
        run_curve(&mut s, &[0.9; 9]);
    }
    for _ in 0..20 {
        pruned += run_curve(&mut s, &[0.01; 9]).is_some() as u32;
    }
    assert!(pruned > 10, "{pruned}");
}

#[test]
fn nan_values_are_pruned() {
    let mut s = study(asha(2), Direction::Minimize);
    assert_eq!(run_curve(&mut s, &[1.0, 1.0]), None);
    assert_eq!(run_curve(&mut s, &[f64::NAN]), Some(1));
}
