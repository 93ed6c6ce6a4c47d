//! The HTTP routes, grouped by resource (one file each), mounted at both `/<route>` and
//! `/api/<route>` as ComfyUI does, behind the middleware that decides the request's [`Scope`].

mod admin;
pub mod files;
mod history;
mod internal;
mod jobs;
mod login;
mod loras;
mod object_info;
mod prompt;
mod queue;
mod static_files;
mod system;
mod userdata;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower::Layer;

use crate::auth::{Role, Scope, User, parse_basic};
use crate::state::AppState;

pub use jobs::{history_entry, job_item};

/// Routes ComfyUI mounts at both `P` and `/api/P`. Uploads may be as large as
/// `upload_limit` (ComfyUI's `--max-upload-size`; a declared `Content-Length` beyond it is
/// answered 413 before any of the body is read); other bodies are limited by the router.
fn comfy_routes(upload_limit: usize, lora_limit: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/prompt", get(prompt::status).post(prompt::submit))
        .route("/queue", get(queue::get_queue).post(queue::post_queue))
        .route("/interrupt", post(queue::interrupt))
        .route("/free", post(queue::free))
        .route("/history", get(history::list).post(history::post))
        .route("/history/{id}", get(history::one))
        .route("/object_info", get(object_info::all))
        .route("/object_info/{class}", get(object_info::one))
        .route("/view", get(files::view))
        .route("/view_metadata/{folder}", get(files::view_metadata))
        .route(
            "/upload/image",
            post(files::upload_image)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(middleware::from_fn(move |req, next| {
                    files::refuse_declared_oversize(upload_limit, req, next)
                })),
        )
        .route(
            "/upload/mask",
            post(files::upload_mask)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(middleware::from_fn(move |req, next| {
                    files::refuse_declared_oversize(upload_limit, req, next)
                })),
        )
        .route(
            "/upload/lora",
            post(loras::upload_lora)
                .layer(DefaultBodyLimit::max(lora_limit))
                .layer(middleware::from_fn(move |req, next| {
                    files::refuse_declared_oversize(lora_limit, req, next)
                })),
        )
        .route("/system_stats", get(system::system_stats))
        .route("/features", get(system::features))
        .route("/extensions", get(system::extensions))
        .route("/embeddings", get(system::embeddings))
        .route("/models", get(system::model_folders))
        .route("/models/{folder}", get(system::model_files))
        .route("/experiment/models", get(system::experiment_models))
        .route(
            "/experiment/models/{folder}",
            get(system::experiment_model_files),
        )
        .route("/i18n", get(system::i18n))
        .route("/global_subgraphs", get(system::global_subgraphs))
        .route("/global_subgraphs/{id}", get(system::global_subgraph))
        .route("/node_replacements", get(system::node_replacements))
        .route("/workflow_templates", get(system::workflow_templates))
        .route(
            "/users",
            get(userdata::get_users).post(userdata::post_users),
        )
        .route(
            "/settings",
            get(userdata::get_settings).post(userdata::post_settings),
        )
        .route(
            "/settings/{id}",
            get(userdata::get_setting).post(userdata::post_setting),
        )
        .route("/userdata", get(userdata::list))
        .route("/v2/userdata", get(userdata::list_v2))
        .route(
            "/userdata/{file}",
            get(userdata::get_file)
                .post(userdata::post_file)
                .delete(userdata::delete_file),
        )
        .route("/userdata/{file}/move/{dest}", post(userdata::move_file))
        .route("/ws", get(ws::handler))
}

