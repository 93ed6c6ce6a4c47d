//! The queue interface every backend implements (embedded and Redis). All state transitions
//! happen inside the backend so they stay atomic: submit, claim (pending -> running with a
//! lease), heartbeat (extends the lease, reports cancels), complete (fenced by attempt), and the
//! janitor that re-queues jobs whose worker died.

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::job::{
    HeartbeatReply, Job, JobEvent, JobState, Lease, NewJob, Outcome, Policy, WorkerInfo,
};

/// What the queue promises about timing and retries.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// How long a lease lasts without a heartbeat (ms).
    pub lease_ms: i64,
    /// Attempts before a job that keeps losing its worker is failed.
    pub max_attempts: u32,
    /// Finished jobs kept (ComfyUI keeps 10 000 history entries).
    pub max_history: usize,
    /// Most pending jobs one user may have (0 = unlimited).
    pub max_pending_per_user: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            max_attempts: 3,
            max_history: 10_000,
            max_pending_per_user: 0,
        }
    }
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this user's jobs (`None` = everyone's: the admin view).
    pub user: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<JobState>,
}

impl Filter {
    /// Whether `job` passes the filter.
    pub fn matches(&self, job: &Job) -> bool {
        self.user.as_ref().is_none_or(|u| &job.user == u)
            && (self.states.is_empty() || self.states.contains(&job.state))
    }
}

/// The result of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// A pending job was removed from the queue.
    Dequeued,
    /// A running job was asked to stop (its worker interrupts it).
    Interrupting,
    /// The job was already finished or is unknown.
    Nothing,
}

/// Counters for status pages and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueStats {
    /// Pending jobs.
    pub pending: usize,
    /// Running jobs.
    pub running: usize,
    /// Completed jobs (kept in history).
    pub completed: usize,
    /// Failed jobs.
    pub failed: usize,
    /// Cancelled jobs.
    pub cancelled: usize,
}

/// A job without its prompt and result: what status pages, dashboards and metrics read (cheap
/// to list even with a long history).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobSummary {
    /// Prompt id.
    pub id: String,
    /// Submission sequence number.
    pub seq: u64,
    /// Submitting user.
    pub user: String,
    /// Current state.
    pub state: JobState,
    /// Instructor priority.
    pub priority: i64,
    /// ComfyUI's queue number.
    pub number: serde_json::Number,
    /// Submission time (ms).
    pub created_at: i64,
    /// Start of the current/last attempt (ms).
    pub started_at: Option<i64>,
    /// End (ms).
    pub finished_at: Option<i64>,
    /// Attempts started.
    pub attempts: u32,
    /// The worker running (or that last ran) it.
    pub worker: Option<String>,
    /// Why it failed or was cancelled, if not a node error.
    pub reason: Option<String>,
    /// A cancel was requested while it ran.
    pub cancel_requested: bool,
}

impl JobSummary {
    /// The summary of `job`.
    pub fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            seq: job.seq,
            user: job.user.clone(),
            state: job.state,
            priority: job.priority,
            number: job.number.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            attempts: job.attempts,
            worker: job.worker.clone(),
            reason: job.reason.clone(),
            cancel_requested: job.cancel_requested,
        }
    }

    /// A [`Job`] with these fields and no prompt or result: what the scheduler reads (e.g. for
    /// queue positions with [`crate::scheduler::projected_order`]).
    pub fn as_job(&self) -> Job {
        Job {
            id: self.id.clone(),
            seq: self.seq,
            number: self.number.clone(),
            priority: self.priority,
            user: self.user.clone(),
            client_id: None,
            prompt: Json::Null,
            outputs: Vec::new(),
            extra_data: Json::Null,
            state: self.state,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            attempts: self.attempts,
            worker: self.worker.clone(),
            lease_until: None,
            cancel_requested: self.cancel_requested,
            result: None,
            reason: self.reason.clone(),
        }
    }

    /// Milliseconds waited before the (last) start, or so far.
    pub fn wait_ms(&self, now: i64) -> i64 {
        self.started_at.unwrap_or(now) - self.created_at
    }

    /// Milliseconds the last attempt ran, once finished.
    pub fn run_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// A job queue backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A short name (`embedded`, `redis`).
    fn name(&self) -> &'static str;

    /// Adds a job; returns it as stored (with its `number` and `seq`).
    async fn submit(&self, job: NewJob) -> Result<Job>;
    /// One job by id.
    async fn get(&self, id: &str) -> Result<Option<Job>>;
    /// Jobs passing `filter`, in submission order.
    async fn list(&self, filter: &Filter) -> Result<Vec<Job>>;
    /// Summaries of the jobs passing `filter`, in submission order.
    async fn summaries(&self, filter: &Filter) -> Result<Vec<JobSummary>> {
        Ok(self
            .list(filter)
            .await?
            .iter()
            .map(JobSummary::of)
            .collect())
    }
    /// Counters.
    async fn stats(&self) -> Result<QueueStats>;

    /// Cancels a job (pending: dequeued; running: interrupt requested). `user` restricts to that
    /// user's jobs (`None` = admin).
    async fn cancel(&self, id: &str, user: Option<&str>) -> Result<Cancelled>;
    /// Removes every pending job (of `user`, or everyone's), returning how many.
    async fn clear_pending(&self, user: Option<&str>) -> Result<usize>;
    /// Deletes finished jobs from history (`ids`, or all of `user`'s / everyone's when `None`).
    async fn delete_history(&self, ids: Option<&[String]>, user: Option<&str>) -> Result<usize>;
    /// Sets a job's instructor priority.
    async fn set_priority(&self, id: &str, priority: i64) -> Result<Option<Job>>;
    /// Moves a pending job to the front under every policy.
    async fn prioritize(&self, id: &str) -> Result<Option<Job>>;

    /// Claims the next job for `worker` under the current policy, or `None`.
    async fn claim(&self, worker: &str) -> Result<Option<Lease>>;
    /// Extends a lease and reports whether to cancel or whether the lease is lost.
    async fn heartbeat(&self, lease: &Lease) -> Result<HeartbeatReply>;
    /// Records how an attempt ended. Returns false (and changes nothing) when the lease is
    /// stale: another attempt owns the job now.
    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<bool>;
    /// Returns expired leases to the queue (or fails jobs out of attempts); returns how many.
    async fn requeue_expired(&self) -> Result<usize>;

    /// Publishes a job event to the server(s).
    async fn publish(&self, event: JobEvent) -> Result<()>;
    /// Receives every published job event and queue change notice.
    fn subscribe(&self) -> broadcast::Receiver<Notice>;
    /// Waits until work may be available (or `timeout_ms` passes).
    async fn wait_for_work(&self, timeout_ms: u64);

    /// Records a worker's heartbeat and state.
    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()>;
    /// Removes a worker (clean shutdown).
    async fn worker_gone(&self, id: &str) -> Result<()>;
    /// Workers seen recently.
    async fn workers(&self) -> Result<Vec<WorkerInfo>>;

    /// The scheduling policy.
    async fn policy(&self) -> Result<Policy>;
    /// Switches the scheduling policy.
    async fn set_policy(&self, policy: Policy) -> Result<()>;
    /// Whether new submissions are refused.
    async fn paused(&self) -> Result<bool>;
    /// Pauses or resumes new submissions.
    async fn set_paused(&self, paused: bool) -> Result<()>;

    /// Health details of the backend (connectivity, persistence).
    async fn health(&self) -> Result<Json>;
}

/// What subscribers hear.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A job event to relay.
    Event(Box<JobEvent>),
    /// The queue changed (submit, claim, finish, cancel): clients refresh their status.
    QueueChanged,
}
