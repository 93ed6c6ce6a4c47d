//! `POST /upload/lora`: a participant's own LoRA, when the admin enabled uploads
//! (`comfyrs serve --allow-lora-upload`). Only `.safetensors` is accepted; the upload is streamed
//! to a hidden temporary file in the user's `models/loras/` folder, refused past the size limit,
//! its header and tensor byte ranges are validated (pickle and zip files are named and refused,
//! never loaded), and only then is it renamed into place. A user's LoRAs are in their own folder,
//! which only their own scope's model list includes (`queue::Layout::env_for`).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Form field holding the file.
const FIELD: &str = "lora";

/// A temporary upload file, removed on drop unless it was moved into place.
struct TempUpload(Option<PathBuf>);

impl Drop for TempUpload {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn refuse(status: StatusCode, message: String) -> ApiError {
    tracing::info!(%message, "LoRA upload refused");
    ApiError::message(status, message)
}

/// The folder a scope's uploads go to: `users/<name>/models/loras/`, or the shared `loras`
/// folder in single-user mode.
fn upload_folder(state: &AppState, scope: &Scope) -> ApiResult<PathBuf> {
    if let Some(dir) = state.config.layout.user_dir(&scope.user) {
        return Ok(dir.join("models").join("loras"));
    }
    state
        .config
        .layout
        .base
        .models
        .paths("loras")
        .first()
        .cloned()
        .ok_or_else(|| ApiError::internal("no loras folder is configured"))
}

fn check_name(raw: &str) -> ApiResult<String> {
    let plain = FsPath::new(raw).file_name().and_then(|n| n.to_str()) == Some(raw);
    if !plain || raw.starts_with('.') || raw.contains('\\') || raw.chars().any(char::is_control) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid file name {raw:?}"),
        ));
    }
    if !raw.to_ascii_lowercase().ends_with(".safetensors") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "{raw}: only .safetensors LoRAs are accepted (pickle formats such as .pt, .ckpt, .bin are not)"
            ),
        ));
    }
    Ok(raw.to_string())
}

/// `POST /upload/lora` (multipart: `lora` = the file, optional `overwrite`).
pub async fn upload_lora(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    mut form: Multipart,
) -> ApiResult<Json<Value>> {
    let Some(limit) = state.config.lora_upload_bytes else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "LoRA uploads are disabled on this server (the admin enables them with --allow-lora-upload)".into(),
        ));
    };
    let folder = upload_folder(&state, &scope)?;
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(ApiError::internal)?;
    let mut overwrite = false;
    let mut received: Option<(String, TempUpload, u64)> = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| super::files::multipart_error(&e))?
    {
        if field.name() != Some(FIELD) {
            let name = field.name().unwrap_or("").to_string();
            let text = field
                .text()
                .await
                .map_err(|e| super::files::multipart_error(&e))?;
            if name == "overwrite" {
                overwrite = matches!(text.as_str(), "true" | "1");
            }
            continue;
        }
        let name = check_name(field.file_name().unwrap_or(""))?;
        let temp = TempUpload(Some(
            folder.join(format!(".upload-{}.partial", uuid::Uuid::new_v4())),
        ));
        let path = temp.0.clone().unwrap_or_default();
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(ApiError::internal)?;
        let mut size = 0u64;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| super::files::multipart_error(&e))?
        {
            size += chunk.len() as u64;
            if size <= limit {
                file.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            // Past the limit the rest is read (the router bounds it) but not stored, so the
            // client gets the answer instead of a reset connection.
        }
        if size > limit {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{name}: {size} bytes, larger than the LoRA upload limit of {limit} bytes"),
            ));
        }
        file.sync_all().await.map_err(ApiError::internal)?;
        received = Some((name, temp, size));
    }
    let Some((name, mut temp, size)) = received else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("no {FIELD} file in the form"),
        ));
    };
    let path = temp.0.clone().unwrap_or_default();
    let summary = tokio::task::spawn_blocking(move || models::validate::check_safetensors(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{name}: {e}")))?;
    if !summary
        .names
        .iter()
        .any(|n| models::validate::is_lora_tensor(n))
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("{name}: no LoRA tensors (lora_A/lora_B, lora_up/lora_down, ...) in the file"),
        ));
    }
    let dest = folder.join(&name);
    let shared = state.config.layout.base.models.full_path("loras", &name);
    if shared.is_some_and(|p| p != dest) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("{name}: a shared LoRA has this name; rename yours"),
        ));
    }
    if dest.exists() && !overwrite {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "{name}: you already have a LoRA with this name (send overwrite=true to replace it)"
            ),
        ));
    }
    let temp_path = temp.0.take().unwrap_or_default();
    if let Err(e) = tokio::fs::rename(&temp_path, &dest).await {
        temp.0 = Some(temp_path);
        return Err(ApiError::internal(e));
    }
    tracing::info!(user = %scope.user, file = %name, bytes = size, tensors = summary.tensors, "LoRA uploaded");
    Ok(Json(
        json!({"name": name, "subfolder": "", "type": "loras", "size": size, "tensors": summary.tensors}),
    ))
}
