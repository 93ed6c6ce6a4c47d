//! `/view` (serve a user's input/output/temp file), `/upload/image`, `/upload/mask` and
//! `/view_metadata`. Paths that escape the user's folders are refused.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nodes::env::{Dirs, safe_join, split_annotation};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const SCRIPTABLE: &[&str] = &["html", "htm", "js", "mjs", "css", "svg", "xml", "xhtml"];

/// `GET /view?filename=&type=&subfolder=&preview=&channel=`.
pub async fn view(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
    req: Request,
) -> ApiResult<Response> {
    let env = state.env(&scope);
    let (path, file_name) = view_target(&env.dirs, &params).map_err(ApiError::status)?;
    if !path.is_file() {
        return Err(ApiError::status(StatusCode::NOT_FOUND));
    }
    let converted = if let Some(preview) = params.get("preview") {
        Some(preview_image(&path, preview).await?)
    } else if let Some(channel) = params.get("channel").filter(|c| c.as_str() != "rgba") {
        Some(channel_image(&path, channel).await?)
    } else {
        None
    };
    if let Some(mut response) = converted {
        // Named after the original file, as ComfyUI does.
        let disposition = format!("filename=\"{}\"", file_name.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
        return Ok(response);
    }
    serve_file(&path, &file_name, req.headers()).await
}

/// Where `/view` looks for a file: the user's `type` folder (or the one the filename's
/// `[output]`-style annotation names), joined with `subfolder` and the filename's last part.
/// Errors are bare statuses, as ComfyUI's `view_image` answers them: 404 without a filename,
/// 400 for a name with a path or an unknown type, 403 for a subfolder leaving the folder.
/// Pure: nothing is read from the disk.
pub fn view_target(
    dirs: &Dirs,
    params: &HashMap<String, String>,
) -> Result<(PathBuf, String), StatusCode> {
    let Some(raw_name) = params.get("filename") else {
        return Err(StatusCode::NOT_FOUND);
    };
    let (name, annotated) = split_annotation(raw_name);
    let kind = annotated
        .or_else(|| params.get("type").map(String::as_str))
        .unwrap_or("output");
    if name.is_empty() || name.starts_with('/') || name.contains("..") || name.contains('\\') {
        return Err(StatusCode::BAD_REQUEST);
    }
    let Some(base) = dirs.for_type(kind) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let subfolder = params.get("subfolder").map(String::as_str).unwrap_or("");
    let folder = safe_join(base, subfolder).ok_or(StatusCode::FORBIDDEN)?;
    let file_name = FsPath::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok((folder.join(&file_name), file_name))
}

/// Serves a file with range support and ComfyUI's safety headers.
pub async fn serve_file(
    path: &FsPath,
    file_name: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut builder = axum::http::Request::builder();
    for key in [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        if let Some(v) = headers.get(&key) {
            builder = builder.header(key, v);
        }
    }
    let request = builder.body(Body::empty()).map_err(ApiError::internal)?;
    let mut response = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?
        .into_response();
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let image_load = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok()) == Some("image");
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if SCRIPTABLE.contains(&ext.as_str()) && !(image_load && ext == "svg") {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let disposition = format!("attachment; filename=\"{}\"", file_name.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    } else {
        let disposition = format!("filename=\"{}\"", file_name.replace('"', ""));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    if ext == "svg" && image_load {
        h.insert(header::VARY, HeaderValue::from_static("Sec-Fetch-Dest"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

fn encoded(bytes: Vec<u8>, mime: &'static str) -> Response {
    ([(header::CONTENT_TYPE, mime)], bytes).into_response()
}

async fn preview_image(path: &FsPath, spec: &str) -> ApiResult<Response> {
    let (format, quality) = spec.split_once(';').unwrap_or((spec, "90"));
    let quality: u8 = quality.parse().unwrap_or(90).clamp(1, 100);
    let path = path.to_path_buf();
    let format = format.to_string();
    tokio::task::spawn_blocking(move || {
        let img =
            image::open(&path).map_err(|e| ApiError::bad_request(format!("not an image: {e}")))?;
        let mut out = std::io::Cursor::new(Vec::new());
        if format == "jpeg" && !img.color().has_alpha() {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            img.to_rgb8()
                .write_with_encoder(enc)
                .map_err(ApiError::internal)?;
            Ok(encoded(out.into_inner(), "image/jpeg"))
        } else {
            img.to_rgba8()
                .write_to(&mut out, image::ImageFormat::WebP)
                .map_err(ApiError::internal)?;
            Ok(encoded(out.into_inner(), "image/webp"))
        }
    })
    .await
    .map_err(ApiError::internal)?
}

async fn channel_image(path: &FsPath, channel: &str) -> ApiResult<Response> {
    let path = path.to_path_buf();
    let channel = channel.to_string();
    tokio::task::spawn_blocking(move || {
        let img =
            image::open(&path).map_err(|e| ApiError::bad_request(format!("not an image: {e}")))?;
        let mut out = std::io::Cursor::new(Vec::new());
        match channel.as_str() {
            "rgb" => img
                .to_rgb8()
                .write_to(&mut out, image::ImageFormat::Png)
                .map_err(ApiError::internal)?,
            "a" => {
                let rgba = img.to_rgba8();
                let alpha = image::RgbaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                    let a = rgba.get_pixel(x, y).0[3];
                    image::Rgba([a, a, a, 255])
                });
                alpha
                    .write_to(&mut out, image::ImageFormat::Png)
                    .map_err(ApiError::internal)?
            }
            _ => return Err(ApiError::bad_request("channel must be rgb, a or rgba")),
        }
        Ok(encoded(out.into_inner(), "image/png"))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Answers 413 at once when the declared `Content-Length` exceeds `limit`, before any of the
/// body is read (a streamed body is still cut at the limit by the body-limit layer).
pub async fn refuse_declared_oversize(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        tracing::info!(declared, limit, "upload refused: too large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "upload too large").into_response();
    }
    next.run(req).await
}

/// The fields of an upload form (`/upload/image`, `/upload/mask`).
#[derive(Debug)]
pub struct Upload {
    /// The file part's file name, as sent.
    pub file_name: String,
    /// The file's bytes.
    pub bytes: Bytes,
    /// `type`: `input` (default), `temp` or `output`.
    pub kind: String,
    /// `subfolder`, as sent.
    pub subfolder: String,
    /// `overwrite`.
    pub overwrite: bool,
    /// `original_ref` (masks), when it is JSON.
    pub original_ref: Option<Value>,
}

/// Parses a complete upload body (`multipart/form-data` with `content_type`'s boundary);
/// `field_name` is the file part (`image`). The routes read the same form from the request.
pub async fn parse_upload(content_type: &str, body: Bytes, field_name: &str) -> ApiResult<Upload> {
    let request = axum::http::Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let form = <Multipart as axum::extract::FromRequest<()>>::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    read_upload(form, field_name).await
}

async fn read_upload(mut form: Multipart, field_name: &str) -> ApiResult<Upload> {
    let mut upload = Upload {
        file_name: String::new(),
        bytes: Bytes::new(),
        kind: "input".into(),
        subfolder: String::new(),
        overwrite: false,
        original_ref: None,
    };
    let mut seen_file = false;
    while let Some(field) = form.next_field().await.map_err(|e| multipart_error(&e))? {
        let name = field.name().unwrap_or("").to_string();
        if name == field_name {
            upload.file_name = field.file_name().unwrap_or("").to_string();
            upload.bytes = field.bytes().await.map_err(|e| multipart_error(&e))?;
            seen_file = true;
            continue;
        }
        let text = field.text().await.map_err(|e| multipart_error(&e))?;
        match name.as_str() {
            "type" => upload.kind = text,
            "subfolder" => upload.subfolder = text,
            "overwrite" => upload.overwrite = matches!(text.as_str(), "true" | "1"),
            "original_ref" => upload.original_ref = serde_json::from_str(&text).ok(),
            _ => {}
        }
    }
    if !seen_file || upload.file_name.is_empty() {
        return Err(refused(&format!("no {field_name} file in the form")));
    }
    Ok(upload)
}

/// A refused upload: a bare 400 as ComfyUI answers, with the reason in the log.
fn refused(reason: &str) -> ApiError {
    tracing::info!(reason, "upload refused");
    ApiError::status(StatusCode::BAD_REQUEST)
}

/// A multipart parsing error as an API error (its own status, e.g. 413 past the body limit).
pub(crate) fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    ApiError::message(status, format!("bad upload: {}", e.body_text()))
}

/// The folder and file name an upload asks for, checked: the subfolder stays inside `base` and
/// the name is a plain file name (`../evil.png`, `.hidden` and `a\b` are refused, as ComfyUI
/// refuses names that leave the folder). Pure: nothing is read from or written to the disk.
pub fn upload_target(
    base: &FsPath,
    subfolder: &str,
    file_name: &str,
) -> ApiResult<(PathBuf, String)> {
    let folder =
        safe_join(base, subfolder).ok_or_else(|| refused("subfolder outside the folder"))?;
    let plain = FsPath::new(file_name).file_name().and_then(|n| n.to_str()) == Some(file_name);
    if !plain || file_name.starts_with('.') || file_name.contains('\\') {
        return Err(refused("invalid file name"));
    }
    Ok((folder, file_name.to_string()))
}

/// The folder and final name for an upload (ComfyUI's `image_upload`): without overwrite, an
/// identical existing file is reused and a different one gets `name (1).ext`, `name (2).ext`...
fn place_upload(base: &FsPath, upload: &Upload) -> ApiResult<(PathBuf, String, bool)> {
    let (folder, raw) = upload_target(base, &upload.subfolder, &upload.file_name)?;
    std::fs::create_dir_all(&folder).map_err(ApiError::internal)?;
    if upload.overwrite {
        return Ok((folder, raw, true));
    }
    let (stem, ext) = match raw.rsplit_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (raw.clone(), String::new()),
    };
    let mut candidate = raw.clone();
    let mut i = 1;
    loop {
        let path = folder.join(&candidate);
        if !path.exists() {
            return Ok((folder, candidate, true));
        }
        if std::fs::read(&path).is_ok_and(|existing| existing == upload.bytes.as_ref()) {
            return Ok((folder, candidate, false));
        }
        candidate = format!("{stem} ({i}){ext}");
        i += 1;
    }
}

async fn store_upload(
    state: &AppState,
    scope: &Scope,
    upload: &Upload,
    bytes: &[u8],
) -> ApiResult<Json<Value>> {
    let env = state.env(scope);
    let base = match upload.kind.as_str() {
        "input" | "temp" | "output" => env.dirs.for_type(&upload.kind).map(FsPath::to_path_buf),
        _ => None,
    };
    let Some(base) = base else {
        return Err(refused(&format!("invalid type {:?}", upload.kind)));
    };
    let (folder, name, write) = place_upload(&base, upload)?;
    if write {
        nodes::files::write_atomic(&folder.join(&name), bytes).map_err(ApiError::internal)?;
    }
    tracing::info!(user = %scope.user, file = %name, bytes = bytes.len(), "upload stored");
    Ok(Json(
        json!({"name": name, "subfolder": upload.subfolder, "type": upload.kind}),
    ))
}

/// `POST /upload/image` (multipart: `image`, `type`, `subfolder`, `overwrite`).
pub async fn upload_image(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    form: Multipart,
) -> ApiResult<Json<Value>> {
    let upload = read_upload(form, "image").await?;
    let bytes = upload.bytes.clone();
    store_upload(&state, &scope, &upload, &bytes).await
}

/// `POST /upload/mask`: like `/upload/image`, plus `original_ref`; the upload's alpha replaces
/// the original image's alpha, and the result (with the original's text chunks) is saved.
pub async fn upload_mask(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    form: Multipart,
) -> ApiResult<Json<Value>> {
    let upload = read_upload(form, "image").await?;
    let original = upload
        .original_ref
        .clone()
        .ok_or_else(|| ApiError::bad_request("original_ref is required"))?;
    let env = state.env(&scope);
    let kind = original["type"].as_str().unwrap_or("input");
    let base = env
        .dirs
        .for_type(kind)
        .ok_or_else(|| ApiError::bad_request("invalid original type"))?;
    let sub = original["subfolder"].as_str().unwrap_or("");
    let name = original["filename"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("original_ref.filename is required"))?;
    let folder =
        safe_join(base, sub).ok_or_else(|| ApiError::forbidden("subfolder outside the folder"))?;
    let original_path =
        safe_join(&folder, name).ok_or_else(|| ApiError::bad_request("invalid filename"))?;
    let mask_bytes = upload.bytes.clone();
    let merged = tokio::task::spawn_blocking(move || merge_alpha(&original_path, &mask_bytes))
        .await
        .map_err(ApiError::internal)??;
    store_upload(&state, &scope, &upload, &merged).await
}

fn merge_alpha(original: &FsPath, mask: &[u8]) -> ApiResult<Vec<u8>> {
    let bytes =
        std::fs::read(original).map_err(|_| ApiError::not_found("original image not found"))?;
    let texts = png_texts(&bytes);
    let mut base = image::load_from_memory(&bytes)
        .map_err(|e| ApiError::bad_request(format!("original is not an image: {e}")))?
        .to_rgba8();
    let mut mask = image::load_from_memory(mask)
        .map_err(|e| ApiError::bad_request(format!("mask is not an image: {e}")))?
        .to_rgba8();
    if mask.dimensions() != base.dimensions() {
        mask = image::imageops::resize(
            &mask,
            base.width(),
            base.height(),
            image::imageops::FilterType::Lanczos3,
        );
    }
    for (p, m) in base.pixels_mut().zip(mask.pixels()) {
        p.0[3] = m.0[3];
    }
    let px = nodes::files::Pixels {
        width: base.width() as usize,
        height: base.height() as usize,
        channels: 4,
        data: base.into_raw(),
    };
    nodes::files::encode_png(&px, &texts, 4).map_err(ApiError::internal)
}

fn png_texts(bytes: &[u8]) -> Vec<(String, String)> {
    let Ok(reader) = png::Decoder::new(std::io::Cursor::new(bytes)).read_info() else {
        return Vec::new();
    };
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect()
}

/// `GET /view_metadata/{folder}?filename=x.safetensors`: the file's `__metadata__`.
pub async fn view_metadata(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(folder): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let name = params
        .get("filename")
        .ok_or_else(|| ApiError::not_found("no filename"))?;
    if !name.ends_with(".safetensors") {
        return Err(ApiError::not_found("not a safetensors file"));
    }
    let env = state.env(&scope);
    let path = env
        .models
        .full_path(&folder, name)
        .ok_or_else(|| ApiError::not_found("file not found"))?;
    let metadata = tokio::task::spawn_blocking(move || safetensors_metadata(&path))
        .await
        .map_err(ApiError::internal)?;
    metadata
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no metadata"))
}

fn safetensors_metadata(path: &FsPath) -> Option<Value> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let json: Value = serde_json::from_slice(&header).ok()?;
    json.get("__metadata__").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn view_targets_stay_in_the_users_folders() {
        let dirs = Dirs::under(FsPath::new("/data/users/ann"));
        let ok = view_target(
            &dirs,
            &params(&[("filename", "a.png"), ("subfolder", "x/y")]),
        );
        assert_eq!(
            ok,
            Ok((
                PathBuf::from("/data/users/ann/output/x/y/a.png"),
                "a.png".into()
            ))
        );
        let annotated = view_target(&dirs, &params(&[("filename", "b.png [input]")]));
        assert_eq!(
            annotated.unwrap().0,
            PathBuf::from("/data/users/ann/input/b.png")
        );
        for (pairs, status) in [
            (vec![], StatusCode::NOT_FOUND),
            (vec![("filename", "../a.png")], StatusCode::BAD_REQUEST),
            (vec![("filename", "/etc/passwd")], StatusCode::BAD_REQUEST),
            (
                vec![("filename", "a.png"), ("type", "models")],
                StatusCode::BAD_REQUEST,
            ),
            (
                vec![("filename", "a.png"), ("subfolder", "../bob")],
                StatusCode::FORBIDDEN,
            ),
            (
                vec![("filename", "a.png"), ("subfolder", "/etc")],
                StatusCode::FORBIDDEN,
            ),
        ] {
            assert_eq!(
                view_target(&dirs, &params(&pairs)),
                Err(status),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn upload_targets_refuse_paths_in_names_and_escaping_subfolders() {
        let base = FsPath::new("/data/users/ann/input");
        let (folder, name) = upload_target(base, "sub", "a.png").unwrap();
        assert_eq!(folder.join(name), base.join("sub/a.png"));
        for (sub, name) in [
            ("", "../a.png"),
            ("", ".hidden"),
            ("", "a\\b.png"),
            ("", "x/a.png"),
            ("", ""),
            ("..", "a.png"),
            ("/tmp", "a.png"),
        ] {
            assert!(upload_target(base, sub, name).is_err(), "{sub:?} {name:?}");
        }
    }
}
