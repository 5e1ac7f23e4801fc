//! Validation of a `PUT /jobs/v2/{jobId}` request into a queued [`Job`].
//!
//! Rules (shared docs §5.2, §5.5): the path's job id (≤ 64 letters, digits and `-`) is the job's id and
//! the body's `jobId` is ignored (Node sends it as a number); `type` is `scheduleDeviceMethod` or
//! `scheduleUpdateTwin`; `queryCondition` is a non-empty string of at most 8192 characters (it is
//! parsed when the job starts, and a condition that cannot run fails the job, as on the service);
//! `startTime` absent or null means now; `maxExecutionTimeInSeconds` absent or null takes the
//! configured default and is otherwise 1..=2592000; method calls follow the direct-method rules;
//! `updateTwin` needs `etag: "*"`, may carry `tags` and `properties.desired` (reported is dropped), and
//! its property names obey the jobs document's character rule.
//! It does not check whether devices exist: the device set is resolved when the job runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::error::ErrorCode;
use protocol::ids::JobId;
use protocol::method::CloudToDeviceMethod;
use protocol::twin::wire::{ReportedInPatch, TwinPatch};
use serde_json::{Map, Value};

use super::error::JobsError;
use super::model::{Job, JobKind, JobStatus, MethodSpec, Stats, TwinSpec};

/// The longest accepted `maxExecutionTimeInSeconds` (the 30-day history; the service documents none).
pub(crate) const MAX_EXECUTION_SECS: u64 = 30 * 24 * 3600;
/// The longest accepted `queryCondition`, as for any query.
const MAX_CONDITION_CHARS: usize = protocol::query::MAX_QUERY_CHARS;
/// Characters a job's property names may not contain besides controls and non-ASCII (jobs document).
const FORBIDDEN_NAME_CHARS: &str = "$()<>@,;:\\\"/[]?={} \t";

/// Validates a job request. `path_id` is the id from the URL, `now` the creation time.
pub(crate) fn parse_request(
    path_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
    default_max_execution: Duration,
) -> Result<Job, JobsError> {
    let job_id = JobId::new(path_id)
        .map_err(|err| JobsError::invalid(ErrorCode::ArgumentInvalid, err.to_string()))?;
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        JobsError::invalid(
            ErrorCode::DeserializationError,
            format!("invalid job request body: {err}"),
        )
    })?;
    let Value::Object(request) = value else {
        return Err(JobsError::invalid(
            ErrorCode::DeserializationError,
            "the job request must be a json object",
        ));
    };
    let kind = match required_str(&request, "type")? {
        "scheduleDeviceMethod" => JobKind::Method(method_spec(request.get("cloudToDeviceMethod"))?),
        "scheduleUpdateTwin" => JobKind::Twin(twin_spec(request.get("updateTwin"))?),
        other => {
            return Err(JobsError::invalid(
                ErrorCode::GenericBadRequest,
                format!("job type {other:?} is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"),
            ))
        }
    };
    let query_condition = query_condition(&request)?;
    let start_time = match request.get("startTime") {
        None | Some(Value::Null) => now,
        Some(Value::String(text)) => protocol::time::parse_timestamp(text).map_err(|err| {
            JobsError::invalid(ErrorCode::ArgumentInvalid, format!("startTime: {err}"))
        })?,
        Some(other) => {
            return Err(JobsError::invalid(
                ErrorCode::ArgumentInvalid,
                format!("startTime must be a string, got {other}"),
            ))
        }
    };
    let max_execution_secs = max_execution(&request, default_max_execution)?;
    Ok(Job {
        job_id,
        kind,
        query_condition,
        created_time: now,
        start_time,
        run_started: None,
        end_time: None,
        max_execution_secs,
        status: JobStatus::Queued,
        failure_reason: None,
        status_message: None,
        stats: Stats::default(),
    })
}

