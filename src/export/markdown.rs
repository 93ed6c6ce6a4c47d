//! The workshop report as Markdown (the same figures as `report.json`, with the charts linked).

use std::fmt::Write as _;

use super::report::{Counts, Report};

fn seconds(ms: Option<f64>) -> String {
    ms.map(|v| format!("{:.1} s", v / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn seconds_i(ms: Option<i64>) -> String {
    seconds(ms.map(|v| v as f64))
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} %", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn row(name: &str, c: &Counts) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        c.submitted,
        c.completed,
        c.failed,
        c.cancelled,
        percent(c.success_rate),
        seconds(c.average_job_ms),
        seconds_i(c.longest_job_ms),
        seconds_i(c.longest_wait_ms),
    )
}

/// The report as a Markdown document; `charts` are the SVG file names to link.
pub fn render(report: &Report, title: &str, charts: &[&str]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "From {} to {} ({:.1} minutes).\n",
        time(report.window_start),
        time(report.window_end),
        (report.window_end - report.window_start) as f64 / 60_000.0
    );
    let t = &report.total;
    let _ = writeln!(s, "## Summary\n");
    let _ = writeln!(s, "- Jobs submitted: {}", t.submitted);
    let _ = writeln!(
        s,
        "- Completed: {}, failed: {}, cancelled: {}, unfinished: {}",
        t.completed, t.failed, t.cancelled, t.unfinished
    );
    let _ = writeln!(
        s,
        "- Success rate (completed / (completed + failed)): {}",
        percent(t.success_rate)
    );
    let _ = writeln!(
        s,
        "- Job time: average {}, longest {}{}",
        seconds(t.average_job_ms),
        seconds_i(t.longest_job_ms),
        report
            .longest_job
            .as_deref()
            .map(|id| format!(" (`{id}`)"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- Wait before start: average {}, longest {}{}",
        seconds(report.average_wait_ms),
        seconds_i(t.longest_wait_ms),
        report
            .longest_wait_job
            .as_deref()
            .map(|id| format!(" (`{id}`)"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- Peak queue depth: {} jobs waiting, {:.1} minutes in",
        report.peak_queue_depth,
        report.peak_queue_at_ms as f64 / 60_000.0
    );
    let _ = writeln!(s, "- Worker utilisation: {}\n", percent(report.utilisation));
    let _ = writeln!(s, "## Per user\n");
    s.push_str("| user | submitted | completed | failed | cancelled | success | average job | longest job | longest wait |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (user, c) in &report.users {
        let name = if user.is_empty() {
            "(single user)"
        } else {
            user
        };
        s.push_str(&row(name, c));
    }
    s.push_str(&row("**all**", t));
    let _ = writeln!(s, "\n## Workers\n");
    s.push_str("| worker | jobs | busy | utilisation |\n|---|---:|---:|---:|\n");
    for w in &report.workers {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            w.worker,
            w.jobs,
            seconds_i(Some(w.busy_ms)),
            percent(Some(w.utilisation))
        );
    }
    let _ = writeln!(s, "\n## Errors\n");
    if report.errors.is_empty() {
        s.push_str("No job failed.\n");
    } else {
        for (reason, n) in &report.errors_by_reason {
            let _ = writeln!(s, "- {n} x {reason}");
        }
        s.push_str("\n| job | user | reason |\n|---|---|---|\n");
        for e in &report.errors {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} |",
                e.id,
                e.user,
                e.reason.replace('|', "\\|")
            );
        }
    }
    if !charts.is_empty() {
        let _ = writeln!(s, "\n## Charts\n");
        for chart in charts {
            let _ = writeln!(s, "![{chart}]({chart})\n");
        }
    }
    s
}
