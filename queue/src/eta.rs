//! Job ETAs: when each pending job should start and finish, from the projected run order (the
//! policy's), the number of live workers, what the running jobs still need, and the recent run
//! times of jobs of the same shape.
//!
//! A job's *shape* is its sorted node class types plus the size-like literal inputs (width,
//! height, frames, steps, ...), so "LTX-2 at 768x512, 121 frames, 8 steps" and the same workflow at
//! 1280x720 are estimated separately. A shape's run time is the median of its recent runs; without
//! history the median of all recent runs is used, else a fixed default. The estimate is a pure
//! function of its inputs ([`estimate`]), so it is tested on known histories and benchmarked on a
//! simulated workshop (`benches/eta_workshop.rs`).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::job::Job;

/// Run time assumed when no job has finished yet (ms).
pub const DEFAULT_RUN_MS: i64 = 60_000;

/// Recent runs kept per shape (and overall).
pub const WINDOW: usize = 20;

/// Inputs whose literal values change how long a job runs.
const SIZE_INPUTS: &[&str] = &[
    "width",
    "height",
    "length",
    "frames",
    "num_frames",
    "frame_count",
    "batch_size",
    "steps",
    "scale_by",
    "megapixels",
    "frame_rate",
];

/// The shape key of a prompt (API format: `{id: {class_type, inputs}}`).
pub fn shape_of(prompt: &Json) -> String {
    let Some(nodes) = prompt.as_object() else {
        return String::new();
    };
    let mut classes = Vec::new();
    let mut sizes = Vec::new();
    for node in nodes.values() {
        let class = node["class_type"].as_str().unwrap_or("?");
        classes.push(class.to_string());
        let Some(inputs) = node["inputs"].as_object() else {
            continue;
        };
        for (key, value) in inputs {
            if SIZE_INPUTS.contains(&key.as_str()) && (value.is_number() || value.is_string()) {
                sizes.push(format!("{class}.{key}={value}"));
            }
        }
    }
    classes.sort();
    sizes.sort();
    format!("{}|{}", classes.join(","), sizes.join(","))
}

/// Where a run-time estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Basis {
    /// The median of `samples` recent runs of the same shape.
    SameShape {
        /// Runs it is based on.
        samples: usize,
    },
    /// The median of `samples` recent runs of any shape.
    AllJobs {
        /// Runs it is based on.
        samples: usize,
    },
    /// Nothing has run yet: [`DEFAULT_RUN_MS`].
    Default,
}

/// Recent run times, per shape and overall (most recent last).
#[derive(Debug, Clone, Default)]
pub struct RunHistory {
    by_shape: HashMap<String, Vec<i64>>,
    all: Vec<i64>,
}

impl RunHistory {
    /// Records a finished run of `shape` that took `run_ms`.
    pub fn record(&mut self, shape: &str, run_ms: i64) {
        let runs = self.by_shape.entry(shape.to_string()).or_default();
        push_window(runs, run_ms);
        push_window(&mut self.all, run_ms);
    }

    /// The history of finished jobs (completed ones with both times), oldest first.
    pub fn from_jobs<'a>(finished: impl IntoIterator<Item = &'a Job>) -> Self {
        let mut runs: Vec<(i64, String, i64)> = finished
            .into_iter()
            .filter(|j| j.state == crate::job::JobState::Completed)
            .filter_map(|j| {
                let (start, end) = (j.started_at?, j.finished_at?);
                Some((end, shape_of(&j.prompt), (end - start).max(0)))
            })
            .collect();
        runs.sort_by_key(|r| r.0);
        let mut history = Self::default();
        for (_, shape, run_ms) in runs {
            history.record(&shape, run_ms);
        }
        history
    }

    /// The expected run time of `shape` and what it is based on.
    pub fn run_ms(&self, shape: &str) -> (i64, Basis) {
        if let Some(runs) = self.by_shape.get(shape).filter(|r| !r.is_empty()) {
            return (
                median(runs),
                Basis::SameShape {
                    samples: runs.len(),
                },
            );
        }
        if !self.all.is_empty() {
            return (
                median(&self.all),
                Basis::AllJobs {
                    samples: self.all.len(),
                },
            );
        }
        (DEFAULT_RUN_MS, Basis::Default)
    }
}

fn push_window(runs: &mut Vec<i64>, run_ms: i64) {
    runs.push(run_ms);
    if runs.len() > WINDOW {
        runs.remove(0);
    }
}

fn median(values: &[i64]) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2
    } else {
        sorted[mid]
    }
}

/// One pending job's estimate (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Eta {
    /// Expected start.
    pub start_ms: i64,
    /// Expected finish.
    pub finish_ms: i64,
    /// The basis of its own run-time estimate.
    pub basis: Basis,
}

