//! `GET /api/v1/studies/{id}/importance`: which parameters decided the validation accuracy
//! (PED-ANOVA over the complete trials, `tanren_search::importance`), the same in sentences, and
//! the bounds of a follow-up study narrowed around the best trials (`tanren_core::insight`).
//! Too few trials is a 200 with no importances and a `note` saying how many are needed, so a
//! dashboard can poll it from the first trial on. `?method=fanova` answers with fANOVA instead (over
//! the last 1,000 complete trials, conditional parameters at 0), to compare the two on real studies.

use super::S;
use crate::error::{ApiError, ApiResult};
use crate::study_spec::StudySpec;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use tanren_api::Importance;
use tanren_core::insight::{current_bounds, explain};
use tanren_core::TrialState;
use tanren_search::importance::{fanova, ped_anova, Observation, PedAnova};
use tanren_search::{Direction, Params};

/// fANOVA's forest grows quadratically in trials as written; the last this many are plenty.
const FANOVA_MAX_TRIALS: usize = 1000;

#[derive(Deserialize)]
pub struct ImportanceQuery {
    /// `ped-anova` (default) or `fanova`.
    method: Option<String>,
}

pub async fn get(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<ImportanceQuery>,
) -> ApiResult<Json<Importance>> {
    let method = match q.method.as_deref() {
        None | Some("ped-anova") => "ped-anova",
        Some("fanova") => "fanova",
        Some(other) => {
            return Err(ApiError::InvalidField {
                field: "method".into(),
                message: format!("unknown importance method `{other}`; use ped-anova or fanova"),
            })
        }
    };
    let row = s.store.study(id).await?;
    let spec: StudySpec = serde_json::from_str(&row.spec)
        .map_err(|e| ApiError::Internal(format!("study {id}: stored spec does not parse: {e}")))?;
    let trials = s.store.trials_light(id).await?;
    let observations: Vec<Observation> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete.as_str())
        .filter_map(|t| {
            let value = t.val_accuracy.filter(|v| v.is_finite())?;
            let params: Params = serde_json::from_str(&t.params).ok()?;
            Some(Observation { params, value })
        })
        .collect();
    let direction = spec
        .search
        .directions
        .first()
        .copied()
        .unwrap_or(Direction::Maximize);
    let space = &spec.image_space;
    let result = if method == "fanova" {
        let recent = &observations[observations.len().saturating_sub(FANOVA_MAX_TRIALS)..];
        let (sp, obs, seed) = (space.space.clone(), recent.to_vec(), spec.seed);
        tokio::task::spawn_blocking(move || fanova(&sp, &obs, direction, 64, seed))
            .await
            .map_err(|e| ApiError::Internal(format!("importance: {e}")))?
    } else {
        ped_anova(&space.space, &observations, direction, &PedAnova::default())
    };
    let method = method.to_string();
    let objective = "val_accuracy".to_string();
    let body = match result {
        Ok(report) => {
            let insight = explain(space, &report, &observations, direction);
            Importance {
                method,
                objective,
                trials_used: report.trials_used,
                top_trials: Some(report.top_trials),
                best_trials: Some(insight.best_trials),
                importances: insight.importances,
                sentences: insight.sentences,
                narrowed: insight.narrowed,
                note: None,
            }
        }
        Err(e) => Importance {
            method,
            objective,
            trials_used: observations.len(),
            top_trials: None,
            best_trials: None,
            importances: Vec::new(),
            sentences: Vec::new(),
            narrowed: current_bounds(space),
            note: Some(e.to_string()),
        },
    };
    Ok(Json(body))
}
