//! A worker: claims jobs, runs them with its engine (keeping models loaded between jobs),
//! heartbeats its lease (a cancel request interrupts the engine), publishes the execution
//! events, and records the result fenced by its attempt. On shutdown (SIGTERM) it finishes the
//! job it has, reporting itself as draining. A backend outage (Redis restarting) does not stop
//! it: it backs off and carries on once the backend answers again.

mod exec;
mod run;
mod warmup;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Engine;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::job::WorkerInfo;
use crate::layout::Layout;
use crate::now_ms;

pub use exec::{done_event, execute, job_event, models_in};
pub use run::BeatTimer;
pub use warmup::{WarmupPrompt, warm_up};

/// Reports device memory `(used, total)` in bytes, when known.
#[derive(Clone)]
pub struct MemoryProbe(pub Arc<dyn Fn() -> Option<(u64, u64)> + Send + Sync>);

impl fmt::Debug for MemoryProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryProbe")
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique id.
    pub id: String,
    /// Device name reported (`cpu`, `cuda:0`).
    pub device: String,
    /// Heartbeat period (must be well under the queue's lease).
    pub heartbeat: Duration,
    /// How long to wait for work before polling again.
    pub poll: Duration,
    /// Exit after this long without work (scale to zero), if set.
    pub exit_when_idle: Option<Duration>,
    /// Device memory, reported with each heartbeat.
    pub memory: Option<MemoryProbe>,
    /// Prompts run before the worker's first heartbeat (it is not ready before they ran).
    pub warmup: Vec<WarmupPrompt>,
}

impl WorkerOptions {
    /// Options with an id derived from host, device and process.
    pub fn new(device: &str) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".into());
        Self {
            id: format!(
                "{host}-{device}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            device: device.to_string(),
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_secs(2),
            exit_when_idle: None,
            memory: None,
            warmup: Vec::new(),
        }
    }
}

/// A worker running jobs from one backend on one engine.
pub struct Worker {
    backend: Arc<dyn Backend>,
    engine: Option<Engine>,
    layout: Arc<Layout>,
    options: WorkerOptions,
    jobs_done: u64,
    loaded_models: Vec<String>,
}

/// What one round of the loop did.
enum Round {
    Ran,
    Idle,
}

/// The longest pause after repeated backend errors.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Worker {
    /// A worker over `backend`, running prompts on `engine` with files laid out by `layout`.
    pub fn new(
        backend: Arc<dyn Backend>,
        engine: Engine,
        layout: Arc<Layout>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            backend,
            engine: Some(engine),
            layout,
            options,
            jobs_done: 0,
            loaded_models: Vec::new(),
        }
    }

    fn info(&self, current: Option<&str>, draining: bool) -> WorkerInfo {
        let memory = self.options.memory.as_ref().and_then(|probe| (probe.0)());
        WorkerInfo {
            id: self.options.id.clone(),
            device: self.options.device.clone(),
            current_job: current.map(str::to_string),
            loaded_models: self.loaded_models.clone(),
            memory_used: memory.map(|m| m.0),
            memory_total: memory.map(|m| m.1),
            last_seen: now_ms(),
            jobs_done: self.jobs_done,
            draining,
        }
    }

    /// Runs until `shutdown` turns true (finishing the current job first) or, with
    /// `exit_when_idle`, until no work arrived for that long. Returns an error only when the
    /// engine itself failed (a panic); backend errors are retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(worker = %self.options.id, device = %self.options.device, backend = self.backend.name(), "worker started");
        self.warm_up().await?;
        let mut idle_since = Instant::now();
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let pause = match self.round(&shutdown).await {
                Ok(Round::Ran) => {
                    failures = 0;
                    idle_since = Instant::now();
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    if self
                        .options
                        .exit_when_idle
                        .is_some_and(|limit| idle_since.elapsed() >= limit)
                    {
                        tracing::info!(worker = %self.options.id, "no work for a while; exiting");
                        break;
                    }
                    None
                }
                Err(e) if self.engine.is_none() => return Err(e),
                Err(e) => {
                    failures += 1;
                    let pause =
                        MAX_BACKOFF.min(Duration::from_millis(100) * 2u32.pow(failures.min(6)));
                    tracing::warn!(worker = %self.options.id, "queue error (retrying in {pause:?}): {e}");
                    Some(pause)
                }
            };
            tokio::select! {
                _ = async {
                    match pause {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => self.backend.wait_for_work(self.options.poll.as_millis() as u64).await,
                    }
                } => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Err(e) = self.backend.worker_gone(&self.options.id).await {
            tracing::warn!(worker = %self.options.id, "could not deregister: {e}");
        }
        tracing::info!(worker = %self.options.id, "worker stopped");
        Ok(())
    }

    /// Runs the warm-up prompts (before the first heartbeat, so the worker is listed only once
    /// its models are loaded).
    async fn warm_up(&mut self) -> Result<()> {
        if self.options.warmup.is_empty() {
            return Ok(());
        }
        let Some(mut engine) = self.engine.take() else {
            return Ok(());
        };
        let layout = self.layout.clone();
        let prompts = self.options.warmup.clone();
        let started = Instant::now();
        let (engine, models) = tokio::task::spawn_blocking(move || {
            let models = warm_up(&mut engine, &layout, &prompts);
            (engine, models)
        })
        .await
        .map_err(|panic| engine_panicked("the warm-up", panic))?;
        self.engine = Some(engine);
        self.loaded_models = models?;
        tracing::info!(worker = %self.options.id, seconds = started.elapsed().as_secs_f64(), models = ?self.loaded_models, "warmed up; ready for jobs");
        Ok(())
    }

    /// Heartbeat, janitor, claim, and run what was claimed.
    async fn round(&mut self, shutdown: &watch::Receiver<bool>) -> Result<Round> {
        self.backend
            .worker_heartbeat(&self.info(None, false))
            .await?;
        self.backend.requeue_expired().await?;
        match self.backend.claim(&self.options.id).await? {
            Some(lease) => {
                self.run_lease(lease, shutdown.clone()).await?;
                Ok(Round::Ran)
            }
            None => Ok(Round::Idle),
        }
    }
}

/// Records how an attempt ended, retrying while the backend is unreachable (for up to a minute:
/// after that the lease has long expired and another worker reruns the job). Returns false when
/// the lease was stale.
pub async fn record_outcome(
    backend: &dyn Backend,
    lease: &crate::job::Lease,
    outcome: crate::job::Outcome,
) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match backend.complete(lease, outcome.clone()).await {
            Ok(recorded) => return Ok(recorded),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(job = %lease.job.id, "cannot record the result yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The error for an engine that panicked (the worker cannot go on without it).
fn engine_panicked(job: &str, panic: tokio::task::JoinError) -> Error {
    tracing::error!(job = %job, "the engine panicked: {panic}");
    Error::Store(format!("engine panicked running {job}"))
}
