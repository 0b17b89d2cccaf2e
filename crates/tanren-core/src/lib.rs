//! Domain types every tanren service shares: what a trial trains (`TrainConfig`, `ModelSpec`), what it
//! reports (`EpochMetrics`, `TrialResult`), the lifecycle states, and the image-classification search
//! space with its defaults. No IO, no async, no torch: one place for each fact (STYLE.md #8).

pub mod advisor;
pub mod config;
pub mod dataset_stats;
pub mod estimate;
pub mod insight;
pub mod memory;
pub mod metrics;
pub mod objective;
pub mod params;
pub mod probe;
pub mod space;
pub mod state;
pub mod warnings;

pub use config::*;
pub use metrics::*;
pub use objective::{Candidate, Objective, Objectives};
pub use params::*;
pub use space::*;
pub use state::*;
