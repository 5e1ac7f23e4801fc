//! The query table: each query's result over the fixture fleet (tests/common), as data.
//!
//! Rows print one per line as compact JSON, followed by the row count and the index hint.
//! Run with `UPDATE_EXPECT=1` to rewrite the snapshots after an intended change, then review the diff.

mod common;

use expect_test::{expect, Expect};

fn check(query: &str, expected: Expect) {
    expected.assert_eq(&common::run_query(query));
}

#[test]
fn select_and_projection() {
    check(
        "SELECT * FROM devices WHERE deviceId = 'd02'",
        expect![[r#"
        {"deviceId":"d02","status":"disabled","connectionState":"Disconnected","version":2,"tags":{"building":"43","floor":4},"properties":{"desired":{"$version":1},"reported":{"temperature":25,"$version":2}}}
        (1 rows; hint DeviceIds(["d02"]))
    "#]],
    );
    check(
        "SELECT deviceId FROM devices",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d02"}
        {"deviceId":"d03"}
        {"deviceId":"d04"}
        {"deviceId":"d05"}
        {"deviceId":"Sensor-1"}
        {"deviceId":"d07"}
        {"deviceId":"d08"}
        {"deviceId":"d09"}
        {"deviceId":"d10"}
        (10 rows; hint FullScan)
    "#]],
    );
    check("SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Connected'", expect![[r#"
        {"deviceId":"d01","lastActivityTime":"2026-01-02T03:04:05.0000000Z"}
        {"deviceId":"d03"}
        {"deviceId":"Sensor-1"}
        {"deviceId":"d07"}
        {"deviceId":"d10"}
        (5 rows; hint FullScan)
    "#]]);
    check("select devices.deviceId as id, tags.location.city from devices where is_defined(tags.location)", expect![[r#"
        {"id":"d01","city":"Oslo"}
        {"id":"d03","city":"Bergen"}
        (2 rows; hint FullScan)
    "#]]);
    check(
        "SELECT TOP 2 deviceId FROM devices WHERE status = 'enabled'",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d03"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT TOP 0 * FROM devices",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
    check("SELECT properties.reported.temperature FROM devices WHERE properties.reported.temperature > 20", expect![[r#"
        {"temperature":21.5}
        {"temperature":25}
        {"temperature":23}
        (3 rows; hint FullScan)
    "#]]);
    check("SELECT deviceId, properties.reported.$metadata.temperature.$lastUpdated AS updated FROM devices WHERE IS_DEFINED(properties.reported.$metadata.temperature)", expect![[r#"
        {"deviceId":"d01","updated":"2026-01-02T03:04:05.0000000Z"}
        (1 rows; hint FullScan)
    "#]]);
    check("SELECT deviceId, properties.desired.$version AS v FROM devices WHERE properties.desired.$version >= 2", expect![[r#"
        {"deviceId":"d01","v":3}
        {"deviceId":"d10","v":2}
        (2 rows; hint FullScan)
    "#]]);
    check(
        "SELECT deviceId FROM devices.modules WHERE devices.modules.deviceId = 'd01'",
        expect![[r#"
        {"deviceId":"d01"}
        (1 rows; hint DeviceIds(["d01"]))
    "#]],
    );
}

#[test]
fn conditions() {
    check(
        "SELECT deviceId FROM devices WHERE tags.building = '43' AND tags.floor = 3",
        expect![[r#"
        {"deviceId":"d01"}
        (1 rows; hint TagEquals { path: ["building"], value: String("43") })
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.building = '43' OR tags.building = 43",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d02"}
        {"deviceId":"d05"}
        {"deviceId":"d10"}
        (4 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.Building = '43'",
        expect![[r#"
        {"deviceId":"Sensor-1"}
        (1 rows; hint TagEquals { path: ["Building"], value: String("43") })
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.floor != 3",
        expect![[r#"
        {"deviceId":"d02"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.floor <> 3",
        expect![[r#"
        {"deviceId":"d02"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE NOT (tags.floor = 3)",
        expect![[r#"
        {"deviceId":"d02"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.floor < 4 AND tags.floor >= 3",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d03"}
        {"deviceId":"d05"}
        (3 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE deviceId IN ['d01', 'd03', 'nope', 7]",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d03"}
        (2 rows; hint DeviceIds(["d01", "d03", "nope"]))
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.floor NIN [3, 4]",
        expect![[r#"
        {"deviceId":"d07"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.building IN []",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true",
        expect![[r#"
        {"deviceId":"d07"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE properties.reported.battery = null",
        expect![[r#"
        {"deviceId":"d04"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE deviceId > 'd05' AND deviceId <= 'd09'",
        expect![[r#"
        {"deviceId":"d07"}
        {"deviceId":"d08"}
        {"deviceId":"d09"}
        (3 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.zones = ['a', 'b']",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.location = tags.location",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
    check("SELECT deviceId FROM devices WHERE status = 'enabled' AND (tags.floor = 3 OR tags.floor = 5) AND NOT connectionState = 'Disconnected'", expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d03"}
        {"deviceId":"d10"}
        (3 rows; hint FullScan)
    "#]]);
    check(
        "SELECT deviceId FROM devices WHERE properties.reported.temperature + 2 > 24",
        expect![[r#"
        {"deviceId":"d02"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE properties.reported.temperature * 2 - 1 = 49",
        expect![[r#"
        {"deviceId":"d02"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE version % 2 = 1 AND version / 2 > 1",
        expect![[r#"
        {"deviceId":"d05"}
        {"deviceId":"d07"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE -version = -0x6",
        expect![[r#"
        {"deviceId":"d10"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.floor / 0 = 1 OR tags.floor = 5",
        expect![[r#"
        {"deviceId":"d10"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        r#"SELECT deviceId FROM devices WHERE deviceId = "Sensor-1""#,
        expect![[r#"
        {"deviceId":"Sensor-1"}
        (1 rows; hint DeviceIds(["Sensor-1"]))
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE tags.missing = undefined",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
}

#[test]
fn functions() {
    check(
        "SELECT deviceId FROM devices WHERE IS_DEFINED(properties.reported.battery)",
        expect![[r#"
        {"deviceId":"d04"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_NULL(properties.reported.battery) OR IS_NULL(tags)",
        expect![[r#"
        {"deviceId":"d04"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE NOT IS_DEFINED(tags)",
        expect![[r#"
        {"deviceId":"d04"}
        {"deviceId":"d09"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_STRING(tags.floor)",
        expect![[r#"
        {"deviceId":"d07"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE is_number(tags.building)",
        expect![[r#"
        {"deviceId":"d05"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_BOOL(capabilities.iotEdge)",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d07"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_OBJECT(tags.location)",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d03"}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_ARRAY(tags.zones)",
        expect![[r#"
        {"deviceId":"d08"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE IS_PRIMITIVE(properties.reported.temperature)",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d02"}
        {"deviceId":"d03"}
        {"deviceId":"d05"}
        {"deviceId":"d07"}
        {"deviceId":"d10"}
        (6 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'd0')",
        expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d02"}
        {"deviceId":"d03"}
        {"deviceId":"d04"}
        {"deviceId":"d05"}
        {"deviceId":"d07"}
        {"deviceId":"d08"}
        {"deviceId":"d09"}
        (8 rows; hint FullScan)
    "#]],
    );
    check(
        "select deviceId from devices where not startswith(deviceId, 'd') and status = 'enabled'",
        expect![[r#"
        {"deviceId":"Sensor-1"}
        (1 rows; hint FullScan)
    "#]],
    );
    check("SELECT deviceId FROM devices WHERE ENDSWITH(properties.reported.firmware, '.0') AND CONTAINS(properties.reported.firmware, '2')", expect![[r#"
        {"deviceId":"d01"}
        {"deviceId":"d07"}
        (2 rows; hint FullScan)
    "#]]);
    check("SELECT deviceId FROM devices WHERE LOWER(deviceId) = 'sensor-1' OR UPPER(deviceId) = 'D10'", expect![[r#"
        {"deviceId":"Sensor-1"}
        {"deviceId":"d10"}
        (2 rows; hint FullScan)
    "#]]);
    check(
        "SELECT deviceId FROM devices WHERE LENGTH(deviceId) > 3",
        expect![[r#"
        {"deviceId":"Sensor-1"}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices WHERE STARTSWITH(tags.floor, '3')",
        expect![[r#"
        {"deviceId":"d07"}
        (1 rows; hint FullScan)
    "#]],
    );
}

#[test]
fn aggregates() {
    check(
        "SELECT COUNT() FROM devices",
        expect![[r#"
        {"$1":10}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT COUNT() AS numberOfDevices FROM devices WHERE status = 'enabled'",
        expect![[r#"
        {"numberOfDevices":8}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT COUNT() AS n FROM devices WHERE deviceId = 'nope'",
        expect![[r#"
        {"n":0}
        (1 rows; hint DeviceIds(["nope"]))
    "#]],
    );
    check("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status", expect![[r#"
        {"numberOfDevices":8}
        {"status":"Pending","numberOfDevices":1}
        {"status":"Success","numberOfDevices":1}
        (3 rows; hint FullScan)
    "#]]);
    check("SELECT tags.building, COUNT() AS n, MIN(tags.floor) AS lowest, MAX(tags.floor) AS highest FROM devices GROUP BY tags.building", expect![[r#"
        {"n":3}
        {"building":43,"n":1,"lowest":3.0,"highest":3.0}
        {"building":"43","n":3,"lowest":3,"highest":5}
        {"building":"44","n":1,"lowest":3,"highest":3}
        {"building":"45","n":2,"lowest":"3","highest":"3"}
        (5 rows; hint FullScan)
    "#]]);
    check(
        "SELECT status, connectionState, COUNT() FROM devices GROUP BY status, connectionState",
        expect![[r#"
        {"status":"disabled","connectionState":"Disconnected","$1":2}
        {"status":"enabled","connectionState":"Connected","$1":5}
        {"status":"enabled","connectionState":"Disconnected","$1":3}
        (3 rows; hint FullScan)
    "#]],
    );
    check("SELECT SUM(properties.reported.temperature) AS total, AVG(properties.reported.temperature) AS mean, COUNT(), MAX(version) FROM devices", expect![[r#"
        {"total":106.5,"mean":21.3,"$1":10,"$2":6}
        (1 rows; hint FullScan)
    "#]]);
    check(
        "SELECT TOP 1 status, COUNT() AS n FROM devices GROUP BY status",
        expect![[r#"
        {"status":"disabled","n":2}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT status FROM devices GROUP BY status",
        expect![[r#"
        {"status":"disabled"}
        {"status":"enabled"}
        (2 rows; hint FullScan)
    "#]],
    );
    check("SELECT SUM(tags.nothing) AS s, AVG(tags.nothing) AS a, MIN(tags.nothing) AS m FROM devices", expect![[r#"
        {"s":0}
        (1 rows; hint FullScan)
    "#]]);
    check(
        "SELECT MIN(deviceId) AS first, MAX(deviceId) AS last FROM devices",
        expect![[r#"
        {"first":"Sensor-1","last":"d10"}
        (1 rows; hint FullScan)
    "#]],
    );
    check("SELECT tags.building AS b, COUNT() AS n FROM devices WHERE tags.floor = 3 GROUP BY tags.building", expect![[r#"
        {"b":43,"n":1}
        {"b":"43","n":1}
        {"b":"44","n":1}
        (3 rows; hint TagEquals { path: ["floor"], value: Number(3) })
    "#]]);
}

#[test]
fn jobs() {
    check(
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'reboot-43'",
        expect![[r#"
        {"deviceId":"d01","jobId":"reboot-43","jobType":"scheduleDeviceMethod","status":"completed","startTimeUtc":"2016-09-29T18:18:52.7418462","endTimeUtc":"2016-09-29T18:20:52.7418462","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z","outcome":{"deviceMethodResponse":{"status":200,"payload":{"ok":true}}}}
        {"deviceId":"d02","jobId":"reboot-43","jobType":"scheduleDeviceMethod","status":"failed","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:19:56.0000000Z","outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"the device is not connected"}}
        (2 rows; hint JobIds(["reboot-43"]))
    "#]],
    );
    check("SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed' AND devices.jobs.jobType = 'scheduleUpdateTwin'", expect![[r#"
        {"deviceId":"d01","jobId":"twin-1","jobType":"scheduleUpdateTwin","status":"completed","createdDateTimeUtc":"2016-08-01T00:00:00.0000000Z","lastUpdatedDateTimeUtc":"2016-08-01T00:00:01.0000000Z","outcome":{"deviceMethodResponse":null}}
        (1 rows; hint FullScan)
    "#]]);
    check(
        "SELECT * FROM devices.jobs WHERE devices.jobs.createdTimeUtc > '2016-09-01'",
        expect![[r#"
        {"deviceId":"d01","jobId":"reboot-43","jobType":"scheduleDeviceMethod","status":"completed","startTimeUtc":"2016-09-29T18:18:52.7418462","endTimeUtc":"2016-09-29T18:20:52.7418462","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:18:56.8894408Z","outcome":{"deviceMethodResponse":{"status":200,"payload":{"ok":true}}}}
        {"deviceId":"d02","jobId":"reboot-43","jobType":"scheduleDeviceMethod","status":"failed","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:19:56.0000000Z","outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"the device is not connected"}}
        (2 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId IN ['d03'] OR jobId = 'nope'",
        expect![[r#"
        {"deviceId":"d03","jobId":"twin-1","jobType":"scheduleUpdateTwin","status":"pending","createdDateTimeUtc":"2016-08-01T00:00:00.0000000Z","lastUpdatedDateTimeUtc":"2016-08-01T00:00:00.0000000Z","outcome":{"deviceMethodResponse":null}}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT * FROM devices.jobs WHERE devices.jobs.error.code = 'DeviceNotOnline'",
        expect![[r#"
        {"deviceId":"d02","jobId":"reboot-43","jobType":"scheduleDeviceMethod","status":"failed","createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","lastUpdatedDateTimeUtc":"2016-09-29T18:19:56.0000000Z","outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"the device is not connected"}}
        (1 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT * FROM devices.jobs WHERE tags.building = '43'",
        expect![[r#"
        (0 rows; hint FullScan)
    "#]],
    );
    check(
        "SELECT deviceId FROM devices.jobs",
        expect![[r#"
        error: line 1, col 8: expected SELECT * without GROUP BY (devices.jobs supports no projections or aggregates), found 'deviceId'
    "#]],
    );
    check(
        "SELECT COUNT() FROM devices.jobs",
        expect![[r#"
        error: line 1, col 8: expected SELECT * without GROUP BY (devices.jobs supports no projections or aggregates), found 'COUNT'
    "#]],
    );
    check(
        "SELECT * FROM devices.jobs GROUP BY status",
        expect![[r#"
        error: line 1, col 28: expected SELECT * without GROUP BY (devices.jobs supports no projections or aggregates), found 'GROUP'
    "#]],
    );
}

fn check_print(query: &str, expected: Expect) {
    let printed = match query::parse_query(query) {
        Ok(parsed) => parsed.to_string(),
        Err(err) => format!("error: {err}"),
    };
    expected.assert_eq(&printed);
}

#[test]
fn canonical_printing() {
    check_print("select devices.DeviceId as id, TAGS.x from Devices where not tags.a = 1 and (tags.b = 2 or -(3) < tags.c)", expect!["SELECT deviceId AS id, tags.x FROM devices WHERE NOT tags.a = 1 AND (tags.b = 2 OR -(3) < tags.c)"]);
    check_print("SELECT TOP 5 count() AS n, Sum(properties.Reported.t) FROM devices WHERE Status <> 'x' GROUP BY Properties.reported.t", expect!["SELECT TOP 5 COUNT() AS n, SUM(properties.reported.t) FROM devices WHERE status != 'x' GROUP BY properties.reported.t"]);
    check_print("SELECT * FROM devices.jobs WHERE devices.jobs.CreatedTimeUtc > '2016' AND jobId in ['a', \"b\\\"c\", 0x1F, -2.50, 1E3]", expect![[r#"SELECT * FROM devices.jobs WHERE createdDateTimeUtc > '2016' AND jobId IN ['a', 'b"c', 31, -2.5, 1000.0]"#]]);
    check_print("SELECT * FROM devices WHERE (a + b) * c = a + b * c AND NOT (NOT is_defined(x)) AND ((a = 1 OR b = 2) OR c = 3)", expect!["SELECT * FROM devices WHERE (a + b) * c = a + b * c AND NOT NOT IS_DEFINED(x) AND ((a = 1 OR b = 2) OR c = 3)"]);
}
