//! The embedded backend: the queue lives in this process and every state change is written to
//! a local `redb` file before it is acknowledged, so a restart loses nothing (jobs that were
//! running when the process died are re-queued, their attempt counted).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use serde_json::{Number, Value as Json, json};
use tokio::sync::{Notify, broadcast};

use crate::backend::{Backend, Cancelled, Filter, Notice, QueueConfig, QueueStats};
use crate::error::{Error, Result};
use crate::job::{
    HeartbeatReply, Job, JobEvent, JobResult, JobState, Lease, NewJob, Outcome, Policy, WorkerInfo,
};
use crate::now_ms;
use crate::scheduler::{LastServed, pick_next};

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Counters and settings that survive restarts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Meta {
    counter: i64,
    seq: u64,
    policy: Policy,
    paused: bool,
    turn: u64,
    last_served: LastServed,
}

struct State {
    jobs: HashMap<String, Job>,
    meta: Meta,
    workers: HashMap<String, WorkerInfo>,
}

/// The in-process queue, persisted to a redb file (or memory-only for tests).
pub struct Embedded {
    state: Mutex<State>,
    db: Option<Database>,
    notices: broadcast::Sender<Notice>,
    work: Notify,
    config: QueueConfig,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

impl Embedded {
    /// A queue persisted at `path` (created if absent). Jobs that were running when the previous
    /// process stopped go back to the queue.
    pub fn open(path: &Path, config: QueueConfig) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store_err)?;
        }
        let db = Database::create(path).map_err(store_err)?;
        let (jobs, meta) = Self::load(&db)?;
        let me = Self::build(Some(db), jobs, meta, config);
        me.recover_orphans()?;
        Ok(me)
    }

    /// A queue that keeps nothing across restarts.
    pub fn in_memory(config: QueueConfig) -> Self {
        Self::build(None, HashMap::new(), Meta::default(), config)
    }

    fn build(
        db: Option<Database>,
        jobs: HashMap<String, Job>,
        meta: Meta,
        config: QueueConfig,
    ) -> Self {
        let (notices, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(State {
                jobs,
                meta,
                workers: HashMap::new(),
            }),
            db,
            notices,
            work: Notify::new(),
            config,
        }
    }

    fn load(db: &Database) -> Result<(HashMap<String, Job>, Meta)> {
        let txn = db.begin_write().map_err(store_err)?;
        {
            txn.open_table(JOBS).map_err(store_err)?;
            txn.open_table(META).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let read = db.begin_read().map_err(store_err)?;
        let table = read.open_table(JOBS).map_err(store_err)?;
        let mut jobs = HashMap::new();
        for entry in table.iter().map_err(store_err)? {
            let (key, value) = entry.map_err(store_err)?;
            let job: Job = serde_json::from_slice(value.value()).map_err(|e| Error::Corrupt {
                key: key.value().to_string(),
                message: e.to_string(),
            })?;
            jobs.insert(job.id.clone(), job);
        }
        let meta_table = read.open_table(META).map_err(store_err)?;
        let meta = match meta_table.get("meta").map_err(store_err)? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| Error::Corrupt {
                key: "meta".into(),
                message: e.to_string(),
            })?,
            None => Meta::default(),
        };
        Ok((jobs, meta))
    }

    /// Writes the given jobs (or deletes ids whose job is gone) and the meta record atomically.
    fn persist(&self, state: &State, ids: &[String]) -> Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let txn = db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(JOBS).map_err(store_err)?;
            for id in ids {
                match state.jobs.get(id) {
                    Some(job) => {
                        let bytes = serde_json::to_vec(job).map_err(store_err)?;
                        table
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(store_err)?;
                    }
                    None => {
                        table.remove(id.as_str()).map_err(store_err)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(store_err)?;
            let bytes = serde_json::to_vec(&state.meta).map_err(store_err)?;
            meta.insert("meta", bytes.as_slice()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)
    }

    fn changed(&self) {
        let _ = self.notices.send(Notice::QueueChanged);
    }

    fn recover_orphans(&self) -> Result<()> {
        let mut state = self.state.lock();
        let orphans: Vec<String> = state
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| j.id.clone())
            .collect();
        for id in &orphans {
            if let Some(job) = state.jobs.get_mut(id) {
                tracing::warn!(job = %id, attempts = job.attempts, "job was running when the server stopped; re-queueing");
                lose_lease(
                    job,
                    self.config.max_attempts,
                    "the server stopped while it ran",
                );
            }
        }
        self.persist(&state, &orphans)
    }

    fn trim_history(&self, state: &mut State) -> Vec<String> {
        let mut finished: Vec<(u64, String)> = state
            .jobs
            .values()
            .filter(|j| j.state.is_final())
            .map(|j| (j.seq, j.id.clone()))
            .collect();
        if finished.len() <= self.config.max_history {
            return Vec::new();
        }
        finished.sort();
        let excess = finished.len() - self.config.max_history;
        let removed: Vec<String> = finished
            .into_iter()
            .take(excess)
            .map(|(_, id)| id)
            .collect();
        for id in &removed {
            state.jobs.remove(id);
        }
        removed
    }

    fn owned(&self, lease: &Lease, state: &State) -> bool {
        state.jobs.get(&lease.job.id).is_some_and(|j| {
            j.state == JobState::Running
                && j.attempts == lease.attempt
                && j.worker.as_deref() == Some(&lease.worker)
        })
    }
}

