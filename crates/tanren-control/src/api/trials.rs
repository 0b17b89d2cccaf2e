//! Trials: listing, one trial in full (params, config, per-epoch metrics, confusion matrix, timings),
//! the weight upload workers make, and model downloads (zip with weights, model.json and ONNX; the
//! INT8 ONNX with `?int8=true`).

use super::S;
use crate::error::{ApiError, ApiResult};
use crate::progress::{candidates_of, objectives_of};
use crate::{model_card, onnx, views};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tanren_api::{Trial, TrialDetail, TrialList};
use tanren_core::TrialState;
use tanren_store::TrialRow;
use tokio::io::AsyncWriteExt;

/// Trials a page holds when the caller does not say, and at most.
pub const PAGE_DEFAULT: i64 = 1000;
pub const PAGE_MAX: i64 = 1000;

#[derive(Deserialize)]
pub struct ListQuery {
    /// At most this many trials (1..=1000, default 1000).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
}

/// A page of the study's trials in the order they were recorded (trial number order), without
/// result blobs; `next_cursor` continues after it. A keyset on the trial id: trials recorded while a
/// client walks the pages come after everything it has not seen yet, so each trial is listed exactly
/// once.
pub async fn list(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<TrialList>> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit".into(),
            message: format!("must be 1..={PAGE_MAX}, got {limit}"),
        });
    }
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| ApiError::InvalidField {
            field: "after".into(),
            message: format!("`{c}` is not a cursor from this list's `next_cursor`"),
        })?),
    };
    s.store.study(id).await?;
    let mut trials = s.store.trial_page(id, after, limit + 1).await?;
    let more = trials.len() as i64 > limit;
    trials.truncate(limit as usize);
    Ok(Json(TrialList {
        next_cursor: more.then(|| trials.last().map(|t| t.id.to_string())).flatten(),
        trials: trials.iter().map(views::trial).collect(),
    }))
}

/// A cursor is the id of the last trial of the previous page, in decimal.
fn parse_cursor(c: &str) -> Option<i64> {
    if c.is_empty() || c.len() > 19 || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
}

pub async fn get_one(State(s): State<S>, Path(id): Path<i64>) -> ApiResult<Json<TrialDetail>> {
    let t = s.store.trial(id).await?;
    Ok(Json(views::trial_detail(&t, &s.store.epochs(id).await?)))
}

/// Workers PUT the trained weights here before reporting the result, with the trial's own token, once,
/// up to `max_weights_bytes`. Only a running trial takes them, and the file appears atomically and
/// durably (temp file, fsync, rename, fsync of the directory) and only while the trial has not ended,
/// so a trial recorded complete never points at weights a power cut lost or a late upload replaced.
pub async fn upload_weights(
    State(s): State<S>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<tanren_api::WeightsStored>> {
    s.auth.begin_upload(id, crate::auth::bearer(&headers))?;
    let t = s.store.trial(id).await?;
    if t.state != TrialState::Running.as_str() {
        return Err(ApiError::Conflict(format!(
            "trial {id} is {}, not running; weights refused",
            t.state
        )));
    }
    let dir = s.files.model_dir(id);
    tokio::fs::create_dir_all(&dir).await?;
    let stored = store_weights(&s, id, &dir, body).await;
    if stored.is_err() {
        // Nothing was persisted: leave no empty dir behind (a full dir is never removed here).
        let _ = tokio::fs::remove_dir(&dir).await;
    }
    stored
}

async fn store_weights(
    s: &S,
    id: i64,
    dir: &std::path::Path,
    body: Body,
) -> ApiResult<Json<tanren_api::WeightsStored>> {
    let limit = s.config.max_weights_bytes;
    let tmp = tempfile::Builder::new().suffix(".part").tempfile_in(dir)?;
    let mut file = tokio::fs::File::create(tmp.path()).await?;
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?;
        n += chunk.len() as u64;
        if n > limit {
            return Err(ApiError::PayloadTooLarge {
                limit,
                setting: "TANREN_MAX_WEIGHTS_BYTES",
            });
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    s.metrics
        .weights_bytes
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    if n == 0 {
        return Err(ApiError::BadRequest("empty weights upload".into()));
    }
    file.sync_all().await?;
    drop(file);
    let target = s.files.weights(id);
    s.auth
        .finish_upload(id, || tmp.persist(target))?
        .map_err(|e| ApiError::from(e.error))?;
    let dir2 = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir2)?.sync_all())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(tanren_api::WeightsStored { bytes: n }))
}

#[derive(Deserialize)]
pub struct ModelQuery {
    /// Also include `model.int8.onnx` (calibrated on the study's training images on first request).
    #[serde(default)]
    int8: bool,
}

#[derive(Deserialize)]
pub struct StudyModelQuery {
    #[serde(default)]
    int8: bool,
    /// The fastest trial whose validation accuracy is within this many percentage points of the
    /// best (after `max_latency_ms`), instead of the most accurate.
    within_points: Option<f64>,
    /// Only trials at most this many ms per image (on top of the study's own limit).
    max_latency_ms: Option<f64>,
}

