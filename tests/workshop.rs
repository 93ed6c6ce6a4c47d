//! Workshop mode (`--users`): HTTP basic authentication, one workspace per user at `/<user>/`,
//! identity from the path and the credentials (never from a header), nobody reads another
//! user's history, jobs, queue, outputs, inputs or userdata, WebSocket events reach only the
//! owner's sockets, the admin sees everything, and a shared folder of workflows appears in
//! every user's workflow list.

mod common;

use std::time::Duration;

use common::ws::is_done;
use common::{Api, Server, ServerOptions, TestUser, WsClient};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_millis(400);

fn workshop(extra: Vec<String>) -> Server {
    Server::start(ServerOptions {
        users: vec![
            TestUser::participant("user001", "pw-one"),
            TestUser::participant("user002", "pw-two"),
            TestUser::admin("teacher", "pw-admin"),
        ],
        dev_nodes: true,
        args: extra,
        ..ServerOptions::default()
    })
}

fn slow_prompt(ms: u32) -> Value {
    json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": ms / 10, "seed": 3}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "slow"}},
    })
}

/// Queues EmptyImage -> SaveImage in a workspace for the socket `client`; returns the prompt
/// id and the saved file's name.
async fn make_output(api: &Api, ws: &mut WsClient, prefix: &str, client: &str) -> (String, String) {
    let prompt = common::empty_image_prompt(24, 16, 0x00ff00, "mine/secret");
    let id = api.queue(prefix, &prompt, Some(client)).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    ws.until(WAIT, |f| is_done(f, &id)).await;
    let entry = api.wait_history(prefix, &id).await;
    let file = entry["outputs"]["2"]["images"][0]["filename"]
        .as_str()
        .expect("filename")
        .to_string();
    (id, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_workspace_paths() {
    let server = workshop(vec![]);
    let anonymous = server.api();
    let reply = anonymous.get("/user001/").await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    let mut wrong = server.http_as("user001");
    wrong.auth = Some(("user001".into(), "nope".into()));
    assert_eq!(wrong.get("/user001/api/features").await.status, 401);
    assert_eq!(anonymous.get("/api/jobs").await.status, 401);
    assert!(
        WsClient::try_connect(&server.url, "/user001/ws", None)
            .await
            .is_err(),
        "no socket without credentials"
    );

    let one = server.http_as("user001");
    let reply = one.get("/user001").await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("/user001/"));
    let reply = one.get("/user001?x=1").await;
    assert_eq!(reply.header("location"), Some("/user001/?x=1"));
    let reply = one.get("/").await;
    assert!(matches!(reply.status, 302 | 303 | 307), "{}", reply.status);
    assert_eq!(reply.header("location"), Some("/user001/"));
    assert_eq!(one.get("/user001/api/features").await.status, 200);
    assert_eq!(one.get("/user001/features").await.status, 200);
    for path in [
        "/user002/",
        "/user002/api/jobs",
        "/user002/history",
        "/user002/api/userdata?dir=workflows",
    ] {
        assert_eq!(one.get(path).await.status, 403, "user001 GET {path}");
    }
    assert!(
        WsClient::try_connect(&server.url, "/user002/ws", Some(("user001", "pw-one")))
            .await
            .is_err(),
        "no socket in another user's workspace"
    );
    let users = one.get("/user001/api/users").await;
    assert!(
        users.json.get("users").is_none(),
        "no user-select screen: {}",
        users.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_user_cannot_see_the_first_users_work() {
    let server = workshop(vec![]);
    let one = server.http_as("user001");
    let two = server.http_as("user002");
    let mut ws_one = one.ws("/user001", Some("same-client-id")).await;
    ws_one.next_json(WAIT).await.expect("status");
    // The second user even picks the same client id.
    let mut ws_two = two.ws("/user002", Some("same-client-id")).await;
    ws_two.next_json(WAIT).await.expect("status");

    let (id, file) = make_output(&one, &mut ws_one, "/user001", "same-client-id").await;
    let own = one
        .get(&format!(
            "/user001/api/view?filename={file}&subfolder=mine&type=output"
        ))
        .await;
    assert_eq!(own.status, 200);
    assert!(own.bytes.starts_with(b"\x89PNG"));
    let frames = ws_two.drain(QUIET).await;
    assert!(
        frames.iter().all(|f| f.kind() == "status"),
        "user002's socket saw {:?}",
        frames.iter().map(|f| f.kind()).collect::<Vec<_>>()
    );
    for frame in &frames {
        assert_eq!(
            frame.json().expect("json")["data"]["status"]["exec_info"]["queue_remaining"],
            0
        );
    }

    for prefix in ["/user002", ""] {
        let history = two.get(&format!("{prefix}/history")).await;
        assert_eq!(history.json, json!({}), "{prefix}/history");
        assert_eq!(
            two.get(&format!("{prefix}/history/{id}")).await.json,
            json!({})
        );
        let jobs = two.get(&format!("{prefix}/api/jobs")).await;
        assert_eq!(jobs.json["jobs"], json!([]), "{prefix}/api/jobs");
        assert_eq!(
            two.get(&format!("{prefix}/api/jobs/{id}")).await.status,
            404
        );
        let view = two
            .get(&format!(
                "{prefix}/api/view?filename={file}&subfolder=mine&type=output"
            ))
            .await;
        assert_eq!(view.status, 404, "{prefix}/api/view of user001's output");
        let files = two.get(&format!("{prefix}/internal/files/output")).await;
        assert_eq!(files.json, json!([]));
    }
    let direct = two
        .get(&format!(
            "/user001/api/view?filename={file}&subfolder=mine&type=output"
        ))
        .await;
    assert_eq!(direct.status, 403);
    // A header naming the other user changes nothing.
    let spoofed = two
        .send(
            two.request(reqwest::Method::GET, "/api/jobs")
                .header("Comfy-User", "user001"),
        )
        .await;
    assert_eq!(spoofed.json["jobs"], json!([]));
    let cancel = two
        .post(&format!("/user002/api/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.json, json!({"cancelled": false}));
    two.post("/user002/history", &json!({"delete": [id]})).await;
    two.post("/user002/history", &json!({"clear": true})).await;
    assert!(
        one.get(&format!("/user001/history/{id}"))
            .await
            .json
            .get(&id)
            .is_some(),
        "still there"
    );

    // Uploads and userdata.
    let up = one
        .upload(
            "/user001/api/upload/image",
            "private.png",
            b"one".to_vec(),
            &[],
        )
        .await;
    assert_eq!(up.status, 200);
    assert_eq!(
        two.get("/user002/internal/files/input").await.json,
        json!([])
    );
    assert_eq!(
        two.get("/user002/api/view?filename=private.png&type=input")
            .await
            .status,
        404
    );
    let saved = one
        .post_raw(
            "/user001/api/userdata/workflows%2Fmine.json?overwrite=true&full_info=true",
            "{\"nodes\": []}",
        )
        .await;
    assert_eq!(saved.status, 200);
    one.post("/user001/api/settings/Comfy.Secret", &json!("one"))
        .await;
    assert_eq!(
        two.get("/user002/api/userdata/workflows%2Fmine.json")
            .await
            .status,
        404
    );
    assert_eq!(
        two.get("/user002/api/userdata?dir=workflows").await.status,
        404
    );
    assert_eq!(
        two.get("/user002/api/settings/Comfy.Secret").await.json,
        Value::Null
    );
    assert_eq!(two.get("/user002/api/v2/userdata").await.json, json!([]));
    assert_eq!(
        one.get("/user001/api/settings/Comfy.Secret").await.json,
        "one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_controls_are_scoped_to_the_owner() {
    let server = workshop(vec![]);
    let one = server.http_as("user001");
    let two = server.http_as("user002");
    let mut ws_one = one.ws("/user001", Some("c1")).await;
    ws_one.next_json(WAIT).await.expect("status");
    let running = one
        .queue("/user001", &slow_prompt(20_000), Some("c1"))
        .await;
    let running = running["prompt_id"].as_str().expect("id").to_string();
    ws_one
        .until(WAIT, |f| {
            f.json()
                .is_some_and(|v| v["type"] == "executing" && v["data"]["node"] == "1")
        })
        .await;
    let pending = one.queue("/user001", &slow_prompt(10), Some("c1")).await;
    let pending = pending["prompt_id"].as_str().expect("id").to_string();

    assert_eq!(
        two.get("/user002/prompt").await.json["exec_info"]["queue_remaining"],
        0
    );
    assert_eq!(
        one.get("/user001/prompt").await.json["exec_info"]["queue_remaining"],
        2
    );
    let queue = two.get("/user002/queue").await.json;
    assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
    two.post("/user002/interrupt", &json!({})).await;
    two.post("/user002/queue", &json!({"delete": [pending]}))
        .await;
    two.post("/user002/queue", &json!({"clear": true})).await;
    let cancel = two
        .post(
            "/user002/api/jobs/cancel",
            &json!({"job_ids": [running, pending]}),
        )
        .await;
    assert_eq!(cancel.json, json!({"cancelled": false}));
    let queue = one.get("/user001/queue").await.json;
    assert_eq!(
        queue["queue_running"][0][1],
        running.as_str(),
        "still running"
    );
    assert_eq!(
        queue["queue_pending"][0][1],
        pending.as_str(),
        "still pending"
    );

    // The admin sees and controls everything.
    let admin = server.http_as("teacher");
    let jobs = admin.get("/api/jobs?status=in_progress,pending").await;
    let ids: Vec<&str> = jobs.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert!(
        ids.contains(&running.as_str()) && ids.contains(&pending.as_str()),
        "{ids:?}"
    );
    assert_eq!(jobs.json["jobs"][0]["user"], "user001");
    assert_eq!(
        admin.get("/user001/queue").await.json["queue_pending"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let cancel = admin
        .post(&format!("/api/jobs/{running}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.json, json!({"cancelled": true}));
    ws_one.until(WAIT, |f| is_done(f, &running)).await;
    ws_one.until(WAIT, |f| is_done(f, &pending)).await;
    let history = admin.get("/history").await.json;
    assert!(history.get(&running).is_some() && history.get(&pending).is_some());
    assert_eq!(
        two.get("/api/queue/status").await.status,
        403,
        "admin routes"
    );
    assert_eq!(admin.get("/api/queue/status").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_any_workspace_and_prompts_without_client_reach_only_the_owner() {
    let server = workshop(vec![]);
    let one = server.http_as("user001");
    let admin = server.http_as("teacher");
    let mut ws_one = one.ws("/user001", Some("x")).await;
    ws_one.next_json(WAIT).await.expect("status");
    let mut ws_admin = admin.ws("", Some("x")).await;
    ws_admin.next_json(WAIT).await.expect("status");
    let (id, file) = make_output(&one, &mut ws_one, "/user001", "x").await;
    let view = admin
        .get(&format!(
            "/user001/api/view?filename={file}&subfolder=mine&type=output"
        ))
        .await;
    assert_eq!(view.status, 200);
    assert!(
        admin
            .get(&format!("/user001/history/{id}"))
            .await
            .json
            .get(&id)
            .is_some()
    );
    assert!(
        ws_admin
            .drain(QUIET)
            .await
            .iter()
            .all(|f| f.kind() == "status"),
        "even the admin's socket gets only the owner's job events it submitted"
    );

    // No client id: ComfyUI broadcasts progress_state; here only to the owner's sockets.
    let two = server.http_as("user002");
    let mut ws_two = two.ws("/user002", None).await;
    ws_two.next_json(WAIT).await.expect("status");
    let queued = one
        .queue(
            "/user001",
            &common::empty_image_prompt(8, 8, 1, "anon"),
            None,
        )
        .await;
    one.wait_history("/user001", queued["prompt_id"].as_str().expect("id"))
        .await;
    let owner_frames = ws_one.drain(QUIET).await;
    assert!(owner_frames.iter().any(|f| f.kind() == "progress_state"));
    assert!(
        ws_two
            .drain(QUIET)
            .await
            .iter()
            .all(|f| f.kind() == "status")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_workflows_appear_in_every_users_list() {
    let shared = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(shared.path().join("ltx")).expect("dir");
    std::fs::write(
        shared.path().join("intro.json"),
        r#"{"nodes": [], "links": [], "extra": {}}"#,
    )
    .expect("write");
    std::fs::write(shared.path().join("ltx/t2v.json"), r#"{"nodes": []}"#).expect("write");
    let server = workshop(vec![
        "--workshop-workflows".into(),
        shared.path().display().to_string(),
    ]);
    for (user, prefix) in [("user001", "/user001"), ("user002", "/user002")] {
        let api = server.http_as(user);
        let list = api
            .get(&format!(
                "{prefix}/api/userdata?dir=workflows&recurse=true&split=false&full_info=true"
            ))
            .await;
        assert_eq!(list.status, 200, "{user}");
        let mut paths: Vec<&str> = list
            .json
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        paths.sort();
        assert_eq!(paths, vec!["intro.json", "ltx/t2v.json"], "{user}");
        let file = api
            .get(&format!("{prefix}/api/userdata/workflows%2Fintro.json"))
            .await;
        assert_eq!(file.status, 200);
        assert_eq!(file.json["extra"], json!({}));
    }
    // A user's own copy takes precedence and stays theirs.
    let one = server.http_as("user001");
    one.post_raw(
        "/user001/api/userdata/workflows%2Fintro.json?overwrite=true",
        r#"{"mine": true}"#,
    )
    .await;
    assert_eq!(
        one.get("/user001/api/userdata/workflows%2Fintro.json")
            .await
            .json["mine"],
        true
    );
    let two = server.http_as("user002");
    assert!(
        two.get("/user002/api/userdata/workflows%2Fintro.json")
            .await
            .json
            .get("mine")
            .is_none()
    );
    assert!(
        std::fs::read_to_string(shared.path().join("intro.json"))
            .expect("read")
            .contains("extra")
    );
}
