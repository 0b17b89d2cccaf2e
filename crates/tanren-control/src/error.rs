//! The REST boundary's one error type. Every variant maps to exactly one HTTP status (exhaustive match,
//! no wildcard) and a JSON body `{"error": {"code": ..., "message": ...}}`; causes are logged here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tanren_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    InvalidField { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("upload is larger than the limit of {limit} bytes; raise TANREN_MAX_UPLOAD_BYTES or send a smaller zip")]
    PayloadTooLarge { limit: u64 },
    #[error("{message}")]
    Dataset { code: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Dataset { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} does not exist")),
            StoreError::Db(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::Json(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(format!("disk: {e}"))
    }
}

impl From<tanren_core::BoundsError> for ApiError {
    fn from(e: tanren_core::BoundsError) -> Self {
        ApiError::InvalidField {
            field: format!("bounds.{}", e.param),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, %status, "request refused");
        }
        let mut body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        if let ApiError::InvalidField { field, .. } = &self {
            body["error"]["field"] = serde_json::Value::String(field.clone());
        }
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
