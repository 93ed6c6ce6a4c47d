//! In-process workers (real engine, the `DevWorkload` node) on the Redis backend: jobs run and
//! save into their user's output folder, a cancel interrupts a running job promptly, and a
//! worker carries its job through a Redis crash (SIGKILL + restart) without being restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{CachePolicy, Engine};
use queue::redis::testing::RedisServer;
use queue::{
    Backend, JobState, Layout, NewJob, QueueConfig, Redis, RedisOptions, Worker, WorkerOptions,
};
use serde_json::json;
use tokio::sync::watch;

fn registry() -> Arc<nodes::Registry> {
    let mut registry = nodes::builtin_registry();
    nodes::dev::register(&mut registry);
    Arc::new(registry)
}

fn workload(user: &str, ms: u64, seed: u64) -> NewJob {
    NewJob {
        id: uuid::Uuid::new_v4().to_string(),
        user: user.into(),
        client_id: None,
        prompt: json!({
            "1": {"class_type": "DevWorkload", "inputs": {"ms": ms, "steps": 20, "seed": seed}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "dev"}},
        }),
        outputs: vec!["2".into()],
        extra_data: json!({}),
        number: None,
        front: false,
    }
}

struct Rig {
    server: RedisServer,
    base: tempfile::TempDir,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<queue::Result<()>>>,
}

async fn backend(server: &RedisServer) -> Arc<dyn Backend> {
    let mut options = RedisOptions::new(&server.url());
    options.config = QueueConfig {
        lease_ms: 2_000,
        ..Default::default()
    };
    Arc::new(Redis::connect(options).await.unwrap())
}

async fn rig(workers: usize) -> Rig {
    let server = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let layout = Arc::new(Layout::new(
        nodes::Env::under(base.path()),
        base.path().join("users"),
    ));
    let (stop, stop_rx) = watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..workers {
        let engine = Engine::new(registry(), CachePolicy::default());
        let mut options = WorkerOptions::new("cpu");
        options.heartbeat = Duration::from_millis(300);
        let worker = Worker::new(backend(&server).await, engine, layout.clone(), options);
        handles.push(tokio::spawn(worker.run(stop_rx.clone())));
    }
    Rig {
        server,
        base,
        stop,
        workers: handles,
    }
}

async fn wait_state(q: &Arc<dyn Backend>, id: &str, done: impl Fn(JobState) -> bool) -> queue::Job {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(job)) = q.get(id).await
            && done(job.state)
        {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not get there in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_run_jobs_and_save_into_the_users_folder() {
    let rig = rig(2).await;
    let q = backend(&rig.server).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            q.submit(workload(&format!("user{}", i % 3), 50, i))
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        let job = wait_state(&q, id, JobState::is_final).await;
        assert_eq!(job.state, JobState::Completed, "{:?}", job.result);
        let images = &job.result.unwrap().outputs["2"]["images"];
        assert_eq!(images[0]["type"], "output");
    }
    let saved = std::fs::read_dir(rig.base.path().join("users/user1/output"))
        .unwrap()
        .count();
    assert_eq!(saved, 2, "user1's two images are in user1's output folder");
    let workers = q.workers().await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers.iter().map(|w| w.jobs_done).sum::<u64>(), 6);
    rig.stop.send(true).unwrap();
    for w in rig.workers {
        w.await.unwrap().unwrap();
    }
    assert!(q.workers().await.unwrap().is_empty(), "workers deregister");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_job_interrupts_it() {
    let rig = rig(1).await;
    let q = backend(&rig.server).await;
    let job = q.submit(workload("ann", 20_000, 1)).await.unwrap();
    wait_state(&q, &job.id, |s| s == JobState::Running).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert_eq!(
        q.cancel(&job.id, Some("ann")).await.unwrap(),
        queue::Cancelled::Interrupting
    );
    let done = wait_state(&q, &job.id, JobState::is_final).await;
    let took = asked.elapsed();
    assert_eq!(done.state, JobState::Cancelled);
    assert!(
        took < Duration::from_secs(5),
        "interrupted long before the 20 s job would end: {took:?}"
    );
    eprintln!("cancel -> cancelled in {took:?}");
    rig.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_carries_its_job_through_a_redis_crash() {
    let mut rig = rig(1).await;
    let q = backend(&rig.server).await;
    let job = q.submit(workload("ann", 1_500, 2)).await.unwrap();
    wait_state(&q, &job.id, |s| s == JobState::Running).await;
    rig.server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.server.restart().unwrap();
    let done = wait_state(&q, &job.id, JobState::is_final).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.attempts, 1, "the lease survived the outage");
    // And the worker keeps taking work afterwards.
    let next = q.submit(workload("bob", 10, 3)).await.unwrap();
    assert_eq!(
        wait_state(&q, &next.id, JobState::is_final).await.state,
        JobState::Completed
    );
    rig.stop.send(true).unwrap();
    for w in rig.workers {
        w.await.unwrap().unwrap();
    }
}
