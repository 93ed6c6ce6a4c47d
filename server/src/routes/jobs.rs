//! ComfyUI's jobs API (`/api/jobs...`, what the frontend builds its queue and history panels
//! from) and the instructor's queue controls. One job shape: ComfyUI's fields plus ours
//! (`user`, `worker`, `attempts`, `wait_ms`, `run_ms`, `instructor_priority`, `queue_position`).
//! A user sees their own jobs; an admin sees everyone's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use queue::{Cancelled, Filter, Job, JobState, Policy};
use serde_json::{Map, Value, json};

use super::require_admin;
use crate::auth::Scope;
use crate::error::{ApiError, ApiResult};
use crate::eta::QueueView;
use crate::state::AppState;

/// The history entry of a finished job (ComfyUI's `/history` shape), if it ran.
pub fn history_entry(job: &Job) -> Option<Value> {
    let result = job.result.as_ref()?;
    let messages: Vec<Value> = result.messages.iter().map(|(k, v)| json!([k, v])).collect();
    Some(json!({
        "prompt": [job.number, job.id, job.prompt, job.extra_data, job.outputs],
        "outputs": result.outputs,
        "status": {"status_str": result.status_str, "completed": result.completed, "messages": messages},
        "meta": result.meta,
    }))
}

/// The 5-tuple `[number, prompt_id, prompt, extra_data, outputs]` of `/queue`.
pub fn queue_tuple(job: &Job) -> Value {
    json!([job.number, job.id, job.prompt, job.extra_data, job.outputs])
}

const PREVIEWABLE: &[&str] = &["images", "video", "audio", "3d", "text"];

/// Counts outputs and picks the preview as ComfyUI's jobs normalisation does.
fn outputs_summary(outputs: &Map<String, Value>) -> (usize, usize, Option<Value>) {
    let mut count = 0;
    let mut previewable = 0;
    let mut saved: Option<Value> = None;
    let mut temp: Option<Value> = None;
    for (node, ui) in outputs {
        let Some(ui) = ui.as_object() else { continue };
        for (media, items) in ui {
            if media == "animated" {
                continue;
            }
            let Some(items) = items.as_array() else {
                continue;
            };
            for item in items {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                count += 1;
                let visual = PREVIEWABLE.contains(&media.as_str())
                    || obj
                        .get("format")
                        .and_then(Value::as_str)
                        .is_some_and(|f| f.starts_with("video/") || f.starts_with("audio/"));
                if !visual {
                    continue;
                }
                previewable += 1;
                let mut preview = obj.clone();
                preview.insert("nodeId".into(), Value::from(node.as_str()));
                preview.insert("mediaType".into(), Value::from(media.as_str()));
                if obj.get("type").and_then(Value::as_str) == Some("output") {
                    saved.get_or_insert(Value::Object(preview));
                } else {
                    temp.get_or_insert(Value::Object(preview));
                }
            }
        }
    }
    (count, previewable, saved.or(temp))
}

fn message_time(job: &Job, names: &[&str]) -> Option<i64> {
    job.result
        .as_ref()?
        .messages
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .and_then(|(_, d)| d["timestamp"].as_i64())
}

/// `execution_start_time` and `execution_end_time` (ms): the lifecycle messages' timestamps,
/// else the attempt's times.
fn execution_times(job: &Job) -> (Option<i64>, Option<i64>) {
    let start = message_time(job, &["execution_start"])
        .or(job.started_at.filter(|_| job.state != JobState::Pending));
    let end = message_time(
        job,
        &[
            "execution_success",
            "execution_error",
            "execution_interrupted",
        ],
    )
    .or(job.finished_at)
    .filter(|_| job.result.is_some());
    (start, end)
}

/// The jobs-API status of a job (an interrupted prompt is `cancelled`).
fn api_status(job: &Job) -> &'static str {
    job.state.api_name()
}