/// Ends a lost attempt: back to pending, or failed when out of attempts.
pub(crate) fn lose_lease(job: &mut Job, max_attempts: u32, why: &str) {
    job.worker_lost(max_attempts, why, now_ms());
}

impl Job {
    /// Ends a lost attempt at time `now`: back to pending, or failed when out of attempts.
    pub fn worker_lost(&mut self, max_attempts: u32, why: &str, now: i64) {
        self.lease_until = None;
        if self.attempts >= max_attempts {
            let reason = format!("{why}; gave up after {} attempts", self.attempts);
            self.state = JobState::Failed;
            self.finished_at = Some(now);
            self.result = Some(failure_result(&self.id, &reason, now));
            self.reason = Some(reason);
        } else {
            self.state = JobState::Pending;
            self.reason = Some(why.to_string());
        }
    }
}

/// A history result for a job that failed outside the engine (its worker kept dying), in
/// ComfyUI's shape so clients show it like any execution error.
pub fn failure_result(job_id: &str, reason: &str, now: i64) -> JobResult {
    let error = json!({
        "prompt_id": job_id, "node_id": "", "node_type": "", "executed": [],
        "exception_message": reason, "exception_type": "WorkerLost", "traceback": [],
        "current_inputs": {}, "current_outputs": [], "timestamp": now,
    });
    JobResult {
        outputs: Default::default(),
        meta: Default::default(),
        status_str: "error".into(),
        completed: false,
        messages: vec![("execution_error".into(), error)],
    }
}

