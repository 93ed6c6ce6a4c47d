//! Behaviour every backend must have, as async checks over `Arc<dyn Backend>`. The embedded and
//! Redis test suites run the same checks, so both backends keep the same promises.
//! Each check panics (like an assertion) when the backend misbehaves.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{Backend, Cancelled, Filter};
use crate::job::{JobResult, JobState, NewJob, Outcome, Policy};

/// A job for `user` with a fresh id.
pub fn new_job(user: &str) -> NewJob {
    NewJob {
        id: uuid::Uuid::new_v4().to_string(),
        user: user.into(),
        client_id: Some(format!("client-{user}")),
        prompt: json!({"1": {"class_type": "EmptyImage", "inputs": {}}}),
        outputs: vec!["1".into()],
        extra_data: json!({"create_time": 1}),
        number: None,
        front: false,
    }
}

fn success() -> Outcome {
    Outcome::Finished(JobResult {
        status_str: "success".into(),
        completed: true,
        ..Default::default()
    })
}

/// Jobs run in submission order under FIFO; `front` jumps ahead; numbers count up.
pub async fn fifo_order(q: Arc<dyn Backend>) {
    q.set_policy(Policy::Fifo).await.unwrap();
    let a = q.submit(new_job("u1")).await.unwrap();
    let b = q.submit(new_job("u2")).await.unwrap();
    let mut front = new_job("u3");
    front.front = true;
    let c = q.submit(front).await.unwrap();
    assert!(b.number.as_f64() > a.number.as_f64());
    let order: Vec<String> = drain(&q).await;
    assert_eq!(order, vec![c.id, a.id, b.id]);
}

async fn drain(q: &Arc<dyn Backend>) -> Vec<String> {
    let mut order = Vec::new();
    while let Some(lease) = q.claim("w").await.unwrap() {
        order.push(lease.job.id.clone());
        assert!(q.complete(&lease, success()).await.unwrap());
    }
    order
}

