//! Which pending job runs next, for each policy. Pure functions over the pending set, shared by
//! every backend so FIFO / round-robin / priority mean the same thing everywhere.
//!
//! Under every policy a job with a higher instructor `priority` runs first. Then:
//! - FIFO: ComfyUI's `number` (smaller first; `front` makes it negative), then submission order.
//! - Round-robin: the user served longest ago (never-served users first, by their oldest job),
//!   then that user's oldest job. One user's many jobs cannot starve the others.
//! - Priority: like FIFO; the difference is that under FIFO only an explicit instructor override
//!   (`prioritize`) and ComfyUI's `front` reorder jobs, while under priority every job's
//!   priority value (e.g. per-user priority set by the admin) is honoured first.

use std::collections::HashMap;

use crate::job::{Job, Policy};

/// What round-robin remembers: when each user was last served (a monotonically increasing turn).
pub type LastServed = HashMap<String, u64>;

fn fifo_key(job: &Job) -> (f64, u64) {
    (job.number_f64(), job.seq)
}

/// The id of the pending job to run next, or `None` if there is none. `pending` may be in any
/// order; `last_served` is only read by round-robin.
pub fn pick_next<'a>(
    pending: &[&'a Job],
    policy: Policy,
    last_served: &LastServed,
) -> Option<&'a Job> {
    let top = pending.iter().map(|j| j.priority).max()?;
    let candidates: Vec<&&Job> = match policy {
        // FIFO: only raised priorities (> 0) jump; the rest is arrival order.
        Policy::Fifo if top <= 0 => pending.iter().collect(),
        _ => pending.iter().filter(|j| j.priority == top).collect(),
    };
    match policy {
        Policy::Fifo | Policy::Priority => candidates
            .into_iter()
            .min_by(|a, b| {
                fifo_key(a)
                    .partial_cmp(&fifo_key(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .copied(),
        Policy::RoundRobin => {
            // Oldest job per user, then the user served longest ago.
            let mut per_user: HashMap<&str, &Job> = HashMap::new();
            for job in candidates {
                let entry = per_user.entry(job.user.as_str()).or_insert(job);
                if fifo_key(job) < fifo_key(entry) {
                    *entry = job;
                }
            }
            per_user.into_values().min_by(|a, b| {
                let ka = (last_served.get(&a.user).copied(), fifo_key(a));
                let kb = (last_served.get(&b.user).copied(), fifo_key(b));
                ka.partial_cmp(&kb).unwrap_or(std::cmp::Ordering::Equal)
            })
        }
    }
}

/// The order in which the pending jobs would run if nothing else arrived (for queue positions
/// and ETAs): repeatedly pick and pretend the pick's user was just served.
pub fn projected_order<'a>(
    pending: &[&'a Job],
    policy: Policy,
    last_served: &LastServed,
) -> Vec<&'a Job> {
    let mut rest: Vec<&Job> = pending.to_vec();
    let mut served = last_served.clone();
    let mut turn = served.values().copied().max().unwrap_or(0);
    let mut order = Vec::with_capacity(rest.len());
    while let Some(next) = pick_next(&rest, policy, &served) {
        turn += 1;
        served.insert(next.user.clone(), turn);
        rest.retain(|j| j.id != next.id);
        order.push(next);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobState;
    use serde_json::{Number, json};

    fn job(id: &str, user: &str, seq: u64, priority: i64) -> Job {
        Job {
            id: id.into(),
            seq,
            number: Number::from(seq),
            priority,
            user: user.into(),
            client_id: None,
            prompt: json!({}),
            outputs: vec![],
            extra_data: json!({}),
            state: JobState::Pending,
            created_at: seq as i64,
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

    fn order(jobs: &[Job], policy: Policy) -> Vec<String> {
        let refs: Vec<&Job> = jobs.iter().collect();
        projected_order(&refs, policy, &LastServed::new())
            .into_iter()
            .map(|j| j.id.clone())
            .collect()
    }

    #[test]
    fn fifo_is_arrival_order_with_overrides_first() {
        let mut jobs = vec![
            job("a1", "a", 1, 0),
            job("a2", "a", 2, 0),
            job("b1", "b", 3, 0),
        ];
        assert_eq!(order(&jobs, Policy::Fifo), ["a1", "a2", "b1"]);
        jobs[2].priority = 10;
        assert_eq!(order(&jobs, Policy::Fifo), ["b1", "a1", "a2"]);
        jobs[2].priority = 0;
        jobs[1].number = Number::from(-5);
        assert_eq!(
            order(&jobs, Policy::Fifo),
            ["a2", "a1", "b1"],
            "front (negative number) jumps"
        );
    }

    #[test]
    fn round_robin_alternates_users() {
        let jobs = vec![
            job("a1", "a", 1, 0),
            job("a2", "a", 2, 0),
            job("a3", "a", 3, 0),
            job("b1", "b", 4, 0),
            job("c1", "c", 5, 0),
            job("b2", "b", 6, 0),
        ];
        assert_eq!(
            order(&jobs, Policy::RoundRobin),
            ["a1", "b1", "c1", "a2", "b2", "a3"]
        );
    }

    #[test]
    fn round_robin_prefers_users_served_longest_ago() {
        let jobs = [job("a1", "a", 1, 0), job("b1", "b", 2, 0)];
        let refs: Vec<&Job> = jobs.iter().collect();
        let mut served = LastServed::new();
        served.insert("a".into(), 5);
        served.insert("b".into(), 3);
        assert_eq!(
            pick_next(&refs, Policy::RoundRobin, &served).unwrap().id,
            "b1"
        );
    }

    #[test]
    fn priority_policy_orders_by_priority_then_arrival() {
        let jobs = vec![
            job("a1", "a", 1, 0),
            job("b1", "b", 2, 2),
            job("c1", "c", 3, 1),
            job("b2", "b", 4, 2),
        ];
        assert_eq!(order(&jobs, Policy::Priority), ["b1", "b2", "c1", "a1"]);
    }

    #[test]
    fn empty_queue_has_no_next_job() {
        assert!(pick_next(&[], Policy::Fifo, &LastServed::new()).is_none());
    }
}
