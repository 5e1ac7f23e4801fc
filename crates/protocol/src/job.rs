//! Jobs v2 JSON: the `PUT /jobs/v2/{id}` request ([`JobRequest`]), the job document the service returns
//! ([`JobResponse`]), per-device job records ([`DeviceJob`], `FROM devices.jobs`), and the status enums.
//!
//! Spelling matters and differs by level: a job is `queued, scheduled, running, completed, failed,
//! cancelled` (double L, [`JobStatus`]); a device record is `pending, scheduled, running, completed,
//! failed, canceled` (single L, [`DeviceJobStatus`]). Both parse case-insensitively, and `enqueued`
//! reads as `queued`.
//!
//! [`JobRequest::parse`] accepts what the SDKs send (numeric `jobId`, `null` `startTime`, missing
//! `maxExecutionTimeInSeconds` → 3600) and rejects what the service rejects (legacy type names, missing
//! or empty `queryCondition`, an `updateTwin` without `"etag":"*"`). Running jobs is the hub's business.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::device::timestamps;
use crate::error::ErrorCode;
use crate::ids::{DeviceId, JobId};
use crate::method::{CloudToDeviceMethod, CloudToDeviceMethodResult, MethodError};
use crate::twin::{ReportedInPatch, TwinError, TwinPatch};

#[cfg(test)]
mod tests;

/// `maxExecutionTimeInSeconds` when the request has none.
pub const DEFAULT_MAX_EXECUTION_SECS: u64 = 3600;

/// The two v2 job kinds: `scheduleDeviceMethod` and `scheduleUpdateTwin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobType {
    /// Invoke a direct method on every matched device.
    ScheduleDeviceMethod,
    /// Apply a twin patch to every matched device.
    ScheduleUpdateTwin,
}

/// A job's status (double-L `cancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// A v1 job seen through the v2 API.
    Unknown,
    /// Accepted, not yet looked at (`queued`; `enqueued` parses to this).
    Queued,
    /// Waiting for its start time.
    Scheduled,
    /// Processing devices.
    Running,
    /// Every device finished, or the execution time ran out.
    Completed,
    /// The job as a whole failed (e.g. an unparsable query condition).
    Failed,
    /// Cancelled before it ran.
    Cancelled,
}

/// A per-device job record's status (single-L `canceled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceJobStatus {
    /// Matched, not yet processed.
    Pending,
    /// Waiting for the job's start time.
    Scheduled,
    /// Being processed.
    Running,
    /// Processed (a method job records the device's answer, whatever its status).
    Completed,
    /// Not processed (offline, timed out, patch refused).
    Failed,
    /// The job was cancelled before this device was processed.
    Canceled,
}

/// A validated `PUT /jobs/v2/{id}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// The id in the body, stringified if numeric (the path id is authoritative).
    pub job_id: Option<String>,
    /// The WHERE clause selecting devices (`*` = all).
    pub query_condition: String,
    /// When to start; `None` means now.
    pub start_time: Option<DateTime<Utc>>,
    /// How long the job may run.
    pub max_execution_time_in_seconds: u64,
    /// What to do on each device.
    pub action: JobAction,
}

/// What a job does on each device.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Invoke this method.
    DeviceMethod(CloudToDeviceMethod),
    /// Apply this patch (tags and desired; the etag is always `*`).
    UpdateTwin(TwinPatch),
}

/// A job document as `GET /jobs/v2/{id}` and the job query return it (§5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    /// The job id.
    pub job_id: JobId,
    /// The device selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    /// When the job was created.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps::optional")]
    pub created_time: Option<DateTime<Utc>>,
    /// When the job starts or started.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps::optional")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the job ended (far future while it runs, if the hub chooses to send that).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps::optional")]
    pub end_time: Option<DateTime<Utc>>,
    /// How long the job may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
    /// The job kind.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The method, for method jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    /// The patch as a Twin object (`{"deviceId":null,"etag":"*","tags":..,"properties":..}`), for twin jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    /// The job status.
    pub status: JobStatus,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// More words on the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Per-device counts, once the job has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_job_statistics: Option<DeviceJobStatistics>,
}

/// `deviceJobStatistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceJobStatistics {
    /// Devices the query matched.
    pub device_count: u64,
    /// Devices that failed.
    pub failed_count: u64,
    /// Devices that completed.
    pub succeeded_count: u64,
    /// Devices in progress.
    pub running_count: u64,
    /// Devices not yet processed.
    pub pending_count: u64,
}

