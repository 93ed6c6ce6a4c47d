//! Workshop soak: a simulated workshop against real processes for a bounded time, with a worker
//! SIGKILLed and restarted at ~1/3 and Redis SIGKILLed and restarted (same port, same AOF) at
//! ~2/3. A real `redis-server`, `comfyrs serve --redis` in workshop mode and 2 `comfyrs worker
//! --device cpu` running the tiny LTX-2 fixture models; N participants (tokio tasks, HTTP basic
//! auth on `/<user>/`, WebSocket progress) upload images, submit tiny LTX-2 and core-node
//! prompts, watch, cancel, re-queue, browse and download. Every few seconds the RSS and open fds
//! of every process are read from `/proc`.
//!
//! Report (Markdown on stdout, and `<target>/soak/report.{md,json}`): jobs
//! submitted/completed/failed/cancelled, p50/p99/max latency per route, wait per user, the
//! RSS/fd table, and a verification pass (no job lost, every completed job in its owner's
//! history with outputs that download whole). Exits non-zero if a check fails.
//!
//! `cargo bench --bench soak -- --duration 15m [--users 20]` (or `COMFYRS_SOAK_DURATION`,
//! `COMFYRS_SOAK_USERS`). Without `--bench` (as `cargo test --all-targets` runs it) a smoke
//! version runs: 45 s, 4 users, still with the worker kill and the Redis restart. The full run
//! in the dev profile (no release build): `cargo test --bench soak -- --bench --duration 12m`.
//! The processes run the `comfyrs` binary cargo built with this bench, in the same profile
//! (cargo sets `CARGO_BIN_EXE_comfyrs` for benches as for integration tests). Needs
//! `redis-server` (skipped without it, a failure with `COMFYRS_E2E=1`) and the tiny fixture
//! models in `shared/fixtures/ltx2-tiny/models` beside the workspace.

#[path = "../tests/queue_common/mod.rs"]
mod queue_common;
#[path = "../tests/common/models.rs"]
mod template_models;

#[path = "soak/client.rs"]
mod client;
#[path = "soak/prompts.rs"]
mod prompts;
#[path = "soak/report.rs"]
mod report;
#[path = "soak/rig.rs"]
mod rig;
#[path = "soak/stats.rs"]
mod stats;
#[path = "soak/user.rs"]
mod user;
#[path = "soak/verify.rs"]
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::Http;
use queue_common::{User, redis_ready, write_users};
use rig::Rig;
use stats::{Latencies, Limits};
use user::{Behaviour, Ledger, Participant};

const WORKERS: usize = 2;
/// Redis is restarted once; each process may lose its subscription that often.
const REDIS_RESTARTS: usize = 1;

/// Run settings from the command line and environment.
struct Settings {
    full: bool,
    duration: Duration,
    users: usize,
    sample_every: Duration,
    think_s: (f64, f64),
    drain: Duration,
}

/// `15m`, `90s`, `600` (seconds), `1h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let full = args.iter().any(|a| a == "--bench");
    let duration = flag("--duration")
        .or_else(|| std::env::var("COMFYRS_SOAK_DURATION").ok())
        .map(|d| parse_duration(&d).unwrap_or_else(|| panic!("bad duration {d:?}")))
        .unwrap_or(Duration::from_secs(if full { 15 * 60 } else { 45 }));
    let users = flag("--users")
        .or_else(|| std::env::var("COMFYRS_SOAK_USERS").ok())
        .map(|u| u.parse().unwrap_or_else(|_| panic!("bad user count {u:?}")))
        .unwrap_or(if full { 20 } else { 4 });
    Settings {
        full,
        duration,
        users,
        sample_every: Duration::from_secs(if full { 5 } else { 2 }),
        think_s: if full { (2.0, 10.0) } else { (0.5, 2.0) },
        drain: Duration::from_secs(if full { 240 } else { 60 }),
    }
}

