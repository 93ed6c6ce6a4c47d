//! Job ETAs in the jobs API and over the WebSocket: after a job of a shape has run, pending jobs
//! of that shape get `eta_start` / `eta_finish` from its run time, queued behind the running job
//! on the one local worker; their owner's sockets get the estimates inside `status` messages
//! (`exec_info.comfyrs_eta`, which the ComfyUI frontend ignores), and `comfyrs.eta` messages only
//! on a socket that asked for them in its `feature_flags` message.

mod common;

use std::time::Duration;

use common::server::{Server, ServerOptions};
use serde_json::{Value, json};

fn workload(ms: u64, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": 4, "seed": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

#[tokio::test]
async fn pending_jobs_get_etas_from_runs_of_their_shape() {
    let server = Server::start(ServerOptions {
        dev_nodes: true,
        ..ServerOptions::default()
    });
    let api = server.api();
    let first = api.queue("", &workload(300, "eta/first"), None).await;
    let first_id = first["prompt_id"].as_str().unwrap().to_string();
    api.wait_history("", &first_id).await;
    let done = api.get(&format!("/api/jobs/{first_id}")).await.json;
    let run_ms = done["run_ms"].as_i64().expect("run_ms of the finished job");
    assert!(
        done.get("eta_start").is_none(),
        "finished jobs have no ETA: {done}"
    );

    let mut ws = api.ws("", Some("eta-client")).await;
    let mut opted_in = api.ws("", Some("eta-client")).await;
    opted_in
        .send_json(&json!({"type": "feature_flags", "data": {"supports_preview_metadata": true, "comfyrs_eta": true}}))
        .await;
    let long = api
        .queue("", &workload(4000, "eta/long"), Some("eta-client"))
        .await;
    let long_id = long["prompt_id"].as_str().unwrap().to_string();
    ws.until(Duration::from_secs(30), |f| {
        f.json()
            .is_some_and(|v| v["type"] == "executing" && v["data"]["prompt_id"] == long_id.as_str())
    })
    .await;
    let next = api
        .queue("", &workload(300, "eta/next"), Some("eta-client"))
        .await;
    let next_id = next["prompt_id"].as_str().unwrap().to_string();
    let last = api
        .queue("", &workload(300, "eta/last"), Some("eta-client"))
        .await;
    let last_id = last["prompt_id"].as_str().unwrap().to_string();

    let item = api.get(&format!("/api/jobs/{next_id}")).await.json;
    assert_eq!(item["status"], "pending", "{item}");
    assert_eq!(item["eta_basis"]["kind"], "same_shape", "{item}");
    assert_eq!(item["eta_basis"]["samples"], 1, "{item}");
    let (start, finish) = (
        item["eta_start"].as_f64().unwrap(),
        item["eta_finish"].as_f64().unwrap(),
    );
    assert!(
        (finish - start - run_ms as f64 / 1000.0).abs() < 0.002,
        "{item}"
    );
    let list = api.get("/api/jobs?status=pending").await.json;
    let jobs = list["jobs"].as_array().unwrap();
    let last_item = jobs.iter().find(|j| j["id"] == last_id.as_str()).unwrap();
    assert!(
        (last_item["eta_start"].as_f64().unwrap() - finish).abs() < 0.002,
        "the last job starts when the one before it finishes: {list}"
    );
    let running = api.get(&format!("/api/jobs/{long_id}")).await.json;
    assert!(running.get("eta_start").is_none(), "{running}");

    // Every socket: the estimates ride in `status` messages, and no unknown message type comes.
    let has_last = |jobs: &Value| {
        jobs.as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["prompt_id"] == last_id.as_str()))
    };
    let frames = ws
        .until(Duration::from_secs(30), |f| {
            f.json().is_some_and(|v| {
                v["type"] == "status"
                    && has_last(&v["data"]["status"]["exec_info"]["comfyrs_eta"]["jobs"])
            })
        })
        .await;
    assert!(
        frames
            .iter()
            .all(|f| f.json().is_none_or(|v| v["type"] != "comfyrs.eta")),
        "a socket that did not ask got comfyrs.eta messages"
    );
    let status = frames.last().and_then(|f| f.json()).unwrap().clone();
    let exec_info = &status["data"]["status"]["exec_info"];
    assert!(
        exec_info["queue_remaining"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert_eq!(exec_info["comfyrs_eta"]["workers"], 1, "{status}");

    // The socket that asked: `comfyrs.eta` messages.
    let frames = opted_in
        .until(Duration::from_secs(30), |f| {
            f.json().is_some_and(|v| {
                v["type"] == "comfyrs.eta"
                    && v["data"]["jobs"]
                        .as_array()
                        .is_some_and(|jobs| jobs.iter().any(|j| j["prompt_id"] == last_id.as_str()))
            })
        })
        .await;
    let message = frames.last().and_then(|f| f.json()).unwrap();
    assert_eq!(message["data"]["workers"], 1, "{message}");
    let entry = message["data"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["prompt_id"] == last_id.as_str())
        .unwrap()
        .clone();
    assert!(entry["eta_finish"].as_f64().is_some(), "{message}");
    api.wait_history("", &last_id).await;
}

#[tokio::test]
async fn the_feature_flags_message_decides_who_gets_eta_messages() {
    use server::routes::ws::{ClientFlags, client_flags};
    let asked = r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true, "comfyrs_eta": true}}"#;
    assert_eq!(
        client_flags(asked, true),
        Some(ClientFlags {
            preview_metadata: true,
            eta_messages: true
        })
    );
    let frontend = r#"{"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 1}}"#;
    assert_eq!(
        client_flags(frontend, true),
        Some(ClientFlags {
            preview_metadata: true,
            eta_messages: false
        })
    );
    assert_eq!(
        client_flags(asked, false),
        None,
        "only the first message counts"
    );
    assert_eq!(client_flags(r#"{"type": "other"}"#, true), None);
}
