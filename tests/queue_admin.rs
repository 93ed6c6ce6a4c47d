//! The admin surface and event routing with the shared Redis queue and a remote worker process:
//! admin routes refuse participants (403) and strangers (401); a user sees only their own jobs;
//! progress from a worker on another process reaches the submitting user's WebSocket in
//! ComfyUI's format, and no other user's; `/metrics` speaks the Prometheus text format.

mod queue_common;

use std::time::Duration;

use queue_common::ws::Socket;
use queue_common::{
    Client, RedisServer, User, is_final, queue_flags, redis_ready, start_serve, start_worker,
    workload, write_users,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// `(method, path, body)` of every admin-only route.
fn admin_routes(job: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/queue/status".into(), None),
        ("GET", "/api/workers".into(), None),
        ("GET", "/health".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/admin".into(), None),
        ("GET", "/admin/admin.js".into(), None),
        ("GET", "/api/admin/overview".into(), None),
        ("GET", "/api/admin/events".into(), None),
        ("GET", "/api/queue/policy".into(), None),
        (
            "PUT",
            "/api/queue/policy".into(),
            Some(json!({"policy": "round_robin"})),
        ),
        ("POST", "/api/queue/pause".into(), None),
        ("POST", "/api/queue/resume".into(), None),
        (
            "PATCH",
            format!("/api/jobs/{job}/priority"),
            Some(json!({"priority": 5})),
        ),
        ("POST", format!("/api/jobs/{job}/prioritize"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_routes_events_and_visibility() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let (admin, ann, bob) = (
        User::admin(),
        User::participant("ann"),
        User::participant("bob"),
    );
    let users = write_users(base.path(), &[admin.clone(), ann.clone(), bob.clone()]);
    let mut flags = queue_flags();
    flags.extend([
        "--no-local-worker".into(),
        "--users".into(),
        users.display().to_string(),
    ]);
    let serve = start_serve(base.path(), Some(&redis.url()), &flags).await;
    let _worker = start_worker(base.path(), &redis.url(), "worker", &queue_flags());
    let as_admin = Client::new(&serve.url, Some(&admin));
    let as_ann = Client::new(&serve.url, Some(&ann));
    let as_bob = Client::new(&serve.url, Some(&bob));
    let stranger = Client::new(&serve.url, None);

    let mut ann_ws = Socket::connect(&serve.url, &ann, "ann-tab").await;
    let mut bob_ws = Socket::connect(&serve.url, &bob, "bob-tab").await;
    let job = as_ann
        .submit(workload(600, 6, 1, "ann"), Some("ann-tab"))
        .await;

    for (method, path, body) in admin_routes(&job) {
        let (status, reply) = as_ann.send(method, &path, body.clone()).await;
        assert_eq!(status, 403, "participant on {method} {path}: {reply}");
        let (status, _) = stranger.send(method, &path, body).await;
        assert_eq!(status, 401, "stranger on {method} {path}");
    }

    // Ann hears her job from the remote worker, in ComfyUI's messages; Bob hears none of it.
    let heard = ann_ws
        .until(LONG, |m| {
            m["type"] == "executing" && m["data"]["node"].is_null() && m["data"]["prompt_id"] == job
        })
        .await;
    let kinds: Vec<&str> = heard
        .iter()
        .filter(|m| m["data"]["prompt_id"] == job)
        .filter_map(|m| m["type"].as_str())
        .collect();
    for kind in [
        "execution_start",
        "executing",
        "progress",
        "executed",
        "execution_success",
    ] {
        assert!(kinds.contains(&kind), "ann missed {kind}: {kinds:?}");
    }
    let progress = heard
        .iter()
        .find(|m| m["type"] == "progress")
        .expect("a progress message");
    assert_eq!(progress["data"]["max"].as_f64(), Some(6.0));
    assert_eq!(progress["data"]["node"], "1");
    let bob_heard = bob_ws.collect(Duration::from_millis(500)).await;
    assert!(
        bob_heard
            .iter()
            .all(|m| m["data"]["prompt_id"] != job && !m.to_string().contains(&job)),
        "bob heard ann's job: {bob_heard:?}"
    );

    // Visibility: ann sees her job, bob does not; the admin sees everyone's.
    as_ann.wait_job(&job, LONG, is_final).await;
    let (status, _) = as_bob.send("GET", &format!("/api/jobs/{job}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(as_bob.get("/api/jobs").await["pagination"]["total"], 0);
    assert_eq!(as_ann.get("/api/jobs").await["pagination"]["total"], 1);
    let all = as_admin.get("/api/jobs").await;
    assert_eq!(all["jobs"][0]["user"], "ann");

    // The admin may do everything the participant could not.
    let pending = as_bob.submit(workload(100, 2, 2, "bob"), None).await;
    for (method, path, body) in admin_routes(&pending) {
        if path.ends_with("/events") {
            continue; // a stream: checked below
        }
        let (status, reply) = as_admin.send(method, &path, body).await;
        assert_eq!(status, 200, "admin on {method} {path}: {reply}");
    }
    let overview = as_admin.get("/api/admin/overview").await;
    assert_eq!(overview["policy"], "round_robin");
    assert!(
        overview["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user"] == "ann")
    );
    assert_eq!(overview["workers"].as_array().unwrap().len(), 1);

    // /metrics: Prometheus text with the figures the issue asks for.
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", serve.url))
        .basic_auth(&admin.name, Some(&admin.password))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "# TYPE comfyrs_queue_depth gauge",
        "comfyrs_jobs{state=\"completed\"}",
        "# TYPE comfyrs_job_wait_seconds histogram",
        "comfyrs_job_run_seconds_bucket{le=\"+Inf\"}",
        "comfyrs_workers{status=\"idle\"}",
        "comfyrs_worker_memory_used_bytes{worker=",
        "comfyrs_queue_policy{policy=\"round_robin\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    // /health names each component.
    let health = as_admin.get("/health").await;
    assert_eq!(health["components"]["queue"]["details"]["backend"], "redis");
    assert_eq!(
        health["components"]["queue"]["details"]["aof_enabled"],
        true
    );

    // The admin's event stream starts with `hello` and carries queue changes.
    let events = reqwest::Client::new()
        .get(format!("{}/api/admin/events", serve.url))
        .basic_auth(&admin.name, Some(&admin.password))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut events = events;
    as_bob.submit(workload(50, 1, 3, "bob"), None).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: changed") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: hello"), "{seen}");
}
