//! `POST /prompt` against the real ComfyUI: every captured case of
//! `tests/fixtures/comfy_peer/validation.json` whose nodes we have is replayed on `comfyrs serve`
//! and the status, the answer and the stored history entry are compared with the captured ones,
//! modulo the fork's documented differences (we follow upstream ComfyUI there).

mod common;

use std::collections::BTreeSet;

use common::{Api, Rules, Server, ServerOptions, assert_json_matches, case, fixture};
use serde_json::{Value, json};

/// Classes the cases use on purpose although no server has them.
const DELIBERATELY_MISSING: &[&str] = &["NoSuchNode"];

async fn known_classes(api: &Api) -> BTreeSet<String> {
    let info = api.get("/object_info").await;
    assert_eq!(info.status, 200);
    info.json
        .as_object()
        .expect("object_info is an object")
        .keys()
        .cloned()
        .collect()
}

fn classes_of(prompt: &Value) -> Vec<String> {
    prompt
        .as_object()
        .map(|nodes| {
            nodes
                .values()
                .filter_map(|n| n["class_type"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// History `status.messages` as the fork records them: bare event names, and
/// `"execution_error: <message>"` for a failure (upstream keeps `[event, data]` pairs).
fn fork_messages(entry: &mut Value) {
    let Some(messages) = entry.pointer_mut("/status/messages") else {
        return;
    };
    let names: Vec<Value> = messages
        .as_array()
        .expect("messages is a list")
        .iter()
        .map(|m| {
            let name = m[0].as_str().expect("message name");
            assert!(
                m[1]["timestamp"].is_i64(),
                "{name} has an integer timestamp"
            );
            match name {
                "execution_error" => json!(format!(
                    "execution_error: {}",
                    m[1]["exception_message"].as_str().unwrap_or("")
                )),
                _ => json!(name),
            }
        })
        .collect();
    *messages = Value::Array(names);
}

/// Upstream's `prompt_outputs_failed_validation` has `extra_info: {}`; the fork adds a synthetic
/// exception and traceback.
fn upstream_error_shape(expected: &mut Value) {
    if expected.pointer("/error/type") == Some(&json!("prompt_outputs_failed_validation")) {
        expected["error"]["extra_info"] = json!({});
    }
}

/// The fork reports a dependency cycle with empty `node_errors` (its recursive validator
/// overwrites the reasons); upstream names every node on the cycle with a `dependency_cycle`
/// error. Checks ours has upstream's errors, then empties them for the comparison.
fn upstream_cycle_errors(actual: &mut Value) {
    let errors = actual["node_errors"].as_object().expect("node_errors");
    assert!(!errors.is_empty(), "a cycle names its nodes: {actual}");
    for (id, entry) in errors {
        for error in entry["errors"].as_array().expect("errors") {
            assert_eq!(error["type"], "dependency_cycle", "node {id}: {error}");
            let cycle = error["extra_info"]["cycle_nodes"]
                .as_array()
                .expect("cycle_nodes");
            assert!(cycle.iter().any(|n| n == id), "node {id} is on its cycle");
        }
    }
    actual["node_errors"] = json!({});
}

async fn check_stored(api: &Api, name: &str, case: &Value, prompt_id: &str, rules: &Rules) {
    let mut entry = api.wait_history("", prompt_id).await;
    fork_messages(&mut entry);
    let mut expected_entry = case["stored"]["response"]
        .as_object()
        .and_then(|m| m.values().next())
        .cloned()
        .expect("stored history entry");
    // The queue number depends on everything the server saw before.
    // The queue number depends on everything the server saw before; the id was checked
    // against the answer.
    assert_eq!(entry["prompt"][1], prompt_id);
    for e in [&mut entry, &mut expected_entry] {
        e["prompt"][0] = json!("<number>");
        e["prompt"][1] = json!("<id>");
    }
    assert_json_matches(
        &format!("{name}: stored history"),
        &entry,
        &expected_entry,
        rules,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_cases_match_comfyui() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    let file = fixture("validation.json");
    let rules = Rules::from_fixture(&file).keeping(&["prompt_id"]);
    let known = known_classes(&api).await;
    let mut compared = 0;
    let mut skipped = Vec::new();
    for case in file["cases"].as_array().expect("cases") {
        let name = case["case"].as_str().expect("case name");
        let request = &case["request"];
        if request["method"] != "POST" || request["path"] != "/prompt" {
            continue;
        }
        let body = &request["json"];
        let missing: Vec<String> = classes_of(&body["prompt"])
            .into_iter()
            .filter(|c| !known.contains(c) && !DELIBERATELY_MISSING.contains(&c.as_str()))
            .collect();
        if !missing.is_empty() {
            skipped.push(format!("{name} ({})", missing.join(", ")));
            continue;
        }
        match name {
            // Documented differences: tested in their own tests below.
            "invalid_json_body" | "bad_prompt_id" | "prompt_is_list_of_nodes" => continue,
            _ => {}
        }
        let reply = api.post("/prompt", body).await;
        assert_eq!(
            reply.status, case["status"],
            "{name}: status (answer {})",
            reply.json
        );
        let mut expected = case["response"].clone();
        upstream_error_shape(&mut expected);
        let mut actual = reply.json.clone();
        if name.starts_with("dependency_cycle") {
            upstream_cycle_errors(&mut actual);
        }
        let mut case_rules = rules.clone();
        if name == "default_prompt_id" || name == "front_true" {
            case_rules = case_rules.masking(&["prompt_id", "number"]);
        } else {
            case_rules = case_rules.masking(&["number"]);
        }
        assert_json_matches(name, &actual, &expected, &case_rules);
        if case.get("stored").is_some() {
            let id = reply.json["prompt_id"].as_str().expect("prompt_id");
            check_stored(&api, name, case, id, &case_rules).await;
        }
        compared += 1;
    }
    eprintln!("compared {compared} cases; skipped (nodes we do not have): {skipped:?}");
    assert!(compared >= 30, "only {compared} cases compared");
}

#[tokio::test]
async fn explicit_number_is_a_float_and_front_negates_the_counter() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    let prompt = common::empty_image_prompt(8, 8, 0, "n/x");
    let first = api.post("/prompt", &json!({"prompt": prompt})).await;
    assert_eq!(first.json["number"], 0);
    let explicit = api
        .post("/prompt", &json!({"prompt": prompt, "number": 5}))
        .await;
    assert!(explicit.json["number"].is_f64(), "{}", explicit.json);
    assert_eq!(explicit.json["number"].as_f64(), Some(5.0));
    let front = api
        .post("/prompt", &json!({"prompt": prompt, "front": true}))
        .await;
    assert_eq!(
        front.json["number"], -1,
        "front: -counter (the counter is 1 now)"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_in_comfyui_error_shape() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    // The real ComfyUI answers 500 (an unguarded `await request.json()`); we answer 400 in the
    // error shape the frontend shows, as the issue asks.
    for path in ["/prompt", "/api/prompt"] {
        let reply = api.post_raw(path, "{not json").await;
        assert_eq!(reply.status, 400, "{path}");
        let error = &reply.json["error"];
        for key in ["type", "message", "details"] {
            assert!(
                error[key].is_string(),
                "{path}: error.{key} in {}",
                reply.json
            );
        }
        assert!(error["extra_info"].is_object());
        assert_eq!(reply.json["node_errors"], json!({}));
    }
    let list =
        case(&fixture("validation.json"), "prompt_is_list_of_nodes")["request"]["json"].clone();
    let reply = api.post("/prompt", &list).await;
    assert_eq!(reply.status, 400, "a prompt that is a list: {}", reply.json);
    assert!(reply.json["error"]["type"].is_string());
    for path in ["/history", "/queue", "/settings", "/api/jobs/cancel"] {
        let reply = api.post_raw(path, "{oops").await;
        assert_eq!(reply.status, 400, "POST {path} with malformed JSON");
        assert!(reply.json["error"].is_string() || reply.json["error"].is_object());
    }
}

#[tokio::test]
async fn prompt_ids_must_be_canonical_uuids() {
    let server = Server::start(ServerOptions::default());
    let api = server.api();
    // The captured fork accepts any string; upstream ComfyUI answers 400 invalid_prompt_id.
    let body = case(&fixture("validation.json"), "bad_prompt_id")["request"]["json"].clone();
    let reply = api.post("/prompt", &body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json["error"]["type"], "invalid_prompt_id");
    assert_eq!(reply.json["node_errors"], json!({}));
    let mut upper = body.clone();
    upper["prompt_id"] = json!("5EF9F085-C2DB-583E-9E8A-66DA0CD002B8");
    assert_eq!(api.post("/prompt", &upper).await.status, 400);
    let mut good = body;
    good["prompt_id"] = json!("5ef9f085-c2db-583e-9e8a-66da0cd002b8");
    let reply = api.post("/prompt", &good).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(
        reply.json["prompt_id"],
        "5ef9f085-c2db-583e-9e8a-66da0cd002b8"
    );
}
