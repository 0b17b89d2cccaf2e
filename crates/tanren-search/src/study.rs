//! The ask/tell study: trial bookkeeping, enqueued configurations, and dispatch to the sampler
//! and pruner.
//!
//! The study holds no hidden state that matters for the future: each trial's randomness comes
//! from (seed, trial number), and samplers and pruners read only the trial records. So
//! [`Study::restore`] from stored records continues exactly as the original would have.

pub use crate::config::*;
use crate::grid::{self, GRID_LIMIT};
use crate::sampler::{self, Rows};
use crate::space::{Params, SpaceError};
use crate::{multi, pruner};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    Running,
    Complete,
    Pruned,
    Failed,
}

/// Everything known about one trial; the study's whole state is its config plus these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub number: u64,
    pub params: Params,
    pub status: TrialStatus,
    /// One value per direction, set when complete.
    pub values: Option<Vec<f64>>,
    /// `(step, first objective's value)`, sorted by step.
    pub intermediate: Vec<(u64, f64)>,
}

impl TrialRecord {
    /// The last reported intermediate value (highest step).
    pub fn last_intermediate(&self) -> Option<(u64, f64)> {
        self.intermediate.last().copied()
    }
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TellOutcome {
    /// Final objective values, one per direction. A NaN value fails the trial (as in Optuna).
    Complete(Vec<f64>),
    Pruned,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneDecision {
    Continue,
    Prune,
}

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("a study needs at least one direction")]
    NoDirections,
    #[error("invalid parameters: {0}")]
    InvalidParams(#[from] SpaceError),
    #[error("invalid study configuration: {0}")]
    InvalidConfig(String),
    #[error("grid search needs a discrete space, but parameter `{param}` is a continuous float")]
    GridNotDiscrete { param: String },
    #[error("the grid has {size} points, more than the limit of {limit}; narrow the space or use TPE")]
    GridTooLarge { size: u128, limit: u128 },
    #[error("all {size} grid points have been tried")]
    GridExhausted { size: u128 },
    #[error("there is no trial {0}")]
    UnknownTrial(u64),
    #[error("trial {number} is already finished ({status:?})")]
    TrialFinished { number: u64, status: TrialStatus },
    #[error("expected {expected} objective value(s), one per direction, got {got}")]
    WrongValueCount { expected: usize, got: usize },
    #[error("stored trials cannot be restored: {0}")]
    InvalidRecords(String),
}

/// A hyperparameter search in progress.
#[derive(Debug, Clone)]
pub struct Study {
    config: StudyConfig,
    trials: Vec<TrialRecord>,
    queue: VecDeque<Params>,
    /// Grid only: configurations already used, and a scan position (both derivable from trials).
    grid_visited: HashSet<String>,
    grid_cursor: u128,
    /// `Space::numeric_row` of each trial's params, indexed by trial number: derived state that
    /// spares the samplers string lookups in large studies.
    rows: Rows,
}

impl Study {
    pub fn new(config: StudyConfig) -> Result<Study, StudyError> {
        validate_config(&config)?;
        let width = config.space.params().len();
        Ok(Study {
            config,
            trials: Vec::new(),
            queue: VecDeque::new(),
            grid_visited: HashSet::new(),
            grid_cursor: 0,
            rows: Rows::new(width),
        })
    }

    /// Rebuilds a study from its stored trials (numbers must be 0, 1, 2, ... in order).
    /// Enqueued configurations that were never asked are not part of the records: re-enqueue them.
    pub fn restore(config: StudyConfig, trials: Vec<TrialRecord>) -> Result<Study, StudyError> {
        let mut study = Study::new(config)?;
        for (i, t) in trials.iter().enumerate() {
            let bad = |what: String| StudyError::InvalidRecords(format!("trial {}: {what}", t.number));
            if t.number != i as u64 {
                return Err(bad(format!("expected number {i}")));
            }
            study
                .config
                .space
                .validate_params(&t.params)
                .map_err(|e| bad(e.to_string()))?;
            if t.status == TrialStatus::Complete {
                let n = t.values.as_ref().map_or(0, Vec::len);
                if n != study.config.directions.len() {
                    return Err(bad(format!(
                        "{n} values for {} directions",
                        study.config.directions.len()
                    )));
                }
            }
            study.grid_visited.insert(grid::key(&t.params));
            study.rows.push(&study.config.space.numeric_row(&t.params));
        }
        study.trials = trials;
        Ok(study)
    }

