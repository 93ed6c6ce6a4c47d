//! Per-user limits against a real `comfyrs serve` in workshop mode: queued jobs, prompt size and
//! node count, image/video sizes, output disk, the prompt rate, failed-login throttling and
//! WebSocket connections. Each refusal is ComfyUI's error shape with a clear message; the
//! instructor (admin) is not limited.

mod common;

use std::time::Duration;

use common::{Server, ServerOptions, TestUser, WsClient};
use serde_json::{Value, json};

fn workshop(extra: &[&str]) -> Server {
    Server::start(ServerOptions {
        users: vec![
            TestUser::participant("ann", "pw-ann"),
            TestUser::participant("bob", "pw-bob"),
            TestUser::admin("teacher", "pw-admin"),
        ],
        dev_nodes: true,
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOptions::default()
    })
}

/// Asserts ComfyUI's error shape with `kind`, and returns the details text.
fn refusal(reply: &common::api::Reply, status: u16, kind: &str) -> String {
    assert_eq!(reply.status, status, "{}", reply.json);
    let error = &reply.json["error"];
    assert_eq!(error["type"], kind, "{}", reply.json);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.json
    );
    assert!(error["extra_info"].is_object(), "{}", reply.json);
    assert_eq!(reply.json["node_errors"], json!({}), "{}", reply.json);
    error["details"].as_str().unwrap_or_default().to_string()
}

fn slow_prompt(ms: u32, seed: u32) -> Value {
    json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": 2, "seed": seed}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "slow"}},
    })
}

fn latent_video(width: u32, height: u32, length: u32, batch: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": width, "height": height, "length": length, "batch_size": batch}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_limits_refuse_participants_but_not_the_admin() {
    let server = workshop(&[
        "--max-dimension",
        "1024",
        "--max-frames",
        "121",
        "--max-batch",
        "2",
        "--max-prompt-nodes",
        "20",
        "--max-prompt-mb",
        "0.01",
    ]);
    let ann = server.http_as("ann");
    let teacher = server.http_as("teacher");

    ann.queue("", &latent_video(1024, 512, 121, 2), None).await;
    for (w, h, len, batch, input) in [
        (1056, 512, 121, 1, "width"),
        (512, 8192, 121, 1, "height"),
        (512, 512, 129, 1, "length"),
        (512, 512, 9, 3, "batch_size"),
    ] {
        let reply = ann
            .post(
                "/prompt",
                &json!({"prompt": latent_video(w, h, len, batch)}),
            )
            .await;
        let details = refusal(&reply, 400, "limit_exceeded");
        assert!(details.contains(input), "{details}");
        assert_eq!(reply.json["error"]["extra_info"]["input_name"], input);
    }
    // The instructor is not limited.
    teacher
        .queue("", &latent_video(1056, 512, 129, 3), None)
        .await;

    // Node count (everyone) and body size (participants).
    let mut many = serde_json::Map::new();
    for i in 0..21 {
        many.insert(
            i.to_string(),
            json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
        );
    }
    let reply = ann.post("/prompt", &json!({"prompt": many})).await;
    let details = refusal(&reply, 400, "invalid_prompt");
    assert!(details.contains("at most 20"), "{details}");
    let padding = "x".repeat(20_000);
    let big = json!({"prompt": latent_video(8, 8, 9, 1), "extra_data": {"pad": padding}});
    let reply = ann.post("/prompt", &big).await;
    let details = refusal(&reply, 413, "limit_exceeded");
    assert!(details.contains("at most"), "{details}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_and_prompt_rate_per_user() {
    let server = workshop(&["--max-pending-per-user", "2", "--prompts-per-minute", "5"]);
    let ann = server.http_as("ann");
    let bob = server.http_as("bob");
    // One runs, two wait: the next is refused until one finishes.
    let mut accepted = 0;
    let mut refused = None;
    for seed in 0..4 {
        let reply = ann
            .post("/prompt", &json!({"prompt": slow_prompt(3000, seed)}))
            .await;
        if reply.status == 200 {
            accepted += 1;
        } else {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("a prompt beyond the pending limit");
    let details = refusal(&reply, 429, "too_many_pending");
    assert!(details.contains("waiting"), "{details}");
    assert!(accepted >= 2, "accepted {accepted}");
    // Another user is not affected.
    bob.queue("", &slow_prompt(10, 1), None).await;

    // The rate: 5 prompts a minute per user, counting refused ones too (these have no
    // outputs, so they never queue and the pending limit stays out of the way).
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let reply = bob.post("/prompt", &json!({"prompt": {}})).await;
        statuses.push(reply.status);
        if reply.status == 429 && reply.json["error"]["type"] == "rate_limited" {
            let details = refusal(&reply, 429, "rate_limited");
            assert!(details.contains("5 prompts per minute"), "{details}");
            assert_eq!(statuses.len(), 5, "{statuses:?}");
            let retry: u64 = reply
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            assert!((1..=60).contains(&retry), "{retry}");
            return;
        }
    }
    panic!("bob was never rate limited: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_disk_quota_per_user() {
    let server = workshop(&["--max-output-gb", "0.0000001"]);
    let ann = server.http_as("ann");
    let prompt = common::empty_image_prompt(600, 400, 0x123456, "big");
    let id = ann.queue("", &prompt, None).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    ann.wait_history("", &id).await;
    let reply = ann.post("/prompt", &json!({"prompt": prompt})).await;
    let details = refusal(&reply, 400, "limit_exceeded");
    assert!(details.contains("outputs use"), "{details}");
    // Bob's quota is his own.
    server
        .http_as("bob")
        .queue("", &common::empty_image_prompt(8, 8, 0, "small"), None)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_user_and_address() {
    let server = workshop(&["--max-login-failures", "3", "--login-window", "60"]);
    let mut wrong = server.http_as("ann");
    wrong.auth = Some(("ann".into(), "not-her-password".into()));
    for _ in 0..3 {
        assert_eq!(wrong.get("/prompt").await.status, 401);
    }
    // Now even the right password waits: the name is throttled.
    let reply = server.http_as("ann").get("/prompt").await;
    let details = refusal(&reply, 429, "login_throttled");
    assert!(details.contains("3 failed logins"), "{details}");
    assert!(reply.header("retry-after").is_some());
    // The address is throttled too, whatever the name (all tests connect from 127.0.0.1).
    let reply = server.http_as("bob").get("/prompt").await;
    refusal(&reply, 429, "login_throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_per_user() {
    let server = workshop(&["--max-sockets-per-user", "2"]);
    let auth = Some(("ann", "pw-ann"));
    let mut open = Vec::new();
    for i in 0..2 {
        let path = format!("/ws?clientId=tab{i}");
        open.push(WsClient::connect(&server.url, &path, auth).await);
    }
    let err = WsClient::try_connect(&server.url, "/ws?clientId=tab2", auth)
        .await
        .err()
        .expect("a third socket is refused");
    assert!(err.contains("429"), "{err}");
    // Others are not affected, and closing one frees a slot.
    WsClient::connect(&server.url, "/ws?clientId=b", Some(("bob", "pw-bob"))).await;
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match WsClient::try_connect(&server.url, "/ws?clientId=tab3", auth).await {
            Ok(_) => break,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
