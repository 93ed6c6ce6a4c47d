//! Push mode end to end, with real processes on loopback: `comfyrs worker --http` endpoints and
//! a `comfyrs serve --dispatch-http` server (embedded queue, no local worker, short leases), on
//! DIFFERENT base directories (no shared filesystem: inputs travel with the job, outputs come
//! back in the stream). Covers a job with an uploaded input and its WebSocket progress and
//! `/view`-served output, a wrong secret (401, the job is kept), a worker killed with SIGKILL
//! mid-job (the job is retried on a new worker at the same address: attempts == 2; on the
//! embedded queue and on a real `redis-server`), and a cancel (the connection is dropped, the
//! worker interrupts and is free again). With `--warmup` the endpoint answers 503 (not ready)
//! until its warm-up ran; a failing warm-up stops it.

mod queue_common;

use std::path::Path;
use std::time::{Duration, Instant};

use queue_common::ws::Socket;
use queue_common::{
    Client, Proc, RedisServer, Serve, User, free_port, is_final, queue_flags, redis_ready,
    start_serve, workload, write_users,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const SECRET: &str = "push-test-secret";

/// Starts `comfyrs worker --http 127.0.0.1:<port>` on its own base directory `<base>/worker`.
fn start_push_worker(base: &Path, port: u16, secret: &str, name: &str) -> Proc {
    start_push_worker_with(base, port, secret, name, &[])
}

/// [`start_push_worker`] with extra flags.
fn start_push_worker_with(
    base: &Path,
    port: u16,
    secret: &str,
    name: &str,
    extra: &[String],
) -> Proc {
    let mut args: Vec<String> = vec![
        "worker".into(),
        "--http".into(),
        format!("127.0.0.1:{port}"),
        "--http-secret".into(),
        secret.into(),
        "--device".into(),
        "cpu".into(),
        "--base-directory".into(),
        base.join("worker").display().to_string(),
    ];
    args.extend(queue_flags());
    args.extend(extra.iter().cloned());
    Proc::comfyrs(name, &args, base.join(format!("{name}.log")))
}

/// The endpoint's `/health` with `secret`: status and body.
async fn health(port: u16, secret: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health"));
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    match request.send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// `POST /run` with the right secret and `body`: status and body.
async fn run_raw(port: u16, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/run"))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the endpoint reports `want` (e.g. ready and idle).
async fn wait_health(port: u16, want: Value, proc: &Proc) {
    let deadline = Instant::now() + LONG;
    loop {
        let (status, body) = health(port, Some(SECRET)).await;
        if status == 200 && body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} health {status} {body}:\n{}",
            proc.name,
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the server (workshop users `ann` + admin, server data in `<base>/data`) dispatching
/// to the endpoint on `port` with `secret`.
async fn start_dispatching_serve(
    base: &Path,
    port: u16,
    secret: &str,
    redis: Option<&str>,
) -> Serve {
    let users = write_users(base, &[User::participant("ann"), User::admin()]);
    let mut flags = queue_flags();
    flags.extend([
        "--no-local-worker".into(),
        "--users".into(),
        users.display().to_string(),
        "--dispatch-http".into(),
        format!("http://127.0.0.1:{port}"),
        "--http-secret".into(),
        secret.into(),
    ]);
    start_serve(base, redis, &flags).await
}

/// A server (on the embedded queue, or on `redis`) and one endpoint, ready.
async fn setup(base: &Path, redis: Option<&str>) -> (Serve, Proc, u16) {
    let port = free_port().unwrap();
    let worker = start_push_worker(base, port, SECRET, "push-a");
    wait_health(port, json!({"ready": true, "busy": false}), &worker).await;
    let serve = start_dispatching_serve(base, port, SECRET, redis).await;
    (serve, worker, port)
}

/// An 8x8 PNG.
fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    let image = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 30, 60]));
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// `GET /view` for an output image entry, as `user`: the bytes.
async fn view(serve: &Serve, user: &User, image: &Value) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("{}/view", serve.url))
        .basic_auth(&user.name, Some(&user.password))
        .query(&[
            ("filename", image["filename"].as_str().unwrap()),
            ("subfolder", image["subfolder"].as_str().unwrap()),
            ("type", "output"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_job_streams_progress_and_brings_its_output_home() {
    let base = tempfile::tempdir().unwrap();
    let (serve, worker, port) = setup(base.path(), None).await;
    let ann = User::participant("ann");
    let as_ann = Client::new(&serve.url, Some(&ann));
    // Ann's upload lives only in the server's folders: it must travel with the job.
    let server_input = base.path().join("data/users/ann/input/uploads");
    std::fs::create_dir_all(&server_input).unwrap();
    std::fs::write(server_input.join("cat.png"), png()).unwrap();

    let mut socket = Socket::connect(&serve.url, &ann, "ann-tab").await;
    let id = as_ann
        .submit(workload(800, 4, 1, "pushed"), Some("ann-tab"))
        .await;
    let heard = socket
        .until(LONG, |m| {
            m["type"] == "executing" && m["data"]["node"].is_null() && m["data"]["prompt_id"] == id
        })
        .await;
    let kinds: Vec<&str> = heard.iter().filter_map(|m| m["type"].as_str()).collect();
    for kind in [
        "execution_start",
        "progress",
        "executed",
        "execution_success",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} in {kinds:?}\n{}",
            worker.log()
        );
    }
    let done = as_ann.wait_job(&id, LONG, is_final).await;
    assert_eq!(done["status"], "completed", "{done}\n{}", serve.proc.log());
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["worker"], format!("http:127.0.0.1:{port}"));
    // The endpoint is listed as a worker for the instructor.
    let workers = Client::new(&serve.url, Some(&User::admin()))
        .get("/api/workers")
        .await;
    let listed = workers.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{workers}");
    assert_eq!(listed[0]["id"], format!("http:127.0.0.1:{port}"));
    assert_eq!(listed[0]["device"], format!("http://127.0.0.1:{port}"));

    let history = as_ann.get(&format!("/history/{id}")).await;
    let image = history[&id]["outputs"]["2"]["images"][0].clone();
    let (status, bytes) = view(&serve, &ann, &image).await;
    assert_eq!(status, 200, "{image}");
    let on_worker = base
        .path()
        .join("worker/users/ann/output")
        .join(image["subfolder"].as_str().unwrap())
        .join(image["filename"].as_str().unwrap());
    assert_eq!(
        bytes,
        std::fs::read(&on_worker).unwrap(),
        "the worker's file"
    );
    assert!(bytes.starts_with(b"\x89PNG"));

    // A prompt loading Ann's upload: the file is sent along and saved back.
    let prompt = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "uploads/cat.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "copy"}},
    });
    let copy = as_ann.submit(prompt, None).await;
    let done = as_ann.wait_job(&copy, LONG, is_final).await;
    assert_eq!(done["status"], "completed", "{done}\n{}", worker.log());
    assert_eq!(
        std::fs::read(base.path().join("worker/users/ann/input/uploads/cat.png")).unwrap(),
        png()
    );
    let history = as_ann.get(&format!("/history/{copy}")).await;
    let image = history[&copy]["outputs"]["2"]["images"][0].clone();
    let (status, bytes) = view(&serve, &ann, &image).await;
    assert_eq!(status, 200);
    let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(decoded.get_pixel(3, 3), &image::Rgb([200, 30, 60]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_is_refused_and_the_job_waits_for_a_right_one() {
    let base = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let worker = start_push_worker(base.path(), port, SECRET, "push-a");
    wait_health(port, json!({"ready": true, "busy": false}), &worker).await;
    for secret in [None, Some("wrong")] {
        let (status, body) = health(port, secret).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["type"], "unauthorized");
    }
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/run"))
        .bearer_auth("wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let (status, body) = run_raw(port, json!({"job": "not a job"})).await;
    assert_eq!(
        (status, &body["error"]["type"]),
        (400, &json!("bad_request"))
    );

    let mut serve = start_dispatching_serve(base.path(), port, "wrong", None).await;
    let ann = User::participant("ann");
    let id = Client::new(&serve.url, Some(&ann))
        .submit(workload(100, 2, 1, "waits"), None)
        .await;
    // Several lease periods later the job is still waiting, never claimed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let job = Client::new(&serve.url, Some(&ann))
        .get(&format!("/api/jobs/{id}"))
        .await;
    assert_eq!(job["status"], "pending", "{job}");
    assert_eq!(job["attempts"], 0, "{job}");

    // The same queue, restarted with the right secret, runs it.
    serve.proc.kill9();
    let serve = start_dispatching_serve(base.path(), port, SECRET, None).await;
    let done = Client::new(&serve.url, Some(&ann))
        .wait_job(&id, LONG, is_final)
        .await;
    assert_eq!(done["status"], "completed", "{done}\n{}", serve.proc.log());
    assert_eq!(done["attempts"], 1);
}

/// Kills the endpoint running a job and starts another on its address: the job is retried.
async fn kill_mid_job_and_replace(redis: Option<&str>) {
    let base = tempfile::tempdir().unwrap();
    let (serve, mut worker, port) = setup(base.path(), redis).await;
    let as_ann = Client::new(&serve.url, Some(&User::participant("ann")));
    let id = as_ann.submit(workload(3_000, 30, 7, "killed"), None).await;
    as_ann
        .wait_job(&id, LONG, |j| j["status"] == "in_progress")
        .await;
    wait_health(port, json!({"ready": true, "busy": true}), &worker).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "kill -9 the push worker (pid {}) running {id}",
        worker.pid()
    );
    worker.kill9();

    let replacement = start_push_worker(base.path(), port, SECRET, "push-b");
    let done = as_ann.wait_job(&id, LONG, is_final).await;
    assert_eq!(
        done["status"],
        "completed",
        "{done}\n{}\n{}",
        serve.proc.log(),
        replacement.log()
    );
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(
        serve
            .proc
            .log()
            .contains("the lease lapses and the job is retried"),
        "{}",
        serve.proc.log()
    );
    let history = as_ann.get(&format!("/history/{id}")).await;
    assert_eq!(history[&id]["status"]["status_str"], "success");
    assert!(replacement.log().contains("pushed job done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_worker_killed_mid_job_has_its_job_retried() {
    kill_mid_job_and_replace(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_worker_killed_mid_job_has_its_job_retried_on_the_redis_queue() {
    if !redis_ready() {
        return;
    }
    let redis = RedisServer::start().unwrap();
    kill_mid_job_and_replace(Some(&redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_pushed_job_interrupts_the_worker_and_frees_it() {
    let base = tempfile::tempdir().unwrap();
    let (serve, worker, port) = setup(base.path(), None).await;
    let as_ann = Client::new(&serve.url, Some(&User::participant("ann")));
    let long = as_ann.submit(workload(20_000, 200, 1, "long"), None).await;
    as_ann
        .wait_job(&long, LONG, |j| j["status"] == "in_progress")
        .await;
    wait_health(port, json!({"ready": true, "busy": true}), &worker).await;
    // One job at a time: a second request is turned away.
    let (status, body) = run_raw(port, json!({})).await;
    assert_eq!((status, &body["error"]["type"]), (503, &json!("busy")));
    let asked = Instant::now();
    let (status, _) = as_ann
        .send("POST", "/api/interrupt", Some(json!({"prompt_id": long})))
        .await;
    assert_eq!(status, 200);
    let cancelled = as_ann.wait_job(&long, LONG, is_final).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // The worker notices the dropped connection and interrupts its engine.
    wait_health(port, json!({"ready": true, "busy": false}), &worker).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "interrupted in {took:?}");
    assert!(
        worker.log().contains("the client went away; interrupting"),
        "{}",
        worker.log()
    );
    // And takes the next job.
    let next = as_ann.submit(workload(100, 2, 2, "next"), None).await;
    let done = as_ann.wait_job(&next, LONG, is_final).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_worker_is_ready_only_after_its_warm_up() {
    let base = tempfile::tempdir().unwrap();
    let slow = base.path().join("warmup.json");
    std::fs::write(&slow, workload(2500, 5, 1, "warmup/run").to_string()).unwrap();
    let port = free_port().unwrap();
    let flags = ["--warmup".to_string(), slow.display().to_string()];
    let worker = start_push_worker_with(base.path(), port, SECRET, "push-warm", &flags);
    // The endpoint answers while warming up, but not as ready.
    let deadline = Instant::now() + LONG;
    let (status, body) = loop {
        let (status, body) = health(port, Some(SECRET)).await;
        if status != 0 {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "no answer:\n{}", worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}\n{}", worker.log());
    assert_eq!(body["ready"], false, "{body}");
    wait_health(port, json!({"ready": true, "busy": false}), &worker).await;
    assert!(
        worker.log().contains("warm-up prompt ran"),
        "{}",
        worker.log()
    );

    // A failing warm-up stops the worker with the node's message.
    let failing = base.path().join("failing.json");
    let mut prompt = workload(100, 2, 1, "warmup/fail");
    prompt["1"]["inputs"]["fail"] = json!(true);
    std::fs::write(&failing, prompt.to_string()).unwrap();
    let flags = ["--warmup".to_string(), failing.display().to_string()];
    let other = free_port().unwrap();
    let mut bad = start_push_worker_with(base.path(), other, SECRET, "push-bad-warmup", &flags);
    let status = bad
        .wait_exit(LONG)
        .unwrap_or_else(|| panic!("the worker did not stop:\n{}", bad.log()));
    assert!(!status.success());
    assert!(
        bad.log().contains("DevWorkload failed as asked"),
        "{}",
        bad.log()
    );
}
