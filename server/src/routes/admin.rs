//! The instructor's views: `GET /metrics` (Prometheus), the `/admin` dashboard page (static
//! HTML/JS/CSS compiled in), `GET /api/admin/overview` (everything the dashboard shows, from
//! job summaries, so it stays cheap with a long history) and `GET /api/admin/events` (a
//! server-sent-events stream of progress and queue changes for live updates) and
//! `GET /api/admin/jobs` (every job's summary, for the workshop report). All admin-only.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::Stream;
use queue::{EventMessage, Filter, Job, JobEvent, JobState, JobSummary, Notice, scheduler};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::require_admin;
use crate::auth::Scope;
use crate::error::ApiResult;
use crate::metrics;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/admin/index.html");
const SCRIPT: &str = include_str!("../../assets/admin/admin.js");
const STYLE: &str = include_str!("../../assets/admin/admin.css");

/// Finished jobs the overview lists (newest first).
const RECENT_FINISHED: usize = 50;

/// How long one event stream lasts before the browser reconnects (so a server shutdown never
/// waits long for open dashboards).
const STREAM_LIFETIME: Duration = Duration::from_secs(15);

/// The admin routes (mounted at the root).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
        .route("/api/admin/overview", get(overview))
        .route("/api/admin/events", get(events))
        .route("/api/admin/jobs", get(all_jobs))
}

