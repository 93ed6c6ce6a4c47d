//! Small SVG charts for the workshop report: the queue depth over time (a step line) and the
//! throughput per time bucket (stacked bars: completed and failed). Plain SVG text, no library.

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;

/// The plot area's mapping from data to pixels.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max.max(f64::MIN_POSITIVE) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - v / self.y_max.max(f64::MIN_POSITIVE) * (HEIGHT - TOP - BOTTOM)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step for `max` split in about `n` ticks (1, 2 or 5 times a power of ten).
fn tick_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// The time axis' unit for a window of `span` ms: seconds up to three minutes, else minutes.
fn time_unit(span: f64) -> (f64, &'static str) {
    if span <= 180_000.0 {
        (1_000.0, "seconds")
    } else {
        (60_000.0, "minutes")
    }
}

/// A time axis label.
fn label(ms: f64, unit: f64) -> String {
    let v = ms / unit;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The SVG header, title, axes and tick labels; the y ticks are integers.
fn axes(title: &str, y_label: &str, f: &Frame) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>
"##,
        escape(title)
    );
    let y_step = tick_step(f.y_max, 5.0).max(1.0);
    let mut v = 0.0;
    while v <= f.y_max + 1e-9 {
        let y = f.y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        v += y_step;
    }
    let (unit, unit_name) = time_unit(f.x_max);
    let x_step = tick_step(f.x_max / unit, 8.0) * unit;
    let mut t = 0.0;
    while t <= f.x_max + 1e-9 {
        let x = f.x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 4.0,
            HEIGHT - BOTTOM + 18.0,
            label(t, unit)
        );
        t += x_step;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">{unit_name} since the first submission</text>
<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"##,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 8.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(y_label)
    );
    s
}

/// The queue depth over the window as a step line.
pub fn queue_depth(report: &Report) -> String {
    let span = (report.window_end - report.window_start).max(1) as f64;
    let f = Frame {
        x_max: span,
        y_max: (report.peak_queue_depth as f64).max(1.0),
    };
    let mut s = axes("Queue depth (jobs waiting)", "jobs waiting", &f);
    let mut points = Vec::new();
    let mut last = 0.0;
    for (t, depth) in &report.queue_depth {
        let (x, y) = (f.x(*t as f64), f.y(*depth as f64));
        points.push(format!("{x:.1},{:.1}", f.y(last)));
        points.push(format!("{x:.1},{y:.1}"));
        last = *depth as f64;
    }
    points.push(format!("{:.1},{:.1}", f.x(span), f.y(last)));
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
    s.push_str("</svg>\n");
    s
}

/// Finished jobs per bucket as stacked bars (completed green, failed red).
pub fn throughput(report: &Report) -> String {
    let n = report.throughput.len().max(1) as f64;
    let bucket = report.bucket_ms as f64;
    let peak = report
        .throughput
        .iter()
        .map(|b| b.completed + b.failed)
        .max()
        .unwrap_or(0);
    let f = Frame {
        x_max: n * bucket,
        y_max: (peak as f64).max(1.0),
    };
    let title = format!(
        "Throughput (jobs finished per {} s)",
        report.bucket_ms / 1000
    );
    let mut s = axes(&title, "jobs", &f);
    let width = (f.x(bucket) - f.x(0.0) - 1.0).max(1.0);
    for b in &report.throughput {
        let x = f.x(b.start_ms as f64) + 0.5;
        let done = b.completed as f64;
        let all = done + b.failed as f64;
        for (from, to, colour) in [(0.0, done, "#2da44e"), (done, all, "#cf222e")] {
            if to > from {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{colour}"/>"##,
                    f.y(to),
                    f.y(from) - f.y(to)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 5.0), 2.0);
        assert_eq!(tick_step(40_000.0, 8.0), 5_000.0);
        assert_eq!(tick_step(3.0, 5.0), 1.0);
    }

    #[test]
    fn charts_are_svg_documents_with_the_data() {
        let jobs = vec![super::super::report::JobRecord {
            id: "a".into(),
            user: "u".into(),
            state: "completed".into(),
            created_at: 0,
            started_at: Some(60_000),
            finished_at: Some(120_000),
            worker: Some("w".into()),
            reason: None,
        }];
        let report = super::super::report::compute(&jobs);
        let depth = queue_depth(&report);
        assert!(depth.starts_with("<svg") && depth.trim_end().ends_with("</svg>"));
        // Up to one job at the start, down at 1 minute (half way), flat to the end.
        assert!(depth.contains("polyline"), "{depth}");
        let x_mid = Frame {
            x_max: 120_000.0,
            y_max: 1.0,
        }
        .x(60_000.0);
        assert!(depth.contains(&format!("{x_mid:.1},")), "{depth}");
        let bars = throughput(&report);
        assert_eq!(bars.matches("fill=\"#2da44e\"").count(), 1);
        assert_eq!(bars.matches("fill=\"#cf222e\"").count(), 0);
    }
}
