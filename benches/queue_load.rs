//! Queue load figures for the embedded and the Redis backend, printed as Markdown (recorded in
//! `benches/RESULTS.md`). `cargo bench --bench queue_load` (needs `redis-server`).
//!
//! 1. Backend alone (in process): submit, claim+complete and stats latencies.
//! 2. Whole server (`comfyrs serve` processes, workshop mode with 20 users, HTTP basic auth):
//!    - submit latency (POST /prompt of a `DevWorkload` job), one client and 20 at once;
//!    - status latency (GET /api/queue/status, GET /api/admin/overview, a user's
//!      GET /api/jobs?limit=20) with ~1000 jobs queued;
//!    - jobs/s: 300 zero-cost jobs from 20 users on 2 workers (first submit to last finish);
//!    - waits per policy: 20 users x 2 jobs of 100 ms on 2 workers, submitted user by user
//!      (each user's two back to back): longest wait of any job, longest wait of a user for
//!      their first result, mean wait.
//!
//! Redis runs with AOF `appendfsync always` (every acknowledged write survives a crash, like
//! the embedded backend's redb commits) and `everysec` (Redis' default).

#[path = "../tests/queue_common/mod.rs"]
mod queue_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use queue::redis::testing::ServerOptions;
use queue::{Backend, Embedded, JobResult, Outcome, QueueConfig, Redis, RedisOptions};
use queue_common::{
    Client, Proc, RedisServer, Serve, User, start_serve, start_worker, workload, write_users,
};
use serde_json::{Value, json};

/// p50 and p99 of samples, in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: usize| {
        let i = (samples.len() * q / 100).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e3
    };
    (at(50), at(99))
}

#[derive(Clone, Copy)]
enum Kind {
    Embedded,
    Redis(&'static str),
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::Embedded => "embedded (redb)".into(),
            Kind::Redis(fsync) => format!("redis (appendfsync {fsync})"),
        }
    }

    fn redis(self) -> Option<RedisServer> {
        match self {
            Kind::Embedded => None,
            Kind::Redis(fsync) => Some(
                RedisServer::start_with(ServerOptions {
                    appendfsync: Some(fsync.into()),
                    ..Default::default()
                })
                .expect("redis-server"),
            ),
        }
    }
}

const KINDS: [Kind; 3] = [
    Kind::Embedded,
    Kind::Redis("always"),
    Kind::Redis("everysec"),
];

fn success() -> Outcome {
    Outcome::Finished(JobResult {
        status_str: "success".into(),
        completed: true,
        ..Default::default()
    })
}

/// Part 1: the backend alone.
async fn backend_alone(kind: Kind) {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let redis = kind.redis();
    let config = QueueConfig {
        max_history: 100_000,
        ..Default::default()
    };
    let q: Arc<dyn Backend> = match &redis {
        None => Arc::new(Embedded::open(&dir.path().join("q.redb"), config).unwrap()),
        Some(server) => {
            let mut options = RedisOptions::new(&server.url());
            options.config = config;
            Arc::new(Redis::connect(options).await.unwrap())
        }
    };
    let mut submit = Vec::with_capacity(N);
    for i in 0..N {
        let job = queue::conformance::new_job(&format!("user{:03}", i % 20));
        let t = Instant::now();
        q.submit(job).await.unwrap();
        submit.push(t.elapsed());
    }
    let mut stats = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        q.stats().await.unwrap();
        stats.push(t.elapsed());
    }
    let mut cycle = Vec::with_capacity(N);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let Some(lease) = q.claim("bench").await.unwrap() else {
            break;
        };
        q.complete(&lease, success()).await.unwrap();
        cycle.push(t.elapsed());
    }
    let drain = started.elapsed();
    let (s50, s99) = percentiles(&mut submit);
    let (c50, c99) = percentiles(&mut cycle);
    let (t50, t99) = percentiles(&mut stats);
    println!(
        "| {} | {s50:.3} / {s99:.3} | {c50:.3} / {c99:.3} | {:.0} | {t50:.3} / {t99:.3} |",
        kind.name(),
        N as f64 / drain.as_secs_f64()
    );
}

