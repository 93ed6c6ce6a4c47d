//! `POST /prompt` (validate and queue a prompt) and `GET /prompt` (queue count).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use queue::{Filter, JobState, NewJob};
use serde_json::{Value, json};

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::limits::{check_prompt_sizes, folder_bytes, refusal, too_many};
use crate::state::AppState;

/// Keys of `extra_data` that must never be stored.
const SENSITIVE_KEYS: &[&str] = &["auth_token_comfy_org", "api_key_comfy_org"];

/// Pending + running jobs visible to the scope (`queue_remaining`).
pub async fn queue_remaining(state: &AppState, scope: &Scope) -> ApiResult<usize> {
    let filter = Filter {
        user: scope.owner_filter(),
        states: vec![JobState::Pending, JobState::Running],
    };
    Ok(state.config.backend.list(&filter).await?.len())
}

/// `GET /prompt`.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    let remaining = queue_remaining(&state, &scope).await?;
    Ok(Json(json!({"exec_info": {"queue_remaining": remaining}})))
}

/// Whether `v` is a canonical lowercase UUID string (`str(uuid.UUID(v)) == v`).
pub fn is_canonical_uuid(v: &str) -> bool {
    uuid::Uuid::parse_str(v).is_ok_and(|u| u.hyphenated().to_string() == v)
}

/// Refuses the prompt (503, ComfyUI's prompt-error shape) when the output disk of the scope's
/// user has less free space than `--min-free-disk-gb`.
async fn check_disk(state: &AppState, scope: &Scope) -> ApiResult<()> {
    let min_free = state.config.min_free_disk_bytes;
    if min_free == 0 {
        return Ok(());
    }
    let dir = state.env(scope).dirs.output;
    let space = tokio::task::spawn_blocking(move || crate::disk::space(&dir))
        .await
        .map_err(ApiError::internal)?;
    let space = match space {
        Ok(space) => space,
        Err(e) => {
            tracing::warn!("cannot measure the output disk: {e}");
            return Ok(());
        }
    };
    match crate::disk::refusal(&space, min_free) {
        None => Ok(()),
        Some(message) => {
            tracing::warn!(user = %scope.user, "prompt refused: {message}");
            Err(ApiError::json(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": {"type": "disk_full", "message": "The output disk is nearly full",
                                 "details": message,
                                 "extra_info": {"free_bytes": space.free_bytes,
                                                "total_bytes": space.total_bytes,
                                                "min_free_bytes": min_free}},
                       "node_errors": {}}),
            ))
        }
    }
}