/// `<target>` from this executable's path (`<target>/<profile>/deps/soak-<hash>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Waits until the admin sees nothing pending or running (or `deadline`).
async fn drain(rig: &Rig, deadline: Instant) {
    while Instant::now() < deadline {
        let (status, body) = rig.admin.send("GET", "/api/queue/status", None).await;
        let busy = ["queue_depth", "running"]
            .iter()
            .map(|k| body[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        if status == 200 && busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main]
async fn main() {
    if !redis_ready() {
        eprintln!("soak: skipped, redis-server is not installed");
        return;
    }
    let s = settings();
    let people: Vec<User> = (1..=s.users)
        .map(|i| User::participant(&format!("user{i:03}")))
        .collect();
    let admin = User::admin();
    let users_dir = tempfile::tempdir().expect("temp folder");
    let all: Vec<User> = std::iter::once(admin.clone())
        .chain(people.iter().cloned())
        .collect();
    let users_file = write_users(users_dir.path(), &all);
    let mut rig = Rig::start(&users_file, &admin, WORKERS).await;
    eprintln!(
        "soak: {} users, {WORKERS} workers, {:?}; server {}",
        s.users, s.duration, rig.serve.url
    );

    let started = Instant::now();
    let end = started + s.duration;
    let hard_stop = end + s.drain;
    let latencies = Latencies::default();
    let ledger = Ledger::default();
    let templates = Arc::new(prompts::Templates::load());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<Http> = people
        .iter()
        .map(|u| Http::new(&rig.serve.url, u, &latencies))
        .collect();
    let behaviour = Behaviour {
        think_s: s.think_s,
        hard_stop,
    };
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, http)| {
            let p = Participant::new(
                http.clone(),
                0x50a6 + i as u64,
                templates.clone(),
                ledger.clone(),
                behaviour,
            );
            tokio::spawn(p.run(stop.clone()))
        })
        .collect();
    let sampler = {
        let watch = rig.watch.clone();
        let every = s.sample_every;
        tokio::spawn(async move {
            loop {
                watch.sample(started);
                tokio::time::sleep(every).await;
            }
        })
    };

    let mut events = Vec::new();
    tokio::time::sleep_until((started + s.duration / 3).into()).await;
    let (index, killed_job) = rig.kill_busy_worker_and_restart().await;
    events.push((
        started.elapsed().as_secs_f64(),
        format!(
            "SIGKILL worker{index} (running job {}), started a new worker{index}",
            killed_job.as_deref().unwrap_or("none")
        ),
    ));
    tokio::time::sleep_until((started + s.duration * 2 / 3).into()).await;
    rig.restart_redis().await;
    events.push((
        started.elapsed().as_secs_f64(),
        "SIGKILL redis-server, restarted on the same port and AOF folder".to_string(),
    ));
    tokio::time::sleep_until(end.into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("user task");
    }
    drain(&rig, hard_stop).await;
    let ran = started.elapsed();
    rig.watch.sample(started);
    sampler.abort();

    let submitted = ledger.jobs.lock().clone();
    let mut verification =
        verify::verify(&clients, &submitted, &rig.data(), killed_job.as_deref()).await;
    let losses = rig.subscription_losses();
    for (process, n) in &losses {
        if *n > REDIS_RESTARTS {
            verification.problems.push(format!(
                "{process} lost its Redis subscription {n} times ({REDIS_RESTARTS} Redis restart)"
            ));
        }
    }
    let routes = latencies.snapshot();
    let series = rig.watch.series();
    let submit_failures = ledger.submit_failures.lock().clone();
    let settings = vec![
        (
            "mode".to_string(),
            if s.full { "full" } else { "smoke (test mode)" }.to_string(),
        ),
        (
            "duration".into(),
            format!(
                "{:.0} s of users, {:.0} s in all with the drain",
                s.duration.as_secs_f64(),
                ran.as_secs_f64()
            ),
        ),
        ("participants".into(), s.users.to_string()),
        (
            "workers".into(),
            format!("{WORKERS} x `comfyrs worker --device cpu`"),
        ),
        (
            "think time".into(),
            format!("{}-{} s", s.think_s.0, s.think_s.1),
        ),
        ("sampling".into(), format!("every {:?}", s.sample_every)),
        (
            "Redis subscription lost (per process log)".into(),
            losses
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    let report = report::build(&report::Inputs {
        settings,
        events: &events,
        submitted: &submitted,
        submit_failures: &submit_failures,
        upload_failures: *ledger.upload_failures.lock(),
        downloads: *ledger.downloads.lock(),
        routes: &routes,
        series: &series,
        limits: Limits {
            rss_mib: 64.0,
            min_samples: 8,
            rss_fraction: 0.3,
            fds: 32.0,
        },
        verification: &verification,
    });
    println!("{}", report.markdown);
    let out = target_dir().join("soak");
    std::fs::create_dir_all(&out).expect("report folder");
    std::fs::write(out.join("report.md"), &report.markdown).expect("report.md");
    let json = serde_json::to_string_pretty(&report.json).expect("json");
    std::fs::write(out.join("report.json"), json).expect("report.json");
    eprintln!("soak: report written to {}", out.display());
    if !report.failures.is_empty() {
        eprintln!(
            "soak: {} check(s) failed\n{}",
            report.failures.len(),
            rig.logs()
        );
        drop(rig);
        drop(users_dir);
        std::process::exit(1);
    }
}
