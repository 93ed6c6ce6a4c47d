//! The Redis backend: the queue shared by a server and workers on several machines.
//!
//! Every state transition is one Lua script (see `scripts` and `lua/`), so it is atomic: a claim
//! moves a job from the pending set to the running set with its lease in one step (no job is ever
//! in neither), completions are fenced by (job, attempt, worker), expired leases are re-queued
//! (or failed after `max_attempts`, reason kept) by whichever worker runs the janitor. All lease
//! times come from the Redis server's clock, so machines with skewed clocks agree.
//!
//! Scheduling reuses [`crate::scheduler`] so FIFO / round-robin / priority mean exactly what they
//! mean in the embedded backend: a claim reads the pending set's scheduling fields, the policy
//! and the round-robin turns atomically (one read-only script), picks in Rust with
//! [`pick_next`](crate::scheduler::pick_next), then commits with the claim script, which succeeds
//! only if that job is still pending. Two workers that read the same state pick the same job, so
//! the loser simply picks again (optimistic concurrency); a job submitted or reordered between
//! the read and the commit is ordered after this claim, as if it had arrived a moment later.
//! Porting the policies to Lua would have meant a second definition to keep in step.
//!
//! URLs: `redis://[user][:password]@host:port[/db]`, `rediss://...` for TLS (rustls, the system's
//! root certificates, or `RedisOptions::ca_file`; `rediss://...#insecure` skips verification).

mod codec;
mod control;
mod jobs;
mod keys;
mod lease;
mod listener;
mod scripts;
pub mod snapshot;
#[doc(hidden)]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value as Json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::backend::{Backend, Cancelled, Filter, JobSummary, Notice, QueueConfig, QueueStats};
use crate::error::{Error, Result};
use crate::job::{HeartbeatReply, Job, JobEvent, Lease, NewJob, Outcome, Policy, WorkerInfo};

use keys::Keys;
use listener::{Listener, WorkSignal};
use scripts::Scripts;

/// How to reach Redis and what the queue promises.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://...` or `rediss://...` (password and TLS supported).
    pub url: String,
    /// Prefix of every key and channel (several queues can share one Redis).
    pub prefix: String,
    /// An extra root certificate (PEM) to trust for `rediss://` (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Leases, attempts, history size, per-user limit.
    pub config: QueueConfig,
}

impl RedisOptions {
    /// Options for `url` with the default prefix (`comfyrs`) and queue settings.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: "comfyrs".into(),
            ca_file: None,
            config: QueueConfig::default(),
        }
    }
}

/// The Redis-backed queue.
pub struct Redis {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    config: QueueConfig,
    notices: broadcast::Sender<Notice>,
    work: Arc<WorkSignal>,
    listener: JoinHandle<()>,
    url: String,
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::Redis(e.to_string())
}

/// `url` with its password replaced by `***` (for logs and health pages).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let hidden = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}://{hidden}{}", &rest[at..])
}

fn client(options: &RedisOptions) -> Result<redis::Client> {
    if options.url.starts_with("rediss://") {
        // rustls needs a process-wide crypto provider; another library may have set one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let opened = match &options.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Redis(format!("reading the CA file {}: {e}", path.display()))
            })?;
            redis::Client::build_with_tls(
                options.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        None => redis::Client::open(options.url.as_str()),
    };
    opened.map_err(|e| Error::Redis(format!("{}: {e}", redact(&options.url))))
}

impl Redis {
    /// Connects (failing if Redis cannot be reached now) and subscribes to the queue's channels.
    /// Later outages are survived: commands fail while Redis is away and work again once it is
    /// back; the subscription reconnects by itself.
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        let url = redact(&options.url);
        let client = client(&options)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_with_config(manager_config)
            .await
            .map_err(|e| Error::Redis(format!("connecting to {url}: {e}")))?;
        let keys = Keys::new(&options.prefix);
        let (notices, _) = broadcast::channel(4096);
        let work = Arc::new(WorkSignal::default());
        let (listener, ready) = Listener {
            client,
            events: keys.events(),
            notices: keys.notices(),
            tx: notices.clone(),
            work: work.clone(),
        }
        .spawn();
        if tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .is_err()
        {
            listener.abort();
            return Err(Error::Redis(format!("cannot subscribe to {url}")));
        }
        tracing::info!(redis = %url, prefix = %options.prefix, "connected to the Redis queue");
        Ok(Self {
            conn,
            keys,
            scripts: Scripts::new(),
            config: options.config,
            notices,
            work,
            listener,
            url,
        })
    }

    /// A connection handle (cheap: the manager multiplexes one connection).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The queue settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl Backend for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn submit(&self, job: NewJob) -> Result<Job> {
        self.submit_job(job).await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.get_job(id).await
    }

    async fn list(&self, filter: &Filter) -> Result<Vec<Job>> {
        self.list_jobs(filter).await
    }

    async fn summaries(&self, filter: &Filter) -> Result<Vec<JobSummary>> {
        self.list_summaries(filter).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.count_states().await
    }

    async fn cancel(&self, id: &str, user: Option<&str>) -> Result<Cancelled> {
        self.cancel_job(id, user).await
    }

    async fn clear_pending(&self, user: Option<&str>) -> Result<usize> {
        self.clear_jobs(user).await
    }

    async fn delete_history(&self, ids: Option<&[String]>, user: Option<&str>) -> Result<usize> {
        self.delete_jobs(ids, user).await
    }

    async fn set_priority(&self, id: &str, priority: i64) -> Result<Option<Job>> {
        self.set_job_priority(id, priority).await
    }

    async fn prioritize(&self, id: &str) -> Result<Option<Job>> {
        self.prioritize_job(id).await
    }

    async fn claim(&self, worker: &str) -> Result<Option<Lease>> {
        self.claim_next(worker).await
    }

    async fn heartbeat(&self, lease: &Lease) -> Result<HeartbeatReply> {
        self.extend(lease).await
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<bool> {
        self.finish(lease, outcome).await
    }

    async fn requeue_expired(&self) -> Result<usize> {
        self.requeue().await
    }

    async fn publish(&self, event: JobEvent) -> Result<()> {
        self.publish_event(&event).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    async fn wait_for_work(&self, timeout_ms: u64) {
        self.work.wait(Duration::from_millis(timeout_ms)).await
    }

    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()> {
        self.record_worker(info).await
    }

    async fn worker_gone(&self, id: &str) -> Result<()> {
        self.forget_worker(id).await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.live_workers().await
    }

    async fn policy(&self) -> Result<Policy> {
        self.read_policy().await
    }

    async fn set_policy(&self, policy: Policy) -> Result<()> {
        self.write_policy(policy).await
    }

    async fn paused(&self) -> Result<bool> {
        self.read_paused().await
    }

    async fn set_paused(&self, paused: bool) -> Result<()> {
        self.write_paused(paused).await
    }

    async fn health(&self) -> Result<Json> {
        self.check_health().await
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://user:pw@h/1#insecure"),
            "rediss://user:***@h/1#insecure"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://tok@h"), "redis://***@h");
    }
}
