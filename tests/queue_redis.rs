//! The shared Redis queue end to end, with real processes: a `redis-server` (AOF on) started by
//! the test, `comfyrs serve --redis` and `comfyrs worker` processes, jobs of the `DevWorkload`
//! node (a configurable cost). Covers the failure modes a trustworthy queue must survive:
//! a worker killed with SIGKILL mid-job, a frozen (stale) worker coming back after its job was
//! finished elsewhere, Redis crashing with jobs queued, the server restarting; plus cancel,
//! prioritise, and 20 users x 2 jobs under FIFO and round-robin (longest waits are printed,
//! not asserted: speed is measured by `benches/queue_load.rs`).

mod queue_common;

use std::collections::HashMap;
use std::time::Duration;

use queue_common::{
    Client, Proc, RedisServer, User, is_final, queue_flags, redis_ready, start_serve, start_worker,
    workload, write_users,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn server_flags() -> Vec<String> {
    let mut flags = queue_flags();
    flags.push("--no-local-worker".into());
    flags
}

/// The worker process whose id names `worker_id` (ids are `<host>-<device>-<pid>-<tag>`).
fn owner<'a>(workers: &'a mut [Proc], worker_id: &str) -> (usize, &'a mut Proc) {
    workers
        .iter_mut()
        .enumerate()
        .find(|(_, w)| worker_id.contains(&format!("-{}-", w.pid())))
        .unwrap_or_else(|| panic!("no worker process runs {worker_id}"))
}

