//! The queue's error type.

/// What went wrong in a queue operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded store failed.
    #[error("queue store: {0}")]
    Store(String),
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(String),
    /// A stored record could not be decoded.
    #[error("corrupt queue record {key}: {message}")]
    Corrupt {
        /// The record key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// New submissions are paused by the admin.
    #[error("the queue is paused: new jobs are not accepted right now")]
    Paused,
    /// The user already has too many pending jobs.
    #[error("you already have {0} jobs waiting; wait for one to finish before queueing more")]
    TooManyPending(usize),
    /// A worker's warm-up prompt failed (the worker does not join the queue).
    #[error("warm-up failed: {0}")]
    Warmup(String),
    /// A job with this id exists already.
    #[error("a job with id {0} already exists")]
    Duplicate(String),
}

/// Result alias of the queue crate.
pub type Result<T> = std::result::Result<T, Error>;
