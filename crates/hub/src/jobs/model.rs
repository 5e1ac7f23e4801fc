//! The engine's state types: a [`Job`] (request, status, times), its per-device [`DeviceRecord`]s and
//! live [`Progress`] counters, and how each is written on the wire.
//!
//! A `Job` is persisted as its serde form (not the wire form, which loses the actual start time);
//! [`Job::to_response`] renders the jobs v2 `JobResponse`. A `DeviceRecord`'s serde form *is* the wire
//! form of a `devices.jobs` row, so the store holds exactly what queries return.
//! Nothing here does I/O or reads the clock: callers pass `now`.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, JobId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Job-level status, spelled as on the wire (`cancelled` with a double L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum JobStatus {
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// Per-device status, spelled as on the wire (`canceled` with one L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum DeviceJobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Canceled,
}

/// The two jobs v2 types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum JobType {
    #[serde(rename = "scheduleDeviceMethod")]
    DeviceMethod,
    #[serde(rename = "scheduleUpdateTwin")]
    UpdateTwin,
}

/// What a job does to each device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(crate) enum JobKind {
    Method(MethodSpec),
    Twin(TwinSpec),
}

/// A method job's call, as validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MethodSpec {
    pub(crate) method_name: String,
    pub(crate) payload: Value,
    pub(crate) response_timeout_secs: u64,
    pub(crate) connect_timeout_secs: u64,
}

/// A twin job's patch: `echo` is the request's `updateTwin` (returned by GET), `patch` what is applied
/// (`tags` and `properties.desired` only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TwinSpec {
    pub(crate) echo: Value,
    pub(crate) patch: Value,
}

/// Device counts of a job; they add up to `device_count` at every instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    pub(crate) device_count: u64,
    pub(crate) failed_count: u64,
    pub(crate) succeeded_count: u64,
    pub(crate) running_count: u64,
    pub(crate) pending_count: u64,
}

/// One job: the validated request plus its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Job {
    pub(crate) job_id: JobId,
    pub(crate) kind: JobKind,
    pub(crate) query_condition: String,
    pub(crate) created_time: DateTime<Utc>,
    /// The requested start (the creation time when the request had none).
    pub(crate) start_time: DateTime<Utc>,
    /// When the job actually began running (the maxExecutionTime clock starts here).
    pub(crate) run_started: Option<DateTime<Utc>>,
    pub(crate) end_time: Option<DateTime<Utc>>,
    pub(crate) max_execution_secs: u64,
    pub(crate) status: JobStatus,
    pub(crate) failure_reason: Option<String>,
    pub(crate) status_message: Option<String>,
    /// The counts when the job last left the engine's live view (terminal jobs, restarts).
    pub(crate) stats: Stats,
}

/// A per-device error, `{"code":"DeviceNotOnline","description":".."}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceJobError {
    pub(crate) code: String,
    pub(crate) description: String,
}

/// One `devices.jobs` row; its serde form is the wire form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRecord {
    pub(crate) device_id: DeviceId,
    pub(crate) job_id: JobId,
    pub(crate) job_type: JobType,
    pub(crate) status: DeviceJobStatus,
    #[serde(with = "stamp")]
    pub(crate) start_time_utc: DateTime<Utc>,
    #[serde(with = "stamp_or_far")]
    pub(crate) end_time_utc: Option<DateTime<Utc>>,
    #[serde(with = "stamp")]
    pub(crate) created_date_time_utc: DateTime<Utc>,
    #[serde(with = "stamp")]
    pub(crate) last_updated_date_time_utc: DateTime<Utc>,
    pub(crate) outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<DeviceJobError>,
}

/// `{"deviceMethodResponse": null | {"status":..,"payload":..}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Outcome {
    pub(crate) device_method_response: Option<MethodOutcome>,
}

/// A device's answer to a method job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MethodOutcome {
    pub(crate) status: i32,
    pub(crate) payload: Value,
}

