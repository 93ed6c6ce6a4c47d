//! The `/admin` dashboard in Debian's headless Chromium (`tests/browser/admin.mjs`, run with
//! node and playwright-core) against a real `comfyrs serve` in workshop mode with a local
//! worker: live progress, workers and users panels, prioritise, policy switch, pause/resume,
//! cancel of pending and running jobs, and a participant refused. The screenshot is kept under
//! the target directory (`tmp/admin-dashboard.png`).

mod queue_common;

use std::path::PathBuf;
use std::time::Duration;

use queue_common::browser::{browser_ready, chromium, run_node};
use queue_common::{Client, User, queue_flags, start_serve, workload, write_users};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_the_queue_and_drives_it() {
    if !browser_ready() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let (admin, ann) = (User::admin(), User::participant("ann"));
    let users = write_users(base.path(), &[admin.clone(), ann.clone()]);
    let mut flags = queue_flags();
    flags.extend(["--users".into(), users.display().to_string()]);
    let serve = start_serve(base.path(), None, &flags).await;
    let as_ann = Client::new(&serve.url, Some(&ann));
    let running = as_ann.submit(workload(60_000, 600, 1, "long"), None).await;
    as_ann
        .wait_job(&running, Duration::from_secs(30), |j| {
            j["status"] == "in_progress"
        })
        .await;
    let mut pending = Vec::new();
    for seed in 2..5 {
        pending.push(as_ann.submit(workload(300, 3, seed, "short"), None).await);
    }
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard.png");
    let jobs = json!({"running": running, "pending": pending}).to_string();
    let args: Vec<String> = vec![
        "--url".into(),
        serve.url.clone(),
        "--admin".into(),
        format!("{}:{}", admin.name, admin.password),
        "--participant".into(),
        format!("{}:{}", ann.name, ann.password),
        "--jobs".into(),
        jobs,
        "--screenshot".into(),
        screenshot.display().to_string(),
        "--chromium".into(),
        chromium().display().to_string(),
    ];
    let (ok, text) =
        tokio::task::spawn_blocking(move || run_node("admin.mjs", &args, Duration::from_secs(180)))
            .await
            .expect("node runner");
    eprintln!("{text}");
    assert!(
        ok,
        "the dashboard checks failed:\n{text}\nserver log:\n{}",
        serve.proc.log()
    );
    eprintln!("screenshot: {}", screenshot.display());
}