/// Routes that exist only under `/api` (ComfyUI declares them with the prefix), plus ours.
fn api_only_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/cancel", post(jobs::cancel_many))
        .route("/jobs/{id}", get(jobs::one).delete(jobs::delete))
        .route("/jobs/{id}/cancel", post(jobs::cancel_one))
        .route(
            "/jobs/{id}/priority",
            axum::routing::patch(jobs::set_priority),
        )
        .route("/jobs/{id}/prioritize", post(jobs::prioritize))
        .route("/queue/status", get(jobs::queue_status))
        .route(
            "/queue/policy",
            get(jobs::get_policy)
                .put(jobs::set_policy)
                .post(jobs::set_policy),
        )
        .route("/queue/pause", post(jobs::pause))
        .route("/queue/resume", post(jobs::resume))
        .route("/workers", get(jobs::workers))
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    // The multipart framing around the file needs a little more than the file's limit.
    let lora_limit = state.config.lora_upload_bytes.map_or(upload_limit, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_add(64 * 1024)
    });
    let body_limit = state.config.max_body_bytes;
    let routes = Router::new()
        .merge(comfy_routes(upload_limit, lora_limit))
        .nest(
            "/api",
            comfy_routes(upload_limit, lora_limit).merge(api_only_routes()),
        )
        .route("/health", get(system::health))
        .route("/internal/logs", get(internal::logs))
        .route("/internal/logs/raw", get(internal::logs_raw))
        .route(
            "/internal/logs/subscribe",
            axum::routing::patch(internal::logs_subscribe),
        )
        .route("/internal/folder_paths", get(internal::folder_paths))
        .route("/internal/files/{kind}", get(internal::files))
        .route("/templates/{*path}", get(static_files::template))
        .route("/login", get(login::page).post(login::login))
        .route("/logout", get(login::logout_page).post(login::logout))
        .merge(admin::routes())
        .fallback(static_files::fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state.clone());
    // The scope layer rewrites `/<user>/...` to `/...`, so it must run before routing: a
    // `Router::layer` would run after the route was chosen from the unstripped path.
    let scoped = middleware::from_fn_with_state(state, scope_layer).layer(routes);
    Router::new().fallback_service(scoped)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"comfyrs\", charset=\"UTF-8\""),
        )],
        "authentication required",
    )
        .into_response()
}

/// Decides who a request acts for. Single-user mode: everyone is the owner. Workshop mode: HTTP
/// basic authentication or a session cookie (`/login`); `/<user>/...` is that user's workspace
/// (its owner or an admin only), the prefix is stripped before routing; other paths act for the
/// authenticated user. A browser opening a page without credentials is sent to `/login`.
async fn scope_layer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if let Some(response) = origin_guard(&state, &req) {
        return response;
    }
    let Some(users) = state.config.users.clone() else {
        req.extensions_mut().insert(Scope::single_user());
        return run_invalidating(&state, req, next).await;
    };
    if matches!(req.uri().path(), "/login" | "/logout") {
        return next.run(req).await;
    }
    let credentials = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_basic);
    let actor = match credentials {
        Some((name, password)) => {
            let addr = client_addr(&req);
            if let Err(response) = login_allowed(&state, &name, &addr) {
                return response;
            }
            let Some(actor) = users.verify(&name, &password).cloned() else {
                state.guards.login_names.record(&name);
                state.guards.login_addrs.record(&addr);
                // The name is logged, never the password.
                tracing::info!(user = %name, %addr, "failed login");
                return unauthorized();
            };
            actor
        }
        None => match session_user(&state, &users, &req) {
            Some(actor) => {
                if let Some(response) = cross_site_with_cookie(&req) {
                    return response;
                }
                actor
            }
            None if wants_page(&req) => return to_login(&req),
            None => return unauthorized(),
        },
    };
    let admin = actor.role == Role::Admin;
    let path = req.uri().path().to_string();
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let scope = if let Some(owner) = users.get(&first) {
        if owner.name != actor.name && !admin {
            return (
                StatusCode::FORBIDDEN,
                "this workspace belongs to another user",
            )
                .into_response();
        }
        let prefix = format!("/{}", owner.name);
        if path == prefix {
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return Redirect::permanent(&format!("{prefix}/{query}")).into_response();
        }
        let rest = &req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_default()[prefix.len()..];
        match rest.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return (StatusCode::BAD_REQUEST, "bad path").into_response(),
        }
        Scope {
            user: owner.name.clone(),
            prefix,
            admin,
        }
    } else {
        if !admin && path == "/" {
            return Redirect::temporary(&format!("/{}/", actor.name)).into_response();
        }
        Scope {
            user: actor.name.clone(),
            prefix: String::new(),
            admin,
        }
    };
    req.extensions_mut().insert(scope);
    run_invalidating(&state, req, next).await
}

