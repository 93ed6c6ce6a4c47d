//! Scale to zero with real processes: `comfyrs worker --exit-when-idle` exits (status 0,
//! deregistered) once the queue has been empty for that long; a job submitted while no worker
//! exists waits (with no ETA, as nothing can run it), and a newly started worker runs it. A
//! worker with `--warmup` is listed only once its warm-up ran (its files in no user's folder); a
//! failing warm-up stops the worker with the node's message.

mod queue_common;

use std::time::Duration;

use queue_common::{
    Client, RedisServer, queue_flags, redis_ready, start_serve, start_worker, workload,
};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_worker_exits_and_a_new_one_picks_up_the_next_job() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let mut serve_flags = queue_flags();
    serve_flags.push("--no-local-worker".into());
    let serve = start_serve(base.path(), Some(&redis.url()), &serve_flags).await;
    let client = Client::new(&serve.url, None);
    let mut worker_flags = queue_flags();
    worker_flags.extend(["--exit-when-idle".into(), "1.5".into()]);

    let mut first = start_worker(base.path(), &redis.url(), "worker-first", &worker_flags);
    client.wait_workers(1, LONG).await;
    let id = client.submit(workload(300, 3, 1, "zero/one"), None).await;
    let done = client
        .wait_job(&id, LONG, |j| j["status"] == "completed")
        .await;
    assert!(
        done["worker"]
            .as_str()
            .unwrap()
            .contains(&format!("-{}-", first.pid()))
    );
    let status = first
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the idle worker did not exit:\n{}", first.log()));
    assert!(status.success(), "{status:?}\n{}", first.log());
    client.wait_workers(0, LONG).await;

    // No worker: the job waits, with a position but no ETA.
    let id = client.submit(workload(300, 3, 2, "zero/two"), None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waiting = client.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    assert_eq!(waiting["queue_position"], 1, "{waiting}");
    assert!(waiting.get("eta_start").is_none(), "{waiting}");

    let mut second = start_worker(base.path(), &redis.url(), "worker-second", &worker_flags);
    let done = client
        .wait_job(&id, LONG, |j| j["status"] == "completed")
        .await;
    assert!(
        done["worker"]
            .as_str()
            .unwrap()
            .contains(&format!("-{}-", second.pid()))
    );
    assert_eq!(done["attempts"], 1, "{done}");
    let status = second
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the idle worker did not exit:\n{}", second.log()));
    assert!(status.success(), "{status:?}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_is_ready_only_after_its_warm_up_and_a_failed_warm_up_stops_it() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    let base = tempfile::tempdir().unwrap();
    let mut serve_flags = queue_flags();
    serve_flags.push("--no-local-worker".into());
    let serve = start_serve(base.path(), Some(&redis.url()), &serve_flags).await;
    let client = Client::new(&serve.url, None);

    // A warm-up that fails: the worker stops with the node's message and never joins.
    let failing = base.path().join("failing.json");
    let mut prompt = workload(100, 2, 1, "warm/fail");
    prompt["1"]["inputs"]["fail"] = serde_json::json!(true);
    std::fs::write(&failing, prompt.to_string()).unwrap();
    let mut flags = queue_flags();
    flags.extend(["--warmup".into(), failing.display().to_string()]);
    let mut bad = start_worker(base.path(), &redis.url(), "worker-bad-warmup", &flags);
    let status = bad
        .wait_exit(LONG)
        .unwrap_or_else(|| panic!("the worker did not stop:\n{}", bad.log()));
    assert!(!status.success());
    let log = bad.log();
    assert!(
        log.contains("warm-up failed")
            && log.contains("failing.json")
            && log.contains("DevWorkload failed as asked"),
        "{log}"
    );
    assert_eq!(client.get("/api/workers").await, serde_json::json!([]));

    // A warm-up that takes a while: no worker is listed until it ran, then jobs run.
    let slow = base.path().join("slow.json");
    std::fs::write(&slow, workload(2500, 5, 2, "warmup-run/x").to_string()).unwrap();
    let mut flags = queue_flags();
    flags.extend(["--warmup".into(), slow.display().to_string()]);
    let _good = start_worker(base.path(), &redis.url(), "worker-warm", &flags);
    let id = client.submit(workload(100, 2, 3, "job/after"), None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(client.get("/api/workers").await, serde_json::json!([]));
    let pending = client.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(pending["status"], "pending", "{pending}");
    client.wait_workers(1, LONG).await;
    client
        .wait_job(&id, LONG, |j| j["status"] == "completed")
        .await;
    let outputs = files_under(&base.path().join("data"));
    assert!(
        outputs
            .iter()
            .all(|p| !p.to_string_lossy().contains("warmup-run")),
        "a warm-up output reached the data folder: {outputs:?}"
    );
    assert!(
        outputs
            .iter()
            .any(|p| p.to_string_lossy().contains("job/after")),
        "{outputs:?}"
    );
}
