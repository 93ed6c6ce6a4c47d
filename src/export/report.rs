//! The workshop report, computed by a pure function from the job history (each job's user,
//! state, worker and timestamps, as `/api/admin/jobs` lists them): jobs per user, success
//! rate, job times, waits, the queue depth over time, throughput, worker utilisation and the
//! errors.
//!
//! Definitions: the window runs from the first submission to the last finish (or the last
//! submission when nothing finished). A job is *waiting* from its submission until its (last)
//! start, or until it finished without starting (cancelled while pending); the queue depth is
//! the number of waiting jobs. Job time is `finished - started` of completed jobs. The success
//! rate is completed / (completed + failed): cancelled jobs were the user's choice. A worker's
//! utilisation is the time it ran jobs (any outcome) over the window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One job of the history (the fields of `queue::JobSummary` the report reads).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct JobRecord {
    /// Prompt id.
    pub id: String,
    /// Submitting user (`""` in single-user mode).
    pub user: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub state: String,
    /// Submission time (ms since the epoch).
    pub created_at: i64,
    /// Start of the last attempt.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// End.
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// The worker that ran it last.
    #[serde(default)]
    pub worker: Option<String>,
    /// Why it failed or was cancelled, when not a node error.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Counts of one user (or of everyone).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Jobs submitted.
    pub submitted: usize,
    /// Completed.
    pub completed: usize,
    /// Failed.
    pub failed: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Still pending or running at export time.
    pub unfinished: usize,
    /// completed / (completed + failed); `None` when neither.
    pub success_rate: Option<f64>,
    /// Mean job time of completed jobs (ms).
    pub average_job_ms: Option<f64>,
    /// Longest job time of completed jobs (ms).
    pub longest_job_ms: Option<i64>,
    /// Longest wait before a start (ms).
    pub longest_wait_ms: Option<i64>,
}

/// A worker's share of the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerUse {
    /// Worker id.
    pub worker: String,
    /// Jobs it ran (any outcome).
    pub jobs: usize,
    /// Time spent running them (ms).
    pub busy_ms: i64,
    /// `busy_ms` / window length.
    pub utilisation: f64,
}

/// A failed job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Prompt id.
    pub id: String,
    /// User.
    pub user: String,
    /// The reason, or `node error` when a node raised (details in the user's history).
    pub reason: String,
}

/// One bucket of the throughput series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket (ms since the window's start).
    pub start_ms: i64,
    /// Jobs that completed in it.
    pub completed: usize,
    /// Jobs that failed in it.
    pub failed: usize,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// First submission (ms since the epoch).
    pub window_start: i64,
    /// Last finish (or submission).
    pub window_end: i64,
    /// Everyone's figures.
    pub total: Counts,
    /// Per user, by name.
    pub users: BTreeMap<String, Counts>,
    /// Mean wait before a start (ms) over every started job.
    pub average_wait_ms: Option<f64>,
    /// The longest-waiting job.
    pub longest_wait_job: Option<String>,
    /// The longest completed job.
    pub longest_job: Option<String>,
    /// Most jobs waiting at once.
    pub peak_queue_depth: usize,
    /// When the peak was first reached (ms since the window's start).
    pub peak_queue_at_ms: i64,
    /// Queue depth as a step function: `(ms since the window's start, depth from then on)`.
    pub queue_depth: Vec<(i64, usize)>,
    /// Width of the throughput buckets (ms).
    pub bucket_ms: i64,
    /// Finished jobs per bucket.
    pub throughput: Vec<Bucket>,
    /// Per worker, by id.
    pub workers: Vec<WorkerUse>,
    /// Busy time of all workers over (workers x window).
    pub utilisation: Option<f64>,
    /// Failed jobs in submission order.
    pub errors: Vec<Failure>,
    /// Failures counted by reason.
    pub errors_by_reason: BTreeMap<String, usize>,
}

/// Bucket widths the throughput chart picks from (ms).
const BUCKETS: &[i64] = &[
    1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 7_200_000,
];

/// Most buckets in the throughput series.
const MAX_BUCKETS: i64 = 60;

fn run_ms(job: &JobRecord) -> Option<i64> {
    Some(job.finished_at? - job.started_at?)
}

fn wait_ms(job: &JobRecord) -> Option<i64> {
    Some(job.started_at? - job.created_at)
}

fn mean(values: &[i64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<i64>() as f64 / values.len() as f64)
}

fn counts<'a>(jobs: impl Iterator<Item = &'a JobRecord>) -> Counts {
    let mut c = Counts::default();
    let mut times = Vec::new();
    let mut waits = Vec::new();
    for job in jobs {
        c.submitted += 1;
        match job.state.as_str() {
            "completed" => {
                c.completed += 1;
                times.extend(run_ms(job));
            }
            "failed" => c.failed += 1,
            "cancelled" => c.cancelled += 1,
            _ => c.unfinished += 1,
        }
        waits.extend(wait_ms(job));
    }
    let decided = c.completed + c.failed;
    c.success_rate = (decided > 0).then(|| c.completed as f64 / decided as f64);
    c.average_job_ms = mean(&times);
    c.longest_job_ms = times.iter().copied().max();
    c.longest_wait_ms = waits.iter().copied().max();
    c
}

/// When a job stops waiting (`None`: still waiting at the end of the window).
fn leaves_queue(job: &JobRecord) -> Option<i64> {
    job.started_at.or(job.finished_at)
}