/// Live counters of a running job, shared by its runner (writer) and the engine (reader).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    device_count: AtomicU64,
    pending: AtomicU64,
    running: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl JobStatus {
    /// Whether the job still counts against the tier's active-job cap.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Scheduled | JobStatus::Running)
    }

    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a `jobStatus` filter, case-insensitively (`enqueued` is the service's synonym of `queued`).
    pub(crate) fn parse_filter(text: &str) -> Option<JobStatus> {
        let all = [
            JobStatus::Queued,
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ];
        if text.eq_ignore_ascii_case("enqueued") {
            return Some(JobStatus::Queued);
        }
        all.into_iter().find(|status| status.as_str().eq_ignore_ascii_case(text))
    }
}

impl DeviceJobStatus {
    /// Whether the record will not change again.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(
            self,
            DeviceJobStatus::Completed | DeviceJobStatus::Failed | DeviceJobStatus::Canceled
        )
    }

    /// The wire spelling (also the store's `status` column).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeviceJobStatus::Pending => "pending",
            DeviceJobStatus::Running => "running",
            DeviceJobStatus::Completed => "completed",
            DeviceJobStatus::Failed => "failed",
            DeviceJobStatus::Canceled => "canceled",
        }
    }
}

impl JobType {
    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobType::DeviceMethod => "scheduleDeviceMethod",
            JobType::UpdateTwin => "scheduleUpdateTwin",
        }
    }

    /// Parses a `jobType` filter, case-insensitively.
    pub(crate) fn parse_filter(text: &str) -> Option<JobType> {
        [JobType::DeviceMethod, JobType::UpdateTwin]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

impl DeviceJobError {
    /// An error named after an IoT Hub code.
    pub(crate) fn new(code: ErrorCode, description: impl Into<String>) -> DeviceJobError {
        DeviceJobError { code: code.name().to_owned(), description: description.into() }
    }
}

impl Job {
    /// The job's type.
    pub(crate) fn job_type(&self) -> JobType {
        match self.kind {
            JobKind::Method(_) => JobType::DeviceMethod,
            JobKind::Twin(_) => JobType::UpdateTwin,
        }
    }

    /// The jobs v2 `JobResponse` with the given statistics.
    pub(crate) fn to_response(&self, stats: Stats) -> Value {
        let mut doc = Map::new();
        doc.insert("jobId".into(), json!(self.job_id));
        doc.insert("queryCondition".into(), json!(self.query_condition));
        doc.insert("createdTime".into(), json!(stamp::format(self.created_time)));
        doc.insert("startTime".into(), json!(stamp::format(self.start_time)));
        doc.insert("endTime".into(), json!(stamp_or_far::format(self.end_time)));
        doc.insert("maxExecutionTimeInSeconds".into(), json!(self.max_execution_secs));
        doc.insert("type".into(), json!(self.job_type().as_str()));
        match &self.kind {
            JobKind::Method(method) => {
                doc.insert(
                    "cloudToDeviceMethod".into(),
                    json!({
                        "methodName": method.method_name,
                        "payload": method.payload,
                        "responseTimeoutInSeconds": method.response_timeout_secs,
                        "connectTimeoutInSeconds": method.connect_timeout_secs,
                    }),
                );
            }
            JobKind::Twin(twin) => {
                doc.insert("updateTwin".into(), twin.echo.clone());
            }
        }
        doc.insert("status".into(), json!(self.status.as_str()));
        if let Some(reason) = &self.failure_reason {
            doc.insert("failureReason".into(), json!(reason));
        }
        if let Some(message) = &self.status_message {
            doc.insert("statusMessage".into(), json!(message));
        }
        doc.insert("deviceJobStatistics".into(), json!(stats));
        Value::Object(doc)
    }
}

impl DeviceRecord {
    /// A new `pending` record of `device` in `job`, created at `now`.
    pub(crate) fn pending(job: &Job, device_id: DeviceId, now: DateTime<Utc>) -> DeviceRecord {
        DeviceRecord {
            device_id,
            job_id: job.job_id.clone(),
            job_type: job.job_type(),
            status: DeviceJobStatus::Pending,
            start_time_utc: now,
            end_time_utc: None,
            created_date_time_utc: now,
            last_updated_date_time_utc: now,
            outcome: Outcome::default(),
            error: None,
        }
    }

    /// The record moved to `running` at `now`.
    pub(crate) fn started(&self, now: DateTime<Utc>) -> DeviceRecord {
        DeviceRecord {
            status: DeviceJobStatus::Running,
            start_time_utc: now,
            last_updated_date_time_utc: now,
            ..self.clone()
        }
    }

    /// The record finished at `now` as `completed` (with an optional method answer).
    pub(crate) fn completed(
        &self,
        response: Option<MethodOutcome>,
        now: DateTime<Utc>,
    ) -> DeviceRecord {
        DeviceRecord {
            status: DeviceJobStatus::Completed,
            end_time_utc: Some(now),
            last_updated_date_time_utc: now,
            outcome: Outcome { device_method_response: response },
            error: None,
            ..self.clone()
        }
    }

    /// The record finished at `now` as `failed` with `error`.
    pub(crate) fn failed(&self, error: DeviceJobError, now: DateTime<Utc>) -> DeviceRecord {
        DeviceRecord {
            status: DeviceJobStatus::Failed,
            end_time_utc: Some(now),
            last_updated_date_time_utc: now,
            error: Some(error),
            ..self.clone()
        }
    }
}

impl Progress {
    /// Replaces every counter (a resumed job's counts).
    pub(crate) fn reset(&self, stats: Stats) {
        self.device_count.store(stats.device_count, Ordering::Relaxed);
        self.pending.store(stats.pending_count, Ordering::Relaxed);
        self.running.store(stats.running_count, Ordering::Relaxed);
        self.succeeded.store(stats.succeeded_count, Ordering::Relaxed);
        self.failed.store(stats.failed_count, Ordering::Relaxed);
    }

    /// A snapshot. Counters move one at a time, so a snapshot taken mid-move may be off by one
    /// between two buckets for an instant; the final snapshot is exact.
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            device_count: self.device_count.load(Ordering::Relaxed),
            failed_count: self.failed.load(Ordering::Relaxed),
            succeeded_count: self.succeeded.load(Ordering::Relaxed),
            running_count: self.running.load(Ordering::Relaxed),
            pending_count: self.pending.load(Ordering::Relaxed),
        }
    }

    /// Moves one device from one status bucket to another.
    pub(crate) fn moved(&self, from: DeviceJobStatus, to: DeviceJobStatus) {
        // Add before subtracting so the buckets never sum below the device count.
        self.bucket(to).fetch_add(1, Ordering::Relaxed);
        self.bucket(from).fetch_sub(1, Ordering::Relaxed);
    }

    fn bucket(&self, status: DeviceJobStatus) -> &AtomicU64 {
        match status {
            DeviceJobStatus::Pending => &self.pending,
            DeviceJobStatus::Running => &self.running,
            DeviceJobStatus::Completed => &self.succeeded,
            // Cancelled device records count as failed: the statistics have no cancelled bucket.
            DeviceJobStatus::Failed | DeviceJobStatus::Canceled => &self.failed,
        }
    }
}

