//! Jobs v2 through REST against the real hub, with simulated MQTT devices on the other side:
//! method and twin jobs, offline (404103) and late (504101) devices, maxExecutionTime, cancel,
//! duplicate ids, the S1 active-job cap, listing filters and paging, and `devices.jobs` queries.

use std::num::NonZeroU32;
use std::time::Duration;

use hub::jobs::{JobsConfig, Tier, TierLimits};
use reqwest::Method;
use serde_json::{json, Value};
use test_support::jobs::{method_job, start_in, summary, twin_job};
use test_support::sim::{Behaviour, Fleet};
use test_support::{spawn_hub, spawn_hub_with, wait_for, Reply, WAIT};

const ANSWER: Behaviour = Behaviour::Answer { status: 200, delay: Duration::ZERO };

fn stats(job: &Value) -> Value {
    job["deviceJobStatistics"].clone()
}

#[tokio::test]
async fn method_job_on_all_devices_with_offline_and_late_ones() {
    let hub = spawn_hub().await;
    let mut fleet = Fleet::new();
    for id in ["on-1", "on-2", "on-3"] {
        let key = hub.add_device(id, true).await.primary;
        hub.connect_device(&mut fleet, id, &key, ANSWER).await;
    }
    let key = hub.add_device("late", true).await.primary;
    hub.connect_device(&mut fleet, "late", &key, Behaviour::Silent).await;
    hub.add_device("off-1", true).await;
    hub.add_device("off-2", true).await;

    let body = method_job(
        "*",
        json!({"cloudToDeviceMethod": {"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0}}),
    );
    let created = hub.put_job("all-devices", body).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.body["status"], "queued");
    assert!(created.header("content-type").unwrap().starts_with("application/json"));
    let done = hub.wait_job("all-devices", "completed").await;
    assert_eq!(
        stats(&done),
        json!({"deviceCount": 6, "failedCount": 3, "succeededCount": 3, "runningCount": 0, "pendingCount": 0})
    );
    assert_eq!(done["cloudToDeviceMethod"]["methodName"], "reboot");

    let records = hub.device_jobs("all-devices").await;
    assert_eq!(
        summary(&records),
        [
            "late failed GatewayTimeout",
            "off-1 failed DeviceNotOnline",
            "off-2 failed DeviceNotOnline",
            "on-1 completed -",
            "on-2 completed -",
            "on-3 completed -"
        ]
    );
    let on1 = records.iter().find(|r| r["deviceId"] == "on-1").unwrap();
    assert_eq!(
        on1["outcome"]["deviceMethodResponse"],
        json!({"status": 200, "payload": {"echo": {"delay": 1}}})
    );
    assert_eq!(on1["jobType"], "scheduleDeviceMethod");
    for id in ["on-1", "on-2", "on-3", "late"] {
        assert_eq!(fleet.calls(id), 1, "{id} is called once");
    }
    fleet.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn twin_job_by_tag_reaches_connected_and_offline_devices() {
    let hub = spawn_hub().await;
    let mut fleet = Fleet::new();
    for (id, building) in [("b43-on", "43"), ("b43-off", "43"), ("b44-on", "44")] {
        let key = hub.add_device(id, true).await.primary;
        let tag = hub
            .call_with(
                Method::PATCH,
                &format!("/twins/{id}"),
                Some(json!({"tags": {"building": building}})),
                &[("If-Match", "\"*\"")],
            )
            .await;
        assert_eq!(tag.status, 200, "{tag:?}");
        if id.ends_with("-on") {
            hub.connect_device(&mut fleet, id, &key, ANSWER).await;
        }
    }
    let created = hub.put_job("twin-43", twin_job("tags.building = '43'", json!({}))).await;
    assert_eq!(created.status, 200, "{created:?}");
    let done = hub.wait_job("twin-43", "completed").await;
    assert_eq!(
        stats(&done),
        json!({"deviceCount": 2, "failedCount": 0, "succeededCount": 2, "runningCount": 0, "pendingCount": 0})
    );
    assert_eq!(done["updateTwin"]["etag"], "*");
    assert_eq!(
        summary(&hub.device_jobs("twin-43").await),
        ["b43-off completed -", "b43-on completed -"]
    );
    for id in ["b43-on", "b43-off"] {
        let twin = hub.call(Method::GET, &format!("/twins/{id}"), None).await.body;
        assert_eq!(twin["properties"]["desired"]["fw"], "2.0", "{twin}");
        assert_eq!(twin["tags"], json!({"building": "43", "rolled": "yes"}));
    }
    let untouched = hub.call(Method::GET, "/twins/b44-on", None).await.body;
    assert!(untouched["properties"]["desired"].get("fw").is_none(), "{untouched}");
    wait_for("the desired push", WAIT, || fleet.patches("b43-on").len() == 1).await;
    let patch = &fleet.patches("b43-on")[0];
    assert_eq!(patch["fw"], "2.0");
    assert!(patch["$version"].is_u64(), "{patch}");
    assert!(fleet.patches("b44-on").is_empty());
    fleet.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn max_execution_time_fails_what_is_left() {
    let hub = spawn_hub().await;
    let mut fleet = Fleet::new();
    let key = hub.add_device("quick", true).await.primary;
    hub.connect_device(&mut fleet, "quick", &key, ANSWER).await;
    let key = hub.add_device("slow", true).await.primary;
    hub.connect_device(&mut fleet, "slow", &key, Behaviour::Silent).await;
    let body = method_job(
        "*",
        json!({"maxExecutionTimeInSeconds": 1, "cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 60}}),
    );
    assert_eq!(hub.put_job("expiring", body).await.status, 200);
    let started = tokio::time::Instant::now();
    let done = hub.wait_job("expiring", "completed").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the job ended at its maxExecutionTime, not the method timeout"
    );
    assert_eq!(stats(&done)["failedCount"], 1);
    assert_eq!(
        summary(&hub.device_jobs("expiring").await),
        ["quick completed -", "slow failed JobExpired"]
    );
    fleet.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn cancel_duplicate_and_missing_jobs() {
    let hub = spawn_hub().await;
    let mut fleet = Fleet::new();
    let key = hub.add_device("c1", true).await.primary;
    hub.connect_device(&mut fleet, "c1", &key, Behaviour::Silent).await;

    let scheduled =
        hub.put_job("later", method_job("*", json!({"startTime": start_in(600)}))).await;
    assert_eq!(scheduled.body["status"], "queued");
    assert_eq!(hub.get_job("later").await.body["status"], "scheduled");
    let cancelled = hub.cancel_job("later").await;
    assert_eq!((cancelled.status, cancelled.body["status"].clone()), (200, json!("cancelled")));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(hub.get_job("later").await.body["status"], "cancelled");
    assert_eq!(fleet.calls("c1"), 0, "a cancelled job never runs");

    let running = hub.put_job("busy", method_job("*", json!({"maxExecutionTimeInSeconds": 2, "cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 30}}))).await;
    assert_eq!(running.status, 200);
    hub.wait_job("busy", "running").await;
    let refused = hub.cancel_job("busy").await;
    assert_eq!(refused.error(), "412 JobRunPreconditionFailed");
    let message = refused.body["Message"].as_str().unwrap();
    assert!(message.contains("cannot be cancelled: it is running"), "{message}");

    let duplicate = hub.put_job("later", twin_job("*", json!({}))).await;
    assert_eq!(duplicate.error(), "409 JobAlreadyExists");
    assert_eq!(hub.get_job("no-such-job").await.error(), "404 JobNotFound");
    assert_eq!(hub.cancel_job("no-such-job").await.error(), "404 JobNotFound");
    let bad_type =
        hub.put_job("legacy", json!({"type": "scheduleTwinUpdate", "queryCondition": "*"})).await;
    assert_eq!(bad_type.error(), "400 GenericBadRequest");
    let bad_id = hub.put_job("not_valid", twin_job("*", json!({}))).await;
    assert_eq!(bad_id.error(), "400 ArgumentInvalid");
    let no_etag = hub.put_job("no-etag", json!({"type": "scheduleUpdateTwin", "updateTwin": {"tags": {"a": 1}}, "queryCondition": "*"})).await;
    assert_eq!(no_etag.error(), "400 ArgumentInvalid");
    hub.wait_job("busy", "completed").await;
    fleet.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn s1_allows_one_active_job() {
    let tier = TierLimits::new(Tier::S1, NonZeroU32::new(1).unwrap());
    let hub =
        spawn_hub_with(|cfg| cfg.jobs = JobsConfig { tier: Some(tier), ..JobsConfig::default() })
            .await;
    hub.add_device("s1-dev", true).await;
    let first =
        hub.put_job("first", twin_job("*", json!({"startTime": start_in(3_600_000)}))).await;
    assert_eq!(first.status, 200);
    let second = hub.put_job("second", twin_job("*", json!({}))).await;
    assert_eq!(second.error(), "429 ThrottlingMaxActiveJobCountExceeded");
    assert_eq!(hub.cancel_job("first").await.status, 200);
    let second = hub.put_job("second", twin_job("*", json!({}))).await;
    assert_eq!(second.status, 200, "{second:?}");
    hub.wait_job("second", "completed").await;
    hub.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let hub = spawn_hub().await;
    for idx in 0..5 {
        let body = if idx < 3 {
            method_job("*", json!({"startTime": start_in(3_600_000)}))
        } else {
            twin_job("*", json!({}))
        };
        assert_eq!(hub.put_job(&format!("list-{idx}"), body).await.status, 200);
    }
    hub.wait_job("list-4", "completed").await;
    hub.wait_job("list-3", "completed").await;
    let ids = |reply: &Reply| {
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["jobId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let methods = hub
        .call(Method::GET, "/jobs/v2/query?jobType=SCHEDULEDEVICEMETHOD&jobStatus=Scheduled", None)
        .await;
    assert_eq!(methods.status, 200, "{methods:?}");
    assert_eq!(ids(&methods), ["list-0", "list-1", "list-2"]);
    assert_eq!(methods.header("x-ms-item-type"), Some("jobResponse"));
    assert_eq!(methods.header("x-ms-continuation"), None);
    let completed = hub.call(Method::GET, "/jobs/v2/query?jobStatus=completed", None).await;
    assert_eq!(ids(&completed), ["list-3", "list-4"]);

    // Paging through headers, as Node and C# do.
    let first =
        hub.call_with(Method::GET, "/jobs/v2/query", None, &[("x-ms-max-item-count", "2")]).await;
    assert_eq!(ids(&first), ["list-0", "list-1"]);
    let token = first.header("x-ms-continuation").expect("more pages").to_owned();
    let second = hub
        .call_with(
            Method::GET,
            "/jobs/v2/query",
            None,
            &[("x-ms-max-item-count", "2"), ("x-ms-continuation", &token)],
        )
        .await;
    assert_eq!(ids(&second), ["list-2", "list-3"]);
    // Paging through query parameters, as the docs show.
    let token = second.header("x-ms-continuation").expect("more pages").to_owned();
    let third = hub
        .call(Method::GET, &format!("/jobs/v2/query?pageSize=2&continuationToken={token}"), None)
        .await;
    assert_eq!(ids(&third), ["list-4"]);
    assert_eq!(third.header("x-ms-continuation"), None);

    let bad = hub.call(Method::GET, "/jobs/v2/query?jobStatus=sleeping", None).await;
    assert_eq!(bad.error(), "400 ArgumentInvalid");
    hub.stop().await;
}
