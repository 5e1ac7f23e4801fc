//! A 2,000-device fleet against the real hub (plain MQTT and HTTP on port 0): a method job's
//! per-device outcomes match what the profile implies, and a second run with the same seed (which
//! re-registers the same devices, exercising the 409 path) produces the same outcomes.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns fail the test on a broken setup step"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod support;

use fleet::behaviour::method::MethodDecision;
use fleet::{DevicePlan, FleetConfig, FleetStats, Shard, Target};
use serde_json::{json, Value};
use support::TestHub;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const DEVICES: u64 = 2000;
const SEED: u64 = 2026;

const PROFILE: &str = r#"
[fleet]
connect_rate = 2000

[[group]]
name = "floor"
count = 2000
id = "b{building}-f{floor}-{n:04}"
tags = { building = 43, floor = { cycle = [1, 2, 3, 4] } }
reported = { firmware = "1.0.0" }
[group.methods.ping]
latency = { dist = "uniform", min_ms = 0, max_ms = 40 }
no_answer = 0.05
error = { probability = 0.1, status = 503, payload = { message = "busy", device = "{deviceId}" } }
response = { ok = true, device = "{deviceId}", floor = "{floor}" }
[group.connectivity]
never_connects = 0.1
"#;

/// What the profile says each device does with the first `ping`.
fn expected(plans: &[DevicePlan]) -> BTreeMap<String, String> {
    plans
        .iter()
        .map(|plan| {
            let outcome = if plan.schedule().never_connects() {
                "failed DeviceNotOnline".to_owned()
            } else {
                match plan.method_decision("ping", 0, &json!({"n": 1})) {
                    MethodDecision::NoAnswer => "failed GatewayTimeout".to_owned(),
                    MethodDecision::Answer { status, payload, .. } => {
                        format!("completed {status} {payload}")
                    }
                }
            };
            (plan.device_id.to_string(), outcome)
        })
        .collect()
}

/// Runs the fleet until it is fully connected, runs the job, stops the fleet; returns the outcomes.
async fn run_once(
    hub: &TestHub,
    plans: Vec<DevicePlan>,
    job_id: &str,
    record: &Path,
) -> BTreeMap<String, String> {
    let connecting = plans.iter().filter(|p| !p.schedule().never_connects()).count() as u64;
    let mut cfg = FleetConfig::new(
        Target::Registry { service: hub.service(), rest_url: Some(format!("http://{}", hub.http)) },
        2000.0,
    );
    cfg.mqtt_addr = Some(hub.mqtt);
    cfg.mqtt_tls = false;
    cfg.record = Some(record.to_path_buf());
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let run = tracker.spawn(fleet::run(cfg, plans, stop.clone(), stats.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.snapshot().connected < connecting {
        assert!(Instant::now() < deadline, "fleet did not connect: {:?}", stats.snapshot());
        assert!(!run.is_finished(), "fleet run ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcomes = hub.ping_job(job_id).await;
    stop.cancel();
    let report = run.await.unwrap().unwrap();
    let snap = report.stats;
    assert_eq!(snap.devices, DEVICES);
    assert_eq!(snap.registered, DEVICES);
    assert_eq!(snap.calls, connecting, "{snap:?}");
    assert_eq!(snap.calls_ok + snap.calls_error + snap.calls_silent, snap.calls);
    assert_eq!(snap.connected, 0, "everything disconnected at the end");
    assert_eq!(snap.never_connect, DEVICES - connecting);
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_job_outcomes_match_the_profile_and_repeat_under_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let profile = fleet::profile::parse(PROFILE, Path::new("test.toml")).unwrap();
    let hub = TestHub::start(dir.path()).await;

    let plans = profile.expand(SEED, Shard::ALL).unwrap();
    let expected = expected(&plans);
    let kinds = |outcomes: &BTreeMap<String, String>| {
        let mut counts = BTreeMap::new();
        for o in outcomes.values() {
            *counts
                .entry(o.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .or_insert(0) += 1;
        }
        counts
    };
    // The profile's mix shows up: some of every kind.
    let expected_kinds = kinds(&expected);
    assert_eq!(expected_kinds.len(), 4, "{expected_kinds:?}");

    let record = dir.path().join("first.jsonl");
    let first = run_once(&hub, plans, "ping-first", &record).await;
    assert_eq!(first.len(), DEVICES as usize);
    let mismatches: Vec<String> = expected
        .iter()
        .filter(|(id, o)| first.get(*id) != Some(*o))
        .map(|(id, o)| format!("{id}: expected {o}, got {:?}", first.get(id)))
        .take(10)
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // Ground truth: one method line per device that connected, with the same statuses.
    let text = std::fs::read_to_string(&record).unwrap();
    let methods: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "method")
        .collect();
    assert_eq!(methods.len(), expected.values().filter(|o| !o.contains("DeviceNotOnline")).count());
    for line in &methods {
        let want = &expected[line["device"].as_str().unwrap()];
        let got = match line["status"].as_i64() {
            Some(status) => format!("completed {status} {}", line["payload"]),
            None => "failed GatewayTimeout".to_owned(),
        };
        assert_eq!(&got, want);
    }

    // Same profile, same seed, a fresh run (devices already exist): the same per-device outcomes.
    let plans = profile.expand(SEED, Shard::ALL).unwrap();
    let second = run_once(&hub, plans, "ping-second", &dir.path().join("second.jsonl")).await;
    assert_eq!(first, second);
    hub.stop().await;
}
