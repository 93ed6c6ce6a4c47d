//! The Redis backend against a real `redis-server` (started per test on a free loopback port,
//! AOF on): the shared conformance checks, the same decisions as the embedded backend for the
//! same history, survival of a Redis crash (SIGKILL + restart), several backends racing for the
//! same jobs, passwords and TLS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use queue::conformance as c;
use queue::redis::testing::{RedisServer, ServerOptions, TlsFiles};
use queue::{
    Backend, Embedded, JobResult, JobState, Notice, Outcome, Policy, QueueConfig, Redis,
    RedisOptions,
};

const LEASE_MS: u64 = 150;

fn config() -> QueueConfig {
    QueueConfig {
        lease_ms: LEASE_MS as i64,
        max_attempts: 3,
        ..Default::default()
    }
}

async fn connect(server: &RedisServer, config: QueueConfig) -> Arc<dyn Backend> {
    let mut options = RedisOptions::new(&server.url());
    options.config = config;
    Arc::new(
        Redis::connect(options)
            .await
            .expect("connect to the test redis"),
    )
}

async fn fresh() -> (RedisServer, Arc<dyn Backend>) {
    let server = RedisServer::start().expect("redis-server starts");
    let q = connect(&server, config()).await;
    (server, q)
}

fn success() -> Outcome {
    Outcome::Finished(JobResult {
        status_str: "success".into(),
        completed: true,
        ..Default::default()
    })
}

#[tokio::test]
async fn fifo_order() {
    let (_s, q) = fresh().await;
    c::fifo_order(q).await;
}

#[tokio::test]
async fn round_robin_is_fair() {
    let (_s, q) = fresh().await;
    c::round_robin_is_fair(q).await;
}

#[tokio::test]
async fn prioritize_moves_to_front() {
    let (_s, q) = fresh().await;
    c::prioritize_moves_to_front(q).await;
}

#[tokio::test]
async fn cancel_pending_and_running() {
    let (_s, q) = fresh().await;
    c::cancel_pending_and_running(q).await;
}

#[tokio::test]
async fn dead_worker_job_is_retried_and_fenced() {
    let (_s, q) = fresh().await;
    c::dead_worker_job_is_retried_and_fenced(q, LEASE_MS).await;
}

#[tokio::test]
async fn poison_job_fails_after_max_attempts() {
    let (_s, q) = fresh().await;
    c::poison_job_fails_after_max_attempts(q, LEASE_MS, 3).await;
}

#[tokio::test]
async fn heartbeats_keep_the_lease() {
    let (_s, q) = fresh().await;
    c::heartbeats_keep_the_lease(q, LEASE_MS).await;
}

#[tokio::test]
async fn pause_and_limits() {
    let (server, q) = fresh().await;
    c::pause_and_limits(q).await;
    let limited = connect(
        &server,
        QueueConfig {
            max_pending_per_user: 2,
            ..Default::default()
        },
    )
    .await;
    limited.clear_pending(None).await.unwrap();
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
    let (_s, q) = fresh().await;
    c::listing_and_history(q).await;
}

#[tokio::test]
async fn events_reach_subscribers() {
    let (_s, q) = fresh().await;
    c::events_reach_subscribers(q).await;
}

