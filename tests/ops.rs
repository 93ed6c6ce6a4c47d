//! Workshop operations against a real `comfyrs serve`: the disk-space guard refuses prompts
//! with ComfyUI's error shape, and `comfyrs status` reports the server's health (text and
//! `--json`).

mod common;

use std::process::Command;

use common::{Server, ServerOptions, TestUser};
use serde_json::Value;

fn workshop(extra: &[&str]) -> Server {
    Server::start(ServerOptions {
        users: vec![
            TestUser::participant("user001", "pw-one"),
            TestUser::admin("teacher", "pw-admin"),
        ],
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOptions::default()
    })
}

/// Runs `comfyrs <args>` with the environment cleared of comfyrs settings.
fn comfyrs(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfyrs"));
    cmd.args(args);
    for key in [
        "COMFYRS_URL",
        "COMFYRS_ADMIN_USER",
        "COMFYRS_ADMIN_PASSWORD",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run comfyrs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_prompts() {
    // A threshold no real disk reaches (a million TB): the output disk counts as full.
    let server = workshop(&["--min-free-disk-gb", "1e9"]);
    let api = server.http_as("user001");
    let prompt = common::empty_image_prompt(8, 8, 0, "full");
    let reply = api
        .post("/user001/prompt", &serde_json::json!({"prompt": prompt}))
        .await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    let error = &reply.json["error"];
    assert_eq!(error["type"], "disk_full");
    assert_eq!(error["message"], "The output disk is nearly full");
    let details = error["details"].as_str().expect("details");
    assert!(details.contains("--min-free-disk-gb"), "{details}");
    assert!(error["extra_info"]["free_bytes"].as_u64().is_some());
    assert_eq!(reply.json["node_errors"], serde_json::json!({}));
    // Nothing was queued.
    let jobs = server.http_as("teacher").get("/api/admin/jobs").await;
    assert_eq!(jobs.json["jobs"], serde_json::json!([]));
    // /health says why.
    let health = server.http_as("teacher").get("/health").await;
    assert_eq!(health.json["status"], "degraded");
    assert_eq!(health.json["components"]["disk"]["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_lets_prompts_through_when_space_is_left() {
    let server = workshop(&["--min-free-disk-gb", "0.000001"]);
    let api = server.http_as("user001");
    let prompt = common::empty_image_prompt(8, 8, 0, "fine");
    let id = api.queue("/user001", &prompt, None).await["prompt_id"]
        .as_str()
        .expect("id")
        .to_string();
    let entry = api.wait_history("/user001", &id).await;
    assert_eq!(entry["status"]["status_str"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_every_component() {
    let server = workshop(&[]);
    let env = [
        ("COMFYRS_URL", server.url.as_str()),
        ("COMFYRS_ADMIN_USER", "teacher"),
        ("COMFYRS_ADMIN_PASSWORD", "pw-admin"),
    ];
    // Wait for the local worker's first heartbeat.
    let admin = server.http_as("teacher");
    for _ in 0..100 {
        if admin
            .get("/api/workers")
            .await
            .json
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = comfyrs(&["status", "--json"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(status["ok"], true);
    assert_eq!(status["server"]["url"], server.url.as_str());
    assert_eq!(status["server"]["status"], "ok");
    assert_eq!(status["queue"]["backend"], "embedded");
    assert_eq!(status["queue"]["ok"], true);
    assert_eq!(status["queue"]["paused"], false);
    assert_eq!(status["queue"]["counts"]["pending"], 0);
    assert_eq!(status["workers"][0]["device"], "cpu");
    assert!(status["workers"][0]["memory_total"].as_u64().unwrap_or(0) > 0);
    let disk = &status["disk"];
    assert_eq!(disk["ok"], true);
    assert!(disk["free_bytes"].as_u64().unwrap() <= disk["total_bytes"].as_u64().unwrap());
    assert_eq!(disk["min_free_bytes"], 1_000_000_000u64);
    assert_eq!(status["gpus"], serde_json::json!([]));

    let out = comfyrs(&["status"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "server ",
        "queue    embedded ok",
        "disk     ok",
        "workers  1",
        "  cpu ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    // A participant's credentials are refused; a wrong URL fails clearly.
    let out = comfyrs(
        &[
            "status",
            "--user",
            "user001",
            "--password",
            "pw-one",
            "--url",
            &server.url,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an admin"));
    let out = comfyrs(&["status", "--url", "http://127.0.0.1:1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
