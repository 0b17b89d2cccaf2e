//! Learning-rate schedules as a pure function of the step, so they are tested without torch and the
//! training loop only calls `set_lr` once per step.

use std::f64::consts::PI;
use tanren_core::LrSchedule;

/// One-cycle: fraction of steps spent warming up, start = peak / DIV, end = peak / FINAL_DIV
/// (PyTorch's `OneCycleLR` defaults).
const ONE_CYCLE_WARMUP: f64 = 0.3;
const ONE_CYCLE_DIV: f64 = 25.0;
const ONE_CYCLE_FINAL_DIV: f64 = 1e4;

fn cosine(from: f64, to: f64, t: f64) -> f64 {
    to + (from - to) * 0.5 * (1.0 + (PI * t.clamp(0.0, 1.0)).cos())
}

/// Learning rate for 0-based `step` of `total` steps, peaking at `base`.
pub fn lr_at(schedule: LrSchedule, base: f64, step: u64, total: u64) -> f64 {
    let total = total.max(1);
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Cosine => cosine(base, 0.0, step as f64 / total as f64),
        LrSchedule::OneCycle => {
            let warm = ((total as f64 * ONE_CYCLE_WARMUP).round() as u64).max(1);
            let start = base / ONE_CYCLE_DIV;
            if step < warm {
                cosine(start, base, step as f64 / warm as f64)
            } else {
                let rest = (total - warm).max(1);
                cosine(
                    base,
                    start / ONE_CYCLE_FINAL_DIV,
                    (step - warm) as f64 / rest as f64,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_the_right_shape() {
        assert_eq!(lr_at(LrSchedule::Constant, 0.1, 57, 100), 0.1);
        assert_eq!(lr_at(LrSchedule::Cosine, 0.1, 0, 100), 0.1);
        assert!((lr_at(LrSchedule::Cosine, 0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(lr_at(LrSchedule::Cosine, 0.1, 99, 100) < 1e-3);
        let oc: Vec<f64> = (0..100)
            .map(|s| lr_at(LrSchedule::OneCycle, 0.1, s, 100))
            .collect();
        assert!((oc[0] - 0.004).abs() < 1e-12);
        assert!((oc[30] - 0.1).abs() < 1e-12);
        assert!(oc[..30].windows(2).all(|w| w[0] <= w[1]));
        assert!(oc[30..].windows(2).all(|w| w[0] >= w[1]));
        assert!(oc[99] < 1e-3);
        // A one-step run must not divide by zero.
        assert!(lr_at(LrSchedule::OneCycle, 0.1, 0, 1).is_finite());
    }
}
