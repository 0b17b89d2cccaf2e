//! The live event stream's messages (`GET /api/v1/studies/{id}/events`, a WebSocket): one JSON text
//! frame per [`Message`]. The control plane's `events` module documents the ordering and resume
//! contract; these are the shapes.

use crate::{Study, Trial, WorkerView};
use serde::{Deserialize, Serialize};
use tanren_core::EpochMetrics;

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub study_id: i64,
    /// Unix milliseconds when the event was published.
    pub at: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Full state; the first message of a connection (never stored in the ring).
    Snapshot(Box<Snapshot>),
    TrialQueued {
        trial: Trial,
    },
    /// Sent when a worker takes the trial, and again when it reports its device.
    TrialStarted {
        trial: Trial,
    },
    TrialEpoch {
        trial_id: i64,
        number: i64,
        metrics: EpochMetrics,
    },
    TrialCompleted {
        trial: Trial,
    },
    TrialPruned {
        trial: Trial,
    },
    TrialFailed {
        trial: Trial,
    },
    /// Counts, ETA and the best trial; sent (debounced) after trial changes.
    Progress {
        progress: crate::Progress,
        best_trial: Option<Trial>,
    },
    StudyFinished {
        state: String,
        error: Option<String>,
        /// `tanren_core::EndReason`: trial_budget, minutes_budget, space_exhausted, stopped, failed.
        #[serde(default)]
        end_reason: Option<String>,
    },
    WorkerUp {
        worker: WorkerView,
    },
    WorkerDown {
        worker_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identifies this process's numbering; pass it back as `?stream=` with `?since=`.
    pub stream: u64,
    /// The study as `GET /api/v1/studies/{id}` shows it (progress and best trial included).
    pub study: Study,
    pub trials: Vec<Trial>,
    /// Validation accuracy per epoch, for the running trials, the best ones and the most recent ones
    /// (all of them for small studies): learning curves of 10,000 trials would drown the page.
    pub curves: Vec<Curve>,
    /// Trials with epochs whose curve was left out.
    pub curves_omitted: usize,
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub trial_id: i64,
    /// `[epoch, val_accuracy]`.
    pub points: Vec<[f64; 2]>,
}