/// Runs a request; one that may have changed the queue (not GET/HEAD) marks the shared queue
/// view stale once it is done, so the next read shows the change without waiting for the
/// backend's change notice.
async fn run_invalidating(state: &AppState, req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let response = next.run(req).await;
    if changes {
        state.queue_view.invalidate();
    }
    response
}

/// The user of the request's session cookie, if it names a live session.
fn session_user(state: &AppState, users: &crate::auth::Users, req: &Request) -> Option<User> {
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(crate::sessions::token_in)?;
    let name = state.sessions.user_for(token, |name| {
        users.get(name).map(|u| u.password_hash.clone())
    })?;
    users.get(&name).cloned()
}

/// A state-changing request authenticated by the cookie alone must come from our own pages,
/// whatever the CORS setting: the browser attaches cookies to cross-site requests.
fn cross_site_with_cookie(req: &Request) -> Option<Response> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let headers = req.headers();
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| o.split("://").nth(1).unwrap_or(o));
    let foreign_origin =
        matches!((origin_host, host), (Some(o), Some(h)) if !o.eq_ignore_ascii_case(h));
    (matches!(site, Some("cross-site" | "same-site")) || foreign_origin)
        .then(|| (StatusCode::FORBIDDEN, "cross-site request refused").into_response())
}

/// Whether the request is a browser opening a page (it would rather see the login form than a
/// 401).
fn wants_page(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

/// A redirect to the login page that comes back to the requested path.
fn to_login(req: &Request) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut encoded = String::new();
    for byte in target.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Redirect::to(&format!("/login?next={encoded}")).into_response()
}

/// The client's IP address (the connection's peer), or `unknown`.
fn client_addr(req: &Request) -> String {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Refuses (429) a login attempt for a user name or from an address with too many recent
/// failures, before the password is checked (so guessing costs no hashing either).
fn login_allowed(state: &AppState, name: &str, addr: &str) -> Result<(), Response> {
    let guards = &state.guards;
    let wait = guards
        .login_names
        .check(name)
        .and_then(|()| guards.login_addrs.check(addr));
    let Err(wait) = wait else {
        return Ok(());
    };
    tracing::warn!(user = %name, %addr, "login throttled after repeated failures");
    let limits = &state.config.user_limits;
    let details = format!(
        "{} failed logins in {} s; try again in {} s",
        limits.max_login_failures,
        limits.login_window.as_secs(),
        wait.as_secs().max(1)
    );
    Err(crate::limits::too_many(
        "login_throttled",
        "Too many failed logins",
        &details,
        wait,
    ))
}

/// ComfyUI's origin check: refuse cross-site requests (browsers send `Sec-Fetch-Site`) and
/// requests whose `Origin` host differs from `Host`, unless CORS was enabled.
fn origin_guard(state: &AppState, req: &Request) -> Option<Response> {
    if req.method() == Method::OPTIONS {
        return Some(cors_preflight(state));
    }
    if state.config.cors_origin.is_some() {
        return None;
    }
    let headers = req.headers();
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Some((StatusCode::FORBIDDEN, "cross-site request refused").into_response());
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok())?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())?;
    let origin_host = origin.split("://").nth(1).unwrap_or(origin);
    if origin != "null" && !origin_host.eq_ignore_ascii_case(host) {
        tracing::warn!(%origin, %host, "refusing a request whose Origin does not match Host");
        return Some((StatusCode::FORBIDDEN, "origin does not match host").into_response());
    }
    None
}

fn cors_preflight(state: &AppState) -> Response {
    let mut response = StatusCode::OK.into_response();
    if let Some(origin) = &state.config.cors_origin {
        add_cors(&mut response, origin);
    }
    response
}

/// Adds ComfyUI's `--enable-cors-header` headers.
pub fn add_cors(response: &mut Response, origin: &str) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, DELETE, PUT, OPTIONS, PATCH"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// Refuses non-admins (admin routes).
pub fn require_admin(scope: &Scope) -> Result<(), crate::error::ApiError> {
    if scope.admin {
        Ok(())
    } else {
        Err(crate::error::ApiError::forbidden(
            "this route is for the instructor (admin) only",
        ))
    }
}