/// One item of `/api/jobs` (`detail` adds outputs, execution status and the workflow).
pub fn job_item(job: &Job, position: Option<usize>, detail: bool, now: i64) -> Value {
    let mut item = Map::new();
    item.insert("id".into(), json!(job.id));
    item.insert("status".into(), json!(api_status(job)));
    item.insert("priority".into(), json!(job.number));
    item.insert(
        "create_time".into(),
        job.extra_data
            .get("create_time")
            .cloned()
            .unwrap_or(json!(job.created_at)),
    );
    let (start, end) = execution_times(job);
    if let Some(t) = start {
        item.insert("execution_start_time".into(), json!(t));
    }
    if let Some(t) = end {
        item.insert("execution_end_time".into(), json!(t));
    }
    if job.state == JobState::Failed
        && let Some(err) = job
            .result
            .as_ref()
            .and_then(|r| r.messages.iter().find(|(k, _)| k == "execution_error"))
    {
        item.insert("execution_error".into(), err.1.clone());
    }
    let empty = Map::new();
    let outputs = job.result.as_ref().map(|r| &r.outputs).unwrap_or(&empty);
    let (count, previewable, preview) = outputs_summary(outputs);
    item.insert("outputs_count".into(), json!(count));
    item.insert("previewable_outputs_count".into(), json!(previewable));
    if let Some(p) = preview {
        item.insert("preview_output".into(), p);
    }
    if let Some(id) = job.extra_data.pointer("/extra_pnginfo/workflow/id") {
        item.insert("workflow_id".into(), id.clone());
    }
    // Our fields.
    item.insert("user".into(), json!(job.user));
    item.insert("instructor_priority".into(), json!(job.priority));
    item.insert("attempts".into(), json!(job.attempts));
    item.insert("worker".into(), json!(job.worker));
    item.insert("wait_ms".into(), json!(job.wait_ms(now)));
    if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
        item.insert("run_ms".into(), json!(f - s));
    }
    if let Some(p) = position {
        item.insert("queue_position".into(), json!(p));
    }
    if let Some(reason) = &job.reason {
        item.insert("reason".into(), json!(reason));
    }
    if detail {
        if let Some(result) = &job.result {
            item.insert("outputs".into(), Value::Object(result.outputs.clone()));
            let messages: Vec<Value> = result.messages.iter().map(|(k, v)| json!([k, v])).collect();
            item.insert(
                "execution_status".into(),
                json!({"status_str": result.status_str, "completed": result.completed, "messages": messages}),
            );
        }
        item.insert(
            "workflow".into(),
            json!({"prompt": job.prompt, "extra_data": job.extra_data}),
        );
    }
    Value::Object(item)
}

/// Queue positions (1 = next) of pending jobs under the current policy.
async fn positions(state: &AppState) -> ApiResult<HashMap<String, usize>> {
    Ok(QueueView::current(state).await?.positions.clone())
}

fn parse_int(params: &HashMap<String, String>, key: &str) -> ApiResult<Option<i64>> {
    match params.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key} must be an integer"))),
    }
}

