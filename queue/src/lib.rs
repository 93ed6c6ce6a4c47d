//! The shared job queue: one interface ([`backend::Backend`]) with an embedded, persistent
//! in-process backend and a Redis backend for several machines; FIFO / round-robin / priority
//! scheduling; leases with heartbeats so a job whose worker dies is retried elsewhere; and the
//! worker loop that runs jobs on an [`engine::Engine`].

pub mod backend;
#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod error;
pub mod eta;
pub mod job;
pub mod layout;
pub mod push;
pub mod redis;
pub mod scheduler;
pub mod worker;

pub use self::redis::{Redis, RedisOptions};
pub use backend::{Backend, Cancelled, Filter, JobSummary, Notice, QueueConfig, QueueStats};
pub use embedded::Embedded;
pub use error::{Error, Result};
pub use job::{
    EventMessage, Job, JobEvent, JobResult, JobState, Lease, NewJob, Outcome, Policy, WorkerInfo,
};
pub use layout::Layout;
pub use worker::{MemoryProbe, Worker, WorkerOptions};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    engine::events::now_ms()
}
