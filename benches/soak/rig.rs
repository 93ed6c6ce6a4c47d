//! The processes of the soak: a real `redis-server` (AOF, `appendfsync always`), one
//! `comfyrs serve --redis` in workshop mode (participants + an admin) and `comfyrs worker`
//! processes on the CPU, all sharing one base folder whose models are the tiny LTX-2 fixtures
//! linked under the templates' file names. The `comfyrs` binary is the one cargo built for
//! this bench (`CARGO_BIN_EXE_comfyrs`, which cargo sets for benches as for integration tests).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue_common::{Client, Proc, RedisServer, Serve, User, start_serve, start_worker};
use crate::stats::Watch;
use crate::template_models::link_template_models;

/// Lease of a claimed job (ms): a killed worker's job goes back to the queue this long after
/// its last heartbeat. Short, so the smoke run sees the re-run.
const LEASE_MS: &str = "6000";
const HEARTBEAT_MS: &str = "500";

/// The running system.
pub struct Rig {
    /// The base folder (`data/` is the server's and workers' base directory).
    pub base: tempfile::TempDir,
    /// Redis (restartable on its port and AOF folder).
    pub redis: Arc<std::sync::Mutex<RedisServer>>,
    /// `comfyrs serve`.
    pub serve: Serve,
    /// The workers, by index.
    pub workers: Vec<Proc>,
    /// How many worker processes were started so far (log names).
    started_workers: usize,
    /// The admin.
    pub admin: Client,
    /// The processes being sampled.
    pub watch: Watch,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Flags every queue process shares.
fn queue_flags() -> Vec<String> {
    strings(&["--lease-ms", LEASE_MS, "--heartbeat-ms", HEARTBEAT_MS])
}

impl Rig {
    /// Starts Redis, the server (with `users_file`) and `workers` workers, and waits until
    /// every worker has registered.
    pub async fn start(users_file: &Path, admin: &User, workers: usize) -> Self {
        let base = tempfile::tempdir().expect("temp folder");
        link_template_models(&base.path().join("data/models"));
        let redis = RedisServer::start().expect("redis-server");
        let url = redis.url();
        let watch = Watch::default();
        watch.add("redis", redis.pid().expect("redis pid"));
        let mut flags = strings(&[
            "--users",
            &users_file.display().to_string(),
            "--no-local-worker",
            "--max-pending-per-user",
            "0",
            "--prompts-per-minute",
            "0",
            "--max-history",
            "100000",
        ]);
        flags.extend(queue_flags());
        let serve = start_serve(base.path(), Some(&url), &flags).await;
        watch.add("server", serve.proc.pid());
        let mut rig = Self {
            admin: Client::new(&serve.url, Some(admin)),
            base,
            redis: Arc::new(std::sync::Mutex::new(redis)),
            serve,
            workers: Vec::new(),
            started_workers: 0,
            watch,
        };
        for _ in 0..workers {
            let worker = rig.spawn_worker(rig.workers.len());
            rig.workers.push(worker);
        }
        rig.wait_workers(workers).await;
        rig
    }

    fn redis_url(&self) -> String {
        self.redis.lock().expect("redis lock").url()
    }

    fn spawn_worker(&mut self, index: usize) -> Proc {
        let log = format!("worker{index}-{}", self.started_workers);
        self.started_workers += 1;
        let proc = start_worker(self.base.path(), &self.redis_url(), &log, &queue_flags());
        self.watch.add(&format!("worker{index}"), proc.pid());
        proc
    }

    /// Waits until `/api/workers` lists at least `n` live workers.
    pub async fn wait_workers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.admin.send("GET", "/api/workers", None).await;
            let live = body.as_array().map(Vec::len).unwrap_or(0);
            if status == 200 && live >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} workers did not register: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILLs a worker in the middle of a job (the first one seen running one within 30 s,
    /// else worker 0) and starts a new one in its place; returns its index and the job.
    pub async fn kill_busy_worker_and_restart(&mut self) -> (usize, Option<String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (index, job) = loop {
            if let Some(found) = self.busy_worker().await {
                break found;
            }
            if Instant::now() > deadline {
                break (0, None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.workers[index].kill9();
        let worker = self.spawn_worker(index);
        self.workers[index] = worker;
        (index, job)
    }

    /// A worker running a job (index, job id): `/api/workers` ids end in `-<pid>-<suffix>`.
    async fn busy_worker(&self) -> Option<(usize, Option<String>)> {
        let (_, listed) = self.admin.send("GET", "/api/workers", None).await;
        for info in listed.as_array().into_iter().flatten() {
            let (Some(id), Some(job)) = (info["id"].as_str(), info["current_job"].as_str()) else {
                continue;
            };
            let index = self
                .workers
                .iter()
                .position(|w| id.contains(&format!("-{}-", w.pid())));
            if let Some(index) = index {
                return Some((index, Some(job.to_string())));
            }
        }
        None
    }

    /// SIGKILLs Redis and starts it again on the same port with the same AOF folder.
    pub async fn restart_redis(&self) {
        let redis = self.redis.clone();
        let pid = tokio::task::spawn_blocking(move || {
            let mut server = redis.lock().expect("redis lock");
            server.restart().expect("restart redis-server");
            server.pid().expect("redis pid")
        })
        .await
        .expect("restart task");
        self.watch.add("redis", pid);
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = format!("--- serve ---\n{}", tail(&self.serve.proc.log()));
        for worker in &self.workers {
            out.push_str(&format!(
                "\n--- {} ---\n{}",
                worker.name,
                tail(&worker.log())
            ));
        }
        out
    }

    /// How often each process (by log file) lost its Redis subscription: once per Redis
    /// restart is expected, more means the link drops by itself (and events are lost).
    pub fn subscription_losses(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.base.path()) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                out.push((
                    name.to_string(),
                    text.matches("lost the Redis subscription").count(),
                ));
            }
        }
        out.sort();
        out
    }

    /// The server's data folder.
    pub fn data(&self) -> std::path::PathBuf {
        self.base.path().join("data")
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}
