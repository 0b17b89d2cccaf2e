//! The worker protocol (`proto/tanren/v1/worker.proto`) and conversions between its messages and
//! tanren-core types. Validation happens on receive: a message that does not convert is an
//! `invalid_argument` status, never a panic.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("tanren.v1");
}

use tanren_core::{EpochMetrics, TrainConfig, TrialResult};
use tonic::Status;

impl From<&EpochMetrics> for v1::Epoch {
    fn from(m: &EpochMetrics) -> Self {
        v1::Epoch {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            elapsed_seconds: m.elapsed_seconds,
        }
    }
}

/// An epoch as received: numbered from 1, finite losses, an accuracy in [0, 1], time not negative.
impl TryFrom<v1::Epoch> for EpochMetrics {
    type Error = Status;

    fn try_from(m: v1::Epoch) -> Result<Self, Status> {
        let bad = |what: String| Err(Status::invalid_argument(format!("epoch {}: {what}", m.epoch)));
        if m.epoch == 0 {
            return bad("epochs are numbered from 1".into());
        }
        if !(m.train_loss.is_finite() && m.val_loss.is_finite()) {
            return bad(format!(
                "losses must be finite (train {}, val {})",
                m.train_loss, m.val_loss
            ));
        }
        if !(0.0..=1.0).contains(&m.val_accuracy) {
            return bad(format!("val_accuracy {} is not in [0, 1]", m.val_accuracy));
        }
        if !(m.elapsed_seconds.is_finite() && m.elapsed_seconds >= 0.0) {
            return bad(format!("elapsed_seconds {} is not a time", m.elapsed_seconds));
        }
        Ok(EpochMetrics {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            elapsed_seconds: m.elapsed_seconds,
        })
    }
}

/// Parse and validate the training config carried by a `TrialRequest`.
pub fn decode_config(json: &str) -> Result<TrainConfig, Status> {
    let cfg: TrainConfig =
        serde_json::from_str(json).map_err(|e| Status::invalid_argument(format!("config_json: {e}")))?;
    cfg.validate()
        .map_err(|e| Status::invalid_argument(format!("config_json: {e}")))?;
    Ok(cfg)
}

/// Parse and validate a probe plan (`ProbeRequest.plan_json`).
pub fn decode_probe_plan(json: &str) -> Result<tanren_core::probe::ProbePlan, Status> {
    let plan: tanren_core::probe::ProbePlan =
        serde_json::from_str(json).map_err(|e| Status::invalid_argument(format!("plan_json: {e}")))?;
    plan.validate()
        .map_err(|e| Status::invalid_argument(format!("plan_json: {e}")))?;
    Ok(plan)
}

/// Parse a probe report as received: every measured number finite and not negative.
pub fn decode_probe_report(json: &str) -> Result<tanren_core::probe::ProbeReport, Status> {
    let r: tanren_core::probe::ProbeReport =
        serde_json::from_str(json).map_err(|e| Status::invalid_argument(format!("report_json: {e}")))?;
    let ok = |x: f64| x.is_finite() && x >= 0.0;
    let lrs_ok = r.lr.iter().all(|c| {
        c.lrs.iter().all(|&x| ok(x) && x > 0.0)
            && c.steepest_lr.is_none_or(|x| ok(x) && x > 0.0)
            && c.divergence_lr.is_none_or(|x| ok(x) && x > 0.0)
    });
    let timing_ok = r.timing.iter().all(|t| {
        ok(t.epoch_seconds)
            && ok(t.seconds_per_step)
            && ok(t.seconds_per_eval_batch)
            && t.config.validate().is_ok()
    });
    let batch_ok = r.batch.as_ref().is_none_or(|b| {
        b.tries.iter().all(|t| t.images_per_second.is_none_or(ok))
            && b.max_batch.is_none_or(|x| x > 0)
            && b.knee_batch.is_none_or(|x| x > 0)
    });
    if !(lrs_ok && timing_ok && batch_ok && ok(r.seconds)) {
        return Err(Status::invalid_argument(
            "report_json: learning rates, times and rates must be finite and positive",
        ));
    }
    Ok(r)
}

pub fn encode_config(cfg: &TrainConfig) -> String {
    serde_json::to_string(cfg).expect("TrainConfig serializes")
}

/// Parse a trial's result and check that it agrees with itself: accuracies in [0, 1], finite losses
/// and times, a square confusion matrix with one row per class whose total is the number of test
/// predictions and whose diagonal gives the test accuracy, predictions that name a class.
pub fn decode_result(r: v1::Result) -> Result<TrialResult, Status> {
    let t: TrialResult = serde_json::from_str(&r.result_json)
        .map_err(|e| Status::invalid_argument(format!("result_json: {e}")))?;
    check_result(&t).map_err(|m| Status::invalid_argument(format!("result_json: {m}")))?;
    Ok(t)
}

