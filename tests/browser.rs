//! End-to-end: the real ComfyUI frontend (installed by `scripts/setup.sh`) served by
//! `comfyrs serve` in workshop mode, driven in Debian's headless Chromium by
//! `tests/browser/e2e.mjs` (playwright-core). user001 loads the UI with no error toasts, queues
//! a workflow with the Run button and sees the output image; user002 cannot see it. The
//! screenshot is kept under the target directory (`tmp/browser/`) as an artifact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, ServerOptions, TestUser, e2e_ready, installed_frontend, repo_root};

fn chromium() -> PathBuf {
    std::env::var_os("COMFYRS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn node_ready() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `node e2e.mjs` with a deadline, returning (success, combined output).
fn run_e2e(args: &[String], deadline: Duration) -> (bool, String) {
    let dir = repo_root().join("tests/browser");
    let out_path = std::env::temp_dir().join(format!("comfyrs-e2e-{}.log", std::process::id()));
    let out = std::fs::File::create(&out_path).expect("log file");
    let mut child = Command::new("node")
        .arg("e2e.mjs")
        .args(args)
        .current_dir(&dir)
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("run node");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(timed out after {deadline:?})")),
    }
}

#[test]
fn frontend_runs_a_workflow_and_keeps_users_apart() {
    let ready = e2e_ready("Debian's chromium", chromium().is_file())
        && e2e_ready("node", node_ready())
        && e2e_ready(
            "tests/browser/node_modules (npm install)",
            repo_root()
                .join("tests/browser/node_modules/playwright-core")
                .is_dir(),
        )
        && e2e_ready(
            "the ComfyUI frontend (data/frontend)",
            installed_frontend().is_some(),
        );
    if !ready {
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
    let (ok, output) = run_e2e(&args, Duration::from_secs(240));
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
