//! Reconciliation: the hub's per-device job records checked against the fleet's ground truth.
//!
//! The fleet runner's `--record FILE` holds one JSON object per line (`t_ms`, `device`, `index`,
//! `event`, and the event's fields; see `fleet::record`). [`read_record`] reads the events that matter
//! here into a [`GroundTruth`] per device; [`reconcile`] gives every device record of a method job a
//! [`Verdict`] with the hub's claim and the device's side in words, e.g. "hub says completed 200;
//! device answered 200". The rules:
//! - completed with status S: the device answered a call of the method with S;
//! - 404103 DeviceNotOnline: the device never connects, or was down (reboot, churn, outage) and
//!   never received the call;
//! - 504101 GatewayTimeout: the device received the call and never answered, or answered no sooner
//!   than the response timeout minus [`TIMEOUT_SLACK_MS`] (network delay sits on both sides).
//!
//! When a device received the method several times in one record (several jobs in one fleet run),
//! any call consistent with the hub's record counts, since the record's clock (ms since the run
//! started) cannot be matched exactly to the hub's wall clock. Twin jobs are not reconciled.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;

use protocol::job::{DeviceJob, DeviceJobStatus};
use serde::Deserialize;
use serde_json::{json, Value};

/// How much sooner than the response timeout a device answer may be and still explain a timeout.
pub(crate) const TIMEOUT_SLACK_MS: u64 = 1000;

/// What the fleet says one device did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroundTruth {
    /// The profile made the device never connect.
    pub(crate) never_connects: bool,
    /// Times the device went down (reboots, scheduled disconnects) during the run.
    pub(crate) down_periods: u64,
    /// Method calls received, by method name.
    pub(crate) calls: Vec<Call>,
}

/// One method call as the device saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// The method name.
    pub(crate) method: String,
    /// When it arrived (ms since the run started).
    pub(crate) received_ms: u64,
    /// When it was answered, or `None` when deliberately unanswered.
    pub(crate) answered_ms: Option<u64>,
    /// The status answered.
    pub(crate) status: Option<i32>,
}

/// Whether the two sides agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The device's record explains the hub's.
    Agrees,
    /// They contradict each other.
    Disagrees,
    /// The record says nothing about the device, or the hub's status cannot be checked.
    Unknown,
}

/// One device's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceCheck {
    /// The device.
    pub(crate) device_id: String,
    /// The hub's claim in words (`completed 200`, `failed 404103 DeviceNotOnline`).
    pub(crate) hub: String,
    /// The device's side in words.
    pub(crate) device: String,
    /// The verdict.
    pub(crate) verdict: Verdict,
}

/// The check of every device record of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconciliation {
    /// The record file.
    pub(crate) record: String,
    /// One check per device record, by device id.
    pub(crate) devices: Vec<DeviceCheck>,
}

/// Why a record file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The file cannot be read.
    #[error("could not read the fleet record {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a record event.
    #[error("{path}:{line}: not a fleet record line: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The fields of a record line this module reads; other events and fields are skipped.
#[derive(Debug, Deserialize)]
struct Line {
    device: String,
    #[serde(flatten)]
    event: Event,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    NeverConnects,
    Reboot {},
    Disconnected {
        reason: String,
    },
    Method {
        method: String,
        received_ms: u64,
        answered_ms: Option<u64>,
        status: Option<i32>,
    },
    #[serde(other)]
    Other,
}

impl Verdict {
    /// `✓`, `✗` or `?`.
    pub(crate) fn mark(self) -> &'static str {
        match self {
            Verdict::Agrees => "✓",
            Verdict::Disagrees => "✗",
            Verdict::Unknown => "?",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::Disagrees => "disagrees",
            Verdict::Unknown => "unknown",
        }
    }
}

impl Reconciliation {
    /// How many devices got `verdict`.
    pub(crate) fn count(&self, verdict: Verdict) -> usize {
        self.devices.iter().filter(|device| device.verdict == verdict).count()
    }

    /// `{"record":..,"agrees":n,"disagrees":n,"unknown":n,"devices":[..]}`.
    pub(crate) fn to_json(&self) -> Value {
        let devices: Vec<Value> = self
            .devices
            .iter()
            .map(|d| {
                json!({"deviceId": d.device_id, "verdict": d.verdict.as_str(), "hub": d.hub, "device": d.device})
            })
            .collect();
        json!({
            "record": self.record,
            "agrees": self.count(Verdict::Agrees),
            "disagrees": self.count(Verdict::Disagrees),
            "unknown": self.count(Verdict::Unknown),
            "devices": devices,
        })
    }
}

/// Reads a fleet record file into ground truth per device id.
///
/// # Errors
/// [`RecordError`] when the file cannot be read or a line is not JSON of the record's shape.
pub(crate) fn read_record(path: &Path) -> Result<HashMap<String, GroundTruth>, RecordError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|source| RecordError::Read { path: shown.clone(), source })?;
    let mut truth: HashMap<String, GroundTruth> = HashMap::new();
    for (idx, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RecordError::Read { path: shown.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|err| RecordError::Line {
            path: shown.clone(),
            line: idx + 1,
            message: err.to_string(),
        })?;
        let device = truth.entry(parsed.device).or_default();
        match parsed.event {
            Event::NeverConnects => device.never_connects = true,
            Event::Reboot {} => device.down_periods += 1,
            Event::Disconnected { reason } if reason != "shutdown" => device.down_periods += 1,
            Event::Method { method, received_ms, answered_ms, status } => {
                device.calls.push(Call { method, received_ms, answered_ms, status })
            }
            Event::Disconnected { .. } | Event::Other => {}
        }
    }
    Ok(truth)
}

