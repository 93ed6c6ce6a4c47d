//! The server's side of push mode (`comfyrs serve --dispatch-http URL`): one dispatcher per
//! endpoint acts as a worker of the queue. While the endpoint answers ready and idle, it
//! claims a job, sends it with the input files it names, heartbeats the lease while the
//! response streams, publishes each event (WebSocket clients see progress as with pulled
//! jobs), writes the output files into the server's user folders and records the outcome.
//! A cancel drops the connection (the endpoint interrupts the run) and records the job
//! interrupted. A stream that ends without an outcome (the endpoint died, the network broke)
//! records nothing: the lease lapses and the queue retries the job under its attempt limit,
//! exactly as for a pull worker that died.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use queue::push::protocol::{HEALTH_PATH, RUN_PATH};
use queue::push::{FileData, Health, Line, LineReader, RunRequest, referenced_inputs, write_file};
use queue::worker::{BeatTimer, done_event};
use queue::{
    Backend, EventMessage, Job, JobEvent, JobResult, Layout, Lease, Outcome, WorkerInfo, now_ms,
};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

/// Longest silence on a running job's stream (the endpoint sends keep-alives) before the
/// attempt counts as lost.
const STALL: Duration = Duration::from_secs(30);
/// Longest stream line (an output file, base64).
const MAX_LINE: usize = 2 << 30;
/// Longest pause between tries while the endpoint is unreachable or busy.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Sends jobs from `backend` to one push endpoint.
pub struct Dispatcher {
    backend: Arc<dyn Backend>,
    layout: Arc<Layout>,
    url: String,
    /// The URL without credentials (for logs and the worker list).
    shown: String,
    secret: String,
    http: reqwest::Client,
    id: String,
    heartbeat: Duration,
    jobs_done: u64,
    /// Whether the last health check got an answer (to log changes only).
    reachable: bool,
}

/// What one round did.
enum Round {
    Ran,
    Idle,
    Unavailable,
}

/// How a pushed attempt ended.
enum End {
    /// The endpoint reported the outcome.
    Outcome(Outcome),
    /// A cancel was requested: the connection was dropped.
    Cancelled,
    /// No outcome: the lease lapses and the job is retried.
    Lost(String),
}

/// What the lease watcher saw.
#[derive(Debug, PartialEq)]
enum Verdict {
    Stopped,
    Cancel,
    Lost,
}

