//! Scale check of the registry and store (ignored by default; run with
//! `cargo test -p hub --release --test store_throughput -- --ignored --nocapture`):
//! 100,000 devices, then a job-style forced twin patch on all of them, concurrently and in batches.

use std::sync::Arc;

use hub::registry::Registry;
use hub::store::Store;
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

const N_DEVICES: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "scale run: 100k devices"]
async fn hundred_thousand_twins() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = TaskTracker::new();
    let store = Store::open(&dir.path().join("scale.db"), &tracker).unwrap();
    let registry = Registry::open(store.clone()).await.unwrap();
    let ids: Arc<Vec<DeviceId>> = Arc::new(
        (0..N_DEVICES).map(|idx| DeviceId::new(format!("dev{idx:06}")).unwrap()).collect(),
    );

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..64 {
        let (registry, ids) = (registry.clone(), ids.clone());
        set.spawn(async move {
            for id in ids.iter().skip(chunk).step_by(64) {
                registry.create_device(id, &DeviceRequest::default()).await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    let created = started.elapsed();
    println!(
        "created {N_DEVICES} devices in {created:?} ({:.0}/s)",
        N_DEVICES as f64 / created.as_secs_f64()
    );

    let patch = TwinPatch::parse(
        &json!({"tags": {"wave": 1}, "properties": {"desired": {"fw": "2.0"}}}),
        ReportedInPatch::Ignore,
    )
    .unwrap();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..256 {
        let (registry, ids, patch) = (registry.clone(), ids.clone(), patch.clone());
        set.spawn(async move {
            for id in ids.iter().skip(chunk).step_by(256) {
                registry.update_twin_forced(id, &patch).await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
    let single = started.elapsed();
    println!(
        "forced twin patch, one call per device: {N_DEVICES} in {single:?} ({:.0}/s)",
        N_DEVICES as f64 / single.as_secs_f64()
    );

    let patch = TwinPatch::parse(&json!({"tags": {"wave": 2}}), ReportedInPatch::Ignore).unwrap();
    let started = Instant::now();
    for chunk in ids.chunks(1000) {
        for (_, outcome) in registry.update_twins_forced(chunk, &patch).await {
            outcome.unwrap();
        }
    }
    let batched = started.elapsed();
    println!(
        "forced twin patch, batches of 1000: {N_DEVICES} in {batched:?} ({:.0}/s)",
        N_DEVICES as f64 / batched.as_secs_f64()
    );

    let condition = query::parse_condition("tags.wave = 2").unwrap();
    let started = Instant::now();
    assert_eq!(registry.matching_device_ids(&condition).len(), N_DEVICES);
    println!("matching_device_ids(tags.wave = 2) over {N_DEVICES}: {:?}", started.elapsed());
    let by_id = query::parse_condition("deviceId IN ['dev000001', 'dev099999']").unwrap();
    let started = Instant::now();
    assert_eq!(registry.matching_device_ids(&by_id).len(), 2);
    println!("matching_device_ids(deviceId IN [..2]): {:?}", started.elapsed());
    let scan = query::parse_condition("properties.desired.fw = '2.0'").unwrap();
    let started = Instant::now();
    assert_eq!(registry.matching_device_ids(&scan).len(), N_DEVICES);
    println!("matching_device_ids(full scan) over {N_DEVICES}: {:?}", started.elapsed());

    store.close().await;
    drop(registry);
    let tracker2 = TaskTracker::new();
    let started = Instant::now();
    let reopened = Registry::open(Store::open(&dir.path().join("scale.db"), &tracker2).unwrap())
        .await
        .unwrap();
    println!("reloaded {} devices in {:?}", reopened.device_count(), started.elapsed());
    assert_eq!(reopened.device_count(), N_DEVICES);
}
