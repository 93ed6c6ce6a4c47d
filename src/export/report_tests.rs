//! The report's figures on a hand-built job history, checked exactly.

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
