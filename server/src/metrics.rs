//! `GET /metrics` in the Prometheus text format (0.0.4): queue depth, jobs by state, wait and
//! run time histograms, worker status and device memory. Rendered from the queue's job
//! summaries and worker registry at scrape time, so every server of a shared (Redis) queue
//! reports the same figures and they survive restarts. The histograms cover the jobs kept in
//! history: deleting history lowers them, which Prometheus reads as a counter reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use queue::{JobState, JobSummary, Policy, WorkerInfo};

/// Histogram bucket bounds (seconds) for wait and run times: from interactive to long videos.
pub const BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// What one scrape reports.
pub struct Snapshot<'a> {
    /// Every job kept (summaries).
    pub jobs: &'a [JobSummary],
    /// Live workers.
    pub workers: &'a [WorkerInfo],
    /// Scheduling policy.
    pub policy: Policy,
    /// Whether submissions are paused.
    pub paused: bool,
    /// Connected WebSockets on this server.
    pub websockets: usize,
    /// Now (ms).
    pub now: i64,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, seconds: &[f64]) {
    header(out, name, "histogram", help);
    for bound in BUCKETS {
        let n = seconds.iter().filter(|s| **s <= bound).count();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", seconds.len());
    let _ = writeln!(out, "{name}_sum {}", seconds.iter().sum::<f64>());
    let _ = writeln!(out, "{name}_count {}", seconds.len());
}

const STATES: [JobState; 5] = [
    JobState::Pending,
    JobState::Running,
    JobState::Completed,
    JobState::Failed,
    JobState::Cancelled,
];

fn state_label(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn job_metrics(out: &mut String, s: &Snapshot) {
    let count = |state: JobState| s.jobs.iter().filter(|j| j.state == state).count();
    header(
        out,
        "comfyrs_queue_depth",
        "gauge",
        "Jobs waiting for a worker.",
    );
    let _ = writeln!(out, "comfyrs_queue_depth {}", count(JobState::Pending));
    header(
        out,
        "comfyrs_jobs",
        "gauge",
        "Jobs by state (finished ones while kept in history).",
    );
    for state in STATES {
        let _ = writeln!(
            out,
            "comfyrs_jobs{{state=\"{}\"}} {}",
            state_label(state),
            count(state)
        );
    }
    header(
        out,
        "comfyrs_jobs_by_user",
        "gauge",
        "Jobs by user and state (finished ones while kept in history).",
    );
    let mut per_user: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for job in s.jobs {
        *per_user
            .entry((job.user.as_str(), state_label(job.state)))
            .or_default() += 1;
    }
    for ((user, state), n) in per_user {
        let _ = writeln!(
            out,
            "comfyrs_jobs_by_user{{user=\"{}\",state=\"{state}\"}} {n}",
            escape(user)
        );
    }
    header(
        out,
        "comfyrs_jobs_retried",
        "gauge",
        "Jobs that needed more than one attempt (their worker died).",
    );
    let retried = s.jobs.iter().filter(|j| j.attempts > 1).count();
    let _ = writeln!(out, "comfyrs_jobs_retried {retried}");
    header(
        out,
        "comfyrs_oldest_pending_wait_seconds",
        "gauge",
        "How long the oldest pending job has waited.",
    );
    let oldest = s
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Pending)
        .map(|j| j.wait_ms(s.now))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "comfyrs_oldest_pending_wait_seconds {}",
        oldest as f64 / 1000.0
    );
    let waits: Vec<f64> = s
        .jobs
        .iter()
        .filter(|j| j.started_at.is_some())
        .map(|j| j.wait_ms(s.now).max(0) as f64 / 1000.0)
        .collect();
    histogram(
        out,
        "comfyrs_job_wait_seconds",
        "Time from submission to the start of the (last) attempt.",
        &waits,
    );
    let runs: Vec<f64> = s
        .jobs
        .iter()
        .filter(|j| j.state.is_final())
        .filter_map(JobSummary::run_ms)
        .map(|ms| ms.max(0) as f64 / 1000.0)
        .collect();
    histogram(
        out,
        "comfyrs_job_run_seconds",
        "Time a finished job's last attempt ran.",
        &runs,
    );
}

