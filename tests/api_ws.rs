//! `/ws?clientId=` against the real ComfyUI: the connect handshake and the message sequences of
//! `tests/fixtures/comfy_peer/ws_sequences.json` (a fresh run, an identical re-run served from
//! cache, one widget changed, a run-time error, an interrupt, a prompt without `client_id`),
//! each followed by its history entry; plus binary preview frames in both of ComfyUI's layouts
//! and the on-connect `executing` replay for the owner of the running prompt.

mod common;

use std::time::Duration;

use common::ws::{Frame, binary_type, is_done};
use common::{Api, Rules, Server, ServerOptions, WsClient, assert_json_matches, case, fixture};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_millis(300);

/// A frame as the fixture records it: JSON as is, binary as `{binary_type, length}`.
fn recorded(frame: &Frame) -> Value {
    match frame {
        Frame::Json(v) => v.clone(),
        Frame::Binary(b) => json!({"binary_type": binary_type(b), "length": b.len()}),
    }
}

/// The non-`status` messages (`status` is a broadcast whose count and placement depend on
/// timing: ComfyUI sends one per queue change, we coalesce bursts).
fn without_status(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] != "status")
        .cloned()
        .collect()
}

/// History `status.messages` as bare event names (the fork's form; upstream keeps pairs).
fn message_names(entry: &Value) -> Vec<String> {
    entry["status"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| match m {
            Value::String(s) => s.split(':').next().unwrap_or("").to_string(),
            other => other[0].as_str().expect("event name").to_string(),
        })
        .collect()
}

/// Runs a case's request with our socket connected and compares the sequence and history.
async fn replay(api: &Api, ws: &mut WsClient, file: &Value, name: &str) -> Vec<Value> {
    let case = case(file, name);
    let body = &case["request"]["json"];
    let prompt_id = body["prompt_id"].as_str().expect("prompt_id");
    let reply = api.post("/prompt", body).await;
    assert_eq!(reply.status, 200, "{name}: {}", reply.json);
    let frames: Vec<Value> = if body.get("client_id").is_some() {
        ws.until(WAIT, |f| is_done(f, prompt_id))
            .await
            .iter()
            .map(recorded)
            .collect()
    } else {
        // Without client_id there is no `executing null` to wait for: wait for as many
        // messages as ComfyUI sent, then for any extra.
        let want = without_status(case["messages"].as_array().expect("messages")).len();
        let mut seen = 0;
        let mut frames = ws
            .until(WAIT, |f| {
                seen += usize::from(f.kind() != "status");
                seen == want
            })
            .await;
        frames.extend(ws.drain(QUIET).await);
        api.wait_history("", prompt_id).await;
        frames.iter().map(recorded).collect()
    };
    // `status` broadcasts are coalesced and may trail the run's last message on a busy
    // machine: wait for the one that reports the emptied queue.
    let mut frames = frames;
    if !last_status_empty(&frames) {
        let more = ws.until(WAIT, |f| f.json().is_some_and(status_empty)).await;
        frames.extend(more.iter().map(recorded));
    }
    // Python's exception classes (`PIL.UnidentifiedImageError`) have no equivalent here.
    let rules = Rules::from_fixture(file)
        .keeping(&["prompt_id"])
        .masking(&["exception_type"]);
    let expected = case["messages"].as_array().expect("messages");
    assert_json_matches(
        &format!("{name}: WebSocket messages"),
        &json!(without_status(&frames)),
        &json!(without_status(expected)),
        &rules,
    );
    check_status_counts(name, &frames);
    let history = api.get(&format!("/history/{prompt_id}")).await.json;
    let entry = &history[prompt_id];
    let expected_entry = &case["history"][prompt_id];
    assert_eq!(
        message_names(entry),
        message_names(expected_entry),
        "{name}: history messages"
    );
    let mut entry = entry.clone();
    let mut expected_entry = expected_entry.clone();
    for e in [&mut entry, &mut expected_entry] {
        e["status"]["messages"] = json!("<checked above>");
        e["prompt"][0] = json!("<number>");
    }
    assert_json_matches(&format!("{name}: history"), &entry, &expected_entry, &rules);
    frames
}

