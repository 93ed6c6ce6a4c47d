//! Helpers of the queue integration tests: a real `redis-server` (from `queue::redis::testing`),
//! real `comfyrs serve` / `comfyrs worker` processes on loopback ports (killable with SIGKILL,
//! stoppable with SIGTERM, freezable with SIGSTOP), workshop users files, an HTTP client with
//! basic authentication, and a WebSocket client.
//!
//! (A minimal stand-in for the shared `tests/common` helper while both are being written.)
#![allow(dead_code)]

#[path = "../common/browser.rs"]
pub mod browser;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use browser::e2e_ready;
#[allow(unused_imports)]
pub use queue::redis::testing::{RedisServer, free_port};
use serde_json::{Value, json};

/// Whether `redis-server` can be run.
pub fn redis_ready() -> bool {
    let binary = std::env::var("COMFYRS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    e2e_ready(
        "redis-server",
        Command::new(binary)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    )
}

/// A child process with its output in a log file; killed on drop.
pub struct Proc {
    child: Child,
    log: PathBuf,
    /// What it is (for messages).
    pub name: String,
}

impl Proc {
    /// Starts `comfyrs <args>` logging to `log`.
    pub fn comfyrs(name: &str, args: &[String], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
            .args(args)
            .env("RUST_LOG", "warn,comfyrs=info,server=info,queue=info")
            .env("NO_COLOR", "1")
            .env_remove("COMFYRS_USERS")
            .env_remove("COMFYRS_PORT")
            .env_remove("COMFYRS_REDIS")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .expect("start comfyrs");
        Self {
            child,
            log,
            name: name.into(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; returns its status, or `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workshop user.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Instructor.
    pub admin: bool,
}

impl User {
    /// A participant named `name` (password `pw-<name>`).
    pub fn participant(name: &str) -> Self {
        Self {
            name: name.into(),
            password: format!("pw-{name}"),
            admin: false,
        }
    }

    /// The admin `teacher`.
    pub fn admin() -> Self {
        Self {
            name: "teacher".into(),
            password: "pw-teacher".into(),
            admin: true,
        }
    }
}

/// Writes a users file with hashes from `comfyrs hash-password`.
pub fn write_users(dir: &Path, users: &[User]) -> PathBuf {
    use std::io::Write;
    let mut text = String::new();
    for user in users {
        let mut child = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("comfyrs hash-password");
        writeln!(child.stdin.take().expect("stdin"), "{}", user.password).expect("password");
        let out = child.wait_with_output().expect("hash");
        assert!(out.status.success());
        let hash = String::from_utf8(out.stdout).expect("utf-8");
        let role = if user.admin { "admin" } else { "participant" };
        text.push_str(&format!(
            "[[user]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"{role}\"\n\n",
            user.name,
            hash.trim()
        ));
    }
    let path = dir.join("users.toml");
    std::fs::write(&path, text).expect("users.toml");
    path
}

/// Flags for a fast-failing test queue: short leases and heartbeats, dev nodes.
pub fn queue_flags() -> Vec<String> {
    ["--dev-nodes", "--lease-ms", "2000", "--heartbeat-ms", "250"]
        .map(String::from)
        .to_vec()
}

/// A `comfyrs serve` process.
pub struct Serve {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

/// Starts `comfyrs serve` on a free port with `base` as its base directory and waits until it
/// answers HTTP.
pub async fn start_serve(base: &Path, redis: Option<&str>, extra: &[String]) -> Serve {
    let port = free_port().expect("free port");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--base-directory".into(),
        base.join("data").display().to_string(),
    ];
    if let Some(url) = redis {
        args.extend(["--redis".into(), url.into()]);
    }
    args.extend(extra.iter().cloned());
    let log = base.join(format!("serve-{port}.log"));
    let proc = Proc::comfyrs("serve", &args, log);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = reqwest::Client::new();
    loop {
        if http.get(format!("{url}/system_stats")).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "comfyrs serve did not start:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Serve { proc, url }
}

/// Starts `comfyrs worker --redis <url> --device cpu` sharing `base`.
pub fn start_worker(base: &Path, redis: &str, name: &str, extra: &[String]) -> Proc {
    let mut args: Vec<String> = vec![
        "worker".into(),
        "--redis".into(),
        redis.into(),
        "--device".into(),
        "cpu".into(),
        "--base-directory".into(),
        base.join("data").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    Proc::comfyrs(name, &args, base.join(format!("{name}.log")))
}

/// An HTTP client acting as one user (or anonymously in single-user mode).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Server URL.
    pub url: String,
    auth: Option<(String, String)>,
}

impl Client {
    /// A client of `url`, authenticated as `user` if given.
    pub fn new(url: &str, user: Option<&User>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            auth: user.map(|u| (u.name.clone(), u.password.clone())),
        }
    }

    /// Sends a request; returns the status and the body (JSON, or a string for other bodies).
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// GET, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Submits a prompt; returns its id.
    pub async fn submit(&self, prompt: Value, client_id: Option<&str>) -> String {
        let mut body = json!({"prompt": prompt});
        if let Some(c) = client_id {
            body["client_id"] = json!(c);
        }
        let (status, reply) = self.send("POST", "/prompt", Some(body)).await;
        assert_eq!(status, 200, "submit: {reply}");
        reply["prompt_id"].as_str().expect("prompt_id").to_string()
    }

    /// Polls `/api/jobs/{id}` until `done` accepts it (panics after `timeout`).
    pub async fn wait_job(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, job) = self.send("GET", &format!("/api/jobs/{id}"), None).await;
            if status == 200 && done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there in {timeout:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/api/workers` until the server lists `n` live workers (panics after `timeout`).
    pub async fn wait_workers(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let workers = self.get("/api/workers").await;
            if workers.as_array().map(Vec::len) == Some(n) {
                return;
            }
            assert!(Instant::now() < deadline, "workers: {workers}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A prompt running `DevWorkload` for `ms` milliseconds in `steps` steps, saving its image with
/// `prefix`.
pub fn workload(ms: u64, steps: u64, seed: u64, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": steps, "seed": seed}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    })
}

/// Whether a job item is in one of the final states.
pub fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}