fn asset(body: &'static str, mime: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /admin`: the dashboard.
pub async fn page(Extension(scope): Extension<Scope>) -> ApiResult<Response> {
    require_admin(&scope)?;
    let mut response = Html(PAGE).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /admin/admin.js`.
pub async fn script(Extension(scope): Extension<Scope>) -> ApiResult<Response> {
    require_admin(&scope)?;
    Ok(asset(SCRIPT, "text/javascript; charset=utf-8"))
}

/// `GET /admin/admin.css`.
pub async fn style(Extension(scope): Extension<Scope>) -> ApiResult<Response> {
    require_admin(&scope)?;
    Ok(asset(STYLE, "text/css; charset=utf-8"))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Response> {
    require_admin(&scope)?;
    let backend = &state.config.backend;
    let sockets = state.hub.len();
    let text = match async {
        let jobs = backend.summaries(&Filter::default()).await?;
        let workers = backend.workers().await?;
        let policy = backend.policy().await?;
        let paused = backend.paused().await?;
        Ok::<_, queue::Error>(metrics::render(&metrics::Snapshot {
            jobs: &jobs,
            workers: &workers,
            policy,
            paused,
            websockets: sockets,
            now: engine::events::now_ms(),
        }))
    }
    .await
    {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("metrics: the queue cannot be read: {e}");
            metrics::render_down(sockets)
        }
    };
    Ok(asset_owned(text))
}

fn asset_owned(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn job_row(job: &JobSummary, position: Option<usize>, now: i64) -> Value {
    json!({
        "id": job.id,
        "user": job.user,
        "status": job.state.api_name(),
        "priority": job.priority,
        "number": job.number,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempts": job.attempts,
        "worker": job.worker,
        "reason": job.reason,
        "cancel_requested": job.cancel_requested,
        "wait_ms": job.wait_ms(now),
        "run_ms": job.run_ms(),
        "queue_position": position,
    })
}

/// Per-user activity: counts by state, waits, last submission.
fn users(jobs: &[JobSummary], now: i64) -> Vec<Value> {
    #[derive(Default)]
    struct Activity {
        counts: BTreeMap<&'static str, usize>,
        waits: Vec<i64>,
        last_submit: i64,
    }
    let mut per_user: BTreeMap<&str, Activity> = BTreeMap::new();
    for job in jobs {
        let a = per_user.entry(job.user.as_str()).or_default();
        *a.counts.entry(job.state.api_name()).or_default() += 1;
        if job.started_at.is_some() || job.state == JobState::Pending {
            a.waits.push(job.wait_ms(now));
        }
        a.last_submit = a.last_submit.max(job.created_at);
    }
    per_user
        .into_iter()
        .map(|(user, a)| {
            let total: usize = a.counts.values().sum();
            let mean = if a.waits.is_empty() {
                0
            } else {
                a.waits.iter().sum::<i64>() / a.waits.len() as i64
            };
            json!({
                "user": user,
                "total": total,
                "pending": a.counts.get("pending").copied().unwrap_or(0),
                "running": a.counts.get("in_progress").copied().unwrap_or(0),
                "completed": a.counts.get("completed").copied().unwrap_or(0),
                "failed": a.counts.get("failed").copied().unwrap_or(0),
                "cancelled": a.counts.get("cancelled").copied().unwrap_or(0),
                "max_wait_ms": a.waits.iter().copied().max().unwrap_or(0),
                "mean_wait_ms": mean,
                "last_submit": a.last_submit,
            })
        })
        .collect()
}

/// `GET /api/admin/overview`: jobs (pending and running, and the latest finished), per-user
/// activity, workers, policy and pause state in one call.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let backend = &state.config.backend;
    let jobs = backend.summaries(&Filter::default()).await?;
    let policy = backend.policy().await?;
    let now = engine::events::now_ms();
    let pending: Vec<Job> = jobs
        .iter()
        .filter(|j| j.state == JobState::Pending)
        .map(JobSummary::as_job)
        .collect();
    let refs: Vec<&Job> = pending.iter().collect();
    let positions: BTreeMap<&str, usize> =
        scheduler::projected_order(&refs, policy, &Default::default())
            .into_iter()
            .enumerate()
            .map(|(i, j)| (j.id.as_str(), i + 1))
            .collect();
    let mut queued: Vec<&JobSummary> = jobs
        .iter()
        .filter(|j| j.state == JobState::Pending)
        .collect();
    queued.sort_by_key(|j| positions.get(j.id.as_str()).copied().unwrap_or(usize::MAX));
    let running: Vec<Value> = jobs
        .iter()
        .filter(|j| j.state == JobState::Running)
        .map(|j| job_row(j, None, now))
        .collect();
    let mut finished: Vec<&JobSummary> = jobs.iter().filter(|j| j.state.is_final()).collect();
    finished.sort_by_key(|j| std::cmp::Reverse((j.finished_at, j.seq)));
    let count = |s: JobState| jobs.iter().filter(|j| j.state == s).count();
    let etas = crate::eta::QueueView::read(&state).await?;
    let pending_rows: Vec<Value> = queued
        .iter()
        .map(|j| {
            let mut row = job_row(j, positions.get(j.id.as_str()).copied(), now);
            etas.annotate(&mut row);
            row
        })
        .collect();
    Ok(Json(json!({
        "now": now,
        "backend": backend.name(),
        "policy": policy.name(),
        "paused": backend.paused().await?,
        "counts": {
            "pending": count(JobState::Pending),
            "running": count(JobState::Running),
            "completed": count(JobState::Completed),
            "failed": count(JobState::Failed),
            "cancelled": count(JobState::Cancelled),
        },
        "pending": pending_rows,
        "running": running,
        "finished": finished.iter().take(RECENT_FINISHED).map(|j| job_row(j, None, now)).collect::<Vec<_>>(),
        "users": users(&jobs, now),
        "workers": backend.workers().await?,
        "websockets": state.hub.len(),
    })))
}

/// `GET /api/admin/jobs`: every job's summary (timestamps, user, state, worker, reason), in
/// submission order: what `comfyrs export` computes the workshop report from.
pub async fn all_jobs(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let backend = &state.config.backend;
    let jobs = backend.summaries(&Filter::default()).await?;
    Ok(Json(json!({
        "now": engine::events::now_ms(),
        "backend": backend.name(),
        "jobs": jobs,
        "workers": backend.workers().await?,
    })))
}

/// The dashboard's view of a job event: progress and the node running (no prompt, no outputs).
fn admin_event(event: &JobEvent) -> Option<SseEvent> {
    let EventMessage::Json { kind, data } = &event.message else {
        return None;
    };
    let payload = match kind.as_str() {
        "progress" => json!({
            "job": event.job_id, "user": event.user, "node": data["node"],
            "value": data["value"], "max": data["max"],
        }),
        "executing" if !data["node"].is_null() => {
            json!({"job": event.job_id, "user": event.user, "node": data["node"]})
        }
        _ => return None,
    };
    Some(
        SseEvent::default()
            .event(kind.as_str())
            .data(payload.to_string()),
    )
}

fn changed() -> SseEvent {
    SseEvent::default().event("changed").data("{}")
}

/// `GET /api/admin/events`: `progress`, `executing` and `changed` events. Each stream ends
/// after a while and the browser's `EventSource` reconnects (after `retry` ms).
pub async fn events(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    require_admin(&scope)?;
    let rx = state.config.backend.subscribe();
    let end = Instant::now() + STREAM_LIFETIME;
    let hello = SseEvent::default()
        .retry(Duration::from_millis(500))
        .event("hello")
        .data("{}");
    let stream =
        futures_util::stream::unfold((rx, Some(hello)), move |(mut rx, hello)| async move {
            if let Some(hello) = hello {
                return Some((Ok(hello), (rx, None)));
            }
            loop {
                let next = tokio::time::timeout_at(end.into(), rx.recv()).await.ok()?;
                let event = match next {
                    Ok(Notice::QueueChanged) | Err(RecvError::Lagged(_)) => changed(),
                    Ok(Notice::Event(e)) => match admin_event(&e) {
                        Some(event) => event,
                        None => continue,
                    },
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (rx, None)));
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