#[tokio::test]
async fn duplicate_ids_are_refused_and_history_is_trimmed() {
    let server = RedisServer::start().unwrap();
    let q = connect(
        &server,
        QueueConfig {
            max_history: 2,
            ..config()
        },
    )
    .await;
    let first = c::new_job("u");
    q.submit(first.clone()).await.unwrap();
    assert!(matches!(
        q.submit(first.clone()).await,
        Err(queue::Error::Duplicate(_))
    ));
    for _ in 0..3 {
        q.submit(c::new_job("u")).await.unwrap();
    }
    while let Some(lease) = q.claim("w").await.unwrap() {
        assert!(q.complete(&lease, success()).await.unwrap());
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(
        stats.completed, 2,
        "only the newest 2 finished jobs are kept"
    );
    assert!(q.get(&first.id).await.unwrap().is_none(), "the oldest went");
    assert_eq!(q.list(&Default::default()).await.unwrap().len(), 2);
    assert_eq!(q.summaries(&Default::default()).await.unwrap().len(), 2);
}

/// One scripted history of submissions, reorders, policy switches and claims, applied to both
/// backends: they must make the same decisions (the scheduler is shared; this checks that the
/// Redis side feeds it the same facts: numbers, priorities, round-robin turns).
#[tokio::test]
async fn same_decisions_as_the_embedded_backend() {
    let (_s, redis) = fresh().await;
    let embedded: Arc<dyn Backend> = Arc::new(Embedded::in_memory(config()));
    let redis_order = scripted_history(redis).await;
    let embedded_order = scripted_history(embedded).await;
    assert_eq!(redis_order, embedded_order);
    assert!(redis_order.len() >= 20, "{redis_order:?}");
}

/// Runs the scripted history; returns the (user, per-user job index) of every claim in order.
async fn scripted_history(q: Arc<dyn Backend>) -> Vec<String> {
    let users = ["ann", "bob", "cid", "dee"];
    let mut names = std::collections::HashMap::new();
    let mut order = Vec::new();
    let mut counter = 0u32;
    for round in 0..6u32 {
        let policy = [Policy::Fifo, Policy::RoundRobin, Policy::Priority][round as usize % 3];
        q.set_policy(policy).await.unwrap();
        for (i, user) in users.iter().enumerate() {
            // Uneven load: ann submits most.
            for _ in 0..(if i == 0 { 3 } else { 1 }) {
                counter += 1;
                let mut job = c::new_job(user);
                job.front = counter.is_multiple_of(7);
                let job = q.submit(job).await.unwrap();
                names.insert(job.id.clone(), format!("{user}#{counter}"));
                if counter.is_multiple_of(5) {
                    q.set_priority(&job.id, (counter % 3) as i64).await.unwrap();
                }
                if counter.is_multiple_of(11) {
                    q.prioritize(&job.id).await.unwrap();
                }
            }
        }
        // Claim about half the queue each round, so turns and leftovers carry over.
        for _ in 0..4 {
            if let Some(lease) = q.claim("w").await.unwrap() {
                order.push(names[&lease.job.id].clone());
                assert!(q.complete(&lease, success()).await.unwrap());
            }
        }
    }
    while let Some(lease) = q.claim("w").await.unwrap() {
        order.push(names[&lease.job.id].clone());
        q.complete(&lease, success()).await.unwrap();
    }
    order
}

/// Redis killed with SIGKILL and restarted: acknowledged jobs survive (AOF), the backend's
/// commands work again, and its subscription comes back (events flow again).
#[tokio::test]
async fn redis_crash_keeps_queued_jobs_and_the_backend_recovers() {
    let (mut server, q) = fresh().await;
    q.set_policy(Policy::RoundRobin).await.unwrap();
    let mut ids = Vec::new();
    for user in ["a", "b", "a"] {
        ids.push(q.submit(c::new_job(user)).await.unwrap().id);
    }
    let running = q.claim("w").await.unwrap().unwrap();
    server.kill();
    assert!(
        q.stats().await.is_err(),
        "commands fail while Redis is down"
    );
    server.restart().unwrap();
    let stats = retry(|| q.stats()).await;
    assert_eq!((stats.pending, stats.running), (2, 1));
    assert_eq!(q.policy().await.unwrap(), Policy::RoundRobin);
    assert_eq!(
        q.get(&running.job.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert!(q.complete(&running, success()).await.unwrap());
    // The subscription reconnects by itself: published events arrive again.
    let mut rx = q.subscribe();
    let job = q.get(&ids[1]).await.unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    'outer: loop {
        q.publish(queue::worker::done_event(&job)).await.unwrap();
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                notice = rx.recv() => {
                    if let Ok(Notice::Event(e)) = notice && e.job_id == job.id {
                        break 'outer;
                    }
                }
                _ = &mut wait => break,
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never came back after the restart"
        );
    }
    let mut done = HashSet::new();
    while let Some(lease) = q.claim("w").await.unwrap() {
        done.insert(lease.job.id.clone());
        q.complete(&lease, success()).await.unwrap();
    }
    assert_eq!(done, ids[1..].iter().cloned().collect());
}

async fn retry<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = queue::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for redis: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("redis did not come back: {e}"),
        }
    }
}

