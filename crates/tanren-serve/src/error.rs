//! The serving boundary's one error enum, mapped exhaustively to HTTP. Two body shapes: tanren's own
//! routes answer `{"error": {"code", "message"}}` like the control plane; the Open Inference Protocol
//! v2 routes answer `{"error": "message"}` as that protocol says.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no model named `{name}` is loaded (loaded: {loaded})")]
    UnknownModel { name: String, loaded: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{index_label}: {reason}")]
    BadImage { index_label: String, reason: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the server is at capacity ({0}); retry shortly")]
    Overloaded(String),
    #[error("the request's deadline passed before it could be answered")]
    DeadlineExceeded,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A model file that cannot be served (start-up only).
    #[error("{0}")]
    BadModel(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServeError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ServeError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            ServeError::BadRequest(_) | ServeError::BadImage { .. } => StatusCode::BAD_REQUEST,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServeError::Overloaded(_) | ServeError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ServeError::BadModel(_) | ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServeError::UnknownModel { .. } => "unknown_model",
            ServeError::BadRequest(_) => "bad_request",
            ServeError::BadImage { .. } => "bad_image",
            ServeError::TooLarge(_) => "too_large",
            ServeError::UnsupportedMediaType(_) => "unsupported_media_type",
            ServeError::Overloaded(_) => "overloaded",
            ServeError::DeadlineExceeded => "deadline_exceeded",
            ServeError::ShuttingDown => "shutting_down",
            ServeError::BadModel(_) => "bad_model",
            ServeError::Internal(_) => "internal",
        }
    }

    fn finish(&self, body: serde_json::Value) -> Response {
        if matches!(self, ServeError::Internal(_) | ServeError::BadModel(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let mut r = (self.status(), axum::Json(body)).into_response();
        if matches!(self, ServeError::Overloaded(_) | ServeError::ShuttingDown) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }

    /// tanren's error body.
    pub fn into_rest(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        self.finish(body)
    }

    /// The Open Inference Protocol's error body.
    pub fn into_v2(self) -> Response {
        let body = serde_json::json!({"error": self.to_string()});
        self.finish(body)
    }
}

/// Wrappers that pick the body shape per route family.
pub struct Rest(pub ServeError);
pub struct V2(pub ServeError);

impl IntoResponse for Rest {
    fn into_response(self) -> Response {
        self.0.into_rest()
    }
}

impl IntoResponse for V2 {
    fn into_response(self) -> Response {
        self.0.into_v2()
    }
}

impl From<ServeError> for Rest {
    fn from(e: ServeError) -> Self {
        Rest(e)
    }
}

impl From<ServeError> for V2 {
    fn from(e: ServeError) -> Self {
        V2(e)
    }
}
