//! Submitting, reading, listing, cancelling and reordering jobs.

use std::collections::HashSet;

use redis::AsyncCommands;
use serde_json::Number;

use crate::backend::{Cancelled, Filter, JobSummary, QueueStats};
use crate::error::{Error, Result};
use crate::job::{Job, JobState, NewJob};

use super::codec::{STATES, job_from_fields, job_from_reply, spec_json};
use super::{Redis, redis_err};

/// Ids fetched per pipeline round trip when loading many jobs.
const BATCH: usize = 256;

/// Job hash fields a summary needs (everything but `spec` and `result`).
const SUMMARY_FIELDS: [&str; 12] = [
    "seq",
    "user",
    "state",
    "priority",
    "number",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "worker",
    "reason",
    "cancel",
];

impl Redis {
    pub(super) async fn submit_job(&self, new: NewJob) -> Result<Job> {
        let spec = spec_json(&new)?;
        let number = match new.number {
            Some(n) => Number::from_f64(n)
                .unwrap_or_else(|| Number::from(0))
                .to_string(),
            None => String::new(),
        };
        let reply: Vec<String> = self
            .scripts
            .submit
            .arg(self.keys.prefix())
            .arg(&new.id)
            .arg(&new.user)
            .arg(&spec)
            .arg(&number)
            .arg(if new.front { "1" } else { "0" })
            .arg(self.config.max_pending_per_user)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        match reply.first().map(String::as_str) {
            Some("ok") if reply.len() == 4 => {}
            Some("paused") => return Err(Error::Paused),
            Some("duplicate") => return Err(Error::Duplicate(new.id)),
            Some("too_many") => {
                let n = reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                return Err(Error::TooManyPending(n));
            }
            _ => return Err(Error::Redis(format!("unexpected submit reply {reply:?}"))),
        }
        let corrupt = |what: &str| Error::Corrupt {
            key: self.keys.job(&new.id),
            message: format!("submit returned a bad {what}: {reply:?}"),
        };
        Ok(Job {
            seq: reply[1].parse().map_err(|_| corrupt("seq"))?,
            number: serde_json::from_str(&reply[2]).map_err(|_| corrupt("number"))?,
            created_at: reply[3].parse().map_err(|_| corrupt("time"))?,
            id: new.id,
            priority: 0,
            user: new.user,
            client_id: new.client_id,
            prompt: new.prompt,
            outputs: new.outputs,
            extra_data: new.extra_data,
            state: JobState::Pending,
            started_at: None,
            finished_at: None,
            attempts: 0,
            worker: None,
            lease_until: None,
            cancel_requested: false,
            result: None,
            reason: None,
        })
    }