#[async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn submit(&self, new: NewJob) -> Result<Job> {
        let job = {
            let mut state = self.state.lock();
            if state.meta.paused {
                return Err(Error::Paused);
            }
            if state.jobs.contains_key(&new.id) {
                return Err(Error::Duplicate(new.id));
            }
            let limit = self.config.max_pending_per_user;
            if limit > 0 {
                let pending = state
                    .jobs
                    .values()
                    .filter(|j| j.user == new.user && j.state == JobState::Pending)
                    .count();
                if pending >= limit {
                    return Err(Error::TooManyPending(pending));
                }
            }
            let number = match new.number {
                Some(n) => Number::from_f64(n).unwrap_or_else(|| Number::from(0)),
                None => {
                    let c = state.meta.counter;
                    state.meta.counter += 1;
                    Number::from(if new.front { -c } else { c })
                }
            };
            state.meta.seq += 1;
            let job = Job {
                id: new.id,
                seq: state.meta.seq,
                number,
                priority: 0,
                user: new.user,
                client_id: new.client_id,
                prompt: new.prompt,
                outputs: new.outputs,
                extra_data: new.extra_data,
                state: JobState::Pending,
                created_at: now_ms(),
                started_at: None,
                finished_at: None,
                attempts: 0,
                worker: None,
                lease_until: None,
                cancel_requested: false,
                result: None,
                reason: None,
            };
            state.jobs.insert(job.id.clone(), job.clone());
            self.persist(&state, std::slice::from_ref(&job.id))?;
            job
        };
        self.work.notify_waiters();
        self.changed();
        Ok(job)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.state.lock().jobs.get(id).cloned())
    }

    async fn list(&self, filter: &Filter) -> Result<Vec<Job>> {
        let state = self.state.lock();
        let mut jobs: Vec<Job> = state
            .jobs
            .values()
            .filter(|j| filter.matches(j))
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.seq);
        Ok(jobs)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let state = self.state.lock();
        let mut s = QueueStats::default();
        for j in state.jobs.values() {
            match j.state {
                JobState::Pending => s.pending += 1,
                JobState::Running => s.running += 1,
                JobState::Completed => s.completed += 1,
                JobState::Failed => s.failed += 1,
                JobState::Cancelled => s.cancelled += 1,
            }
        }
        Ok(s)
    }

    async fn cancel(&self, id: &str, user: Option<&str>) -> Result<Cancelled> {
        let outcome = {
            let mut state = self.state.lock();
            let Some(job) = state.jobs.get_mut(id) else {
                return Ok(Cancelled::Nothing);
            };
            if user.is_some_and(|u| u != job.user) {
                return Ok(Cancelled::Nothing);
            }
            let outcome = match job.state {
                JobState::Pending => {
                    job.state = JobState::Cancelled;
                    job.finished_at = Some(now_ms());
                    job.reason = Some("cancelled before it ran".into());
                    Cancelled::Dequeued
                }
                JobState::Running if !job.cancel_requested => {
                    job.cancel_requested = true;
                    Cancelled::Interrupting
                }
                JobState::Running => Cancelled::Interrupting,
                _ => Cancelled::Nothing,
            };
            if outcome != Cancelled::Nothing {
                self.persist(&state, &[id.to_string()])?;
            }
            outcome
        };
        // Also for running jobs: workers re-beat on notices, so the interrupt is prompt.
        if outcome != Cancelled::Nothing {
            self.changed();
        }
        Ok(outcome)
    }

    async fn clear_pending(&self, user: Option<&str>) -> Result<usize> {
        let ids = {
            let mut state = self.state.lock();
            let now = now_ms();
            let ids: Vec<String> = state
                .jobs
                .values()
                .filter(|j| j.state == JobState::Pending && user.is_none_or(|u| u == j.user))
                .map(|j| j.id.clone())
                .collect();
            for id in &ids {
                if let Some(j) = state.jobs.get_mut(id) {
                    j.state = JobState::Cancelled;
                    j.finished_at = Some(now);
                    j.reason = Some("queue cleared".into());
                }
            }
            self.persist(&state, &ids)?;
            ids
        };
        if !ids.is_empty() {
            self.changed();
        }
        Ok(ids.len())
    }

    async fn delete_history(&self, ids: Option<&[String]>, user: Option<&str>) -> Result<usize> {
        let mut state = self.state.lock();
        let doomed: Vec<String> = state
            .jobs
            .values()
            .filter(|j| j.state.is_final())
            .filter(|j| user.is_none_or(|u| u == j.user))
            .filter(|j| ids.is_none_or(|ids| ids.contains(&j.id)))
            .map(|j| j.id.clone())
            .collect();
        for id in &doomed {
            state.jobs.remove(id);
        }
        self.persist(&state, &doomed)?;
        Ok(doomed.len())
    }

    async fn set_priority(&self, id: &str, priority: i64) -> Result<Option<Job>> {
        let job = {
            let mut state = self.state.lock();
            let Some(job) = state.jobs.get_mut(id) else {
                return Ok(None);
            };
            job.priority = priority;
            let job = job.clone();
            self.persist(&state, &[id.to_string()])?;
            job
        };
        self.changed();
        Ok(Some(job))
    }

    async fn prioritize(&self, id: &str) -> Result<Option<Job>> {
        let job = {
            let mut state = self.state.lock();
            let pending = state
                .jobs
                .values()
                .filter(|j| j.state == JobState::Pending && j.id != id);
            let top = pending
                .clone()
                .map(|j| j.priority)
                .max()
                .unwrap_or(0)
                .max(0)
                + 1;
            let front = pending
                .map(|j| j.number_f64())
                .fold(f64::INFINITY, f64::min);
            let Some(job) = state.jobs.get_mut(id) else {
                return Ok(None);
            };
            if job.state != JobState::Pending {
                return Ok(Some(job.clone()));
            }
            job.priority = top;
            if front.is_finite() && job.number_f64() >= front {
                job.number = Number::from_f64(front - 1.0).unwrap_or(job.number.clone());
            }
            let job = job.clone();
            self.persist(&state, &[id.to_string()])?;
            job
        };
        self.changed();
        Ok(Some(job))
    }

    async fn claim(&self, worker: &str) -> Result<Option<Lease>> {
        let lease = {
            let mut state = self.state.lock();
            let pending: Vec<&Job> = state
                .jobs
                .values()
                .filter(|j| j.state == JobState::Pending)
                .collect();
            let Some(next) = pick_next(&pending, state.meta.policy, &state.meta.last_served) else {
                return Ok(None);
            };
            let id = next.id.clone();
            state.meta.turn += 1;
            let turn = state.meta.turn;
            let now = now_ms();
            let job = match state.jobs.get_mut(&id) {
                Some(job) => job,
                None => return Ok(None),
            };
            job.state = JobState::Running;
            job.attempts += 1;
            job.worker = Some(worker.to_string());
            job.started_at = Some(now);
            job.lease_until = Some(now + self.config.lease_ms);
            job.cancel_requested = false;
            let lease = Lease {
                job: job.clone(),
                attempt: job.attempts,
                worker: worker.to_string(),
            };
            let user = job.user.clone();
            state.meta.last_served.insert(user, turn);
            self.persist(&state, &[id])?;
            lease
        };
        self.changed();
        Ok(Some(lease))
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<HeartbeatReply> {
        let mut state = self.state.lock();
        if !self.owned(lease, &state) {
            return Ok(HeartbeatReply {
                cancel: false,
                lost: true,
            });
        }
        let lease_ms = self.config.lease_ms;
        let Some(job) = state.jobs.get_mut(&lease.job.id) else {
            return Ok(HeartbeatReply {
                cancel: false,
                lost: true,
            });
        };
        job.lease_until = Some(now_ms() + lease_ms);
        Ok(HeartbeatReply {
            cancel: job.cancel_requested,
            lost: false,
        })
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<bool> {
        {
            let mut state = self.state.lock();
            if !self.owned(lease, &state) {
                tracing::warn!(job = %lease.job.id, attempt = lease.attempt, "ignoring a stale completion");
                return Ok(false);
            }
            let Some(job) = state.jobs.get_mut(&lease.job.id) else {
                return Ok(false);
            };
            let (result, final_state) = match outcome {
                Outcome::Finished(r) if r.status_str == "success" => (r, JobState::Completed),
                Outcome::Finished(r) => (r, JobState::Failed),
                Outcome::Interrupted(r) => (r, JobState::Cancelled),
            };
            job.state = final_state;
            job.result = Some(result);
            job.finished_at = Some(now_ms());
            job.lease_until = None;
            let mut ids = vec![lease.job.id.clone()];
            ids.extend(self.trim_history(&mut state));
            self.persist(&state, &ids)?;
        }
        self.changed();
        Ok(true)
    }

    async fn requeue_expired(&self) -> Result<usize> {
        let count = {
            let mut state = self.state.lock();
            let now = now_ms();
            let expired: Vec<String> = state
                .jobs
                .values()
                .filter(|j| j.state == JobState::Running && j.lease_until.is_some_and(|t| t < now))
                .map(|j| j.id.clone())
                .collect();
            for id in &expired {
                if let Some(job) = state.jobs.get_mut(id) {
                    let worker = job.worker.clone().unwrap_or_default();
                    tracing::warn!(job = %id, %worker, attempts = job.attempts, "lease expired; the worker is gone");
                    job.worker_lost(
                        self.config.max_attempts,
                        &format!("worker {worker} stopped responding"),
                        now,
                    );
                }
            }
            self.persist(&state, &expired)?;
            expired.len()
        };
        if count > 0 {
            self.work.notify_waiters();
            self.changed();
        }
        Ok(count)
    }

    async fn publish(&self, event: JobEvent) -> Result<()> {
        let _ = self.notices.send(Notice::Event(Box::new(event)));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    async fn wait_for_work(&self, timeout_ms: u64) {
        let _ = tokio::time::timeout(Duration::from_millis(timeout_ms), self.work.notified()).await;
    }

    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()> {
        self.state
            .lock()
            .workers
            .insert(info.id.clone(), info.clone());
        Ok(())
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        self.state.lock().workers.remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let cutoff = now_ms() - 3 * self.config.lease_ms;
        let mut workers: Vec<WorkerInfo> = self
            .state
            .lock()
            .workers
            .values()
            .filter(|w| w.last_seen >= cutoff)
            .cloned()
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    async fn policy(&self) -> Result<Policy> {
        Ok(self.state.lock().meta.policy)
    }

    async fn set_policy(&self, policy: Policy) -> Result<()> {
        let mut state = self.state.lock();
        state.meta.policy = policy;
        self.persist(&state, &[])
    }

    async fn paused(&self) -> Result<bool> {
        Ok(self.state.lock().meta.paused)
    }

    async fn set_paused(&self, paused: bool) -> Result<()> {
        let mut state = self.state.lock();
        state.meta.paused = paused;
        self.persist(&state, &[])
    }

    async fn health(&self) -> Result<Json> {
        let state = self.state.lock();
        Ok(
            json!({"backend": "embedded", "persistent": self.db.is_some(), "jobs": state.jobs.len()}),
        )
    }
}
