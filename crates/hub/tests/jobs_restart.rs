//! A hub that dies in the middle of a job and starts again on the same data directory.
//!
//! The "crash" runs the hub on its own tokio runtime and drops that runtime with
//! `shutdown_background`: every hub task stops at whatever await it was in, with no drain, and only
//! what the store had already been handed survives, as after SIGKILL. The restarted hub must resume
//! the job to a terminal state with exactly one record per device, statistics that add up, no method
//! invoked twice on a device, and each twin patched once.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use hub::jobs::{JobsConfig, Tier, TierLimits};
use reqwest::Method;
use serde_json::{json, Value};
use test_support::jobs::{method_job, twin_job};
use test_support::sim::{Behaviour, Fleet};
use test_support::{spawn_hub_in, DeviceKeys, TestHub};
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// Starts a hub on a runtime of its own, so the test can kill it.
async fn start_killable(dir: &Path, jobs: JobsConfig) -> (Runtime, TestHub) {
    let dir = dir.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hub = runtime.block_on(spawn_hub_in(&dir, |cfg| cfg.jobs = jobs));
        let _ = tx.send((runtime, hub));
    });
    rx.await.unwrap()
}

/// Polls the job until `done(job)` holds.
async fn wait_until(
    hub: &TestHub,
    job_id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = hub.get_job(job_id).await.body;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {job_id} never got to {what}: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counts(job: &Value) -> (u64, u64, u64, u64, u64) {
    let stats = &job["deviceJobStatistics"];
    let get = |key: &str| stats[key].as_u64().unwrap();
    (
        get("deviceCount"),
        get("succeededCount"),
        get("failedCount"),
        get("runningCount"),
        get("pendingCount"),
    )
}

async fn connect_all(hub: &TestHub, ids: &[String], behaviour: Behaviour) -> Fleet {
    let mut fleet = Fleet::new();
    for id in ids {
        let key = DeviceKeys::for_device(id).primary;
        hub.connect_device(&mut fleet, id, &key, behaviour).await;
    }
    fleet
}

#[tokio::test]
async fn method_job_survives_a_crash() {
    const N: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let cfg = JobsConfig {
        max_in_flight: std::num::NonZeroUsize::new(8).unwrap(),
        ..JobsConfig::default()
    };
    let (runtime, hub) = start_killable(dir.path(), cfg.clone()).await;
    let ids: Vec<String> = (0..N).map(|idx| format!("crash-m{idx:03}")).collect();
    for id in &ids {
        hub.add_device(id, true).await;
    }
    let slow = Behaviour::Answer { status: 200, delay: Duration::from_millis(40) };
    let before = connect_all(&hub, &ids, slow).await;
    let body = method_job(
        "*",
        json!({"cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 30}}),
    );
    assert_eq!(hub.put_job("crash-method", body).await.status, 200);
    let mid = wait_until(&hub, "crash-method", "a third of its devices", |job| {
        counts(job).1 >= (N / 3) as u64
    })
    .await;
    assert_eq!(mid["status"], "running");
    runtime.shutdown_background();
    // The old handle still holds the store; dropping it lets the dead hub's writer finish.
    drop(hub);
    let calls_before: Vec<u32> = ids.iter().map(|id| before.calls(id)).collect();
    before.stop().await;

    let hub = spawn_hub_in(dir.path(), |hub_cfg| hub_cfg.jobs = cfg).await;
    let after = connect_all(&hub, &ids, slow).await;
    let done = hub.wait_job("crash-method", "completed").await;
    let (devices, succeeded, failed, running, pending) = counts(&done);
    assert_eq!((devices, running, pending), (N as u64, 0, 0), "{done}");
    assert_eq!(succeeded + failed, N as u64);
    let records = hub.device_jobs("crash-method").await;
    assert_eq!(records.len(), N, "one record per device");
    let mut seen: Vec<&str> = records.iter().map(|r| r["deviceId"].as_str().unwrap()).collect();
    seen.dedup();
    assert_eq!(seen.len(), N);
    for (id, calls_before) in ids.iter().zip(calls_before) {
        let total = calls_before + after.calls(id);
        let record = records.iter().find(|r| r["deviceId"] == id.as_str()).unwrap();
        assert!(total <= 1, "{id} was invoked {total} times");
        match record["status"].as_str().unwrap() {
            "completed" => assert_eq!(total, 1, "{id} completed without being called"),
            "failed" => assert_eq!(record["error"]["code"], "JobInterrupted", "{record}"),
            other => panic!("{id} ended {other}"),
        }
    }
    assert!(failed <= 8, "only calls in flight at the crash may fail: {failed}");
    after.stop().await;
    hub.stop().await;
}

#[tokio::test]
async fn twin_job_survives_a_crash_and_patches_each_twin_once() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    // The free tier paces job operations at 10/s, so the job is still running when the hub dies.
    let cfg = JobsConfig {
        tier: Some(TierLimits::new(Tier::Free, NonZeroU32::new(1).unwrap())),
        ..JobsConfig::default()
    };
    let (runtime, hub) = start_killable(dir.path(), cfg.clone()).await;
    let ids: Vec<String> = (0..N).map(|idx| format!("crash-t{idx:02}")).collect();
    for id in &ids {
        hub.add_device(id, true).await;
    }
    let version_before = hub.call(Method::GET, &format!("/twins/{}", ids[0]), None).await.body
        ["properties"]["desired"]["$version"]
        .as_u64()
        .unwrap();
    assert_eq!(hub.put_job("crash-twin", twin_job("*", json!({}))).await.status, 200);
    wait_until(&hub, "crash-twin", "ten devices", |job| counts(job).1 >= 10).await;
    runtime.shutdown_background();
    // The old handle still holds the store; dropping it lets the dead hub's writer finish.
    drop(hub);

    let hub = spawn_hub_in(dir.path(), |hub_cfg| hub_cfg.jobs = cfg).await;
    let done = hub.wait_job("crash-twin", "completed").await;
    assert_eq!(counts(&done), (N as u64, N as u64, 0, 0, 0), "{done}");
    let records = hub.device_jobs("crash-twin").await;
    assert_eq!(records.len(), N);
    for id in &ids {
        let twin = hub.call(Method::GET, &format!("/twins/{id}"), None).await.body;
        assert_eq!(twin["properties"]["desired"]["fw"], "2.0", "{twin}");
        assert_eq!(
            twin["properties"]["desired"]["$version"].as_u64(),
            Some(version_before + 1),
            "{id} patched once: {twin}"
        );
    }
    hub.stop().await;
}
