use super::*;
use crate::space::{Bound, Bounds};

fn data() -> DataSize {
    DataSize {
        train: 1000,
        test: 200,
    }
}

fn cfg(image: u32, batch: u32, epochs: u32) -> TrainConfig {
    let mut p = crate::space::seed_params();
    p.insert("image_size".into(), ParamValue::Int(image as i64));
    p.insert("batch_size".into(), ParamValue::Int(batch as i64));
    p.insert("epochs".into(), ParamValue::Int(epochs as i64));
    train_config(&p, 10, 0).expect("valid")
}

#[test]
fn flops_and_weights_of_the_seed_cnn() {
    let spec = ModelSpec::seed_cnn(10, 28);
    // conv 3->16 3x3 at 28x28, then 16*14*14 features into 10 classes.
    assert_eq!(forward_flops(&spec), 2 * 3 * 9 * 16 * 784 + 2 * 16 * 14 * 14 * 10);
    assert_eq!(weight_count(&spec), 3 * 16 * 9 + 16 + (16 * 14 * 14 + 1) * 10);
}

#[test]
fn work_grows_with_pixels_and_shrinks_with_batch() {
    let d = data();
    assert!(epoch_work(&cfg(64, 32, 1), d) > 3.0 * epoch_work(&cfg(28, 32, 1), d));
    assert!(epoch_work(&cfg(28, 8, 1), d) > epoch_work(&cfg(28, 128, 1), d));
    let m = TimeModel::prior(false);
    let (one, five) = (
        m.trial_seconds(&cfg(28, 32, 1), d),
        m.trial_seconds(&cfg(28, 32, 5), d),
    );
    let per_epoch = m.epoch_seconds(&cfg(28, 32, 1), d);
    assert!((five - one - 4.0 * per_epoch).abs() < 1e-9 * five);
}

/// A device unlike the prior: slower per image, a steeper exponent, a costly step.
pub(crate) fn device() -> TimeModel {
    TimeModel {
        seconds_per_work: 0.03,
        exponent: 0.9,
        step_seconds: 4e-3,
        call_seconds: 1e-3,
        overhead_seconds: 5.0,
        ..TimeModel::prior(false)
    }
}

/// Trials measured on `truth` with ±10% noise (alternating) on their training time, and their
/// inference timings.
fn measured_on(truth: &TimeModel, configs: &[(u32, u32, u32)]) -> Vec<Measurement> {
    let d = data();
    configs
        .iter()
        .enumerate()
        .map(|(i, &(img, batch, epochs))| {
            let c = cfg(img, batch, epochs);
            let noise = if i % 2 == 0 { 1.1 } else { 1.0 / 1.1 };
            let train = noise * epochs as f64 * truth.epoch_seconds(&c, d);
            let per_image = truth.seconds_per_work * image_work(&c).1.powf(truth.exponent);
            Measurement {
                wall_seconds: Some(train + truth.overhead_seconds + truth.final_seconds(&c, d)),
                inference_ms: Some(1000.0 * (truth.call_seconds + per_image)),
                inference_ips: Some(64.0 / (truth.call_seconds + 64.0 * per_image)),
                ..Measurement::epochs_only(c, d, epochs, train)
            }
        })
        .collect()
}

#[test]
fn fit_recovers_the_device_and_the_overhead() {
    let truth = device();
    let d = data();
    let measured = measured_on(
        &truth,
        &[(28, 16, 3), (48, 64, 2), (64, 8, 1), (32, 32, 4), (96, 4, 1)],
    );
    let fitted = TimeModel::fit(&TimeModel::prior(false), &measured);
    assert_eq!(fitted.fitted_on, 5);
    // The exponent is found (the prior says 0.8), and the step's cost roughly (±10% noise on
    // epochs where steps are a small share leaves it loose; batch 2 below pins what it costs).
    assert!((fitted.exponent - 0.9).abs() < 0.1, "{fitted:?}");
    assert!((0.5..2.0).contains(&(fitted.step_seconds / 4e-3)), "{fitted:?}");
    // Configurations it never saw: another image size (within 15%), and a batch half the
    // smallest measured and one four times the largest (extrapolated: within the bench's 30%).
    for (img, batch, within) in [(40, 32, 0.15), (24, 2, 0.3), (56, 256, 0.3)] {
        let c = cfg(img, batch, 3);
        let (got, want) = (fitted.trial_seconds(&c, d), truth.trial_seconds(&c, d));
        assert!(
            (got / want - 1.0).abs() < within,
            "{img} px batch {batch}: {got} vs {want}; {fitted:?}"
        );
    }
    assert!((fitted.overhead_seconds - 5.0).abs() < 0.6, "{fitted:?}");
    // The spread is the noise, shrunk towards 0.25, and narrower than the prior's.
    assert!(fitted.log_sd < TimeModel::prior(false).log_sd);
    assert!(fitted.log_sd > 0.09, "{fitted:?}");
    // Nothing usable: the prior comes back.
    assert_eq!(
        TimeModel::fit(&TimeModel::prior(true), &[]),
        TimeModel::prior(true)
    );
}

