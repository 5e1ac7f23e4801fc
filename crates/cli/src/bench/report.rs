//! The benchmark's output: one table (a column per device count, then the target), the same figures
//! as JSON, and last the line `ratio method-job/ceiling: X.XX` for the largest device count.
//!
//! Memory at 100,000 devices is extrapolated linearly from the measured per-device figures and is
//! labelled so; nothing here measures anything.

use std::time::Duration;

use serde_json::{json, Value};

use super::query::QueryTiming;
use super::sys::{self, millis, percentile};
use super::{DeviceRun, FD_HEADROOM};
use crate::output::{Output, Table};

/// Devices the memory extrapolation is for.
const EXTRAPOLATE_TO: f64 = 100_000.0;

/// Prints the table or JSON, then (tables only) the ratio line.
pub(crate) fn print(runs: &[DeviceRun], query: &QueryTiming, quick: bool, out: &Output) {
    let table = table(runs, query);
    let value = json!({
        "quick": quick,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        "query": query_json(query),
        "ratioMethodJobToCeiling": ratio(runs),
    });
    out.table(&table, &value);
    if !out.is_json() {
        out.line(&format!("ratio method-job/ceiling: {:.2}", ratio(runs)));
    }
}

/// Method-job ops/s over ceiling round trips/s at the largest device count.
fn ratio(runs: &[DeviceRun]) -> f64 {
    runs.iter().max_by_key(|run| run.devices).map_or(0.0, job_to_ceiling)
}

fn kb_per_device(from_kib: u64, to_kib: u64, devices: usize) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "memory sizes far below 2^52")]
    let grown = to_kib.saturating_sub(from_kib) as f64 * 1024.0 / 1000.0;
    #[expect(clippy::cast_precision_loss, reason = "device counts far below 2^52")]
    let devices = devices.max(1) as f64;
    grown / devices
}

fn hub_kb(run: &DeviceRun) -> f64 {
    kb_per_device(run.hub_rss_kib.0, run.hub_rss_kib.1, run.devices)
}

fn fleet_kb(run: &DeviceRun) -> f64 {
    kb_per_device(run.fleet.rss_start_kib, run.fleet.rss_connected_kib, run.devices)
}

fn connect_rate(run: &DeviceRun) -> f64 {
    sys::per_second(run.devices as u64, run.connect_time)
}

/// Method calls the hub made: the method job, the scheduled jobs and the REST calls.
fn calls_made(run: &DeviceRun) -> u64 {
    let per_job = run.method_job.devices;
    per_job + run.accuracy.len() as u64 * per_job + run.rest.ok + run.rest.failed
}

fn accuracy(run: &DeviceRun) -> (Duration, Duration) {
    let mut delays = run.accuracy.clone();
    (percentile(&mut delays, 50.0), percentile(&mut delays, 100.0))
}

/// How one table row prints a run.
type Cell = fn(&DeviceRun) -> String;

/// The per-device-count rows: name, cell, target.
const ROWS: &[(&str, Cell, &str)] = &[
    ("ceiling: TCP echo round trips/s", |run| format!("{:.0}", run.ceiling.rate()), ""),
    (
        "  (window, bytes out/in)",
        |run| {
            let ceiling = &run.ceiling;
            format!("{}, {}/{}", ceiling.window, ceiling.sizes.request, ceiling.sizes.response)
        },
        "",
    ),
    ("method job: device ops/s", |run| format!("{:.0}", run.method_job.rate()), "≥ 0.5 × ceiling"),
    (
        "  per-device p50 / p99 ms",
        |run| format!("{:.1} / {:.1}", millis(run.method_job.p50), millis(run.method_job.p99)),
        "",
    ),
    ("  devices succeeded", |run| format!("{} / {}", run.method_job.succeeded, run.devices), ""),
    (
        "  calls answered, all phases / made",
        |run| format!("{} / {}", run.counts.methods, calls_made(run)),
        "",
    ),
    ("  method job / ceiling", |run| format!("{:.2}", job_to_ceiling(run)), "≥ 0.50"),
    ("twin job: devices/s", |run| format!("{:.0}", run.twin_job.rate()), "≥ 50000"),
    ("  desired patches received", |run| format!("{} / {}", run.counts.patches, run.devices), ""),
    ("REST direct methods/s (c=64)", |run| format!("{:.0}", run.rest.rate()), ""),
    ("  failed calls", |run| run.rest.failed.to_string(), ""),
    ("connect storm: connects/s (SAS)", |run| format!("{:.0}", connect_rate(run)), "≥ 10000"),
    ("hub memory per connected device KB", |run| format!("{:.1}", hub_kb(run)), "≤ 8"),
    ("fleet memory per device KB", |run| format!("{:.1}", fleet_kb(run)), "≤ 40"),
    (
        "job on all devices: start after startTime p50/max ms",
        |run| {
            let (p50, max) = accuracy(run);
            format!("{:.1} / {:.1}", millis(p50), millis(max))
        },
        "≤ 50",
    ),
    (
        "open files: hub / fleet process",
        |run| format!("{} / {}", run.hub_open_files.soft, run.fleet.open_files),
        "",
    ),
    (
        "  devices one hub process can hold",
        |run| run.hub_open_files.soft.saturating_sub(FD_HEADROOM).to_string(),
        "",
    ),
    (
        "100k devices, extrapolated: hub / fleet MB",
        |run| {
            let (hub, fleet) = (hub_kb(run), fleet_kb(run));
            format!("{:.0} / {:.0}", hub * EXTRAPOLATE_TO / 1000.0, fleet * EXTRAPOLATE_TO / 1000.0)
        },
        "",
    ),
];

