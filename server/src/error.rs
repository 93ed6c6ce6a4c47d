//! API errors in the shapes ComfyUI's clients expect.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Body,
}

/// The body of an error response.
#[derive(Debug)]
enum Body {
    Json(Value),
    Text(&'static str),
    Empty,
}

impl ApiError {
    /// A response with a JSON body.
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Body::Json(body),
        }
    }

    /// A bare status without a body (what ComfyUI's `/view` and userdata routes answer).
    pub fn status(status: StatusCode) -> Self {
        Self {
            status,
            body: Body::Empty,
        }
    }

    /// A plain-text body (ComfyUI's `web.Response(status, text=...)`).
    pub fn text(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            body: Body::Text(text),
        }
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
            queue::Error::TooManyPending(n) => crate::limits::refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                "Too many queued prompts",
                &format!(
                    "You already have {n} prompts waiting; wait for some to finish before queueing more"
                ),
                json!({"pending": n}),
            ),
            queue::Error::Paused => ApiError::json(
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
        match self.body {
            Body::Json(body) => (self.status, Json(body)).into_response(),
            Body::Text(text) => (self.status, text).into_response(),
            Body::Empty => self.status.into_response(),
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