/// A per-device job record (§5.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    /// The device.
    pub device_id: DeviceId,
    /// The job.
    pub job_id: JobId,
    /// The job kind.
    pub job_type: JobType,
    /// This device's status.
    pub status: DeviceJobStatus,
    /// When processing started; `None` is written as `0001-01-01T00:00:00Z`.
    #[serde(default, with = "timestamps::never_or")]
    pub start_time_utc: Option<DateTime<Utc>>,
    /// When processing ended; `None` is written as "never".
    #[serde(default, with = "timestamps::never_or")]
    pub end_time_utc: Option<DateTime<Utc>>,
    /// When the record was created.
    #[serde(with = "timestamps::required")]
    pub created_date_time_utc: DateTime<Utc>,
    /// When the record last changed.
    #[serde(with = "timestamps::required")]
    pub last_updated_date_time_utc: DateTime<Utc>,
    /// The method answer, for method jobs.
    #[serde(default)]
    pub outcome: DeviceJobOutcome,
    /// Why the device failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
}

/// `outcome` of a device job record: `{"deviceMethodResponse":null}` or the method result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobOutcome {
    /// The device's answer to a method job.
    #[serde(default)]
    pub device_method_response: Option<CloudToDeviceMethodResult>,
}

/// `error` of a failed device job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJobError {
    /// A short name such as `DeviceNotOnline` or `GatewayTimeout`.
    pub code: String,
    /// Human-readable detail.
    pub description: String,
}

/// Why a job request or filter is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The body is not a JSON object.
    #[error("invalid job request body: {0}")]
    Body(String),
    /// `type` is missing.
    #[error("job type is required (scheduleDeviceMethod or scheduleUpdateTwin)")]
    MissingType,
    /// `type` is not a v2 job type (legacy names included).
    #[error("job type {0:?} is not supported; use scheduleDeviceMethod or scheduleUpdateTwin")]
    BadType(String),
    /// `jobStatus` names no job status.
    #[error("job status {0:?} is not a job status")]
    BadStatus(String),
    /// `jobId` is neither a string nor a number.
    #[error("jobId must be a string")]
    BadJobId,
    /// `queryCondition` is missing, not a string, or empty.
    #[error("queryCondition is required; use '*' to run the job on all devices")]
    MissingQueryCondition,
    /// `startTime` is not an ISO-8601 timestamp.
    #[error("startTime {0} is not an ISO-8601 timestamp")]
    BadStartTime(String),
    /// `maxExecutionTimeInSeconds` is not a positive whole number.
    #[error("maxExecutionTimeInSeconds must be a positive whole number, got {0}")]
    BadMaxExecutionTime(String),
    /// A method job without `cloudToDeviceMethod`.
    #[error("cloudToDeviceMethod is required for scheduleDeviceMethod jobs")]
    MissingMethod,
    /// `cloudToDeviceMethod` is invalid.
    #[error("invalid cloudToDeviceMethod: {0}")]
    Method(#[from] MethodError),
    /// A twin job without `updateTwin`.
    #[error("updateTwin is required for scheduleUpdateTwin jobs")]
    MissingUpdateTwin,
    /// `updateTwin.etag` is not `*`.
    #[error("scheduleUpdateTwin is a force update and only accepts '*' as the etag, got {0}")]
    BadEtag(String),
    /// `updateTwin` is not a valid twin patch.
    #[error("invalid updateTwin: {0}")]
    Twin(#[from] TwinError),
}

impl JobError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            JobError::Body(_) => ErrorCode::DeserializationError,
            // The service answers legacy and unknown types with `ErrorCode:GenericBadRequest;BadRequest`.
            JobError::MissingType | JobError::BadType(_) => ErrorCode::GenericBadRequest,
            JobError::MissingQueryCondition
            | JobError::MissingMethod
            | JobError::MissingUpdateTwin => ErrorCode::ArgumentNull,
            JobError::Method(err) => err.error_code(),
            JobError::Twin(err) => err.error_code(),
            _ => ErrorCode::ArgumentInvalid,
        }
    }
}

impl JobType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
            JobType::ScheduleUpdateTwin => "scheduleUpdateTwin",
        }
    }

    /// Reads a type in any case (`ScheduleUpdateTwin` from C# query strings); legacy names are refused.
    ///
    /// # Errors
    /// [`JobError::BadType`] for anything but the two v2 types.
    pub fn parse(text: &str) -> Result<JobType, JobError> {
        [JobType::ScheduleDeviceMethod, JobType::ScheduleUpdateTwin]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| JobError::BadType(text.to_owned()))
    }
}

