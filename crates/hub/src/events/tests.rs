//! Payload snapshots (expect-test) and queue behaviour.

use chrono::TimeZone as _;
use expect_test::{expect, Expect};
use protocol::job::DeviceJobStatus;
use serde_json::json;

use super::*;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("a valid date")
}

fn device(id: &str) -> DeviceId {
    DeviceId::new(id).expect("valid device id")
}

fn job(id: &str) -> JobId {
    JobId::new(id).expect("valid job id")
}

/// Encodes `event` and compares `topic` + pretty payload with the snapshot.
fn check(event: HubEvent, expected: Expect) {
    let encoded = Encoder::new("myhub.localhost").encode(&event);
    assert_eq!(encoded.topic, event.topic());
    let payload: Value = serde_json::from_slice(&encoded.payload).expect("payload is JSON");
    let pretty = serde_json::to_string_pretty(&payload).expect("serializes");
    expected.assert_eq(&format!("{}\n{pretty}", encoded.topic));
}

fn telemetry(properties: &str, body: &'static [u8]) -> HubEvent {
    HubEvent::Telemetry(Box::new(TelemetryEvent {
        device_id: device("dev+1#%"),
        module_id: None,
        properties: PropertyBag::parse(properties).expect("valid bag"),
        body: Bytes::from_static(body),
        enqueued_at: at(),
    }))
}

fn progress(job_id: &str, succeeded: u64, status: JobStatus) -> HubEvent {
    HubEvent::JobProgress(Box::new(JobProgressEvent {
        job_id: job(job_id),
        job_type: JobType::ScheduleUpdateTwin,
        status,
        statistics: DeviceJobStatistics {
            device_count: 10,
            succeeded_count: succeeded,
            ..Default::default()
        },
        at: at(),
    }))
}