    /// Queues a fixed configuration (e.g. a baseline); `ask` serves queued ones first, in order.
    pub fn enqueue(&mut self, mut params: Params) -> Result<(), StudyError> {
        self.config.space.normalize_params(&mut params);
        self.config.space.validate_params(&params)?;
        self.queue.push_back(params);
        Ok(())
    }

    /// Starts a trial: its number (0, 1, 2, ...) and the configuration to evaluate.
    pub fn ask(&mut self) -> Result<(u64, Params), StudyError> {
        let number = self.trials.len() as u64;
        let params = match self.queue.pop_front() {
            Some(p) => p,
            None => match self.config.sampler {
                SamplerConfig::Grid => self.next_grid_point()?,
                _ => sampler::suggest(&self.config, &self.trials, &self.rows, number),
            },
        };
        if self.config.sampler == SamplerConfig::Grid {
            self.grid_visited.insert(grid::key(&params));
        }
        self.rows.push(&self.config.space.numeric_row(&params));
        self.trials.push(TrialRecord {
            number,
            params: params.clone(),
            status: TrialStatus::Running,
            values: None,
            intermediate: Vec::new(),
        });
        Ok((number, params))
    }

    fn next_grid_point(&mut self) -> Result<Params, StudyError> {
        let c = &self.config;
        grid::next_point(&c.space, c.seed, &self.grid_visited, &mut self.grid_cursor).ok_or(
            StudyError::GridExhausted {
                size: c.space.grid_size().unwrap_or(0),
            },
        )
    }

    fn running_mut(&mut self, number: u64) -> Result<&mut TrialRecord, StudyError> {
        let t = self
            .trials
            .get_mut(number as usize)
            .ok_or(StudyError::UnknownTrial(number))?;
        if t.status != TrialStatus::Running {
            return Err(StudyError::TrialFinished {
                number,
                status: t.status,
            });
        }
        Ok(t)
    }

    /// Records the first objective's value at `step` and says whether to stop the trial. A step
    /// reported twice keeps its first value (as Optuna does).
    pub fn report(&mut self, number: u64, step: u64, value: f64) -> Result<PruneDecision, StudyError> {
        let t = self.running_mut(number)?;
        if let Err(pos) = t.intermediate.binary_search_by_key(&step, |&(s, _)| s) {
            t.intermediate.insert(pos, (step, value));
        }
        Ok(pruner::decide(&self.config, &self.trials, number))
    }

    pub fn tell(&mut self, number: u64, outcome: TellOutcome) -> Result<(), StudyError> {
        let expected = self.config.directions.len();
        let t = self.running_mut(number)?;
        match outcome {
            TellOutcome::Complete(values) => {
                if values.len() != expected {
                    return Err(StudyError::WrongValueCount {
                        expected,
                        got: values.len(),
                    });
                }
                if values.iter().any(|v| v.is_nan()) {
                    t.status = TrialStatus::Failed;
                } else {
                    t.status = TrialStatus::Complete;
                    t.values = Some(values);
                }
            }
            TellOutcome::Pruned => t.status = TrialStatus::Pruned,
            TellOutcome::Failed => t.status = TrialStatus::Failed,
        }
        Ok(())
    }

    pub fn trials(&self) -> &[TrialRecord] {
        &self.trials
    }

    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// Configurations enqueued but not yet asked (for the caller to persist if it wants).
    pub fn queued(&self) -> impl Iterator<Item = &Params> {
        self.queue.iter()
    }