impl JobStatus {
    /// The wire spelling (`cancelled` with double L).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Unknown => "unknown",
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Reads a status in any case; `enqueued` is `queued`, `canceled` is `cancelled`.
    ///
    /// # Errors
    /// [`JobError::BadStatus`] for an unknown word.
    pub fn parse(text: &str) -> Result<JobStatus, JobError> {
        let lower = text.trim().to_ascii_lowercase();
        let status = match lower.as_str() {
            "unknown" => JobStatus::Unknown,
            "queued" | "enqueued" => JobStatus::Queued,
            "scheduled" => JobStatus::Scheduled,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" | "canceled" => JobStatus::Cancelled,
            _ => return Err(JobError::BadStatus(text.to_owned())),
        };
        Ok(status)
    }

    /// Whether the job still counts against the active-job limit (queued, scheduled, running).
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Scheduled | JobStatus::Running)
    }

    /// Whether the job has ended (completed, failed, cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl DeviceJobStatus {
    /// The wire spelling (`canceled` with single L).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceJobStatus::Pending => "pending",
            DeviceJobStatus::Scheduled => "scheduled",
            DeviceJobStatus::Running => "running",
            DeviceJobStatus::Completed => "completed",
            DeviceJobStatus::Failed => "failed",
            DeviceJobStatus::Canceled => "canceled",
        }
    }

    /// Reads a status in any case; `cancelled` is accepted too.
    ///
    /// # Errors
    /// [`JobError::BadStatus`] for an unknown word.
    pub fn parse(text: &str) -> Result<DeviceJobStatus, JobError> {
        let lower = text.trim().to_ascii_lowercase();
        let status = match lower.as_str() {
            "pending" => DeviceJobStatus::Pending,
            "scheduled" => DeviceJobStatus::Scheduled,
            "running" => DeviceJobStatus::Running,
            "completed" => DeviceJobStatus::Completed,
            "failed" => DeviceJobStatus::Failed,
            "canceled" | "cancelled" => DeviceJobStatus::Canceled,
            _ => return Err(JobError::BadStatus(text.to_owned())),
        };
        Ok(status)
    }
}

macro_rules! string_serde {
    ($kind:ty) => {
        impl Serialize for $kind {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $kind {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                <$kind>::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_serde!(JobType);
string_serde!(JobStatus);
string_serde!(DeviceJobStatus);

impl JobRequest {
    /// Parses and validates a `PUT /jobs/v2/{id}` body.
    ///
    /// # Errors
    /// [`JobError`] naming the first problem found.
    pub fn parse(body: &[u8]) -> Result<JobRequest, JobError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| JobError::Body(err.to_string()))?;
        JobRequest::from_value(&value)
    }

    /// Validates an already-parsed body.
    ///
    /// # Errors
    /// As [`JobRequest::parse`].
    pub fn from_value(body: &Value) -> Result<JobRequest, JobError> {
        let root =
            body.as_object().ok_or_else(|| JobError::Body("expected a json object".into()))?;
        let job_type = match root.get("type") {
            None | Some(Value::Null) => return Err(JobError::MissingType),
            Some(Value::String(text)) => JobType::parse(text)?,
            Some(other) => return Err(JobError::BadType(other.to_string())),
        };
        let action = match job_type {
            JobType::ScheduleDeviceMethod => {
                let method = root
                    .get("cloudToDeviceMethod")
                    .filter(|v| !v.is_null())
                    .ok_or(JobError::MissingMethod)?;
                JobAction::DeviceMethod(CloudToDeviceMethod::from_value(method.clone())?)
            }
            JobType::ScheduleUpdateTwin => {
                JobAction::UpdateTwin(parse_update_twin(root.get("updateTwin"))?)
            }
        };
        Ok(JobRequest {
            job_id: parse_job_id(root.get("jobId"))?,
            query_condition: parse_query_condition(root.get("queryCondition"))?,
            start_time: parse_start_time(root.get("startTime"))?,
            max_execution_time_in_seconds: parse_max_execution(
                root.get("maxExecutionTimeInSeconds"),
            )?,
            action,
        })
    }

    /// The job type of the action.
    pub fn job_type(&self) -> JobType {
        match self.action {
            JobAction::DeviceMethod(_) => JobType::ScheduleDeviceMethod,
            JobAction::UpdateTwin(_) => JobType::ScheduleUpdateTwin,
        }
    }

    /// The request as a PUT body (what a client sends).
    pub fn to_value(&self) -> Value {
        let mut body = Map::new();
        if let Some(job_id) = &self.job_id {
            body.insert("jobId".into(), Value::from(job_id.clone()));
        }
        body.insert("type".into(), Value::from(self.job_type().as_str()));
        match &self.action {
            JobAction::DeviceMethod(method) => {
                body.insert("cloudToDeviceMethod".into(), json!(method))
            }
            JobAction::UpdateTwin(patch) => {
                body.insert("updateTwin".into(), update_twin_wire(patch))
            }
        };
        body.insert("queryCondition".into(), Value::from(self.query_condition.clone()));
        let start = self.start_time.map(|at| Value::from(crate::time::format_timestamp(at)));
        body.insert("startTime".into(), start.unwrap_or(Value::Null));
        body.insert(
            "maxExecutionTimeInSeconds".into(),
            Value::from(self.max_execution_time_in_seconds),
        );
        Value::Object(body)
    }

    /// The job document for a freshly accepted request: `queued`, created at `now`, starting at
    /// `startTime` (or `now`), no end time and no statistics yet.
    pub fn to_response(&self, job_id: JobId, now: DateTime<Utc>) -> JobResponse {
        let (cloud_to_device_method, update_twin) = match &self.action {
            JobAction::DeviceMethod(method) => (Some(method.clone()), None),
            JobAction::UpdateTwin(patch) => (None, Some(update_twin_wire(patch))),
        };
        JobResponse {
            job_id,
            query_condition: Some(self.query_condition.clone()),
            created_time: Some(now),
            start_time: Some(self.start_time.unwrap_or(now)),
            end_time: None,
            max_execution_time_in_seconds: Some(self.max_execution_time_in_seconds),
            job_type: self.job_type(),
            cloud_to_device_method,
            update_twin,
            status: JobStatus::Queued,
            failure_reason: None,
            status_message: None,
            device_job_statistics: None,
        }
    }
}

impl JobResponse {
    /// The job document as a JSON value (query results).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .expect("a JobResponse always serializes: string keys, finite numbers")
    }
}

impl DeviceJob {
    /// The record as a JSON value (`FROM devices.jobs` evaluation and results).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .expect("a DeviceJob always serializes: string keys, finite numbers")
    }
}

