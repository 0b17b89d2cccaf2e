//! What a study will cost before it runs, and how long it has left while it runs, from the time model
//! (`tanren_core::estimate`), plus the warnings about its bounds (`tanren_core::warnings`).
//!
//! The model is fitted on measured trials: a running study's own finished trials when it has some,
//! else the most recent finished trials of this control plane on the same kind of device, else the
//! device prior. Gathering is IO (the store, the dataset's statistics, a stored advice); the
//! arithmetic is in tanren-core.

use crate::error::{ApiError, ApiResult};
use crate::study_spec::{Budget, StudySpec};
use crate::AppState;
use serde::Serialize;
use std::collections::HashMap;
use tanren_core::estimate::{remaining, space_cost, DataSize, Measurement, Remaining, SpaceCost, TimeModel};
use tanren_core::warnings::{self, human_seconds, Measured, Warning};
use tanren_core::{Bounds, ImageSpace, TrainConfig, TrialState};
use tanren_store::{now_ms, DatasetRow, StudyRow, TrialRow};

/// Studies whose trials calibrate a new study's estimate (most recent first).
const HISTORY_STUDIES: usize = 20;
/// How long after its deadline a minutes-bound study takes to stop its running trials and end.
const STOP_SLACK_SECONDS: f64 = 10.0;
/// Uniform draws from the space for its mean trial cost.
const SPACE_SAMPLES: usize = 256;
/// File in a dataset directory where the advisor keeps what its probes measured.
pub const ADVICE_FILE: &str = "advice.json";

/// The cost of a study before it starts, as `POST /studies` and `POST /studies/estimate` return it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Expected seconds of one trial (mean over the space) and of the most expensive one allowed.
    pub trial_seconds: f64,
    pub worst_trial_seconds: f64,
    /// Typical (the median) and worst seconds for the whole budget on `workers` workers (capped by
    /// the minutes budget); null for a minutes-only budget.
    pub total_seconds: Option<f64>,
    pub worst_total_seconds: Option<f64>,
    /// The 80% range (10% and 90%) of the whole budget's seconds.
    pub total_range_seconds: Option<[f64; 2]>,
    pub trials: Option<u32>,
    /// Live workers the estimate assumes (at least 1).
    pub workers: usize,
    /// Measurements the time model was calibrated on: finished trials and probe timings (0: a
    /// rough device prior).
    pub calibrated_on: usize,
    /// Of those, epoch times the advisor's probes measured on this dataset.
    #[serde(default)]
    pub calibrated_on_probes: usize,
    /// The estimate in one sentence.
    pub summary: String,
}

pub fn data_size(ds: &DatasetRow) -> DataSize {
    DataSize {
        train: ds.num_train.max(0) as usize,
        test: ds.num_test.max(0) as usize,
    }
}

/// What the probes measured for a dataset, if the advisor ran on it, with where earlier trials on
/// it levelled off.
pub async fn measured(s: &AppState, ds: &DatasetRow) -> Option<Measured> {
    let path = s.files.dataset_dir(&ds.sha256).join(ADVICE_FILE);
    let probed = async {
        let bytes = tokio::fs::read(path).await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        serde_json::from_value::<Measured>(v["measured"].clone()).ok()
    }
    .await;
    with_plateau(s, ds, probed).await
}

/// `m` with `plateau_epochs` from the per-epoch curves of the latest finished trials on this
/// dataset (`warnings::plateau_epochs`); a `Measured` of only that when nothing was probed.
pub async fn with_plateau(s: &AppState, ds: &DatasetRow, m: Option<Measured>) -> Option<Measured> {
    let plateau = trial_plateau(s, ds).await;
    match (m, plateau) {
        (Some(mut m), p) => {
            m.plateau_epochs = p.or(m.plateau_epochs);
            Some(m)
        }
        (None, Some(p)) => Some(Measured {
            plateau_epochs: Some(p),
            ..Measured::default()
        }),
        (None, None) => None,
    }
}

async fn trial_plateau(s: &AppState, ds: &DatasetRow) -> Option<u32> {
    let mut studies = s.store.studies().await.ok()?;
    studies.retain(|r| r.dataset_id == ds.id);
    studies.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let mut curves: Vec<Vec<f64>> = Vec::new();
    for row in studies.iter().take(HISTORY_STUDIES) {
        let finished: std::collections::HashSet<i64> = s
            .store
            .trials_light(row.id)
            .await
            .ok()?
            .into_iter()
            .filter(|t| t.state == TrialState::Complete.as_str())
            .map(|t| t.id)
            .collect();
        let mut last = None;
        for e in s.store.epochs_for_study(row.id).await.ok()? {
            if !finished.contains(&e.trial_id) {
                continue;
            }
            if last != Some(e.trial_id) {
                curves.push(Vec::new());
                last = Some(e.trial_id);
            }
            if let Some(c) = curves.last_mut() {
                c.push(e.val_accuracy);
            }
        }
    }
    warnings::plateau_epochs(&curves)
}

