//! Auth and request hygiene against a real `comfyrs serve`: every admin route refuses
//! participants (403) and strangers (401) on the embedded queue, ComfyUI's origin guard refuses
//! cross-site requests, and neither passwords nor credentials ever reach the server's log.

mod common;

use base64::Engine as _;
use common::{Server, ServerOptions, TestUser};
use serde_json::{Value, json};

fn workshop(env: Vec<(String, String)>) -> Server {
    Server::start(ServerOptions {
        users: vec![
            TestUser::participant("ann", "ann-secret-pw-1"),
            TestUser::admin("teacher", "teacher-secret-pw-2"),
        ],
        dev_nodes: true,
        env,
        ..ServerOptions::default()
    })
}

/// Every route that is the instructor's (`require_admin` in server/src/routes/).
fn admin_routes(job: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    let mut routes = vec![
        (Method::GET, "/admin".to_string(), None),
        (Method::GET, "/admin/".into(), None),
        (Method::GET, "/admin/admin.js".into(), None),
        (Method::GET, "/admin/admin.css".into(), None),
        (Method::GET, "/api/admin/overview".into(), None),
        (Method::GET, "/api/admin/events".into(), None),
        (Method::GET, "/metrics".into(), None),
        (Method::GET, "/health".into(), None),
        (Method::GET, "/internal/logs".into(), None),
        (Method::GET, "/internal/logs/raw".into(), None),
        (Method::GET, "/api/queue/status".into(), None),
        (Method::GET, "/api/queue/policy".into(), None),
        (
            Method::PUT,
            "/api/queue/policy".into(),
            Some(json!({"policy": "fifo"})),
        ),
        (
            Method::POST,
            "/api/queue/policy".into(),
            Some(json!({"policy": "fifo"})),
        ),
        (Method::POST, "/api/queue/pause".into(), None),
        (Method::POST, "/api/queue/resume".into(), None),
        (Method::GET, "/api/workers".into(), None),
        (
            Method::PATCH,
            format!("/api/jobs/{job}/priority"),
            Some(json!({"priority": 5})),
        ),
        (Method::POST, format!("/api/jobs/{job}/prioritize"), None),
    ];
    for prefix in ["", "/api"] {
        routes.push((
            Method::POST,
            format!("{prefix}/free"),
            Some(json!({"unload_models": true})),
        ));
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_participants_and_strangers() {
    let server = workshop(vec![]);
    let ann = server.http_as("ann");
    let teacher = server.http_as("teacher");
    let stranger = server.api();
    let job = ann
        .queue("", &common::empty_image_prompt(8, 8, 0, "x"), None)
        .await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    for (method, path, body) in admin_routes(&job) {
        let with_body = |api: &common::Api| {
            let builder = api.request(method.clone(), &path);
            match &body {
                Some(b) => builder.json(b),
                None => builder,
            }
        };
        let reply = ann.send(with_body(&ann)).await;
        assert_eq!(reply.status, 403, "participant on {method} {path}");
        // Through the participant's own workspace prefix too.
        let prefixed = ann
            .send({
                let builder = ann.request(method.clone(), &format!("/ann{path}"));
                match &body {
                    Some(b) => builder.json(b),
                    None => builder,
                }
            })
            .await;
        assert!(
            prefixed.status == 403 || prefixed.status == 404,
            "participant on {method} /ann{path}: {}",
            prefixed.status
        );
        let reply = stranger.send(with_body(&stranger)).await;
        assert_eq!(reply.status, 401, "stranger on {method} {path}");
    }
    // The instructor reaches them (the event stream is left out: it never ends).
    for (method, path, body) in admin_routes(&job) {
        if path.ends_with("/events") {
            continue;
        }
        let builder = teacher.request(method.clone(), &path);
        let builder = match &body {
            Some(b) => builder.json(b),
            None => builder,
        };
        let reply = teacher.send(builder).await;
        assert!(
            reply.status != 401 && reply.status != 403,
            "admin on {method} {path}: {} {}",
            reply.status,
            reply.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused() {
    let server = Server::start(ServerOptions::default());
    let http = server.http();
    let host = format!("127.0.0.1:{}", server.port);
    let get = |origin: Option<&str>, site: Option<&str>| {
        let mut builder = http.get(server.at("/prompt")).header("host", &host);
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        if let Some(site) = site {
            builder = builder.header("sec-fetch-site", site);
        }
        builder.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // A page on another site (DNS rebinding, a malicious tab) may not drive the local server.
    assert_eq!(
        status(get(Some("http://evil.example"), None).await.unwrap()),
        403
    );
    assert_eq!(
        status(get(Some("http://localhost:9999"), None).await.unwrap()),
        403
    );
    assert_eq!(status(get(None, Some("cross-site")).await.unwrap()), 403);
    let post = http
        .post(server.at("/prompt"))
        .header("host", &host)
        .header("origin", "http://evil.example")
        .json(&json!({"prompt": common::empty_image_prompt(8, 8, 0, "x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status().as_u16(),
        403,
        "a cross-site prompt is refused"
    );
    // The server's own pages, and clients that send no Origin, are served.
    let own = format!("http://{host}");
    assert_eq!(
        status(get(Some(&own), Some("same-origin")).await.unwrap()),
        200
    );
    assert_eq!(status(get(None, None).await.unwrap()), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_credentials_never_reach_the_log() {
    let server = workshop(vec![(
        "RUST_LOG".into(),
        "debug,tower_http=trace,hyper=info,h2=info".into(),
    )]);
    let ann = server.http_as("ann");
    ann.queue("", &common::empty_image_prompt(8, 8, 0, "x"), None)
        .await;
    // A wrong password, a password in the URL's user info and in the query, a WebSocket.
    let mut wrong = server.http_as("ann");
    wrong.auth = Some(("ann".into(), "guessed-wrong-pw-3".into()));
    assert_eq!(wrong.get("/prompt").await.status, 401);
    let in_url = format!(
        "http://ann:ann-secret-pw-1@127.0.0.1:{}/prompt?token=query-secret-4",
        server.port
    );
    let reply = server.http().get(&in_url).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let mut ws = ann.ws("", Some("log-check")).await;
    ws.next_json(std::time::Duration::from_secs(10))
        .await
        .expect("status");
    server.http_as("teacher").get("/api/admin/overview").await;
    let log = server.log();
    assert!(log.contains("failed login"), "the failed login is logged");
    let token = |user: &str, pw: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    };
    for secret in [
        "ann-secret-pw-1".to_string(),
        "teacher-secret-pw-2".into(),
        "guessed-wrong-pw-3".into(),
        "query-secret-4".into(),
        token("ann", "ann-secret-pw-1"),
        token("ann", "guessed-wrong-pw-3"),
        token("teacher", "teacher-secret-pw-2"),
        "$argon2".into(),
    ] {
        assert!(!log.contains(&secret), "the log has {secret:?}:\n{log}");
    }
}