/// The `updateTwin` echo in a job document: a Twin object with `deviceId: null` and `etag: "*"`.
pub fn update_twin_wire(patch: &TwinPatch) -> Value {
    let mut twin = Map::new();
    twin.insert("deviceId".into(), Value::Null);
    twin.insert("etag".into(), Value::from("*"));
    if let Value::Object(parts) = patch.to_value() {
        twin.extend(parts);
    }
    Value::Object(twin)
}

/// Reads the optional `jobType`/`jobStatus` query parameters of `GET /jobs/v2/query` (any case; empty = absent).
///
/// # Errors
/// [`JobError::BadType`] or [`JobError::BadStatus`] for unknown words.
pub fn parse_job_filter(
    job_type: Option<&str>,
    job_status: Option<&str>,
) -> Result<(Option<JobType>, Option<JobStatus>), JobError> {
    let job_type =
        job_type.filter(|text| !text.trim().is_empty()).map(JobType::parse).transpose()?;
    let job_status =
        job_status.filter(|text| !text.trim().is_empty()).map(JobStatus::parse).transpose()?;
    Ok((job_type, job_status))
}

fn parse_update_twin(value: Option<&Value>) -> Result<TwinPatch, JobError> {
    let twin = match value {
        None | Some(Value::Null) => return Err(JobError::MissingUpdateTwin),
        Some(twin) => twin,
    };
    match twin.get("etag") {
        Some(Value::String(etag)) if etag.trim().trim_matches('"') == "*" => {}
        Some(other) => return Err(JobError::BadEtag(other.to_string())),
        None => return Err(JobError::BadEtag("nothing".into())),
    }
    Ok(TwinPatch::parse(twin, ReportedInPatch::Ignore)?)
}

fn parse_job_id(value: Option<&Value>) -> Result<Option<String>, JobError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(JobError::BadJobId),
    }
}

fn parse_query_condition(value: Option<&Value>) -> Result<String, JobError> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        _ => Err(JobError::MissingQueryCondition),
    }
}

fn parse_start_time(value: Option<&Value>) -> Result<Option<DateTime<Utc>>, JobError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => crate::time::parse_timestamp(text)
            .map(Some)
            .map_err(|_| JobError::BadStartTime(format!("{text:?}"))),
        Some(other) => Err(JobError::BadStartTime(other.to_string())),
    }
}

fn parse_max_execution(value: Option<&Value>) -> Result<u64, JobError> {
    match value {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_EXECUTION_SECS),
        Some(number) => match number.as_u64().or_else(|| whole_float(number)) {
            Some(secs) if secs > 0 => Ok(secs),
            _ => Err(JobError::BadMaxExecutionTime(number.to_string())),
        },
    }
}

/// A JSON float with no fractional part as u64 (`20.0` → 20).
fn whole_float(value: &Value) -> Option<u64> {
    let float = value.as_f64()?;
    // The cast is exact: the value is whole and inside u32's range, far below u64::MAX.
    (float.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&float)).then_some(float as u64)
}
