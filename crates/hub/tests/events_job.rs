//! Issue 8: a 10,000-device job run by the real jobs engine, watched through the event stream by a
//! plain MQTT subscriber: every device's terminal record arrives, exactly once, with nothing dropped.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use hub::broker::BrokerConfig;
use serde_json::json;
use test_support::events::Subscriber;
use test_support::jobs::twin_job;
use test_support::sas::{service_token, OWNER_POLICY};
use test_support::spawn_hub_with;

const DEVICES: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_record_of_a_10000_device_job_arrives() {
    let hub = spawn_hub_with(|cfg| {
        cfg.events = Some(BrokerConfig::new("127.0.0.1:0".parse().unwrap()));
    })
    .await;
    futures::stream::iter(0..DEVICES)
        .for_each_concurrent(256, |idx| {
            let hub = &hub;
            async move {
                hub.add_device(&format!("fleet-{idx:05}"), true).await;
            }
        })
        .await;
    let token = service_token(hub.host(), hub.owner_key(), OWNER_POLICY, 600);
    let mut backend = Subscriber::connect(hub.events_addr(), OWNER_POLICY, &token).await.unwrap();
    backend.subscribe("jobs/rollout-10k/devices").await;

    // A twin job needs no connected device: all 10,000 records turn terminal.
    let created = hub.put_job("rollout-10k", twin_job("*", json!({}))).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let mut seen = HashSet::new();
    while seen.len() < DEVICES {
        let event = backend
            .next_within(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("only {} of {DEVICES} device records arrived", seen.len()));
        assert_eq!(event.payload["jobId"], "rollout-10k", "{}", event.payload);
        assert_eq!(event.payload["status"], "completed", "{}", event.payload);
        let device = event.payload["deviceId"].as_str().unwrap().to_owned();
        assert!(seen.insert(device.clone()), "{device} arrived twice");
    }
    let done = hub.wait_job("rollout-10k", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], DEVICES);
    assert_eq!(hub.handle.events().stats().dropped, 0);
    hub.stop().await;
}
