//! Browser sessions against a real `comfyrs serve` in workshop mode: `/login` sets an HttpOnly
//! cookie that works for the API and the WebSocket; wrong passwords are refused and throttled;
//! sessions end at logout, after their lifetime and after idleness; `next` cannot leave the
//! server; a cookie-authenticated request from another site is refused even with CORS enabled;
//! a participant's session cannot reach admin routes; a browser without credentials is sent to
//! the login page while API clients still get the basic-auth challenge; tokens never reach the
//! log.

mod common;

use std::time::Duration;

use common::ws::WsClient;
use common::{Server, ServerOptions, TestUser};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn server(args: &[&str]) -> Server {
    Server::start(ServerOptions {
        users: vec![
            TestUser::participant("ann", "ann-pw-1"),
            TestUser::participant("bob", "bob-pw-2"),
            TestUser::admin("teacher", "teacher-pw-3"),
        ],
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![(
            "RUST_LOG".into(),
            "debug,tower_http=trace,hyper=info".into(),
        )],
        ..ServerOptions::default()
    })
}

/// A client that does not follow redirects (so they can be checked) and keeps no cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in through the form; returns the response.
async fn form_login(server: &Server, name: &str, password: &str, next: &str) -> reqwest::Response {
    client()
        .post(format!("{}/login", server.url))
        .form(&[("name", name), ("password", password), ("next", next)])
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of the session cookie a response sets.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn get_with(server: &Server, path: &str, cookie: &str) -> u16 {
    client()
        .get(format!("{}{path}", server.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn login_sets_a_cookie_that_opens_the_api_and_the_websocket_until_logout() {
    let server = server(&[]);
    let page = client()
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\" action=\"/login\"")
    );

    let reply = form_login(&server, "ann", "ann-pw-1", "").await;
    assert_eq!(reply.status(), 303);
    assert_eq!(reply.headers()[LOCATION], "/ann/");
    let set = reply.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for part in [
        "comfyrs_session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = session_cookie(&reply);

    assert_eq!(get_with(&server, "/ann/api/queue", &cookie).await, 200);
    assert_eq!(get_with(&server, "/api/jobs", &cookie).await, 200);
    assert_eq!(
        get_with(&server, "/bob/api/queue", &cookie).await,
        403,
        "another user's workspace"
    );
    assert_eq!(
        get_with(&server, "/api/admin/overview", &cookie).await,
        403,
        "admin route"
    );
    let submit = client()
        .post(format!("{}/ann/api/prompt", server.url))
        .header(COOKIE, &cookie)
        .json(&json!({"prompt": common::empty_image_prompt(8, 8, 0, "cookie")}))
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status(), 200, "{}", submit.text().await.unwrap());

    // The WebSocket upgrade accepts the cookie.
    let url = format!(
        "{}/ann/ws?clientId=c1",
        server.url.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("ws with cookie");
    drop(stream);
    assert!(
        WsClient::try_connect(&server.url, "/ann/ws", None)
            .await
            .is_err(),
        "no credentials"
    );

    // Logout ends the session and clears the cookie.
    let out = client()
        .post(format!("{}/logout", server.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(get_with(&server, "/ann/api/queue", &cookie).await, 401);

    // An admin lands on the dashboard; `next` is followed when it stays on this server.
    let reply = form_login(&server, "teacher", "teacher-pw-3", "").await;
    assert_eq!(reply.headers()[LOCATION], "/admin");
    let admin = session_cookie(&reply);
    assert_eq!(get_with(&server, "/api/admin/overview", &admin).await, 200);
    let reply = form_login(&server, "ann", "ann-pw-1", "/ann/?workflow=x").await;
    assert_eq!(reply.headers()[LOCATION], "/ann/?workflow=x");
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let reply = form_login(&server, "ann", "ann-pw-1", evil).await;
        assert_eq!(reply.headers()[LOCATION], "/ann/", "next {evil:?}");
    }

    let json = client()
        .post(format!("{}/login", server.url))
        .json(&json!({"name": "bob", "password": "bob-pw-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["user"], "bob");
    assert_eq!(body["expires_in"], 43200);

    // The token never reaches the log.
    let token = cookie.split_once('=').unwrap().1.to_string();
    let log = server.log();
    assert!(log.contains("logged in"), "{log}");
    for secret in [token.as_str(), "ann-pw-1", "teacher-pw-3"] {
        assert!(!log.contains(secret), "the log has {secret:?}");
    }
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_throttled() {
    let server = server(&["--max-login-failures", "3"]);
    for _ in 0..3 {
        let reply = form_login(&server, "ann", "guess", "").await;
        assert_eq!(reply.status(), 401);
        assert!(reply.headers().get(SET_COOKIE).is_none());
        assert!(
            reply
                .text()
                .await
                .unwrap()
                .contains("Wrong name or password")
        );
    }
    let reply = form_login(&server, "ann", "ann-pw-1", "").await;
    assert_eq!(
        reply.status(),
        429,
        "throttled even with the right password now"
    );
    let other = form_login(&server, "bob", "bob-pw-2", "").await;
    assert_eq!(other.status(), 429, "the address is throttled too");
}

#[tokio::test]
async fn sessions_expire_after_their_lifetime_and_after_idleness() {
    // Lifetime 3.6 s, idle 1.2 s: used every 0.3 s, the session lives until its lifetime ends.
    let server = server(&[
        "--session-ttl-hours",
        "0.001",
        "--session-idle-minutes",
        "0.02",
    ]);
    let ttl = Duration::from_millis(3600);
    let login = std::time::Instant::now();
    let cookie = session_cookie(&form_login(&server, "ann", "ann-pw-1", "").await);
    let mut checked_alive = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = login.elapsed();
        let status = get_with(&server, "/ann/api/queue", &cookie).await;
        if asked + Duration::from_millis(300) < ttl {
            assert_eq!(status, 200, "kept alive by use at {asked:?}");
            checked_alive += 1;
        } else if asked > ttl + Duration::from_millis(100) {
            assert_eq!(status, 401, "past its lifetime at {asked:?}");
            break;
        }
    }
    assert!(checked_alive >= 5, "the session was used while alive");

    let cookie = session_cookie(&form_login(&server, "ann", "ann-pw-1", "").await);
    assert_eq!(get_with(&server, "/ann/api/queue", &cookie).await, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        get_with(&server, "/ann/api/queue", &cookie).await,
        401,
        "idle too long"
    );
}

#[tokio::test]
async fn browsers_go_to_the_login_page_and_cookies_do_not_work_cross_site() {
    let server = server(&["--enable-cors-header", "*", "--cookie-secure"]);
    let page = client()
        .get(format!("{}/ann/?x=1", server.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[LOCATION], "/login?next=/ann/%3Fx%3D1");
    let api = client()
        .get(format!("{}/ann/api/queue", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    assert!(
        api.headers().contains_key("www-authenticate"),
        "API clients are challenged"
    );

    // CORS is on (any origin), yet a cookie-authenticated POST from another site is refused.
    let reply = form_login(&server, "ann", "ann-pw-1", "").await;
    let set = reply.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.ends_with("; Secure"), "--cookie-secure: {set}");
    let cookie = session_cookie(&reply);
    let prompt = json!({"prompt": common::empty_image_prompt(8, 8, 0, "csrf")});
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let reply = client()
            .post(format!("{}/ann/api/prompt", server.url))
            .header(COOKIE, &cookie)
            .header(name, value)
            .json(&prompt)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 403, "{name}: {value}");
    }
    let same_origin = client()
        .post(format!("{}/ann/api/prompt", server.url))
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "same-origin")
        .json(&prompt)
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 200);
}
