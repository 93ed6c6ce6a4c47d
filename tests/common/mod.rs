//! Shared helpers of the integration tests: start the real `comfyrs serve` binary on a loopback
//! port with a temporary base directory (single-user or workshop mode), talk to it over HTTP and
//! WebSocket, load the captured answers of the real ComfyUI (`tests/fixtures/comfy_peer/`) and
//! compare JSON modulo volatile keys and unordered lists.
//!
//! Each test binary includes this module (`mod common;`) and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod compare;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use compare::{Rules, assert_json_matches, normalize};
pub use ws::{Frame, WsClient};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file of `tests/fixtures/comfy_peer/` parsed as JSON.
pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("tests/fixtures/comfy_peer").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {}: {e}", path.display()))
}

/// The case named `name` of a fixture file.
pub fn case<'a>(fixture: &'a Value, name: &str) -> &'a Value {
    fixture["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["case"] == name))
        .unwrap_or_else(|| panic!("fixture has no case {name:?}"))
}

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

/// A workshop user for [`ServerOptions::users`].
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Login name (and workspace path).
    pub name: String,
    /// Plain-text password.
    pub password: String,
    /// Whether the user is the instructor (admin).
    pub admin: bool,
}

impl TestUser {
    /// A participant.
    pub fn participant(name: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            admin: false,
        }
    }

    /// An admin.
    pub fn admin(name: &str, password: &str) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            admin: true,
        }
    }
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Workshop users (empty: single-user mode).
    pub users: Vec<TestUser>,
    /// Register the development nodes (`DevWorkload`).
    pub dev_nodes: bool,
    /// Serve the frontend installed by `scripts/setup.sh` (`data/frontend/static`).
    pub frontend: bool,
    /// More command-line arguments.
    pub args: Vec<String>,
}

impl ServerOptions {
    /// Workshop mode with these users.
    pub fn workshop(users: Vec<TestUser>) -> Self {
        Self {
            users,
            ..Self::default()
        }
    }
}

/// A running `comfyrs serve` process, killed on drop. Its base directory lives as long as the
/// value; [`Server::restart`] starts a new process on the same directory.
pub struct Server {
    child: Option<Child>,
    base: tempfile::TempDir,
    options: ServerOptions,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The port.
    pub port: u16,
    log: PathBuf,
}

