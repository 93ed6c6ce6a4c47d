//! The ComfyUI frontend's static files (index.html at the workspace root, relative assets), the
//! workflow templates, and an SPA fallback so a reload on a frontend route still loads the app.

use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use nodes::env::safe_join;
use tower::ServiceExt;

use crate::state::AppState;

const NO_FRONTEND: &str = "<!doctype html><html><head><title>comfyrs</title></head><body>\
<h1>comfyrs</h1><p>The ComfyUI web frontend is not installed. Run <code>scripts/setup.sh</code> \
(or pass <code>--front-end-root</code>). The ComfyUI API (<code>/prompt</code>, <code>/ws</code>, \
<code>/history</code>, <code>/object_info</code>, ...) is available.</p></body></html>";

async fn serve(path: &FsPath, req_headers: &axum::http::HeaderMap) -> Response {
    let mut builder = axum::http::Request::builder();
    for key in [
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::ACCEPT_ENCODING,
    ] {
        if let Some(v) = req_headers.get(&key) {
            builder = builder.header(key, v);
        }
    }
    let Ok(request) = builder.body(Body::empty()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
    {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!("serving {}: {e}", path.display());
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn index_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    response
}

/// Everything not matched by an API route: frontend files.
pub async fn fallback(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let Some(root) = state.config.frontend_root.clone() else {
        return if req.uri().path() == "/" {
            Html(NO_FRONTEND).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        };
    };
    let raw = req.uri().path().trim_start_matches('/').to_string();
    let decoded = percent_decode(&raw);
    let Some(path) = safe_join(&root, &decoded) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if decoded.is_empty() || path.is_dir() {
        let index = path.join("index.html");
        return index_headers(serve(&index, req.headers()).await);
    }
    if path.is_file() {
        let mut response = serve(&path, req.headers()).await;
        if decoded.ends_with(".js") || decoded.ends_with(".css") || decoded.ends_with(".json") {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        return response;
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html && !decoded.contains('.') {
        return index_headers(serve(&root.join("index.html"), req.headers()).await);
    }
    StatusCode::NOT_FOUND.into_response()
}

/// `GET /templates/{*path}`: the workflow templates package (index.json, workflows, thumbnails).
pub async fn template(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let Some(root) = &state.config.templates_root else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match safe_join(root, &path) {
        Some(file) if file.is_file() => serve(&file, req.headers()).await,
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
