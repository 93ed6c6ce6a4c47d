//! The embedded backend: the shared conformance checks, persistence across restarts, and a
//! worker running real prompts on the engine.

use std::sync::Arc;

use queue::conformance as c;
use queue::{Backend, Embedded, JobState, QueueConfig};

const LEASE_MS: u64 = 150;

fn queue() -> Arc<dyn Backend> {
    Arc::new(Embedded::in_memory(QueueConfig {
        lease_ms: LEASE_MS as i64,
        max_attempts: 3,
        ..Default::default()
    }))
}

#[tokio::test]
async fn fifo_order() {
    c::fifo_order(queue()).await;
}

#[tokio::test]
async fn round_robin_is_fair() {
    c::round_robin_is_fair(queue()).await;
}

#[tokio::test]
async fn prioritize_moves_to_front() {
    c::prioritize_moves_to_front(queue()).await;
}

#[tokio::test]
async fn cancel_pending_and_running() {
    c::cancel_pending_and_running(queue()).await;
}

#[tokio::test]
async fn dead_worker_job_is_retried_and_fenced() {
    c::dead_worker_job_is_retried_and_fenced(queue(), LEASE_MS).await;
}

#[tokio::test]
async fn poison_job_fails_after_max_attempts() {
    c::poison_job_fails_after_max_attempts(queue(), LEASE_MS, 3).await;
}

#[tokio::test]
async fn heartbeats_keep_the_lease() {
    c::heartbeats_keep_the_lease(queue(), LEASE_MS).await;
}

#[tokio::test]
async fn pause_and_limits() {
    c::pause_and_limits(queue()).await;
    let limited: Arc<dyn Backend> = Arc::new(Embedded::in_memory(QueueConfig {
        max_pending_per_user: 2,
        ..Default::default()
    }));
    limited.submit(c::new_job("u")).await.unwrap();
    limited.submit(c::new_job("u")).await.unwrap();
    assert!(matches!(
        limited.submit(c::new_job("u")).await,
        Err(queue::Error::TooManyPending(2))
    ));
    limited.submit(c::new_job("other")).await.unwrap();
}

#[tokio::test]
async fn listing_and_history() {
    c::listing_and_history(queue()).await;
}

#[tokio::test]
async fn events_reach_subscribers() {
    c::events_reach_subscribers(queue()).await;
}

#[tokio::test]
async fn restart_keeps_jobs_and_requeues_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let config = QueueConfig::default();
    let (pending_id, running_id, done_id) = {
        let q = Embedded::open(&path, config).unwrap();
        q.set_policy(queue::Policy::RoundRobin).await.unwrap();
        let done = q.submit(c::new_job("u")).await.unwrap();
        let lease = q.claim("w").await.unwrap().unwrap();
        q.complete(
            &lease,
            queue::Outcome::Finished(queue::JobResult {
                status_str: "success".into(),
                completed: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        let running = q.submit(c::new_job("u")).await.unwrap();
        q.claim("w").await.unwrap().unwrap();
        let pending = q.submit(c::new_job("v")).await.unwrap();
        (pending.id, running.id, done.id)
    };
    let q = Embedded::open(&path, config).unwrap();
    assert_eq!(q.policy().await.unwrap(), queue::Policy::RoundRobin);
    assert_eq!(
        q.get(&done_id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    assert_eq!(
        q.get(&pending_id).await.unwrap().unwrap().state,
        JobState::Pending
    );
    let requeued = q.get(&running_id).await.unwrap().unwrap();
    assert_eq!(
        requeued.state,
        JobState::Pending,
        "a job running at the crash goes back to the queue"
    );
    assert_eq!(requeued.attempts, 1);
    let next = q.submit(c::new_job("w")).await.unwrap();
    assert!(
        next.number_f64() > 2.0,
        "the counter survives: {}",
        next.number
    );
}
