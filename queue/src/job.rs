//! Jobs and everything a backend stores about them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value as Json};

/// Where a job is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// Leased by a worker.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error (node failure, or too many lost attempts).
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobState {
    /// The name used by ComfyUI's jobs API (`in_progress` for running).
    pub fn api_name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "in_progress",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a jobs-API status name.
    pub fn from_api_name(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => JobState::Pending,
            "in_progress" => JobState::Running,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job is finished.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job as submitted (a validated ComfyUI prompt).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewJob {
    /// The prompt id (a canonical UUID).
    pub id: String,
    /// Who submitted it (`""` in single-user mode).
    pub user: String,
    /// The submitting WebSocket client, if any.
    pub client_id: Option<String>,
    /// The coerced API prompt.
    pub prompt: Json,
    /// The output nodes to execute.
    pub outputs: Vec<String>,
    /// `extra_data` (with `client_id` and `create_time` set, sensitive keys removed).
    pub extra_data: Json,
    /// ComfyUI's explicit `number`, if the client gave one.
    pub number: Option<f64>,
    /// ComfyUI's `front`: jump the queue.
    pub front: bool,
}

/// What running a job produced (the material of its history entry).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobResult {
    /// UI outputs per node.
    pub outputs: Map<String, Json>,
    /// Meta per node.
    pub meta: Map<String, Json>,
    /// `"success"` or `"error"`.
    pub status_str: String,
    /// Whether every output ran.
    pub completed: bool,
    /// Lifecycle messages `[event, data]`.
    pub messages: Vec<(String, Json)>,
}

/// A job and its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Prompt id.
    pub id: String,
    /// Submission sequence number (unique, increasing).
    pub seq: u64,
    /// ComfyUI's queue number (smaller runs first under FIFO; `front` makes it negative).
    pub number: Number,
    /// Instructor override: higher runs first under every policy.
    pub priority: i64,
    /// Submitting user (`""` in single-user mode).
    pub user: String,
    /// Submitting WebSocket client.
    pub client_id: Option<String>,
    /// The coerced API prompt.
    pub prompt: Json,
    /// Output nodes to execute.
    pub outputs: Vec<String>,
    /// `extra_data`.
    pub extra_data: Json,
    /// Current state.
    pub state: JobState,
    /// Submission time (ms since the epoch).
    pub created_at: i64,
    /// When the current/last attempt started (ms).
    pub started_at: Option<i64>,
    /// When it finished (ms).
    pub finished_at: Option<i64>,
    /// Attempts started so far (a job lost with its worker is retried).
    pub attempts: u32,
    /// The worker running (or that last ran) it.
    pub worker: Option<String>,
    /// Lease deadline of the running attempt (ms).
    pub lease_until: Option<i64>,
    /// Set when a cancel was requested while running; the worker interrupts the engine.
    pub cancel_requested: bool,
    /// The result once finished (absent for jobs cancelled before they ran).
    pub result: Option<JobResult>,
    /// Why the job failed or was cancelled, if not a node error (e.g. "worker lost 3 times").
    pub reason: Option<String>,
}

impl Job {
    /// The number as f64 for ordering.
    pub fn number_f64(&self) -> f64 {
        self.number.as_f64().unwrap_or(0.0)
    }

    /// Milliseconds the job waited before its (last) start, or has waited so far.
    pub fn wait_ms(&self, now: i64) -> i64 {
        self.started_at.unwrap_or(now) - self.created_at
    }
}

/// A claimed job: the job plus the attempt number that fences its completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The job as claimed.
    pub job: Job,
    /// The attempt this lease belongs to; completions for other attempts are ignored.
    pub attempt: u32,
    /// The worker holding it.
    pub worker: String,
}

/// What a heartbeat learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// A cancel was requested: interrupt the run.
    pub cancel: bool,
    /// The lease is no longer ours (expired and re-queued, or the job was deleted): stop.
    pub lost: bool,
}

/// How a worker finished an attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// The prompt ran (successfully or with a node error: see `result.status_str`).
    Finished(JobResult),
    /// The prompt was interrupted (cancelled).
    Interrupted(JobResult),
}

/// Scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Arrival order (ComfyUI's `number`), instructor priority first.
    #[default]
    Fifo,
    /// Rotate across users, so one user's many jobs cannot starve the others.
    RoundRobin,
    /// Highest priority first, then arrival order.
    Priority,
}

impl Policy {
    /// Parses `fifo`, `round_robin` (or `round-robin`), `priority`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fifo" => Some(Policy::Fifo),
            "round_robin" | "round-robin" | "roundrobin" => Some(Policy::RoundRobin),
            "priority" => Some(Policy::Priority),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fifo => "fifo",
            Policy::RoundRobin => "round_robin",
            Policy::Priority => "priority",
        }
    }
}

/// A worker's self-description, refreshed with each heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    /// Unique id (host + device + pid).
    pub id: String,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// The job it runs, if any.
    pub current_job: Option<String>,
    /// Models it keeps loaded.
    pub loaded_models: Vec<String>,
    /// Device memory in use / total, when known.
    pub memory_used: Option<u64>,
    /// Device memory total, when known.
    pub memory_total: Option<u64>,
    /// Last heartbeat (ms).
    pub last_seen: i64,
    /// Jobs finished by this worker.
    pub jobs_done: u64,
    /// Whether it is draining (finishing its job before exiting).
    pub draining: bool,
}

/// One event flowing from a worker to the server: a ComfyUI WebSocket message for a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: String,
    /// Its user (events reach only that user's sockets).
    pub user: String,
    /// The submitting client (events reach only this socket, as in ComfyUI).
    pub client_id: Option<String>,
    /// The message.
    pub message: EventMessage,
}

/// A WebSocket message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EventMessage {
    /// A JSON message `{"type", "data"}`.
    Json {
        /// `type`.
        kind: String,
        /// `data`.
        data: Json,
    },
    /// A preview image (binary frame).
    Preview {
        /// Node id.
        node: String,
        /// `image/png` / `image/jpeg`.
        mime: String,
        /// The image bytes.
        #[serde(with = "bytes_b64")]
        bytes: Vec<u8>,
    },
    /// A `progress_text` (binary frame type 3).
    Text {
        /// Node id.
        node: String,
        /// The text.
        text: String,
    },
}

pub(crate) mod bytes_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
