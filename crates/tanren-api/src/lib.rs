//! The REST contract of the control plane: request bodies it parses, the shapes it answers with, and
//! the error body, each with its OpenAPI schema (`utoipa::ToSchema`). The control plane parses requests
//! into these types and builds `/api/v1/openapi.json` from them; the CLI and the worker's registration
//! use the same types, so a field renamed on one side is renamed on both.
//!
//! Response objects carry at least the fields listed here (the schemas leave additional properties
//! open, so clients must ignore fields they do not know).

pub mod events;
pub mod prometheus;

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
    /// `tpe` (default; multi-objective TPE with two objectives), `random` or `nsga2`.
    #[serde(default)]
    pub sampler: Option<String>,
    /// What to optimise: `["accuracy"]` (default), or `["accuracy", "latency"]` to trade validation
    /// accuracy against inference milliseconds per image (the study then has a Pareto front).
    #[serde(default)]
    pub objectives: Option<Vec<String>>,
    /// A latency limit (ms per image, batch 1, as the worker measures it): slower trials never
    /// become the best model or join the Pareto front, and the search steers away from them.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0)]
    pub max_latency_ms: Option<f64>,
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
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
    /// Best estimate (the median) of the seconds left; 0 once the study ended; null until it can be
    /// estimated.
    pub eta_seconds: Option<f64>,
    /// The 80% range of the seconds left (10% and 90%): wide after one trial, narrowing as durations
    /// are measured, and skewed upwards while heavy configurations may still be drawn.
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
    /// Trials it runs at once at most (`--slots`).
    pub slots: i64,
    /// Trials this control plane runs on it now.
    #[serde(default)]
    pub slots_in_use: i64,
    pub registered_at: i64,
    pub last_seen_at: i64,
    /// Heard from within the timeout and registered with this control plane process.
    pub alive: bool,
    /// Runs at least one trial.
    pub busy: bool,
    /// The first trial it runs now, if any (all of them are in `running`).
    pub study_id: Option<i64>,
    pub trial_id: Option<i64>,
    /// Every trial it runs now, one per taken slot.
    #[serde(default)]
    pub running: Vec<RunningTrial>,
}

/// A trial running on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningTrial {
    pub study_id: i64,
    /// 0 for a moment while the trial's row is being written.
    pub trial_id: i64,
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
    /// How the zip was laid out: `train_test` (`train/<class>/`, `test/<class>/`) or `class_folders`
    /// (one folder per class, split 80/20 with `split_seed`).
    pub layout: String,
    /// Alphabetical (byte order), like torchvision's ImageFolder; a class's `index` is its label.
    pub classes: Vec<DatasetClass>,
    /// Zip entries that were not used, and why.
    pub skipped: Vec<SkippedEntry>,
    /// Seed of the stratified 80/20 split (recorded for every layout; used by `class_folders`).
    pub split_seed: u64,
}

/// One class of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetClass {
    pub index: u32,
    /// The folder name, in Unicode NFC.
    pub name: String,
    /// Images in the training split.
    pub train: u64,
    /// Images in the test split.
    pub test: u64,
    /// The zip's spellings of this folder when several differ only by Unicode normalisation (their
    /// images were merged into this class); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_spellings: Vec<String>,
}

/// A zip entry ingest did not use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SkippedEntry {
    /// The entry's name inside the zip.
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

/// A trial: one shape for REST lists, `GET /api/v1/trials/{id}` (which adds config, epochs and
/// result), a study's best trial, and every WebSocket event that carries a trial. Fields not known yet
/// are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Trial {
    pub id: i64,
    pub study_id: i64,
    pub number: i64,
    /// `queued`, `running`, `complete`, `pruned` or `failed`.
    pub state: String,
    /// The searched parameters' values.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// `cpu`, `cuda:0`, ...: where it trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_seconds: Option<f64>,
    /// Forward time per image at batch 1, on the worker that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_ms: Option<f64>,
    /// Images per second at batch 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_ips: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs_completed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error`, `interrupted`, `retries_exhausted` or `stopped`; only on failed trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<String>,
    /// The interrupted trial this one retries with the same parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
    /// 0 for a first attempt, n for the n-th retry.
    pub attempt: i64,
    /// SHA-256 of the stored weights (complete trials); downloads are checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// One epoch's metrics of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpochView {
    pub trial_id: i64,
    /// From 1.
    pub epoch: i64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub elapsed_seconds: f64,
}

