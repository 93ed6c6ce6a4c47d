//! End-to-end prerequisites and the node + playwright-core browser scripts of `tests/browser/`
//! (real frontend or dashboard in Debian's headless Chromium). Shared by `tests/common` and
//! `tests/queue_common`; depends on nothing else of either.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether an end-to-end prerequisite (a browser, a Python package, the installed frontend)
/// is usable. `scripts/test.sh` installs them all and sets `COMFYRS_E2E=1`: then a missing one
/// fails the test. A bare `cargo test` on a machine without them skips the test, saying why.
pub fn e2e_ready(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var("COMFYRS_E2E").as_deref() != Ok("1"),
        "{what} is missing (scripts/setup.sh --test installs it)"
    );
    eprintln!("SKIPPED: {what} is missing; run scripts/test.sh to install it");
    false
}

/// Debian's Chromium (`COMFYRS_CHROMIUM` overrides).
pub fn chromium() -> PathBuf {
    std::env::var_os("COMFYRS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// `tests/browser/`, the scripts and their `node_modules`.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium, node and playwright-core are there (see [`e2e_ready`]).
pub fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    e2e_ready("Debian's chromium", chromium().is_file())
        && e2e_ready("node", node)
        && e2e_ready(
            "tests/browser/node_modules (npm install)",
            browser_dir().join("node_modules/playwright-core").is_dir(),
        )
}

/// Runs `node <script> <args>` in `tests/browser/`, killing it after `deadline`; returns
/// whether it succeeded and its combined output.
pub fn run_node(script: &str, args: &[String], deadline: Duration) -> (bool, String) {
    let log = std::env::temp_dir().join(format!(
        "comfyrs-{script}-{}-{:?}.log",
        std::process::id(),
        std::thread::current().id()
    ));
    let out = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(browser_dir())
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
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(timed out after {deadline:?})")),
    }
}
