//! Behaviours end to end against the real hub: initial reported properties, desired acks (with
//! failures as the plan decides), the built-in reboot (answer, down, back, `lastReboot`) and a
//! scheduled outage (the chosen devices disconnect for the window and come back).

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns fail the test on a broken setup step"
)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleet::behaviour::desired::DesiredDecision;
use fleet::{FleetConfig, FleetStats, Shard, Target};
use reqwest::Method;
use serde_json::{json, Value};
use support::TestHub;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PROFILE: &str = r#"
[fleet]
connect_rate = 100

[[group]]
name = "g"
count = 10
id = "dev-{n:02}"
reported = { firmware = "1.0" }
[group.methods.reboot]
latency = { dist = "fixed", ms = 10 }
response = { rebooting = true }
reboot = { down_for_s = 1 }
[group.desired]
latency = { dist = "fixed", ms = 50 }
failure_probability = 0.4
[group.connectivity]
outages = [{ at_s = 8, for_s = 2, share = 0.5 }]
"#;

async fn poll<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn twin(hub: &TestHub, id: &str) -> Value {
    hub.rest(Method::GET, &format!("/twins/{id}"), None, &[]).await.2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_desired_reboot_and_outage() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(dir.path()).await;
    let plans = fleet::profile::parse(PROFILE, Path::new("b.toml"))
        .unwrap()
        .expand(11, Shard::ALL)
        .unwrap();
    let record = dir.path().join("record.jsonl");
    let mut cfg = FleetConfig::new(
        Target::Registry { service: hub.service(), rest_url: Some(format!("http://{}", hub.http)) },
        100.0,
    );
    cfg.mqtt_addr = Some(hub.mqtt);
    cfg.mqtt_tls = false;
    cfg.record = Some(record.clone());
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let run = tracker.spawn(fleet::run(cfg, plans.clone(), stop.clone(), stats.clone()));
    poll("all connected", || async { stats.snapshot().connected == 10 }).await;

    // Initial reported properties arrive from the devices themselves.
    for plan in &plans {
        let id = plan.device_id.to_string();
        poll("initial reported", || async {
            twin(&hub, &id).await["properties"]["reported"]["firmware"] == "1.0"
        })
        .await;
    }

    // Desired patches are acknowledged (or not) exactly as the plan says for that $version.
    let mut acks = Vec::new();
    for plan in &plans {
        let (status, _, body) = hub
            .rest(
                Method::PATCH,
                &format!("/twins/{}", plan.device_id),
                Some(json!({"properties": {"desired": {"interval": 30}}})),
                &[("If-Match", "\"*\"")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let version = body["properties"]["desired"]["$version"].as_u64().unwrap();
        acks.push((plan.device_id.to_string(), version, plan.desired_decision(version).unwrap()));
    }
    poll("desired decisions", || async {
        stats.snapshot().desired_acked + stats.snapshot().desired_failed == 10
    })
    .await;
    let failures = acks.iter().filter(|(_, _, d)| *d == DesiredDecision::Fail).count();
    assert!(failures > 0 && failures < 10, "the seed gives a mix: {acks:?}");
    assert_eq!(stats.snapshot().desired_failed, failures as u64);
    for (id, version, decision) in &acks {
        let reported = twin(&hub, id).await["properties"]["reported"].clone();
        match decision {
            DesiredDecision::Ack { .. } => {
                assert_eq!(reported["desiredVersionAcked"], json!(version), "{id}: {reported}");
                assert_eq!(reported["interval"], 30);
            }
            DesiredDecision::Fail => {
                assert!(reported.get("desiredVersionAcked").is_none(), "{id}: {reported}")
            }
        }
    }

    // Reboot: the call is answered, the device goes away for a second, comes back, reports lastReboot.
    let rebooted =
        plans.iter().find(|p| p.schedule().outages().is_empty()).unwrap().device_id.to_string();
    let (status, _, answer) = hub
        .rest(
            Method::POST,
            &format!("/twins/{rebooted}/methods"),
            Some(json!({"methodName": "reboot", "responseTimeoutInSeconds": 5})),
            &[],
        )
        .await;
    assert_eq!(
        (status, answer.clone()),
        (200, json!({"status": 200, "payload": {"rebooting": true}}))
    );
    poll("lastReboot", || async {
        twin(&hub, &rebooted).await["properties"]["reported"]["lastReboot"].is_string()
    })
    .await;
    assert_eq!(stats.snapshot().reboots, 1);

    // Outage (8 s .. 10 s into the run): wait until every affected device has reconnected.
    let in_outage = plans.iter().filter(|p| !p.schedule().outages().is_empty()).count();
    poll("outage end", || async { stats.snapshot().connects >= 10 + 1 + in_outage as u64 }).await;
    stop.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.stats.connected, 0);

    let lines: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events = |id: &str, event: &str| {
        lines
            .iter()
            .filter(|l| l["device"] == id && l["event"] == event)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(events(&rebooted, "reboot").len(), 1);
    assert_eq!(events(&rebooted, "connected").len(), 2, "connected, rebooted, connected again");
    for plan in &plans {
        let id = plan.device_id.to_string();
        let outage_drops: Vec<Value> =
            events(&id, "disconnected").into_iter().filter(|l| l["reason"] == "schedule").collect();
        if plan.schedule().outages().is_empty() {
            assert!(outage_drops.is_empty(), "{id} is not in the outage: {outage_drops:?}");
        } else {
            assert_eq!(outage_drops.len(), 1, "{id} drops once for the outage");
            let t = outage_drops[0]["t_ms"].as_u64().unwrap();
            assert!((8000..8500).contains(&t), "{id} dropped at {t} ms");
            let back = events(&id, "connected")
                .iter()
                .filter_map(|l| l["t_ms"].as_u64())
                .any(|t| t >= 10_000);
            assert!(back, "{id} reconnects after the outage");
        }
    }
    hub.stop().await;
}