/// `GET /api/jobs`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let mut states = Vec::new();
    if let Some(status) = params.get("status") {
        let mut bad = Vec::new();
        for name in status.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match JobState::from_api_name(name) {
                Some(s) => states.push(s),
                None => bad.push(name.to_string()),
            }
        }
        if !bad.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Invalid status value(s): {}. Valid values: pending, in_progress, completed, failed, cancelled",
                bad.join(", ")
            )));
        }
    }
    let sort_by = params
        .get("sort_by")
        .map(String::as_str)
        .unwrap_or("created_at");
    if !matches!(sort_by, "created_at" | "execution_duration") {
        return Err(ApiError::bad_request(
            "sort_by must be 'created_at' or 'execution_duration'",
        ));
    }
    let sort_order = params
        .get("sort_order")
        .map(String::as_str)
        .unwrap_or("desc");
    if !matches!(sort_order, "asc" | "desc") {
        return Err(ApiError::bad_request("sort_order must be 'asc' or 'desc'"));
    }
    let limit = parse_int(&params, "limit")?;
    if limit.is_some_and(|l| l <= 0) {
        return Err(ApiError::bad_request("limit must be a positive integer"));
    }
    let offset = parse_int(&params, "offset")?.unwrap_or(0).max(0) as usize;
    let mut jobs = state
        .config
        .backend
        .list(&Filter {
            user: scope.owner_filter(),
            states,
        })
        .await?;
    // Jobs cancelled before they ran have no history in ComfyUI; they stay visible here only to
    // a workshop's admins (the workshop report counts them).
    let workshop_admin = scope.admin && state.config.users.is_some();
    jobs.retain(|j| workshop_admin || !(j.state == JobState::Cancelled && j.result.is_none()));
    if let Some(workflow) = params.get("workflow_id") {
        jobs.retain(|j| {
            j.extra_data
                .pointer("/extra_pnginfo/workflow/id")
                .and_then(Value::as_str)
                == Some(workflow)
        });
    }
    match sort_by {
        "execution_duration" => jobs.sort_by_key(|j| {
            let (start, end) = execution_times(j);
            (end.zip(start).map(|(e, s)| e - s).unwrap_or(0), j.seq)
        }),
        _ => jobs.sort_by_key(|j| (j.created_at, j.seq)),
    }
    if sort_order == "desc" {
        jobs.reverse();
    }
    let total = jobs.len();
    let view = QueueView::current(&state).await?;
    let now = engine::events::now_ms();
    let page: Vec<Value> = jobs
        .iter()
        .skip(offset)
        .take(limit.map(|l| l as usize).unwrap_or(usize::MAX))
        .map(|j| {
            let mut item = job_item(j, view.positions.get(&j.id).copied(), false, now);
            view.annotate(&mut item);
            item
        })
        .collect();
    let has_more = offset + page.len() < total;
    Ok(Json(
        json!({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": has_more}}),
    ))
}

async fn visible_job(state: &AppState, scope: &Scope, id: &str) -> ApiResult<Job> {
    let job = state.config.backend.get(id).await?;
    match job {
        Some(j) if scope.admin || j.user == scope.user => Ok(j),
        _ => Err(ApiError::not_found("Job not found")),
    }
}

/// `GET /api/jobs/{id}`.
pub async fn one(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = visible_job(&state, &scope, &id).await?;
    let view = QueueView::current(&state).await?;
    let position = view.positions.get(&job.id).copied();
    let mut item = job_item(&job, position, true, engine::events::now_ms());
    view.annotate(&mut item);
    Ok(Json(item))
}

/// `POST /api/jobs/{id}/cancel`.
pub async fn cancel_one(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let outcome = state
        .config
        .backend
        .cancel(&id, scope.owner_filter().as_deref())
        .await?;
    Ok(Json(json!({"cancelled": outcome != Cancelled::Nothing})))
}

/// `POST /api/jobs/cancel` with `{"job_ids": [...]}`.
pub async fn cancel_many(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("Request body must be valid JSON"))?;
    let Some(ids) = request.get("job_ids").and_then(Value::as_array) else {
        return Err(ApiError::bad_request("job_ids must be a list"));
    };
    let invalid: Vec<&Value> = ids
        .iter()
        .filter(|v| !v.as_str().is_some_and(super::prompt::is_canonical_uuid))
        .collect();
    if !invalid.is_empty() {
        return Err(ApiError::json(
            axum::http::StatusCode::BAD_REQUEST,
            json!({"error": "job_ids must be canonical lowercase UUIDs", "invalid_ids": invalid}),
        ));
    }
    let mut any = false;
    for id in ids.iter().filter_map(Value::as_str) {
        any |= state
            .config
            .backend
            .cancel(id, scope.owner_filter().as_deref())
            .await?
            != Cancelled::Nothing;
    }
    Ok(Json(json!({"cancelled": any})))
}