fn is_cuda(label: Option<&str>) -> bool {
    label.is_some_and(|d| d.starts_with("cuda"))
}

/// A finished or pruned trial as a measurement of the time model.
pub fn measurement(t: &TrialRow, data: DataSize) -> Option<Measurement> {
    if t.state != TrialState::Complete.as_str() && t.state != TrialState::Pruned.as_str() {
        return None;
    }
    let config: TrainConfig = serde_json::from_str(&t.config).ok()?;
    Some(Measurement {
        epochs: t.epochs_completed.unwrap_or(config.epochs as i64).max(0) as u32,
        train_seconds: t.train_seconds?,
        wall_seconds: Some((t.finished_at? - t.started_at?) as f64 / 1000.0),
        inference_ms: t.inference_ms,
        inference_ips: t.inference_ips,
        data,
        config,
    })
}

/// The probes' epoch timings as measurements, when they ran on the kind of device asked about.
pub fn probe_measurements(measured: Option<&Measured>, cuda: bool, data: DataSize) -> Vec<Measurement> {
    match measured {
        Some(m) if m.on_cuda() == Some(cuda) => {
            tanren_core::probe::measurements(&m.timing, m.overhead.as_ref(), data)
        }
        _ => Vec::new(),
    }
}

/// The time model for a new study: fitted on recent finished trials that ran on the kind of device
/// the live workers have.
pub async fn history_model(s: &AppState, cuda: bool) -> ApiResult<TimeModel> {
    model_with(s, cuda, Vec::new(), 0).await
}

/// `history_model` with more measurements (dataset `dataset_id`'s probe timings): they teach the
/// model how time grows with work on this device and this dataset before any of its trials ran.
/// With probes, only earlier trials on the same dataset join them: the same work costs more on a
/// large dataset than on a small one, and one seconds-per-work scale cannot hold both (on the
/// advice bench's trials, pooling every dataset's trials with the probes put 55% of trials within
/// ±30%, the probes alone 68%).
pub async fn model_with(
    s: &AppState,
    cuda: bool,
    extra: Vec<Measurement>,
    dataset_id: i64,
) -> ApiResult<TimeModel> {
    let mut studies = s.store.studies().await?;
    studies.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    if !extra.is_empty() {
        studies.retain(|r| r.dataset_id == dataset_id);
    }
    let mut sizes: HashMap<i64, DataSize> = HashMap::new();
    let mut measured = extra;
    for row in studies.iter().take(HISTORY_STUDIES) {
        let data = match sizes.get(&row.dataset_id) {
            Some(d) => *d,
            None => {
                let d = data_size(&s.store.dataset(row.dataset_id).await?);
                sizes.insert(row.dataset_id, d);
                d
            }
        };
        for t in s.store.trials_light(row.id).await? {
            if is_cuda(t.device.as_deref()) == cuda {
                measured.extend(measurement(&t, data));
            }
        }
    }
    Ok(TimeModel::fit(&TimeModel::prior(cuda), &measured))
}

/// How many trials of a new study would run at once (the live workers' slots, shared with the
/// studies running now), and whether most live workers have CUDA.
async fn workers(s: &AppState) -> ApiResult<(usize, bool)> {
    let live = s.scheduler.live_workers(s.store.workers().await?);
    let cuda = live.iter().filter(|w| w.cuda_available != 0).count();
    Ok((s.scheduler.slots_for_new_study(&live), cuda * 2 > live.len()))
}

/// The estimate and warnings of a study about to be created; `Err` when a bound is refused.
pub async fn assess(
    s: &AppState,
    ds: &DatasetRow,
    given: &Bounds,
    space: &ImageSpace,
    budget: &Budget,
) -> ApiResult<(Estimate, Vec<Warning>)> {
    let m = measured(s, ds).await;
    assess_with(s, ds, given, space, budget, m.as_ref()).await
}

