//! System information and the small catalogue routes the frontend reads at start-up.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use nodes::env::MODEL_FOLDER_NAMES;
use serde_json::{Value, json};

use super::require_admin;
use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The server's feature flags (sent over the WebSocket and from `/features`).
pub fn feature_flags(state: &AppState) -> Value {
    json!({
        "supports_preview_metadata": true,
        "max_upload_size": state.config.max_upload_bytes,
        "extension": {"manager": {"supports_v4": false}},
        "node_replacements": false,
        "assets": false,
    })
}

fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `GET /system_stats`.
pub async fn system_stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    let (total, free) = meminfo();
    let devices: Vec<Value> = state
        .config
        .devices
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let kind = if name.starts_with("cuda") {
                "cuda"
            } else {
                "cpu"
            };
            json!({"name": name, "type": kind, "index": i, "vram_total": 0, "vram_free": 0,
                   "torch_vram_total": 0, "torch_vram_free": 0})
        })
        .collect();
    Json(json!({
        "system": {
            "os": std::env::consts::OS,
            "ram_total": total,
            "ram_free": free,
            "comfyui_version": format!("comfyrs {}", env!("CARGO_PKG_VERSION")),
            "required_frontend_version": "",
            "python_version": "none (comfyrs is native Rust)",
            "pytorch_version": "none (candle)",
            "embedded_python": false,
            "argv": state.config.argv,
        },
        "devices": devices,
    }))
}

/// `GET /features`.
pub async fn features(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(feature_flags(&state))
}

/// `GET /extensions`: no JS extensions.
pub async fn extensions() -> Json<Value> {
    Json(json!([]))
}

/// `GET /embeddings`: embedding names without extension.
pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Json<Value> {
    let env = state.env(&scope);
    let names: Vec<String> = env
        .models
        .list("embeddings")
        .into_iter()
        .map(|n| n.rsplit_once('.').map(|(s, _)| s.to_string()).unwrap_or(n))
        .collect();
    Json(json!(names))
}

/// `GET /models`: model folder names.
pub async fn model_folders() -> Json<Value> {
    Json(json!(
        MODEL_FOLDER_NAMES
            .iter()
            .filter(|n| **n != "configs")
            .collect::<Vec<_>>()
    ))
}

/// `GET /models/{folder}`: relative file paths (404 for unknown folders).
pub async fn model_files(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(folder): Path<String>,
) -> ApiResult<Json<Value>> {
    if !MODEL_FOLDER_NAMES.contains(&folder.as_str()) {
        return Err(ApiError::status(StatusCode::NOT_FOUND));
    }
    Ok(Json(json!(state.env(&scope).models.list(&folder))))
}

/// `GET /experiment/models`.
pub async fn experiment_models(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> Json<Value> {
    let env = state.env(&scope);
    let folders: Vec<Value> = MODEL_FOLDER_NAMES
        .iter()
        .filter(|n| **n != "configs")
        .map(|n| json!({"name": n, "folders": env.models.paths(n).iter().map(|p| p.display().to_string()).collect::<Vec<_>>()}))
        .collect();
    Json(json!(folders))
}

/// `GET /experiment/models/{folder}`: files with size and times.
pub async fn experiment_model_files(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(folder): Path<String>,
) -> ApiResult<Json<Value>> {
    if !MODEL_FOLDER_NAMES.contains(&folder.as_str()) {
        return Err(ApiError::status(StatusCode::NOT_FOUND));
    }
    let env = state.env(&scope);
    let paths = env.models.paths(&folder).to_vec();
    let files: Vec<Value> = env
        .models
        .list(&folder)
        .into_iter()
        .filter_map(|name| {
            let (index, path) = paths.iter().enumerate().map(|(i, p)| (i, p.join(&name))).find(|(_, p)| p.is_file())?;
            let meta = std::fs::metadata(&path).ok()?;
            let secs = |t: std::io::Result<std::time::SystemTime>| {
                t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()).unwrap_or(0.0)
            };
            Some(json!({"name": name, "pathIndex": index, "modified": secs(meta.modified()), "created": secs(meta.created()), "size": meta.len()}))
        })
        .collect();
    Ok(Json(json!(files)))
}

/// `GET /i18n`: no custom-node translations.
pub async fn i18n() -> Json<Value> {
    Json(json!({}))
}

/// `GET /global_subgraphs`: none.
pub async fn global_subgraphs() -> Json<Value> {
    Json(json!({}))
}

/// `GET /global_subgraphs/{id}`.
pub async fn global_subgraph(Path(_id): Path<String>) -> Json<Value> {
    Json(Value::Null)
}

/// `GET /node_replacements`: none.
pub async fn node_replacements() -> Json<Value> {
    Json(json!({}))
}

/// `GET /workflow_templates`: custom-node template packs (none).
pub async fn workflow_templates() -> Json<Value> {
    Json(json!({}))
}

/// The output disk's space and whether it is above the guard's threshold.
async fn disk_health(state: &AppState) -> Value {
    let dir = state.output_dir();
    let min_free = state.config.min_free_disk_bytes;
    match tokio::task::spawn_blocking(move || crate::disk::space(&dir)).await {
        Ok(Ok(space)) => json!({
            "ok": space.free_bytes >= min_free,
            "path": space.path,
            "free_bytes": space.free_bytes,
            "total_bytes": space.total_bytes,
            "min_free_bytes": min_free,
        }),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// `GET /health` (admin): each component.
pub async fn health(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let backend = &state.config.backend;
    let queue = match backend.health().await {
        Ok(h) => json!({"ok": true, "details": h}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let workers = backend.workers().await.unwrap_or_default();
    let frontend = state
        .config
        .frontend_root
        .as_ref()
        .is_some_and(|p| p.join("index.html").is_file());
    let disk = disk_health(&state).await;
    let ok = queue["ok"] == true && disk["ok"] == true;
    Ok(Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "backend": backend.name(),
        "paused": backend.paused().await.ok(),
        "components": {
            "queue": queue,
            "disk": disk,
            "workers": {"ok": !workers.is_empty(), "count": workers.len()},
            "frontend": {"ok": frontend},
            "websockets": {"connected": state.hub.len()},
        }
    })))
}