/// Several backends (as on several machines) racing to claim: every job is claimed exactly
/// once and every completion is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claimers_take_each_job_once() {
    let (server, q) = fresh().await;
    q.set_policy(Policy::RoundRobin).await.unwrap();
    let mut submitted = HashSet::new();
    for i in 0..60 {
        submitted.insert(
            q.submit(c::new_job(&format!("u{}", i % 7)))
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = Vec::new();
    for w in 0..6 {
        let backend = connect(&server, config()).await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(lease) = backend.claim(&format!("w{w}")).await.unwrap() {
                mine.push(lease.job.id.clone());
                assert!(backend.complete(&lease, success()).await.unwrap());
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(claimed.len(), 60, "no job claimed twice");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), submitted);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.completed, stats.pending, stats.running), (60, 0, 0));
}

/// An idle worker's wait ends as soon as a job is submitted elsewhere.
#[tokio::test]
async fn submissions_wake_waiting_workers() {
    let (server, q) = fresh().await;
    let other = connect(&server, config()).await;
    assert!(q.claim("w").await.unwrap().is_none());
    let waiter = tokio::spawn({
        let q = q.clone();
        async move {
            let started = std::time::Instant::now();
            q.wait_for_work(10_000).await;
            started.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    other.submit(c::new_job("u")).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(
        waited < Duration::from_secs(5),
        "woken by the submission, not the timeout: {waited:?}"
    );
    assert!(q.claim("w").await.unwrap().is_some());
}

/// Ids of the clients of `conn`'s server that hold a subscription.
async fn subscribers(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| {
            line.split(' ')
                .any(|f| f.starts_with("sub=") && f != "sub=0")
        })
        .filter_map(|line| line.split(' ').next().map(String::from))
        .collect()
}

/// The listener pings its subscription every 10 s; a subscribed connection answers
/// `["pong", ""]`, which must count as alive, or the subscription is dropped and re-made at
/// every ping (and the events published in between are lost).
#[tokio::test]
async fn the_subscription_survives_its_keep_alive_pings() {
    let (server, _q) = fresh().await;
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let before = subscribers(&mut conn).await;
    assert_eq!(before.len(), 1, "one subscription: {before:?}");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        subscribers(&mut conn).await,
        before,
        "the subscription was re-made"
    );
}

#[tokio::test]
async fn password_urls_work_and_wrong_passwords_fail() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let q = connect(&server, config()).await;
    c::fifo_order(q.clone()).await;
    let health = q.health().await.unwrap();
    assert!(
        !health["url"].as_str().unwrap().contains("s3cret"),
        "{health}"
    );
    assert_eq!(health["aof_enabled"], true);
    let wrong = server.url().replace("s3cret", "nope");
    let err = Redis::connect(RedisOptions::new(&wrong))
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn tls_urls_work_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_certificates(dir.path());
    let server = RedisServer::start_with(ServerOptions {
        password: Some("pw".into()),
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .unwrap();
    assert!(server.url().starts_with("rediss://"));
    let mut options = RedisOptions::new(&server.url());
    options.ca_file = Some(tls.ca.clone());
    options.config = config();
    let q: Arc<dyn Backend> = Arc::new(Redis::connect(options).await.unwrap());
    c::cancel_pending_and_running(q.clone()).await;
    c::events_reach_subscribers(q).await;
    // Without the CA the server's certificate is not trusted.
    let untrusted = Redis::connect(RedisOptions::new(&server.url())).await;
    assert!(untrusted.is_err());
}

/// A CA and a server certificate for 127.0.0.1, made with the `openssl` command.
fn make_certificates(dir: &std::path::Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command (Debian package openssl) is needed for the TLS test");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=comfyrs test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: dir.join("ca.crt"),
    }
}
