//! The soak's report: Markdown (printed, and written with a JSON twin to
//! `<target>/soak/report.{md,json}`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};

use crate::stats::{Limits, RouteStats, Series, quantile, sorted_ms};
use crate::user::Submitted;
use crate::verify::Verification;

/// Everything the report is made of.
pub struct Inputs<'a> {
    /// Run settings, as `(name, value)` lines.
    pub settings: Vec<(String, String)>,
    /// Chaos events (`(seconds since start, what)`).
    pub events: &'a [(f64, String)],
    /// Submitted jobs.
    pub submitted: &'a [Submitted],
    /// Refused or unanswered submissions.
    pub submit_failures: &'a [String],
    /// Failed uploads.
    pub upload_failures: usize,
    /// Downloads during the run (count, bytes).
    pub downloads: (usize, usize),
    /// Latencies per route.
    pub routes: &'a BTreeMap<String, RouteStats>,
    /// Process readings.
    pub series: &'a [Series],
    /// Growth limits.
    pub limits: Limits,
    /// The verification pass.
    pub verification: &'a Verification,
}

/// The report in Markdown and JSON, and every failed check.
pub struct Report {
    /// Markdown.
    pub markdown: String,
    /// JSON.
    pub json: Value,
    /// Failed checks (empty: pass).
    pub failures: Vec<String>,
}

