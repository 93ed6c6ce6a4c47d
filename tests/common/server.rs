//! Starting the real `comfyrs serve` binary: a temporary base directory, `--port 0` (the bound
//! port is read from the log), workshop users with argon2 hashes, the installed frontend;
//! stopped on drop, restartable on the same directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::api::Api;
use super::repo_root;

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
    /// The data directory (default: `data/` in the server's temporary folder).
    pub data_dir: Option<PathBuf>,
    /// Environment variables set for the process (after the defaults, so `RUST_LOG` may be
    /// overridden).
    pub env: Vec<(String, String)>,
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
            .arg(self.data_dir())
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
        for (key, value) in &self.options.env {
            cmd.env(key, value);
        }
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
                .filter_map(|l| l.split("listening on ").nth(1))
                .filter_map(|rest| rest.split("://").nth(1))
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
        self.options
            .data_dir
            .clone()
            .unwrap_or_else(|| self.base.path().join("data"))
    }

    /// The users file written for workshop mode.
    pub fn users_file(&self) -> PathBuf {
        self.base.path().join("users.toml")
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