fn check_result(t: &TrialResult) -> Result<(), String> {
    let unit = |name: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(format!("{name} {v} is not in [0, 1]"))
        }
    };
    unit("val_accuracy", t.val_accuracy)?;
    unit("test_accuracy", t.test_accuracy)?;
    // NaN: a class with no test images.
    for (i, a) in t
        .per_class_accuracy
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.is_nan())
    {
        unit(&format!("per_class_accuracy[{i}]"), *a)?;
    }
    for (name, v) in [
        ("val_loss", t.val_loss),
        ("test_loss", t.test_loss),
        ("train_seconds", t.train_seconds),
        ("prepare_seconds", t.prepare_seconds),
        ("inference_ms_per_image", t.inference_ms_per_image),
        ("inference_images_per_second", t.inference_images_per_second),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{name} {v} must be finite and not negative"));
        }
    }
    let classes = t.confusion.len();
    if t.per_class_accuracy.len() != classes || t.confusion.iter().any(|row| row.len() != classes) {
        return Err(format!(
            "the confusion matrix must be {classes}x{classes} with one per-class accuracy per row"
        ));
    }
    let total: u64 = t.confusion.iter().flatten().sum();
    if total != t.test_predictions.len() as u64 {
        return Err(format!(
            "the confusion matrix counts {total} test images but {} predictions were sent",
            t.test_predictions.len()
        ));
    }
    if let Some(p) = t.test_predictions.iter().find(|&&p| p as usize >= classes) {
        return Err(format!("a test prediction names class {p} of {classes}"));
    }
    if total > 0 {
        let right: u64 = (0..classes).map(|i| t.confusion[i][i]).sum();
        let acc = right as f64 / total as f64;
        if (acc - t.test_accuracy).abs() > 1e-4 {
            return Err(format!(
                "test_accuracy {} disagrees with the confusion matrix ({acc})",
                t.test_accuracy
            ));
        }
    }
    Ok(())
}

pub fn encode_result(r: &TrialResult) -> v1::Result {
    v1::Result {
        result_json: serde_json::to_string(r).expect("TrialResult serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> TrialResult {
        TrialResult {
            val_accuracy: 0.75,
            val_loss: 0.5,
            test_accuracy: 0.75,
            test_loss: 0.6,
            per_class_accuracy: vec![0.5, 1.0],
            confusion: vec![vec![1, 1], vec![0, 2]],
            test_predictions: vec![0, 1, 1, 1],
            train_seconds: 0.1,
            prepare_seconds: 0.0,
            inference_ms_per_image: 0.1,
            inference_images_per_second: 1000.0,
            parameter_count: 10,
            model_bytes: 64,
            epochs_completed: 1,
            device: "cpu".into(),
            stopped_early: false,
            peak_memory_bytes: None,
        }
    }

    #[test]
    fn a_result_that_agrees_with_itself_is_accepted_and_others_say_why_not() {
        assert!(decode_result(encode_result(&result())).is_ok());
        let cases: Vec<(fn(&mut TrialResult), &str)> = vec![
            (|t| t.val_accuracy = 1.5, "val_accuracy"),
            (|t| t.test_accuracy = 1.0, "disagrees with the confusion matrix"),
            (|t| t.test_predictions.push(1), "5 predictions"),
            (|t| t.test_predictions[0] = 7, "names class 7"),
            (|t| t.confusion[1].push(0), "2x2"),
            (|t| t.train_seconds = -1.0, "train_seconds"),
        ];
        for (break_it, says) in cases {
            let mut t = result();
            break_it(&mut t);
            let err = decode_result(encode_result(&t)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().contains(says),
                "{} should say {says}",
                err.message()
            );
        }
    }

    #[test]
    fn epochs_are_checked_on_receive() {
        let ok = v1::Epoch {
            epoch: 1,
            train_loss: 0.5,
            val_loss: 0.4,
            val_accuracy: 0.9,
            elapsed_seconds: 1.0,
        };
        assert!(EpochMetrics::try_from(ok.clone()).is_ok());
        for bad in [
            v1::Epoch { epoch: 0, ..ok },
            v1::Epoch {
                train_loss: f64::NAN,
                ..ok
            },
            v1::Epoch {
                val_accuracy: 1.01,
                ..ok
            },
            v1::Epoch {
                elapsed_seconds: -1.0,
                ..ok
            },
        ] {
            assert!(EpochMetrics::try_from(bad).is_err(), "{bad:?}");
        }
    }
}
