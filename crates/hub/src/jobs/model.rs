//! The engine's state types: a [`Job`] (request, status, times), its per-device records and live
//! [`Progress`] counters.
//!
//! The wire shapes are `protocol::job`'s: a device record *is* a [`DeviceJob`] (so the store holds
//! exactly what `devices.jobs` queries return), statuses are `protocol::job`'s enums, and
//! [`Job::to_response`] renders a `protocol::job::JobResponse`. A `Job` is persisted as its own serde
//! form (the wire form loses the actual start time). [`RecordExt`] adds the record transitions.
//! Nothing here does I/O or reads the clock: callers pass `now`.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, JobId};
use protocol::job::{DeviceJobOutcome, JobResponse};
use protocol::method::CloudToDeviceMethod;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use protocol::job::{DeviceJob, DeviceJobError, DeviceJobStatus, JobStatus, JobType};
pub(crate) use protocol::method::CloudToDeviceMethodResult as MethodOutcome;

/// One `devices.jobs` row.
pub(crate) type DeviceRecord = DeviceJob;
/// Device counts of a job; they add up to `device_count` at every instant.
pub(crate) type Stats = protocol::job::DeviceJobStatistics;

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

/// Live counters of a running job, shared by its runner (writer) and the engine (reader).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    device_count: AtomicU64,
    pending: AtomicU64,
    running: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

/// Whether a device record will not change again.
pub(crate) fn is_terminal(status: DeviceJobStatus) -> bool {
    matches!(
        status,
        DeviceJobStatus::Completed | DeviceJobStatus::Failed | DeviceJobStatus::Canceled
    )
}

/// A per-device error named after an IoT Hub code.
pub(crate) fn device_error(code: ErrorCode, description: impl Into<String>) -> DeviceJobError {
    DeviceJobError { code: code.name().to_owned(), description: description.into() }
}

/// A new `pending` record of `device` in `job`, created at `now`.
pub(crate) fn pending_record(job: &Job, device_id: DeviceId, now: DateTime<Utc>) -> DeviceRecord {
    DeviceJob {
        device_id,
        job_id: job.job_id.clone(),
        job_type: job.job_type(),
        status: DeviceJobStatus::Pending,
        start_time_utc: None,
        end_time_utc: None,
        created_date_time_utc: now,
        last_updated_date_time_utc: now,
        outcome: DeviceJobOutcome::default(),
        error: None,
    }
}

/// Counts of a set of device statuses.
pub(crate) fn stats_of(statuses: impl IntoIterator<Item = DeviceJobStatus>) -> Stats {
    let mut stats = Stats::default();
    for status in statuses {
        stats.device_count += 1;
        match status {
            DeviceJobStatus::Pending | DeviceJobStatus::Scheduled => stats.pending_count += 1,
            DeviceJobStatus::Running => stats.running_count += 1,
            DeviceJobStatus::Completed => stats.succeeded_count += 1,
            DeviceJobStatus::Failed | DeviceJobStatus::Canceled => stats.failed_count += 1,
        }
    }
    stats
}

/// The transitions of a device record.
pub(crate) trait RecordExt {
    /// The record moved to `running` at `now`.
    fn started(&self, now: DateTime<Utc>) -> DeviceRecord;
    /// The record finished at `now` as `completed` (with an optional method answer).
    fn completed(&self, response: Option<MethodOutcome>, now: DateTime<Utc>) -> DeviceRecord;
    /// The record finished at `now` as `failed` with `error`.
    fn failed(&self, error: DeviceJobError, now: DateTime<Utc>) -> DeviceRecord;
}

impl RecordExt for DeviceRecord {
    fn started(&self, now: DateTime<Utc>) -> DeviceRecord {
        DeviceJob {
            status: DeviceJobStatus::Running,
            start_time_utc: Some(now),
            last_updated_date_time_utc: now,
            ..self.clone()
        }
    }

    fn completed(&self, response: Option<MethodOutcome>, now: DateTime<Utc>) -> DeviceRecord {
        DeviceJob {
            status: DeviceJobStatus::Completed,
            start_time_utc: self.start_time_utc.or(Some(now)),
            end_time_utc: Some(now),
            last_updated_date_time_utc: now,
            outcome: DeviceJobOutcome { device_method_response: response },
            error: None,
            ..self.clone()
        }
    }

    fn failed(&self, error: DeviceJobError, now: DateTime<Utc>) -> DeviceRecord {
        DeviceJob {
            status: DeviceJobStatus::Failed,
            end_time_utc: Some(now),
            last_updated_date_time_utc: now,
            error: Some(error),
            ..self.clone()
        }
    }
}

impl Job {
    /// The job's type.
    pub(crate) fn job_type(&self) -> JobType {
        match self.kind {
            JobKind::Method(_) => JobType::ScheduleDeviceMethod,
            JobKind::Twin(_) => JobType::ScheduleUpdateTwin,
        }
    }

    /// The jobs v2 `JobResponse` with the given statistics (`endTime` is the far-future sentinel
    /// until the job ends).
    pub(crate) fn to_response(&self, stats: Stats) -> Value {
        let far_future = protocol::time::parse_timestamp(protocol::time::FAR_FUTURE).ok();
        let method = match &self.kind {
            JobKind::Method(method) => CloudToDeviceMethod::new(
                method.method_name.clone(),
                method.payload.clone(),
                u32::try_from(method.response_timeout_secs).ok(),
                u32::try_from(method.connect_timeout_secs).ok(),
            )
            .ok(),
            JobKind::Twin(_) => None,
        };
        let response = JobResponse {
            job_id: self.job_id.clone(),
            query_condition: Some(self.query_condition.clone()),
            created_time: Some(self.created_time),
            start_time: Some(self.start_time),
            end_time: self.end_time.or(far_future),
            max_execution_time_in_seconds: Some(self.max_execution_secs),
            job_type: self.job_type(),
            cloud_to_device_method: method,
            update_twin: match &self.kind {
                JobKind::Twin(twin) => Some(twin.echo.clone()),
                JobKind::Method(_) => None,
            },
            status: self.status,
            failure_reason: self.failure_reason.clone(),
            status_message: self.status_message.clone(),
            device_job_statistics: Some(stats),
        };
        serde_json::to_value(&response).unwrap_or_else(|err| {
            tracing::error!(job_id = %self.job_id, %err, "a job response did not serialize");
            Value::Null
        })
    }
}

/// Live counters of a running job, shared by its runner (writer) and the engine (reader).
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
            DeviceJobStatus::Pending | DeviceJobStatus::Scheduled => &self.pending,
            DeviceJobStatus::Running => &self.running,
            DeviceJobStatus::Completed => &self.succeeded,
            // Cancelled device records count as failed: the statistics have no cancelled bucket.
            DeviceJobStatus::Failed | DeviceJobStatus::Canceled => &self.failed,
        }
    }
}