#[test]
fn telemetry_json_body_with_system_and_application_properties() {
    check(
        telemetry(
            "%24.ct=application%2Fjson&%24.ce=utf-8&%24.mid=m1&alert=high&bare",
            br#"{"t":21.5}"#,
        ),
        expect![[r#"
            telemetry/dev%2B1%23%25
            {
              "body": {
                "t": 21.5
              },
              "bodyEncoding": "json",
              "properties": {
                "alert": "high",
                "bare": ""
              },
              "systemProperties": {
                "content-type": "application/json",
                "content-encoding": "utf-8",
                "message-id": "m1",
                "iothub-connection-device-id": "dev+1#%",
                "iothub-connection-auth-method": "{\"scope\":\"device\",\"type\":\"sas\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}",
                "iothub-enqueuedtime": "2026-01-02T03:04:05.000Z",
                "iothub-message-source": "Telemetry"
              }
            }"#]],
    );
}

#[test]
fn telemetry_binary_body_is_base64() {
    check(
        telemetry("", b"\x00\xffraw"),
        expect![[r#"
            telemetry/dev%2B1%23%25
            {
              "body": "AP9yYXc=",
              "bodyEncoding": "base64",
              "properties": {},
              "systemProperties": {
                "iothub-connection-device-id": "dev+1#%",
                "iothub-connection-auth-method": "{\"scope\":\"device\",\"type\":\"sas\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}",
                "iothub-enqueuedtime": "2026-01-02T03:04:05.000Z",
                "iothub-message-source": "Telemetry"
              }
            }"#]],
    );
}

#[test]
fn twin_change_carries_changed_sections_and_versions() {
    let event = HubEvent::TwinChange(Box::new(TwinChangeEvent {
        device_id: device("d1"),
        op: TwinChangeOp::Update,
        version: 7,
        tags: None,
        desired: Some(json!({"fan": "on", "$version": 3})),
        reported: None,
        at: at(),
    }));
    check(
        event,
        expect![[r#"
            twin-changes/d1
            {
              "body": {
                "version": 7,
                "properties": {
                  "desired": {
                    "fan": "on",
                    "$version": 3
                  }
                }
              },
              "properties": {
                "hubName": "myhub",
                "deviceId": "d1",
                "opType": "updateTwin",
                "operationTimestamp": "2026-01-02T03:04:05.000Z",
                "iothub-message-schema": "twinChangeNotification"
              },
              "systemProperties": {
                "content-type": "application/json",
                "content-encoding": "utf-8",
                "iothub-connection-device-id": "d1",
                "iothub-enqueuedtime": "2026-01-02T03:04:05.000Z",
                "iothub-message-source": "twinChangeEvents"
              }
            }"#]],
    );
}

#[test]
fn connection_state_has_increasing_sequence_numbers() {
    let mut encoder = Encoder::new("h");
    let connect = HubEvent::ConnectionState(Box::new(ConnectionStateEvent {
        device_id: device("d1"),
        connected: true,
        at: at(),
    }));
    let first = encoder.encode(&connect);
    let second = encoder.encode(&connect);
    let sequence = |encoded: &EncodedEvent| {
        let payload: Value = serde_json::from_slice(&encoded.payload).expect("JSON");
        payload["body"]["sequenceNumber"].as_str().map(str::to_owned).expect("a sequence number")
    };
    assert!(sequence(&first) < sequence(&second));
    assert_eq!(sequence(&first).len(), 64);
    check(
        connect,
        expect![[r#"
            connection-state/d1
            {
              "body": {
                "sequenceNumber": "0000000000000000000000000000000000000000000000000000000000000001"
              },
              "properties": {
                "hubName": "myhub",
                "deviceId": "d1",
                "opType": "deviceConnected",
                "operationTimestamp": "2026-01-02T03:04:05.000Z",
                "iothub-message-schema": "deviceConnectionStateNotification"
              },
              "systemProperties": {
                "content-type": "application/json",
                "content-encoding": "utf-8",
                "iothub-connection-device-id": "d1",
                "iothub-enqueuedtime": "2026-01-02T03:04:05.000Z",
                "iothub-message-source": "deviceConnectionStateEvents"
              }
            }"#]],
    );
}

#[test]
fn lifecycle_delete() {
    let event = HubEvent::Lifecycle(Box::new(LifecycleEvent {
        device_id: device("d1"),
        op: LifecycleOp::Deleted,
        twin: json!({"deviceId": "d1", "version": 2}),
        at: at(),
    }));
    check(
        event,
        expect![[r#"
            lifecycle/d1
            {
              "body": {
                "deviceId": "d1",
                "version": 2
              },
              "properties": {
                "hubName": "myhub",
                "deviceId": "d1",
                "opType": "deleteDeviceIdentity",
                "operationTimestamp": "2026-01-02T03:04:05.000Z",
                "iothub-message-schema": "deviceLifecycleNotification"
              },
              "systemProperties": {
                "content-type": "application/json",
                "content-encoding": "utf-8",
                "iothub-connection-device-id": "d1",
                "iothub-enqueuedtime": "2026-01-02T03:04:05.000Z",
                "iothub-message-source": "deviceLifecycleEvents"
              }
            }"#]],
    );
}

#[test]
fn job_progress_and_device_record() {
    check(
        progress("job-1", 4, JobStatus::Running),
        expect![[r#"
            jobs/job-1/progress
            {
              "jobId": "job-1",
              "type": "scheduleUpdateTwin",
              "status": "running",
              "deviceJobStatistics": {
                "deviceCount": 10,
                "failedCount": 0,
                "succeededCount": 4,
                "runningCount": 0,
                "pendingCount": 0
              },
              "final": false,
              "timestamp": "2026-01-02T03:04:05.000Z"
            }"#]],
    );
    let record = DeviceJob {
        device_id: device("d7"),
        job_id: job("job-1"),
        job_type: JobType::ScheduleUpdateTwin,
        status: DeviceJobStatus::Completed,
        start_time_utc: Some(at()),
        end_time_utc: Some(at()),
        created_date_time_utc: at(),
        last_updated_date_time_utc: at(),
        outcome: Default::default(),
        error: None,
    };
    let encoded = Encoder::new("h").encode(&HubEvent::device_job_record(&record));
    assert_eq!(encoded.topic, "jobs/job-1/devices");
    let back: DeviceJob = serde_json::from_slice(&encoded.payload).expect("a device job record");
    assert_eq!(back, record);
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let cfg = EventsConfig {
        queue_capacity: NonZeroUsize::new(2).expect("not zero"),
        progress_interval: DEFAULT_PROGRESS_INTERVAL,
    };
    let (events, mut queue) = Events::channel(&cfg, "h");
    for _ in 0..5 {
        events.publish(HubEvent::connection_state(&device("d1"), true));
    }
    assert_eq!(events.stats().enqueued, 2);
    assert_eq!(events.dropped(), 3);
    let batch = queue.next_batch(Duration::from_millis(10));
    assert_eq!(batch.len(), 2);
    events.publish(HubEvent::connection_state(&device("d1"), false));
    assert_eq!(events.stats().enqueued, 3);
}

#[test]
fn disabled_events_do_nothing() {
    let events = Events::disabled();
    events.publish(HubEvent::connection_state(&device("d1"), true));
    assert!(!events.is_enabled());
    assert_eq!(events.stats(), EventStats::default());
}

#[test]
fn progress_is_coalesced_and_the_final_always_goes_out() {
    let cfg = EventsConfig {
        queue_capacity: NonZeroUsize::new(100).expect("not zero"),
        progress_interval: Duration::from_secs(3600),
    };
    let (events, mut queue) = Events::channel(&cfg, "h");
    for succeeded in 1..=5 {
        events.publish(progress("j1", succeeded, JobStatus::Running));
    }
    events.publish(progress("j1", 10, JobStatus::Completed));
    let batch = queue.next_batch(Duration::from_millis(10));
    let finals: Vec<bool> = batch
        .iter()
        .map(|encoded| {
            let payload: Value = serde_json::from_slice(&encoded.payload).expect("JSON");
            payload["final"].as_bool().expect("a final flag")
        })
        .collect();
    assert_eq!(finals, vec![false, true]);
    assert_eq!(events.stats().progress_coalesced, 4);
}
