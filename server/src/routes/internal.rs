//! `/internal/*` (no `/api` twin): logs, folder paths, file listings.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::logs;
use crate::state::AppState;

/// `GET /internal/logs`: all buffered log lines as one string.
pub async fn logs(Extension(scope): Extension<Scope>) -> ApiResult<Json<Value>> {
    super::require_admin(&scope)?;
    let lines: Vec<String> = logs::entries().into_iter().map(|(_, m)| m).collect();
    Ok(Json(json!(lines.join("\n"))))
}

/// `GET /internal/logs/raw`.
pub async fn logs_raw(Extension(scope): Extension<Scope>) -> ApiResult<Json<Value>> {
    super::require_admin(&scope)?;
    let entries: Vec<Value> = logs::entries()
        .into_iter()
        .map(|(t, m)| json!({"t": t, "m": m}))
        .collect();
    Ok(Json(
        json!({"entries": entries, "size": {"cols": 120, "rows": 40}}),
    ))
}

/// `PATCH /internal/logs/subscribe`: accepted (log streaming over the socket is not offered).
pub async fn logs_subscribe() -> Json<Value> {
    Json(json!({}))
}

/// `GET /internal/folder_paths`: model folders and their search paths.
pub async fn folder_paths(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Json<Value> {
    let env = state.env(&scope);
    let mut out = serde_json::Map::new();
    for name in env.models.names() {
        let paths: Vec<String> = env
            .models
            .paths(&name)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        out.insert(name, json!(paths));
    }
    Json(Value::Object(out))
}

/// `GET /internal/files/{input|output|temp}`: top-level file names, newest first.
pub async fn files(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(kind): Path<String>,
) -> ApiResult<Json<Value>> {
    let env = state.env(&scope);
    let dir = env
        .dirs
        .for_type(&kind)
        .ok_or_else(|| ApiError::bad_request("type must be input, output or temp"))?;
    let mut files: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| {
                    let modified = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (modified, e.file_name().to_string_lossy().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(Json(json!(
        files.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
    )))
}
