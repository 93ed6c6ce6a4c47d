//! The worker side: claiming under the current policy, heartbeats, fenced completion and the
//! janitor that re-queues jobs whose worker stopped heartbeating.

use serde_json::{Number, Value as Json};

use crate::error::{Error, Result};
use crate::job::{HeartbeatReply, Job, JobState, Lease, Outcome, Policy};
use crate::scheduler::{LastServed, pick_next};

use super::codec::{job_from_reply, pairs, state_name};
use super::{Redis, redis_err};

/// How often a claim re-picks after losing the job it chose to another worker before giving up
/// for this round (each loss means another worker made progress).
const CLAIM_TRIES: usize = 32;

/// What the scheduler reads: the policy, the round-robin turns and the pending jobs (only their
/// scheduling fields are filled in).
struct Snapshot {
    policy: Policy,
    served: LastServed,
    pending: Vec<Job>,
}

/// A pending job as the scheduler sees it (no prompt).
fn pending_stub(id: String, user: String, seq: u64, number: Number, priority: i64) -> Job {
    Job {
        id,
        seq,
        number,
        priority,
        user,
        client_id: None,
        prompt: Json::Null,
        outputs: Vec::new(),
        extra_data: Json::Null,
        state: JobState::Pending,
        created_at: 0,
        started_at: None,
        finished_at: None,
        attempts: 0,
        worker: None,
        lease_until: None,
        cancel_requested: false,
        result: None,
        reason: None,
    }
}

impl Redis {
    async fn snapshot(&self) -> Result<Snapshot> {
        let (policy, served, rows): (String, Vec<String>, Vec<String>) = self
            .scripts
            .snapshot
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let corrupt = |message: String| Error::Corrupt {
            key: self.keys.state(JobState::Pending),
            message,
        };
        let served = pairs(served)
            .into_iter()
            .map(|(user, turn)| {
                turn.parse()
                    .map(|t| (user, t))
                    .map_err(|_| corrupt(format!("bad round-robin turn {turn:?}")))
            })
            .collect::<Result<LastServed>>()?;
        let mut pending = Vec::with_capacity(rows.len() / 5);
        for row in rows.chunks_exact(5) {
            let [id, user, seq, number, priority] = row else {
                continue;
            };
            let bad = || corrupt(format!("bad scheduling fields for job {id}: {row:?}"));
            pending.push(pending_stub(
                id.clone(),
                user.clone(),
                seq.parse().map_err(|_| bad())?,
                serde_json::from_str(number).map_err(|_| bad())?,
                priority.parse().map_err(|_| bad())?,
            ));
        }
        Ok(Snapshot {
            policy: Policy::parse(&policy).unwrap_or_default(),
            served,
            pending,
        })
    }

    pub(super) async fn claim_next(&self, worker: &str) -> Result<Option<Lease>> {
        for _ in 0..CLAIM_TRIES {
            let generation = self.work.current();
            let snapshot = self.snapshot().await?;
            let refs: Vec<&Job> = snapshot.pending.iter().collect();
            let Some(next) = pick_next(&refs, snapshot.policy, &snapshot.served) else {
                self.work.found_nothing(generation);
                return Ok(None);
            };
            let reply: Option<Vec<String>> = self
                .scripts
                .claim
                .arg(self.keys.prefix())
                .arg(&next.id)
                .arg(worker)
                .arg(self.config.lease_ms)
                .invoke_async(&mut self.conn())
                .await
                .map_err(redis_err)?;
            if let Some(job) = job_from_reply(&self.keys.job(&next.id), reply)? {
                return Ok(Some(Lease {
                    attempt: job.attempts,
                    worker: worker.to_string(),
                    job,
                }));
            }
            tracing::debug!(job = %next.id, "another worker took the job first; picking again");
        }
        Err(Error::Redis(format!(
            "no claim succeeded after {CLAIM_TRIES} tries (heavy contention)"
        )))
    }

    pub(super) async fn extend(&self, lease: &Lease) -> Result<HeartbeatReply> {
        let (cancel, lost): (i64, i64) = self
            .scripts
            .heartbeat
            .arg(self.keys.prefix())
            .arg(&lease.job.id)
            .arg(&lease.worker)
            .arg(lease.attempt)
            .arg(self.config.lease_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(HeartbeatReply {
            cancel: cancel == 1,
            lost: lost == 1,
        })
    }

    pub(super) async fn finish(&self, lease: &Lease, outcome: Outcome) -> Result<bool> {
        let (result, state) = match outcome {
            Outcome::Finished(r) if r.status_str == "success" => (r, JobState::Completed),
            Outcome::Finished(r) => (r, JobState::Failed),
            Outcome::Interrupted(r) => (r, JobState::Cancelled),
        };
        let result = serde_json::to_string(&result)
            .map_err(|e| Error::Redis(format!("encoding the result of {}: {e}", lease.job.id)))?;
        let recorded: i64 = self
            .scripts
            .complete
            .arg(self.keys.prefix())
            .arg(&lease.job.id)
            .arg(&lease.worker)
            .arg(lease.attempt)
            .arg(state_name(state))
            .arg(result)
            .arg(self.config.max_history)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        if recorded == 0 {
            tracing::warn!(job = %lease.job.id, attempt = lease.attempt, worker = %lease.worker, "ignoring a stale completion");
        }
        Ok(recorded == 1)
    }

    pub(super) async fn requeue(&self) -> Result<usize> {
        let reply: Vec<String> = self
            .scripts
            .expired
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let Some((now, ids)) = reply.split_first() else {
            return Ok(0);
        };
        let now: i64 = now
            .parse()
            .map_err(|_| Error::Redis(format!("bad time from Redis: {now:?}")))?;
        let mut count = 0;
        for id in ids {
            if self.lose(id, now).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Ends the expired attempt of job `id`: computes the outcome with [`Job::worker_lost`] and
    /// applies it only if the job did not move meanwhile.
    async fn lose(&self, id: &str, now: i64) -> Result<bool> {
        let Some(mut job) = self.get_job(id).await? else {
            return Ok(false);
        };
        let Some(lease_until) = job.lease_until.filter(|_| job.state == JobState::Running) else {
            return Ok(false);
        };
        let attempt = job.attempts;
        let worker = job.worker.clone().unwrap_or_default();
        job.worker_lost(
            self.config.max_attempts,
            &format!("worker {worker} stopped responding"),
            now,
        );
        let result = match (&job.result, job.state) {
            (Some(result), JobState::Failed) => serde_json::to_string(result)
                .map_err(|e| Error::Redis(format!("encoding the failure of {id}: {e}")))?,
            _ => String::new(),
        };
        let applied: i64 = self
            .scripts
            .lose
            .arg(self.keys.prefix())
            .arg(id)
            .arg(attempt)
            .arg(lease_until)
            .arg(state_name(job.state))
            .arg(job.reason.as_deref().unwrap_or(""))
            .arg(result)
            .arg(self.config.max_history)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        if applied == 1 {
            tracing::warn!(job = %id, %worker, attempts = attempt, state = state_name(job.state), "lease expired; the worker is gone");
        }
        Ok(applied == 1)
    }
}
