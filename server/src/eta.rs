//! The queue as the jobs API and the participants see it: each pending job's position under the
//! current policy and its estimated start and finish (`queue::eta`), from the live workers, the
//! running jobs and recent run times (re-read from the history at most every few seconds).
//! Owners get their jobs' estimates over the WebSocket inside the `status` messages
//! (`data.status.exec_info.comfyrs_eta`, a field the ComfyUI frontend ignores), and as
//! `comfyrs.eta` messages when their client asked for them in its `feature_flags` message
//! (`"comfyrs_eta": true`); the frontend does not, so it never sees a message type it does not
//! know.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use queue::eta::{Eta, RunHistory, estimate};
use queue::{Filter, Job, JobState, scheduler};
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::state::AppState;

/// Longest a history snapshot is reused while the number of completed jobs stays the same
/// (a full history is trimmed as it grows, so the count alone does not reveal new runs).
const HISTORY_TTL: Duration = Duration::from_secs(30);

/// A cached run history, keyed by the number of completed jobs it was read at.
#[derive(Default)]
pub struct HistoryCache(std::sync::Mutex<Option<(Instant, usize, Arc<RunHistory>)>>);

impl HistoryCache {
    async fn get(&self, state: &AppState) -> ApiResult<Arc<RunHistory>> {
        let completed = state.config.backend.stats().await?.completed;
        if let Ok(guard) = self.0.lock()
            && let Some((at, count, history)) = guard.as_ref()
            && *count == completed
            && at.elapsed() < HISTORY_TTL
        {
            return Ok(history.clone());
        }
        let finished = state
            .config
            .backend
            .list(&Filter {
                user: None,
                states: vec![JobState::Completed],
            })
            .await?;
        let history = Arc::new(RunHistory::from_jobs(finished.iter()));
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((Instant::now(), completed, history.clone()));
        }
        Ok(history)
    }
}

/// Longest a queue view is shared while the queue's counts stay the same (estimates are
/// relative to the time they were made; reorders keep the counts).
const VIEW_TTL: Duration = Duration::from_millis(1000);

/// The latest [`QueueView`], shared by concurrent requests: reading the queue lists every
/// pending and running job with its prompt, so twenty participants' polls must not each do it
/// (the workshop soak measured 1.5 GiB of server memory and seconds per request with 700 jobs
/// queued when they did).
#[derive(Default)]
pub struct ViewCache {
    generation: std::sync::atomic::AtomicU64,
    slot: tokio::sync::Mutex<Option<CachedView>>,
}

struct CachedView {
    generation: u64,
    counts: (usize, usize, usize, usize, usize),
    at: Instant,
    view: Arc<QueueView>,
}

impl ViewCache {
    /// Marks the cached view stale (the queue changed).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Positions (1 = next) and estimates of the pending jobs.
#[derive(Debug, Default)]
pub struct QueueView {
    /// Job id -> position.
    pub positions: HashMap<String, usize>,
    /// Job id -> estimate (absent while no worker is live or the queue is paused).
    pub etas: HashMap<String, Eta>,
    /// Live workers counted.
    pub workers: usize,
    /// The pending jobs, in projected order.
    pub order: Vec<Job>,
    /// Pending + running jobs per user (ComfyUI's `queue_remaining` of their workspace).
    pub remaining: HashMap<String, usize>,
    /// Pending + running jobs of everyone (an admin's `queue_remaining`).
    pub total: usize,
}

impl QueueView {
    /// The current view: the shared one while the queue is unchanged (same counts, no change
    /// notice, under a second old), else a fresh read that concurrent callers wait for and share.
    pub async fn current(state: &AppState) -> ApiResult<Arc<Self>> {
        let cache = &state.queue_view;
        let mut slot = cache.slot.lock().await;
        let generation = cache.generation.load(Ordering::SeqCst);
        let stats = state.config.backend.stats().await?;
        let counts = (
            stats.pending,
            stats.running,
            stats.completed,
            stats.failed,
            stats.cancelled,
        );
        if let Some(cached) = slot.as_ref()
            && cached.generation == generation
            && cached.counts == counts
            && cached.at.elapsed() < VIEW_TTL
        {
            return Ok(cached.view.clone());
        }
        let view = Arc::new(Self::read(state).await?);
        *slot = Some(CachedView {
            generation,
            counts,
            at: Instant::now(),
            view: view.clone(),
        });
        Ok(view)
    }

