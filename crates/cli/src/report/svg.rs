//! The job timeline as a self-contained SVG: devices finished over time since the job's start.
//!
//! A step line climbs by one at each device's end time; completed devices are green dots on it and
//! failed devices red crosses, each with a `<title>` tooltip (device id, outcome, latency). Axes carry
//! seconds and device counts. No scripts, fonts or external references, so the file opens anywhere.
//! [`timeline`] is pure: it only formats what the [`JobReport`] already holds.

use std::fmt::Write as _;

use crate::report::{Completion, JobReport};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const TICKS: u64 = 5;

/// The SVG document of `report`'s completions.
pub(crate) fn timeline(report: &JobReport) -> String {
    let devices = report.total().max(1);
    let end_ms = report.duration_ms.unwrap_or(0).max(1);
    let scale = Scale { end_ms: nice_ceiling(end_ms), devices };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="14">{}</text>
"#,
        escape(&title(report))
    );
    axes(&mut svg, &scale);
    step_line(&mut svg, &scale, &report.completions);
    for (rank, completion) in report.completions.iter().enumerate() {
        marker(&mut svg, &scale, completion, rank as u64 + 1);
    }
    svg.push_str("</svg>\n");
    svg
}

struct Scale {
    end_ms: u64,
    devices: u64,
}

impl Scale {
    fn x(&self, ms: u64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * (ms as f64 / self.end_ms as f64)
    }

    fn y(&self, count: u64) -> f64 {
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * (count as f64 / self.devices as f64)
    }
}

fn title(report: &JobReport) -> String {
    let failed: usize = report.failures.len();
    format!(
        "job {}: {} devices finished, {} failed",
        report.job.job_id,
        report.completions.len(),
        failed
    )
}

fn axes(svg: &mut String, scale: &Scale) {
    let (x0, x1, y0, y1) = (scale.x(0), scale.x(scale.end_ms), scale.y(0), scale.y(scale.devices));
    let _ = writeln!(
        svg,
        r##"<path d="M{x0:.1},{y1:.1} V{y0:.1} H{x1:.1}" fill="none" stroke="#333"/>"##
    );
    for tick in 0..=TICKS {
        let ms = scale.end_ms * tick / TICKS;
        let x = scale.x(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + 4.0,
            y0 + 18.0,
            seconds(ms)
        );
        let count = scale.devices * tick / TICKS;
        let y = scale.y(count);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{x0:.1}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="end">{count}</text>"##,
            x0 - 4.0,
            x0 - 8.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the job's start time</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">devices finished</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
}

fn step_line(svg: &mut String, scale: &Scale, completions: &[Completion]) {
    let mut path = format!("M{:.1},{:.1}", scale.x(0), scale.y(0));
    for (idx, completion) in completions.iter().enumerate() {
        let x = scale.x(completion.end_ms);
        let _ = write!(path, " H{x:.1} V{:.1}", scale.y(idx as u64 + 1));
    }
    let _ =
        writeln!(svg, r##"<path d="{path}" fill="none" stroke="#4a6fa5" stroke-width="1.5"/>"##);
}

/// The marker of the `rank`-th device to finish (1-based).
fn marker(svg: &mut String, scale: &Scale, completion: &Completion, rank: u64) {
    let (x, y) = (scale.x(completion.end_ms), scale.y(rank));
    let latency = completion.latency_ms.map(|ms| format!(", {ms} ms")).unwrap_or_default();
    match &completion.failure {
        None => {
            let status = completion.method_status.map(|s| format!(" {s}")).unwrap_or_default();
            let tip = escape(&format!("{}: completed{status}{latency}", completion.device_id));
            let _ = writeln!(
                svg,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#2e8b57"><title>{tip}</title></circle>"##
            );
        }
        Some(failure) => {
            let tip = escape(&format!("{}: failed {failure}{latency}", completion.device_id));
            let _ = writeln!(
                svg,
                r##"<path d="M{:.1},{:.1} l8,8 m0,-8 l-8,8" stroke="#c0392b" stroke-width="2"><title>{tip}</title></path>"##,
                x - 4.0,
                y - 4.0
            );
        }
    }
}

/// The smallest of 1, 2, 5 × 10^k ms at or above `ms`, so ticks fall on round numbers.
fn nice_ceiling(ms: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for step in [1, 2, 5] {
            if let Some(candidate) = base.checked_mul(step) {
                if candidate >= ms {
                    return candidate;
                }
            }
        }
        match base.checked_mul(10) {
            Some(next) => base = next,
            None => return ms,
        }
    }
}

fn seconds(ms: u64) -> String {
    let text = format!("{:.3}", ms as f64 / 1000.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}
