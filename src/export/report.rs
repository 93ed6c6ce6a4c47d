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
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[allow(clippy::too_many_arguments)]
    fn job(
        id: &str,
        user: &str,
        state: &str,
        created: i64,
        started: Option<i64>,
        finished: Option<i64>,
        worker: Option<&str>,
        reason: Option<&str>,
    ) -> JobRecord {
        JobRecord {
            id: id.into(),
            user: user.into(),
            state: state.into(),
            created_at: T0 + created,
            started_at: started.map(|t| T0 + t),
            finished_at: finished.map(|t| T0 + t),
            worker: worker.map(str::to_string),
            reason: reason.map(str::to_string),
        }
    }

    /// Two workers, two users, 40 s: every outcome, a queue that builds up to 4 and drains.
    fn history() -> Vec<JobRecord> {
        vec![
            job(
                "b4",
                "bob",
                "completed",
                24_000,
                Some(25_000),
                Some(40_000),
                Some("w1"),
                None,
            ),
            job(
                "a1",
                "alice",
                "completed",
                0,
                Some(0),
                Some(10_000),
                Some("w1"),
                None,
            ),
            job(
                "a2",
                "alice",
                "completed",
                1_000,
                Some(10_000),
                Some(25_000),
                Some("w1"),
                None,
            ),
            job(
                "b1",
                "bob",
                "failed",
                2_000,
                Some(2_000),
                Some(8_000),
                Some("w2"),
                None,
            ),
            job(
                "b2",
                "bob",
                "completed",
                3_000,
                Some(8_000),
                Some(20_000),
                Some("w2"),
                None,
            ),
            job(
                "b3",
                "bob",
                "cancelled",
                4_000,
                None,
                Some(6_000),
                None,
                Some("cancelled"),
            ),
            job(
                "a3",
                "alice",
                "failed",
                5_000,
                Some(20_000),
                Some(21_000),
                Some("w2"),
                Some("worker lost 3 times"),
            ),
        ]
    }

    #[test]
    fn per_user_and_total_figures() {
        let r = compute(&history());
        assert_eq!((r.window_start, r.window_end), (T0, T0 + 40_000));
        let alice = &r.users["alice"];
        assert_eq!(
            (
                alice.submitted,
                alice.completed,
                alice.failed,
                alice.cancelled,
                alice.unfinished
            ),
            (3, 2, 1, 0, 0)
        );
        assert_eq!(alice.success_rate, Some(2.0 / 3.0));
        assert_eq!(alice.average_job_ms, Some(12_500.0));
        assert_eq!(alice.longest_job_ms, Some(15_000));
        assert_eq!(alice.longest_wait_ms, Some(15_000));
        let bob = &r.users["bob"];
        assert_eq!(
            (bob.submitted, bob.completed, bob.failed, bob.cancelled),
            (4, 2, 1, 1)
        );
        assert_eq!(bob.success_rate, Some(2.0 / 3.0));
        assert_eq!(bob.average_job_ms, Some(13_500.0));
        assert_eq!(bob.longest_wait_ms, Some(5_000));
        let t = &r.total;
        assert_eq!(
            (t.submitted, t.completed, t.failed, t.cancelled),
            (7, 4, 2, 1)
        );
        assert_eq!(t.success_rate, Some(4.0 / 6.0));
        assert_eq!(t.average_job_ms, Some(13_000.0));
        assert_eq!(t.longest_job_ms, Some(15_000));
        assert_eq!(r.longest_job.as_deref(), Some("a2"));
        assert_eq!(t.longest_wait_ms, Some(15_000));
        assert_eq!(r.longest_wait_job.as_deref(), Some("a3"));
        assert_eq!(r.average_wait_ms, Some(5_000.0));
    }

    #[test]
    fn queue_depth_and_peak() {
        let r = compute(&history());
        assert_eq!(
            r.queue_depth,
            vec![
                (0, 0),
                (1_000, 1),
                (3_000, 2),
                (4_000, 3),
                (5_000, 4),
                (6_000, 3),
                (8_000, 2),
                (10_000, 1),
                (20_000, 0),
                (24_000, 1),
                (25_000, 0)
            ]
        );
        assert_eq!((r.peak_queue_depth, r.peak_queue_at_ms), (4, 5_000));
    }

    #[test]
    fn throughput_buckets() {
        let r = compute(&history());
        assert_eq!(r.bucket_ms, 1_000);
        assert_eq!(r.throughput.len(), 40);
        let at = |i: usize| (r.throughput[i].completed, r.throughput[i].failed);
        assert_eq!(at(8), (0, 1));
        assert_eq!(at(10), (1, 0));
        assert_eq!(at(20), (1, 0));
        assert_eq!(at(21), (0, 1));
        assert_eq!(at(25), (1, 0));
        assert_eq!(at(39), (1, 0), "the last finish falls in the last bucket");
        let sum: usize = r.throughput.iter().map(|b| b.completed + b.failed).sum();
        assert_eq!(sum, 6);
    }

    #[test]
    fn worker_utilisation_and_errors() {
        let r = compute(&history());
        assert_eq!(
            r.workers,
            vec![
                WorkerUse {
                    worker: "w1".into(),
                    jobs: 3,
                    busy_ms: 40_000,
                    utilisation: 1.0
                },
                WorkerUse {
                    worker: "w2".into(),
                    jobs: 3,
                    busy_ms: 19_000,
                    utilisation: 0.475
                },
            ]
        );
        assert_eq!(r.utilisation, Some(0.7375));
        let errors: Vec<(&str, &str)> = r
            .errors
            .iter()
            .map(|e| (e.id.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![("b1", "node error"), ("a3", "worker lost 3 times")]
        );
        assert_eq!(r.errors_by_reason["node error"], 1);
    }

    #[test]
    fn an_empty_history_has_no_figures() {
        let r = compute(&[]);
        assert_eq!(r.total.submitted, 0);
        assert_eq!(r.total.success_rate, None);
        assert_eq!(r.peak_queue_depth, 0);
        assert_eq!(r.utilisation, None);
        assert_eq!(r.throughput.len(), 1);
    }

    #[test]
    fn long_windows_use_wider_buckets() {
        let jobs = vec![job(
            "x",
            "u",
            "completed",
            0,
            Some(0),
            Some(3 * 3_600_000),
            Some("w"),
            None,
        )];
        let r = compute(&jobs);
        assert_eq!(r.bucket_ms, 300_000);
        assert_eq!(r.throughput.len(), 36);
    }
}
