//! Job measurements on the in-process hub: one `scheduleDeviceMethod` and one `scheduleUpdateTwin`
//! job over every device ([`run_job`]), and how late scheduled jobs start ([`schedule_accuracy`]).
//!
//! Jobs go through [`hub::jobs::Jobs`] (what `PUT /jobs/v2/{id}` calls) and the timings come from the
//! hub's own per-device records (`startTimeUtc`, `endTimeUtc`): throughput is devices divided by the
//! span from the first device operation's start to the last record's end, which leaves out job
//! creation and the query that resolves the devices. REST overhead is measured separately.

use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use hub::jobs::{Jobs, RecordFilter};
use protocol::ids::JobId;
use protocol::job::DeviceJob;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::sys;

/// The method every benchmark call invokes (devices answer any method).
pub(crate) const METHOD_NAME: &str = "bench";
/// Its payload.
pub(crate) const METHOD_PAYLOAD: &[u8] = br#"{"n":1}"#;
/// How long a job may take before the benchmark gives up.
const JOB_DEADLINE: Duration = Duration::from_secs(600);
/// How often the job's status is read while it runs.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How far ahead accuracy jobs are scheduled.
const SCHEDULE_AHEAD: chrono::Duration = chrono::Duration::milliseconds(300);

/// What one job did, from its device records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobTiming {
    /// Devices with a record.
    pub(crate) devices: u64,
    /// Records that ended `completed`.
    pub(crate) succeeded: u64,
    /// From the first device operation's start to the last record's end.
    pub(crate) span: Duration,
    /// Per-device operation time (record start to end), p50.
    pub(crate) p50: Duration,
    /// Per-device operation time, p99.
    pub(crate) p99: Duration,
}

impl JobTiming {
    /// Device operations per second over [`JobTiming::span`].
    pub(crate) fn rate(&self) -> f64 {
        sys::per_second(self.devices, self.span)
    }
}

/// The body of a method job on `condition`, optionally scheduled at `start`.
pub(crate) fn method_job(condition: &str, start: Option<DateTime<Utc>>) -> Value {
    let payload: Value = serde_json::from_slice(METHOD_PAYLOAD).unwrap_or(Value::Null);
    let mut body = json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {
            "methodName": METHOD_NAME,
            "payload": payload,
            "responseTimeoutInSeconds": 30,
            "connectTimeoutInSeconds": 30,
        },
        "queryCondition": condition,
        "maxExecutionTimeInSeconds": 600,
    });
    if let Some(start) = start {
        body["startTime"] = Value::from(protocol::time::format_timestamp(start));
    }
    body
}

/// The body of a twin job setting `desired.bench` on every device.
pub(crate) fn twin_job(value: &str) -> Value {
    json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "properties": {"desired": {"bench": value}}},
        "queryCondition": "*",
        "maxExecutionTimeInSeconds": 600,
    })
}

/// Creates the job, waits until it is terminal, and reads its records.
pub(crate) async fn run_job(
    jobs: &Jobs,
    job_id: &str,
    body: &Value,
) -> anyhow::Result<Vec<DeviceJob>> {
    let bytes = serde_json::to_vec(body).context("could not encode the job")?;
    jobs.create(job_id, &bytes).await.with_context(|| format!("could not create job {job_id}"))?;
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = jobs.get(job_id).await.with_context(|| format!("could not read job {job_id}"))?;
        match job["status"].as_str() {
            Some("completed") => break,
            Some(status @ ("failed" | "cancelled")) => bail!("job {job_id} ended {status}: {job}"),
            _ if Instant::now() > deadline => bail!("job {job_id} did not finish: {job}"),
            _ => tokio::time::sleep(POLL_EVERY).await,
        }
    }
    let filter = RecordFilter { job_id: Some(JobId::new(job_id)?), device_id: None };
    let records =
        jobs.device_job_records(filter).await.context("could not read the job's records")?;
    records
        .into_iter()
        .map(|record| serde_json::from_value(record).context("a device job record did not decode"))
        .collect()
}

/// Throughput and per-device latency of a finished job's records.
pub(crate) fn timing(records: &[DeviceJob]) -> anyhow::Result<JobTiming> {
    let first = records.iter().filter_map(|record| record.start_time_utc).min();
    let last = records.iter().filter_map(|record| record.end_time_utc).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("the job's records carry no start or end times");
    };
    let mut latencies: Vec<Duration> = records
        .iter()
        .filter_map(|record| Some(since(record.start_time_utc?, record.end_time_utc?)))
        .collect();
    let succeeded = records
        .iter()
        .filter(|record| record.status == protocol::job::DeviceJobStatus::Completed)
        .count();
    Ok(JobTiming {
        devices: records.len() as u64,
        succeeded: succeeded as u64,
        span: since(first, last),
        p50: sys::percentile(&mut latencies, 50.0),
        p99: sys::percentile(&mut latencies, 99.0),
    })
}

/// Delays between `startTime` and the first device operation of `samples` scheduled method jobs
/// over every device (the worst case: the device set is resolved and stored at `startTime`).
pub(crate) async fn schedule_accuracy(
    jobs: &Jobs,
    samples: usize,
    tag: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::with_capacity(samples);
    for sample in 0..samples {
        let start = Utc::now() + SCHEDULE_AHEAD;
        // The hub keeps 100 ns ticks; round the same way so the delay is not off by the rounding.
        let start = protocol::time::parse_timestamp(&protocol::time::format_timestamp(start))?;
        let body = method_job("*", Some(start));
        let records = run_job(jobs, &format!("bench-{tag}-accuracy-{sample}"), &body).await?;
        let first = records.iter().filter_map(|record| record.start_time_utc).min();
        let first = first.context("the scheduled job has no started record")?;
        delays.push(since(start, first));
    }
    Ok(delays)
}

/// `to - from`, zero when negative.
fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}
