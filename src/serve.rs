//! `comfyrs serve`: the ComfyUI-compatible server with its embedded queue and a local worker per
//! device (none with `--no-local-worker`), ready on a fresh machine with no configuration.
//! With `--redis URL` the queue is the shared Redis one, so `comfyrs worker` processes on other
//! machines (sharing the `--base-directory` filesystem) run the jobs too. With
//! `--dispatch-http URL` it also pushes jobs to `comfyrs worker --http` endpoints.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use engine::Engine;
use queue::{Backend, Embedded, Layout, Worker, WorkerOptions};
use server::auth::Users;
use server::limits::UserLimits;
use server::{AppState, ServerConfig};
use tokio::sync::watch;

use crate::device::DeviceName;
use crate::push::dispatch::Dispatcher;
use crate::queue_args::QueueArgs;
use crate::settings::{CacheArgs, PathArgs};

/// `comfyrs serve` arguments (ComfyUI's flag names where they exist).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (ComfyUI's --listen; bare `--listen` means 0.0.0.0). Several can be
    /// given separated by commas.
    #[arg(long, env = "COMFYRS_LISTEN", default_value = "127.0.0.1", num_args = 0..=1, default_missing_value = "0.0.0.0")]
    pub listen: String,
    /// Port (ComfyUI's default 8188).
    #[arg(long, env = "COMFYRS_PORT", default_value_t = 8188)]
    pub port: u16,
    /// Workshop users (TOML `[[user]]` entries with argon2 hashes). Without it the server is
    /// single-user with no authentication.
    #[arg(long, env = "COMFYRS_USERS")]
    pub users: Option<PathBuf>,
    /// The ComfyUI frontend's static folder (default: <base>/frontend/static as installed by
    /// scripts/setup.sh).
    #[arg(long = "front-end-root", env = "COMFYRS_FRONTEND_ROOT")]
    pub front_end_root: Option<PathBuf>,
    /// The workflow templates folder (default: <base>/frontend/templates).
    #[arg(long, env = "COMFYRS_TEMPLATES_ROOT")]
    pub templates_root: Option<PathBuf>,
    /// Workflows shown in every user's workflow list (read-only).
    #[arg(long, env = "COMFYRS_WORKSHOP_WORKFLOWS")]
    pub workshop_workflows: Option<PathBuf>,
    /// Largest upload in MB (ComfyUI's --max-upload-size).
    #[arg(long, env = "COMFYRS_MAX_UPLOAD_MB", default_value_t = 100.0)]
    pub max_upload_size: f64,
    /// Let participants upload their own LoRAs (`.safetensors` only, validated) into their own
    /// `users/<name>/models/loras/` (`POST /api/upload/lora`, form field `lora`).
    #[arg(long, env = "COMFYRS_ALLOW_LORA_UPLOAD")]
    pub allow_lora_upload: bool,
    /// Largest participant LoRA upload in MB.
    #[arg(long, env = "COMFYRS_MAX_LORA_UPLOAD_MB", default_value_t = 2048.0)]
    pub max_lora_upload_size: f64,
    /// Send CORS headers for this origin (ComfyUI's --enable-cors-header; bare flag = "*").
    #[arg(long, num_args = 0..=1, default_missing_value = "*")]
    pub enable_cors_header: Option<String>,
    /// The embedded queue's database (default: <base>/queue.redb; unused with --redis).
    #[arg(long, env = "COMFYRS_QUEUE_DB")]
    pub queue_db: Option<PathBuf>,
    /// Most pending jobs per user (0 = unlimited; default 20 with --users, else unlimited as
    /// in ComfyUI).
    #[arg(long, env = "COMFYRS_MAX_PENDING_PER_USER")]
    pub max_pending_per_user: Option<usize>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Finished jobs kept in history.
    #[arg(long, env = "COMFYRS_MAX_HISTORY", default_value_t = 10_000)]
    pub max_history: usize,
    /// Run no worker in this process (jobs are run by `comfyrs worker` processes).
    #[arg(long, env = "COMFYRS_NO_LOCAL_WORKER")]
    pub no_local_worker: bool,
    /// Devices for local workers, one worker each (`cpu`, `cuda:0`, ...).
    #[arg(
        long,
        env = "COMFYRS_DEVICES",
        value_delimiter = ',',
        default_value = "cpu"
    )]
    pub devices: Vec<String>,
    /// Refuse new prompts while the output disk has less free space than this (GB, 10^9
    /// bytes; 0 turns the guard off).
    #[arg(long, env = "COMFYRS_MIN_FREE_DISK_GB", default_value_t = 1.0)]
    pub min_free_disk_gb: f64,
    /// Serve HTTPS with this PEM certificate chain (e.g. Let's Encrypt's fullchain.pem);
    /// needs --tls-key.
    #[arg(long, env = "COMFYRS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (e.g. privkey.pem).
    #[arg(long, env = "COMFYRS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Register the development nodes (DevWorkload) for load tests.
    #[arg(long, env = "COMFYRS_DEV_NODES")]
    pub dev_nodes: bool,
    /// Push jobs to these `comfyrs worker --http` endpoints (repeatable, or comma-separated),
    /// one job at a time each, with the queue's leases, retries and cancellation.
    #[arg(
        long = "dispatch-http",
        env = "COMFYRS_DISPATCH_HTTP",
        value_delimiter = ','
    )]
    pub dispatch_http: Vec<String>,
    /// The secret shared with the --dispatch-http endpoints (their --http-secret).
    #[arg(long, env = "COMFYRS_HTTP_SECRET", hide_env_values = true)]
    pub http_secret: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Pending jobs per user when `--max-pending-per-user` is not given: a workshop's default.
