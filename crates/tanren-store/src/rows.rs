//! Row types as stored; REST serialises them directly, so their field names are part of the API.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: i64,
    pub name: String,
    pub sha256: String,
    pub num_classes: i64,
    pub num_train: i64,
    pub num_test: i64,
    pub size_bytes: i64,
    /// JSON: classes with counts, layout, skipped files.
    #[serde(skip)]
    pub summary: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StudyRow {
    pub id: i64,
    pub name: String,
    pub dataset_id: i64,
    pub state: String,
    /// JSON of the control plane's study spec (space, sampler, seed, ...).
    #[serde(skip)]
    pub spec: String,
    pub max_trials: Option<i64>,
    pub max_minutes: Option<f64>,
    pub error: Option<String>,
    /// Why the study ended (`tanren_core::EndReason`); null while it runs.
    pub end_reason: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TrialRow {
    pub id: i64,
    pub study_id: i64,
    pub number: i64,
    pub state: String,
    #[serde(skip)]
    pub params: String,
    #[serde(skip)]
    pub config: String,
    pub worker_id: Option<String>,
    pub device: Option<String>,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub train_seconds: Option<f64>,
    pub prepare_seconds: Option<f64>,
    pub inference_ms: Option<f64>,
    pub inference_ips: Option<f64>,
    pub parameter_count: Option<i64>,
    pub model_bytes: Option<i64>,
    pub epochs_completed: Option<i64>,
    #[serde(skip)]
    pub result: Option<String>,
    pub error: Option<String>,
    /// Why a failed trial failed (`tanren_core::FailureKind`); null unless failed.
    pub failure_kind: Option<String>,
    /// The interrupted trial (id) this one retries with the same parameters.
    pub retry_of: Option<i64>,
    /// 0 for a first attempt, n for the n-th retry.
    pub attempt: i64,
    /// Relative to the data dir; set with the result when the weights were stored.
    pub weights_path: Option<String>,
    pub model_sha256: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// How many trials of a study are in one (state, failure kind).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrialCount {
    pub state: String,
    pub failure_kind: Option<String>,
    pub count: i64,
}

/// A complete trial as model selection sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrialScore {
    pub id: i64,
    pub number: i64,
    pub val_accuracy: f64,
    pub inference_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EpochRow {
    pub trial_id: i64,
    pub epoch: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub grpc_url: String,
    pub device: String,
    pub device_name: String,
    pub torch_version: String,
    pub cuda_available: i64,
    pub slots: i64,
    pub registered_at: i64,
    pub last_seen_at: i64,
}

/// An API token as stored: its secret only as a SHA-256.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    /// `read`, `write` or `admin` (each includes the ones before it).
    pub scope: String,
    #[serde(skip)]
    pub token_sha256: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}
