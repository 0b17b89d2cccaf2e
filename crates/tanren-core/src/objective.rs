//! What a study optimises: validation accuracy alone, or accuracy and inference latency together
//! (a Pareto front), optionally under a latency limit ("under 2 ms per image").
//!
//! One place decides, for every consumer (the scheduler telling the search engine, a restored study,
//! REST's best trial and Pareto front, the model download): which values a trial is told as, which
//! trials are feasible, which trial is "best", and which is "the fastest within X points of the best".
//! Latency is the worker's measured batch-1 forward time per image (`inference_ms`).

use serde::{Deserialize, Serialize};
use tanren_search::Direction;

/// One thing a study optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Validation accuracy, maximised.
    Accuracy,
    /// Inference milliseconds per image (batch 1, on the worker that trained it), minimised.
    Latency,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Accuracy => "accuracy",
            Objective::Latency => "latency",
        }
    }

    fn direction(self) -> Direction {
        match self {
            Objective::Accuracy => Direction::Maximize,
            Objective::Latency => Direction::Minimize,
        }
    }
}

/// A study's objectives and its latency limit, as stored in the study spec (absent in specs stored
/// before multi-objective studies existed: accuracy alone, no limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objectives {
    /// Always starts with accuracy; `[accuracy, latency]` for an accuracy-vs-speed study.
    pub objectives: Vec<Objective>,
    /// Trials slower than this (ms per image) are infeasible: never best, never on the front, and
    /// the search engine steers away from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            objectives: vec![Objective::Accuracy],
            max_latency_ms: None,
        }
    }
}

/// A request's objectives cannot be used; `field` names the request field.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveError {
    pub field: &'static str,
    pub message: String,
}

/// What selection sees of a trial: complete trials only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: i64,
    pub val_accuracy: f64,
    pub inference_ms: Option<f64>,
}

/// No trial satisfies a model request; the message says what would.
#[derive(Debug, Clone, PartialEq)]
pub struct NoModel(pub String);