const WORKSHOP_MAX_PENDING: usize = 20;

impl ServeArgs {
    /// The pending-jobs limit: the flag, else [`WORKSHOP_MAX_PENDING`] in workshop mode and
    /// unlimited for a single user.
    pub fn max_pending_per_user(&self) -> usize {
        self.max_pending_per_user
            .unwrap_or(if self.users.is_some() {
                WORKSHOP_MAX_PENDING
            } else {
                0
            })
    }
}

/// Per-participant limits (the instructor and single-user mode are exempt; 0 turns one off).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest `POST /prompt` body in MB.
    #[arg(long, env = "COMFYRS_MAX_PROMPT_MB", default_value_t = 8.0)]
    pub max_prompt_mb: f64,
    /// Most nodes in a prompt (applies to everyone).
    #[arg(long, env = "COMFYRS_MAX_PROMPT_NODES", default_value_t = 5000)]
    pub max_prompt_nodes: usize,
    /// Largest width or height a prompt may ask for.
    #[arg(long, env = "COMFYRS_MAX_DIMENSION", default_value_t = 4096)]
    pub max_dimension: u64,
    /// Largest frame count (`length`, `frames_number`) a prompt may ask for.
    #[arg(long, env = "COMFYRS_MAX_FRAMES", default_value_t = 1025)]
    pub max_frames: u64,
    /// Largest batch size a prompt may ask for.
    #[arg(long, env = "COMFYRS_MAX_BATCH", default_value_t = 16)]
    pub max_batch: u64,
    /// Output disk per user in GB; new prompts are refused once it is full.
    #[arg(long, env = "COMFYRS_MAX_OUTPUT_GB", default_value_t = 20.0)]
    pub max_output_gb: f64,
    /// Prompts a user may submit per minute.
    #[arg(long, env = "COMFYRS_PROMPTS_PER_MINUTE", default_value_t = 60)]
    pub prompts_per_minute: u32,
    /// Failed logins per user name and per client address before logins are refused (429)
    /// for `--login-window` seconds (applies to everyone).
    #[arg(long, env = "COMFYRS_MAX_LOGIN_FAILURES", default_value_t = 10)]
    pub max_login_failures: u32,
    /// The window failed logins are counted in (seconds).
    #[arg(long, env = "COMFYRS_LOGIN_WINDOW", default_value_t = 300)]
    pub login_window: u64,
    /// WebSocket connections a user may hold at once.
    #[arg(long, env = "COMFYRS_MAX_SOCKETS_PER_USER", default_value_t = 16)]
    pub max_sockets_per_user: usize,
    /// Longest life of a browser session (`/login`), in hours.
    #[arg(long, env = "COMFYRS_SESSION_TTL_HOURS", default_value_t = 12.0)]
    pub session_ttl_hours: f64,
    /// A browser session ends after this many minutes without a request.
    #[arg(long, env = "COMFYRS_SESSION_IDLE_MINUTES", default_value_t = 120.0)]
    pub session_idle_minutes: f64,
    /// Mark the session cookie `Secure` (browsers send it over HTTPS only): set it when a
    /// reverse proxy terminates TLS in front of the server (with --tls-cert it is always set).
    #[arg(long, env = "COMFYRS_COOKIE_SECURE")]
    pub cookie_secure: bool,
}

impl LimitArgs {
    /// How long browser sessions last (`secure`: the server speaks HTTPS).
    pub fn session_policy(&self, secure: bool) -> server::sessions::SessionPolicy {
        let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.001));
        server::sessions::SessionPolicy {
            ttl: seconds(self.session_ttl_hours * 3600.0),
            idle: seconds(self.session_idle_minutes * 60.0),
            secure: secure || self.cookie_secure,
        }
    }

    /// The server's per-user limits.
    pub fn user_limits(&self) -> UserLimits {
        UserLimits {
            max_prompt_bytes: (self.max_prompt_mb.max(0.0) * 1024.0 * 1024.0) as usize,
            max_dimension: self.max_dimension,
            max_frames: self.max_frames,
            max_batch: self.max_batch,
            max_output_bytes: (self.max_output_gb.max(0.0) * (1u64 << 30) as f64) as u64,
            prompts_per_minute: self.prompts_per_minute,
            max_login_failures: self.max_login_failures,
            login_window: std::time::Duration::from_secs(self.login_window),
            max_sockets_per_user: self.max_sockets_per_user,
        }
    }

    /// The validation limits.
    pub fn prompt_limits(&self) -> engine::Limits {
        let max_nodes = match self.max_prompt_nodes {
            0 => usize::MAX,
            n => n,
        };
        engine::Limits {
            max_nodes,
            ..engine::Limits::default()
        }
    }
}

