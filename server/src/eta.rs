//! The queue as the jobs API and the participants see it: each pending job's position under the
//! current policy and its estimated start and finish (`queue::eta`), from the live workers, the
//! running jobs and recent run times (re-read from the history at most every few seconds).
//! Owners get their jobs' estimates over the WebSocket as `comfyrs.eta` messages, a type the
//! ComfyUI frontend ignores.

use std::collections::HashMap;
use std::sync::Arc;
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
}

impl QueueView {
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
        Ok(Self {
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
        let data = json!({"jobs": jobs, "workers": self.workers});
        Some(Message::Text(
            json!({"type": "comfyrs.eta", "data": data})
                .to_string()
                .into(),
        ))
    }

    fn annotate_id(&self, id: &str, item: &mut Value) {
        item["id"] = json!(id);
        self.annotate(item);
        if let Some(map) = item.as_object_mut() {
            map.remove("id");
        }
    }
}

/// Sends every connected owner of pending jobs their estimates.
pub async fn send_etas(state: &AppState) {
    let sockets = state.hub.sockets();
    if sockets.is_empty() {
        return;
    }
    let view = match QueueView::read(state).await {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!("cannot estimate the queue: {e:?}");
            return;
        }
    };
    for socket in sockets {
        if let Some(message) = view.message_for(&socket.user) {
            let _ = socket.tx.try_send(message);
        }
    }
}
