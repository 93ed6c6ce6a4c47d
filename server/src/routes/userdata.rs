//! Per-user data (ComfyUI's `app/user_manager.py`): `/users`, `/settings`, `/userdata`. Each
//! workspace has its own folder; a workshop folder of workflows (read-only) is merged into every
//! user's `workflows/` listing, and a user's own file of the same name takes precedence.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nodes::env::safe_join;
use serde_json::{Map, Value, json};

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const SETTINGS: &str = "comfy.settings.json";

/// `GET /users`: server storage without a user list, so the frontend never shows its
/// user-select screen (identity comes from the workspace path, not the `Comfy-User` header).
pub async fn get_users() -> Json<Value> {
    Json(json!({"storage": "server", "migrated": true}))
}

/// `POST /users`: users are managed by the instructor's users file.
pub async fn post_users() -> ApiError {
    ApiError::bad_request("users are created by the instructor (the server's users file)")
}

fn read_settings(dir: &FsPath) -> Map<String, Value> {
    std::fs::read_to_string(dir.join(SETTINGS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_settings(dir: &FsPath, settings: &Map<String, Value>) -> ApiResult<()> {
    std::fs::create_dir_all(dir).map_err(ApiError::internal)?;
    let text = serde_json::to_string_pretty(settings).map_err(ApiError::internal)?;
    nodes::files::write_atomic(&dir.join(SETTINGS), text.as_bytes()).map_err(ApiError::internal)
}

/// `GET /settings`.
pub async fn get_settings(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Json<Value> {
    Json(Value::Object(read_settings(&state.userdata_dir(&scope))))
}

/// `GET /settings/{id}` (`null` when unset).
pub async fn get_setting(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> Json<Value> {
    Json(
        read_settings(&state.userdata_dir(&scope))
            .remove(&id)
            .unwrap_or(Value::Null),
    )
}

/// `POST /settings`: merges an object into the settings.
pub async fn post_settings(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let update: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("settings must be a JSON object: {e}")))?;
    let dir = state.userdata_dir(&scope);
    let mut settings = read_settings(&dir);
    settings.extend(update);
    write_settings(&dir, &settings)?;
    Ok(Json(json!({})))
}

/// `POST /settings/{id}`: the body is the value.
pub async fn post_setting(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let dir = state.userdata_dir(&scope);
    let mut settings = read_settings(&dir);
    settings.insert(id, value);
    write_settings(&dir, &settings)?;
    Ok(Json(json!({})))
}

fn flag(params: &HashMap<String, String>, key: &str, default: bool) -> bool {
    params
        .get(key)
        .map(|v| v != "false" && v != "0")
        .unwrap_or(default)
}

fn millis(t: std::io::Result<std::time::SystemTime>) -> i64 {
    t.ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn file_info(root: &FsPath, path: &FsPath) -> Value {
    let rel = path
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    let meta = std::fs::metadata(path).ok();
    json!({
        "path": rel,
        "size": meta.as_ref().map(|m| m.len()).unwrap_or(0),
        "modified": meta.as_ref().map(|m| millis(m.modified())).unwrap_or(0),
        "created": meta.as_ref().map(|m| millis(m.created())).unwrap_or(0),
    })
}

fn walk(dir: &FsPath, recurse: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() && recurse => walk(&path, recurse, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// The folders `dir` is listed from: the user's own, plus the workshop's for `workflows`.
fn listing_roots(state: &AppState, scope: &Scope, dir: &str) -> ApiResult<Vec<PathBuf>> {
    let user_root = state.userdata_dir(scope);
    let own = safe_join(&user_root, dir)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    let mut roots = vec![own];
    if let Some(shared) = &state.config.workshop_workflows
        && (dir == "workflows" || dir.starts_with("workflows/"))
        && let Some(sub) = safe_join(
            shared,
            dir.trim_start_matches("workflows").trim_start_matches('/'),
        )
    {
        roots.push(sub);
    }
    Ok(roots)
}

/// `GET /userdata?dir=&recurse=&full_info=&split=`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let Some(dir) = params.get("dir") else {
        return Err(ApiError::bad_request("dir is required"));
    };
    let roots = listing_roots(&state, &scope, dir)?;
    if !roots.iter().any(|r| r.is_dir()) {
        return Err(ApiError::not_found("directory not found"));
    }
    let recurse = flag(&params, "recurse", false);
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    for root in &roots {
        let mut files = Vec::new();
        walk(root, recurse, &mut files);
        files.sort();
        for f in files {
            let rel = f
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if seen.insert(rel.clone()) {
                items.push((root.clone(), f, rel));
            }
        }
    }
    let body: Vec<Value> = if flag(&params, "full_info", false) {
        items
            .iter()
            .map(|(root, f, _)| file_info(root, f))
            .collect()
    } else if flag(&params, "split", false) {
        items
            .iter()
            .map(|(_, _, rel)| {
                let mut parts: Vec<Value> = vec![json!(rel)];
                parts.extend(rel.split('/').map(|p| json!(p)));
                Value::Array(parts)
            })
            .collect()
    } else {
        items.iter().map(|(_, _, rel)| json!(rel)).collect()
    };
    Ok(Json(json!(body)).into_response())
}

/// `GET /v2/userdata?path=`: directory entries, directories first.
pub async fn list_v2(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let path = params.get("path").map(String::as_str).unwrap_or("");
    let root = state.userdata_dir(&scope);
    let dir = safe_join(&root, path)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Json(json!([])));
    };
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let rel = if path.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", path.trim_end_matches('/'))
        };
        let meta = entry.metadata().ok();
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            dirs.push(json!({"name": name, "path": rel, "type": "directory"}));
        } else {
            let modified = meta
                .as_ref()
                .map(|m| millis(m.modified()) as f64 / 1000.0)
                .unwrap_or(0.0);
            files.push(json!({"name": name, "path": rel, "type": "file", "size": meta.map(|m| m.len()).unwrap_or(0), "modified": modified}));
        }
    }
    dirs.extend(files);
    Ok(Json(json!(dirs)))
}

