//! `/history`: finished prompts in ComfyUI's shape, scoped to the user.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use queue::{Filter, JobState};
use serde_json::{Map, Value, json};

use super::jobs::history_entry;
use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /history?max_items=&offset=`: oldest first; `max_items` alone gives the newest N.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let parse = |k: &str| -> ApiResult<Option<i64>> {
        params
            .get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{k} must be an integer")))
            })
            .transpose()
    };
    let max_items = parse("max_items")?;
    let offset = parse("offset")?;
    let filter = Filter {
        user: scope.owner_filter(),
        states: vec![JobState::Completed, JobState::Failed, JobState::Cancelled],
    };
    let jobs: Vec<_> = state
        .config
        .backend
        .list(&filter)
        .await?
        .into_iter()
        .filter(|j| j.result.is_some())
        .collect();
    let start = match (offset, max_items) {
        (Some(o), _) if o >= 0 => o as usize,
        (_, Some(m)) => jobs.len().saturating_sub(m.max(0) as usize),
        _ => 0,
    };
    let mut out = Map::new();
    for job in jobs.iter().skip(start) {
        if max_items.is_some_and(|m| out.len() as i64 >= m) {
            break;
        }
        if let Some(entry) = history_entry(job) {
            out.insert(job.id.clone(), entry);
        }
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /history/{id}`: `{}` when unknown, queued or running.
pub async fn one(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = state.config.backend.get(&id).await?;
    let entry = job
        .filter(|j| scope.admin || j.user == scope.user)
        .and_then(|j| history_entry(&j).map(|e| (j.id, e)));
    Ok(Json(match entry {
        Some((id, e)) => json!({ id: e }),
        None => json!({}),
    }))
}

/// `POST /history` with `{"clear": true}` and/or `{"delete": [ids]}`.
pub async fn post(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let owner = scope.owner_filter();
    if request.get("clear").is_some_and(engine::pyfmt::truthy) {
        state
            .config
            .backend
            .delete_history(None, owner.as_deref())
            .await?;
    }
    if let Some(ids) = request.get("delete").and_then(Value::as_array) {
        let ids: Vec<String> = ids
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        state
            .config
            .backend
            .delete_history(Some(&ids), owner.as_deref())
            .await?;
    }
    Ok(Json(json!({})))
}
