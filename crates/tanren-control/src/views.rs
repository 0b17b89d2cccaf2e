//! Rows as the API shows them: every builder of a contract type (`tanren_api`) from stored rows, in one
//! place, for REST handlers and the event stream alike (one trial shape everywhere). Pure functions;
//! the callers read the store.

use crate::progress::{candidates_of, objectives_of};
use tanren_api::{Budget, EpochView, ParetoPoint, Progress, Study, Trial, TrialDetail, WorkerView};
use tanren_core::EndReason;
use tanren_store::{DatasetRow, EpochRow, StudyRow, TrialRow, TrialScore, WorkerRow};

/// What ingest recorded about a dataset beside its row (`DatasetRow::summary`, written from the
/// manifest by `api::datasets`; its field names are the API's).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DatasetSummary {
    layout: String,
    classes: Vec<tanren_api::DatasetClass>,
    skipped: Vec<tanren_api::SkippedEntry>,
    split_seed: u64,
    stats: Option<tanren_core::dataset_stats::DatasetStats>,
}

/// A dataset: its row plus the ingest summary stored with it.
pub fn dataset(row: &DatasetRow) -> tanren_api::Dataset {
    let summary: DatasetSummary = serde_json::from_str(&row.summary).unwrap_or_default();
    tanren_api::Dataset {
        id: row.id,
        name: row.name.clone(),
        sha256: row.sha256.clone(),
        num_classes: row.num_classes,
        num_train: row.num_train,
        num_test: row.num_test,
        size_bytes: row.size_bytes,
        created_at: row.created_at,
        stats: summary.stats,
        layout: summary.layout,
        classes: summary.classes,
        skipped: summary.skipped,
        split_seed: summary.split_seed,
    }
}

pub fn trial(t: &TrialRow) -> Trial {
    Trial {
        id: t.id,
        study_id: t.study_id,
        number: t.number,
        state: t.state.clone(),
        params: serde_json::from_str(&t.params).unwrap_or_default(),
        worker_id: t.worker_id.clone(),
        device: t.device.clone(),
        val_accuracy: t.val_accuracy,
        val_loss: t.val_loss,
        test_accuracy: t.test_accuracy,
        test_loss: t.test_loss,
        train_seconds: t.train_seconds,
        prepare_seconds: t.prepare_seconds,
        inference_ms: t.inference_ms,
        inference_ips: t.inference_ips,
        parameter_count: t.parameter_count,
        model_bytes: t.model_bytes,
        epochs_completed: t.epochs_completed,
        error: t.error.clone(),
        failure_kind: t.failure_kind.clone(),
        retry_of: t.retry_of,
        attempt: t.attempt,
        model_sha256: t.model_sha256.clone(),
        created_at: t.created_at,
        started_at: t.started_at,
        finished_at: t.finished_at,
    }
}

pub fn epoch(e: &EpochRow) -> EpochView {
    EpochView {
        trial_id: e.trial_id,
        epoch: e.epoch,
        train_loss: e.train_loss,
        val_loss: e.val_loss,
        val_accuracy: e.val_accuracy,
        elapsed_seconds: e.elapsed_seconds,
    }
}

pub fn trial_detail(t: &TrialRow, epochs: &[EpochRow]) -> TrialDetail {
    let json = |s: Option<&str>| s.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    TrialDetail {
        trial: trial(t),
        config: json(Some(&t.config)),
        epochs: epochs.iter().map(epoch).collect(),
        result: json(t.result.as_deref()),
    }
}

/// Why a study ended, as a person reads it: "minutes budget reached", "failed: 5 trials in a row ...".
pub fn end_reason_text(r: EndReason, error: Option<&str>) -> String {
    match (r, error) {
        (EndReason::Failed, Some(e)) => format!("failed: {e}"),
        _ => r.describe().to_string(),
    }
}

/// The study with its progress (computed by the caller, which knows the live workers), best trial
/// (chosen by the caller from `scores`, the complete trials) and, for accuracy-vs-latency studies,
/// the Pareto front.
pub fn study(row: &StudyRow, scores: &[TrialScore], best: Option<&TrialRow>, progress: Progress) -> Study {
    let spec: serde_json::Value = serde_json::from_str(&row.spec).unwrap_or_default();
    let objectives = objectives_of(row);
    let pareto_front = objectives.is_multi().then(|| {
        objectives
            .pareto_front(&candidates_of(scores))
            .into_iter()
            .filter_map(|c| {
                Some(ParetoPoint {
                    trial_id: c.id,
                    number: scores.iter().find(|t| t.id == c.id)?.number,
                    val_accuracy: c.val_accuracy,
                    inference_ms: c.inference_ms?,
                })
            })
            .collect()
    });
    Study {
        id: row.id,
        name: row.name.clone(),
        dataset_id: row.dataset_id,
        state: row.state.clone(),
        error: row.error.clone(),
        end_reason: row.end_reason.clone(),
        end_reason_text: match row.end_reason.as_deref().map(str::parse::<EndReason>) {
            Some(Ok(r)) => Some(end_reason_text(r, row.error.as_deref())),
            _ => None,
        },
        created_at: row.created_at,
        finished_at: row.finished_at,
        budget: Budget {
            trials: row.max_trials.and_then(|t| u32::try_from(t).ok()),
            minutes: row.max_minutes,
        },
        max_retries: spec["max_retries"].as_u64().and_then(|r| u32::try_from(r).ok()),
        space: spec["image_space"].clone(),
        sampler: spec["search"]["sampler"].clone(),
        pruner: spec["search"]["pruner"].clone(),
        baseline: spec["baseline"].as_bool().unwrap_or(false),
        warnings: spec
            .get("warnings")
            .cloned()
            .unwrap_or_else(|| serde_json::json!([])),
        estimate: spec["estimate"].clone(),
        progress,
        best_trial: best.map(trial),
        objectives: objectives.names().into_iter().map(String::from).collect(),
        max_latency_ms: objectives.max_latency_ms,
        pareto_front,
    }
}

/// A worker row as REST and the event stream show it; `running` holds (study id, trial id) per taken
/// slot (trial id 0 while its row is being written).
pub fn worker(w: &WorkerRow, alive: bool, running: &[(i64, i64)]) -> WorkerView {
    let first = running.first().copied();
    WorkerView {
        id: w.id.clone(),
        grpc_url: w.grpc_url.clone(),
        device: w.device.clone(),
        device_name: w.device_name.clone(),
        torch_version: w.torch_version.clone(),
        cuda_available: w.cuda_available != 0,
        slots: w.slots,
        slots_in_use: running.len() as i64,
        registered_at: w.registered_at,
        last_seen_at: w.last_seen_at,
        alive,
        busy: first.is_some(),
        study_id: first.map(|r| r.0),
        trial_id: first.map(|r| r.1),
        running: running
            .iter()
            .map(|&(study_id, trial_id)| tanren_api::RunningTrial { study_id, trial_id })
            .collect(),
    }
}
