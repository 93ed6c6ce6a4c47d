//! `comfyrs status`: the health of a running server in one screen (or `--json`): the server,
//! the queue backend, the workers (device, job, memory), the output disk and GPU memory, from
//! the admin routes `/health` and `/api/admin/overview`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::client::{AdminClient, ClientArgs};

/// `comfyrs status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Asks the server and prints its status. Exit code 0: healthy, 2: degraded (queue down, disk
/// nearly full or no worker), 1: the server cannot be asked.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(&args.client)?;
    let health = client.get("/health").await?;
    let overview = client.get("/api/admin/overview").await?;
    let status = collect(client.url(), &health, &overview);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(if status["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The status document from the server's two answers.
pub fn collect(url: &str, health: &Value, overview: &Value) -> Value {
    let components = &health["components"];
    let workers: Vec<Value> = overview["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| worker_row(w, overview["now"].as_i64()))
                .collect()
        })
        .unwrap_or_default();
    let gpus: Vec<Value> = workers
        .iter()
        .filter(|w| w["device"].as_str().is_some_and(|d| d.starts_with("cuda")))
        .map(|w| {
            json!({"worker": w["id"], "device": w["device"],
                   "memory_used": w["memory_used"], "memory_total": w["memory_total"]})
        })
        .collect();
    let queue_ok = components["queue"]["ok"] == true;
    let disk_ok = components["disk"]["ok"] == true;
    let workers_ok = !workers.is_empty();
    json!({
        "ok": queue_ok && disk_ok && workers_ok,
        "server": {
            "url": url,
            "status": health["status"],
            "version": health["version"],
            "uptime_s": health["uptime_s"],
            "websockets": overview["websockets"],
        },
        "queue": {
            "ok": queue_ok,
            "backend": overview["backend"],
            "details": components["queue"]["details"],
            "error": components["queue"]["error"],
            "policy": overview["policy"],
            "paused": overview["paused"],
            "counts": overview["counts"],
        },
        "workers": workers,
        "disk": components["disk"],
        "gpus": gpus,
    })
}

fn worker_row(w: &Value, now: Option<i64>) -> Value {
    let seen_ago = match (now, w["last_seen"].as_i64()) {
        (Some(now), Some(seen)) => json!((now - seen).max(0)),
        _ => Value::Null,
    };
    json!({
        "id": w["id"], "device": w["device"], "current_job": w["current_job"],
        "memory_used": w["memory_used"], "memory_total": w["memory_total"],
        "jobs_done": w["jobs_done"], "draining": w["draining"], "last_seen_ms_ago": seen_ago,
    })
}

fn gib(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "?".into())
}

/// Disk sizes in GB (10^9 bytes, as --min-free-disk-gb counts).
fn gb(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.1} GB", b as f64 / 1e9))
        .unwrap_or_else(|| "?".into())
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "PROBLEM" }
}

/// One screen of text.
pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let server = &s["server"];
    let _ = writeln!(
        out,
        "server   {}  comfyrs {}  up {}s  {}  websockets {}",
        server["url"].as_str().unwrap_or("?"),
        server["version"].as_str().unwrap_or("?"),
        server["uptime_s"],
        server["status"].as_str().unwrap_or("?"),
        server["websockets"],
    );
    let q = &s["queue"];
    let c = &q["counts"];
    let _ = writeln!(
        out,
        "queue    {} {}  policy {}  {}  pending {}  running {}  completed {}  failed {}  cancelled {}",
        q["backend"].as_str().unwrap_or("?"),
        mark(q["ok"] == true),
        q["policy"].as_str().unwrap_or("?"),
        if q["paused"] == true {
            "PAUSED"
        } else {
            "accepting"
        },
        c["pending"],
        c["running"],
        c["completed"],
        c["failed"],
        c["cancelled"],
    );
    if let Some(e) = q["error"].as_str() {
        let _ = writeln!(out, "         error: {e}");
    }
    let d = &s["disk"];
    let _ = writeln!(
        out,
        "disk     {}  {} free of {} at {} (guard {})",
        mark(d["ok"] == true),
        gb(&d["free_bytes"]),
        gb(&d["total_bytes"]),
        d["path"].as_str().unwrap_or("?"),
        gb(&d["min_free_bytes"]),
    );
    let workers = s["workers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let _ = writeln!(
        out,
        "workers  {}{}",
        workers.len(),
        if workers.is_empty() {
            "  PROBLEM: none"
        } else {
            ""
        }
    );
    for w in workers {
        let _ = writeln!(
            out,
            "  {:<8} {:<28} {:<38} mem {} / {}  done {}{}",
            w["device"].as_str().unwrap_or("?"),
            w["id"].as_str().unwrap_or("?"),
            w["current_job"]
                .as_str()
                .map(|j| format!("job {j}"))
                .unwrap_or_else(|| "idle".into()),
            gib(&w["memory_used"]),
            gib(&w["memory_total"]),
            w["jobs_done"],
            if w["draining"] == true {
                "  draining"
            } else {
                ""
            },
        );
    }
    let gpus = s["gpus"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if gpus.is_empty() {
        let _ = writeln!(out, "gpus     none reported by the workers");
    }
    for g in gpus {
        let _ = writeln!(
            out,
            "gpu      {:<8} {} / {} used",
            g["device"].as_str().unwrap_or("?"),
            gib(&g["memory_used"]),
            gib(&g["memory_total"]),
        );
    }
    out
}