impl Stats {
    /// Counts of a set of device statuses.
    pub(crate) fn from_statuses(statuses: impl IntoIterator<Item = DeviceJobStatus>) -> Stats {
        let mut stats = Stats::default();
        for status in statuses {
            stats.device_count += 1;
            match status {
                DeviceJobStatus::Pending => stats.pending_count += 1,
                DeviceJobStatus::Running => stats.running_count += 1,
                DeviceJobStatus::Completed => stats.succeeded_count += 1,
                DeviceJobStatus::Failed | DeviceJobStatus::Canceled => stats.failed_count += 1,
            }
        }
        stats
    }
}

/// Serde for timestamps in IoT Hub's seven-digit form.
pub(crate) mod stamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn format(at: DateTime<Utc>) -> String {
        protocol::time::format_timestamp(at)
    }

    pub(crate) fn serialize<S: Serializer>(
        at: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        protocol::time::parse_timestamp(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for an end time that is the far-future sentinel until it is known.
pub(crate) mod stamp_or_far {
    use chrono::{DateTime, Datelike, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn format(at: Option<DateTime<Utc>>) -> String {
        at.map_or_else(|| protocol::time::FAR_FUTURE.to_owned(), protocol::time::format_timestamp)
    }

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*at))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let at = protocol::time::parse_timestamp(&text).map_err(serde::de::Error::custom)?;
        Ok((at.year() < 9999).then_some(at))
    }
}
