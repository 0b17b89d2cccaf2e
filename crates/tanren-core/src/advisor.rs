//! Suggested bounds for a dataset, each with one sentence a beginner understands, and a budget.
//!
//! From the dataset's statistics (image sizes, counts) and, when probes have run, what they measured
//! (the learning rate where the loss blew up, the largest batch that fits, where accuracy plateaued).
//! Every suggestion passes `ImageSpace::from_bounds` (tested). No IO.

use crate::config::OptimizerKind;
use crate::dataset_stats::DatasetStats;
use crate::estimate::{space_cost, DataSize, TimeModel};
use crate::params::param;
use crate::space::{Bound, Bounds, ImageSpace};
use crate::warnings::{human_seconds, Measured};
use serde::{Deserialize, Serialize};

/// One parameter's suggested bound and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub param: String,
    pub bound: Bound,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetAdvice {
    pub trials: u32,
    /// Minutes those trials are expected to take on one worker, with some slack.
    pub minutes: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// Ready to send as `bounds` of `POST /api/v1/studies`.
    pub bounds: Bounds,
    pub suggestions: Vec<Suggestion>,
    pub budget: BudgetAdvice,
    /// What probes measured (empty when none ran).
    pub measured: Measured,
}

fn range(low: f64, high: f64) -> Bound {
    Bound::Range { low, high }
}

/// A learning rate as a person writes it: 3e-3, 0.1.
pub fn sci(x: f64) -> String {
    if (0.01..1000.0).contains(&x) {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{x:.0e}");
        s
    }
}

/// Learning rates that make sense for an optimizer on small image networks whatever a range test
/// said: a test on a few noisy batches can put its steepest point at a rate no one trains with.
pub fn lr_window(kind: OptimizerKind) -> (f64, f64) {
    match kind {
        OptimizerKind::Adam | OptimizerKind::Adamw => (1e-4, 3e-2),
        OptimizerKind::Sgd => (1e-3, 0.5),
    }
}

/// Learning-rate bounds from a range test: a factor 5 either side of where the loss fell fastest
/// (that point taken no closer than a factor 3 to the ends of the optimizer's window), inside the
/// window, the top at least three times below where the loss blew up, and at
/// least a decade wide (widened downwards when capped). With only a blow-up point: the decade below a
/// third of it. Never below a tenth of the window's floor, however low the blow-up.
pub fn lr_bounds(kind: OptimizerKind, steepest: Option<f64>, divergence: Option<f64>) -> (f64, f64) {
    let (w_lo, w_hi) = lr_window(kind);
    let cap = divergence
        .map_or(w_hi, |d| (d / 3.0).min(w_hi))
        .max(w_lo / 10.0 * 3.0);
    let steepest = steepest.map(|st| st.clamp(3.0 * w_lo, w_hi / 3.0));
    let hi = match steepest {
        Some(st) => (st * 5.0).min(cap),
        None => cap,
    };
    let lo = match steepest {
        Some(st) => (st / 5.0).max(w_lo),
        None => w_lo,
    }
    .min(hi / 10.0)
    .max(w_lo / 10.0);
    (lo, hi.max(lo * 3.0))
}

fn pow2_floor(x: f64) -> f64 {
    2f64.powf(x.max(1.0).log2().floor())
}

