//! A real `redis-server` for tests and benchmarks: started on a free loopback port in its own
//! temporary folder with AOF on (`appendfsync always`, so a SIGKILL loses nothing that was
//! acknowledged), killable with SIGKILL and restartable on the same port and data.
//! The binary is `redis-server` on the PATH, or `$COMFYRS_REDIS_SERVER`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS material for a `rediss://` server (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
    /// CA that signed the certificate.
    pub ca: PathBuf,
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `requirepass`.
    pub password: Option<String>,
    /// Serve TLS only.
    pub tls: Option<TlsFiles>,
    /// `appendfsync` (`always` when unset: a SIGKILL loses nothing acknowledged; benchmarks
    /// also measure `everysec`, Redis' default).
    pub appendfsync: Option<String>,
}

/// A running (or killed) `redis-server` owned by a test.
pub struct RedisServer {
    dir: PathBuf,
    port: u16,
    options: ServerOptions,
    child: Option<Child>,
}

/// A free loopback TCP port.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn binary() -> String {
    std::env::var("COMFYRS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    /// Starts a plain server (no password, no TLS).
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(options: ServerOptions) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("comfyrs-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            dir,
            port: free_port()?,
            options,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The URL clients connect with (password included; `rediss://` for TLS).
    pub fn url(&self) -> String {
        let auth = match &self.options.password {
            Some(p) => format!(":{p}@"),
            None => String::new(),
        };
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running server (`None` while killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data folder (AOF files, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server with SIGKILL (no chance to save anything more).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data folder (kills it first if running).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = self.dir.join("redis.log");
        let log_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(binary());
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--appendfsync")
            .arg(self.options.appendfsync.as_deref().unwrap_or("always"))
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(&log);
        match &self.options.tls {
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                cmd.arg("--port").arg(self.port.to_string());
            }
        }
        if let Some(password) = &self.options.password {
            cmd.arg("--requirepass").arg(password);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {}: {e}", binary())))?;
        self.child = Some(child);
        self.wait_ready(&log, log_before)
    }

    fn wait_ready(&mut self, log: &Path, log_before: u64) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(std::io::Error::other(format!(
                    "redis-server exited ({status}); see {}",
                    log.display()
                )));
            }
            let ready = match self.options.tls {
                Some(_) => log_says_ready(log, log_before),
                None => self.answers_ping(),
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(format!(
            "redis-server did not become ready; see {}",
            log.display()
        )))
    }

    /// Whether the server answers PING (after AUTH) with PONG, i.e. has loaded its data.
    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = String::new();
        if let Some(p) = &self.options.password {
            request.push_str(&format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len()));
        }
        request.push_str("*1\r\n$4\r\nPING\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&reply).contains("\r\n")
            || (self.options.password.is_some()
                && String::from_utf8_lossy(&reply).matches("\r\n").count() < 2)
        {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&reply).contains("+PONG")
    }
}

fn log_says_ready(log: &Path, from: u64) -> bool {
    std::fs::read(log)
        .ok()
        .and_then(|bytes| bytes.get(from as usize..).map(|b| b.to_vec()))
        .is_some_and(|new| String::from_utf8_lossy(&new).contains("Ready to accept connections"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