    /// Single objective: the best complete trial (lowest number on ties). `None` for
    /// multi-objective studies; use [`Study::pareto_front`].
    pub fn best_trial(&self) -> Option<&TrialRecord> {
        let [dir] = self.config.directions[..] else {
            return None;
        };
        self.complete()
            .fold(None, |best: Option<&TrialRecord>, t| match best {
                Some(b) if !dir.better(t.values.as_ref()?[0], b.values.as_ref()?[0]) => Some(b),
                _ => Some(t),
            })
    }

    /// Complete trials not dominated by any other complete trial, by number.
    pub fn pareto_front(&self) -> Vec<&TrialRecord> {
        let complete: Vec<&TrialRecord> = self.complete().collect();
        let losses: Vec<Vec<f64>> = complete
            .iter()
            .map(|t| multi::losses(&self.config.directions, t))
            .collect();
        multi::first_front(&losses)
            .into_iter()
            .map(|i| complete[i])
            .collect()
    }

    fn complete(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials
            .iter()
            .filter(|t| t.status == TrialStatus::Complete && t.values.is_some())
    }
}

fn validate_config(c: &StudyConfig) -> Result<(), StudyError> {
    let invalid = |s: &str| Err(StudyError::InvalidConfig(s.to_string()));
    if c.directions.is_empty() {
        return Err(StudyError::NoDirections);
    }
    match &c.sampler {
        SamplerConfig::Random => {}
        SamplerConfig::Grid => match c.space.grid_size() {
            None => {
                let param = c
                    .space
                    .params()
                    .iter()
                    .find(|p| matches!(p.distribution, crate::Distribution::Float { .. }));
                return Err(StudyError::GridNotDiscrete {
                    param: param.map(|p| p.name.clone()).unwrap_or_default(),
                });
            }
            Some(size) if size > GRID_LIMIT => {
                return Err(StudyError::GridTooLarge {
                    size,
                    limit: GRID_LIMIT,
                })
            }
            Some(_) => {}
        },
        SamplerConfig::Tpe {
            n_ei_candidates,
            prior_weight,
            local_bandwidth,
            ..
        } => {
            if !(local_bandwidth.is_finite() && *local_bandwidth > 0.0) {
                return invalid("tpe: local_bandwidth must be a positive number");
            }
            if *n_ei_candidates == 0 {
                return invalid("tpe: n_ei_candidates must be at least 1");
            }
            if !(prior_weight.is_finite() && *prior_weight > 0.0) {
                return invalid("tpe: prior_weight must be a positive number");
            }
        }
        SamplerConfig::Nsga2 {
            population_size,
            mutation_prob,
            crossover_prob,
            swapping_prob,
        } => {
            if *population_size < 2 {
                return invalid("nsga2: population_size must be at least 2");
            }
            let prob = |p: f64| (0.0..=1.0).contains(&p);
            if !prob(*crossover_prob) || !prob(*swapping_prob) || !mutation_prob.is_none_or(prob) {
                return invalid("nsga2: probabilities must be between 0 and 1");
            }
        }
    }
    match &c.pruner {
        PrunerConfig::None => {}
        PrunerConfig::Median { interval_steps, .. } => {
            if *interval_steps == 0 {
                return invalid("median pruner: interval_steps must be at least 1");
            }
        }
        PrunerConfig::Asha {
            min_resource,
            reduction_factor,
            ..
        } => {
            if *min_resource == 0 || *reduction_factor < 2 {
                return invalid("asha pruner: min_resource must be >= 1 and reduction_factor >= 2");
            }
        }
        PrunerConfig::Hyperband {
            min_resource,
            max_resource,
            reduction_factor,
            ..
        } => {
            if *min_resource == 0 || *reduction_factor < 2 {
                return invalid("hyperband pruner: min_resource must be >= 1 and reduction_factor >= 2");
            }
            if max_resource.is_some_and(|m| m < *min_resource) {
                return invalid("hyperband pruner: max_resource must be >= min_resource");
            }
        }
    }
    Ok(())
}
