//! Unit tests for the TPE internals: weights, gamma, split order, estimator sanity.

use super::parzen::{default_weights, DimSpec, Parzen, Settings};
use super::*;

const S: Settings = Settings {
    prior_weight: 1.0,
    magic_clip: true,
    consider_endpoints: false,
};

#[test]
fn weights_and_gamma_match_optuna() {
    assert_eq!(default_weights(3), vec![1.0; 3]);
    let w = default_weights(30);
    assert_eq!(w.len(), 30);
    assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
    assert!((w[4] - 1.0).abs() < 1e-12);
    assert_eq!(gamma(0, 1), 0);
    assert_eq!(gamma(11, 1), 2);
    assert_eq!(gamma(1000, 1), 25);
    assert_eq!(gamma(1000, 2), 100);
}

#[test]
fn estimator_density_integrates_to_one() {
    let obs = vec![vec![0.2, 0.5, 0.55]];
    let p = Parzen::new(
        &obs,
        &[DimSpec::Num {
            low: 0.0,
            high: 1.0,
            log: false,
            step: None,
        }],
        None,
        S,
    );
    let n = 20_000;
    let xs: Vec<Vec<f64>> = (0..n).map(|i| vec![(i as f64 + 0.5) / n as f64]).collect();
    let integral: f64 = p.log_pdf(&xs).iter().map(|l| l.exp() / n as f64).sum();
    assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    // Discrete: masses over the grid sum to one.
    let p = Parzen::new(
        &[vec![2.0, 3.0]],
        &[DimSpec::Num {
            low: 1.0,
            high: 8.0,
            log: true,
            step: Some(1.0),
        }],
        None,
        S,
    );
    let xs: Vec<Vec<f64>> = (1..=8).map(|i| vec![i as f64]).collect();
    let total: f64 = p.log_pdf(&xs).iter().map(|l| l.exp()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let p = Parzen::new(&[vec![2.0]], &[DimSpec::Cat { n: 4 }], None, S);
    let xs: Vec<Vec<f64>> = (0..4).map(|i| vec![i as f64]).collect();
    let total: f64 = p.log_pdf(&xs).iter().map(|l| l.exp()).sum();
    assert!((total - 1.0).abs() < 1e-12, "{total}");
}

#[test]
fn samples_stay_in_bounds() {
    let mut rng = Rng::new(1);
    let specs = [
        DimSpec::Num {
            low: 1e-4,
            high: 1e-1,
            log: true,
            step: None,
        },
        DimSpec::Num {
            low: 16.0,
            high: 128.0,
            log: false,
            step: Some(16.0),
        },
        DimSpec::Cat { n: 3 },
    ];
    let obs = vec![vec![1e-3, 5e-2], vec![32.0, 128.0], vec![1.0, 2.0]];
    let p = Parzen::new(&obs, &specs, None, S);
    for s in p.sample(&mut rng, 500) {
        assert!((1e-4..=1e-1).contains(&s[0]));
        assert!((16.0..=128.0).contains(&s[1]) && s[1] % 16.0 == 0.0);
        assert!([0.0, 1.0, 2.0].contains(&s[2]));
    }
}

fn rec(number: u64, status: TrialStatus, value: Option<f64>, inter: Vec<(u64, f64)>) -> TrialRecord {
    TrialRecord {
        number,
        params: Params::new(),
        status,
        values: value.map(|v| vec![v]),
        intermediate: inter,
    }
}

#[test]
fn split_puts_complete_first_then_pruned_by_progress_and_running_above() {
    let ts = [
        rec(0, TrialStatus::Complete, Some(5.0), vec![]),
        rec(1, TrialStatus::Complete, Some(1.0), vec![]),
        rec(2, TrialStatus::Pruned, None, vec![(1, 0.0)]),
        rec(3, TrialStatus::Pruned, None, vec![(1, 9.0), (3, 8.0)]),
        rec(4, TrialStatus::Running, None, vec![]),
    ];
    let used: Vec<&TrialRecord> = ts.iter().collect();
    let (below, above) = split(&used, 3, &[Direction::Minimize]);
    let nums = |v: &[&TrialRecord]| v.iter().map(|t| t.number).collect::<Vec<_>>();
    // Both complete trials, then the pruned trial that got further (step 3) despite its value.
    assert_eq!(nums(&below), vec![0, 1, 3]);
    assert_eq!(nums(&above), vec![2, 4]);
    let (below, _) = split(&used, 1, &[Direction::Maximize]);
    assert_eq!(nums(&below), vec![0]);
}
