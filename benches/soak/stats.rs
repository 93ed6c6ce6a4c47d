//! What the soak measures while it runs: request latencies per normalised route (and the
//! requests that failed), and the memory and file descriptors of every process over time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

/// A route's name with the user prefix, query string and ids taken out:
/// `POST /user003/api/jobs/<uuid>/cancel?x=1` -> `POST /api/jobs/{id}/cancel`.
pub fn normalise(method: &str, path: &str, user: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let prefix = format!("/{user}");
    let path = path.strip_prefix(&prefix).unwrap_or(path);
    let parts: Vec<&str> = path
        .split('/')
        .map(|part| if looks_like_id(part) { "{id}" } else { part })
        .collect();
    format!("{method} {}", parts.join("/"))
}

fn looks_like_id(part: &str) -> bool {
    part.len() == 36 && part.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Latencies and failures per route, shared by every simulated user.
#[derive(Clone, Default)]
pub struct Latencies {
    inner: Arc<Mutex<BTreeMap<String, RouteStats>>>,
}

/// One route's samples.
#[derive(Default, Clone)]
pub struct RouteStats {
    /// Durations of the requests that got an answer (any status).
    pub samples: Vec<Duration>,
    /// Answers with a status of 400 or more, by status.
    pub errors: BTreeMap<u16, usize>,
    /// Requests that got no answer at all (connection errors).
    pub transport_errors: usize,
}

impl Latencies {
    /// Records one answered request.
    pub fn record(&self, route: &str, took: Duration, status: u16) {
        let mut map = self.inner.lock();
        let stats = map.entry(route.to_string()).or_default();
        stats.samples.push(took);
        if status >= 400 {
            *stats.errors.entry(status).or_default() += 1;
        }
    }

    /// Records a request that got no answer.
    pub fn record_transport_error(&self, route: &str) {
        self.inner
            .lock()
            .entry(route.to_string())
            .or_default()
            .transport_errors += 1;
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> BTreeMap<String, RouteStats> {
        self.inner.lock().clone()
    }
}

/// The `q`-quantile (0..=1, nearest rank) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds, sorted.
pub fn sorted_ms(samples: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds since the soak started.
    pub at_s: f64,
    /// Resident memory (KiB, `VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
}

/// Reads `/proc/<pid>` (`None` once the process is gone).
pub fn read_proc(pid: u32, at_s: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample { at_s, rss_kib, fds })
}

/// The readings of one process instance (a restarted process is a new instance).
#[derive(Clone, Debug)]
pub struct Series {
    /// `server`, `worker0`, `redis (restarted)`...
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Its readings in time order.
    pub samples: Vec<Sample>,
}

/// Growth limits: beyond either, a process is flagged as growing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Resident memory growth allowed after warm-up (MiB), and as a fraction of the level.
    pub rss_mib: f64,
    /// Fewest readings a process needs to be judged (a process killed or started half-way
    /// through a short run is mostly warm-up).
    pub min_samples: usize,
    /// Fraction of the post-warm-up level that may be added on top.
    pub rss_fraction: f64,
    /// Open descriptors that may be added after warm-up.
    pub fds: f64,
}

/// What a series says about growth.
#[derive(Clone, Debug)]
pub struct Growth {
    /// RSS first / last / max (MiB).
    pub rss_first: f64,
    /// Last reading.
    pub rss_last: f64,
    /// Highest reading.
    pub rss_max: f64,
    /// Least-squares slope after warm-up (MiB per minute).
    pub rss_slope: f64,
    /// Mean of the last quarter minus the mean of the second quarter (MiB).
    pub rss_growth: f64,
    /// fds first / last / max.
    pub fds_first: u64,
    /// Last reading.
    pub fds_last: u64,
    /// Highest reading.
    pub fds_max: u64,
    /// Least-squares slope after warm-up (per minute).
    pub fds_slope: f64,
    /// Mean of the last quarter minus the mean of the second quarter.
    pub fds_growth: f64,
    /// Why it is flagged (empty: flat).
    pub flags: Vec<String>,
}

