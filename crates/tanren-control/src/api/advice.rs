//! `POST /api/v1/studies/estimate`: the same body as creating a study, answered with what creating
//! it would say about cost and bounds (the new-study form calls it as bounds change), without
//! creating anything.

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