/// The node registry for a process.
pub fn registry(dev_nodes: bool) -> Arc<nodes::Registry> {
    let mut registry = nodes::builtin_registry();
    if dev_nodes {
        nodes::dev::register(&mut registry);
    }
    Arc::new(registry)
}

fn addresses(listen: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    listen
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|ip| {
            let ip: IpAddr = ip
                .parse()
                .with_context(|| format!("--listen: {ip:?} is not an IP address"))?;
            Ok(SocketAddr::new(ip, port))
        })
        .collect()
}

fn existing(path: PathBuf) -> Option<PathBuf> {
    path.join("index.html").is_file().then_some(path)
}

/// Runs the server until Ctrl-C / SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let base = args.paths.base_directory.clone();
    let env = args.paths.env()?;
    let layout = Arc::new(Layout::new(env, base.join("users")));
    let registry = registry(args.dev_nodes);
    args.queue.check()?;
    let queue_config = args
        .queue
        .config(args.max_history, args.max_pending_per_user());
    let backend: Arc<dyn Backend> = match &args.queue.redis {
        Some(url) => args.queue.connect_redis(url, queue_config).await?,
        None => {
            let db = args
                .queue_db
                .clone()
                .unwrap_or_else(|| base.join("queue.redb"));
            Arc::new(
                Embedded::open(&db, queue_config)
                    .with_context(|| format!("opening the queue at {}", db.display()))?,
            )
        }
    };
    let users = match &args.users {
        Some(path) => Some(Arc::new(Users::load(path)?)),
        None => None,
    };
    let frontend_root = args
        .front_end_root
        .clone()
        .or_else(|| existing(base.join("frontend/static")));
    if frontend_root.is_none() {
        tracing::warn!(
            "the ComfyUI frontend is not installed (run scripts/setup.sh); serving the API only"
        );
    }
    let templates_root = args.templates_root.clone().or_else(|| {
        let p = base.join("frontend/templates");
        p.join("index.json").is_file().then_some(p)
    });
    let config = ServerConfig {
        backend: backend.clone(),
        registry: registry.clone(),
        layout: layout.clone(),
        users,
        frontend_root,
        templates_root,
        workshop_workflows: args.workshop_workflows.clone(),
        user_root: base.join("user"),
        max_upload_bytes: (args.max_upload_size * 1024.0 * 1024.0) as usize,
        lora_upload_bytes: args
            .allow_lora_upload
            .then_some((args.max_lora_upload_size * 1024.0 * 1024.0) as u64),
        max_body_bytes: 64 << 20,
        cors_origin: args.enable_cors_header.clone(),
        limits: args.limits.prompt_limits(),
        user_limits: args.limits.user_limits(),
        argv: std::env::args().collect(),
        devices: args.devices.clone(),
        min_free_disk_bytes: server::disk::gb_to_bytes(args.min_free_disk_gb),
        session_policy: args.limits.session_policy(args.tls_cert.is_some()),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls::server_config(cert, key)?),
        _ => None,
    };
    let state = AppState::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    let mut dispatchers = Vec::new();
    if !args.no_local_worker {
        for device in &args.devices {
            // Each worker runs its prompts on its own device; folders, models and services
            // (the model cache that /free clears) are the shared ones.
            let mut base = layout.base.clone();
            base.device = crate::settings::open_device(device)?;
            let worker_layout = Arc::new(Layout::new(base, layout.users_root.clone()));
            let engine = Engine::new(registry.clone(), args.cache.policy());
            let mut options = WorkerOptions::new(device);
            options.heartbeat = args.queue.heartbeat();
            options.memory = DeviceName::parse(device).ok().map(DeviceName::memory_probe);
            let worker = Worker::new(backend.clone(), engine, worker_layout, options);
            let rx = stop_rx.clone();
            workers.push(tokio::spawn(async move { worker.run(rx).await }));
        }
    }
    let urls: Vec<&String> = args
        .dispatch_http
        .iter()
        .filter(|u| !u.trim().is_empty())
        .collect();
    if !urls.is_empty() {
        let secret = crate::push::require_secret(args.http_secret.as_deref(), "--dispatch-http")?;
        for url in urls {
            let dispatcher = Dispatcher::new(
                backend.clone(),
                layout.clone(),
                url.trim(),
                secret.clone(),
                args.queue.heartbeat(),
            )?;
            let rx = stop_rx.clone();
            dispatchers.push(tokio::spawn(dispatcher.run(rx)));
        }
    }
    let addrs = addresses(&args.listen, args.port)?;
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing running jobs");
        let _ = stop_tx.send(true);
    };
    server::serve(state, &addrs, tls, shutdown).await?;
    for worker in workers {
        match worker.await {
            Ok(Err(e)) => tracing::error!("worker stopped with an error: {e}"),
            Err(e) => tracing::error!("worker task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    for dispatcher in dispatchers {
        if let Err(e) = dispatcher.await {
            tracing::error!("dispatcher task failed: {e}");
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
