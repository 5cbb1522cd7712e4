//! Failures of a dashboard request, as HTTP answers: a malformed address is 400, an
//! unknown object 404, an object too large to preview 413, and trouble reading the store
//! 500. The body is one line of plain text; it never echoes file contents.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    TooLarge(String),
    Store(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A store or file-system error while answering (logged, answered 500).
    pub fn store(e: impl std::fmt::Display) -> Self {
        ApiError::Store(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            ApiError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            ApiError::NotFound(t) => (StatusCode::NOT_FOUND, t),
            ApiError::TooLarge(t) => (StatusCode::PAYLOAD_TOO_LARGE, t),
            ApiError::Store(t) => {
                tracing::warn!("dashboard: {t}");
                (StatusCode::INTERNAL_SERVER_ERROR, t)
            }
        };
        (status, format!("{}: {text}\n", status.as_u16())).into_response()
    }
}
