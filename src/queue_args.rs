//! Queue settings shared by `comfyrs serve` and `comfyrs worker`: which backend (the embedded
//! one, or Redis with `--redis URL`), leases and retries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use queue::{Backend, QueueConfig, Redis, RedisOptions};

/// Redis and lease settings.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Use the shared Redis queue at this URL instead of the embedded one:
    /// `redis://[user][:password]@host:6379[/db]`, or `rediss://...` for TLS
    /// (`rediss://...#insecure` skips certificate checks).
    #[arg(long, env = "COMFYRS_REDIS")]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel (several queues can share one Redis).
    #[arg(long, env = "COMFYRS_REDIS_PREFIX", default_value = "comfyrs")]
    pub redis_prefix: String,
    /// A CA certificate (PEM) to trust for `rediss://` besides the system's roots.
    #[arg(long, env = "COMFYRS_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,
    /// How long a claimed job stays leased without a heartbeat before it goes back to the
    /// queue (ms). Give every process of one queue the same value.
    #[arg(long, env = "COMFYRS_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: i64,
    /// Attempts before a job whose workers keep dying is failed.
    #[arg(long, env = "COMFYRS_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Worker heartbeat period (ms); keep it well under --lease-ms.
    #[arg(long, env = "COMFYRS_HEARTBEAT_MS", default_value_t = 1_000)]
    pub heartbeat_ms: u64,
}

impl QueueArgs {
    /// The queue promises, with the history size and per-user limit given.
    pub fn config(&self, max_history: usize, max_pending_per_user: usize) -> QueueConfig {
        QueueConfig {
            lease_ms: self.lease_ms,
            max_attempts: self.max_attempts,
            max_history,
            max_pending_per_user,
        }
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    /// Checks the lease and heartbeat agree.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.heartbeat_ms as i64 * 2 <= self.lease_ms,
            "--heartbeat-ms ({}) must be at most half of --lease-ms ({})",
            self.heartbeat_ms,
            self.lease_ms
        );
        Ok(())
    }

    /// Connects to the Redis queue at `url`.
    pub async fn connect_redis(
        &self,
        url: &str,
        config: QueueConfig,
    ) -> anyhow::Result<Arc<dyn Backend>> {
        let options = RedisOptions {
            url: url.to_string(),
            prefix: self.redis_prefix.clone(),
            ca_file: self.redis_ca.clone(),
            config,
        };
        let redis = Redis::connect(options)
            .await
            .with_context(|| format!("connecting to {}", queue::redis::redact(url)))?;
        Ok(Arc::new(redis))
    }
}
