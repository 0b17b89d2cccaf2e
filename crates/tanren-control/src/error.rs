//! The REST boundary's one error type. Every variant maps to exactly one HTTP status (exhaustive match,
//! no wildcard) and a JSON body `{"error": {"code": ..., "message": ...}}`; causes are logged here.

use axum::http::{header, HeaderValue, StatusCode};
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
    /// The path matches no route at all.
    #[error("{0}")]
    NoRoute(String),
    #[error("{0}")]
    Conflict(String),
    #[error("upload is larger than the limit of {limit} bytes; raise {setting} or send less")]
    PayloadTooLarge { limit: u64, setting: &'static str },
    #[error("{message}")]
    Dataset { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests with this token; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("{message}")]
    Busy { message: String, retry_after: u64 },
    /// The control plane's disk is full (ENOSPC): not the client's fault, but the operator can act.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The cause is logged in full under an id; the client gets only the id.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Dataset { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
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
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                ApiError::InsufficientStorage(format!(
                    "the control plane's disk is full ({e}): free space in its data dir (datasets, \
                     models) and try again"
                ))
            }
            _ => ApiError::Internal(format!("disk: {e}")),
        }
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
        let message = match &self {
            // Database text and file paths stay in the log; the id finds them there.
            ApiError::Internal(cause) => {
                let id = &crate::auth::random_secret()[..12];
                tracing::error!(error_id = %id, error = %cause, "request failed");
                format!("internal error (id {id}); the server's log has the details under that id")
            }
            e if status.is_server_error() => {
                tracing::warn!(error = %e, %status, "request not served");
                e.to_string()
            }
            e => {
                tracing::info!(error = %e, %status, "request refused");
                e.to_string()
            }
        };
        let body = tanren_api::ErrorBody {
            error: tanren_api::ErrorDetail {
                code: code.into(),
                message,
                field: match &self {
                    ApiError::InvalidField { field, .. } => Some(field.clone()),
                    _ => None,
                },
            },
        };
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tanren\""),
                );
            }
            ApiError::TooManyRequests { retry_after } | ApiError::Busy { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
