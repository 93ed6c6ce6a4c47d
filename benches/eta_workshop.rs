//! How wrong are job ETAs? A simulated workshop (discrete events, no real jobs): participants
//! submit LTX-2 jobs of three shapes over an afternoon to a few GPU workers; every job's estimate
//! (`queue::eta::estimate`, with the history known at that moment) is taken when it is submitted
//! and compared with when it really started and finished. Printed as Markdown per policy and
//! worker count. `cargo bench --bench eta_workshop`.
//!
//! Run times are drawn around each shape's mean with +-30 % spread (deterministic generator), so
//! even a perfect estimator has an error; the table shows how the estimate behaves as history
//! accumulates (first 20 jobs vs the rest) and with queue depth.

use queue::eta::{RunHistory, estimate, shape_of};
use queue::scheduler::{LastServed, pick_next, projected_order};
use queue::{Job, JobState, Policy};
use serde_json::{Number, Value, json};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Workflow shapes: (width, height, frames, mean run time in ms).
const SHAPES: [(u32, u32, u32, i64); 3] = [
    (768, 512, 121, 12_000),
    (1280, 720, 121, 35_000),
    (768, 512, 241, 24_000),
];

fn prompt(shape: usize) -> Value {
    let (w, h, f, _) = SHAPES[shape];
    json!({
        "1": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": w, "height": h, "length": f, "batch_size": 1}},
        "2": {"class_type": "SamplerCustomAdvanced", "inputs": {"latent_image": ["1", 0]}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "w"}}
    })
}

fn job(seq: u64, user: usize, shape: usize, at: i64) -> Job {
    Job {
        id: format!("job{seq}"),
        seq,
        number: Number::from(seq),
        priority: 0,
        user: format!("user{user:02}"),
        client_id: None,
        prompt: prompt(shape),
        outputs: vec!["3".into()],
        extra_data: json!({}),
        state: JobState::Pending,
        created_at: at,
        started_at: None,
        finished_at: None,
        attempts: 0,
        worker: None,
        lease_until: None,
        cancel_requested: false,
        result: None,
        reason: None,
    }
}

/// One simulated job: its estimate at submission and what really happened.
struct Record {
    predicted_start: i64,
    predicted_finish: i64,
    start: i64,
    finish: i64,
    created: i64,
    index: usize,
}

/// Simulates `users` participants for `minutes`, each submitting a job every 1-6 minutes.
fn simulate(policy: Policy, workers: usize, users: usize, minutes: i64, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed);
    // Submissions: (time, user, shape, true run time).
    let mut arrivals = Vec::new();
    for user in 0..users {
        let mut t = (rng.next_f64() * 120_000.0) as i64;
        while t < minutes * 60_000 {
            let shape = (rng.next_f64() * SHAPES.len() as f64) as usize % SHAPES.len();
            let run = (SHAPES[shape].3 as f64 * (0.7 + 0.6 * rng.next_f64())) as i64;
            arrivals.push((t, user, shape, run));
            t += 60_000 + (rng.next_f64() * 300_000.0) as i64;
        }
    }
    arrivals.sort_by_key(|a| a.0);
    let mut jobs: Vec<Job> = Vec::new();
    let mut true_run: Vec<i64> = Vec::new();
    let mut predicted: Vec<(i64, i64)> = Vec::new();
    let mut slots: Vec<Option<(usize, i64)>> = vec![None; workers];
    let mut history = RunHistory::default();
    let mut last_served = LastServed::new();
    let mut turn = 0;
    let mut next_arrival = 0;
    loop {
        // The next event: a worker finishing, or a submission.
        let finish = slots
            .iter()
            .enumerate()
            .filter_map(|(w, s)| s.map(|(j, end)| (end, w, j)))
            .min();
        let arrival = arrivals.get(next_arrival).map(|a| a.0);
        match (finish, arrival) {
            (None, None) => break,
            (Some((end, w, j)), a) if a.is_none_or(|a| end <= a) => {
                jobs[j].state = JobState::Completed;
                jobs[j].finished_at = Some(end);
                history.record(
                    &shape_of(&jobs[j].prompt),
                    end - jobs[j].started_at.unwrap_or(end),
                );
                slots[w] = None;
                dispatch(
                    &mut jobs,
                    &mut slots,
                    &true_run,
                    policy,
                    &mut last_served,
                    &mut turn,
                    end,
                );
            }
            (_, Some(at)) => {
                let (_, user, shape, run) = arrivals[next_arrival];
                next_arrival += 1;
                jobs.push(job(jobs.len() as u64, user, shape, at));
                true_run.push(run);
                let pending: Vec<&Job> = jobs
                    .iter()
                    .filter(|j| j.state == JobState::Pending)
                    .collect();
                let running: Vec<&Job> = jobs
                    .iter()
                    .filter(|j| j.state == JobState::Running)
                    .collect();
                let order = projected_order(&pending, policy, &last_served);
                let etas = estimate(&order, &running, workers, &history, at);
                let id = format!("job{}", jobs.len() - 1);
                let eta = etas[&id];
                predicted.push((eta.start_ms, eta.finish_ms));
                dispatch(
                    &mut jobs,
                    &mut slots,
                    &true_run,
                    policy,
                    &mut last_served,
                    &mut turn,
                    at,
                );
            }
            (Some(_), None) => unreachable!("a finish with no arrival is taken above"),
        }
    }
    jobs.iter()
        .enumerate()
        .map(|(i, j)| Record {
            predicted_start: predicted[i].0,
            predicted_finish: predicted[i].1,
            start: j.started_at.unwrap_or(0),
            finish: j.finished_at.unwrap_or(0),
            created: j.created_at,
            index: i,
        })
        .collect()
}

