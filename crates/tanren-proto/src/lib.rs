//! The worker protocol (`proto/tanren/v1/worker.proto`) and conversions between its messages and
//! tanren-core types. Validation happens on receive: a message that does not convert is an
//! `invalid_argument` status, never a panic.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("tanren.v1");
}

use tanren_core::{EpochMetrics, TrainConfig, TrialResult};
use tonic::Status;

impl From<&EpochMetrics> for v1::Epoch {
    fn from(m: &EpochMetrics) -> Self {
        v1::Epoch {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            elapsed_seconds: m.elapsed_seconds,
        }
    }
}

impl From<v1::Epoch> for EpochMetrics {
    fn from(m: v1::Epoch) -> Self {
        EpochMetrics {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            elapsed_seconds: m.elapsed_seconds,
        }
    }
}

/// Parse and validate the training config carried by a `TrialRequest`.
pub fn decode_config(json: &str) -> Result<TrainConfig, Status> {
    let cfg: TrainConfig =
        serde_json::from_str(json).map_err(|e| Status::invalid_argument(format!("config_json: {e}")))?;
    cfg.validate()
        .map_err(|e| Status::invalid_argument(format!("config_json: {e}")))?;
    Ok(cfg)
}

pub fn encode_config(cfg: &TrainConfig) -> String {
    serde_json::to_string(cfg).expect("TrainConfig serializes")
}

pub fn decode_result(r: v1::Result) -> Result<TrialResult, Status> {
    serde_json::from_str(&r.result_json).map_err(|e| Status::invalid_argument(format!("result_json: {e}")))
}

pub fn encode_result(r: &TrialResult) -> v1::Result {
    v1::Result {
        result_json: serde_json::to_string(r).expect("TrialResult serializes"),
    }
}