/// The study's best model, or with `within_points` / `max_latency_ms` the one that trades accuracy
/// for speed as asked (see `tanren_core::objective`). `x-tanren-trial-id` says which trial it is.
pub async fn study_model(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<StudyModelQuery>,
) -> ApiResult<Response> {
    let t = chosen_trial(&s, id, &q).await?;
    let mut response = model_zip(&s, &t, q.int8).await?;
    response
        .headers_mut()
        .insert("x-tanren-trial-id", axum::http::HeaderValue::from(t.id));
    Ok(response)
}

/// The trial `study_model` with the same query would zip, without building the zip: what the
/// dashboard shows before a download.
pub async fn study_model_trial(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<StudyModelQuery>,
) -> ApiResult<Json<Trial>> {
    Ok(Json(views::trial(&chosen_trial(&s, id, &q).await?)))
}

async fn chosen_trial(s: &S, id: i64, q: &StudyModelQuery) -> ApiResult<TrialRow> {
    let bad = |field: &str, message: String| ApiError::InvalidField {
        field: field.into(),
        message,
    };
    if let Some(p) = q.within_points {
        if !(p.is_finite() && (0.0..=100.0).contains(&p)) {
            return Err(bad(
                "within_points",
                format!("must be 0..=100 percentage points, got {p}"),
            ));
        }
    }
    if let Some(ms) = q.max_latency_ms {
        if !(ms.is_finite() && ms > 0.0) {
            return Err(bad(
                "max_latency_ms",
                format!("must be a positive number of milliseconds per image, got {ms}"),
            ));
        }
    }
    let study = s.store.study(id).await?;
    // A finished study's scores were read once for its view; a running one's change: read them.
    let scores = match s.finished_views.scores(&study) {
        Some(scores) => scores,
        None => std::sync::Arc::new(s.store.complete_scores(id).await?),
    };
    let chosen = objectives_of(&study)
        .choose(&candidates_of(&scores), q.within_points, q.max_latency_ms)
        .map_err(|e| ApiError::NotFound(format!("study {id}: {}", e.0)))?;
    Ok(s.store.trial(chosen.id).await?)
}

pub async fn trial_model(
    State(s): State<S>,
    Path(id): Path<i64>,
    Query(q): Query<ModelQuery>,
) -> ApiResult<Response> {
    let t = s.store.trial(id).await?;
    if t.state != TrialState::Complete.as_str() {
        return Err(ApiError::NotFound(format!(
            "trial {id} is {}; only complete trials have a model",
            t.state
        )));
    }
    model_zip(&s, &t, q.int8).await
}

async fn model_zip(s: &S, t: &TrialRow, int8: bool) -> ApiResult<Response> {
    let study = s.store.study(t.study_id).await?;
    let dataset = s.store.dataset(study.dataset_id).await?;
    let weights = tokio::fs::read(s.files.weights(t.id)).await.map_err(|e| {
        ApiError::NotFound(format!(
            "weights of trial {} are missing on the control plane ({e})",
            t.id
        ))
    })?;
    if let Some(expected) = &t.model_sha256 {
        let got = hex::encode(Sha256::digest(&weights));
        if &got != expected {
            tracing::error!(trial_id = t.id, %expected, %got, "stored weights do not match their sha256");
            return Err(ApiError::Internal(format!(
                "the weights of trial {} are corrupted on the control plane (sha256 mismatch)",
                t.id
            )));
        }
    }
    let mut card = model_card::model_json(t, &study, &dataset).map_err(ApiError::Internal)?;
    let cfg: tanren_core::TrainConfig = serde_json::from_str(&t.config)
        .map_err(|e| ApiError::Internal(format!("trial {} config: {e}", t.id)))?;
    let (files, trial_id) = (s.files.clone(), t.id);
    let dataset_dir = s.files.dataset_dir(&dataset.sha256);
    let bytes = tokio::task::spawn_blocking(move || {
        let classes: Vec<String> = card["classes"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let fp32 = onnx::fp32(&cfg, &weights, &classes)?;
        let int8 = match int8 {
            true => Some(onnx::int8(
                &files,
                trial_id,
                &dataset_dir,
                &cfg,
                &weights,
                &classes,
            )?),
            false => None,
        };
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("model.safetensors", weights.as_slice()),
            (onnx::FP32_FILE, fp32.as_slice()),
        ];
        if let Some(b) = &int8 {
            entries.push((onnx::INT8_FILE, b.as_slice()));
        }
        card["files"] = std::iter::once("model.json")
            .chain(entries.iter().map(|(name, _)| *name))
            .collect();
        model_card::zip(&card, &entries)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::Internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"tanren-study{}-trial{}.zip\"",
                    t.study_id, t.id
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}
