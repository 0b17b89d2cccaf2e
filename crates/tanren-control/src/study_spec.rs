//! What a study is, as stored in `studies.spec`: the person's request after validation, the resolved
//! search space, and the search engine's config. Decoding it is how a restarted control plane resumes.

use serde::{Deserialize, Serialize};
use tanren_core::{ImageSpace, Objectives};
use tanren_search::{PrunerConfig, SamplerConfig, StudyConfig};

/// The body of `POST /api/v1/studies` and its budget: the REST contract's types.
pub use tanren_api::{Budget, CreateStudy};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudySpec {
    pub image_space: ImageSpace,
    pub search: StudyConfig,
    pub baseline: bool,
    pub num_classes: u32,
    pub dataset_sha256: String,
    pub split_seed: u64,
    pub seed: u64,
    /// Absent in specs stored before retries existed: the control plane's setting applies.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Absent in specs stored before multi-objective studies: accuracy alone, no latency limit.
    #[serde(default)]
    pub objectives: Objectives,
    /// What the bounds were warned about at creation (shown on the study page); absent before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<tanren_core::warnings::Warning>,
    /// The time estimate at creation; absent in specs stored before estimates existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<crate::estimate::Estimate>,
}

impl StudySpec {
    pub fn search_config(
        image_space: &ImageSpace,
        objectives: &Objectives,
        sampler: SamplerConfig,
        pruner: PrunerConfig,
        seed: u64,
    ) -> StudyConfig {
        StudyConfig {
            space: image_space.space.clone(),
            directions: objectives.directions(),
            sampler,
            pruner,
            seed,
        }
    }

    /// The `pruner` field of a request: a name (each pruner with its defaults) or a full config.
    pub fn parse_pruner(v: Option<&serde_json::Value>) -> Result<PrunerConfig, String> {
        let v = match v {
            None | Some(serde_json::Value::Null) => return Ok(PrunerConfig::None),
            Some(serde_json::Value::String(name)) => serde_json::json!({ "type": name }),
            Some(other) => other.clone(),
        };
        serde_json::from_value(v).map_err(|e| format!("{e}; use none, median, asha or hyperband"))
    }
}
