use super::*;
use crate::dataset_stats::ImageInfo;
use crate::estimate::{space_cost, TimeModel};
use crate::space::Bound;

fn mnist_like() -> DatasetStats {
    let infos = vec![
        ImageInfo {
            width: 28,
            height: 28,
            colour: false
        };
        500
    ];
    let labels: Vec<usize> = (0..500).map(|i| i % 10).collect();
    DatasetStats::from_images(&infos, &labels, &labels[..400], 10)
}

fn range(low: f64, high: f64) -> Bound {
    Bound::Range { low, high }
}

fn run(
    bounds: &Bounds,
    trials: Option<u32>,
    minutes: Option<f64>,
    measured: Option<&Measured>,
) -> Result<Vec<Warning>, Refusal> {
    let space = ImageSpace::from_bounds(bounds).expect("valid bounds");
    let stats = mnist_like();
    let data = DataSize {
        train: 400,
        test: 100,
    };
    let cost = space_cost(&space, 10, data, &TimeModel::prior(false), 64);
    check(
        &space,
        &Context {
            given: bounds,
            stats: Some(&stats),
            data,
            val_fraction: 0.15,
            measured,
            cost: cost.as_ref(),
            trials,
            minutes,
        },
    )
}

fn params(ws: &[Warning]) -> Vec<&str> {
    ws.iter().map(|w| w.param.as_str()).collect()
}

#[test]
fn every_absurd_bound_gets_a_warning() {
    let mut b = Bounds::new();
    b.insert("learning_rate".into(), range(1e-7, 5.0));
    b.insert("epochs".into(), range(1.0, 500.0));
    b.insert("image_size".into(), range(256.0, 512.0));
    b.insert("dropout".into(), range(0.0, 0.9));
    let ws = run(&b, Some(10), Some(5.0), None).expect("warned, not refused");
    let p = params(&ws);
    for name in [
        "learning_rate",
        "epochs",
        "image_size",
        "dropout",
        "budget.minutes",
        "budget.trials",
    ] {
        assert!(p.contains(&name), "no warning for {name}: {ws:?}");
    }
    let img = ws.iter().find(|w| w.param == "image_size").unwrap();
    assert!(img.message.contains("28 px"), "{}", img.message);
}

#[test]
fn sensible_bounds_get_no_warnings() {
    let mut b = Bounds::new();
    b.insert("image_size".into(), range(28.0, 48.0));
    b.insert("batch_size".into(), range(16.0, 64.0));
    let ws = run(&b, Some(20), None, None).expect("accepted");
    assert!(ws.is_empty(), "{ws:?}");
}

#[test]
fn a_batch_larger_than_the_training_set_is_a_warning_naming_the_limit() {
    let mut b = Bounds::new();
    b.insert("batch_size".into(), range(512.0, 1024.0));
    let ws = run(&b, Some(20), None, None).expect("it still trains: only a warning");
    let w = ws.iter().find(|w| w.param == "batch_size").expect("warned");
    assert!(w.message.contains("340"), "names the limit: {}", w.message);
    // The default bounds (up to 128) on a set of 100 training images: a warning, not a refusal.
    let space = ImageSpace::from_bounds(&Bounds::new()).unwrap();
    let ws = check(
        &space,
        &Context {
            given: &Bounds::new(),
            stats: None,
            data: DataSize { train: 100, test: 20 },
            val_fraction: 0.15,
            measured: None,
            cost: None,
            trials: Some(20),
            minutes: None,
        },
    )
    .expect("defaults are never refused");
    assert_eq!(params(&ws), vec!["batch_size"]);
}

#[test]
fn measured_limits_replace_the_rules_of_thumb() {
    let mut m = Measured::default();
    m.divergence_lr.insert("adam".into(), 3e-3);
    m.divergence_lr.insert("sgd".into(), 0.2);
    m.divergence_lr.insert("adamw".into(), 3e-3);
    m.plateau_epochs = Some(4);
    m.max_batch = Some(32);
    let mut b = Bounds::new();
    b.insert("learning_rate".into(), range(1e-4, 1e-2));
    b.insert("epochs".into(), range(1.0, 20.0));
    b.insert("image_size".into(), range(28.0, 48.0));
    let ws = run(&b, Some(20), None, Some(&m)).expect("accepted");
    let lr = ws.iter().find(|w| w.param == "learning_rate").expect("lr warned");
    assert!(lr.message.contains("probe"), "{}", lr.message);
    assert!(params(&ws).contains(&"epochs"), "{ws:?}");
    // Without the measurements, these bounds are fine.
    let plain = run(&b, Some(20), None, None).unwrap();
    assert!(plain.is_empty(), "{plain:?}");
    b.insert("batch_size".into(), range(8.0, 64.0));
    let r = run(&b, Some(20), None, Some(&m)).expect_err("past the memory limit");
    assert!(r.message.contains("32"), "{}", r.message);
}

#[test]
fn the_plateau_comes_from_trials_that_levelled_off() {
    use crate::warnings::plateau_epochs;
    // Good trials level off by epoch 4 (one at 2); a bad one is flat from the start and says nothing.
    let rise = |p: usize, n: usize, top: f64| -> Vec<f64> {
        (1..=n).map(|e| top * (e.min(p) as f64 / p as f64)).collect()
    };
    let curves = vec![
        rise(4, 10, 0.95),
        rise(3, 8, 0.93),
        rise(3, 7, 0.94),
        rise(2, 6, 0.9),
        rise(1, 5, 0.2),
        rise(1, 4, 0.1),
    ];
    assert_eq!(plateau_epochs(&curves), Some(4));
    // Still improving at their last epoch: the plateau is unknown, not their length.
    let climbing = vec![
        rise(5, 5, 0.9),
        rise(3, 3, 0.92),
        rise(4, 4, 0.91),
        rise(2, 6, 0.5),
    ];
    assert_eq!(plateau_epochs(&climbing), None);
    // Too few trials.
    assert_eq!(plateau_epochs(&curves[..2]), None);
    assert_eq!(plateau_epochs(&[]), None);
}