impl Series {
    /// Growth figures; the first quarter of the readings is warm-up (models loaded, caches
    /// and connection pools filled) and only judged by the max.
    pub fn growth(&self, limits: Limits) -> Option<Growth> {
        let s = &self.samples;
        let (first, last) = (s.first()?, s.last()?);
        let mib = |x: &Sample| x.rss_kib as f64 / 1024.0;
        let fds = |x: &Sample| x.fds as f64;
        let n = s.len();
        let settled = &s[n / 4..];
        let mid = &s[n / 4..(n / 2).max(n / 4 + 1)];
        let tail = &s[(3 * n / 4).min(n - 1)..];
        let rss_growth = mean(tail, mib) - mean(mid, mib);
        let fds_growth = mean(tail, fds) - mean(mid, fds);
        let mut flags = Vec::new();
        // Judged only with enough readings for quarters to mean anything.
        if n >= limits.min_samples.max(8) {
            let allowed = limits.rss_mib.max(limits.rss_fraction * mean(mid, mib));
            if rss_growth > allowed {
                flags.push(format!(
                    "RSS grew {rss_growth:.1} MiB after warm-up (limit {allowed:.1})"
                ));
            }
            if fds_growth > limits.fds {
                flags.push(format!(
                    "fds grew {fds_growth:.1} after warm-up (limit {})",
                    limits.fds
                ));
            }
        }
        Some(Growth {
            rss_first: mib(first),
            rss_last: mib(last),
            rss_max: s.iter().map(mib).fold(0.0, f64::max),
            rss_slope: slope_per_minute(settled, mib),
            rss_growth,
            fds_first: first.fds,
            fds_last: last.fds,
            fds_max: s.iter().map(|x| x.fds).max().unwrap_or(0),
            fds_slope: slope_per_minute(settled, fds),
            fds_growth,
            flags,
        })
    }

    /// The readings as JSON (`[[t, rss_kib, fds], ...]`).
    pub fn to_json(&self) -> Value {
        let points: Vec<Value> = self
            .samples
            .iter()
            .map(|x| json!([(x.at_s * 10.0).round() / 10.0, x.rss_kib, x.fds]))
            .collect();
        json!({"name": self.name, "pid": self.pid, "samples": points})
    }
}

fn mean(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(&f).sum::<f64>() / samples.len() as f64
}

/// Least-squares slope of `f` over time, per minute.
fn slope_per_minute(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let t_mean = samples.iter().map(|x| x.at_s).sum::<f64>() / samples.len() as f64;
    let y_mean = mean(samples, &f);
    let (mut num, mut den) = (0.0, 0.0);
    for x in samples {
        num += (x.at_s - t_mean) * (f(x) - y_mean);
        den += (x.at_s - t_mean).powi(2);
    }
    if den == 0.0 { 0.0 } else { 60.0 * num / den }
}

/// The processes being watched and their readings.
#[derive(Clone, Default)]
pub struct Watch {
    inner: Arc<Mutex<Vec<Series>>>,
}

impl Watch {
    /// Starts watching process `pid` as `name` (a new instance if the name was seen before).
    pub fn add(&self, name: &str, pid: u32) {
        let mut all = self.inner.lock();
        let restarts = all.iter().filter(|s| s.name.starts_with(name)).count();
        let name = match restarts {
            0 => name.to_string(),
            1 => format!("{name} (restarted)"),
            n => format!("{name} (restart {n})"),
        };
        all.push(Series {
            name,
            pid,
            samples: Vec::new(),
        });
    }

    /// Reads every process that is still alive.
    pub fn sample(&self, started: Instant) {
        let at_s = started.elapsed().as_secs_f64();
        for series in self.inner.lock().iter_mut() {
            if let Some(sample) = read_proc(series.pid, at_s) {
                series.samples.push(sample);
            }
        }
    }

    /// A copy of every series.
    pub fn series(&self) -> Vec<Series> {
        self.inner.lock().clone()
    }
}
