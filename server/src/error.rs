//! API errors in the shapes ComfyUI's clients expect.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// A response with a JSON body.
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    /// `{"error": message}` (the jobs API's and userdata's error shape).
    pub fn message(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error": message.into()}))
    }

    /// 400 with ComfyUI's prompt-error shape: `{"error": {type, message, details, extra_info},
    /// "node_errors": {}}`.
    pub fn prompt(kind: &str, message: &str, details: &str) -> Self {
        Self::json(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}}),
        )
    }

    /// 404 `{"error": ...}`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::message(StatusCode::NOT_FOUND, message)
    }

    /// 400 `{"error": ...}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::message(StatusCode::BAD_REQUEST, message)
    }

    /// 403 `{"error": ...}`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::message(StatusCode::FORBIDDEN, message)
    }

    /// 500 for a failure of ours (logged).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {message}");
        Self::message(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<queue::Error> for ApiError {
    fn from(e: queue::Error) -> Self {
        match e {
            queue::Error::Paused | queue::Error::TooManyPending(_) => ApiError::json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": {"type": "queue_refused", "message": e.to_string(), "details": "", "extra_info": {}}, "node_errors": {}}),
            ),
            queue::Error::Duplicate(_) => {
                ApiError::prompt("invalid_prompt_id", "Duplicate prompt id", &e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
