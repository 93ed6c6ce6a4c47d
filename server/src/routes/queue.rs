//! `/queue`, `/interrupt`, `/free`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use queue::{Filter, Job, JobState, scheduler};
use serde_json::{Value, json};

use super::jobs::queue_tuple;
use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /queue`: running and pending prompts as ComfyUI's 5-tuples (pending in run order).
pub async fn get_queue(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    let backend = &state.config.backend;
    let owner = scope.owner_filter();
    let running = backend
        .list(&Filter {
            user: owner.clone(),
            states: vec![JobState::Running],
        })
        .await?;
    let all_pending = backend
        .list(&Filter {
            user: None,
            states: vec![JobState::Pending],
        })
        .await?;
    let policy = backend.policy().await?;
    let refs: Vec<&Job> = all_pending.iter().collect();
    let pending: Vec<Value> = scheduler::projected_order(&refs, policy, &Default::default())
        .into_iter()
        .filter(|j| owner.as_ref().is_none_or(|u| &j.user == u))
        .map(queue_tuple)
        .collect();
    Ok(Json(
        json!({"queue_running": running.iter().map(queue_tuple).collect::<Vec<_>>(), "queue_pending": pending}),
    ))
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// `POST /queue` with `{"clear": true}` and/or `{"delete": [ids]}` (pending jobs only).
pub async fn post_queue(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request = parse_body(&body)?;
    let owner = scope.owner_filter();
    if request.get("clear").is_some_and(engine::pyfmt::truthy) {
        state.config.backend.clear_pending(owner.as_deref()).await?;
    }
    if let Some(ids) = request.get("delete").and_then(Value::as_array) {
        for id in ids.iter().filter_map(Value::as_str) {
            if let Some(job) = state.config.backend.get(id).await?
                && job.state == JobState::Pending
            {
                state.config.backend.cancel(id, owner.as_deref()).await?;
            }
        }
    }
    Ok(Json(json!({})))
}

/// `POST /interrupt` with optional `{"prompt_id"}`: stops that running prompt, or (without an
/// id) every running prompt of the scope. Invalid JSON counts as `{}` (as in ComfyUI).
pub async fn interrupt(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request = parse_body(&body).unwrap_or_else(|_| json!({}));
    let owner = scope.owner_filter();
    let running = state
        .config
        .backend
        .list(&Filter {
            user: owner.clone(),
            states: vec![JobState::Running],
        })
        .await?;
    let target = request.get("prompt_id").and_then(Value::as_str);
    for job in running.iter().filter(|j| target.is_none_or(|t| t == j.id)) {
        state
            .config
            .backend
            .cancel(&job.id, owner.as_deref())
            .await?;
        tracing::info!(job = %job.id, user = %scope.user, "interrupt requested");
    }
    Ok(Json(json!({})))
}

/// `POST /free` with `{"unload_models", "free_memory"}`: local workers unload models and clear
/// their caches after the current prompt.
pub async fn free(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    super::require_admin(&scope)?;
    let request = parse_body(&body)?;
    let unload = request
        .get("unload_models")
        .is_some_and(engine::pyfmt::truthy);
    let free_memory = request
        .get("free_memory")
        .is_some_and(engine::pyfmt::truthy);
    if unload || free_memory {
        state.config.layout.base.services.clear();
        tracing::info!(unload, free_memory, "freeing models and caches");
    }
    Ok(Json(json!({})))
}