/// Whether a message is a `status` reporting an empty queue.
fn status_empty(v: &Value) -> bool {
    v["type"] == "status" && v["data"]["status"]["exec_info"]["queue_remaining"] == 0
}

/// Whether the last `status` among `frames` reports an empty queue.
fn last_status_empty(frames: &[Value]) -> bool {
    frames
        .iter()
        .rev()
        .find(|f| f["type"] == "status")
        .is_some_and(status_empty)
}

/// The last `status` of a finished run reports an empty queue.
fn check_status_counts(name: &str, frames: &[Value]) {
    let statuses: Vec<&Value> = frames.iter().filter(|f| f["type"] == "status").collect();
    let last = statuses
        .last()
        .unwrap_or_else(|| panic!("{name}: no status message"));
    assert_eq!(
        last["data"]["status"]["exec_info"]["queue_remaining"], 0,
        "{name}: final status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sends_status_with_sid_and_answers_feature_flags() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    let file = fixture("ws_sequences.json");
    let rules = Rules::from_fixture(&file);
    let connect = case(&file, "connect");
    let client_id = file["client_id"].as_str().expect("client_id");
    let mut ws = api.ws("", Some(client_id)).await;
    let first = ws.next_json(WAIT).await.expect("status on connect");
    assert_eq!(
        first["data"]["sid"], client_id,
        "the clientId is kept as sid"
    );
    assert_json_matches(
        "on connect",
        &json!([first]),
        &connect["messages_on_connect"],
        &rules,
    );
    ws.send_json(&connect["sent"]).await;
    let reply = ws.next_json(WAIT).await.expect("feature_flags reply");
    assert_eq!(reply["type"], "feature_flags");
    let flags = &reply["data"];
    let expected = &connect["messages_after_feature_flags"][0]["data"];
    assert_eq!(flags["supports_preview_metadata"], true);
    assert_eq!(flags["max_upload_size"], expected["max_upload_size"]);
    assert!(flags["extension"]["manager"].is_object());
    // Upstream adds these two (the fork does not); we offer neither feature.
    assert_eq!(flags["assets"], false);
    assert_eq!(flags["node_replacements"], false);

    let mut anonymous = api.ws("", None).await;
    let status = anonymous.next_json(WAIT).await.expect("status");
    let sid = status["data"]["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 32, "a new sid is uuid4().hex");
    assert!(sid.chars().all(|c| c.is_ascii_hexdigit()));
    // Only the first message may negotiate; later ones are ignored.
    anonymous
        .send_json(&json!({"type": "hello", "data": {}}))
        .await;
    anonymous.send_json(&connect["sent"]).await;
    assert!(
        anonymous.next(QUIET).await.is_none(),
        "no reply after the first message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sequences_match_comfyui() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    let file = fixture("ws_sequences.json");
    let client_id = file["client_id"].as_str().expect("client_id");
    let mut ws = api.ws("", Some(client_id)).await;
    ws.next_json(WAIT).await.expect("status");
    for name in ["fresh", "identical_again", "one_widget_changed"] {
        replay(&api, &mut ws, &file, name).await;
    }
    // A corrupt file in input/ passes validation (it exists) and fails when loaded.
    let upload = &case(&file, "execution_error")["setup_upload"];
    let reply = api
        .upload(
            "/upload/image",
            "corrupt.png",
            b"this is not a png file".to_vec(),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json, upload["response"]);
    let frames = replay(&api, &mut ws, &file, "execution_error").await;
    let error = frames
        .iter()
        .find(|f| f["type"] == "execution_error")
        .expect("execution_error");
    for key in ["exception_message", "exception_type"] {
        assert!(error["data"][key].is_string(), "{key}");
    }
    assert!(error["data"]["traceback"].is_array());

    // A prompt without client_id: the owner's other sockets see only progress_state.
    let mut other = api.ws("", Some("another-socket")).await;
    other.next_json(WAIT).await.expect("status");
    replay(&api, &mut other, &file, "no_client_id").await;
    assert!(
        ws.drain(QUIET)
            .await
            .iter()
            .all(|f| f.kind() == "status" || f.kind() == "progress_state"),
        "the first socket too sees no per-node events"
    );
}

/// A `DevWorkload` prompt sending a PNG preview with each of its `steps` progress steps.
fn preview_prompt(steps: u32, seed: u32, ms: u32) -> Value {
    json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": steps, "seed": seed, "preview": true}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    })
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_use_comfyuis_binary_layouts() {
    let server = Server::start(ServerOptions {
        dev_nodes: true,
        ..ServerOptions::default()
    });
    let api = server.api();
    // The frontend negotiates `supports_preview_metadata` and gets type-4 frames.
    let mut frontend = api.ws("", Some("frontend")).await;
    frontend.next_json(WAIT).await.expect("status");
    frontend
        .send_json(&json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}))
        .await;
    assert_eq!(
        frontend.next_json(WAIT).await.expect("flags")["type"],
        "feature_flags"
    );
    let queued = api
        .queue("", &preview_prompt(4, 1, 40), Some("frontend"))
        .await;
    let id = queued["prompt_id"].as_str().expect("id");
    let frames = frontend.until(WAIT, |f| is_done(f, id)).await;
    let previews: Vec<&Vec<u8>> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Binary(b) => Some(b),
            Frame::Json(_) => None,
        })
        .collect();
    assert_eq!(previews.len(), 4, "one preview per step");
    for frame in &previews {
        assert_eq!(binary_type(frame), 4, "PREVIEW_IMAGE_WITH_METADATA");
        let len = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        let meta: Value = serde_json::from_slice(&frame[8..8 + len]).expect("metadata JSON");
        assert_eq!(
            meta,
            json!({"node_id": "1", "prompt_id": id, "display_node_id": "1", "parent_node_id": null,
                   "real_node_id": "1", "image_type": "image/png"})
        );
        assert!(frame[8 + len..].starts_with(PNG_SIGNATURE));
    }
    let progress: Vec<&Value> = frames
        .iter()
        .filter_map(Frame::json)
        .filter(|v| v["type"] == "progress")
        .collect();
    assert_eq!(progress.len(), 4);
    assert_json_matches(
        "progress",
        &progress[3]["data"],
        &json!({"value": 4, "max": 4, "prompt_id": id, "node": "1"}),
        &Rules::default(),
    );

    // An API client without the flag gets the classic 8-byte header: [1][2 = PNG][image].
    let mut script = api.ws("", Some("script")).await;
    script.next_json(WAIT).await.expect("status");
    let queued = api
        .queue("", &preview_prompt(2, 2, 20), Some("script"))
        .await;
    let id = queued["prompt_id"].as_str().expect("id");
    let frames = script.until(WAIT, |f| is_done(f, id)).await;
    let previews: Vec<&Frame> = frames.iter().filter(|f| f.json().is_none()).collect();
    assert_eq!(previews.len(), 2);
    for frame in previews {
        let Frame::Binary(b) = frame else {
            unreachable!()
        };
        assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
        assert!(b[8..].starts_with(PNG_SIGNATURE));
    }
    // Neither socket saw the other's prompt.
    assert!(
        frontend
            .drain(QUIET)
            .await
            .iter()
            .all(|f| f.kind() == "status")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_owner_is_told_the_running_node() {
    let server = Server::start(ServerOptions {
        dev_nodes: true,
        ..ServerOptions::default()
    });
    let api = server.api();
    let mut owner = api.ws("", Some("owner")).await;
    owner.next_json(WAIT).await.expect("status");
    let prompt = json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": 30000, "steps": 300, "seed": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    });
    let id = api.queue("", &prompt, Some("owner")).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    owner
        .until(WAIT, |f| {
            f.json()
                .is_some_and(|v| v["type"] == "executing" && v["data"]["node"] == "1")
        })
        .await;
    owner.close().await;
    let mut again = api.ws("", Some("owner")).await;
    let status = again.next_json(WAIT).await.expect("status");
    assert_eq!(status["data"]["sid"], "owner");
    assert_eq!(status["data"]["status"]["exec_info"]["queue_remaining"], 1);
    let replay = again.next_json(WAIT).await.expect("executing replay");
    assert_eq!(replay, json!({"type": "executing", "data": {"node": "1"}}));
    let mut other = api.ws("", Some("someone-else")).await;
    other.next_json(WAIT).await.expect("status");
    let next = other.next_json(QUIET).await;
    assert!(
        next.as_ref().is_none_or(|v| v["type"] != "executing"),
        "only the owner gets the replay: {next:?}"
    );
    api.post("/interrupt", &json!({"prompt_id": id})).await;
    again.until(WAIT, |f| is_done(f, &id)).await;
    let mut after = api.ws("", Some("owner")).await;
    after.next_json(WAIT).await.expect("status");
    let next = after.next_json(QUIET).await;
    assert!(
        next.as_ref().is_none_or(|v| v["type"] != "executing"),
        "no replay once the prompt finished: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_sequence_matches_comfyui() {
    let server = Server::start(ServerOptions {
        dev_nodes: true,
        ..ServerOptions::default()
    });
    let api = server.api();
    let file = fixture("ws_sequences.json");
    let captured = case(&file, "interrupt");
    let client_id = file["client_id"].as_str().expect("client_id");
    let mut ws = api.ws("", Some(client_id)).await;
    ws.next_json(WAIT).await.expect("status");
    // ComfyUI's capture interrupted a slow resize between nodes; a DevWorkload node checks for
    // interruption at each step, as ComfyUI's samplers do.
    let prompt = json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": 30000, "steps": 300, "seed": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ws/slow"}},
    });
    let id = api.queue("", &prompt, Some(client_id)).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut frames = ws
        .until(WAIT, |f| {
            f.json()
                .is_some_and(|v| v["type"] == "executing" && v["data"]["node"] == "1")
        })
        .await;
    // The captured request names another prompt: no effect on ours.
    let reply = api
        .post("/interrupt", &captured["interrupt"]["request"]["json"])
        .await;
    assert_eq!(reply.status, 200);
    let meanwhile = ws.collect_for(QUIET).await;
    assert!(
        meanwhile
            .iter()
            .all(|f| f.kind() != "execution_interrupted"),
        "an interrupt naming another prompt stops nothing"
    );
    frames.extend(meanwhile);
    let reply = api.post("/interrupt", &json!({"prompt_id": id})).await;
    assert_eq!(reply.status, 200);
    frames.extend(ws.until(WAIT, |f| is_done(f, &id)).await);
    let lifecycle = |frames: Vec<Value>| -> Vec<String> {
        frames
            .iter()
            .map(|f| f["type"].as_str().unwrap_or("").to_string())
            .filter(|t| t.starts_with("execution_"))
            .collect()
    };
    let ours: Vec<Value> = frames.iter().map(recorded).collect();
    let expected = captured["messages"].as_array().expect("messages").clone();
    assert_eq!(lifecycle(ours.clone()), lifecycle(expected.clone()));
    let tail = |frames: &[Value]| -> Vec<Value> {
        without_status(frames)
            .into_iter()
            .filter(|f| f["type"] != "progress_state" && f["type"] != "progress")
            .rev()
            .take(2)
            .collect()
    };
    let rules = Rules::from_fixture(&file)
        .keeping(&["prompt_id"])
        .masking(&["prompt_id", "node_id", "node_type", "executed"]);
    assert_json_matches(
        "interrupt tail",
        &json!(tail(&ours)),
        &json!(tail(&expected)),
        &rules,
    );
    let stopped = ours
        .iter()
        .find(|f| f["type"] == "execution_interrupted")
        .expect("execution_interrupted");
    assert_eq!(
        stopped["data"],
        json!({"prompt_id": id, "node_id": "1", "node_type": "DevWorkload", "executed": [],
               "timestamp": stopped["data"]["timestamp"]})
    );
    assert!(
        !ours.iter().any(|f| f["type"] == "executed"),
        "nothing was saved"
    );
    let entry = api.wait_history("", &id).await;
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);
    assert_eq!(entry["outputs"], json!({}));
}