/// Resolves a userdata file: the user's own, else (for workflows) the workshop's.
fn resolve(state: &AppState, scope: &Scope, file: &str) -> ApiResult<(PathBuf, PathBuf)> {
    let root = state.userdata_dir(scope);
    let own = safe_join(&root, file)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    if own.is_file() {
        return Ok((root, own));
    }
    if let (Some(shared), Some(rest)) = (
        &state.config.workshop_workflows,
        file.strip_prefix("workflows/"),
    ) && let Some(path) = safe_join(shared, rest)
        && path.is_file()
    {
        return Ok((shared.clone(), path));
    }
    Ok((root, own))
}

/// `GET /userdata/{file}` (`{file}` is one URL-encoded segment such as `workflows%2Fa.json`).
pub async fn get_file(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(file): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (_, path) = resolve(&state, &scope, &file)?;
    if !path.is_file() {
        return Err(ApiError::not_found("file not found"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if file == "user.css" {
        let css = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
        return Ok(([(header::CONTENT_TYPE, "text/css")], css).into_response());
    }
    let mut response = super::files::serve_file(&path, &name, req.headers()).await?;
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `POST /userdata/{file}?overwrite=&full_info=`: writes the raw body atomically.
pub async fn post_file(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(file): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let root = state.userdata_dir(&scope);
    let path = safe_join(&root, &file)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    if path == root {
        return Err(ApiError::bad_request("a file name is required"));
    }
    if path.exists() && !flag(&params, "overwrite", true) {
        return Err(ApiError::message(StatusCode::CONFLICT, "file exists"));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    nodes::files::write_atomic(&path, &body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    respond_with_info(&root, &path, flag(&params, "full_info", false))
}

fn respond_with_info(root: &FsPath, path: &FsPath, full: bool) -> ApiResult<Response> {
    if full {
        Ok(Json(file_info(root, path)).into_response())
    } else {
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        Ok(Json(json!(rel)).into_response())
    }
}

/// `DELETE /userdata/{file}`: 204, or 404.
pub async fn delete_file(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let root = state.userdata_dir(&scope);
    let path = safe_join(&root, &file)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    if !path.is_file() {
        return Err(ApiError::not_found("file not found"));
    }
    std::fs::remove_file(&path).map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /userdata/{file}/move/{dest}?overwrite=&full_info=`.
pub async fn move_file(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path((file, dest)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let root = state.userdata_dir(&scope);
    let from = safe_join(&root, &file)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    let to = safe_join(&root, &dest)
        .ok_or_else(|| ApiError::forbidden("path outside the user folder"))?;
    if !from.is_file() {
        return Err(ApiError::not_found("file not found"));
    }
    if to.exists() && !flag(&params, "overwrite", true) {
        return Err(ApiError::message(
            StatusCode::CONFLICT,
            "destination exists",
        ));
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    std::fs::rename(&from, &to).map_err(|e| ApiError::bad_request(e.to_string()))?;
    respond_with_info(&root, &to, flag(&params, "full_info", false))
}
