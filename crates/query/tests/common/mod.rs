//! Fixture fleet shared by the table tests: ten device twins and a few per-device job records.

#![allow(dead_code, reason = "each test binary uses a different subset of the fixtures")]

use serde_json::{json, Value};

/// Ten service-view twins with a spread of tags, statuses and property types.
pub(crate) fn twins() -> Vec<Value> {
    vec![
        json!({"deviceId": "d01", "status": "enabled", "connectionState": "Connected", "version": 4,
            "lastActivityTime": "2026-01-02T03:04:05.0000000Z", "capabilities": {"iotEdge": false},
            "tags": {"building": "43", "floor": 3, "location": {"city": "Oslo"}},
            "properties": {
                "desired": {"interval": 30, "$version": 3},
                "reported": {"temperature": 21.5, "firmware": "1.2.0",
                    "$metadata": {"$lastUpdated": "2026-01-02T03:04:05.0000000Z",
                        "temperature": {"$lastUpdated": "2026-01-02T03:04:05.0000000Z"}},
                    "$version": 7}}}),
        json!({"deviceId": "d02", "status": "disabled", "connectionState": "Disconnected", "version": 2,
            "tags": {"building": "43", "floor": 4},
            "properties": {"desired": {"$version": 1}, "reported": {"temperature": 25, "$version": 2}}}),
        json!({"deviceId": "d03", "status": "enabled", "connectionState": "Connected", "version": 2,
            "tags": {"building": "44", "floor": 3, "location": {"city": "Bergen"}},
            "properties": {"desired": {"$version": 1}, "reported": {"temperature": "hot", "firmware": "1.3.0", "$version": 3}}}),
        json!({"deviceId": "d04", "status": "enabled", "connectionState": "Disconnected", "version": 1,
            "properties": {"desired": {"$version": 1}, "reported": {"battery": null, "$version": 1}}}),
        json!({"deviceId": "d05", "status": "enabled", "connectionState": "Disconnected", "version": 3,
            "tags": {"building": 43, "floor": 3.0},
            "properties": {"desired": {"$version": 1}, "reported": {"temperature": 18, "$version": 4}}}),
        json!({"deviceId": "Sensor-1", "status": "enabled", "connectionState": "Connected", "version": 2,
            "tags": {"Building": "43"},
            "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}}),
        json!({"deviceId": "d07", "status": "enabled", "connectionState": "Connected", "version": 5,
            "capabilities": {"iotEdge": true}, "tags": {"building": "45", "floor": "3"},
            "properties": {"desired": {"$version": 1}, "reported": {"temperature": 19, "firmware": "1.2.0", "$version": 5}}}),
        json!({"deviceId": "d08", "status": "disabled", "connectionState": "Disconnected", "version": 1, "modelId": "dtmi:x;1",
            "tags": {"building": "45", "zones": ["a", "b"]},
            "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}}),
        json!({"deviceId": "d09", "status": "enabled", "connectionState": "Disconnected", "version": 1,
            "properties": {"desired": {"$version": 1}, "reported": {"telemetryConfig": {"status": "Pending"}, "$version": 2}}}),
        json!({"deviceId": "d10", "status": "enabled", "connectionState": "Connected", "version": 6,
            "tags": {"building": "43", "floor": 5},
            "properties": {"desired": {"$version": 2},
                "reported": {"temperature": 23, "telemetryConfig": {"status": "Success"}, "$version": 9}}}),
    ]
}

/// Per-device job records of two jobs.
pub(crate) fn job_records() -> Vec<Value> {
    vec![
        json!({"deviceId": "d01", "jobId": "reboot-43", "jobType": "scheduleDeviceMethod", "status": "completed",
            "startTimeUtc": "2016-09-29T18:18:52.7418462", "endTimeUtc": "2016-09-29T18:20:52.7418462",
            "createdDateTimeUtc": "2016-09-29T18:18:56.7787107Z", "lastUpdatedDateTimeUtc": "2016-09-29T18:18:56.8894408Z",
            "outcome": {"deviceMethodResponse": {"status": 200, "payload": {"ok": true}}}}),
        json!({"deviceId": "d02", "jobId": "reboot-43", "jobType": "scheduleDeviceMethod", "status": "failed",
            "createdDateTimeUtc": "2016-09-29T18:18:56.7787107Z", "lastUpdatedDateTimeUtc": "2016-09-29T18:19:56.0000000Z",
            "outcome": {"deviceMethodResponse": null},
            "error": {"code": "DeviceNotOnline", "description": "the device is not connected"}}),
        json!({"deviceId": "d01", "jobId": "twin-1", "jobType": "scheduleUpdateTwin", "status": "completed",
            "createdDateTimeUtc": "2016-08-01T00:00:00.0000000Z", "lastUpdatedDateTimeUtc": "2016-08-01T00:00:01.0000000Z",
            "outcome": {"deviceMethodResponse": null}}),
        json!({"deviceId": "d03", "jobId": "twin-1", "jobType": "scheduleUpdateTwin", "status": "pending",
            "createdDateTimeUtc": "2016-08-01T00:00:00.0000000Z", "lastUpdatedDateTimeUtc": "2016-08-01T00:00:00.0000000Z",
            "outcome": {"deviceMethodResponse": null}}),
    ]
}

/// Runs `text` as a full query over the fixture collection it names and renders the outcome:
/// one compact JSON row per line, the index hint, or the parse error.
pub(crate) fn run_query(text: &str) -> String {
    let query = match query::parse_query(text) {
        Ok(query) => query,
        Err(err) => return format!("error: {err}\n"),
    };
    let documents = match query.from {
        query::Collection::DevicesJobs => job_records(),
        _ => twins(),
    };
    let rows = query.run(&documents);
    let mut out = String::new();
    for row in &rows {
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out.push_str(&format!("({} rows; hint {:?})\n", rows.len(), query.index_hint()));
    out
}

/// Evaluates `text` as a job query condition over the twins and lists the matching deviceIds.
pub(crate) fn run_condition(text: &str) -> String {
    let condition = match query::parse_condition(text) {
        Ok(condition) => condition,
        Err(err) => return format!("error: {err}\n"),
    };
    let matched: Vec<String> = twins()
        .iter()
        .filter(|twin| condition.matches(twin))
        .filter_map(|twin| twin["deviceId"].as_str().map(str::to_owned))
        .collect();
    format!("[{}] hint {:?}\n", matched.join(", "), condition.index_hint())
}