/// `POST /prompt`.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let user_limits = &state.config.user_limits;
    // Participants only: the instructor and a single-user server are not limited.
    let limited = !scope.admin;
    if limited && let Err(wait) = state.guards.prompts.acquire(&scope.user) {
        tracing::info!(user = %scope.user, "prompt refused: rate limit");
        let details = format!(
            "At most {} prompts per minute; try again in {} s",
            user_limits.prompts_per_minute,
            wait.as_secs().max(1)
        );
        return Ok(too_many("rate_limited", "Too many prompts", &details, wait));
    }
    if limited && user_limits.max_prompt_bytes > 0 && body.len() > user_limits.max_prompt_bytes {
        let details = format!(
            "The request has {} bytes; this server accepts at most {}",
            body.len(),
            user_limits.max_prompt_bytes
        );
        return Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit_exceeded",
            "Prompt too large",
            &details,
            json!({"bytes": body.len(), "limit": user_limits.max_prompt_bytes}),
        ));
    }
    let request: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::prompt(
            "invalid_prompt",
            "Invalid JSON in the request body",
            &e.to_string(),
        )
    })?;
    let Some(request) = request.as_object() else {
        return Err(ApiError::prompt(
            "invalid_prompt",
            "Invalid request",
            "The request body must be a JSON object",
        ));
    };
    let number = match request.get("number") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            ApiError::prompt(
                "invalid_prompt",
                "Invalid number",
                "`number` must be a number",
            )
        })?),
    };
    let front = request.get("front").is_some_and(engine::pyfmt::truthy);
    let Some(prompt) = request.get("prompt") else {
        return Err(ApiError::prompt(
            "no_prompt",
            "No prompt provided",
            "No prompt provided",
        ));
    };
    let id = match request.get("prompt_id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if is_canonical_uuid(s) => s.clone(),
        Some(other) => {
            return Err(ApiError::prompt(
                "invalid_prompt_id",
                "Invalid prompt_id",
                &format!(
                    "prompt_id must be a canonical UUID string, got {}",
                    engine::pyfmt::repr(other)
                ),
            ));
        }
    };
    let partial: Option<Vec<String>> = match request.get("partial_execution_targets") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items.iter().map(engine::pyfmt::str_of).collect()),
        Some(_) => {
            return Err(ApiError::prompt(
                "invalid_prompt",
                "Invalid partial_execution_targets",
                "expected a list of node ids",
            ));
        }
    };
    check_disk(&state, &scope).await?;
    let env = state.env(&scope);
    let registry = state.config.registry.clone();
    let limits = state.config.limits.clone();
    let prompt = prompt.clone();
    let validated = tokio::task::spawn_blocking(move || {
        engine::validate::validate_prompt(&registry, &env, &prompt, partial.as_deref(), &limits)
    })
    .await
    .map_err(ApiError::internal)?;
    let validated = match validated {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(user = %scope.user, error = %e, "prompt rejected");
            return Err(ApiError::json(StatusCode::BAD_REQUEST, e.to_json()));
        }
    };
    if limited {
        check_prompt_sizes(user_limits, &validated.prompt)?;
        check_output_quota(&state, &scope).await?;
    }
    let client_id = request
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut extra = request
        .get("extra_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for key in SENSITIVE_KEYS {
        extra.remove(*key);
    }
    // As ComfyUI: copied only when the request has the key.
    if let Some(value) = request.get("client_id") {
        extra.insert("client_id".into(), value.clone());
    }
    if !extra.contains_key("comfy_usage_source")
        && let Some(source) = headers
            .get("comfy-usage-source")
            .and_then(|v| v.to_str().ok())
    {
        extra.insert("comfy_usage_source".into(), Value::from(source));
    }
    extra.insert("create_time".into(), Value::from(engine::events::now_ms()));
    let job = state
        .config
        .backend
        .submit(NewJob {
            id,
            user: scope.user.clone(),
            client_id,
            prompt: validated.prompt.json.clone(),
            outputs: validated.outputs.clone(),
            extra_data: Value::Object(extra),
            number,
            front,
        })
        .await?;
    tracing::info!(job = %job.id, user = %job.user, number = %job.number, "prompt queued");
    Ok(Json(
        json!({"prompt_id": job.id, "number": job.number, "node_errors": validated.node_errors}),
    )
    .into_response())
}

/// Refuses a participant whose outputs fill the per-user output quota.
async fn check_output_quota(state: &AppState, scope: &Scope) -> ApiResult<()> {
    let max = state.config.user_limits.max_output_bytes;
    if max == 0 {
        return Ok(());
    }
    let output = state.env(scope).dirs.output;
    let used = tokio::task::spawn_blocking(move || folder_bytes(&output))
        .await
        .map_err(ApiError::internal)?;
    if used < max {
        return Ok(());
    }
    tracing::info!(user = %scope.user, used, max, "prompt refused: output quota");
    let details = format!(
        "Your outputs use {used} bytes of the {max} allowed; delete some outputs before queueing more"
    );
    Err(refusal(
        StatusCode::BAD_REQUEST,
        "limit_exceeded",
        "Output disk quota reached",
        &details,
        json!({"used_bytes": used, "limit_bytes": max}),
    ))
}