    pub(super) async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        let key = self.keys.job(id);
        let fields: std::collections::HashMap<String, String> =
            self.conn().hgetall(&key).await.map_err(redis_err)?;
        if fields.is_empty() {
            return Ok(None);
        }
        job_from_fields(&key, &fields).map(Some)
    }

    /// The ids that may pass `filter` (a superset; callers filter the loaded jobs again).
    async fn candidate_ids(&self, filter: &Filter) -> Result<Vec<String>> {
        let mut conn = self.conn();
        if filter.states.is_empty() {
            let key = match &filter.user {
                Some(user) => self.keys.by_user(user),
                None => self.keys.jobs(),
            };
            return conn.zrange(key, 0, -1).await.map_err(redis_err);
        }
        let mut pipe = redis::pipe();
        for state in &filter.states {
            pipe.zrange(self.keys.state(*state), 0, -1);
        }
        let per_state: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let mut ids: Vec<String> = per_state.into_iter().flatten().collect();
        if let Some(user) = &filter.user {
            let mine: HashSet<String> = conn
                .zrange(self.keys.by_user(user), 0, -1)
                .await
                .map_err(redis_err)?;
            ids.retain(|id| mine.contains(id));
        }
        Ok(ids)
    }

    pub(super) async fn list_jobs(&self, filter: &Filter) -> Result<Vec<Job>> {
        let ids = self.candidate_ids(filter).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        let mut conn = self.conn();
        for chunk in ids.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.keys.job(id));
            }
            let hashes: Vec<std::collections::HashMap<String, String>> =
                pipe.query_async(&mut conn).await.map_err(redis_err)?;
            for (id, fields) in chunk.iter().zip(hashes) {
                // Deleted between the index read and now.
                if fields.is_empty() {
                    continue;
                }
                let job = job_from_fields(&self.keys.job(id), &fields)?;
                if filter.matches(&job) {
                    jobs.push(job);
                }
            }
        }
        jobs.sort_by_key(|j| j.seq);
        Ok(jobs)
    }

    pub(super) async fn list_summaries(&self, filter: &Filter) -> Result<Vec<JobSummary>> {
        let ids = self.candidate_ids(filter).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.conn();
        for chunk in ids.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hmget(self.keys.job(id), &SUMMARY_FIELDS[..]);
            }
            let rows: Vec<Vec<Option<String>>> =
                pipe.query_async(&mut conn).await.map_err(redis_err)?;
            for (id, row) in chunk.iter().zip(rows) {
                if let Some(summary) = self.summary(id, row)?
                    && filter.user.as_ref().is_none_or(|u| &summary.user == u)
                    && (filter.states.is_empty() || filter.states.contains(&summary.state))
                {
                    out.push(summary);
                }
            }
        }
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    /// A summary from the [`SUMMARY_FIELDS`] of job `id` (`None` if it was deleted meanwhile).
    fn summary(&self, id: &str, row: Vec<Option<String>>) -> Result<Option<JobSummary>> {
        if row.iter().all(Option::is_none) {
            return Ok(None);
        }
        let key = self.keys.job(id);
        let mut fields = std::collections::HashMap::new();
        for (name, value) in SUMMARY_FIELDS.iter().zip(row) {
            if let Some(value) = value {
                fields.insert(name.to_string(), value);
            }
        }
        fields.insert("id".into(), id.to_string());
        fields.insert(
            "spec".into(),
            r#"{"client_id":null,"prompt":null,"outputs":[],"extra_data":null}"#.into(),
        );
        let job = job_from_fields(&key, &fields)?;
        Ok(Some(JobSummary::of(&job)))
    }

    pub(super) async fn count_states(&self) -> Result<QueueStats> {
        let mut pipe = redis::pipe();
        for state in STATES {
            pipe.zcard(self.keys.state(state));
        }
        let counts: Vec<usize> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let count = |state: JobState| {
            STATES
                .iter()
                .position(|s| *s == state)
                .and_then(|i| counts.get(i).copied())
                .unwrap_or(0)
        };
        Ok(QueueStats {
            pending: count(JobState::Pending),
            running: count(JobState::Running),
            completed: count(JobState::Completed),
            failed: count(JobState::Failed),
            cancelled: count(JobState::Cancelled),
        })
    }

    pub(super) async fn cancel_job(&self, id: &str, user: Option<&str>) -> Result<Cancelled> {
        let reply: String = self
            .scripts
            .cancel
            .arg(self.keys.prefix())
            .arg(id)
            .arg(user.unwrap_or(""))
            .arg(if user.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(match reply.as_str() {
            "dequeued" => Cancelled::Dequeued,
            "interrupting" => Cancelled::Interrupting,
            _ => Cancelled::Nothing,
        })
    }

    pub(super) async fn clear_jobs(&self, user: Option<&str>) -> Result<usize> {
        self.scripts
            .clear
            .arg(self.keys.prefix())
            .arg(user.unwrap_or(""))
            .arg(if user.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    pub(super) async fn delete_jobs(
        &self,
        ids: Option<&[String]>,
        user: Option<&str>,
    ) -> Result<usize> {
        let mut invocation = self.scripts.delete.prepare_invoke();
        invocation
            .arg(self.keys.prefix())
            .arg(user.unwrap_or(""))
            .arg(if user.is_some() { "1" } else { "0" });
        match ids {
            Some([]) => return Ok(0),
            Some(ids) => {
                invocation.arg(ids);
            }
            None => {
                invocation.arg("*");
            }
        }
        invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    pub(super) async fn set_job_priority(&self, id: &str, priority: i64) -> Result<Option<Job>> {
        let reply: Option<Vec<String>> = self
            .scripts
            .set_priority
            .arg(self.keys.prefix())
            .arg(id)
            .arg(priority)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        job_from_reply(&self.keys.job(id), reply)
    }

    pub(super) async fn prioritize_job(&self, id: &str) -> Result<Option<Job>> {
        let reply: Option<Vec<String>> = self
            .scripts
            .prioritize
            .arg(self.keys.prefix())
            .arg(id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        job_from_reply(&self.keys.job(id), reply)
    }
}
