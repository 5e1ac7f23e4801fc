//! Tests of the job JSON: request parsing as data, the §5.3 example, statuses, records, round trips.

use chrono::{DateTime, Utc};
use expect_test::{expect, Expect};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::time::parse_timestamp;

fn now() -> DateTime<Utc> {
    parse_timestamp("2020-01-06T21:44:00.8884134Z").unwrap()
}

/// Parses a request; prints the response a hub would store for it, or the error with its code.
fn check(body: Value, expect: Expect) {
    let actual = match JobRequest::from_value(&body) {
        Ok(request) => {
            let response = request.to_response(JobId::new("job01").unwrap(), now());
            serde_json::to_string(&response).unwrap()
        }
        Err(err) => format!("{} {err}", err.error_code().code()),
    };
    expect.assert_eq(&actual);
}

#[test]
fn requests() {
    check(
        json!({"jobId":"job01","type":"scheduleDeviceMethod",
               "cloudToDeviceMethod":{"methodName":"testMethod","payload":{},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},
               "queryCondition":"*","startTime":"2019-05-04T15:53:00.077Z","maxExecutionTimeInSeconds":20}),
        expect![[
            r#"{"jobId":"job01","queryCondition":"*","createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2019-05-04T15:53:00.0770000Z","maxExecutionTimeInSeconds":20,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"testMethod","payload":{},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},"status":"queued"}"#
        ]],
    );
    check(
        json!({"jobId":"job02","type":"scheduleUpdateTwin",
               "updateTwin":{"properties":{"desired":{"test1":"value1"},"reported":{"ignored":1}},"etag":"*"},
               "queryCondition":"deviceId = 'test-device'","startTime":"2019-05-08T12:19:56.868000Z"}),
        expect![[
            r#"{"jobId":"job01","queryCondition":"deviceId = 'test-device'","createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2019-05-08T12:19:56.8680000Z","maxExecutionTimeInSeconds":3600,"type":"scheduleUpdateTwin","updateTwin":{"deviceId":null,"etag":"*","properties":{"desired":{"test1":"value1"}}},"status":"queued"}"#
        ]],
    );
    // Node: numeric jobId, null startTime, payload null, no connect timeout.
    check(
        json!({"jobId":42,"type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['a']","startTime":null,
               "maxExecutionTimeInSeconds":3600,"cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30}}),
        expect![[
            r#"{"jobId":"job01","queryCondition":"deviceId IN ['a']","createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2020-01-06T21:44:00.8884134Z","maxExecutionTimeInSeconds":3600,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},"status":"queued"}"#
        ]],
    );
}

#[test]
fn rejected_requests() {
    let twin = json!({"etag":"*","tags":{"a":1}});
    check(
        json!({"type":"scheduleTwinUpdate","queryCondition":"*","updateTwin":twin}),
        expect![[
            r#"400000 job type "scheduleTwinUpdate" is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"#
        ]],
    );
    check(
        json!({"type":"scheduleDirectRequest","queryCondition":"*"}),
        expect![[
            r#"400000 job type "scheduleDirectRequest" is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"#
        ]],
    );
    check(
        json!({"type":"export","queryCondition":"*"}),
        expect![[
            r#"400000 job type "export" is not supported; use scheduleDeviceMethod or scheduleUpdateTwin"#
        ]],
    );
    check(
        json!({"queryCondition":"*"}),
        expect![["400000 job type is required (scheduleDeviceMethod or scheduleUpdateTwin)"]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","updateTwin":twin}),
        expect![["400005 queryCondition is required; use '*' to run the job on all devices"]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":" ","updateTwin":twin}),
        expect![["400005 queryCondition is required; use '*' to run the job on all devices"]],
    );
    check(json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":{"a":1}}}), expect![["400004 scheduleUpdateTwin is a force update and only accepts '*' as the etag, got nothing"]]);
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"AAAAAAAAAAE=","tags":{}}}),
        expect![[
            r#"400004 scheduleUpdateTwin is a force update and only accepts '*' as the etag, got "AAAAAAAAAAE=""#
        ]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*","tags":{"a.b":1}}}),
        expect![[
            r#"400004 invalid updateTwin: property name "a.b" at tags contains '.'; control characters, '.', '$' and ' ' are not allowed"#
        ]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*"}),
        expect![["400005 updateTwin is required for scheduleUpdateTwin jobs"]],
    );
    check(
        json!({"type":"scheduleDeviceMethod","queryCondition":"*"}),
        expect![["400005 cloudToDeviceMethod is required for scheduleDeviceMethod jobs"]],
    );
    check(json!({"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":1}}), expect![["400004 invalid cloudToDeviceMethod: responseTimeoutInSeconds must be between 5 and 300, got 1"]]);
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":twin,"startTime":"soon"}),
        expect![[r#"400004 startTime "soon" is not an ISO-8601 timestamp"#]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":twin,"maxExecutionTimeInSeconds":0}),
        expect![["400004 maxExecutionTimeInSeconds must be a positive whole number, got 0"]],
    );
    check(
        json!({"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":twin,"jobId":[1]}),
        expect![["400004 jobId must be a string"]],
    );
    check(json!([]), expect![["400012 invalid job request body: expected a json object"]]);
}

#[test]
fn completed_job_example_round_trips() {
    let text = r#"{"createdTime":"2020-01-06T21:44:00.8884134Z",
   "deviceJobStatistics":{"deviceCount":2,"failedCount":0,"pendingCount":0,"runningCount":0,"succeededCount":2},
   "endTime":"2020-01-06T21:44:06.2536519Z","jobId":"test-job-wqcqw46tj6siwobiovgr4tv","maxExecutionTimeInSeconds":300,
   "queryCondition":"deviceId in ['a','b']","startTime":"2020-01-06T21:44:00.8884134Z","status":"completed",
   "type":"scheduleUpdateTwin","updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1, Class2, Class3"}}}"#;
    let original: Value = serde_json::from_str(text).unwrap();
    let job: JobResponse = serde_json::from_str(text).unwrap();
    let again = job.to_value();
    assert_eq!(again, original, "same keys and values (key order aside)");
    expect![[r#"{"jobId":"test-job-wqcqw46tj6siwobiovgr4tv","queryCondition":"deviceId in ['a','b']","createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2020-01-06T21:44:00.8884134Z","endTime":"2020-01-06T21:44:06.2536519Z","maxExecutionTimeInSeconds":300,"type":"scheduleUpdateTwin","updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1, Class2, Class3"}},"status":"completed","deviceJobStatistics":{"deviceCount":2,"failedCount":0,"succeededCount":2,"runningCount":0,"pendingCount":0}}"#]]
        .assert_eq(&again.to_string());
    let minimal: JobResponse = serde_json::from_str(
        r#"{"jobId":"job01","type":"scheduleDeviceMethod","status":"queued"}"#,
    )
    .unwrap();
    expect![[r#"{"jobId":"job01","type":"scheduleDeviceMethod","status":"queued"}"#]]
        .assert_eq(&minimal.to_value().to_string());
}

#[test]
fn statuses() {
    let words = [
        "queued",
        "Enqueued",
        "SCHEDULED",
        "running",
        "completed",
        "failed",
        "cancelled",
        "canceled",
        "unknown",
        "pending",
        "finished",
    ];
    let job: Vec<String> = words
        .iter()
        .map(|w| JobStatus::parse(w).map_or_else(|_| "-".into(), |s| s.to_string()))
        .collect();
    let device: Vec<String> = words
        .iter()
        .map(|w| DeviceJobStatus::parse(w).map_or_else(|_| "-".into(), |s| s.to_string()))
        .collect();
    expect![[r#"
        job:    queued queued scheduled running completed failed cancelled cancelled unknown - -
        device: - - scheduled running completed failed canceled canceled - pending -
    "#]]
    .assert_eq(&format!("job:    {}\ndevice: {}\n", job.join(" "), device.join(" ")));
    let filter = parse_job_filter(Some("ScheduleUpdateTwin"), Some("Running")).unwrap();
    assert_eq!(filter, (Some(JobType::ScheduleUpdateTwin), Some(JobStatus::Running)));
    assert_eq!(parse_job_filter(Some(""), None).unwrap(), (None, None));
    assert!(parse_job_filter(Some("import"), None).is_err());
    assert!(
        JobStatus::Scheduled.is_active()
            && !JobStatus::Cancelled.is_active()
            && JobStatus::Failed.is_terminal()
    );
}

#[test]
fn device_job_records() {
    let record = DeviceJob {
        device_id: DeviceId::new("myDeviceId").unwrap(),
        job_id: JobId::new("myJobId").unwrap(),
        job_type: JobType::ScheduleDeviceMethod,
        status: DeviceJobStatus::Failed,
        start_time_utc: Some(now()),
        end_time_utc: None,
        created_date_time_utc: now(),
        last_updated_date_time_utc: now(),
        outcome: DeviceJobOutcome::default(),
        error: Some(DeviceJobError {
            code: "DeviceNotOnline".into(),
            description: "device is offline".into(),
        }),
    };
    expect![[r#"{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleDeviceMethod","status":"failed","startTimeUtc":"2020-01-06T21:44:00.8884134Z","endTimeUtc":"0001-01-01T00:00:00Z","createdDateTimeUtc":"2020-01-06T21:44:00.8884134Z","lastUpdatedDateTimeUtc":"2020-01-06T21:44:00.8884134Z","outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"device is offline"}}"#]]
        .assert_eq(&record.to_value().to_string());
    let doc_sample = r#"{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleUpdateTwin","status":"completed",
 "startTimeUtc":"2016-09-29T18:18:52.7418462","endTimeUtc":"2016-09-29T18:20:52.7418462",
 "createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z",
 "outcome":{"deviceMethodResponse":null}}"#;
    let parsed: DeviceJob = serde_json::from_str(doc_sample).unwrap();
    expect![[r#"{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleUpdateTwin","status":"completed","startTimeUtc":"2016-09-29T18:18:52.7418462Z","endTimeUtc":"2016-09-29T18:20:52.7418462Z","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z","outcome":{"deviceMethodResponse":null}}"#]]
        .assert_eq(&parsed.to_value().to_string());
}

fn job_request() -> impl Strategy<Value = JobRequest> {
    let method = (
        "[a-zA-Z]{1,8}",
        prop_oneof![Just(json!(null)), Just(json!("")), "[a-z]{0,4}".prop_map(Value::from)],
        5_u32..=300,
        0_u32..=300,
    )
        .prop_map(|(name, payload, response, connect)| {
            JobAction::DeviceMethod(
                CloudToDeviceMethod::new(name, payload, Some(response), Some(connect)).unwrap(),
            )
        });
    let twin = prop::collection::btree_map("[a-z]{1,4}", (0_i64..100).prop_map(Value::from), 0..3)
        .prop_map(|tags| {
            JobAction::UpdateTwin(TwinPatch {
                tags: Some(tags.into_iter().collect()),
                desired: None,
                reported: None,
            })
        });
    (
        prop::option::of("[a-z0-9-]{1,10}"),
        "[a-z*' =]{1,12}",
        prop::option::of(0_i64..4_000_000_000),
        1_u64..100_000,
        prop_oneof![method, twin],
    )
        .prop_filter("condition must not be blank", |(_, condition, ..)| {
            !condition.trim().is_empty()
        })
        .prop_map(|(job_id, query_condition, start, max, action)| JobRequest {
            job_id,
            query_condition,
            start_time: start.and_then(|secs| DateTime::from_timestamp(secs, 0)),
            max_execution_time_in_seconds: max,
            action,
        })
}

proptest! {
    #[test]
    fn request_round_trips(request in job_request()) {
        let parsed = JobRequest::from_value(&request.to_value()).unwrap();
        prop_assert_eq!(parsed, request);
    }

    #[test]
    fn response_round_trips(request in job_request(), status_idx in 0_usize..7) {
        let statuses = [JobStatus::Unknown, JobStatus::Queued, JobStatus::Scheduled, JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled];
        let mut response = request.to_response(JobId::new("job-1").unwrap(), now());
        response.status = statuses[status_idx];
        response.device_job_statistics = Some(DeviceJobStatistics { device_count: 3, succeeded_count: 2, failed_count: 1, ..Default::default() });
        let back: JobResponse = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        prop_assert_eq!(back, response);
    }
}
