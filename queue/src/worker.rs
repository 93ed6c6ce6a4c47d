//! A worker: claims jobs, runs them with its engine (keeping models loaded between jobs),
//! heartbeats its lease (a cancel request interrupts the engine), publishes the execution
//! events, and records the result fenced by its attempt. On shutdown it finishes the job it has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Engine, Event, EventSink, Job as EngineJob, Outcome as EngineOutcome};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::backend::Backend;
use crate::error::Result;
use crate::job::{EventMessage, Job, JobEvent, JobResult, Lease, Outcome, WorkerInfo};
use crate::layout::Layout;
use crate::now_ms;

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
}

impl WorkerOptions {
    /// Options with an id derived from host, device and process.
    pub fn new(device: &str) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
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
        }
    }
}

/// Sends engine events into a channel (the engine runs on a blocking thread).
struct ChannelSink {
    tx: mpsc::UnboundedSender<Event>,
}

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

/// The job event for an engine event.
pub fn job_event(job: &Job, event: &Event) -> JobEvent {
    let message = match event {
        Event::Preview {
            node, mime, bytes, ..
        } => EventMessage::Preview {
            node: node.clone(),
            mime: mime.to_string(),
            bytes: bytes.clone(),
        },
        Event::ProgressText { node, text, .. } => EventMessage::Text {
            node: node.clone(),
            text: text.clone(),
        },
        other => EventMessage::Json {
            kind: other.name().to_string(),
            data: other.data().unwrap_or(Json::Null),
        },
    };
    JobEvent {
        job_id: job.id.clone(),
        user: job.user.clone(),
        client_id: job.client_id.clone(),
        message,
    }
}

/// The final `executing {node: null}` message that tells clients the prompt is done.
pub fn done_event(job: &Job) -> JobEvent {
    JobEvent {
        job_id: job.id.clone(),
        user: job.user.clone(),
        client_id: job.client_id.clone(),
        message: EventMessage::Json {
            kind: "executing".into(),
            data: json!({"node": null, "prompt_id": job.id}),
        },
    }
}

/// A worker running jobs from one backend on one engine.
pub struct Worker {
    backend: Arc<dyn Backend>,
    engine: Option<Engine>,
    layout: Arc<Layout>,
    options: WorkerOptions,
    jobs_done: u64,
}

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
        }
    }

    fn info(&self, current: Option<&str>, draining: bool) -> WorkerInfo {
        WorkerInfo {
            id: self.options.id.clone(),
            device: self.options.device.clone(),
            current_job: current.map(str::to_string),
            loaded_models: Vec::new(),
            memory_used: None,
            memory_total: None,
            last_seen: now_ms(),
            jobs_done: self.jobs_done,
            draining,
        }
    }

    /// Runs until `shutdown` turns true (finishing the current job first) or, with
    /// `exit_when_idle`, until no work arrived for that long.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(worker = %self.options.id, device = %self.options.device, backend = self.backend.name(), "worker started");
        let mut idle_since = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.backend
                .worker_heartbeat(&self.info(None, false))
                .await?;
            self.backend.requeue_expired().await?;
            match self.backend.claim(&self.options.id).await? {
                Some(lease) => {
                    self.run_lease(lease).await?;
                    idle_since = Instant::now();
                }
                None => {
                    if self
                        .options
                        .exit_when_idle
                        .is_some_and(|limit| idle_since.elapsed() >= limit)
                    {
                        tracing::info!(worker = %self.options.id, "no work for a while; exiting");
                        break;
                    }
                    tokio::select! {
                        _ = self.backend.wait_for_work(self.options.poll.as_millis() as u64) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        self.backend.worker_gone(&self.options.id).await?;
        tracing::info!(worker = %self.options.id, "worker stopped");
        Ok(())
    }

    async fn run_lease(&mut self, lease: Lease) -> Result<()> {
        let job = lease.job.clone();
        tracing::info!(job = %job.id, user = %job.user, attempt = lease.attempt, "running job");
        let Some(mut engine) = self.engine.take() else {
            return Ok(());
        };
        let interrupt = engine.interrupt_handle();
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let publisher = {
            let backend = self.backend.clone();
            let job = job.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if let Err(e) = backend.publish(job_event(&job, &event)).await {
                        tracing::warn!(job = %job.id, "could not publish an event: {e}");
                    }
                }
            })
        };
        let (stop_beat, mut stop_rx) = watch::channel(false);
        let heart = {
            let backend = self.backend.clone();
            let lease = lease.clone();
            let interrupt = interrupt.clone();
            let period = self.options.heartbeat;
            let info = self.info(Some(&job.id), false);
            tokio::spawn(async move {
                let mut lost = false;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = stop_rx.changed() => break,
                    }
                    let mut info = info.clone();
                    info.last_seen = now_ms();
                    let _ = backend.worker_heartbeat(&info).await;
                    match backend.heartbeat(&lease).await {
                        Ok(reply) if reply.lost => {
                            tracing::warn!(job = %lease.job.id, "lease lost; stopping the run");
                            lost = true;
                            interrupt.trigger();
                            break;
                        }
                        Ok(reply) if reply.cancel => interrupt.trigger(),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(job = %lease.job.id, "heartbeat failed: {e}"),
                    }
                }
                lost
            })
        };
        let env = self.layout.env_for(&job.user);
        let run_job = job.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let sink = ChannelSink { tx };
            let result = execute(&mut engine, &run_job, &env, &sink);
            (engine, result)
        })
        .await;
        let _ = stop_beat.send(true);
        let lost = heart.await.unwrap_or(false);
        let _ = publisher.await;
        let (engine, outcome) = match joined {
            Ok(pair) => pair,
            Err(panic) => {
                tracing::error!(job = %job.id, "the engine panicked: {panic}");
                return Err(crate::error::Error::Store(format!(
                    "engine panicked running {}",
                    job.id
                )));
            }
        };
        self.engine = Some(engine);
        if lost {
            return Ok(());
        }
        if self.backend.complete(&lease, outcome).await? {
            self.jobs_done += 1;
            self.backend.publish(done_event(&job)).await?;
        }
        Ok(())
    }
}

/// Validates and runs one job on `engine` (blocking).
pub fn execute(engine: &mut Engine, job: &Job, env: &nodes::Env, sink: &dyn EventSink) -> Outcome {
    let validated = match engine.validate(env, &job.prompt, Some(&job.outputs)) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("{}: {}", e.error.message, e.error.details);
            tracing::warn!(job = %job.id, "the prompt no longer validates on this worker: {message}");
            let error = json!({"prompt_id": job.id, "node_id": "", "node_type": "", "executed": [],
                               "exception_message": message, "exception_type": "ValidationError",
                               "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": now_ms()});
            sink.emit(Event::ExecutionError(error.clone()));
            return Outcome::Finished(JobResult {
                status_str: "error".into(),
                completed: false,
                messages: vec![("execution_error".into(), error)],
                ..Default::default()
            });
        }
    };
    let engine_job = EngineJob {
        prompt_id: &job.id,
        prompt: &validated.prompt,
        outputs: &validated.outputs,
        extra_data: &job.extra_data,
        env,
    };
    let result = engine.execute(&engine_job, sink);
    let job_result = JobResult {
        outputs: result.outputs,
        meta: result.meta,
        status_str: if result.outcome == EngineOutcome::Success {
            "success".into()
        } else {
            "error".into()
        },
        completed: result.outcome == EngineOutcome::Success,
        messages: result.messages,
    };
    match result.outcome {
        EngineOutcome::Interrupted => Outcome::Interrupted(job_result),
        _ => Outcome::Finished(job_result),
    }
}