fn required_str<'a>(request: &'a Map<String, Value>, key: &str) -> Result<&'a str, JobsError> {
    match request.get(key) {
        None | Some(Value::Null) => {
            Err(JobsError::invalid(ErrorCode::ArgumentNull, format!("{key} is required")))
        }
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(JobsError::invalid(
            ErrorCode::ArgumentInvalid,
            format!("{key} must be a string, got {other}"),
        )),
    }
}

fn query_condition(request: &Map<String, Value>) -> Result<String, JobsError> {
    let condition = required_str(request, "queryCondition")?;
    if condition.trim().is_empty() {
        return Err(JobsError::invalid(
            ErrorCode::ArgumentNull,
            "queryCondition must not be empty; use '*' to run the job on all devices",
        ));
    }
    let n_chars = condition.chars().count();
    if n_chars > MAX_CONDITION_CHARS {
        return Err(JobsError::invalid(
            ErrorCode::ArgumentInvalid,
            format!(
                "queryCondition is {n_chars} characters long; the limit is {MAX_CONDITION_CHARS}"
            ),
        ));
    }
    Ok(condition.to_owned())
}

fn max_execution(request: &Map<String, Value>, default: Duration) -> Result<u64, JobsError> {
    match request.get("maxExecutionTimeInSeconds") {
        None | Some(Value::Null) => Ok(default.as_secs().clamp(1, MAX_EXECUTION_SECS)),
        Some(value) => match value.as_u64() {
            Some(secs) if (1..=MAX_EXECUTION_SECS).contains(&secs) => Ok(secs),
            _ => Err(JobsError::invalid(
                ErrorCode::ArgumentInvalid,
                format!("maxExecutionTimeInSeconds must be an integer between 1 and {MAX_EXECUTION_SECS}, got {value}"),
            )),
        },
    }
}

fn method_spec(raw: Option<&Value>) -> Result<MethodSpec, JobsError> {
    let Some(raw) = raw.filter(|value| !value.is_null()) else {
        return Err(JobsError::invalid(
            ErrorCode::ArgumentNull,
            "cloudToDeviceMethod is required for scheduleDeviceMethod",
        ));
    };
    let call = CloudToDeviceMethod::from_value(raw.clone()).map_err(|err| {
        JobsError::invalid(err.error_code(), format!("cloudToDeviceMethod: {err}"))
    })?;
    Ok(MethodSpec {
        method_name: call.method_name().to_owned(),
        payload: call.payload().clone(),
        response_timeout_secs: u64::from(call.response_timeout_secs()),
        connect_timeout_secs: u64::from(call.connect_timeout_secs()),
    })
}

fn twin_spec(raw: Option<&Value>) -> Result<TwinSpec, JobsError> {
    let Some(raw) = raw.filter(|value| !value.is_null()) else {
        return Err(JobsError::invalid(
            ErrorCode::ArgumentNull,
            "updateTwin is required for scheduleUpdateTwin",
        ));
    };
    match raw.get("etag").and_then(Value::as_str).map(|etag| etag.trim_matches('"')) {
        Some("*") => {}
        _ => return Err(JobsError::invalid(
            ErrorCode::ArgumentInvalid,
            "updateTwin must carry etag \"*\" (jobs apply the patch whatever the twin's version)",
        )),
    }
    let patch = TwinPatch::parse(raw, ReportedInPatch::Ignore)
        .map_err(|err| JobsError::invalid(err.error_code(), format!("updateTwin: {err}")))?;
    if patch.tags.is_none() && patch.desired.is_none() {
        return Err(JobsError::invalid(
            ErrorCode::ArgumentNull,
            "updateTwin must carry tags or properties.desired",
        ));
    }
    for (section, part) in [("tags", &patch.tags), ("properties.desired", &patch.desired)] {
        if let Some(map) = part {
            check_names(section, map)?;
        }
    }
    Ok(TwinSpec { echo: raw.clone(), patch: patch.to_value() })
}