/// `GET /api/v1/trials/{id}`: the trial, its training config, every epoch, and the full result
/// (confusion matrix, per-class accuracy, test predictions) once it is complete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialDetail {
    #[serde(flatten)]
    pub trial: Trial,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub epochs: Vec<EpochView>,
    /// Null until the trial completes.
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

/// One page of a study's trials, in the order they were recorded (trial number order), without
/// result blobs (`GET /trials/{id}` has the full trial).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialList {
    pub trials: Vec<Trial>,
    /// Pass as `after` for the next page; null when this page holds the last trial recorded so far
    /// (a running study records more later: ask again with the last cursor you had).
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A study: its row, budget, space, progress and best trial so far (REST, and the WebSocket snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// Retries of an interrupted trial; null: the control plane's `--max-retries`.
    pub max_retries: Option<u32>,
    /// The resolved search space (`space`: the searched parameters; `fixed`: the pinned ones).
    #[schema(value_type = Object)]
    pub space: serde_json::Value,
    /// The sampler's full config (`{"type": "tpe", ...}`).
    #[schema(value_type = Object)]
    pub sampler: serde_json::Value,
    #[schema(value_type = Object)]
    pub pruner: serde_json::Value,
    /// Whether trial 0 is the seed's configuration.
    pub baseline: bool,
    /// What the bounds were warned about at creation (`{param, message}`), kept with the study.
    #[schema(value_type = Vec<Object>)]
    pub warnings: serde_json::Value,
    /// The time estimate at creation (per trial and for the budget); null for older studies.
    #[schema(value_type = Object)]
    pub estimate: serde_json::Value,
    pub progress: Progress,
    /// The most accurate trial within the latency limit, if any.
    pub best_trial: Option<Trial>,
    /// `["accuracy"]` or `["accuracy", "latency"]`.
    pub objectives: Vec<String>,
    pub max_latency_ms: Option<f64>,
    /// Trials no other beats on both accuracy and latency (within the limit), fastest first.
    /// Present for accuracy-vs-latency studies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pareto_front: Option<Vec<ParetoPoint>>,
}

/// One trial on a study's accuracy-vs-latency Pareto front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParetoPoint {
    pub trial_id: i64,
    pub number: i64,
    pub val_accuracy: f64,
    pub inference_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StudyList {
    pub studies: Vec<Study>,
}

/// `GET /api/v1/studies/{id}/importance`: which parameters decided the validation accuracy. Too few
/// trials is not an error: `importances` is empty and `note` says how many are needed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Importance {
    /// `ped-anova` or `fanova`.
    pub method: String,
    /// Always `val_accuracy`.
    pub objective: String,
    /// Complete trials with a finite validation accuracy that went in.
    pub trials_used: usize,
    /// How many of them PED-ANOVA counted as the top set (absent for fANOVA and without a result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_trials: Option<usize>,
    /// How many complete trials count as "the best trials" in `best_range` and the sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_trials: Option<usize>,
    /// Most important first; shares sum to 1.
    #[schema(value_type = Vec<Object>)]
    pub importances: Vec<tanren_core::insight::ParamInsight>,
    /// The same in plain words.
    pub sentences: Vec<String>,
    /// Bounds for a follow-up study narrowed around the best trials (the create request's `bounds`
    /// shape; this study's own bounds while there is no result).
    #[schema(value_type = Object)]
    pub narrowed: tanren_core::space::Bounds,
    /// Why there are no importances yet; absent when there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /api/v1/search-space`: every tunable parameter. Each entry is its default bounds in the
/// search engine's `ParamDef` shape (`name`, `distribution`: `low`/`high` or `choices`, `condition`),
/// plus `label`, the widest bounds accepted (`allowed`) and a sentence (`help`). Parameters whose
/// default is one value keep the seed's behaviour until a person widens them towards `allowed`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchSpace {
    #[schema(value_type = Vec<Object>)]
    pub params: Vec<tanren_core::params::ParamDoc>,
    /// The seed project's values of every parameter (what a study with no bounds trains first).
    #[schema(value_type = Object)]
    pub baseline: serde_json::Value,
}

