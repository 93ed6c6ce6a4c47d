//! Events, the worker registry, the admin's switches (policy, pause) and health.

use std::collections::HashMap;
use std::time::Instant;

use redis::AsyncCommands;
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::job::{JobEvent, JobState, Policy, WorkerInfo};
use crate::now_ms;

use super::{Redis, redis_err};

/// Workers silent for this long are dropped from the registry (they are already hidden after
/// three leases).
const FORGET_WORKER_MS: i64 = 3_600_000;

/// `field:value` lines of an `INFO` reply.
fn info_fields(info: &str) -> HashMap<&str, &str> {
    info.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect()
}

impl Redis {
    pub(super) async fn publish_event(&self, event: &JobEvent) -> Result<()> {
        let payload = serde_json::to_string(event)
            .map_err(|e| Error::Redis(format!("encoding an event: {e}")))?;
        let _: i64 = self
            .conn()
            .publish(self.keys.events(), payload)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn record_worker(&self, info: &WorkerInfo) -> Result<()> {
        let payload = serde_json::to_string(info)
            .map_err(|e| Error::Redis(format!("encoding worker {}: {e}", info.id)))?;
        let _: i64 = self
            .conn()
            .hset(self.keys.workers(), &info.id, payload)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn forget_worker(&self, id: &str) -> Result<()> {
        let _: i64 = self
            .conn()
            .hdel(self.keys.workers(), id)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn live_workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut conn = self.conn();
        let all: HashMap<String, String> =
            conn.hgetall(self.keys.workers()).await.map_err(redis_err)?;
        let now = now_ms();
        let cutoff = now - 3 * self.config.lease_ms;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, text) in all {
            match serde_json::from_str::<WorkerInfo>(&text) {
                Ok(info) if info.last_seen >= cutoff => live.push(info),
                Ok(info) if info.last_seen < now - FORGET_WORKER_MS => gone.push(id),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(worker = %id, "dropping an undecodable worker record: {e}");
                    gone.push(id);
                }
            }
        }
        if !gone.is_empty() {
            let _: i64 = conn
                .hdel(self.keys.workers(), gone)
                .await
                .map_err(redis_err)?;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    pub(super) async fn read_policy(&self) -> Result<Policy> {
        let name: Option<String> = self
            .conn()
            .hget(self.keys.meta(), "policy")
            .await
            .map_err(redis_err)?;
        Ok(name.as_deref().and_then(Policy::parse).unwrap_or_default())
    }

    pub(super) async fn write_policy(&self, policy: Policy) -> Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .hset(self.keys.meta(), "policy", policy.name())
            .ignore()
            .publish(self.keys.notices(), "changed")
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn read_paused(&self) -> Result<bool> {
        let paused: Option<String> = self
            .conn()
            .hget(self.keys.meta(), "paused")
            .await
            .map_err(redis_err)?;
        Ok(paused.as_deref() == Some("1"))
    }

    pub(super) async fn write_paused(&self, paused: bool) -> Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .hset(self.keys.meta(), "paused", if paused { "1" } else { "0" })
            .ignore()
            .publish(self.keys.notices(), "changed")
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn check_health(&self) -> Result<Json> {
        let mut conn = self.conn();
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .arg("persistence")
            .arg("clients")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let fields = info_fields(&info);
        let field = |name: &str| fields.get(name).copied().unwrap_or("");
        let jobs: usize = conn.zcard(self.keys.jobs()).await.map_err(redis_err)?;
        let pending: usize = conn
            .zcard(self.keys.state(JobState::Pending))
            .await
            .map_err(redis_err)?;
        Ok(json!({
            "backend": "redis",
            "url": self.url,
            "prefix": self.keys.prefix(),
            "ping_ms": ping_ms,
            "redis_version": field("redis_version"),
            "aof_enabled": field("aof_enabled") == "1",
            "aof_last_write_status": field("aof_last_write_status"),
            "rdb_last_bgsave_status": field("rdb_last_bgsave_status"),
            "connected_clients": field("connected_clients").parse::<u64>().ok(),
            "used_memory": field("used_memory").parse::<u64>().ok(),
            "jobs": jobs,
            "pending": pending,
        }))
    }
}