/// Checks each device record of a method job (`method`, `timeout_ms`) against `truth`.
pub(crate) fn reconcile(
    record: &Path,
    records: &[DeviceJob],
    method: &str,
    timeout_ms: u64,
    truth: &HashMap<String, GroundTruth>,
) -> Reconciliation {
    let mut devices: Vec<DeviceCheck> = records
        .iter()
        .map(|job_record| {
            let device_id = job_record.device_id.as_str();
            let (hub, device, verdict) = match truth.get(device_id) {
                Some(truth) => check(job_record, method, timeout_ms, truth),
                None => (hub_claim(job_record), "not in the record".to_owned(), Verdict::Unknown),
            };
            DeviceCheck { device_id: device_id.to_owned(), hub, device, verdict }
        })
        .collect();
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    Reconciliation { record: record.display().to_string(), devices }
}

fn check(
    record: &DeviceJob,
    method: &str,
    timeout_ms: u64,
    truth: &GroundTruth,
) -> (String, String, Verdict) {
    let hub = hub_claim(record);
    let calls: Vec<&Call> = truth.calls.iter().filter(|call| call.method == method).collect();
    let (device, verdict) = match (record.status, error_name(record)) {
        (DeviceJobStatus::Completed, _) => check_completed(record, &calls),
        (DeviceJobStatus::Failed, Some("DeviceNotOnline")) => check_offline(truth, &calls),
        (DeviceJobStatus::Failed, Some("GatewayTimeout")) => check_timeout(&calls, timeout_ms),
        _ => (describe_calls(&calls), Verdict::Unknown),
    };
    (hub, device, verdict)
}

fn check_completed(record: &DeviceJob, calls: &[&Call]) -> (String, Verdict) {
    let Some(hub_status) = record.outcome.device_method_response.as_ref().map(|a| a.status) else {
        return (describe_calls(calls), Verdict::Unknown);
    };
    if calls.iter().any(|call| call.status == Some(hub_status)) {
        return (format!("device answered {hub_status}"), Verdict::Agrees);
    }
    if calls.is_empty() {
        return ("the device never received the call".to_owned(), Verdict::Disagrees);
    }
    (describe_calls(calls), Verdict::Disagrees)
}

fn check_offline(truth: &GroundTruth, calls: &[&Call]) -> (String, Verdict) {
    if truth.never_connects {
        return ("device never connects (profile)".to_owned(), Verdict::Agrees);
    }
    if !calls.is_empty() {
        return (describe_calls(calls), Verdict::Disagrees);
    }
    if truth.down_periods > 0 {
        return ("device was offline (rebooting or disconnected)".to_owned(), Verdict::Agrees);
    }
    ("device was online and never received the call".to_owned(), Verdict::Disagrees)
}

fn check_timeout(calls: &[&Call], timeout_ms: u64) -> (String, Verdict) {
    if calls.iter().any(|call| call.answered_ms.is_none()) {
        return ("device received the call and never answered".to_owned(), Verdict::Agrees);
    }
    let late =
        calls.iter().filter_map(|call| Some(call.answered_ms?.saturating_sub(call.received_ms)));
    if let Some(late_ms) = late.filter(|ms| ms + TIMEOUT_SLACK_MS >= timeout_ms).max() {
        return (
            format!("device answered after {late_ms} ms, past the {} s timeout", timeout_ms / 1000),
            Verdict::Agrees,
        );
    }
    if calls.is_empty() {
        return ("the device never received the call".to_owned(), Verdict::Disagrees);
    }
    (describe_calls(calls), Verdict::Disagrees)
}

fn hub_claim(record: &DeviceJob) -> String {
    match (record.status, &record.outcome.device_method_response, &record.error) {
        (DeviceJobStatus::Completed, Some(answer), _) => format!("completed {}", answer.status),
        (status, _, Some(error)) => match protocol::error::ErrorCode::from_name(&error.code) {
            Some(code) => format!("{} {} {}", status.as_str(), code.code(), error.code),
            None => format!("{} {}", status.as_str(), error.code),
        },
        (status, _, None) => status.as_str().to_owned(),
    }
}

fn error_name(record: &DeviceJob) -> Option<&str> {
    record.error.as_ref().map(|error| error.code.as_str())
}

fn describe_calls(calls: &[&Call]) -> String {
    if calls.is_empty() {
        return "the device never received the call".to_owned();
    }
    let parts: Vec<String> = calls
        .iter()
        .map(|call| match (call.answered_ms, call.status) {
            (Some(at), Some(status)) => {
                format!("answered {status} after {} ms", at.saturating_sub(call.received_ms))
            }
            _ => "received it and never answered".to_owned(),
        })
        .collect();
    format!("device {}", parts.join(", then "))
}

#[cfg(test)]
mod tests;
