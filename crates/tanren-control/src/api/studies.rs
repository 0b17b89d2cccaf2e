//! Studies: create (validated bounds and budget), list, progress with best trial and ETA (see
//! crate::progress), stop.

use super::{parse_json, S};
use crate::error::{ApiError, ApiResult};
use crate::study_spec::{CreateStudy, StudySpec};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use tanren_core::objective::check_pruner;
use tanren_core::{param_docs, EndReason, ImageSpace, Objectives, StudyState};
use tanren_search::{PrunerConfig, SamplerConfig, Study};
use tanren_store::{StoreError, StudyRow};

fn field(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// Every parameter: its default bounds in the search engine's `ParamDef` shape (`low`/`high` or
/// `choices`, and `condition`), the widest bounds accepted (`allowed`), and a sentence (`help`).
/// Parameters whose default is one value (`architecture: ["cnn"]`, `label_smoothing: 0..0`) keep the
/// seed's behaviour until a person widens them towards `allowed`.
pub async fn search_space() -> Json<tanren_api::SearchSpace> {
    Json(tanren_api::SearchSpace {
        params: param_docs(),
        baseline: serde_json::to_value(tanren_core::seed_params()).unwrap_or_default(),
    })
}

pub async fn create(State(s): State<S>, body: Bytes) -> ApiResult<(StatusCode, Json<tanren_api::Study>)> {
    let req: CreateStudy = parse_json(&body)?;
    let ds = match s.store.dataset(req.dataset_id).await {
        Ok(d) => d,
        Err(StoreError::NotFound(_)) => {
            return Err(field(
                "dataset_id",
                format!("dataset {} does not exist; upload one first", req.dataset_id),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let image_space = ImageSpace::from_bounds(&req.bounds)?;
    let mut budget = req.budget.clone();
    if let Some(t) = budget.trials {
        if !(1..=100_000).contains(&t) {
            return Err(field("budget.trials", format!("must be 1..=100000, got {t}")));
        }
    }
    if let Some(m) = budget.minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(field(
                "budget.minutes",
                format!("must be a positive number of minutes, got {m}"),
            ));
        }
    }
    if budget.trials.is_none() && budget.minutes.is_none() {
        budget.trials = Some(20);
    }
    let sampler = match req.sampler.as_deref() {
        None | Some("tpe") => SamplerConfig::default(),
        Some("random") => SamplerConfig::Random,
        Some("nsga2") => serde_json::from_value(serde_json::json!({ "type": "nsga2" }))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        Some(other) => {
            return Err(field(
                "sampler",
                format!("unknown sampler `{other}`; use tpe, random or nsga2"),
            ))
        }
    };
    let objectives = Objectives::parse(req.objectives.as_deref(), req.max_latency_ms)
        .map_err(|e| field(e.field, e.message))?;
    if let Some(r) = req.max_retries {
        if r > 100 {
            return Err(field("max_retries", format!("must be 0..=100, got {r}")));
        }
    }
    let pruner = StudySpec::parse_pruner(req.pruner.as_ref()).map_err(|m| field("pruner", m))?;
    check_pruner(&objectives, pruner == PrunerConfig::None).map_err(|e| field(e.field, e.message))?;
    let summary: serde_json::Value = serde_json::from_str(&ds.summary).unwrap_or_default();
    let split_seed = summary["split_seed"].as_u64().unwrap_or(0);
    let search = StudySpec::search_config(&image_space, &objectives, sampler, pruner, req.seed);
    Study::new(search.clone()).map_err(|e| field("bounds", e.to_string()))?;
    let (estimate, warnings) = crate::estimate::assess(&s, &ds, &req.bounds, &image_space, &budget).await?;
    let spec = StudySpec {
        image_space,
        search,
        baseline: req.baseline,
        num_classes: ds.num_classes as u32,
        dataset_sha256: ds.sha256.clone(),
        split_seed,
        seed: req.seed,
        max_retries: req.max_retries,
        objectives,
        warnings,
        estimate: Some(estimate),
    };
    let name = req
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{} study", ds.name));
    let spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = s
        .store
        .insert_study(tanren_store::NewStudy {
            name: &name,
            dataset_id: ds.id,
            spec: &spec_json,
            max_trials: budget.trials.map(i64::from),
            max_minutes: budget.minutes,
        })
        .await?;
    s.scheduler
        .add_study(row.clone(), spec)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(study_id = row.id, dataset_id = ds.id, "study created");
    Ok((StatusCode::CREATED, Json(study_json(&s, &row).await?)))
}

pub async fn list(State(s): State<S>) -> ApiResult<Json<tanren_api::StudyList>> {
    let mut studies = Vec::new();
    for row in s.store.studies().await? {
        studies.push(study_json(&s, &row).await?);
    }
    Ok(Json(tanren_api::StudyList { studies }))
}

pub async fn get_one(State(s): State<S>, Path(id): Path<i64>) -> ApiResult<Json<tanren_api::Study>> {
    let row = s.store.study(id).await?;
    Ok(Json(study_json(&s, &row).await?))
}

pub async fn stop(State(s): State<S>, Path(id): Path<i64>) -> ApiResult<Json<tanren_api::Study>> {
    let row = s.store.study(id).await?;
    if row.state != StudyState::Running.as_str() {
        return Err(ApiError::Conflict(format!("study {id} is already {}", row.state)));
    }
    s.scheduler.stop(id).await;
    s.store
        .finish_study(id, StudyState::Stopped, EndReason::Stopped, None)
        .await?;
    crate::events::study_finished(&s, id).await;
    let row = s.store.study(id).await?;
    Ok(Json(study_json(&s, &row).await?))
}

async fn study_json(s: &S, row: &StudyRow) -> ApiResult<tanren_api::Study> {
    study_view(s, row).await
}

/// The study as REST and the WebSocket snapshot show it: the row, budget, space, progress, best trial.
/// Reads counts and the complete trials' scores, not every trial (see `progress::summary`).
pub async fn study_view(s: &S, row: &StudyRow) -> ApiResult<tanren_api::Study> {
    if let Some(view) = s.finished_views.get(row) {
        return Ok(view);
    }
    let sum = crate::progress::summary(s, row).await?;
    let view = crate::views::study(row, &sum.scores, sum.best.as_ref(), sum.progress);
    s.finished_views.put(row, &view, sum.scores);
    Ok(view)
}
