//! Routes: REST under `/api/v1`, the study event WebSocket, and the dashboard at `/`. Handlers are thin:
//! parse, call the store/scheduler/files, shape JSON. Who may call each route is in crate::auth::ROUTES,
//! enforced by one middleware before any handler runs.

mod advice;
mod datasets;
pub use datasets::{dataset_stats, UploadLocks};
mod importance;
mod studies;
mod tokens;
mod trials;
mod workers;
mod ws;
pub use ws::SnapshotCache;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub type S = Arc<AppState>;

pub fn router(state: S) -> Router {
    let upload_limit = (state.config.max_upload_bytes as usize).saturating_add(1 << 20);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::render))
        .route("/", get(crate::assets::index))
        .route("/assets/{name}", get(crate::assets::asset))
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
        .route("/login", get(tokens::login))
        .route("/logout", post(tokens::logout))
        .route("/api/v1/auth/whoami", get(tokens::whoami))
        .route("/api/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route(
            "/api/v1/datasets",
            post(datasets::upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(datasets::list),
        )
        .route("/api/v1/datasets/{id}", get(datasets::get_one))
        .route("/api/v1/datasets/{id}/archive", get(datasets::archive))
        .route("/api/v1/datasets/{id}/advice", post(advice::advise))
        .route(
            "/api/v1/datasets/{id}/classes/{class}/thumbnails/{k}",
            get(datasets::thumbnail),
        )
        .route(
            "/api/v1/datasets/by-sha/{sha}/archive",
            get(datasets::archive_by_sha),
        )
        .route("/api/v1/search-space", get(studies::search_space))
        .route("/api/v1/studies", post(studies::create).get(studies::list))
        .route("/api/v1/studies/estimate", post(advice::estimate))
        .route("/api/v1/studies/{id}", get(studies::get_one))
        .route("/api/v1/studies/{id}/stop", post(studies::stop))
        .route("/api/v1/studies/{id}/importance", get(importance::get))
        .route("/api/v1/studies/{id}/events", get(ws::events))
        .route("/api/v1/studies/{id}/trials", get(trials::list))
        .route("/api/v1/studies/{id}/model", get(trials::study_model))
        .route("/api/v1/studies/{id}/model/trial", get(trials::study_model_trial))
        .route("/api/v1/trials/{id}", get(trials::get_one))
        .route("/api/v1/trials/{id}/model", get(trials::trial_model))
        .route(
            "/api/v1/internal/trials/{id}/weights",
            put(trials::upload_weights).layer(DefaultBodyLimit::max(4 << 30)),
        )
        .route("/api/v1/workers", post(workers::register).get(workers::list))
        // Every matched route passes the guard (crate::auth::ROUTES); unmatched paths are plain 404s.
        .fallback(no_route)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard,
        ))
        // Outermost: request id, log line and latency for every request, refused ones included.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::observe,
        ))
        .with_state(state)
}

/// Parse a JSON body ourselves so that every malformed body is a 400 with serde's message (which names
/// the field and position), not axum's default 422.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// No route has this path: a JSON 404 like every other error.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(format!(
        "no route `{}`; the API is described at /api/v1/openapi.json",
        uri.path()
    ))
}