/// Round-robin alternates users even when one submitted many jobs first.
pub async fn round_robin_is_fair(q: Arc<dyn Backend>) {
    q.set_policy(Policy::RoundRobin).await.unwrap();
    let mut ids = Vec::new();
    for user in ["greedy", "greedy", "greedy", "a", "b"] {
        ids.push((user, q.submit(new_job(user)).await.unwrap().id));
    }
    let order = drain(&q).await;
    let users: Vec<&str> = order
        .iter()
        .map(|id| {
            ids.iter()
                .find(|(_, i)| i == id)
                .map(|(u, _)| *u)
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(
        &users[..3],
        ["greedy", "a", "b"],
        "every user is served before greedy's second job: {users:?}"
    );
}

/// Prioritize moves a pending job to the front under every policy.
pub async fn prioritize_moves_to_front(q: Arc<dyn Backend>) {
    for policy in [Policy::Fifo, Policy::RoundRobin, Policy::Priority] {
        q.set_policy(policy).await.unwrap();
        let _a = q.submit(new_job("u1")).await.unwrap();
        let _b = q.submit(new_job("u2")).await.unwrap();
        let c = q.submit(new_job("u3")).await.unwrap();
        q.prioritize(&c.id).await.unwrap().expect("job exists");
        let first = q.claim("w").await.unwrap().expect("a job");
        assert_eq!(first.job.id, c.id, "{policy:?}");
        q.complete(&first, success()).await.unwrap();
        drain(&q).await;
    }
}

/// Cancelling a pending job dequeues it; cancelling a running one asks its worker to stop;
/// users cannot cancel other users' jobs.
pub async fn cancel_pending_and_running(q: Arc<dyn Backend>) {
    let a = q.submit(new_job("u1")).await.unwrap();
    let b = q.submit(new_job("u1")).await.unwrap();
    assert_eq!(
        q.cancel(&b.id, Some("someone-else")).await.unwrap(),
        Cancelled::Nothing
    );
    assert_eq!(
        q.cancel(&b.id, Some("u1")).await.unwrap(),
        Cancelled::Dequeued
    );
    assert_eq!(
        q.get(&b.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    let lease = q.claim("w").await.unwrap().expect("a is pending");
    assert_eq!(lease.job.id, a.id);
    assert!(!q.heartbeat(&lease).await.unwrap().cancel);
    assert_eq!(
        q.cancel(&a.id, None).await.unwrap(),
        Cancelled::Interrupting
    );
    assert!(
        q.heartbeat(&lease).await.unwrap().cancel,
        "the worker hears the cancel"
    );
    let interrupted = Outcome::Interrupted(JobResult {
        status_str: "error".into(),
        ..Default::default()
    });
    assert!(q.complete(&lease, interrupted).await.unwrap());
    assert_eq!(
        q.get(&a.id).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(q.cancel(&a.id, None).await.unwrap(), Cancelled::Nothing);
}

/// A job whose worker stops heartbeating goes back to the queue; the stale worker's late
/// completion is ignored (fencing by attempt), the new attempt's is recorded.
pub async fn dead_worker_job_is_retried_and_fenced(q: Arc<dyn Backend>, lease_ms: u64) {
    let job = q.submit(new_job("u1")).await.unwrap();
    let first = q.claim("dies").await.unwrap().expect("claimed");
    tokio::time::sleep(Duration::from_millis(lease_ms + 50)).await;
    assert_eq!(q.requeue_expired().await.unwrap(), 1);
    assert_eq!(
        q.get(&job.id).await.unwrap().unwrap().state,
        JobState::Pending
    );
    let second = q.claim("survivor").await.unwrap().expect("re-claimed");
    assert_eq!(second.attempt, first.attempt + 1);
    assert!(
        q.heartbeat(&first).await.unwrap().lost,
        "the stale lease is lost"
    );
    assert!(
        !q.complete(&first, success()).await.unwrap(),
        "stale completion ignored"
    );
    assert_eq!(
        q.get(&job.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert!(q.complete(&second, success()).await.unwrap());
    let done = q.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.attempts, 2);
}

/// A job that keeps losing its worker is failed after the configured attempts, reason kept.
pub async fn poison_job_fails_after_max_attempts(
    q: Arc<dyn Backend>,
    lease_ms: u64,
    max_attempts: u32,
) {
    let job = q.submit(new_job("u1")).await.unwrap();
    for _ in 0..max_attempts {
        q.claim("dies").await.unwrap().expect("claimed");
        tokio::time::sleep(Duration::from_millis(lease_ms + 50)).await;
        q.requeue_expired().await.unwrap();
    }
    let failed = q.get(&job.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed.reason.as_deref().unwrap_or("").contains("attempts"),
        "{:?}",
        failed.reason
    );
    let result = failed.result.expect("a failure result");
    assert_eq!(result.status_str, "error");
    assert_eq!(result.messages[0].0, "execution_error");
    assert!(q.claim("w").await.unwrap().is_none(), "not retried again");
}

/// Heartbeats keep a long job's lease alive.
pub async fn heartbeats_keep_the_lease(q: Arc<dyn Backend>, lease_ms: u64) {
    let job = q.submit(new_job("u1")).await.unwrap();
    let lease = q.claim("w").await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(lease_ms / 2)).await;
        assert!(!q.heartbeat(&lease).await.unwrap().lost);
        assert_eq!(q.requeue_expired().await.unwrap(), 0);
    }
    assert!(q.complete(&lease, success()).await.unwrap());
    assert_eq!(
        q.get(&job.id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

/// Pausing refuses new submissions; the per-user limit refuses extra jobs.
pub async fn pause_and_limits(q: Arc<dyn Backend>) {
    q.set_paused(true).await.unwrap();
    assert!(matches!(
        q.submit(new_job("u1")).await,
        Err(crate::Error::Paused)
    ));
    q.set_paused(false).await.unwrap();
    q.submit(new_job("u1")).await.unwrap();
}

/// Lists filter by user and state; history deletes only finished jobs.
pub async fn listing_and_history(q: Arc<dyn Backend>) {
    let a = q.submit(new_job("alice")).await.unwrap();
    let _b = q.submit(new_job("bob")).await.unwrap();
    let alice = Filter {
        user: Some("alice".into()),
        states: vec![],
    };
    assert_eq!(q.list(&alice).await.unwrap().len(), 1);
    let lease = q.claim("w").await.unwrap().unwrap();
    assert_eq!(lease.job.id, a.id);
    q.complete(&lease, success()).await.unwrap();
    let done = Filter {
        user: None,
        states: vec![JobState::Completed],
    };
    assert_eq!(q.list(&done).await.unwrap().len(), 1);
    assert_eq!(
        q.delete_history(None, Some("bob")).await.unwrap(),
        0,
        "bob has no finished jobs"
    );
    assert_eq!(
        q.delete_history(Some(std::slice::from_ref(&a.id)), None)
            .await
            .unwrap(),
        1
    );
    assert!(q.get(&a.id).await.unwrap().is_none());
    assert_eq!(q.clear_pending(Some("bob")).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.pending, 0);
}

/// Published events reach subscribers.
pub async fn events_reach_subscribers(q: Arc<dyn Backend>) {
    let mut rx = q.subscribe();
    let job = q.submit(new_job("u1")).await.unwrap();
    let event = crate::worker::done_event(&job);
    q.publish(event).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let notice = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("an event in time")
            .unwrap();
        if let crate::backend::Notice::Event(e) = notice {
            assert_eq!(e.job_id, job.id);
            break;
        }
    }
}
