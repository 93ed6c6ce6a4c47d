//! `/login` and `/logout`: the browser side of workshop authentication. The login page takes a
//! name and password (checked and throttled like basic authentication) and sets the session
//! cookie ([`crate::sessions`]); API clients keep using basic authentication.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Role;
use crate::sessions::{safe_next, token_in};
use crate::state::AppState;

/// The login form's fields (also accepted as JSON).
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `?next=` of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`: the form.
pub async fn page(State(state): State<Arc<AppState>>, Query(query): Query<NextQuery>) -> Response {
    if state.config.users.is_none() {
        return Redirect::to("/").into_response();
    }
    let next = query.next.filter(|n| safe_next(n)).unwrap_or_default();
    Html(render(&next, None)).into_response()
}

/// `POST /login`: checks the name and password and starts a session (form posts are redirected
/// to `next` or the user's workspace; JSON posts get `{"user", "expires_in"}`).
pub async fn login(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some(users) = state.config.users.clone() else {
        return Redirect::to("/").into_response();
    };
    let addr = super::client_addr(&req);
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form = if json_body {
        Json::<LoginForm>::from_request(req, &state)
            .await
            .map(|Json(f)| f)
            .map_err(IntoResponse::into_response)
    } else {
        axum::Form::<LoginForm>::from_request(req, &state)
            .await
            .map(|axum::Form(f)| f)
            .map_err(IntoResponse::into_response)
    };
    let form = match form {
        Ok(form) => form,
        Err(response) => return response,
    };
    let next = form.next.clone().filter(|n| safe_next(n));
    if let Err(response) = super::login_allowed(&state, &form.name, &addr) {
        return response;
    }
    let Some(user) = users.verify(&form.name, &form.password).cloned() else {
        state.guards.login_names.record(&form.name);
        state.guards.login_addrs.record(&addr);
        tracing::info!(user = %form.name, %addr, "failed login (form)");
        let message = "Wrong name or password.";
        if json_body {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": message}))).into_response();
        }
        let page = render(next.as_deref().unwrap_or(""), Some(message));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    };
    let token = state.sessions.create(&user.name, &user.password_hash);
    tracing::info!(user = %user.name, %addr, "logged in");
    let cookie = HeaderValue::from_str(&state.sessions.cookie(&token));
    let Ok(cookie) = cookie else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = if json_body {
        let ttl = state.sessions.policy().ttl.as_secs();
        Json(json!({"user": user.name, "expires_in": ttl})).into_response()
    } else {
        let home = if user.role == Role::Admin {
            "/admin".to_string()
        } else {
            format!("/{}/", user.name)
        };
        Redirect::to(&next.unwrap_or(home)).into_response()
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// `POST /logout`: ends the session and removes the cookie.
pub async fn logout(State(state): State<Arc<AppState>>, req: Request) -> Response {
    if let Some(token) = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(token_in)
    {
        state.sessions.end(token);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(clear) = HeaderValue::from_str(&state.sessions.clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

/// `GET /logout`: a page with the logout button (a GET must not change anything).
pub async fn logout_page() -> Html<String> {
    Html(page_shell(
        "Log out",
        r#"<form method="post" action="/logout"><button type="submit">Log out</button></form>"#,
    ))
}

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{error}<form method="post" action="/login">
<label>Name <input name="name" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{}">
<button type="submit">Log in</button>
</form>"#,
        escape(next)
    );
    page_shell("Log in", &body)
}

fn page_shell(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} - comfyrs</title>
<style>
body {{ font: 16px system-ui, sans-serif; background: #202020; color: #eee; display: grid;
  place-items: center; min-height: 100vh; margin: 0; }}
main {{ background: #2b2b2b; padding: 2rem; border-radius: 8px; min-width: 18rem; }}
h1 {{ font-size: 1.3rem; margin-top: 0; }}
label {{ display: block; margin: .8rem 0; }}
input {{ display: block; width: 100%; box-sizing: border-box; padding: .4rem; margin-top: .3rem; }}
button {{ padding: .5rem 1.2rem; margin-top: .5rem; }}
.error {{ color: #ff8a80; }}
</style></head>
<body><main><h1>{title}</h1>
{body}
</main></body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let page = render("/ann/\"><script>", Some("<b>"));
        assert!(page.contains("/ann/&quot;&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains("&lt;b&gt;"));
        assert!(!page.contains("<script>"));
    }
}
