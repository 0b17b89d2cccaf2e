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

#[test]
fn fit_recovers_the_scale_and_the_overhead() {
    let truth = 0.2;
    let d = data();
    let measured: Vec<Measurement> = [(28, 16, 3), (48, 64, 2), (64, 8, 1), (32, 32, 4)]
        .iter()
        .enumerate()
        .map(|(i, &(img, batch, epochs))| {
            let c = cfg(img, batch, epochs);
            // ±10% noise, alternating.
            let noise = if i % 2 == 0 { 1.1 } else { 1.0 / 1.1 };
            let train = truth * noise * epochs as f64 * epoch_work(&c, d).powf(0.8);
            Measurement {
                wall_seconds: Some(
                    train
                        + 5.0
                        + TimeModel {
                            seconds_per_work: truth,
                            exponent: 0.8,
                            ..TimeModel::prior(false)
                        }
                        .final_seconds(&c, d),
                ),
                config: c,
                data: d,
                epochs,
                train_seconds: train,
            }
        })
        .collect();
    let fitted = TimeModel::fit(&TimeModel::prior(false), &measured);
    assert_eq!(fitted.fitted_on, 4);
    // The exponent 0.8 is found (the prior says 0.7).
    assert!((fitted.exponent - 0.8).abs() < 0.05, "{fitted:?}");
    let c = cfg(40, 32, 3);
    let want = truth * epoch_work(&c, d).powf(0.8);
    assert!(
        (fitted.epoch_seconds(&c, d) / want - 1.0).abs() < 0.1,
        "{fitted:?}"
    );
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
