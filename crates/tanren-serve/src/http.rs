//! tanren's own routes: `POST /v1/models/{name}/classify` (images as multipart fields or one raw
//! `image/*` body; top-k classes with names and probabilities per image), `GET /v1/models`, and the
//! router that also mounts the v2 protocol (`v2.rs`).

use crate::batcher::{ImageData, Row};
use crate::error::{Rest, ServeError};
use crate::preprocess::{decode_all, Upload};
use crate::{Served, S};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Single images up to this size are decoded on the request's own task (see `classify`).
const INLINE_DECODE_BYTES: usize = 4 << 10;

pub fn router(state: S) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/models", get(list))
        .route("/v1/models/{name}/classify", post(classify))
        .merge(crate::v2::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The model, once loading has finished.
pub fn served(s: &S, name: &str) -> Result<Arc<Served>, ServeError> {
    let models = s
        .models
        .get()
        .ok_or_else(|| ServeError::Overloaded("models are still loading".into()))?;
    models.get(name).cloned().ok_or_else(|| ServeError::UnknownModel {
        name: name.to_string(),
        loaded: models
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The request's deadline: the server's limit, or sooner if the client asks (`x-request-timeout-ms`).
pub fn deadline(s: &S, headers: &HeaderMap) -> Result<Instant, ServeError> {
    let mut timeout = s.config.request_timeout;
    if let Some(v) = headers.get("x-request-timeout-ms") {
        let ms: u64 = v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ServeError::BadRequest("x-request-timeout-ms must be a whole number of milliseconds".into())
            })?;
        timeout = timeout.min(std::time::Duration::from_millis(ms));
    }
    Ok(Instant::now() + timeout)
}

/// Admission: at most `max_inflight` requests decode or wait at once; the rest get 503 + Retry-After.
pub fn admit(s: &S) -> Result<tokio::sync::OwnedSemaphorePermit, ServeError> {
    s.inflight.clone().try_acquire_owned().map_err(|_| {
        ServeError::Overloaded(format!(
            "{} requests in flight (--max-inflight)",
            s.config.max_inflight
        ))
    })
}

async fn list(State(s): State<S>) -> Json<serde_json::Value> {
    let models: Vec<serde_json::Value> = s
        .models
        .get()
        .map(|m| {
            m.values()
                .map(|sv| {
                    let st = &sv.batcher.stats;
                    serde_json::json!({
                        "name": sv.info.name,
                        "version": sv.info.version,
                        "classes": sv.info.classes,
                        "input": {"channels": sv.info.channels, "size": [sv.info.image_size, sv.info.image_size]},
                        "architecture": sv.info.spec,
                        "provenance": sv.info.provenance,
                        "max_batch": sv.batcher.max_batch(),
                        "stats": {
                            "images": st.images.load(Ordering::Relaxed),
                            "batches": st.batches.load(Ordering::Relaxed),
                            "largest_batch": st.largest_batch.load(Ordering::Relaxed),
                            "expired": st.expired.load(Ordering::Relaxed),
                            "queued": sv.batcher.queued(),
                        },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(serde_json::json!({
        "ready": s.models.get().is_some(),
        "device": s.device_label,
        "max_batch": s.config.batch.max_batch,
        "max_delay_ms": s.config.batch.max_delay.as_secs_f64() * 1000.0,
        "models": models,
    }))
}

#[derive(Deserialize)]
struct ClassifyQuery {
    top_k: Option<usize>,
}

async fn classify(
    State(s): State<S>,
    Path(name): Path<String>,
    Query(q): Query<ClassifyQuery>,
    headers: HeaderMap,
    req: Request,
) -> Result<Json<serde_json::Value>, Rest> {
    let start = Instant::now();
    let model = served(&s, &name)?;
    let deadline = deadline(&s, &headers)?;
    let _permit = admit(&s)?;
    let coming = model.batcher.announce();
    let k = model.info.classes.len();
    let top_k = match q.top_k {
        Some(0) => return Err(ServeError::BadRequest("top_k must be at least 1".into()).into()),
        Some(t) => t.min(k),
        None => 5.min(k),
    };
    let uploads = read_images(&s, &headers, req).await?;
    let (size, channels) = (model.info.image_size, model.info.channels);
    let files: Vec<String> = uploads.iter().map(|u| u.label.clone()).collect();
    // A small image decodes in tens of microseconds: less than the hand-off to a blocking thread and
    // the rayon pool would cost, so it is decoded right here. Anything bigger goes to the pool.
    let small = uploads.len() == 1 && uploads[0].bytes.len() <= INLINE_DECODE_BYTES;
    let pixels = if small {
        decode_all(&uploads, size, channels)?
    } else {
        tokio::task::spawn_blocking(move || decode_all(&uploads, size, channels))
            .await
            .map_err(ServeError::internal)??
    };
    let rows = model
        .batcher
        .submit(
            pixels.into_iter().map(ImageData::Pixels).collect(),
            deadline,
            coming,
        )
        .await?;
    let predictions: Vec<serde_json::Value> = rows
        .iter()
        .zip(files)
        .map(|(row, file)| prediction(row, &file, &model.info.classes, top_k))
        .collect();
    Ok(Json(serde_json::json!({
        "model": model.info.name,
        "version": model.info.version,
        "predictions": predictions,
        "server_ms": start.elapsed().as_secs_f64() * 1000.0,
    })))
}

/// Top-k of one row, best first (ties keep the lower class index first, like argmax).
fn prediction(row: &Row, file: &str, classes: &[String], top_k: usize) -> serde_json::Value {
    let mut order: Vec<usize> = (0..row.probabilities.len()).collect();
    order.sort_by(|&a, &b| {
        row.probabilities[b]
            .total_cmp(&row.probabilities[a])
            .then(a.cmp(&b))
    });
    let top: Vec<serde_json::Value> = order
        .iter()
        .take(top_k)
        .map(|&i| serde_json::json!({"class": classes[i], "index": i, "probability": row.probabilities[i]}))
        .collect();
    serde_json::json!({
        "file": file,
        "class": classes[order[0]],
        "index": order[0],
        "probability": row.probabilities[order[0]],
        "top": top,
    })
}

/// The request's images: every file field of a multipart form (the documented name is `image`), or
/// the whole body when it is sent as `image/*` or `application/octet-stream`.
async fn read_images(s: &S, headers: &HeaderMap, req: Request) -> Result<Vec<Upload>, ServeError> {
    let max = s.config.max_images_per_request;
    let too_many = |n: usize| {
        ServeError::TooLarge(format!(
            "{n} or more images in one request; the limit is {max} (--max-images-per-request): split the request"
        ))
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Vec::new();
    if ctype.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ServeError::BadRequest(format!("multipart: {e}")))?;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // An empty form ends before its first boundary; say so in the words of the refusal.
                Err(e) if out.is_empty() && e.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(ServeError::BadRequest(format!(
                        "no images in the request (multipart: {}): send fields named `image` (curl -F image=@cat.jpg)",
                        e.body_text()
                    )))
                }
                Err(e) => return Err(body_error(e.status(), e.body_text())),
            };
            let is_file = field.file_name().is_some() || field.name() == Some("image");
            if !is_file {
                continue;
            }
            if out.len() == max {
                return Err(too_many(max + 1));
            }
            let label = field
                .file_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("image {}", out.len()));
            let bytes = field
                .bytes()
                .await
                .map_err(|e| body_error(e.status(), e.body_text()))?;
            out.push(Upload { label, bytes });
        }
    } else if ctype.starts_with("image/") || ctype.starts_with("application/octet-stream") {
        let bytes = axum::body::Bytes::from_request(req, &())
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        out.push(Upload {
            label: "body".into(),
            bytes,
        });
    } else {
        return Err(ServeError::UnsupportedMediaType(format!(
            "content-type `{ctype}`: send images as multipart/form-data fields named `image`, or one image as an image/* body"
        )));
    }
    if out.is_empty() {
        return Err(ServeError::BadRequest(
            "no images in the request: send multipart fields named `image` (curl -F image=@cat.jpg)".into(),
        ));
    }
    Ok(out)
}

fn body_error(status: axum::http::StatusCode, text: String) -> ServeError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ServeError::TooLarge(format!(
            "the request body is too large ({text}); the limit is set by --max-body-mb"
        ))
    } else {
        ServeError::BadRequest(format!("cannot read the request body: {text}"))
    }
}