/// Starts pending jobs on idle workers in the policy's order.
fn dispatch(
    jobs: &mut [Job],
    slots: &mut [Option<(usize, i64)>],
    true_run: &[i64],
    policy: Policy,
    last_served: &mut LastServed,
    turn: &mut u64,
    now: i64,
) {
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        let pending: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.state == JobState::Pending)
            .collect();
        let Some(next) = pick_next(&pending, policy, last_served) else {
            return;
        };
        let index = next.seq as usize;
        *turn += 1;
        last_served.insert(next.user.clone(), *turn);
        jobs[index].state = JobState::Running;
        jobs[index].started_at = Some(now);
        *slot = Some((index, now + true_run[index]));
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, records: &[&Record]) {
    let mut finish_err: Vec<f64> = records
        .iter()
        .map(|r| (r.predicted_finish - r.finish).abs() as f64 / 1000.0)
        .collect();
    let mut start_err: Vec<f64> = records
        .iter()
        .map(|r| (r.predicted_start - r.start).abs() as f64 / 1000.0)
        .collect();
    let mut relative: Vec<f64> = records
        .iter()
        .map(|r| {
            let actual = (r.finish - r.created).max(1) as f64;
            (r.predicted_finish - r.finish).abs() as f64 / actual
        })
        .collect();
    let mut turnaround: Vec<f64> = records
        .iter()
        .map(|r| (r.finish - r.created) as f64 / 1000.0)
        .collect();
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} % | {:.0} % | {:.1} |",
        records.len(),
        percentile(&mut start_err, 0.5),
        percentile(&mut finish_err, 0.5),
        percentile(&mut finish_err, 0.9),
        percentile(&mut finish_err, 1.0),
        100.0 * percentile(&mut relative, 0.5),
        100.0 * percentile(&mut relative, 0.9),
        percentile(&mut turnaround, 0.5),
    );
}

fn main() {
    println!("Simulated workshop: 20 participants over 2 h, a job every 1-6 min each, 3 shapes");
    println!(
        "(12 s / 24 s / 35 s mean, +-30 % per run). Errors of the estimate taken at submission.\n"
    );
    println!(
        "| policy, workers, jobs | n | start err p50 (s) | finish err p50 (s) | p90 (s) | max (s) | rel. p50 | rel. p90 | turnaround p50 (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (policy, workers) in [
        (Policy::Fifo, 2),
        (Policy::RoundRobin, 2),
        (Policy::Fifo, 4),
        (Policy::RoundRobin, 4),
    ] {
        let records = simulate(policy, workers, 20, 120, 0x5eed_1234);
        let label = format!("{}, {workers}", policy.name());
        let first: Vec<&Record> = records.iter().filter(|r| r.index < 20).collect();
        let rest: Vec<&Record> = records.iter().filter(|r| r.index >= 20).collect();
        report(&format!("{label}, first 20"), &first);
        report(&format!("{label}, rest"), &rest);
    }
}
