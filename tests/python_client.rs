//! An outside API client: `tests/python/comfy_client.py` (Python's `urllib` and
//! `websocket-client`, the pattern of ComfyUI's example scripts) runs against `comfyrs serve`
//! in single-user mode and in a workshop workspace. `scripts/test.sh` provides the Python with
//! `websocket-client` in `COMFYRS_TEST_PYTHON`.

mod common;

use std::process::Command;

use common::{Server, ServerOptions, TestUser, e2e_ready, repo_root};
use serde_json::Value;

fn python() -> Option<String> {
    let python = std::env::var("COMFYRS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import websocket"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Runs the client; returns its JSON summary.
fn run_client(python: &str, server: &Server, extra: &[&str]) -> Value {
    let script = repo_root().join("tests/python/comfy_client.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--server", &format!("127.0.0.1:{}", server.port)])
        .args(extra)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad summary {stdout:?}: {e}"))
}

#[test]
fn python_client_single_user() {
    let Some(python) = python() else {
        e2e_ready("Python with websocket-client (COMFYRS_TEST_PYTHON)", false);
        return;
    };
    let server = Server::start(ServerOptions::default());
    let summary = run_client(&python, &server, &[]);
    assert_eq!(summary["subfolder"], "pyclient");
    for file in summary["files"].as_array().expect("files") {
        let path = server
            .data_dir()
            .join("output/pyclient")
            .join(file.as_str().expect("name"));
        assert!(path.is_file(), "{}", path.display());
    }
}

#[test]
fn python_client_in_a_workshop_workspace() {
    let Some(python) = python() else {
        e2e_ready("Python with websocket-client (COMFYRS_TEST_PYTHON)", false);
        return;
    };
    let server = Server::start(ServerOptions::workshop(vec![
        TestUser::participant("user001", "secret-1"),
        TestUser::participant("user002", "secret-2"),
    ]));
    let args = [
        "--prefix",
        "/user001",
        "--user",
        "user001",
        "--password",
        "secret-1",
    ];
    let summary = run_client(&python, &server, &args);
    let files = summary["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    let workspace = walk(&server.data_dir().join("users/user001"));
    let shared_output = server.data_dir().join("output/pyclient");
    for file in files {
        let name = file.as_str().expect("name");
        assert!(
            !shared_output.join(name).exists(),
            "workspace outputs stay out of the shared folder"
        );
        assert!(
            workspace.iter().any(|p| p.ends_with(name)),
            "{name} is in user001's workspace"
        );
    }
    // The wrong password is refused by the same client.
    let script = repo_root().join("tests/python/comfy_client.py");
    let refused = Command::new(&python)
        .arg(script)
        .args(["--server", &format!("127.0.0.1:{}", server.port)])
        .args([
            "--prefix",
            "/user001",
            "--user",
            "user001",
            "--password",
            "wrong",
        ])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
