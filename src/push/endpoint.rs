//! The push worker's HTTP endpoint (`comfyrs worker --http ADDR`): one job at a time per
//! `POST /run`, answered with an NDJSON stream of its events, output files and outcome
//! (`queue::push::protocol`). Inputs sent with the job are written into the worker's own
//! `users/<name>/input/`; outputs are read back from `users/<name>/output/`. A client that
//! disconnects interrupts the engine: that is how a cancel reaches a serverless request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::{Engine, Event, EventSink};
use nodes::Env;
use queue::push::protocol::{HEALTH_PATH, PING_PATH, RUN_PATH};
use queue::push::{Health, Line, RunRequest, listed_outputs, read_listed, write_file};
use queue::worker::{execute, job_event};
use queue::{Job, Layout, Outcome};
use serde_json::json;
use tokio::sync::mpsc;

use super::secret_matches;

/// Largest `POST /run` body (the job and its input files, base64).
const MAX_REQUEST_BYTES: usize = 1 << 30;

/// The endpoint's state: readiness, the one engine, and whether it is running a job.
pub struct Endpoint {
    ready: AtomicBool,
    busy: AtomicBool,
    engine: parking_lot::Mutex<Option<Engine>>,
    layout: Arc<Layout>,
    secret: String,
    keepalive: Duration,
}

/// Marks the endpoint busy while alive.
struct Busy(Arc<Endpoint>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

/// Relays engine events into a channel (the engine runs on a blocking thread).
struct ChannelSink(mpsc::UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

impl Endpoint {
    /// An endpoint running jobs on `engine` with files under `layout`, accepting requests that
    /// carry `secret`, sending a keep-alive line every `keepalive` while a job runs. It is not
    /// ready until [`Endpoint::set_ready`].
    pub fn new(engine: Engine, layout: Arc<Layout>, secret: String, keepalive: Duration) -> Self {
        Self {
            ready: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            engine: parking_lot::Mutex::new(Some(engine)),
            layout,
            secret,
            keepalive,
        }
    }

    /// Marks the startup work done: `/health` answers ready and `/run` takes jobs.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Runs the warm-up prompts on the engine, then marks the endpoint ready (a failed warm-up
    /// leaves it not ready and returns the reason).
    pub async fn warm_up(&self, prompts: Vec<queue::worker::WarmupPrompt>) -> anyhow::Result<()> {
        if !prompts.is_empty() {
            let mut engine = self
                .engine
                .lock()
                .take()
                .context("the engine is in use before the warm-up")?;
            let layout = self.layout.clone();
            let (engine, models) = tokio::task::spawn_blocking(move || {
                let models = queue::worker::warm_up(&mut engine, &layout, &prompts);
                (engine, models)
            })
            .await
            .context("the engine panicked during the warm-up")?;
            *self.engine.lock() = Some(engine);
            let models = models?;
            tracing::info!(?models, "warmed up");
        }
        self.set_ready();
        Ok(())
    }

    fn health(&self) -> Health {
        Health {
            ready: self.ready.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| secret_matches(token.trim(), &self.secret))
    }

    /// The routes: `GET /health`, `GET /ping`, `POST /run`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(HEALTH_PATH, get(health))
            .route(PING_PATH, get(ping))
            .route(RUN_PATH, post(run))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(self)
    }
}

/// A ComfyUI-style error body.
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({
        "error": {"type": kind, "message": message, "details": "", "extra_info": {}},
        "node_errors": {},
    });
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong shared secret (Authorization: Bearer <COMFYRS_HTTP_SECRET>)",
    )
}

async fn health(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if !endpoint.authorized(&headers) {
        return unauthorized();
    }
    let health = endpoint.health();
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

/// The platform's probe: no secret, no details.
async fn ping(State(endpoint): State<Arc<Endpoint>>) -> Response {
    if endpoint.health().ready {
        (StatusCode::OK, axum::Json(json!({"status": "healthy"}))).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "starting")
    }
}