#[test]
fn epochs_scale_with_the_dataset_and_steps_with_the_batch() {
    let m = device();
    let c = cfg(32, 32, 1);
    let (small, large) = (
        DataSize {
            train: 600,
            test: 100,
        },
        DataSize {
            train: 6000,
            test: 100,
        },
    );
    // Ten times the images cost ten times the epoch (the old model's single power made it ~5x).
    let ratio = m.epoch_seconds(&c, large) / m.epoch_seconds(&c, small);
    assert!((ratio - 10.0).abs() < 0.2, "{ratio}");
    // Halving the batch adds the fixed cost of the extra steps, and nothing else.
    let d = data();
    let (fit, _) = split(&c, d);
    let extra = m.epoch_seconds(&cfg(32, 16, 1), d) - m.epoch_seconds(&c, d);
    let steps = (fit / 16.0).ceil() - (fit / 32.0).ceil();
    let weights = WEIGHT_COST * weight_count(&c.model) as f64 / 1e9;
    let want = steps * (m.step_seconds + m.seconds_per_work * weights.powf(m.exponent));
    assert!((extra / want - 1.0).abs() < 1e-6, "{extra} vs {want}");
    // The inference timing stops on its budgets: a huge network's final part is its evaluation plus
    // about 1.5 s, not 3,400 more images.
    let huge = cfg(256, 32, 1);
    let per_image = m.seconds_per_work * image_work(&huge).1.powf(m.exponent);
    let eval = (d.test as f64 + split(&huge, d).1) * per_image;
    let timing = m.final_seconds(&huge, d) - eval;
    assert!(
        timing < 1.6 + 6.0 * (64.0 * per_image + m.call_seconds) + 0.1,
        "{timing}"
    );
}

#[test]
fn space_cost_orders_best_mean_worst_and_sees_wider_bounds() {
    let d = data();
    let m = TimeModel::prior(false);
    let space = ImageSpace::from_bounds(&Bounds::new()).expect("defaults");
    let c = space_cost(&space, 10, d, &m, 128).expect("cost");
    assert!(c.best_trial_seconds <= c.mean_trial_seconds, "{c:?}");
    assert!(c.mean_trial_seconds <= c.worst_trial_seconds, "{c:?}");
    // The worst corner of the default space: biggest images, most epochs, smallest batches.
    assert_eq!(c.worst_params["image_size"], ParamValue::Int(128));
    assert_eq!(c.worst_params["epochs"], ParamValue::Int(10));
    assert_eq!(c.worst_params["batch_size"], ParamValue::Int(8));
    let mut wide = Bounds::new();
    wide.insert(
        "image_size".into(),
        Bound::Range {
            low: 28.0,
            high: 256.0,
        },
    );
    let w = space_cost(&ImageSpace::from_bounds(&wide).expect("wide"), 10, d, &m, 128).expect("cost");
    assert!(
        w.worst_trial_seconds > 2.0 * c.worst_trial_seconds,
        "{w:?} vs {c:?}"
    );
    // Deterministic: the same numbers every call.
    assert_eq!(space_cost(&space, 10, d, &m, 128), Some(c));
}