/// The queue depth step function and its first peak.
fn queue_depth(jobs: &[JobRecord], start: i64) -> (Vec<(i64, usize)>, usize, i64) {
    // (time, +1 arrival / -1 departure); departures first at equal times.
    let mut events: Vec<(i64, i32)> = Vec::new();
    for job in jobs {
        match leaves_queue(job) {
            // Started at once: it never waited.
            Some(t) if t <= job.created_at => {}
            Some(t) => events.extend([(job.created_at, 1), (t, -1)]),
            None => events.push((job.created_at, 1)),
        }
    }
    events.sort();
    let mut steps: Vec<(i64, usize)> = vec![(0, 0)];
    let (mut depth, mut peak, mut peak_at) = (0i64, 0usize, 0i64);
    for (t, delta) in events {
        depth += i64::from(delta);
        let d = depth.max(0) as usize;
        let at = t - start;
        match steps.last_mut() {
            Some(last) if last.0 == at => last.1 = d,
            _ => steps.push((at, d)),
        }
        if d > peak {
            peak = d;
            peak_at = at;
        }
    }
    steps.dedup_by(|b, a| a.1 == b.1);
    (steps, peak, peak_at)
}

/// `a / b` rounded up, for positive `a` and `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn throughput(jobs: &[JobRecord], start: i64, end: i64) -> (i64, Vec<Bucket>) {
    let span = (end - start).max(1);
    let width = BUCKETS
        .iter()
        .copied()
        .find(|w| ceil_div(span, *w) <= MAX_BUCKETS)
        .unwrap_or_else(|| ceil_div(span, MAX_BUCKETS));
    let n = ceil_div(span, width).max(1) as usize;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start_ms: i as i64 * width,
            completed: 0,
            failed: 0,
        })
        .collect();
    for job in jobs {
        let Some(t) = job.finished_at else { continue };
        let i = (((t - start) / width) as usize).min(n - 1);
        match job.state.as_str() {
            "completed" => buckets[i].completed += 1,
            "failed" => buckets[i].failed += 1,
            _ => {}
        }
    }
    (width, buckets)
}

fn workers(jobs: &[JobRecord], window: i64) -> (Vec<WorkerUse>, Option<f64>) {
    let mut per: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
    for job in jobs {
        if let (Some(worker), Some(ms)) = (job.worker.as_deref(), run_ms(job)) {
            let entry = per.entry(worker).or_default();
            entry.0 += 1;
            entry.1 += ms;
        }
    }
    let window = window.max(1) as f64;
    let rows: Vec<WorkerUse> = per
        .into_iter()
        .map(|(worker, (jobs, busy_ms))| WorkerUse {
            worker: worker.to_string(),
            jobs,
            busy_ms,
            utilisation: busy_ms as f64 / window,
        })
        .collect();
    let total = (!rows.is_empty())
        .then(|| rows.iter().map(|w| w.busy_ms).sum::<i64>() as f64 / (window * rows.len() as f64));
    (rows, total)
}

/// The report of `jobs` (any order).
pub fn compute(jobs: &[JobRecord]) -> Report {
    let mut jobs = jobs.to_vec();
    jobs.sort_by_key(|j| (j.created_at, j.id.clone()));
    let start = jobs.iter().map(|j| j.created_at).min().unwrap_or(0);
    let end = jobs
        .iter()
        .flat_map(|j| [Some(j.created_at), j.started_at, j.finished_at])
        .flatten()
        .max()
        .unwrap_or(start);
    let mut by_user: BTreeMap<String, Vec<&JobRecord>> = BTreeMap::new();
    for job in &jobs {
        by_user.entry(job.user.clone()).or_default().push(job);
    }
    let users = by_user
        .into_iter()
        .map(|(user, js)| (user, counts(js.into_iter())))
        .collect();
    let waits: Vec<i64> = jobs.iter().filter_map(wait_ms).collect();
    let longest_wait_job = jobs
        .iter()
        .filter_map(|j| Some((wait_ms(j)?, j)))
        .max_by_key(|(w, j)| (*w, std::cmp::Reverse(j.created_at)))
        .map(|(_, j)| j.id.clone());
    let longest_job = jobs
        .iter()
        .filter(|j| j.state == "completed")
        .filter_map(|j| Some((run_ms(j)?, j)))
        .max_by_key(|(t, j)| (*t, std::cmp::Reverse(j.created_at)))
        .map(|(_, j)| j.id.clone());
    let (queue_depth, peak_queue_depth, peak_queue_at_ms) = queue_depth(&jobs, start);
    let (bucket_ms, throughput) = throughput(&jobs, start, end);
    let (workers, utilisation) = workers(&jobs, end - start);
    let errors: Vec<Failure> = jobs
        .iter()
        .filter(|j| j.state == "failed")
        .map(|j| Failure {
            id: j.id.clone(),
            user: j.user.clone(),
            reason: j.reason.clone().unwrap_or_else(|| "node error".into()),
        })
        .collect();
    let mut errors_by_reason = BTreeMap::new();
    for e in &errors {
        *errors_by_reason.entry(e.reason.clone()).or_default() += 1;
    }
    Report {
        window_start: start,
        window_end: end,
        total: counts(jobs.iter()),
        users,
        average_wait_ms: mean(&waits),
        longest_wait_job,
        longest_job,
        peak_queue_depth,
        peak_queue_at_ms,
        queue_depth,
        bucket_ms,
        throughput,
        workers,
        utilisation,
        errors,
        errors_by_reason,
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