async fn run(State(endpoint): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if !endpoint.authorized(&headers) {
        return unauthorized();
    }
    if !endpoint.health().ready {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "starting");
    }
    if endpoint
        .busy
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "running another job",
        );
    }
    let busy = Busy(endpoint.clone());
    let request: RunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let job = request.job;
    let env = match endpoint.layout.ensure_user(&job.user) {
        Ok(env) => env,
        Err(e) => {
            let message = format!("cannot create the user's folders: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "io", &message);
        }
    };
    for file in &request.files {
        if let Err(e) = write_file(&env.dirs, file, &["input", "output", "temp"]) {
            return error(StatusCode::BAD_REQUEST, "bad_file", &e.to_string());
        }
    }
    let Some(engine) = endpoint.engine.lock().take() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_engine",
            "the engine failed",
        );
    };
    tracing::info!(job = %job.id, user = %job.user, attempt = request.attempt, files = request.files.len(), "running pushed job");
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(run_job(busy, engine, env, job, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        })
}

/// Runs `job` and streams its lines into `tx`; a closed `tx` (the client went away)
/// interrupts the engine. Releases `busy` once the engine is back.
async fn run_job(
    busy: Busy,
    mut engine: Engine,
    env: Env,
    job: Job,
    tx: mpsc::UnboundedSender<Vec<u8>>,
) {
    let endpoint = busy.0.clone();
    let send = |line: Line| {
        let _ = tx.send(line.to_ndjson());
    };
    let interrupt = engine.interrupt_handle();
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let (run, run_env) = (job.clone(), env.clone());
    let mut blocking = tokio::task::spawn_blocking(move || {
        let outcome = execute(&mut engine, &run, &run_env, &ChannelSink(events_tx));
        (engine, outcome)
    });
    let mut keepalive = tokio::time::interval(endpoint.keepalive);
    let mut gone = false;
    let joined = loop {
        tokio::select! {
            joined = &mut blocking => break joined,
            Some(event) = events.recv() => send(Line::Event(job_event(&job, &event))),
            _ = keepalive.tick() => {
                send(Line::Keepalive);
                // Again, in case the engine cleared the request when the prompt started.
                if gone {
                    interrupt.trigger();
                }
            }
            _ = tx.closed(), if !gone => {
                gone = true;
                tracing::info!(job = %job.id, "the client went away; interrupting the job");
                interrupt.trigger();
            }
        }
    };
    while let Ok(event) = events.try_recv() {
        send(Line::Event(job_event(&job, &event)));
    }
    let (engine, outcome) = match joined {
        Ok(done) => done,
        Err(panic) => {
            tracing::error!(job = %job.id, "the engine panicked: {panic}; this worker can run no more jobs");
            endpoint.ready.store(false, Ordering::SeqCst);
            send(Line::Error(format!("the engine panicked: {panic}")));
            return;
        }
    };
    *endpoint.engine.lock() = Some(engine);
    match output_files(&env, &outcome).await {
        Ok(files) => {
            files.into_iter().for_each(|file| send(Line::File(file)));
            tracing::info!(job = %job.id, "pushed job done");
            send(Line::Outcome(outcome));
        }
        Err(e) => {
            tracing::error!(job = %job.id, "cannot read the outputs: {e}");
            send(Line::Error(format!("cannot read the outputs: {e}")));
        }
    }
    drop(busy);
}

/// The files `outcome`'s result lists, read from the user's folders.
async fn output_files(env: &Env, outcome: &Outcome) -> Result<Vec<queue::push::FileData>, String> {
    let (Outcome::Finished(result) | Outcome::Interrupted(result)) = outcome;
    let listed = listed_outputs(result);
    let dirs = env.dirs.clone();
    tokio::task::spawn_blocking(move || read_listed(&dirs, &listed))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Serves `endpoint` on `addr` until `shutdown` resolves (a running job finishes first).
pub async fn serve(
    endpoint: Arc<Endpoint>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!("push worker listening on http://{bound}");
    axum::serve(listener, endpoint.router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