/// Builds the report.
pub fn build(i: &Inputs) -> Report {
    let mut md = String::from("# Workshop soak\n\n");
    for (k, v) in &i.settings {
        let _ = writeln!(md, "- {k}: {v}");
    }
    for (at, what) in i.events {
        let _ = writeln!(md, "- at {at:.0} s: {what}");
    }
    let v = i.verification;
    let mut failures = v.problems.clone();

    md.push_str("\n## Jobs\n\n| submitted | completed | failed | cancelled | still pending / running | lost | re-run after a worker died | re-queues | cancel requests | submits refused |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let count = |k: &str| v.statuses.get(k).copied().unwrap_or(0);
    let requeues = i.submitted.iter().filter(|s| s.requeue).count();
    let cancels = i.submitted.iter().filter(|s| s.cancel.is_some()).count();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {requeues} | {cancels} | {} |",
        i.submitted.len(),
        count("completed"),
        count("failed"),
        count("cancelled"),
        v.unfinished.len(),
        count("lost"),
        v.retried,
        i.submit_failures.len()
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in i.submitted {
        *kinds.entry(s.kind.name()).or_default() += 1;
    }
    let _ = writeln!(
        md,
        "\nBy kind: {}. Uploads failed: {}. Downloads while running: {} files, {} KiB. Verified \
         at the end: {} output files ({} KiB) downloaded via /view with their size on disk. \
         Completed jobs whose end the owner's WebSocket did not report: {}.",
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        i.upload_failures,
        i.downloads.0,
        i.downloads.1 / 1024,
        v.files_checked,
        v.bytes_checked / 1024,
        v.ws_missed.len()
    );
    if let Some((id, status, attempts)) = &v.killed_job {
        let _ = writeln!(
            md,
            "\nThe job running on the SIGKILLed worker ({id}) ended {status} after {attempts} attempt(s)."
        );
    }
    list(
        &mut md,
        "Still pending or running at the end",
        &v.unfinished,
    );
    list(&mut md, "Failed jobs", &v.failed);
    list(&mut md, "Refused submissions", i.submit_failures);
    list(&mut md, "WebSocket did not report the end of", &v.ws_missed);

    md.push_str("\n## Latency per route (ms)\n\n| route | n | p50 | p99 | max | errors |\n|---|---:|---:|---:|---:|---|\n");
    let mut routes_json = serde_json::Map::new();
    for (route, stats) in i.routes {
        let ms = sorted_ms(&stats.samples);
        let (p50, p99, max) = (
            quantile(&ms, 0.5),
            quantile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN),
        );
        let mut errors: Vec<String> = stats
            .errors
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect();
        if stats.transport_errors > 0 {
            errors.push(format!("{} unanswered", stats.transport_errors));
        }
        let _ = writeln!(
            md,
            "| `{route}` | {} | {p50:.1} | {p99:.1} | {max:.1} | {} |",
            ms.len(),
            errors.join(", ")
        );
        routes_json.insert(
            route.clone(),
            json!({"n": ms.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                   "errors": stats.errors, "transport_errors": stats.transport_errors}),
        );
    }

    md.push_str("\n## Wait per user (submit -> start, s; jobs that started)\n\n| user | jobs | p50 | max |\n|---|---:|---:|---:|\n");
    let mut waits_json = serde_json::Map::new();
    for (user, waits) in &v.waits {
        let mut s = waits.clone();
        s.sort_by(f64::total_cmp);
        let (p50, max) = (quantile(&s, 0.5) / 1e3, quantile(&s, 1.0) / 1e3);
        let _ = writeln!(md, "| {user} | {} | {p50:.1} | {max:.1} |", s.len());
        waits_json.insert(
            user.clone(),
            json!({"jobs": s.len(), "p50_s": p50, "max_s": max}),
        );
    }

    let _ = writeln!(
        md,
        "\n## Memory and file descriptors\n\nFirst quarter of each process's readings is \
         warm-up; growth = mean of the last quarter minus mean of the second quarter; flagged \
         above max({} MiB, {:.0} % of the level) RSS or {} fds; processes with fewer than half \
         the readings of the longest-lived one (killed or started half-way) are not judged.\n\n| process | pid | readings | \
         RSS first / last / max MiB | RSS growth MiB | RSS slope MiB/min | fds first / last / max \
         | fds growth | fds slope /min | verdict |\n|---|---:|---:|---|---:|---:|---|---:|---:|---|",
        i.limits.rss_mib,
        i.limits.rss_fraction * 100.0,
        i.limits.fds
    );
    let mut series_json = Vec::new();
    let longest = i.series.iter().map(|s| s.samples.len()).max().unwrap_or(0);
    let limits = Limits {
        min_samples: i.limits.min_samples.max(longest / 2),
        ..i.limits
    };
    for s in i.series {
        let mut entry = s.to_json();
        if let Some(g) = s.growth(limits) {
            let verdict = if s.samples.len() < limits.min_samples.max(8) {
                "not judged (too few readings)".to_string()
            } else if g.flags.is_empty() {
                "flat".to_string()
            } else {
                g.flags.join("; ")
            };
            failures.extend(g.flags.iter().map(|f| format!("{}: {f}", s.name)));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} / {:.1} / {:.1} | {:+.1} | {:+.2} | {} / {} / {} | {:+.1} | {:+.2} | {verdict} |",
                s.name,
                s.pid,
                s.samples.len(),
                g.rss_first,
                g.rss_last,
                g.rss_max,
                g.rss_growth,
                g.rss_slope,
                g.fds_first,
                g.fds_last,
                g.fds_max,
                g.fds_growth,
                g.fds_slope
            );
            entry["growth"] = json!({
                "rss_mib": [g.rss_first, g.rss_last, g.rss_max], "rss_growth_mib": g.rss_growth,
                "rss_slope_mib_per_min": g.rss_slope, "fds": [g.fds_first, g.fds_last, g.fds_max],
                "fds_growth": g.fds_growth, "fds_slope_per_min": g.fds_slope, "flags": g.flags,
            });
        }
        series_json.push(entry);
    }

    md.push_str("\n## Checks\n\n");
    if failures.is_empty() {
        md.push_str(
            "All passed: no job lost, every completed job's history and outputs \
                     survived and downloaded whole, no process grew.\n",
        );
    } else {
        for f in &failures {
            let _ = writeln!(md, "- FAILED: {f}");
        }
    }
    let json = json!({
        "settings": i.settings.iter().cloned().collect::<BTreeMap<_, _>>(),
        "events": i.events,
        "jobs": {"submitted": i.submitted.len(), "statuses": v.statuses, "retried": v.retried,
                 "requeues": requeues, "cancel_requests": cancels,
                 "submit_failures": i.submit_failures, "upload_failures": i.upload_failures,
                 "unfinished": v.unfinished, "failed": v.failed, "ws_missed": v.ws_missed,
                 "files_checked": v.files_checked, "killed_job": v.killed_job, "bytes_checked": v.bytes_checked},
        "routes": routes_json,
        "waits": waits_json,
        "processes": series_json,
        "failures": failures,
    });
    Report {
        markdown: md,
        json,
        failures,
    }
}

fn list(md: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n{title} ({}):\n", items.len());
    for item in items.iter().take(40) {
        let _ = writeln!(md, "- {item}");
    }
    if items.len() > 40 {
        let _ = writeln!(md, "- ... and {} more", items.len() - 40);
    }
}