/// `DELETE /api/jobs/{id}`: cancel a pending or running job, or delete a finished one from history.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = visible_job(&state, &scope, &id).await?;
    if job.state.is_final() {
        let n = state
            .config
            .backend
            .delete_history(
                Some(std::slice::from_ref(&id)),
                scope.owner_filter().as_deref(),
            )
            .await?;
        return Ok(Json(json!({"deleted": n > 0, "cancelled": false})));
    }
    let outcome = state
        .config
        .backend
        .cancel(&id, scope.owner_filter().as_deref())
        .await?;
    Ok(Json(
        json!({"deleted": false, "cancelled": outcome != Cancelled::Nothing}),
    ))
}

/// `PATCH /api/jobs/{id}/priority` with `{"priority": n}` (admin).
pub async fn set_priority(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("Request body must be valid JSON"))?;
    let priority = request
        .get("priority")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("priority must be an integer"))?;
    let job = state
        .config
        .backend
        .set_priority(&id, priority)
        .await?
        .ok_or_else(|| ApiError::not_found("Job not found"))?;
    Ok(Json(job_item(&job, None, false, engine::events::now_ms())))
}

/// `POST /api/jobs/{id}/prioritize` (admin): move a pending job to the front.
pub async fn prioritize(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let job = state
        .config
        .backend
        .prioritize(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("Job not found"))?;
    state.queue_view.invalidate();
    let position = positions(&state).await?.get(&job.id).copied();
    Ok(Json(job_item(
        &job,
        position,
        false,
        engine::events::now_ms(),
    )))
}

/// `GET /api/queue/status` (admin): depth, running, finished, per user, workers, policy.
pub async fn queue_status(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let backend = &state.config.backend;
    let jobs = backend.list(&Filter::default()).await?;
    let now = engine::events::now_ms();
    let mut per_user: HashMap<String, Map<String, Value>> = HashMap::new();
    for job in &jobs {
        let entry = per_user.entry(job.user.clone()).or_default();
        let key = job.state.api_name();
        let n = entry.get(key).and_then(Value::as_u64).unwrap_or(0) + 1;
        entry.insert(key.to_string(), json!(n));
    }
    let stats = backend.stats().await?;
    let oldest_wait = jobs
        .iter()
        .filter(|j| j.state == JobState::Pending)
        .map(|j| j.wait_ms(now))
        .max()
        .unwrap_or(0);
    Ok(Json(json!({
        "queue_depth": stats.pending,
        "running": stats.running,
        "completed_jobs": stats.completed,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "oldest_pending_wait_ms": oldest_wait,
        "per_user": per_user,
        "workers": backend.workers().await?,
        "policy": backend.policy().await?.name(),
        "paused": backend.paused().await?,
        "backend": backend.name(),
    })))
}

/// `GET /api/queue/policy` (admin).
pub async fn get_policy(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    Ok(Json(
        json!({"policy": state.config.backend.policy().await?.name()}),
    ))
}

/// `PUT|POST /api/queue/policy` with `{"policy": "fifo"|"round_robin"|"priority"}` (admin).
pub async fn set_policy(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("Request body must be valid JSON"))?;
    let name = request.get("policy").and_then(Value::as_str).unwrap_or("");
    let policy = Policy::parse(name).ok_or_else(|| {
        ApiError::bad_request("policy must be 'fifo', 'round_robin' or 'priority'")
    })?;
    state.config.backend.set_policy(policy).await?;
    tracing::info!(policy = policy.name(), "scheduling policy changed");
    Ok(Json(json!({"policy": policy.name()})))
}

/// `POST /api/queue/pause` (admin): refuse new submissions.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    state.config.backend.set_paused(true).await?;
    Ok(Json(json!({"paused": true})))
}

/// `POST /api/queue/resume` (admin).
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    state.config.backend.set_paused(false).await?;
    Ok(Json(json!({"paused": false})))
}

/// `GET /api/workers` (admin).
pub async fn workers(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
) -> ApiResult<Json<Value>> {
    require_admin(&scope)?;
    Ok(Json(json!(state.config.backend.workers().await?)))
}