/// A server (and its workers) for part 2.
struct Rig {
    _redis: Option<RedisServer>,
    _base: tempfile::TempDir,
    serve: Serve,
    _workers: Vec<Proc>,
    admin: Client,
    users: Vec<Client>,
}

async fn rig(kind: Kind, workers: usize, people: &[User], users_file: &std::path::Path) -> Rig {
    let redis = kind.redis();
    let base = tempfile::tempdir().unwrap();
    let flags: Vec<String> = [
        "--dev-nodes",
        "--max-history",
        "100000",
        "--users",
        &users_file.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut serve_flags = flags.clone();
    // The load is the point here: no per-user pending or rate limits.
    serve_flags
        .extend(["--max-pending-per-user", "0", "--prompts-per-minute", "0"].map(String::from));
    let mut procs = Vec::new();
    let url = redis.as_ref().map(RedisServer::url);
    match (&url, workers) {
        (None, 0) | (Some(_), _) => serve_flags.push("--no-local-worker".into()),
        (None, n) => serve_flags.extend(["--devices".into(), vec!["cpu"; n].join(",")]),
    }
    let serve = start_serve(base.path(), url.as_deref(), &serve_flags).await;
    if let Some(url) = &url {
        for i in 0..workers {
            procs.push(start_worker(
                base.path(),
                url,
                &format!("worker{i}"),
                &flags[..1],
            ));
        }
    }
    let admin = Client::new(&serve.url, Some(&people[0]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin.get("/api/workers").await.as_array().map(Vec::len) != Some(workers) {
        assert!(Instant::now() < deadline, "workers did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users = people[1..]
        .iter()
        .map(|u| Client::new(&serve.url, Some(u)))
        .collect();
    Rig {
        _redis: redis,
        _base: base,
        serve,
        _workers: procs,
        admin,
        users,
    }
}

async fn timed_submit(client: &Client, prompt: Value) -> Duration {
    let t = Instant::now();
    client.submit(prompt, None).await;
    t.elapsed()
}

async fn timed_get(client: &Client, path: &str, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.get(path).await;
        samples.push(t.elapsed());
    }
    percentiles(&mut samples)
}

/// Part 2a/2b: submit and status latencies with no worker (the queue fills up).
async fn latencies(kind: Kind, people: &[User], users_file: &std::path::Path) {
    let rig = rig(kind, 0, people, users_file).await;
    // Warm up: every user's credentials verified once (argon2 is deliberately slow).
    for user in &rig.users {
        user.get("/api/jobs?limit=1").await;
    }
    let prompt = workload(0, 1, 0, "bench");
    let mut one = Vec::new();
    for i in 0..500 {
        one.push(timed_submit(&rig.users[i % rig.users.len()], prompt.clone()).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = rig
        .users
        .iter()
        .cloned()
        .map(|client| {
            let prompt = prompt.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for _ in 0..25 {
                    samples.push(timed_submit(&client, prompt.clone()).await);
                }
                samples
            })
        })
        .collect();
    let mut many = Vec::new();
    for task in tasks {
        many.extend(task.await.unwrap());
    }
    let rate = many.len() as f64 / started.elapsed().as_secs_f64();
    let (o50, o99) = percentiles(&mut one);
    let (m50, m99) = percentiles(&mut many);
    let depth = rig.admin.get("/api/queue/status").await["queue_depth"].clone();
    let (q50, q99) = timed_get(&rig.admin, "/api/queue/status", 50).await;
    let (v50, v99) = timed_get(&rig.admin, "/api/admin/overview", 50).await;
    let (j50, j99) = timed_get(&rig.users[0], "/api/jobs?limit=20", 50).await;
    println!(
        "| {} | {o50:.2} / {o99:.2} | {m50:.2} / {m99:.2} | {rate:.0} | {depth} | {q50:.1} / {q99:.1} | {v50:.1} / {v99:.1} | {j50:.1} / {j99:.1} |",
        kind.name()
    );
    drop(rig.serve);
}

/// Polls until `n` jobs have finished; returns every job item (admin view).
async fn wait_finished(admin: &Client, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = admin.get("/api/queue/status").await;
        let done = ["completed_jobs", "failed", "cancelled"]
            .iter()
            .map(|k| status[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        if done as usize >= n {
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not finish: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.get("/api/jobs?limit=100000").await["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Part 2c/2d: throughput and waits per policy on 2 workers.
async fn throughput_and_waits(kind: Kind, people: &[User], users_file: &std::path::Path) {
    let rig = rig(kind, 2, people, users_file).await;
    for user in &rig.users {
        user.get("/api/jobs?limit=1").await;
    }
    const JOBS: usize = 300;
    let started = Instant::now();
    let tasks: Vec<_> = rig
        .users
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                for k in 0..JOBS / 20 {
                    client
                        .submit(workload(0, 1, (i * 100 + k) as u64, "tp"), None)
                        .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let jobs = wait_finished(&rig.admin, JOBS).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(jobs.iter().all(|j| j["status"] == "completed"));
    let mut done = JOBS;
    let mut waits = Vec::new();
    for (round, policy) in ["fifo", "round_robin", "priority"].into_iter().enumerate() {
        rig.admin
            .send("PUT", "/api/queue/policy", Some(json!({"policy": policy})))
            .await;
        let mut ids = Vec::new();
        for (u, client) in rig.users.iter().enumerate() {
            for k in 0..2 {
                // Distinct seeds: identical prompts would be served from the engine's cache.
                let seed = 1_000_000 + (round * 1000 + u * 2 + k) as u64;
                let prompt = workload(100, 2, seed, "fair");
                ids.push((u, client.submit(prompt, None).await));
            }
        }
        done += ids.len();
        let all = wait_finished(&rig.admin, done).await;
        let by_id: HashMap<&str, &Value> =
            all.iter().map(|j| (j["id"].as_str().unwrap(), j)).collect();
        let mut first: HashMap<usize, f64> = HashMap::new();
        let mut longest: f64 = 0.0;
        let mut sum = 0.0;
        for (u, id) in &ids {
            let wait = by_id[id.as_str()]["wait_ms"].as_f64().unwrap() / 1000.0;
            longest = longest.max(wait);
            sum += wait;
            first
                .entry(*u)
                .and_modify(|w| *w = w.min(wait))
                .or_insert(wait);
        }
        let worst_first = first.values().copied().fold(0.0, f64::max);
        waits.push(format!(
            "{longest:.2} / {worst_first:.2} / {:.2}",
            sum / ids.len() as f64
        ));
    }
    println!(
        "| {} | {:.1} | {} |",
        kind.name(),
        JOBS as f64 / elapsed,
        waits.join(" | ")
    );
}

#[tokio::main]
async fn main() {
    let people: Vec<User> = std::iter::once(User::admin())
        .chain((1..=20).map(|i| User::participant(&format!("user{i:03}"))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let users_file = write_users(dir.path(), &people);

    println!("\n### Backend alone (in process), 2000 jobs, 20 users");
    println!(
        "| backend | submit p50 / p99 ms | claim+complete p50 / p99 ms | claim+complete /s | stats p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|");
    for kind in KINDS {
        backend_alone(kind).await;
    }

    println!("\n### Server: submit and status latency (no worker; the queue fills up)");
    println!(
        "| backend | submit p50 / p99 ms (1 client) | submit p50 / p99 ms (20 clients) | submits/s (20 clients) | queued | /api/queue/status p50 / p99 ms | /api/admin/overview p50 / p99 ms | user /api/jobs?limit=20 p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for kind in KINDS {
        latencies(kind, &people, &users_file).await;
    }

    println!("\n### Server: throughput and waits on 2 workers");
    println!(
        "| backend | jobs/s (300 zero-cost jobs, 20 users) | FIFO wait: longest / longest first / mean s | round-robin | priority |"
    );
    println!("|---|---|---|---|---|");
    for kind in KINDS {
        throughput_and_waits(kind, &people, &users_file).await;
    }
}