fn saved_files(base: &std::path::Path, prefix: &str) -> usize {
    std::fs::read_dir(base.join("data/output"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_worker_is_killed_completes_on_the_other_worker() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let serve = start_serve(base.path(), Some(&redis.url()), &server_flags()).await;
    let client = Client::new(&serve.url, None);
    let mut workers = vec![
        start_worker(base.path(), &redis.url(), "worker-a", &queue_flags()),
        start_worker(base.path(), &redis.url(), "worker-b", &queue_flags()),
    ];
    client.wait_workers(2, LONG).await;
    let id = client.submit(workload(4_000, 40, 7, "killed"), None).await;
    let running = client
        .wait_job(&id, LONG, |j| j["status"] == "in_progress")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_worker = running["worker"].as_str().unwrap().to_string();
    let (victim, proc) = owner(&mut workers, &first_worker);
    eprintln!("kill -9 {} (pid {}) running {id}", proc.name, proc.pid());
    proc.kill9();
    let done = client.wait_job(&id, LONG, is_final).await;
    let survivor = &workers[1 - victim];
    assert_eq!(done["status"], "completed", "{done}\n{}", survivor.log());
    assert_eq!(done["attempts"], 2, "{done}");
    let second_worker = done["worker"].as_str().unwrap();
    assert_ne!(second_worker, first_worker);
    assert!(second_worker.contains(&format!("-{}-", survivor.pid())));
    // Exactly one completion recorded: one history entry, one success, one saved image.
    let history = client.get(&format!("/history/{id}")).await;
    let entry = &history[&id];
    assert_eq!(entry["status"]["status_str"], "success");
    let successes = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[0] == "execution_success")
        .count();
    assert_eq!(successes, 1);
    assert_eq!(
        saved_files(base.path(), "killed"),
        1,
        "one run saved its output"
    );
    let metrics = client.get("/metrics").await;
    assert!(
        metrics.as_str().unwrap().contains("comfyrs_jobs_retried 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_worker_cannot_overwrite_a_job_finished_elsewhere() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let serve = start_serve(base.path(), Some(&redis.url()), &server_flags()).await;
    let client = Client::new(&serve.url, None);
    let mut workers = vec![
        start_worker(base.path(), &redis.url(), "worker-a", &queue_flags()),
        start_worker(base.path(), &redis.url(), "worker-b", &queue_flags()),
    ];
    client.wait_workers(2, LONG).await;
    let id = client.submit(workload(3_000, 30, 8, "stale"), None).await;
    let running = client
        .wait_job(&id, LONG, |j| j["status"] == "in_progress")
        .await;
    let first_worker = running["worker"].as_str().unwrap().to_string();
    let (victim, frozen) = owner(&mut workers, &first_worker);
    frozen.signal("STOP");
    let done = client.wait_job(&id, LONG, is_final).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["attempts"], 2);
    let winner = done["worker"].as_str().unwrap().to_string();
    assert_ne!(winner, first_worker);
    let outputs = done["outputs"].clone();
    workers[victim].signal("CONT");
    // Give the stale worker time to wake up, notice, and try whatever it would try.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = workers[victim].log();
        if log.contains("lease lost") || log.contains("stale completion") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stale worker never noticed:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = client.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(after["status"], "completed");
    assert_eq!(
        after["worker"],
        winner.as_str(),
        "the record is the winner's"
    );
    assert_eq!(after["attempts"], 2);
    assert_eq!(after["outputs"], outputs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_jobs_survive_a_redis_crash_and_history_survives_a_server_restart() {
    if !redis_ready() {
        return;
    }
    let mut redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let mut serve = start_serve(base.path(), Some(&redis.url()), &server_flags()).await;
    let client = Client::new(&serve.url, None);
    let mut ids = Vec::new();
    for seed in 0..4 {
        ids.push(client.submit(workload(100, 2, seed, "aof"), None).await);
    }
    redis.kill();
    let (status, _) = client.send("GET", "/api/jobs", None).await;
    assert_eq!(status, 500, "the server reports the outage");
    redis.restart().unwrap();
    // The server reconnects by itself; the four jobs are still queued.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let (status, jobs) = client.send("GET", "/api/jobs?status=pending", None).await;
        if status == 200 && jobs["pagination"]["total"] == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {jobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _worker = start_worker(base.path(), &redis.url(), "worker", &queue_flags());
    for id in &ids {
        let job = client.wait_job(id, LONG, is_final).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    // Restart the server (SIGTERM, then a new process on the same Redis): history is intact.
    serve.proc.signal("TERM");
    assert!(
        serve.proc.wait_exit(Duration::from_secs(20)).is_some(),
        "serve exits on SIGTERM"
    );
    let serve2 = start_serve(base.path(), Some(&redis.url()), &server_flags()).await;
    let client2 = Client::new(&serve2.url, None);
    let history = client2.get("/history").await;
    for id in &ids {
        assert_eq!(
            history[id]["status"]["status_str"], "success",
            "{id} in {history}"
        );
        let image = &history[id]["outputs"]["2"]["images"][0];
        let view = format!(
            "/view?filename={}&type=output&subfolder=",
            image["filename"].as_str().unwrap()
        );
        let (status, _) = client2.send("GET", &view, None).await;
        assert_eq!(status, 200, "the output is on the shared filesystem");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_queue_history_survives_a_server_restart() {
    let base = tempfile::tempdir().unwrap();
    let mut serve = start_serve(base.path(), None, &queue_flags()).await;
    let client = Client::new(&serve.url, None);
    let id = client.submit(workload(50, 2, 1, "embedded"), None).await;
    client.wait_job(&id, LONG, is_final).await;
    serve.proc.signal("TERM");
    assert!(serve.proc.wait_exit(Duration::from_secs(20)).is_some());
    let serve2 = start_serve(base.path(), None, &queue_flags()).await;
    let history = Client::new(&serve2.url, None).get("/history").await;
    assert_eq!(history[&id]["status"]["status_str"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_pending_and_running_jobs_and_prioritise_one() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let ann = User::participant("ann");
    let bob = User::participant("bob");
    let admin = User::admin();
    let users = write_users(base.path(), &[admin.clone(), ann.clone(), bob.clone()]);
    let mut flags = server_flags();
    flags.extend(["--users".into(), users.display().to_string()]);
    let serve = start_serve(base.path(), Some(&redis.url()), &flags).await;
    let worker = start_worker(base.path(), &redis.url(), "worker", &queue_flags());
    let as_ann = Client::new(&serve.url, Some(&ann));
    let as_bob = Client::new(&serve.url, Some(&bob));
    let as_admin = Client::new(&serve.url, Some(&admin));
    as_admin.wait_workers(1, LONG).await;
    let long = as_ann.submit(workload(20_000, 200, 1, "long"), None).await;
    as_ann
        .wait_job(&long, LONG, |j| j["status"] == "in_progress")
        .await;
    let b = as_ann.submit(workload(100, 2, 2, "b"), None).await;
    let c = as_ann.submit(workload(100, 2, 3, "c"), None).await;
    let d = as_bob.submit(workload(100, 2, 4, "d"), None).await;
    // Nobody but the owner (or the admin) can cancel a job.
    let (status, _) = as_bob.send("DELETE", &format!("/api/jobs/{b}"), None).await;
    assert_eq!(status, 404);
    let (status, reply) = as_ann.send("DELETE", &format!("/api/jobs/{b}"), None).await;
    assert_eq!((status, &reply["cancelled"]), (200, &json!(true)));
    assert_eq!(
        as_ann.get(&format!("/api/jobs/{b}")).await["status"],
        "cancelled"
    );
    // Prioritise moves bob's job (submitted last) to the front.
    let (status, moved) = as_admin
        .send("POST", &format!("/api/jobs/{d}/prioritize"), None)
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["queue_position"], 1);
    // Cancelling the running job interrupts it on its worker, long before its 20 s end.
    let asked = std::time::Instant::now();
    let (status, reply) = as_ann
        .send("DELETE", &format!("/api/jobs/{long}"), None)
        .await;
    assert_eq!((status, &reply["cancelled"]), (200, &json!(true)));
    let cancelled = as_ann.wait_job(&long, LONG, is_final).await;
    let took = asked.elapsed();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(took < Duration::from_secs(10), "interrupted in {took:?}");
    eprintln!("running job interrupted {took:?} after the cancel");
    assert!(worker.log().contains("cancel requested; interrupting"));
    let d_done = as_bob.wait_job(&d, LONG, is_final).await;
    let c_done = as_ann.wait_job(&c, LONG, is_final).await;
    assert_eq!(
        (&d_done["status"], &c_done["status"]),
        (&json!("completed"), &json!("completed"))
    );
    assert!(
        d_done["execution_start_time"].as_i64() < c_done["execution_start_time"].as_i64(),
        "the prioritised job ran first: {d_done} {c_done}"
    );
}

/// Submits 20 users x 2 jobs (each user's two back to back, users in order) and waits for all
/// 40; returns (longest wait of any job, longest wait of a user's first job) in seconds.
async fn twenty_users(serve_url: &str, users: &[User], cost_ms: u64, round: u64) -> (f64, f64) {
    let mut ids: Vec<(String, String)> = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let client = Client::new(serve_url, Some(user));
        for k in 0..2 {
            // Distinct seeds: identical prompts would be served from the engine's cache.
            let seed = round * 1000 + u as u64 * 2 + k;
            let prompt = workload(cost_ms, 5, seed, &format!("{}-{k}", user.name));
            ids.push((user.name.clone(), client.submit(prompt, None).await));
        }
    }
    let mut first_wait: HashMap<String, f64> = HashMap::new();
    let mut longest: f64 = 0.0;
    for (user, id) in &ids {
        let client = Client::new(serve_url, users.iter().find(|u| &u.name == user));
        let job = client.wait_job(id, LONG * 2, is_final).await;
        assert_eq!(job["status"], "completed", "{job}");
        let wait = job["wait_ms"].as_f64().unwrap() / 1000.0;
        longest = longest.max(wait);
        first_wait
            .entry(user.clone())
            .and_modify(|w| *w = w.min(wait))
            .or_insert(wait);
    }
    assert_eq!(ids.len(), 40);
    let worst_first = first_wait.values().copied().fold(0.0, f64::max);
    (longest, worst_first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_users_two_jobs_each_on_two_workers_under_each_policy() {
    if !redis_ready() {
        return;
    }
    let cost_ms: u64 = std::env::var("COMFYRS_TEST_JOB_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let admin = User::admin();
    let participants: Vec<User> = (1..=20)
        .map(|i| User::participant(&format!("user{i:03}")))
        .collect();
    let mut everyone = vec![admin.clone()];
    everyone.extend(participants.iter().cloned());
    let users_file = write_users(base.path(), &everyone);
    let mut flags = server_flags();
    flags.extend(["--users".into(), users_file.display().to_string()]);
    let serve = start_serve(base.path(), Some(&redis.url()), &flags).await;
    let as_admin = Client::new(&serve.url, Some(&admin));
    let _workers = [
        start_worker(base.path(), &redis.url(), "worker-a", &queue_flags()),
        start_worker(base.path(), &redis.url(), "worker-b", &queue_flags()),
    ];
    as_admin.wait_workers(2, LONG).await;
    let mut report = Vec::new();
    for (round, policy) in ["round_robin", "fifo"].into_iter().enumerate() {
        let (status, _) = as_admin
            .send("PUT", "/api/queue/policy", Some(json!({"policy": policy})))
            .await;
        assert_eq!(status, 200);
        let (longest, worst_first) =
            twenty_users(&serve.url, &participants, cost_ms, round as u64).await;
        report.push(format!(
            "{policy}: longest wait of any job {longest:.2} s; longest wait of any user for their first job {worst_first:.2} s"
        ));
    }
    let status: Value = as_admin.get("/api/queue/status").await;
    assert_eq!(status["completed_jobs"], 80);
    assert_eq!(status["queue_depth"], 0);
    for line in report {
        eprintln!("20 users x 2 jobs of {cost_ms} ms on 2 workers, {line}");
    }
}