impl Dispatcher {
    /// A dispatcher to the endpoint at `url` (`http://host:port`), authenticating with
    /// `secret`, beating leases every `heartbeat`. Its worker id is `http:<host:port>`.
    pub fn new(
        backend: Arc<dyn Backend>,
        layout: Arc<Layout>,
        url: &str,
        secret: String,
        heartbeat: Duration,
    ) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--dispatch-http {url}"))?;
        let host = parsed
            .host_str()
            .with_context(|| format!("--dispatch-http {url}: no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        // Shown in /admin and logs: without credentials a URL might carry.
        let shown = format!("{}://{host}:{port}{}", parsed.scheme(), parsed.path());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            backend,
            layout,
            url: url.trim_end_matches('/').to_string(),
            shown: shown.trim_end_matches('/').to_string(),
            secret,
            http,
            id: format!("http:{host}:{port}"),
            heartbeat,
            jobs_done: 0,
            reachable: true,
        })
    }

    fn info(&self, current: Option<&str>) -> WorkerInfo {
        WorkerInfo {
            id: self.id.clone(),
            device: self.shown.clone(),
            current_job: current.map(str::to_string),
            last_seen: now_ms(),
            jobs_done: self.jobs_done,
            ..WorkerInfo::default()
        }
    }

    /// Dispatches until `shutdown` turns true (after the running job).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, "dispatching jobs to {}", self.shown);
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let pause = match self.round().await {
                Ok(Round::Ran) => {
                    failures = 0;
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    None
                }
                Ok(Round::Unavailable) => {
                    failures += 1;
                    Some(failures)
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(worker = %self.id, "queue error: {e}");
                    Some(failures)
                }
            };
            tokio::select! {
                _ = async {
                    match pause {
                        Some(n) => tokio::time::sleep(
                            MAX_BACKOFF.min(Duration::from_millis(50) * 2u32.pow(n.min(6))),
                        ).await,
                        None => self.backend.wait_for_work(1_000).await,
                    }
                } => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Err(e) = self.backend.worker_gone(&self.id).await {
            tracing::warn!(worker = %self.id, "could not deregister: {e}");
        }
    }

    /// Janitor, health check, claim, and run what was claimed.
    async fn round(&mut self) -> queue::Result<Round> {
        self.backend.requeue_expired().await?;
        let health = self.health().await;
        match &health {
            Ok(_) if !self.reachable => {
                tracing::info!(worker = %self.id, "endpoint {} answers", self.shown);
                self.reachable = true;
            }
            Err(e) if self.reachable => {
                tracing::warn!(worker = %self.id, "endpoint {} unreachable (retrying): {e}", self.shown);
                self.reachable = false;
            }
            _ => {}
        }
        let Ok(health) = health else {
            return Ok(Round::Unavailable);
        };
        // An endpoint that answers shows as a worker (busy ones too: still interrupting).
        self.backend.worker_heartbeat(&self.info(None)).await?;
        if !health.ready || health.busy {
            tracing::debug!(worker = %self.id, "endpoint not available: {health:?}");
            return Ok(Round::Unavailable);
        }
        match self.backend.claim(&self.id).await? {
            Some(lease) => {
                self.run_lease(lease).await?;
                Ok(Round::Ran)
            }
            None => Ok(Round::Idle),
        }
    }

    /// The endpoint's `/health`.
    async fn health(&self) -> Result<Health, String> {
        let response = self
            .http
            .get(format!("{}{HEALTH_PATH}", self.url))
            .bearer_auth(&self.secret)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err("401: the endpoint refuses our secret".into());
        }
        response
            .json::<Health>()
            .await
            .map_err(|e| format!("{status}: {e}"))
    }

    /// Sends one claimed job, follows its stream, and records how it ended.
    async fn run_lease(&mut self, lease: Lease) -> queue::Result<()> {
        let job = lease.job.clone();
        let env = self.layout.env_for(&job.user);
        tracing::info!(job = %job.id, user = %job.user, attempt = lease.attempt, worker = %self.id, "pushing job");
        let files = match referenced_inputs(&job.prompt, &env.dirs) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(job = %job.id, "cannot read an input file: {e}");
                Vec::new()
            }
        };
        let request = RunRequest {
            job: job.clone(),
            attempt: lease.attempt,
            files,
        };
        let info = self.info(Some(&job.id));
        if let Err(e) = self.backend.worker_heartbeat(&info).await {
            tracing::warn!(worker = %self.id, "worker heartbeat failed: {e}");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut watcher = tokio::spawn(watch_lease(
            self.backend.clone(),
            lease.clone(),
            info,
            self.heartbeat,
            stop_rx,
        ));
        let mut messages = Vec::new();
        let end = tokio::select! {
            end = self.stream(&request, &env.dirs, &mut messages) => end,
            verdict = &mut watcher => match verdict {
                Ok(Verdict::Cancel) => End::Cancelled,
                Ok(Verdict::Lost) => End::Lost("the lease was lost".into()),
                Ok(Verdict::Stopped) | Err(_) => End::Lost("the lease watcher stopped".into()),
            },
        };
        let _ = stop_tx.send(true);
        if !watcher.is_finished() {
            let _ = watcher.await;
        }
        let outcome = match end {
            End::Outcome(outcome) => outcome,
            End::Cancelled => {
                tracing::info!(job = %job.id, "cancel requested; dropped the connection");
                let data = json!({"prompt_id": job.id, "node_id": "", "node_type": "",
                                  "executed": [], "timestamp": now_ms()});
                self.publish(&job, "execution_interrupted", data.clone())
                    .await;
                messages.push(("execution_interrupted".into(), data));
                Outcome::Interrupted(JobResult {
                    status_str: "error".into(),
                    completed: false,
                    messages,
                    ..JobResult::default()
                })
            }
            End::Lost(reason) => {
                tracing::warn!(job = %job.id, worker = %self.id, "no outcome ({reason}); the lease lapses and the job is retried");
                return Ok(());
            }
        };
        if queue::worker::record_outcome(self.backend.as_ref(), &lease, outcome).await? {
            self.jobs_done += 1;
            self.backend.publish(done_event(&job)).await?;
        }
        Ok(())
    }

    /// Posts the job and follows the stream until its outcome.
    async fn stream(
        &self,
        request: &RunRequest,
        dirs: &nodes::env::Dirs,
        messages: &mut Vec<(String, Json)>,
    ) -> End {
        let job = &request.job;
        let sent = self
            .http
            .post(format!("{}{RUN_PATH}", self.url))
            .bearer_auth(&self.secret)
            .json(request)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                return End::Lost(format!("the endpoint answered {status}: {body}"));
            }
            Err(e) => return End::Lost(format!("cannot reach the endpoint: {e}")),
        };
        let mut reader = LineReader::new(MAX_LINE);
        loop {
            let chunk = match tokio::time::timeout(STALL, response.chunk()).await {
                Err(_) => return End::Lost(format!("no data for {STALL:?}")),
                Ok(Err(e)) => return End::Lost(format!("the stream broke: {e}")),
                Ok(Ok(None)) => return End::Lost("the stream ended without an outcome".into()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let lines = match reader.push(&chunk) {
                Ok(lines) => lines,
                Err(e) => return End::Lost(e.to_string()),
            };
            for line in lines {
                match line {
                    Line::Event(event) => self.relay(job, event, messages).await,
                    Line::Keepalive => {}
                    Line::File(file) => {
                        if let Err(e) = save(dirs, file).await {
                            return End::Lost(format!("cannot save an output: {e}"));
                        }
                    }
                    Line::Outcome(outcome) => return End::Outcome(outcome),
                    Line::Error(e) => return End::Lost(format!("the endpoint failed: {e}")),
                }
            }
        }
    }

    /// Publishes an endpoint's event as the job's (the ids come from our lease, not the wire).
    async fn relay(&self, job: &Job, event: JobEvent, messages: &mut Vec<(String, Json)>) {
        if let EventMessage::Json { kind, data } = &event.message
            && matches!(kind.as_str(), "execution_start" | "execution_cached")
        {
            messages.push((kind.clone(), data.clone()));
        }
        let event = JobEvent {
            job_id: job.id.clone(),
            user: job.user.clone(),
            client_id: job.client_id.clone(),
            message: event.message,
        };
        if let Err(e) = self.backend.publish(event).await {
            tracing::warn!(job = %job.id, "could not publish an event: {e}");
        }
    }

    /// Publishes a JSON message for `job`.
    async fn publish(&self, job: &Job, kind: &str, data: Json) {
        let event = JobEvent {
            job_id: job.id.clone(),
            user: job.user.clone(),
            client_id: job.client_id.clone(),
            message: EventMessage::Json {
                kind: kind.into(),
                data,
            },
        };
        if let Err(e) = self.backend.publish(event).await {
            tracing::warn!(job = %job.id, "could not publish an event: {e}");
        }
    }
}

/// Writes an output file into the server's folders (outputs and previews only).
async fn save(dirs: &nodes::env::Dirs, file: FileData) -> Result<(), String> {
    let dirs = dirs.clone();
    tokio::task::spawn_blocking(move || write_file(&dirs, &file, &["output", "temp"]))
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Heartbeats `lease` (and the dispatcher's worker entry) every `period` and at once on a
/// queue notice, until `stop`; returns early when a cancel is requested or the lease is lost.
async fn watch_lease(
    backend: Arc<dyn Backend>,
    lease: Lease,
    mut info: WorkerInfo,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> Verdict {
    let mut timer = BeatTimer::new(backend.as_ref(), period);
    while timer.wait(&mut stop).await {
        info.last_seen = now_ms();
        if let Err(e) = backend.worker_heartbeat(&info).await {
            tracing::warn!(worker = %info.id, "worker heartbeat failed: {e}");
        }
        match backend.heartbeat(&lease).await {
            Ok(reply) if reply.lost => return Verdict::Lost,
            Ok(reply) if reply.cancel => return Verdict::Cancel,
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %lease.job.id, "heartbeat failed: {e}"),
        }
    }
    Verdict::Stopped
}
