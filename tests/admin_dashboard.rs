//! The `/admin` dashboard in Debian's headless Chromium (`tests/browser/admin.mjs`, run with
//! node and playwright-core) against a real `comfyrs serve` in workshop mode with a local
//! worker: live progress, workers and users panels, prioritise, policy switch, pause/resume,
//! cancel of pending and running jobs, and a participant refused. The screenshot is kept under
//! the target directory (`tmp/admin-dashboard.png`).

mod queue_common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use queue_common::{Client, User, e2e_ready, queue_flags, start_serve, workload, write_users};
use serde_json::json;

fn chromium() -> PathBuf {
    std::env::var_os("COMFYRS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn ready() -> bool {
    e2e_ready("Debian's chromium", chromium().is_file())
        && e2e_ready(
            "node",
            Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
        )
        && e2e_ready(
            "tests/browser/node_modules (npm install)",
            browser_dir().join("node_modules/playwright-core").is_dir(),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_the_queue_and_drives_it() {
    if !ready() {
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
    let mut child = Command::new("node")
        .arg("admin.mjs")
        .args(["--url", &serve.url])
        .args(["--admin", &format!("{}:{}", admin.name, admin.password)])
        .args(["--participant", &format!("{}:{}", ann.name, ann.password)])
        .args(["--jobs", &jobs])
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--chromium")
        .arg(chromium())
        .current_dir(browser_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "the dashboard checks failed:\n{text}\nserver log:\n{}",
        serve.proc.log()
    );
    eprintln!("screenshot: {}", screenshot.display());
}
