//! `comfyrs worker`: a GPU (or CPU) worker for the shared Redis queue. It pulls jobs, runs them
//! with its engine (models stay loaded between jobs), heartbeats its lease, reports its device
//! memory and loaded models, and on SIGTERM finishes its current job before exiting (a second
//! signal exits at once; the job then goes back to the queue when its lease expires).
//!
//! Outputs are written to the shared filesystem: give every worker the server's
//! `--base-directory` (an NFS or similar mount), so `users/<name>/output/` is the same folder
//! for the server that serves `/view` and for the worker that saves the files.
//!
//! With `--http ADDR` the worker needs no Redis and no shared filesystem: it takes one job per
//! HTTP request from a server started with `--dispatch-http` (push mode, for serverless GPU
//! platforms that start a container per request; see `crate::push`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use engine::Engine;
use queue::worker::WarmupPrompt;
use queue::{Layout, Worker, WorkerOptions};
use tokio::sync::watch;

use crate::device::DeviceName;
use crate::push::{self, endpoint::Endpoint};
use crate::queue_args::QueueArgs;
use crate::serve::{registry, shutdown_signal};
use crate::settings::{CacheArgs, PathArgs};

/// `comfyrs worker` arguments.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The device to run on: `cpu` or `cuda:N`.
    #[arg(long, env = "COMFYRS_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Exit after this many seconds without work (scale to zero).
    #[arg(long, env = "COMFYRS_EXIT_WHEN_IDLE")]
    pub exit_when_idle: Option<f64>,
    /// Most finished jobs kept in history (when this worker trims it).
    #[arg(long, env = "COMFYRS_MAX_HISTORY", default_value_t = 10_000)]
    pub max_history: usize,
    /// Workflows (API or UI format) to run once before taking jobs, so their models are loaded
    /// when the worker reports itself ready; a failing warm-up stops the worker. Repeatable.
    #[arg(long, env = "COMFYRS_WARMUP", value_delimiter = ',')]
    pub warmup: Vec<std::path::PathBuf>,
    /// Register the development nodes (DevWorkload) for load tests.
    #[arg(long, env = "COMFYRS_DEV_NODES")]
    pub dev_nodes: bool,
    /// Push mode: take jobs over HTTP on this address (`0.0.0.0:8000`) instead of pulling
    /// them from Redis.
    #[arg(long, env = "COMFYRS_WORKER_HTTP")]
    pub http: Option<SocketAddr>,
    /// The secret shared with the server's --dispatch-http (required with --http).
    #[arg(long, env = "COMFYRS_HTTP_SECRET", hide_env_values = true)]
    pub http_secret: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub paths: PathArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Runs the worker until SIGTERM / Ctrl-C (or idle exit).
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    args.queue.check()?;
    if let Some(addr) = args.http {
        return run_http(args, addr).await;
    }
    let url = args
        .queue
        .redis
        .clone()
        .context("comfyrs worker needs --redis URL (the queue it shares with the server), or --http ADDR for push mode")?;
    let device = DeviceName::parse(&args.device)?;
    let layout = layout(&args, &device)?;
    let config = args.queue.config(args.max_history, 0);
    let backend = args.queue.connect_redis(&url, config).await?;
    let registry = registry(args.dev_nodes);
    let warmup = warmup_prompts(&args.warmup, &registry, &layout.base)?;
    let engine = Engine::new(registry, args.cache.policy());
    let mut options = WorkerOptions::new(&args.device);
    options.warmup = warmup;
    options.heartbeat = args.queue.heartbeat();
    options.exit_when_idle = args
        .exit_when_idle
        .map(|s| Duration::from_secs_f64(s.max(0.0)));
    options.memory = Some(device.memory_probe());
    let worker = Worker::new(backend, engine, layout, options);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing the current job first (signal again to exit now)");
        let _ = stop_tx.send(true);
        shutdown_signal().await;
        tracing::warn!("exiting without finishing the current job; it will be retried");
        std::process::exit(130);
    });
    worker.run(stop_rx).await.context("the worker failed")?;
    Ok(())
}

/// Reads the warm-up workflows.
pub fn warmup_prompts(
    files: &[std::path::PathBuf],
    registry: &nodes::Registry,
    env: &nodes::Env,
) -> anyhow::Result<Vec<WarmupPrompt>> {
    files
        .iter()
        .map(|path| {
            let (prompt, extra_data) = crate::run::load_prompt(path, registry, env)?;
            Ok(WarmupPrompt {
                name: path.display().to_string(),
                prompt,
                extra_data,
            })
        })
        .collect()
}

/// The worker's folders (`<base>/users/<name>/...`) with models on `device`.
fn layout(args: &WorkerArgs, device: &DeviceName) -> anyhow::Result<Arc<Layout>> {
    let mut env = args.paths.env()?;
    env.device = device.open()?;
    let base = args.paths.base_directory.clone();
    Ok(Arc::new(Layout::new(env, base.join("users"))))
}

/// Push mode: serves `POST /run` on `addr` until SIGTERM / Ctrl-C (a running job finishes
/// first).
async fn run_http(args: WorkerArgs, addr: SocketAddr) -> anyhow::Result<()> {
    let secret = push::require_secret(args.http_secret.as_deref(), "--http")?;
    if args.queue.redis.is_some() {
        tracing::warn!("--http: jobs come over HTTP; --redis is not used");
    }
    let device = DeviceName::parse(&args.device)?;
    let layout = layout(&args, &device)?;
    let registry = registry(args.dev_nodes);
    let warmup = warmup_prompts(&args.warmup, &registry, &layout.base)?;
    let engine = Engine::new(registry, args.cache.policy());
    let endpoint = Arc::new(Endpoint::new(
        engine,
        layout,
        secret,
        args.queue.heartbeat(),
    ));
    // The endpoint answers (503, not ready) while the warm-up loads the models.
    let server = tokio::spawn(push::endpoint::serve(
        endpoint.clone(),
        addr,
        shutdown_signal(),
    ));
    endpoint.warm_up(warmup).await?;
    server.await.context("the HTTP endpoint stopped")?
}