fn table(runs: &[DeviceRun], query: &QueryTiming) -> Table {
    let mut headers = vec!["measurement".to_owned()];
    headers.extend(runs.iter().map(|run| format!("{} devices", run.devices)));
    headers.push("target".to_owned());
    let mut table = Table::new(headers);
    for (name, cell, target) in ROWS {
        let mut cells = vec![(*name).to_owned()];
        cells.extend(runs.iter().map(cell));
        cells.push((*target).to_owned());
        table.row(cells);
    }
    let query_cell = format!(
        "{:.2} ms REST p50 ({:.2} ms max, {:.2} ms in process), {} twins, {} rows",
        millis(query.rest_p50),
        millis(query.rest_max),
        millis(query.in_process_p50),
        query.twins,
        query.rows
    );
    let mut cells = vec!["selective tag query".to_owned(), query_cell];
    cells.resize(runs.len() + 1, String::new());
    cells.push("≤ 50 ms at 100k".to_owned());
    table.row(cells);
    table
}

/// Method-job device ops/s over ceiling round trips/s.
fn job_to_ceiling(run: &DeviceRun) -> f64 {
    run.method_job.rate() / run.ceiling.rate().max(f64::MIN_POSITIVE)
}

fn run_json(run: &DeviceRun) -> Value {
    let (accuracy_p50, accuracy_max) = accuracy(run);
    json!({
        "devices": run.devices,
        "ceiling": {
            "roundTripsPerSec": run.ceiling.rate(),
            "window": run.ceiling.window,
            "requestBytes": run.ceiling.sizes.request,
            "responseBytes": run.ceiling.sizes.response,
        },
        "methodJob": job_json(&run.method_job),
        "twinJob": job_json(&run.twin_job),
        "methodsAnswered": run.counts.methods,
        "methodsCalled": calls_made(run),
        "desiredPatchesReceived": run.counts.patches,
        "restMethods": {
            "callsPerSec": run.rest.rate(),
            "ok": run.rest.ok,
            "failed": run.rest.failed,
            "concurrency": run.rest.concurrency,
        },
        "connectsPerSec": connect_rate(run),
        "hubKbPerDevice": hub_kb(run),
        "fleetKbPerDevice": fleet_kb(run),
        "extrapolated100kHubMb": hub_kb(run) * EXTRAPOLATE_TO / 1000.0,
        "extrapolated100kFleetMb": fleet_kb(run) * EXTRAPOLATE_TO / 1000.0,
        "scheduleDelayP50Ms": millis(accuracy_p50),
        "scheduleDelayMaxMs": millis(accuracy_max),
        "openFiles": {"hubSoft": run.hub_open_files.soft, "hubHard": run.hub_open_files.hard, "fleetSoft": run.fleet.open_files},
    })
}

fn job_json(job: &super::jobs::JobTiming) -> Value {
    json!({
        "devices": job.devices,
        "succeeded": job.succeeded,
        "spanMs": millis(job.span),
        "opsPerSec": job.rate(),
        "p50Ms": millis(job.p50),
        "p99Ms": millis(job.p99),
    })
}

fn query_json(query: &QueryTiming) -> Value {
    json!({
        "query": super::query::SELECTIVE_QUERY,
        "twins": query.twins,
        "rows": query.rows,
        "inProcessP50Ms": millis(query.in_process_p50),
        "restP50Ms": millis(query.rest_p50),
        "restMaxMs": millis(query.rest_max),
    })
}