/// Checks every property name (recursively) against the jobs document's character rule.
fn check_names(path: &str, map: &Map<String, Value>) -> Result<(), JobsError> {
    for (name, value) in map {
        let bad = name.chars().find(|ch| {
            !ch.is_ascii() || ch.is_ascii_control() || FORBIDDEN_NAME_CHARS.contains(*ch)
        });
        if let Some(ch) = bad {
            return Err(JobsError::invalid(
                ErrorCode::ArgumentInvalid,
                format!("property name {path}.{name} contains {ch:?}; job property names may not contain $ ( ) < > @ , ; : \\ \" / [ ] ? = {{ }}, spaces, tabs or non-ASCII characters"),
            ));
        }
        if let Value::Object(inner) = value {
            check_names(&format!("{path}.{name}"), inner)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(path_id: &str, body: &str, expect: Expect) {
        let now = protocol::time::parse_timestamp("2026-01-02T03:04:05Z").unwrap();
        let actual = match parse_request(path_id, body.as_bytes(), now, Duration::from_secs(3600)) {
            Ok(job) => job.to_response(Stats::default()).to_string(),
            Err(err) => format!("{} {err}", err.error_code().code()),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn method_jobs() {
        check(
            "job01",
            r#"{"jobId":1,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot","payload":{"a":1},"responseTimeoutInSeconds":30},"queryCondition":"*","startTime":"2026-01-02T04:00:00.077Z","maxExecutionTimeInSeconds":20}"#,
            expect![[
                r#"{"jobId":"job01","queryCondition":"*","createdTime":"2026-01-02T03:04:05.0000000Z","startTime":"2026-01-02T04:00:00.0770000Z","endTime":"9999-12-31T23:59:59.9999999Z","maxExecutionTimeInSeconds":20,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot","payload":{"a":1},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},"status":"queued","deviceJobStatistics":{"deviceCount":0,"failedCount":0,"succeededCount":0,"runningCount":0,"pendingCount":0}}"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m"},"queryCondition":"deviceId = 'a'","startTime":null,"maxExecutionTimeInSeconds":null}"#,
            expect![[
                r#"{"jobId":"j","queryCondition":"deviceId = 'a'","createdTime":"2026-01-02T03:04:05.0000000Z","startTime":"2026-01-02T03:04:05.0000000Z","endTime":"9999-12-31T23:59:59.9999999Z","maxExecutionTimeInSeconds":3600,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},"status":"queued","deviceJobStatistics":{"deviceCount":0,"failedCount":0,"succeededCount":0,"runningCount":0,"pendingCount":0}}"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":4},"queryCondition":"*"}"#,
            expect!["400004 cloudToDeviceMethod: responseTimeoutInSeconds must be between 5 and 300, got 4"],
        );
        check(
            "j",
            r#"{"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","connectTimeoutInSeconds":301},"queryCondition":"*"}"#,
            expect!["400004 cloudToDeviceMethod: connectTimeoutInSeconds must be between 0 and 300, got 301"],
        );
        check(
            "j",
            r#"{"type":"scheduleDeviceMethod","queryCondition":"*"}"#,
            expect!["400005 cloudToDeviceMethod is required for scheduleDeviceMethod"],
        );
    }

    #[test]
    fn twin_jobs() {
        check(
            "job02",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1, Class2"},"properties":{"desired":{"test1":"value1"},"reported":{"x":1}}},"queryCondition":"tags.building = '43'"}"#,
            expect![[
                r#"{"jobId":"job02","queryCondition":"tags.building = '43'","createdTime":"2026-01-02T03:04:05.0000000Z","startTime":"2026-01-02T03:04:05.0000000Z","endTime":"9999-12-31T23:59:59.9999999Z","maxExecutionTimeInSeconds":3600,"type":"scheduleUpdateTwin","updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1, Class2"},"properties":{"desired":{"test1":"value1"},"reported":{"x":1}}},"status":"queued","deviceJobStatistics":{"deviceCount":0,"failedCount":0,"succeededCount":0,"runningCount":0,"pendingCount":0}}"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"properties":{"desired":{"a":1}}},"queryCondition":"*"}"#,
            expect![[
                r#"400004 updateTwin must carry etag "*" (jobs apply the patch whatever the twin's version)"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"etag":"*","properties":{"desired":{"a b":1}}},"queryCondition":"*"}"#,
            expect![[
                r#"400004 updateTwin: property name "a b" at properties.desired contains ' '; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"x":{"$y":1}}},"queryCondition":"*"}"#,
            expect![[
                r#"400004 updateTwin: property name "$y" at tags.x contains '$'; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"etag":"*","properties":{"desired":{"a(b":1}}},"queryCondition":"*"}"#,
            expect![[
                r#"400004 property name properties.desired.a(b contains '('; job property names may not contain $ ( ) < > @ , ; : \ " / [ ] ? = { }, spaces, tabs or non-ASCII characters"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"x":{"y=z":1}}},"queryCondition":"*"}"#,
            expect![[
                r#"400004 property name tags.x.y=z contains '='; job property names may not contain $ ( ) < > @ , ; : \ " / [ ] ? = { }, spaces, tabs or non-ASCII characters"#
            ]],
        );
        check(
            "j",
            r#"{"type":"scheduleUpdateTwin","updateTwin":{"etag":"*"},"queryCondition":"*"}"#,
            expect!["400005 updateTwin must carry tags or properties.desired"],
        );
    }

    #[test]
    fn request_rules() {
        let twin = r#""updateTwin":{"etag":"*","tags":{"a":1}}"#;
        check(
            "bad.id",
            &format!(r#"{{"type":"scheduleUpdateTwin",{twin},"queryCondition":"*"}}"#),
            expect![
                "400004 job id contains '.', which is not allowed (ASCII letters, digits and -)"
            ],
        );
        check(
            &"x".repeat(65),
            "{}",
            expect!["400004 job id is 65 characters long; the limit is 64"],
        );
        check("j", "[1]", expect!["400012 the job request must be a json object"]);
        check(
            "j",
            "{",
            expect![
                "400012 invalid job request body: EOF while parsing an object at line 1 column 1"
            ],
        );
        check(
            "j",
            r#"{"type":"scheduleTwinUpdate","queryCondition":"*"}"#,
            expect![[
                r#"400000 job type "scheduleTwinUpdate" is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"#
            ]],
        );
        check(
            "j",
            r#"{"type":"export","queryCondition":"*"}"#,
            expect![[
                r#"400000 job type "export" is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"#
            ]],
        );
        check("j", r#"{"queryCondition":"*"}"#, expect!["400005 type is required"]);
        check(
            "j",
            &format!(r#"{{"type":"scheduleUpdateTwin",{twin}}}"#),
            expect!["400005 queryCondition is required"],
        );
        check(
            "j",
            &format!(r#"{{"type":"scheduleUpdateTwin",{twin},"queryCondition":" "}}"#),
            expect![
                "400005 queryCondition must not be empty; use '*' to run the job on all devices"
            ],
        );
        check(
            "j",
            &format!(
                r#"{{"type":"scheduleUpdateTwin",{twin},"queryCondition":"*","startTime":"soon"}}"#
            ),
            expect![[
                r#"400004 startTime: "soon" is not an ISO-8601 timestamp (expected e.g. 2026-01-02T03:04:05.678Z)"#
            ]],
        );
        check(
            "j",
            &format!(
                r#"{{"type":"scheduleUpdateTwin",{twin},"queryCondition":"*","maxExecutionTimeInSeconds":0}}"#
            ),
            expect![
                "400004 maxExecutionTimeInSeconds must be an integer between 1 and 2592000, got 0"
            ],
        );
        check(
            "j",
            &format!(
                r#"{{"type":"scheduleUpdateTwin",{twin},"queryCondition":"*","maxExecutionTimeInSeconds":-5}}"#
            ),
            expect![
                "400004 maxExecutionTimeInSeconds must be an integer between 1 and 2592000, got -5"
            ],
        );
    }
}
