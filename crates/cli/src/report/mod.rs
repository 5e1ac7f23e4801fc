//! Job reports: what a finished (or running) job did, built from its job document and its per-device
//! records, for `hubsim job report` and `hubsim demo`.
//!
//! [`JobReport::build`] turns a `JobResponse` and its `DeviceJob` records into counts per status, the
//! failed devices with their numeric IoT Hub error codes, latency percentiles from each record's
//! start/end times ([`stats`]), the job's duration and one [`Completion`] per finished device.
//! Given the fleet's ground-truth record, [`reconcile`] checks each device's hub record against what
//! the device actually did. The report renders as text tables ([`text`]), JSON ([`JobReport::to_json`])
//! and a self-contained SVG timeline ([`svg`]); [`write_dir`] puts `report.json` and `timeline.svg`
//! in a directory. The command behind `hubsim job report` is [`command`].
//! Nothing here talks to a hub except [`command`], and nothing prints except through `output`.

pub(crate) mod command;
pub(crate) mod reconcile;
pub(crate) mod stats;
pub(crate) mod svg;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use protocol::error::ErrorCode;
use protocol::job::{DeviceJob, DeviceJobStatus, JobResponse};
use serde_json::{json, Map, Value};

use crate::report::reconcile::Reconciliation;
use crate::report::stats::LatencySummary;

/// The report file inside a report directory.
pub(crate) const REPORT_FILE: &str = "report.json";
/// The timeline chart inside a report directory.
pub(crate) const TIMELINE_FILE: &str = "timeline.svg";

/// Everything a report says about one job.
#[derive(Debug, Clone)]
pub(crate) struct JobReport {
    /// The job document as the hub last answered it.
    pub(crate) job: JobResponse,
    /// Device records per status (every status present, zeros included), in lifecycle order.
    pub(crate) counts: Vec<(DeviceJobStatus, u64)>,
    /// How many completed devices answered each method status (method jobs only).
    pub(crate) method_statuses: BTreeMap<i32, u64>,
    /// Failed devices, sorted by device id.
    pub(crate) failures: Vec<Failure>,
    /// Start→end latency of completed devices.
    pub(crate) latency: Option<LatencySummary>,
    /// Start→end latency of failed devices.
    pub(crate) failed_latency: Option<LatencySummary>,
    /// From the job's start (or the first device start) to the last device end, in ms.
    pub(crate) duration_ms: Option<u64>,
    /// One entry per finished device, by end time.
    pub(crate) completions: Vec<Completion>,
    /// The check against the fleet's record, when one was given.
    pub(crate) reconciliation: Option<Reconciliation>,
    /// What ran the devices (the demo's profile, seed and group sizes), when known.
    pub(crate) fleet: Option<Value>,
}

/// A failed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The device id.
    pub(crate) device_id: String,
    /// The numeric IoT Hub code (404103, 504101, ...), when the name is a known one.
    pub(crate) code: Option<u32>,
    /// The error name as the record spells it (`DeviceNotOnline`).
    pub(crate) name: String,
    /// The hub's description.
    pub(crate) description: String,
}

/// A device that finished, placed on the job's time axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The device id.
    pub(crate) device_id: String,
    /// End time in ms after the report's time origin (the job's start time).
    pub(crate) end_ms: u64,
    /// End minus start, in ms, when both are known.
    pub(crate) latency_ms: Option<u64>,
    /// `None` for a completed device, the error's label (`404103 DeviceNotOnline`) for a failed one.
    pub(crate) failure: Option<String>,
    /// The method status the device answered, for completed method jobs.
    pub(crate) method_status: Option<i32>,
}

impl JobReport {
    /// Builds the report of `job` from its device records (in any order).
    pub(crate) fn build(job: JobResponse, records: &[DeviceJob]) -> JobReport {
        let mut records: Vec<&DeviceJob> = records.iter().collect();
        records.sort_by(|a, b| a.device_id.as_str().cmp(b.device_id.as_str()));
        let origin = time_origin(&job, &records);
        let counts = count_statuses(&records);
        let mut method_statuses = BTreeMap::new();
        for record in &records {
            if record.status == DeviceJobStatus::Completed {
                if let Some(answer) = &record.outcome.device_method_response {
                    *method_statuses.entry(answer.status).or_insert(0) += 1;
                }
            }
        }
        let failures = records
            .iter()
            .filter(|record| record.status == DeviceJobStatus::Failed)
            .map(|record| failure_of(record))
            .collect();
        let latencies = |status| {
            let values: Vec<u64> = records
                .iter()
                .filter(|record| record.status == status)
                .filter_map(|record| latency_ms(record))
                .collect();
            LatencySummary::of(&values)
        };
        let mut completions: Vec<Completion> =
            records.iter().filter_map(|record| completion_of(record, origin)).collect();
        completions.sort_by(|a, b| (a.end_ms, &a.device_id).cmp(&(b.end_ms, &b.device_id)));
        let duration_ms = completions.last().map(|last| last.end_ms);
        JobReport {
            latency: latencies(DeviceJobStatus::Completed),
            failed_latency: latencies(DeviceJobStatus::Failed),
            job,
            counts,
            method_statuses,
            failures,
            duration_ms,
            completions,
            reconciliation: None,
            fleet: None,
        }
    }