#[test]
fn remaining_simulates_a_skewed_rest_and_keeps_its_floor() {
    let base = Remaining {
        log_sd: 1e-6,
        scale_log_sd: 1e-6,
        parallel: 1,
        ..Remaining::default()
    };
    // Known pieces alone: their sum spread over the slots, but never less than the longest.
    let (mid, [lo, hi]) = remaining(&Remaining {
        pieces: &[(10.0, 1e-6), (10.0, 1e-6), (10.0, 1e-6)],
        parallel: 2,
        ..base.clone()
    });
    assert!((mid - 15.0).abs() < 1e-3 && (lo - 15.0).abs() < 1e-3 && (hi - 15.0).abs() < 1e-3);
    let (mid, _) = remaining(&Remaining {
        pieces: &[(10.0, 1e-6), (20.0, 1e-6)],
        parallel: 2,
        ..base.clone()
    });
    assert!((mid - 20.0).abs() < 1e-3, "{mid}");
    // Two trials from a space where one configuration in ten costs 100×: usually 2 s, and the
    // range reaches the expensive one (drawn with 19% odds), where mean ± spread would not.
    let space: Vec<f64> = [1.0; 9].into_iter().chain([100.0]).collect();
    let (mid, [lo, hi]) = remaining(&Remaining {
        rest: 2,
        space: &space,
        ..base.clone()
    });
    assert!((mid - 2.0).abs() < 1e-3 && (lo - 2.0).abs() < 1e-3, "{mid} {lo}");
    assert!((hi - 101.0).abs() < 1e-3, "{hi}");
    // Recent trials only, as when the space is unknown: drawn from them.
    let (mid, _) = remaining(&Remaining {
        rest: 3,
        recent: &[5.0, 5.0, 5.0],
        ..base.clone()
    });
    assert!((mid - 15.0).abs() < 1e-3, "{mid}");
    // Many trials: the normal of the same moments, centred on the mean.
    let (mid, [lo, hi]) = remaining(&Remaining {
        rest: 1000,
        space: &[1.0, 3.0],
        ..base.clone()
    });
    assert!((mid / 2000.0 - 1.0).abs() < 0.01, "{mid}");
    assert!(lo > 1930.0 && hi < 2070.0 && hi - lo > 50.0, "{lo} {hi}");
    // Nothing ends before its longest piece, whatever the slots: a 60 s trial beside a 4 s one on
    // 8 slots leaves about 60 s, and its own uncertainty reaches below it.
    let r = Remaining {
        pieces: &[(4.0, 0.3), (60.0, 0.3)],
        parallel: 8,
        log_sd: 0.3,
        scale_log_sd: 0.1,
        ..base
    };
    let (mid, [lo, hi]) = remaining(&r);
    assert!((mid / 60.0 - 1.0).abs() < 0.05, "{mid}");
    assert!(lo < 50.0 && hi > 70.0 && lo > 30.0 && hi < 100.0, "{lo} {hi}");
    // The same answer every call.
    assert_eq!(remaining(&r), remaining(&r));
}

#[test]
fn remaining_is_calibrated_when_trials_come_from_its_assumptions() {
    // A heavy-tailed space (log-normal trial times, a few 20× the median), studies drawing 4 more
    // trials from it, each off the model by a log-sd of 0.3, all off by a shared 0.1: the 80% range
    // should hold the truth about 80% of the time, and miss about as often on each side.
    let mut mix = Mix(0xca11_b7a7);
    let mut normal = move || {
        let (u1, u2) = (1.0 - mix.unit(), mix.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let space: Vec<f64> = (0..128).map(|_| 5.0 * (1.2 * normal()).exp()).collect();
    let r = Remaining {
        rest: 4,
        space: &space,
        log_sd: 0.3,
        scale_log_sd: 0.1,
        parallel: 1,
        ..Remaining::default()
    };
    let (_, [lo, hi]) = remaining(&r);
    let mut pick = Mix(0x51);
    let (mut below, mut above, n) = (0, 0, 2000);
    for _ in 0..n {
        let shared = (0.1 * normal()).exp();
        let truth: f64 = (0..4)
            .map(|_| {
                let i = ((pick.unit() * space.len() as f64) as usize).min(space.len() - 1);
                space[i] * (0.3 * normal()).exp()
            })
            .sum::<f64>()
            * shared;
        below += (truth < lo) as usize;
        above += (truth > hi) as usize;
    }
    let held = 1.0 - (below + above) as f64 / n as f64;
    assert!(
        (0.75..0.85).contains(&held),
        "held {held}: {below} below, {above} above"
    );
    assert!(below.abs_diff(above) < n / 20, "{below} below, {above} above");
}
