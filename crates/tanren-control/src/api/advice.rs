//! Guidance routes. `POST /api/v1/studies/estimate`: the same body as creating a study, answered
//! with what creating it would say about cost and bounds (the new-study form calls it as bounds
//! change), without creating anything. `POST /api/v1/datasets/{id}/advice`: suggested bounds.

use super::{parse_json, S};
use crate::error::{ApiError, ApiResult};
use crate::study_spec::CreateStudy;
use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use tanren_core::ImageSpace;
use tanren_store::StoreError;

pub async fn estimate(State(s): State<S>, body: Bytes) -> ApiResult<Json<serde_json::Value>> {
    let req: CreateStudy = parse_json(&body)?;
    let ds = match s.store.dataset(req.dataset_id).await {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::InvalidField {
                field: "dataset_id".into(),
                message: format!("dataset {} does not exist; upload one first", req.dataset_id),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let space = ImageSpace::from_bounds(&req.bounds)?;
    let mut budget = req.budget.clone();
    if budget.trials.is_none() && budget.minutes.is_none() {
        budget.trials = Some(20);
    }
    if budget.trials.is_some_and(|t| !(1..=100_000).contains(&t)) {
        return Err(ApiError::InvalidField {
            field: "budget.trials".into(),
            message: "must be 1..=100000".into(),
        });
    }
    if budget.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
        return Err(ApiError::InvalidField {
            field: "budget.minutes".into(),
            message: "must be a positive number of minutes".into(),
        });
    }
    let (estimate, warnings) = crate::estimate::assess(&s, &ds, &req.bounds, &space, &budget).await?;
    Ok(Json(
        serde_json::json!({ "estimate": estimate, "warnings": warnings }),
    ))
}

/// `POST /api/v1/datasets/{id}/advice`: suggested bounds for every searched parameter with a reason
/// each, a budget, and the estimate of a study with them. Kept in the dataset's directory
/// (`advice.json`) so later studies' warnings can use what it measured.
pub async fn advise(
    State(s): State<S>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let ds = s.store.dataset(id).await?;
    let stats = super::dataset_stats(&s, &ds).await?;
    let data = crate::estimate::data_size(&ds);
    let measured = crate::estimate::measured(&s, &ds).await;
    let cuda = s
        .scheduler
        .live_workers(s.store.workers().await?)
        .iter()
        .any(|w| w.cuda_available != 0);
    let model = crate::estimate::history_model(&s, cuda).await?;
    let advice = tanren_core::advisor::advise(&stats, data, measured.as_ref(), &model);
    let space = ImageSpace::from_bounds(&advice.bounds)?;
    let budget = tanren_api::Budget {
        trials: Some(advice.budget.trials),
        minutes: None,
    };
    let (estimate, warnings) = crate::estimate::assess(&s, &ds, &advice.bounds, &space, &budget).await?;
    let body = serde_json::json!({
        "dataset_id": id,
        "bounds": advice.bounds,
        "suggestions": advice.suggestions,
        "budget": advice.budget,
        "measured": advice.measured,
        "stats": stats,
        "estimate": estimate,
        "warnings": warnings,
    });
    let dir = s.files.dataset_dir(&ds.sha256);
    let path = dir.join(crate::estimate::ADVICE_FILE);
    let tmp = dir.join(format!(".{}.tmp", crate::estimate::ADVICE_FILE));
    let bytes = serde_json::to_vec_pretty(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Best effort: the advice is still answered when the dataset dir is not writable.
    if tokio::fs::write(&tmp, bytes).await.is_ok() {
        let _ = tokio::fs::rename(&tmp, &path).await;
    }
    Ok(Json(body))
}