/// `assess` with what the probes measured given (the advice, before it stored them).
pub async fn assess_with(
    s: &AppState,
    ds: &DatasetRow,
    given: &Bounds,
    space: &ImageSpace,
    budget: &Budget,
    measured: Option<&Measured>,
) -> ApiResult<(Estimate, Vec<Warning>)> {
    let (live, cuda) = workers(s).await?;
    let data = data_size(ds);
    let probes = probe_measurements(measured, cuda, data);
    // Epoch timings; the measured overhead is not one.
    let probe_points = probes.iter().filter(|m| m.epochs > 0).count();
    let model = model_with(s, cuda, probes, ds.id).await?;
    let stats = crate::api::dataset_stats(s, ds).await.ok();
    let cost = space_cost(space, ds.num_classes as u32, data, &model, SPACE_SAMPLES);
    let ws = warnings::check(
        space,
        &warnings::Context {
            given,
            stats: stats.as_ref(),
            data,
            val_fraction: 0.15,
            measured,
            cost: cost.as_ref(),
            trials: budget.trials,
            minutes: budget.minutes,
        },
    )
    .map_err(|r| ApiError::InvalidField {
        field: format!("bounds.{}", r.param),
        message: r.message,
    })?;
    let mut e = estimate(cost.as_ref(), &model, budget, live);
    e.calibrated_on_probes = probe_points;
    Ok((e, ws))
}

fn estimate(cost: Option<&SpaceCost>, model: &TimeModel, budget: &Budget, live: usize) -> Estimate {
    let workers = live.max(1);
    let (mean, worst) = cost.map_or((0.0, 0.0), |c| (c.mean_trial_seconds, c.worst_trial_seconds));
    let cap = |x: f64| budget.minutes.map_or(x, |m| x.min(m * 60.0));
    // The budget's trials drawn from the space, each with the model's error and one shared scale
    // error: the same simulation as a running study's ETA.
    let total = budget.trials.map(|t| {
        let (central, range) = remaining(&Remaining {
            rest: t as usize,
            space: cost.map_or(&[][..], |c| &c.drawn_trial_seconds),
            log_sd: model.log_sd,
            scale_log_sd: model.scale_log_sd(),
            parallel: workers,
            ..Remaining::default()
        });
        (central, t as f64 * worst / workers as f64, range)
    });
    let summary = match (total, budget.minutes) {
        (Some((c, w, _)), _) => format!(
            "about {} per trial (at most {}); about {} for {} trials, {workers} at a time, at most {}{}",
            human_seconds(mean),
            human_seconds(worst),
            human_seconds(cap(c)),
            budget.trials.unwrap_or(0),
            human_seconds(cap(w)),
            if model.fitted_on == 0 {
                " (a rough guess until trials or probes have been measured on this device)"
            } else {
                ""
            }
        ),
        (None, Some(m)) => format!(
            "about {} per trial (at most {}); about {:.0} trials fit in {m} minutes, {workers} at a time",
            human_seconds(mean),
            human_seconds(worst),
            (m * 60.0 * workers as f64 / mean.max(1e-9)).floor(),
        ),
        (None, None) => String::new(),
    };
    Estimate {
        trial_seconds: mean,
        worst_trial_seconds: worst,
        total_seconds: total.map(|t| cap(t.0)),
        worst_total_seconds: total.map(|t| cap(t.1)),
        total_range_seconds: total.map(|t| [cap(t.2[0]), cap(t.2[1])]),
        trials: budget.trials,
        workers,
        calibrated_on: model.fitted_on,
        calibrated_on_probes: 0,
        summary,
    }
}

/// What the ETA of a running study needs besides its rows.
pub struct EtaInputs {
    pub model: TimeModel,
    pub space: ImageSpace,
    pub num_classes: u32,
    pub data: DataSize,
    /// Per running trial: (epochs finished, seconds of training they took).
    pub running: HashMap<i64, (u32, f64)>,
}

