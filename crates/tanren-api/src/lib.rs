//! The REST contract of the control plane: request bodies it parses, the shapes it answers with, and
//! the error body, each with its OpenAPI schema (`utoipa::ToSchema`). The control plane parses requests
//! into these types and builds `/api/v1/openapi.json` from them; the CLI and the worker's registration
//! use the same types, so a field renamed on one side is renamed on both.
//!
//! Response objects carry at least the fields listed here (the schemas leave additional properties
//! open, so clients must ignore fields they do not know).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `unauthorized`, `not_found`.
    pub code: String,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// The request field at fault (`invalid_field` only), e.g. `bounds.learning_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `POST /api/v1/studies`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStudy {
    pub dataset_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// Per parameter: `{"low": a, "high": b}` or `{"choices": [...]}` (see `GET /api/v1/search-space`);
    /// parameters left out keep their default bounds.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub bounds: tanren_core::Bounds,
    #[serde(default)]
    pub budget: Budget,
    /// `random` or `tpe` (default).
    #[serde(default)]
    pub sampler: Option<String>,
    /// Early stopping on the per-epoch validation accuracy: `none` (default), `median`, `asha`,
    /// `hyperband`, or a full pruner config object (`{"type": "asha", ...}`).
    #[serde(default)]
    pub pruner: Option<serde_json::Value>,
    #[serde(default)]
    pub seed: u64,
    /// Run the seed's configuration (moved inside the bounds) as trial 0. Default true.
    #[serde(default = "yes")]
    pub baseline: bool,
    /// Retries of an interrupted trial (default: the control plane's `--max-retries`).
    #[serde(default)]
    pub max_retries: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Trials that count toward the budget (default 20 when neither is given).
    pub trials: Option<u32>,
    pub minutes: Option<f64>,
}

/// `POST /api/v1/workers`: a worker's registration, repeated as its heartbeat (join token as bearer).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerRegistration {
    /// 1 to 128 characters; a live worker at another address with the same id is refused (409).
    pub id: String,
    /// `http://` or `https://` URL the control plane dials.
    pub grpc_url: String,
    pub device: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub torch_version: String,
    #[serde(default)]
    pub cuda_available: bool,
    #[serde(default = "one")]
    pub slots: u32,
}

fn one() -> u32 {
    1
}

/// The answer to a registration: the secret the control plane will present on every gRPC call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub ok: bool,
    pub credential: String,
}

/// `POST /api/v1/tokens` (admin).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    pub name: Option<String>,
    /// `read`, `write` or `admin`.
    #[schema(pattern = "^(read|write|admin)$")]
    pub scope: String,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A new token: the secret is in this answer only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Token,
    /// `tnr_…`: send as `Authorization: Bearer`, or sign in at `/login?token=…`.
    #[serde(rename = "token")]
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    pub token_id: i64,
    pub name: String,
    pub scope: String,
    /// `bearer` or `session`.
    pub via: String,
}

/// A study's progress and remaining time (REST, the WebSocket `progress` event, the CLI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Finished trials that count toward the budget (interrupted ones do not).
    pub done: usize,
    /// The trial budget while the study runs; `done` once it ended by a budget or an exhausted space.
    pub total: Option<i64>,
    pub complete: usize,
    pub pruned: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub running: usize,
    pub queued: usize,
    pub elapsed_seconds: f64,
    /// Best estimate of the seconds left; 0 once the study ended; null until it can be estimated.
    pub eta_seconds: Option<f64>,
    /// An 80% range around `eta_seconds`: wide after one trial, narrowing as durations are measured.
    pub eta_range_seconds: Option<[f64; 2]>,
}

/// A worker as `GET /api/v1/workers` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub grpc_url: String,
    pub device: String,
    pub device_name: String,
    pub torch_version: String,
    pub cuda_available: bool,
    pub slots: i64,
    pub registered_at: i64,
    pub last_seen_at: i64,
    /// Heard from within the timeout and registered with this control plane process.
    pub alive: bool,
    pub busy: bool,
    /// The trial it runs now, if any.
    pub study_id: Option<i64>,
    pub trial_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
}

/// A dataset (the row plus its ingest summary: classes with counts, layout, skipped files).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    pub id: i64,
    pub name: String,
    pub sha256: String,
    pub num_classes: i64,
    pub num_train: i64,
    pub num_test: i64,
    pub size_bytes: i64,
    pub created_at: i64,
    /// Image sizes (`width`, `height`, `short_side`: `{min, median, max}` px), colour
    /// (`colour_mode`: colour, greyscale or mixed), images per class and `imbalance` (largest class /
    /// smallest). Always in `GET /api/v1/datasets/{id}`; in lists once computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub stats: Option<tanren_core::dataset_stats::DatasetStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

/// A trial as lists show it (`GET /api/v1/trials/{id}` adds config, epochs and result).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Trial {
    pub id: i64,
    pub study_id: i64,
    pub number: i64,
    /// `queued`, `running`, `complete`, `pruned` or `failed`.
    pub state: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub worker_id: Option<String>,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub train_seconds: Option<f64>,
    pub error: Option<String>,
    /// `error`, `interrupted`, `retries_exhausted` or `stopped`; null unless failed.
    pub failure_kind: Option<String>,
    pub retry_of: Option<i64>,
    pub attempt: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialList {
    pub trials: Vec<Trial>,
}

/// A study: its row, budget, space, progress and best trial so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Study {
    pub id: i64,
    pub name: String,
    pub dataset_id: i64,
    /// `running`, `complete`, `stopped` or `failed`.
    pub state: String,
    pub error: Option<String>,
    /// Why it ended (`trial_budget`, `minutes_budget`, `space_exhausted`, `stopped`, `failed`); null
    /// while it runs.
    pub end_reason: Option<String>,
    pub end_reason_text: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub budget: Budget,
    pub progress: Progress,
    pub best_trial: Option<Trial>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StudyList {
    pub studies: Vec<Study>,
}

/// Every schema the OpenAPI document lists under `components/schemas`.
pub fn components() -> utoipa::openapi::Components {
    utoipa::openapi::ComponentsBuilder::new()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorDetail>()
        .schema_from::<CreateStudy>()
        .schema_from::<Budget>()
        .schema_from::<WorkerRegistration>()
        .schema_from::<Registered>()
        .schema_from::<NewToken>()
        .schema_from::<Token>()
        .schema_from::<TokenCreated>()
        .schema_from::<TokenList>()
        .schema_from::<Whoami>()
        .schema_from::<Progress>()
        .schema_from::<WorkerView>()
        .schema_from::<WorkerList>()
        .schema_from::<Dataset>()
        .schema_from::<DatasetList>()
        .schema_from::<Trial>()
        .schema_from::<TrialList>()
        .schema_from::<Study>()
        .schema_from::<StudyList>()
        .build()
}