    /// Failed devices per error label (`404103 DeviceNotOnline` → 6).
    pub(crate) fn failures_by_code(&self) -> BTreeMap<String, u64> {
        let mut by_code = BTreeMap::new();
        for failure in &self.failures {
            *by_code.entry(failure.label()).or_insert(0) += 1;
        }
        by_code
    }

    /// The report as one JSON document (the shape of `report.json` and of `--output json`).
    pub(crate) fn to_json(&self) -> Value {
        let job = &self.job;
        let method = job.cloud_to_device_method.as_ref();
        let counts: Map<String, Value> =
            std::iter::once(("devices".to_owned(), json!(self.total())))
                .chain(self.counts.iter().map(|(status, n)| (status.as_str().to_owned(), json!(n))))
                .collect();
        let statuses: Map<String, Value> =
            self.method_statuses.iter().map(|(status, n)| (status.to_string(), json!(n))).collect();
        let mut doc = json!({
            "jobId": job.job_id.as_str(),
            "type": job.job_type.as_str(),
            "methodName": method.map(|m| m.method_name()),
            "responseTimeoutInSeconds": method.map(|m| m.response_timeout_secs()),
            "queryCondition": job.query_condition,
            "status": job.status.as_str(),
            "startTime": job.start_time.map(protocol::time::format_timestamp_millis),
            "endTime": job.end_time.map(protocol::time::format_timestamp_millis),
            "counts": counts,
            "methodStatuses": statuses,
            "failuresByCode": self.failures_by_code(),
            "failures": self.failures.iter().map(Failure::to_json).collect::<Vec<_>>(),
            "latencyMs": {
                "completed": self.latency.map(LatencySummary::to_json),
                "failed": self.failed_latency.map(LatencySummary::to_json),
            },
            "durationMs": self.duration_ms,
            "completions": self.completions.iter().map(Completion::to_json).collect::<Vec<_>>(),
        });
        if let Value::Object(fields) = &mut doc {
            if let Some(fleet) = &self.fleet {
                fields.insert("fleet".into(), fleet.clone());
            }
            if let Some(reconciliation) = &self.reconciliation {
                fields.insert("reconciliation".into(), reconciliation.to_json());
            }
        }
        doc
    }

    /// Number of device records.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

impl Failure {
    /// `404103 DeviceNotOnline`, or just the name when the code is unknown.
    pub(crate) fn label(&self) -> String {
        match self.code {
            Some(code) => format!("{code} {}", self.name),
            None => self.name.clone(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "deviceId": self.device_id,
            "code": self.code,
            "error": self.name,
            "description": self.description,
        })
    }
}

impl Completion {
    fn to_json(&self) -> Value {
        json!({
            "deviceId": self.device_id,
            "endMs": self.end_ms,
            "latencyMs": self.latency_ms,
            "methodStatus": self.method_status,
            "failure": self.failure,
        })
    }
}

/// Writes `report.json` and `timeline.svg` into `dir` (created if missing).
///
/// # Errors
/// When the directory or a file cannot be written.
pub(crate) fn write_dir(report: &JobReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create the report directory {}", dir.display()))?;
    let json =
        serde_json::to_string_pretty(&report.to_json()).context("could not encode the report")?;
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, json + "\n")
        .with_context(|| format!("could not write {}", path.display()))?;
    let path = dir.join(TIMELINE_FILE);
    std::fs::write(&path, svg::timeline(report))
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// The job's start time, else the earliest device start, else the earliest record creation.
fn time_origin(job: &JobResponse, records: &[&DeviceJob]) -> Option<DateTime<Utc>> {
    job.start_time
        .or_else(|| records.iter().filter_map(|r| r.start_time_utc).min())
        .or_else(|| records.iter().map(|r| r.created_date_time_utc).min())
}

fn count_statuses(records: &[&DeviceJob]) -> Vec<(DeviceJobStatus, u64)> {
    use DeviceJobStatus::{Canceled, Completed, Failed, Pending, Running, Scheduled};
    [Completed, Failed, Canceled, Running, Pending, Scheduled]
        .into_iter()
        .map(|status| (status, records.iter().filter(|r| r.status == status).count() as u64))
        .collect()
}

fn failure_of(record: &DeviceJob) -> Failure {
    let (name, description) = match &record.error {
        Some(error) => (error.code.clone(), error.description.clone()),
        None => ("unknown".to_owned(), String::new()),
    };
    Failure {
        device_id: record.device_id.as_str().to_owned(),
        code: ErrorCode::from_name(&name).map(ErrorCode::code),
        name,
        description,
    }
}

fn latency_ms(record: &DeviceJob) -> Option<u64> {
    let (start, end) = (record.start_time_utc?, record.end_time_utc?);
    u64::try_from((end - start).num_milliseconds()).ok()
}

fn completion_of(record: &DeviceJob, origin: Option<DateTime<Utc>>) -> Option<Completion> {
    let failure = match record.status {
        DeviceJobStatus::Completed => None,
        DeviceJobStatus::Failed => Some(failure_of(record).label()),
        _ => return None,
    };
    let end = record.end_time_utc.unwrap_or(record.last_updated_date_time_utc);
    let end_ms = origin.map_or(0, |origin| (end - origin).num_milliseconds().max(0) as u64);
    Some(Completion {
        device_id: record.device_id.as_str().to_owned(),
        end_ms,
        latency_ms: latency_ms(record),
        failure,
        method_status: match record.status {
            DeviceJobStatus::Completed => {
                record.outcome.device_method_response.as_ref().map(|answer| answer.status)
            }
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests;