    /// Reads the queue and estimates it.
    pub async fn read(state: &AppState) -> ApiResult<Self> {
        let backend = &state.config.backend;
        let active = backend
            .list(&Filter {
                user: None,
                states: vec![JobState::Pending, JobState::Running],
            })
            .await?;
        let policy = backend.policy().await?;
        let (pending, running): (Vec<&Job>, Vec<&Job>) =
            active.iter().partition(|j| j.state == JobState::Pending);
        let order = scheduler::projected_order(&pending, policy, &Default::default());
        let positions = order
            .iter()
            .enumerate()
            .map(|(i, j)| (j.id.clone(), i + 1))
            .collect();
        let workers = backend
            .workers()
            .await?
            .iter()
            .filter(|w| !w.draining)
            .count();
        let etas = if backend.paused().await? {
            HashMap::new()
        } else {
            let history = state.eta_history.get(state).await?;
            let now = engine::events::now_ms();
            estimate(&order, &running, workers, &history, now)
        };
        let order = order.into_iter().cloned().collect();
        let mut remaining = HashMap::new();
        for job in &active {
            *remaining.entry(job.user.clone()).or_insert(0) += 1;
        }
        Ok(Self {
            remaining,
            total: active.len(),
            positions,
            etas,
            workers,
            order,
        })
    }

    /// Adds `eta_start`, `eta_finish` (unix seconds) and `eta_basis` to a job item.
    pub fn annotate(&self, item: &mut Value) {
        let Some(id) = item["id"].as_str() else {
            return;
        };
        if let Some(eta) = self.etas.get(id) {
            item["eta_start"] = json!(eta.start_ms as f64 / 1000.0);
            item["eta_finish"] = json!(eta.finish_ms as f64 / 1000.0);
            item["eta_basis"] = json!(eta.basis);
        }
    }

    /// The `comfyrs.eta` message for `user`'s pending jobs (`None` when they have none).
    pub fn message_for(&self, user: &str) -> Option<Message> {
        let data = self.eta_for(user)?;
        Some(Message::Text(
            json!({"type": "comfyrs.eta", "data": data})
                .to_string()
                .into(),
        ))
    }

    /// `{"jobs": [{prompt_id, queue_position, eta_start, eta_finish, eta_basis}], "workers"}`
    /// for `user`'s pending jobs (`None` when they have none).
    pub fn eta_for(&self, user: &str) -> Option<Value> {
        let jobs: Vec<Value> = self
            .order
            .iter()
            .filter(|j| j.user == user)
            .map(|j| {
                let mut item =
                    json!({"prompt_id": j.id, "queue_position": self.positions.get(&j.id)});
                self.annotate_id(&j.id, &mut item);
                item
            })
            .collect();
        if jobs.is_empty() {
            return None;
        }
        Some(json!({"jobs": jobs, "workers": self.workers}))
    }

    fn annotate_id(&self, id: &str, item: &mut Value) {
        item["id"] = json!(id);
        self.annotate(item);
        if let Some(map) = item.as_object_mut() {
            map.remove("id");
        }
    }
}

/// Sends every socket a `status` message with its workspace's queue count and its user's
/// estimates, and `comfyrs.eta` messages to the sockets that asked for them. When the queue
/// cannot be estimated, the plain counts go out.
pub async fn send_status(state: &AppState) {
    let sockets = state.hub.sockets();
    if sockets.is_empty() {
        return;
    }
    let view = match QueueView::current(state).await {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!("cannot estimate the queue: {e:?}");
            crate::broadcast_status(state).await;
            return;
        }
    };
    for socket in sockets {
        let count = if socket.admin {
            view.total
        } else {
            view.remaining.get(&socket.user).copied().unwrap_or(0)
        };
        let eta = view.eta_for(&socket.user);
        let wants_messages = socket.eta_messages.load(Ordering::Relaxed);
        if wants_messages && let Some(message) = view.message_for(&socket.user) {
            let _ = socket.tx.try_send(message);
        }
        let _ = socket
            .tx
            .try_send(crate::hub::status_message_with_eta(count, None, eta));
    }
}
