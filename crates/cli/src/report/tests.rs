//! Report tests as data: a fixed job with completed, offline and timed-out devices, checked through
//! the text tables (the demo's table shape), the JSON document and the SVG timeline.

use expect_test::{expect, Expect};
use protocol::job::{DeviceJob, JobResponse};
use serde_json::{json, Value};

use super::text::{render, Detail};
use super::JobReport;

const START: &str = "2026-11-22T04:00:00.000Z";

fn job() -> JobResponse {
    serde_json::from_value(json!({
        "jobId": "demo-1",
        "type": "scheduleDeviceMethod",
        "queryCondition": "tags.building = 43 AND tags.floor = 3",
        "startTime": START,
        "endTime": "2026-11-22T04:00:10.250Z",
        "status": "completed",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": null, "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 0},
        "deviceJobStatistics": {"deviceCount": 5, "failedCount": 2, "succeededCount": 3, "runningCount": 0, "pendingCount": 0},
    }))
    .unwrap()
}

/// A device record: `end` ms after START, started `latency` ms before it.
fn record(device: &str, status: &str, end: i64, latency: i64, extra: Value) -> DeviceJob {
    let at = |ms: i64| {
        let start = protocol::time::parse_timestamp(START).unwrap();
        protocol::time::format_timestamp_millis(start + chrono::Duration::milliseconds(ms))
    };
    let mut value = json!({
        "deviceId": device,
        "jobId": "demo-1",
        "jobType": "scheduleDeviceMethod",
        "status": status,
        "startTimeUtc": at(end - latency),
        "endTimeUtc": at(end),
        "createdDateTimeUtc": START,
        "lastUpdatedDateTimeUtc": at(end),
    });
    if let (Value::Object(fields), Value::Object(more)) = (&mut value, extra) {
        fields.extend(more);
    }
    serde_json::from_value(value).unwrap()
}

pub(super) fn records() -> Vec<DeviceJob> {
    let answered = |status: i32| json!({"outcome": {"deviceMethodResponse": {"status": status, "payload": null}}});
    let failed = |code: &str, text: &str| json!({"error": {"code": code, "description": text}});
    vec![
        record("b43-f3-0002", "completed", 180, 80, answered(200)),
        record("b43-f3-0001", "completed", 150, 60, answered(200)),
        record(
            "b43-f3-0003",
            "failed",
            20,
            0,
            failed("DeviceNotOnline", "the device is not online"),
        ),
        record("b43-f3-slow-01", "completed", 8400, 8300, answered(200)),
        record("b43-f3-slow-02", "failed", 10100, 10000, failed("GatewayTimeout", "timed out")),
    ]
}

fn check_text(expect: Expect) {
    expect.assert_eq(&render(&JobReport::build(job(), &records()), Detail::Summary));
}

#[test]
fn table_shape() {
    check_text(expect![[r#"
        job demo-1: scheduleDeviceMethod reboot (response timeout 10 s), completed
        devices: 5 matching tags.building = 43 AND tags.floor = 3
        duration: 10.1 s from the start time to the last device

        status     devices  detail
        completed  3        3 answered 200
        failed     2        1 404103 DeviceNotOnline, 1 504101 GatewayTimeout

        failed device   code    error            description
        b43-f3-0003     404103  DeviceNotOnline  the device is not online
        b43-f3-slow-02  504101  GatewayTimeout   timed out

        latency (start→end)  devices  p50    p95      p99      max
        completed            3        80 ms  8.30 s   8.30 s   8.30 s
        failed               2        0 ms   10.00 s  10.00 s  10.00 s
    "#]]);
}

#[test]
fn json_document() {
    let report = JobReport::build(job(), &records());
    let mut doc = report.to_json();
    let completions = doc["completions"].take();
    expect![[r#"
        {
          "jobId": "demo-1",
          "type": "scheduleDeviceMethod",
          "methodName": "reboot",
          "responseTimeoutInSeconds": 10,
          "queryCondition": "tags.building = 43 AND tags.floor = 3",
          "status": "completed",
          "startTime": "2026-11-22T04:00:00.000Z",
          "endTime": "2026-11-22T04:00:10.250Z",
          "counts": {
            "devices": 5,
            "completed": 3,
            "failed": 2,
            "canceled": 0,
            "running": 0,
            "pending": 0,
            "scheduled": 0
          },
          "methodStatuses": {
            "200": 3
          },
          "failuresByCode": {
            "404103 DeviceNotOnline": 1,
            "504101 GatewayTimeout": 1
          },
          "failures": [
            {
              "deviceId": "b43-f3-0003",
              "code": 404103,
              "error": "DeviceNotOnline",
              "description": "the device is not online"
            },
            {
              "deviceId": "b43-f3-slow-02",
              "code": 504101,
              "error": "GatewayTimeout",
              "description": "timed out"
            }
          ],
          "latencyMs": {
            "completed": {
              "count": 3,
              "p50": 80,
              "p95": 8300,
              "p99": 8300,
              "max": 8300
            },
            "failed": {
              "count": 2,
              "p50": 0,
              "p95": 10000,
              "p99": 10000,
              "max": 10000
            }
          },
          "durationMs": 10100,
          "completions": null
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&doc).unwrap());
    let order: Vec<String> = completions
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}@{}{}",
                c["deviceId"],
                c["endMs"],
                if c["failure"].is_null() { "" } else { "✗" }
            )
        })
        .collect();
    expect![[r#"["\"b43-f3-0003\"@20✗", "\"b43-f3-0001\"@150", "\"b43-f3-0002\"@180", "\"b43-f3-slow-01\"@8400", "\"b43-f3-slow-02\"@10100✗"]"#]]
        .assert_eq(&format!("{order:?}"));
}

#[test]
fn svg_timeline_marks_failures() {
    let svg = super::svg::timeline(&JobReport::build(job(), &records()));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
    assert_eq!(svg.matches("stroke=\"#c0392b\"").count(), 2, "{svg}");
    assert!(svg.contains("<title>b43-f3-slow-02: failed 504101 GatewayTimeout, 10000 ms</title>"));
    // The x axis ends on a round number at or above the 10.1 s duration.
    assert!(svg.contains(">20</text>"), "{svg}");
    assert!(
        !svg.contains("http://") || svg.matches("http://").count() == 1,
        "no external references"
    );
}

#[test]
fn empty_job_reports_without_panicking() {
    let report = JobReport::build(job(), &[]);
    expect![[r#"
        job demo-1: scheduleDeviceMethod reboot (response timeout 10 s), completed
        devices: 0 matching tags.building = 43 AND tags.floor = 3
        duration: - from the start time to the last device

        status     devices  detail
        completed  0
        failed     0

        latency (start→end)  devices  p50  p95  p99  max
    "#]]
    .assert_eq(&render(&report, Detail::Summary));
    assert!(super::svg::timeline(&report).contains("0 devices finished"));
}