fn worker_metrics(out: &mut String, s: &Snapshot) {
    header(out, "comfyrs_workers", "gauge", "Live workers by status.");
    let status = |w: &WorkerInfo| match (w.draining, w.current_job.is_some()) {
        (true, _) => "draining",
        (false, true) => "busy",
        (false, false) => "idle",
    };
    for kind in ["idle", "busy", "draining"] {
        let n = s.workers.iter().filter(|w| status(w) == kind).count();
        let _ = writeln!(out, "comfyrs_workers{{status=\"{kind}\"}} {n}");
    }
    header(
        out,
        "comfyrs_worker_busy",
        "gauge",
        "1 while the worker runs a job.",
    );
    for w in s.workers {
        let _ = writeln!(
            out,
            "comfyrs_worker_busy{{worker=\"{}\",device=\"{}\"}} {}",
            escape(&w.id),
            escape(&w.device),
            u8::from(w.current_job.is_some())
        );
    }
    header(
        out,
        "comfyrs_worker_jobs_done_total",
        "counter",
        "Jobs the worker finished since it started.",
    );
    for w in s.workers {
        let _ = writeln!(
            out,
            "comfyrs_worker_jobs_done_total{{worker=\"{}\",device=\"{}\"}} {}",
            escape(&w.id),
            escape(&w.device),
            w.jobs_done
        );
    }
    header(
        out,
        "comfyrs_worker_memory_used_bytes",
        "gauge",
        "Device memory in use (GPU memory for CUDA workers), when known.",
    );
    for w in s.workers.iter().filter(|w| w.memory_used.is_some()) {
        let _ = writeln!(
            out,
            "comfyrs_worker_memory_used_bytes{{worker=\"{}\",device=\"{}\"}} {}",
            escape(&w.id),
            escape(&w.device),
            w.memory_used.unwrap_or(0)
        );
    }
    header(
        out,
        "comfyrs_worker_memory_total_bytes",
        "gauge",
        "Device memory in total, when known.",
    );
    for w in s.workers.iter().filter(|w| w.memory_total.is_some()) {
        let _ = writeln!(
            out,
            "comfyrs_worker_memory_total_bytes{{worker=\"{}\",device=\"{}\"}} {}",
            escape(&w.id),
            escape(&w.device),
            w.memory_total.unwrap_or(0)
        );
    }
}

/// The metrics text for a snapshot of the queue.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "comfyrs_queue_up",
        "gauge",
        "1 when the queue backend answered this scrape.",
    );
    out.push_str("comfyrs_queue_up 1\n");
    job_metrics(&mut out, s);
    worker_metrics(&mut out, s);
    header(
        &mut out,
        "comfyrs_queue_paused",
        "gauge",
        "1 while new submissions are refused.",
    );
    let _ = writeln!(out, "comfyrs_queue_paused {}", u8::from(s.paused));
    header(
        &mut out,
        "comfyrs_queue_policy",
        "gauge",
        "The scheduling policy in force (1 for the current one).",
    );
    for policy in [Policy::Fifo, Policy::RoundRobin, Policy::Priority] {
        let _ = writeln!(
            out,
            "comfyrs_queue_policy{{policy=\"{}\"}} {}",
            policy.name(),
            u8::from(policy == s.policy)
        );
    }
    header(
        &mut out,
        "comfyrs_websockets_connected",
        "gauge",
        "WebSockets connected to this server.",
    );
    let _ = writeln!(out, "comfyrs_websockets_connected {}", s.websockets);
    out
}

/// The metrics text when the queue backend cannot be read.
pub fn render_down(websockets: usize) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "comfyrs_queue_up",
        "gauge",
        "1 when the queue backend answered this scrape.",
    );
    out.push_str("comfyrs_queue_up 0\n");
    header(
        &mut out,
        "comfyrs_websockets_connected",
        "gauge",
        "WebSockets connected to this server.",
    );
    let _ = writeln!(out, "comfyrs_websockets_connected {websockets}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(user: &str, state: JobState, created: i64, started: Option<i64>) -> JobSummary {
        JobSummary {
            id: format!("{user}-{created}"),
            seq: created as u64,
            user: user.into(),
            state,
            priority: 0,
            number: 0.into(),
            created_at: created,
            started_at: started,
            finished_at: started.filter(|_| state.is_final()).map(|s| s + 3_000),
            attempts: u32::from(started.is_some()),
            worker: None,
            reason: None,
            cancel_requested: false,
        }
    }

    #[test]
    fn renders_counts_histograms_and_workers() {
        let jobs = [
            summary("ann", JobState::Completed, 0, Some(200)),
            summary("bob", JobState::Running, 1_000, Some(8_000)),
            summary("b\"x", JobState::Pending, 9_000, None),
        ];
        let workers = [WorkerInfo {
            id: "w1".into(),
            device: "cuda:0".into(),
            current_job: Some("bob-1000".into()),
            memory_used: Some(5 << 30),
            memory_total: Some(80 << 30),
            ..Default::default()
        }];
        let text = render(&Snapshot {
            jobs: &jobs,
            workers: &workers,
            policy: Policy::RoundRobin,
            paused: false,
            websockets: 2,
            now: 10_000,
        });
        for line in [
            "comfyrs_queue_depth 1",
            "comfyrs_jobs{state=\"running\"} 1",
            "comfyrs_jobs_by_user{user=\"b\\\"x\",state=\"pending\"} 1",
            "comfyrs_job_wait_seconds_bucket{le=\"0.25\"} 1",
            "comfyrs_job_wait_seconds_bucket{le=\"10\"} 2",
            "comfyrs_job_wait_seconds_count 2",
            "comfyrs_job_wait_seconds_sum 7.2",
            "comfyrs_job_run_seconds_bucket{le=\"2.5\"} 0",
            "comfyrs_job_run_seconds_bucket{le=\"5\"} 1",
            "comfyrs_oldest_pending_wait_seconds 1",
            "comfyrs_workers{status=\"busy\"} 1",
            "comfyrs_worker_memory_used_bytes{worker=\"w1\",device=\"cuda:0\"} 5368709120",
            "comfyrs_queue_policy{policy=\"round_robin\"} 1",
            "comfyrs_queue_policy{policy=\"fifo\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {name} "))
                    || text.contains(&format!("# TYPE {base} histogram")),
                "{line}"
            );
        }
    }
}