/// `PUT /api/v1/internal/trials/{id}/weights`: what was stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WeightsStored {
    pub bytes: u64,
}

/// Every schema the OpenAPI document lists under `components/schemas`.
/// `POST /api/v1/datasets/{id}/advice` (the body is optional; every field has a default).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdviceRequest {
    /// Run probes on a free worker (default true): a learning-rate range test, the largest useful
    /// batch, and epoch times of a few configurations. Without a free worker the advice comes from
    /// the dataset's statistics (and earlier probes, if any) and says so in `probe.note`.
    #[serde(default)]
    pub probe: Option<bool>,
    /// Optimizers whose learning rate is range-tested (`adam`, `adamw`, `sgd`); default
    /// `["adam", "sgd"]`.
    #[serde(default)]
    #[schema(max_items = 3)]
    pub optimizers: Option<Vec<String>>,
    /// How long the probes may run on the worker, in seconds (default 30 on a CPU worker, 60 on
    /// CUDA; 1 to 300). Fetching and decoding the dataset come on top.
    #[serde(default)]
    #[schema(minimum = 1.0, maximum = 300.0)]
    pub probe_seconds: Option<f64>,
}

/// One suggested bound and why, in a sentence.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SuggestedBound {
    pub param: String,
    /// `{"low": a, "high": b}` or `{"choices": [...]}`, as in `CreateStudy.bounds`.
    #[schema(value_type = Object)]
    pub bound: tanren_core::Bound,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BudgetSuggestion {
    pub trials: u32,
    pub minutes: f64,
    pub reason: String,
}

/// Whether probes ran for this advice, and what they measured.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ProbeSummary {
    /// Probes ran now, on `worker_id`.
    pub ran: bool,
    /// What the advice rests on, in a sentence (why no probe ran, or what was cut short).
    pub note: String,
    pub worker_id: Option<String>,
    /// Wall seconds of the probes on the worker.
    pub seconds: Option<f64>,
    /// The full report (`tanren_core::probe::ProbeReport`: loss curves, batch tries, timings), from
    /// this run or an earlier one.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
}

/// A warning about one bound (or `budget.trials` / `budget.minutes`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BoundWarning {
    pub param: String,
    pub message: String,
}

/// The answer of `POST /api/v1/datasets/{id}/advice`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Advice {
    pub dataset_id: i64,
    /// Ready to send as `bounds` of `POST /api/v1/studies`.
    #[schema(value_type = Object)]
    pub bounds: tanren_core::Bounds,
    pub suggestions: Vec<SuggestedBound>,
    pub budget: BudgetSuggestion,
    pub probe: ProbeSummary,
    /// What the probes measured, as the warnings of later studies on this dataset read it.
    #[schema(value_type = Object)]
    pub measured: serde_json::Value,
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
    /// The time estimate of a study with these bounds and budget (as `POST /studies/estimate`).
    #[schema(value_type = Object)]
    pub estimate: serde_json::Value,
    pub warnings: Vec<BoundWarning>,
}

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
        .schema_from::<RunningTrial>()
        .schema_from::<WorkerList>()
        .schema_from::<Dataset>()
        .schema_from::<DatasetClass>()
        .schema_from::<SkippedEntry>()
        .schema_from::<Importance>()
        .schema_from::<WeightsStored>()
        .schema_from::<SearchSpace>()
        .schema_from::<DatasetList>()
        .schema_from::<Trial>()
        .schema_from::<EpochView>()
        .schema_from::<TrialDetail>()
        .schema_from::<TrialList>()
        .schema_from::<Study>()
        .schema_from::<ParetoPoint>()
        .schema_from::<StudyList>()
        .schema_from::<AdviceRequest>()
        .schema_from::<SuggestedBound>()
        .schema_from::<BudgetSuggestion>()
        .schema_from::<ProbeSummary>()
        .schema_from::<BoundWarning>()
        .schema_from::<Advice>()
        .build()
}