/// The frontend installed by `scripts/setup.sh`, if present.
pub fn installed_frontend() -> Option<PathBuf> {
    let root = std::env::var_os("COMFYRS_BASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("data"))
        .join("frontend");
    root.join("static/index.html").is_file().then_some(root)
}

fn write_users(base: &Path, users: &[TestUser]) -> PathBuf {
    let mut text = String::new();
    for user in users {
        let hash = hash_password(&user.password);
        let role = if user.admin { "admin" } else { "participant" };
        text.push_str(&format!(
            "[[user]]\nname = \"{}\"\npassword_hash = \"{hash}\"\nrole = \"{role}\"\n\n",
            user.name
        ));
    }
    let path = base.join("users.toml");
    std::fs::write(&path, text).expect("write users.toml");
    path
}

/// An argon2 hash from `comfyrs hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfyrs"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run comfyrs hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success(), "hash-password failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

impl Server {
    /// Starts a server in a fresh temporary base directory and waits until it listens.
    pub fn start(options: ServerOptions) -> Self {
        let base = tempfile::Builder::new()
            .prefix("comfyrs-it-")
            .tempdir()
            .expect("temp dir");
        let log = base.path().join("server.log");
        let mut server = Self {
            child: None,
            base,
            options,
            url: String::new(),
            port: 0,
            log,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let base = self.base.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_comfyrs"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1", "--port", "0"])
            .arg("--base-directory")
            .arg(base.join("data"))
            .env("RUST_LOG", "warn,comfyrs=info,server=info,queue=info")
            .env("NO_COLOR", "1")
            .env_remove("COMFYRS_USERS")
            .env_remove("COMFYRS_PORT")
            .env_remove("COMFYRS_FRONTEND_ROOT");
        if !self.options.users.is_empty() {
            cmd.arg("--users")
                .arg(write_users(base, &self.options.users));
        }
        if self.options.dev_nodes {
            cmd.arg("--dev-nodes");
        }
        if self.options.frontend {
            let root = installed_frontend()
                .expect("the ComfyUI frontend is not installed: run scripts/setup.sh");
            cmd.arg("--front-end-root").arg(root.join("static"));
            if root.join("templates/index.json").is_file() {
                cmd.arg("--templates-root").arg(root.join("templates"));
            }
        }
        cmd.args(&self.options.args);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        cmd.stdout(Stdio::null()).stderr(log).stdin(Stdio::null());
        let start = std::fs::metadata(&self.log)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let child = cmd.spawn().expect("start comfyrs serve");
        self.child = Some(child);
        self.port = self.wait_listening(start);
        self.url = format!("http://127.0.0.1:{}", self.port);
    }

    /// Waits for this process's "listening on" line (written after byte `start` of the log).
    fn wait_listening(&mut self, start: usize) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let port = text
                .get(start..)
                .unwrap_or("")
                .lines()
                .filter_map(|l| l.split("listening on http://").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .find_map(|addr| addr.rsplit(':').next()?.parse::<u16>().ok());
            if let Some(port) = port {
                return port;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("comfyrs serve exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "comfyrs serve did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGTERM, then kill) and starts a new one on the same base directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the process.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The base directory (`input/`, `output/`, `users/`, ...).
    pub fn data_dir(&self) -> PathBuf {
        self.base.path().join("data")
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// An HTTP client without credentials.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client")
    }

    /// An HTTP client acting as `user` (basic authentication on every request).
    pub fn http_as(&self, user: &str) -> Api {
        let password = self
            .options
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.password.clone());
        Api {
            client: self.http(),
            base: self.url.clone(),
            auth: password.map(|p| (user.to_string(), p)),
        }
    }

    /// An HTTP client for single-user mode.
    pub fn api(&self) -> Api {
        Api {
            client: self.http(),
            base: self.url.clone(),
            auth: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- comfyrs serve log ----\n{}", self.log());
        }
    }
}

/// A response: status, headers and the body (parsed as JSON when possible).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body.
    pub bytes: Vec<u8>,
    /// The body as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A small HTTP client bound to a server and (optionally) a user.
#[derive(Clone)]
pub struct Api {
    /// The underlying client.
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Basic-auth credentials.
    pub auth: Option<(String, String)>,
}

impl Api {
    /// A request builder for `method path` with the credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some((user, password)) = &self.auth {
            builder = builder.basic_auth(user, Some(password));
        }
        builder
    }

    /// Sends a request and collects the reply.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("HTTP body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).body(body))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Uploads `bytes` as `file_name` to `/upload/image` with extra form fields.
    pub async fn upload(
        &self,
        path: &str,
        file_name: &str,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
    ) -> Reply {
        let mut form = reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        self.send(self.request(reqwest::Method::POST, path).multipart(form))
            .await
    }

    /// Opens `/ws?clientId=...` (under `prefix`) with these credentials.
    pub async fn ws(&self, prefix: &str, client_id: Option<&str>) -> WsClient {
        let path = match client_id {
            Some(id) => format!("{prefix}/ws?clientId={id}"),
            None => format!("{prefix}/ws"),
        };
        let auth = self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        WsClient::connect(&self.base, &path, auth).await
    }

    /// Queues a prompt (`POST /prompt`), asserting 200; returns the response JSON.
    pub async fn queue(&self, prefix: &str, prompt: &Value, client_id: Option<&str>) -> Value {
        let mut body = json!({"prompt": prompt});
        if let Some(id) = client_id {
            body["client_id"] = json!(id);
        }
        let reply = self.post(&format!("{prefix}/prompt"), &body).await;
        assert_eq!(reply.status, 200, "POST {prefix}/prompt: {}", reply.json);
        reply.json
    }

    /// Polls `/history/{id}` until the prompt has finished; returns its history entry.
    pub async fn wait_history(&self, prefix: &str, prompt_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.get(&format!("{prefix}/history/{prompt_id}")).await;
            assert_eq!(reply.status, 200);
            if let Some(entry) = reply.json.get(prompt_id) {
                return entry.clone();
            }
            assert!(
                Instant::now() < deadline,
                "prompt {prompt_id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `EmptyImage(w x h, color) -> SaveImage(prefix)`: the smallest prompt that writes a file.
pub fn empty_image_prompt(width: u32, height: u32, color: u32, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    })
}