/// Estimates every job of `order` (the pending jobs in projected run order): `workers` slots
/// (live workers) are first busy with `running` until each running job's expected end (at
/// least `now`), then each pending job takes the slot that frees first. With no live worker
/// nothing can be estimated and the map is empty.
pub fn estimate(
    order: &[&Job],
    running: &[&Job],
    workers: usize,
    history: &RunHistory,
    now: i64,
) -> HashMap<String, Eta> {
    let mut etas = HashMap::new();
    if workers == 0 {
        return etas;
    }
    let mut slots: Vec<i64> = running
        .iter()
        .map(|job| {
            let (run_ms, _) = history.run_ms(&shape_of(&job.prompt));
            (job.started_at.unwrap_or(now) + run_ms).max(now)
        })
        .collect();
    slots.sort_unstable();
    slots.truncate(workers);
    slots.resize(workers, now);
    for job in order {
        let (run_ms, basis) = history.run_ms(&shape_of(&job.prompt));
        let (slot, free_at) = slots
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, t)| t)
            .unwrap_or((0, now));
        let start_ms = free_at.max(now);
        let finish_ms = start_ms + run_ms;
        slots[slot] = finish_ms;
        etas.insert(
            job.id.clone(),
            Eta {
                start_ms,
                finish_ms,
                basis,
            },
        );
    }
    etas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobState;
    use serde_json::{Number, json};

    fn prompt(width: u32) -> Json {
        json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 32, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
        })
    }

    fn job(id: &str, width: u32, state: JobState, times: Option<(i64, i64)>) -> Job {
        Job {
            id: id.into(),
            seq: 0,
            number: Number::from(0),
            priority: 0,
            user: "u".into(),
            client_id: None,
            prompt: prompt(width),
            outputs: vec!["2".into()],
            extra_data: json!({}),
            state,
            created_at: 0,
            started_at: times.map(|t| t.0),
            finished_at: times.map(|t| t.1).filter(|_| state.is_final()),
            attempts: 1,
            worker: None,
            lease_until: None,
            cancel_requested: false,
            result: None,
            reason: None,
        }
    }

    #[test]
    fn shapes_differ_by_size_inputs_not_by_prompts_or_seeds() {
        let a = shape_of(&prompt(64));
        assert_eq!(a, shape_of(&prompt(64)));
        assert_ne!(a, shape_of(&prompt(128)));
        let mut renamed = prompt(64);
        renamed["2"]["inputs"]["filename_prefix"] = json!("other");
        assert_eq!(a, shape_of(&renamed));
        assert!(a.starts_with("EmptyImage,SaveImage|"), "{a}");
    }

    #[test]
    fn run_times_come_from_the_same_shape_then_all_jobs_then_the_default() {
        let done = [
            job("a", 64, JobState::Completed, Some((0, 10_000))),
            job("b", 64, JobState::Completed, Some((10_000, 40_000))),
            job("c", 64, JobState::Completed, Some((40_000, 60_000))),
            job("d", 128, JobState::Completed, Some((60_000, 160_000))),
            job("e", 128, JobState::Failed, Some((160_000, 161_000))),
        ];
        let history = RunHistory::from_jobs(done.iter());
        let (ms, basis) = history.run_ms(&shape_of(&prompt(64)));
        assert_eq!((ms, basis), (20_000, Basis::SameShape { samples: 3 }));
        let (ms, basis) = history.run_ms(&shape_of(&prompt(256)));
        assert_eq!((ms, basis), (25_000, Basis::AllJobs { samples: 4 }));
        let empty = RunHistory::default();
        assert_eq!(empty.run_ms("x"), (DEFAULT_RUN_MS, Basis::Default));
    }

    #[test]
    fn pending_jobs_fill_the_slot_that_frees_first() {
        let mut history = RunHistory::default();
        history.record(&shape_of(&prompt(64)), 10_000);
        history.record(&shape_of(&prompt(128)), 30_000);
        let now = 100_000;
        // One job running since 95 s with 10 s expected: its worker frees at 105 s.
        let running = job("r", 64, JobState::Running, Some((95_000, 0)));
        let p1 = job("p1", 128, JobState::Pending, None);
        let p2 = job("p2", 64, JobState::Pending, None);
        let p3 = job("p3", 64, JobState::Pending, None);
        let order = [&p1, &p2, &p3];
        let two = estimate(&order, &[&running], 2, &history, now);
        // Slots: [105 s (running), 100 s (idle)].
        assert_eq!(
            (two["p1"].start_ms, two["p1"].finish_ms),
            (100_000, 130_000)
        );
        assert_eq!(
            (two["p2"].start_ms, two["p2"].finish_ms),
            (105_000, 115_000)
        );
        assert_eq!(
            (two["p3"].start_ms, two["p3"].finish_ms),
            (115_000, 125_000)
        );
        let one = estimate(&order, &[&running], 1, &history, now);
        assert_eq!(one["p1"].start_ms, 105_000);
        assert_eq!(one["p3"].finish_ms, 155_000);
        // A running job past its expected end frees its slot "now", not in the past.
        let late = job("late", 128, JobState::Running, Some((0, 0)));
        let etas = estimate(&[&p2], &[&late], 1, &history, now);
        assert_eq!(etas["p2"].start_ms, now);
        assert!(estimate(&order, &[], 0, &history, now).is_empty());
    }
}