/// Suggest bounds for a dataset. `model` prices the budget.
pub fn advise(
    stats: &DatasetStats,
    data: DataSize,
    measured: Option<&Measured>,
    model: &TimeModel,
) -> Advice {
    use param::*;
    let m = measured.cloned().unwrap_or_default();
    let mut out: Vec<Suggestion> = Vec::new();
    let mut put = |param: &str, bound: Bound, reason: String| {
        out.push(Suggestion {
            param: param.into(),
            bound,
            reason,
        })
    };

    // Image size: around the source images; upscaling adds cost, not detail.
    let s = stats.short_side.median.max(1) as f64;
    let (img_lo, img_hi) = if s > 64.0 {
        (32.0, s.min(128.0).round())
    } else {
        let lo = s.round().clamp(8.0, 64.0);
        let hi = (1.5 * s).clamp(16.0, 64.0).round().max(lo);
        (lo, hi)
    };
    put(
        IMAGE_SIZE,
        range(img_lo, img_hi),
        if s > 64.0 {
            format!("images are about {s:.0} px; {img_lo:.0}–{img_hi:.0} px keeps most of the detail at a fraction of the cost")
        } else {
            format!("images are about {s:.0} px; sizes above {img_hi:.0} only add cost (upscaling adds no detail)")
        },
    );

    // Conv blocks: each halves the image; keep at least 2 px after the last one.
    let max_blocks = ((img_lo / 2.0).log2().floor()).clamp(1.0, 4.0);
    put(
        CONV_BLOCKS,
        range(1.0, max_blocks),
        format!("each block halves the image: {img_lo:.0} px allows at most {max_blocks:.0} before it is too small to see"),
    );

    // Channels: small sets cannot use wide networks.
    let (ch_lo, ch_hi) = if stats.images < 3000 {
        (8.0, 32.0)
    } else {
        (16.0, 64.0)
    };
    put(
        CHANNELS,
        range(ch_lo, ch_hi),
        format!(
            "{} images: wider networks than {ch_hi:.0} channels mostly memorise and cost more",
            stats.images
        ),
    );

    // Batch: a few steps per epoch at least, and what fits the device.
    let fit = (data.train as f64 * 0.85).max(1.0);
    let mut b_hi = pow2_floor((fit / 8.0).min(128.0)).max(2.0);
    let mut why_batch =
        format!("{fit:.0} training images: batches up to {b_hi:.0} still give at least 8 steps per epoch");
    // Around the knee of images/s: past twice it only fewer steps per epoch, below half of it
    // slower epochs.
    let mut b_floor = 1.0;
    if let Some(knee) = m.knee_batch {
        let k = pow2_floor(knee as f64).max(16f64.min(b_hi));
        b_floor = k / 2.0;
        if 2.0 * k < b_hi {
            b_hi = 2.0 * k;
        }
        why_batch = format!(
            "on the probed worker images/s stop rising past batch {knee}: {:.0}–{b_hi:.0} keeps it busy (larger batches only mean fewer steps per epoch, smaller ones slower epochs)",
            (b_hi / 8.0).max(b_floor).min(b_hi / 2.0).max(1.0)
        );
    }
    if let Some(max) = m.max_batch {
        if (max as f64) < b_hi {
            b_hi = pow2_floor(max as f64).max(2.0);
            why_batch = format!("the probe found batches above {max} do not fit the worker's memory");
        }
    }
    // Still a range when the data caps the top below the knee.
    let b_lo = (b_hi / 8.0).max(b_floor).min(b_hi / 2.0).max(1.0);
    put(BATCH_SIZE, range(b_lo, b_hi), why_batch);

    // Epochs: enough steps to converge on small data, not past the plateau.
    let steps_per_epoch = (fit / (b_lo * b_hi).sqrt()).max(1.0);
    let (ep_hi, why_epochs) = match m.plateau_epochs {
        Some(p) => (
            (p as f64 * 1.5).ceil().clamp(2.0, 50.0),
            format!("earlier trials on this dataset stopped improving after about {p} epochs"),
        ),
        None => {
            let e = (600.0 / steps_per_epoch).ceil().clamp(3.0, 30.0);
            (e, format!("about {steps_per_epoch:.0} steps per epoch: {e:.0} epochs give the network some 600 steps, enough for data this size"))
        }
    };
    put(EPOCHS, range(1.0, ep_hi), why_epochs);

    // Optimizer and learning rate: one range cannot suit both Adam and SGD.
    put(
        OPTIMIZER,
        Bound::Choices {
            choices: vec!["adam".into(), "adamw".into()],
        },
        "Adam and AdamW share a learning rate range; SGD needs one ten times larger, so mixing them wastes trials".into(),
    );
    let steepest = m.steepest_lr.get("adam").copied();
    let divergence = m.divergence_lr.get("adam").copied();
    let (lr_lo, lr_hi, why_lr) = match (steepest, divergence) {
        (None, None) => (
            3e-4,
            1e-2,
            "Adam learns best between 3e-4 and 1e-2 on most small image sets; above that it often diverges"
                .into(),
        ),
        (st, d) => {
            let (lo, hi) = lr_bounds(OptimizerKind::Adam, st, d);
            let blew = match d {
                Some(d) => format!("blew up past {}", sci(d)),
                None => "never blew up".into(),
            };
            let why = match st {
                Some(st) => format!(
                    "the learning-rate test's loss fell fastest at {} and {blew}; {}–{} stays around the fast part and below the blow-up",
                    sci(st),
                    sci(lo),
                    sci(hi)
                ),
                None => format!(
                    "the learning-rate test's loss {blew}; {}–{} stays well below that",
                    sci(lo),
                    sci(hi)
                ),
            };
            (lo, hi, why)
        }
    };
    put(LEARNING_RATE, range(lr_lo, lr_hi), why_lr);

    put(
        DROPOUT,
        range(0.0, 0.3),
        "a little dropout helps small sets; above 0.3 it mostly slows learning".into(),
    );

    let bounds: Bounds = out.iter().map(|s| (s.param.clone(), s.bound.clone())).collect();
    // Budget: about three trials per searched parameter, at least 12.
    let space = ImageSpace::from_bounds(&bounds).ok();
    let searched = space.as_ref().map_or(6, |s| s.space.params().len());
    let trials = (3 * searched).max(12) as u32;
    let mean = space
        .as_ref()
        .and_then(|sp| space_cost(sp, stats.classes.max(2) as u32, data, model, 128))
        .map_or(60.0, |c| c.mean_trial_seconds);
    let minutes = ((trials as f64 * mean * 1.3) / 60.0).ceil().max(1.0);
    Advice {
        bounds,
        suggestions: out,
        budget: BudgetAdvice {
            trials,
            minutes,
            reason: format!(
                "{searched} searched parameters want about {trials} trials; at about {} per trial that is some {} on one worker{}",
                human_seconds(mean),
                human_seconds(minutes * 60.0),
                if m.timing.is_empty() {
                    ""
                } else {
                    " (trial times from epochs the probes measured on the worker)"
                }
            ),
        },
        measured: m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset_stats::ImageInfo;
    use crate::warnings::{check, Context};

    fn stats(side: u32, n: usize, colour: bool) -> DatasetStats {
        let infos = vec![
            ImageInfo {
                width: side,
                height: side,
                colour
            };
            n
        ];
        let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
        DatasetStats::from_images(&infos, &labels, &labels[..n * 4 / 5], 10)
    }

    #[test]
    fn advice_is_valid_and_draws_no_warnings_across_datasets() {
        let model = TimeModel::prior(false);
        let mut measured = Measured::default();
        measured.divergence_lr.insert("adam".into(), 0.02);
        measured.max_batch = Some(24);
        measured.plateau_epochs = Some(6);
        for (side, n) in [(8, 300), (28, 6000), (32, 1200), (100, 500), (500, 20000)] {
            for m in [None, Some(&measured)] {
                let st = stats(side, n, side > 30);
                let data = DataSize {
                    train: n * 4 / 5,
                    test: n / 5,
                };
                let a = advise(&st, data, m, &model);
                let space = ImageSpace::from_bounds(&a.bounds)
                    .unwrap_or_else(|e| panic!("{side} px, {n} images: {e}: {:?}", a.bounds));
                let ws = check(
                    &space,
                    &Context {
                        given: &a.bounds,
                        stats: Some(&st),
                        data,
                        val_fraction: 0.15,
                        measured: m,
                        cost: None,
                        trials: Some(a.budget.trials),
                        minutes: None,
                    },
                )
                .expect("never refused");
                assert!(ws.is_empty(), "{side} px: {ws:?}");
                assert!(a.suggestions.iter().all(|s| !s.reason.is_empty()));
                assert!(a.budget.trials >= 12 && a.budget.minutes >= 1.0);
            }
        }
    }

    #[test]
    fn advice_follows_the_images_and_the_probes() {
        let model = TimeModel::prior(false);
        let data = DataSize {
            train: 4800,
            test: 1200,
        };
        let a = advise(&stats(28, 6000, false), data, None, &model);
        assert_eq!(a.bounds["image_size"], range(28.0, 42.0));
        let img = a.suggestions.iter().find(|s| s.param == "image_size").unwrap();
        assert!(img.reason.contains("28 px"), "{}", img.reason);
        let mut m = Measured::default();
        m.divergence_lr.insert("adam".into(), 0.006);
        m.max_batch = Some(16);
        let b = advise(&stats(28, 6000, false), data, Some(&m), &model);
        assert_eq!(b.bounds["learning_rate"], range(1e-4, 0.002));
        assert_eq!(b.bounds["batch_size"], range(2.0, 16.0));
        // A CPU whose images/s stop rising at 16: batches around it, not far below.
        let mut k = Measured {
            knee_batch: Some(16),
            ..Measured::default()
        };
        let c = advise(&stats(28, 6000, false), data, Some(&k), &model);
        assert_eq!(c.bounds["batch_size"], range(8.0, 32.0));
        let small = DataSize {
            train: 480,
            test: 120,
        };
        k.knee_batch = Some(8);
        let d = advise(&stats(28, 600, false), small, Some(&k), &model);
        assert_eq!(d.bounds["batch_size"], range(8.0, 32.0));
        // A knee past what the data allows: still a range below the data's cap.
        k.knee_batch = Some(128);
        let e = advise(&stats(28, 600, false), small, Some(&k), &model);
        assert_eq!(e.bounds["batch_size"], range(16.0, 32.0));
    }

    #[test]
    fn learning_rate_bounds_surround_the_steepest_point_inside_the_window() {
        let adam = OptimizerKind::Adam;
        let close =
            |a: (f64, f64), b: (f64, f64)| (a.0 / b.0 - 1.0).abs() < 1e-9 && (a.1 / b.1 - 1.0).abs() < 1e-9;
        // A clean test: a factor 5 either side, the top below a third of the blow-up.
        assert!(close(lr_bounds(adam, Some(2e-3), Some(0.3)), (4e-4, 1e-2)));
        assert!(close(lr_bounds(adam, Some(2e-3), Some(0.015)), (4e-4, 5e-3)));
        // A steepest point among the first steps (a noisy or cut-short test) is not believed below
        // the window: never the 3e-7..1e-5 a busy CPU once advised.
        let (lo, hi) = lr_bounds(adam, Some(3e-7), None);
        assert!(lo >= 1e-4 && hi >= 1e-3, "{lo}..{hi}");
        // Nor above it.
        let (lo, hi) = lr_bounds(adam, Some(2.0), None);
        assert!(hi <= 3e-2 && lo <= 3e-3, "{lo}..{hi}");
        // SGD has its own window, a decade higher.
        let (lo, hi) = lr_bounds(OptimizerKind::Sgd, Some(0.05), None);
        assert!(close((lo, hi), (0.01, 0.25)), "{lo}..{hi}");
        // Only a blow-up point: the decade and more below a third of it.
        let (lo, hi) = lr_bounds(adam, None, Some(0.03));
        assert!(close((lo, hi), (1e-4, 0.01)), "{lo}..{hi}");
        // Every answer is a valid range at least half a decade wide, and never absurdly low.
        for st in [None, Some(1e-9), Some(1e-5), Some(1e-3), Some(0.1), Some(10.0)] {
            for d in [None, Some(1e-6), Some(1e-4), Some(1e-2), Some(1.0)] {
                for k in [adam, OptimizerKind::Sgd] {
                    let (lo, hi) = lr_bounds(k, st, d);
                    assert!(lo > 0.0 && hi >= 3.0 * lo, "{k:?} {st:?} {d:?}: {lo}..{hi}");
                    assert!(lo >= lr_window(k).0 / 10.0, "{k:?} {st:?} {d:?}: {lo}");
                    assert!(hi <= lr_window(k).1, "{k:?} {st:?} {d:?}: {hi}");
                }
            }
        }
    }
}