/// Gather the ETA's inputs for a running study (`None` for a finished one or an unreadable spec).
pub async fn eta_inputs(s: &AppState, row: &StudyRow, trials: &[TrialRow]) -> Option<EtaInputs> {
    if row.state != tanren_core::StudyState::Running.as_str() {
        return None;
    }
    let spec: StudySpec = serde_json::from_str(&row.spec).ok()?;
    let ds = s.store.dataset(row.dataset_id).await.ok()?;
    let data = data_size(&ds);
    let mut own: Vec<Measurement> = trials.iter().filter_map(|t| measurement(t, data)).collect();
    let cuda = match trials.iter().find_map(|t| t.device.as_deref()) {
        Some(d) => is_cuda(Some(d)),
        None => workers(s).await.ok()?.1,
    };
    // The dataset's probe timings calibrate the model alongside the study's own trials.
    let probes = probe_measurements(measured(s, &ds).await.as_ref(), cuda, data);
    let model = if own.is_empty() {
        model_with(s, cuda, probes, ds.id).await.ok()?
    } else {
        own.extend(probes);
        TimeModel::fit(&TimeModel::prior(cuda), &own)
    };
    let mut running = HashMap::new();
    for t in trials.iter().filter(|t| t.state == TrialState::Running.as_str()) {
        let epochs = s.store.epochs(t.id).await.ok()?;
        if let Some(last) = epochs.last() {
            running.insert(t.id, (epochs.len() as u32, last.elapsed_seconds));
        }
    }
    Some(EtaInputs {
        model,
        space: spec.image_space,
        num_classes: spec.num_classes,
        data,
        running,
    })
}

/// Remaining seconds (the median) and an 80% range, simulated by `remaining`: each running trial's
/// rest from its own measured epochs (or the model before its first epoch), each queued trial from
/// its parameters, the trials not sampled yet drawn from the space and (once 3 have been sampled)
/// half the time from the most recent samples (a sampler that has found a region keeps sampling
/// near it), spread over `parallel` slots.
pub fn eta(
    row: &StudyRow,
    trials: &[TrialRow],
    done: usize,
    parallel: usize,
    inputs: &EtaInputs,
) -> (Option<f64>, Option<[f64; 2]>) {
    let now = now_ms();
    let by_deadline = row
        .max_minutes
        .map(|m| ((row.created_at + (m * 60_000.0) as i64 - now) as f64 / 1000.0).max(0.0));
    let Some(max) = row.max_trials else {
        return (by_deadline, by_deadline.map(|d| [d, d]));
    };
    let m = &inputs.model;
    let config = |t: &TrialRow| serde_json::from_str::<TrainConfig>(&t.config).ok();
    // (predicted seconds, its log-sd) of each piece of remaining work.
    let mut pieces: Vec<(f64, f64)> = Vec::new();
    let mut started = 0usize;
    for t in trials {
        let Some(cfg) = config(t) else { continue };
        if t.state == TrialState::Running.as_str() {
            started += 1;
            let full = m.trial_seconds(&cfg, inputs.data);
            let left = match inputs.running.get(&t.id) {
                Some(&(k, secs)) if k > 0 => {
                    let per_epoch = secs / k as f64;
                    let rest_epochs = cfg.epochs.saturating_sub(k) as f64;
                    rest_epochs * per_epoch + m.final_seconds(&cfg, inputs.data) + m.overhead_seconds * 0.5
                }
                _ => {
                    let elapsed = t.started_at.map_or(0.0, |s| (now - s) as f64 / 1000.0);
                    (full - elapsed).max(0.1 * full)
                }
            };
            // Measured epochs predict the rest well: half the model's spread.
            let sd = if inputs.running.contains_key(&t.id) {
                m.log_sd * 0.5
            } else {
                m.log_sd
            };
            pieces.push((left, sd));
        } else if t.state == TrialState::Queued.as_str() {
            started += 1;
            pieces.push((m.trial_seconds(&cfg, inputs.data), m.log_sd));
        }
    }
    let rest = (max as usize).saturating_sub(done + started);
    let mut space = Vec::new();
    let mut recent = Vec::new();
    if rest > 0 {
        let Some(cost) = space_cost(&inputs.space, inputs.num_classes, inputs.data, m, 128) else {
            return (None, None);
        };
        space = cost.drawn_trial_seconds;
        recent = trials
            .iter()
            .rev()
            .filter_map(|t| config(t).map(|c| m.trial_seconds(&c, inputs.data)))
            .take(5)
            .collect();
        if recent.len() < 3 {
            recent.clear();
        }
    }
    let (central, [lo, hi]) = remaining(&Remaining {
        pieces: &pieces,
        rest,
        space: &space,
        recent: &recent,
        recent_share: 0.5,
        log_sd: m.log_sd,
        scale_log_sd: m.scale_log_sd(),
        parallel: parallel.max(1),
    });
    // A minutes budget ends the study at its deadline, give or take the moment stopping the
    // running trial takes: the range's upper end keeps that moment.
    let cap = |x: f64| by_deadline.map_or(x, |d| x.min(d));
    let cap_hi = |x: f64| by_deadline.map_or(x, |d| x.min(d + STOP_SLACK_SECONDS));
    (Some(cap(central)), Some([cap(lo), cap_hi(hi)]))
}
