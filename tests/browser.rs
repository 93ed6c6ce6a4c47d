//! End-to-end: the real ComfyUI frontend (installed by `scripts/setup.sh`) served by
//! `comfyrs serve` in workshop mode, driven in Debian's headless Chromium by
//! `tests/browser/e2e.mjs` (playwright-core). user001 loads the UI with no error toasts, queues
//! a workflow with the Run button and sees the output image; user002 cannot see it. The
//! screenshot is kept under the target directory (`tmp/browser/`) as an artifact. A participant
//! without credentials is sent to `/login`, logs in through the form and works in the frontend
//! on the session cookie alone (`tests/browser/login.mjs`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::{browser_ready, chromium, run_node};
use common::{Server, ServerOptions, TestUser, e2e_ready, installed_frontend};

/// Chromium and the installed frontend are there (skipped without them, failed under
/// COMFYRS_E2E=1).
fn frontend_ready() -> bool {
    browser_ready()
        && e2e_ready(
            "the ComfyUI frontend (data/frontend)",
            installed_frontend().is_some(),
        )
}

#[test]
fn frontend_runs_a_workflow_and_keeps_users_apart() {
    if !frontend_ready() {
        return;
    }
    let server = Server::start(ServerOptions {
        users: vec![
            TestUser::participant("user001", "pw-user001"),
            TestUser::participant("user002", "pw-user002"),
            TestUser::admin("teacher", "pw-teacher"),
        ],
        frontend: true,
        ..ServerOptions::default()
    });
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser/user001-output.png");
    let _ = std::fs::remove_file(&screenshot);
    let args = vec![
        "--url".to_string(),
        server.url.clone(),
        "--screenshot".into(),
        screenshot.display().to_string(),
        "--chromium".into(),
        chromium().display().to_string(),
        "--user1".into(),
        "user001:pw-user001".into(),
        "--user2".into(),
        "user002:pw-user002".into(),
    ];
    let (ok, output) = run_node("e2e.mjs", &args, Duration::from_secs(240));
    println!("{output}");
    assert!(ok, "the browser test failed:\n{output}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("screenshot artifact: {}", screenshot.display());
    let output_dir = server.data_dir().join("users/user001");
    assert!(
        std::fs::read_dir(server.data_dir().join("output"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "nothing in the shared output folder"
    );
    assert!(output_dir.is_dir());
}

#[test]
fn a_participant_logs_in_through_the_login_page() {
    if !frontend_ready() {
        return;
    }
    let server = Server::start(ServerOptions {
        users: vec![TestUser::participant("user001", "pw-user001")],
        frontend: true,
        ..ServerOptions::default()
    });
    let args = vec![
        "--url".to_string(),
        server.url.clone(),
        "--user".into(),
        "user001:pw-user001".into(),
        "--chromium".into(),
        chromium().display().to_string(),
    ];
    let (ok, output) = run_node("login.mjs", &args, Duration::from_secs(240));
    println!("{output}");
    assert!(
        ok,
        "the login test failed:\n{output}\nserver log:\n{}",
        server.log()
    );
}
