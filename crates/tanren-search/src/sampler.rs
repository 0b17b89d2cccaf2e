//! Dispatch from the configured sampler to its implementation, with per-trial randomness.

use crate::config::{SamplerConfig, StudyConfig};
use crate::rng::{purpose, Rng};
use crate::space::Params;
use crate::study::TrialRecord;
use crate::{nsga2, random, tpe};

/// The configuration for trial `number`. Grid search is handled by the study (it needs the
/// visited set); here it falls back to random so this function is total.
/// `rows.get(i)` is trial `i`'s configuration as numbers (see `Space::numeric_row`).
pub(crate) fn suggest(config: &StudyConfig, trials: &[TrialRecord], rows: &Rows, number: u64) -> Params {
    let mut rng = Rng::for_trial(config.seed, number, purpose::SAMPLE);
    match &config.sampler {
        SamplerConfig::Random | SamplerConfig::Grid => random::sample_params(&config.space, &mut rng),
        SamplerConfig::Tpe { .. } => tpe::suggest(config, trials, rows, number, &mut rng),
        SamplerConfig::Nsga2 { .. } => nsga2::suggest(config, trials, number, &mut rng),
    }
}

/// Every trial's configuration as numbers, one contiguous row per trial (contiguous so that
/// scanning ten thousand trials per ask stays in cache).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    data: Vec<f64>,
    width: usize,
}

impl Rows {
    pub(crate) fn new(width: usize) -> Rows {
        Rows {
            data: Vec::new(),
            width,
        }
    }

    pub(crate) fn push(&mut self, row: &[f64]) {
        debug_assert_eq!(row.len(), self.width);
        self.data.extend_from_slice(row);
    }

    pub(crate) fn get(&self, i: usize) -> &[f64] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
}