impl Objectives {
    /// From a request's `objectives` names and `max_latency_ms`.
    pub fn parse(
        names: Option<&[String]>,
        max_latency_ms: Option<f64>,
    ) -> Result<Objectives, ObjectiveError> {
        let err = |field, message: String| ObjectiveError { field, message };
        let mut objectives = Vec::new();
        for name in names.unwrap_or(&[]) {
            let o = match name.as_str() {
                "accuracy" => Objective::Accuracy,
                "latency" => Objective::Latency,
                other => {
                    return Err(err(
                        "objectives",
                        format!("unknown objective `{other}`; use accuracy, or accuracy and latency"),
                    ))
                }
            };
            if objectives.contains(&o) {
                return Err(err("objectives", format!("`{name}` is listed twice")));
            }
            objectives.push(o);
        }
        if objectives.is_empty() {
            objectives.push(Objective::Accuracy);
        }
        if !objectives.contains(&Objective::Accuracy) {
            return Err(err(
                "objectives",
                "latency alone would favour an untrained model; use [\"accuracy\", \"latency\"]".into(),
            ));
        }
        objectives.sort_by_key(|o| *o != Objective::Accuracy);
        if let Some(ms) = max_latency_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(err(
                    "max_latency_ms",
                    format!("must be a positive number of milliseconds per image, got {ms}"),
                ));
            }
        }
        Ok(Objectives {
            objectives,
            max_latency_ms,
        })
    }

    pub fn directions(&self) -> Vec<Direction> {
        self.objectives.iter().map(|o| o.direction()).collect()
    }

    /// Accuracy and latency together: the study has a Pareto front instead of one best trial.
    pub fn is_multi(&self) -> bool {
        self.objectives.len() > 1
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.objectives.iter().map(|o| o.as_str()).collect()
    }

    /// Whether a trial with this latency meets the study's limit (always, without one). A trial
    /// with no measured latency fails a limit.
    pub fn feasible(&self, inference_ms: Option<f64>) -> bool {
        match self.max_latency_ms {
            None => true,
            Some(limit) => inference_ms.is_some_and(|ms| ms <= limit),
        }
    }

    /// The values a complete trial is told to the search engine as, one per direction.
    ///
    /// A trial over the latency limit is told an accuracy of `-(ms / limit)` (≤ -1), below every
    /// feasible trial's accuracy (≥ 0), and ranked among the infeasible by how far over the limit
    /// it is: the ordering Optuna's constrained samplers use (feasible first, then by violation).
    /// With latency as an objective too, every feasible trial then dominates every infeasible one.
    /// A value that cannot be known (a latency objective or limit without a measured latency) is
    /// NaN, which the search engine takes as a failed trial.
    pub fn values(&self, val_accuracy: f64, inference_ms: Option<f64>) -> Vec<f64> {
        let ms = inference_ms.unwrap_or(f64::NAN);
        let accuracy = match self.max_latency_ms {
            // No measured latency cannot be ranked: NaN, which fails the trial in the search engine.
            Some(_) if inference_ms.is_none() => f64::NAN,
            Some(limit) if !self.feasible(inference_ms) => -(ms / limit),
            _ => val_accuracy,
        };
        self.objectives
            .iter()
            .map(|o| match o {
                Objective::Accuracy => accuracy,
                Objective::Latency => ms,
            })
            .collect()
    }

    /// The most accurate feasible trial (the first in the given order on a tie).
    pub fn best(&self, trials: &[Candidate]) -> Option<Candidate> {
        self.feasible_of(trials)
            .fold(None, |best: Option<Candidate>, t| match best {
                Some(b) if b.val_accuracy >= t.val_accuracy => Some(b),
                _ => Some(t),
            })
    }

    /// Feasible trials with a measured latency that no other such trial beats on both accuracy
    /// and latency (at least as good on both, better on one), fastest first. Trials at the same
    /// point are all on the front. O(n log n).
    pub fn pareto_front(&self, trials: &[Candidate]) -> Vec<Candidate> {
        let mut pts: Vec<Candidate> = self
            .feasible_of(trials)
            .filter(|t| t.inference_ms.is_some_and(f64::is_finite))
            .collect();
        // Fastest first; among equally fast, most accurate first.
        pts.sort_by(|a, b| {
            a.inference_ms
                .unwrap()
                .total_cmp(&b.inference_ms.unwrap())
                .then(b.val_accuracy.total_cmp(&a.val_accuracy))
                .then(a.id.cmp(&b.id))
        });
        let mut front: Vec<Candidate> = Vec::new();
        for t in pts {
            match front.last() {
                // Strictly more accurate than everything faster: on the front.
                None => front.push(t),
                Some(last) if t.val_accuracy > last.val_accuracy => front.push(t),
                // The same point as the last one on the front: also on it.
                Some(last) if t.val_accuracy == last.val_accuracy && t.inference_ms == last.inference_ms => {
                    front.push(t)
                }
                _ => {}
            }
        }
        front
    }

    /// The trial a model download means. Feasible trials only; `max_latency_ms` narrows further;
    /// `within_points` picks the fastest trial whose accuracy is within that many percentage
    /// points of the best remaining one (the most accurate of equally fast ones).
    pub fn choose(
        &self,
        trials: &[Candidate],
        within_points: Option<f64>,
        max_latency_ms: Option<f64>,
    ) -> Result<Candidate, NoModel> {
        let feasible: Vec<Candidate> = self.feasible_of(trials).collect();
        if feasible.is_empty() {
            return Err(NoModel(match (trials.is_empty(), self.max_latency_ms) {
                (false, Some(limit)) => format!(
                    "no complete trial meets the study's limit of {limit} ms per image{}",
                    fastest_note(trials)
                ),
                _ => "there is no complete trial yet, so there is no model to download".into(),
            }));
        }
        let pool: Vec<Candidate> = match max_latency_ms {
            None => feasible,
            Some(limit) => {
                let pool: Vec<Candidate> = feasible
                    .iter()
                    .copied()
                    .filter(|t| t.inference_ms.is_some_and(|ms| ms <= limit))
                    .collect();
                if pool.is_empty() {
                    return Err(NoModel(format!(
                        "no complete trial runs within {limit} ms per image{}",
                        fastest_note(&feasible)
                    )));
                }
                pool
            }
        };
        let best = Objectives::default().best(&pool).expect("pool is not empty");
        let Some(points) = within_points else {
            return Ok(best);
        };
        let floor = best.val_accuracy - points / 100.0;
        // A hair of tolerance so "within 1 point" of 0.93 includes 0.92 despite binary fractions.
        let near = pool
            .iter()
            .filter(|t| t.val_accuracy >= floor - 1e-9 && t.inference_ms.is_some_and(f64::is_finite));
        Ok(near
            .min_by(|a, b| {
                a.inference_ms
                    .unwrap()
                    .total_cmp(&b.inference_ms.unwrap())
                    .then(b.val_accuracy.total_cmp(&a.val_accuracy))
                    .then(a.id.cmp(&b.id))
            })
            .copied()
            .unwrap_or(best))
    }

    fn feasible_of<'a>(&'a self, trials: &'a [Candidate]) -> impl Iterator<Item = Candidate> + 'a {
        trials
            .iter()
            .copied()
            .filter(move |t| t.val_accuracy.is_finite() && self.feasible(t.inference_ms))
    }
}

/// "; the fastest, trial 7, takes 3.10 ms" (empty when no trial has a latency).
fn fastest_note(trials: &[Candidate]) -> String {
    trials
        .iter()
        .filter_map(|t| Some((t.id, t.inference_ms.filter(|m| m.is_finite())?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, ms)| format!("; the fastest, trial {id}, takes {ms:.2} ms"))
        .unwrap_or_default()
}

/// Validation for what a study may combine with its objectives: pruning compares accuracy alone, so
/// in an accuracy-vs-speed study it would stop fast models that learn a little slower.
pub fn check_pruner(objectives: &Objectives, pruner_is_none: bool) -> Result<(), ObjectiveError> {
    if objectives.is_multi() && !pruner_is_none {
        return Err(ObjectiveError {
            field: "pruner",
            message: "pruning compares accuracy alone and would stop fast models early; use pruner \
                      none with the latency objective"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "objective_tests.rs"]
mod tests;
