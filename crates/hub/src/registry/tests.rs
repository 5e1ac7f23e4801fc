//! Unit tests of the registry: persistence ordering, tombstones, activity flushes, forced patches,
//! condition matching through the indexes.

use protocol::device::DeviceRequest;
use protocol::twin::{ReportedInPatch, TwinPatch};
use serde_json::json;
use tokio_util::task::TaskTracker;

use super::*;

async fn open(dir: &std::path::Path) -> (Registry, TaskTracker) {
    let tracker = TaskTracker::new();
    let store = Store::open(&dir.join("r.db"), &tracker).unwrap();
    (Registry::open(store).await.unwrap(), tracker)
}

async fn reopen(
    registry: Registry,
    tracker: TaskTracker,
    dir: &std::path::Path,
) -> (Registry, TaskTracker) {
    registry.store().close().await;
    tracker.close();
    tracker.wait().await;
    open(dir).await
}

fn id(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap()
}

fn patch(body: serde_json::Value) -> TwinPatch {
    TwinPatch::parse(&body, ReportedInPatch::Ignore).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_persist_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tracker) = open(dir.path()).await;
    registry.create_device(&id("p1"), &DeviceRequest::default()).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for idx in 0..200 {
        let registry = registry.clone();
        set.spawn(async move {
            let body = patch(json!({"properties": {"desired": {format!("k{idx}"): idx}}}));
            registry.update_twin_forced(&id("p1"), &body).await.unwrap();
        });
    }
    while set.join_next().await.is_some() {}
    let before = registry.get_twin(&id("p1")).unwrap();
    assert_eq!(before.properties.desired["$version"], 201);
    let (registry, _tracker) = reopen(registry, tracker, dir.path()).await;
    assert_eq!(registry.get_twin(&id("p1")).unwrap(), before);
}

#[tokio::test]
async fn deleted_devices_stay_deleted_and_ids_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tracker) = open(dir.path()).await;
    registry.create_device(&id("gone"), &DeviceRequest::default()).await.unwrap();
    registry.update_twin_forced(&id("gone"), &patch(json!({"tags": {"a": 1}}))).await.unwrap();
    registry.delete_device(&id("gone"), &IfMatch::Any).await.unwrap();
    let err = registry
        .update_twin_forced(&id("gone"), &patch(json!({"tags": {"a": 2}})))
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::DeviceNotFound);
    let condition = query::parse_condition("tags.a = 1").unwrap();
    assert!(
        registry.matching_device_ids(&condition).is_empty(),
        "the tag index forgets deleted devices"
    );
    let (registry, tracker) = reopen(registry, tracker, dir.path()).await;
    assert_eq!(registry.device_count(), 0);
    registry.create_device(&id("gone"), &DeviceRequest::default()).await.unwrap();
    let (registry, _tracker) = reopen(registry, tracker, dir.path()).await;
    assert_eq!(registry.get_twin(&id("gone")).unwrap().tags, None);
}

#[tokio::test]
async fn activity_and_connection_times_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, tracker) = open(dir.path()).await;
    registry.create_device(&id("a1"), &DeviceRequest::default()).await.unwrap();
    let at = protocol::time::parse_timestamp("2026-01-02T03:04:05Z").unwrap();
    registry.record_connection(&id("a1"), ConnectionChange::Connected, at);
    registry.record_activity(&id("a1"), at);
    registry.record_activity(&id("unknown"), at);
    let device = registry.get_device(&id("a1")).unwrap();
    assert_eq!(device.connection_state, ConnectionState::Connected);
    assert_eq!(device.last_activity_time, Some(at));
    registry.flush_activity().await.unwrap();
    let (registry, _tracker) = reopen(registry, tracker, dir.path()).await;
    let device = registry.get_device(&id("a1")).unwrap();
    assert_eq!(device.last_activity_time, Some(at));
    assert_eq!(
        device.connection_state,
        ConnectionState::Disconnected,
        "a restarted hub has no sessions"
    );
}

#[tokio::test]
async fn credentials_and_batch_patches() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _tracker) = open(dir.path()).await;
    let request: DeviceRequest = serde_json::from_value(
        json!({"authentication": {"symmetricKey": {"primaryKey": "cHJpbWFyeQ=="}}}),
    )
    .unwrap();
    registry.create_device(&id("c1"), &request).await.unwrap();
    let credentials = registry.credentials(&id("c1")).unwrap();
    assert_eq!(credentials.primary_key, b"primary");
    assert_eq!(credentials.secondary_key.len(), 32);
    assert!(credentials.enabled);
    assert!(registry.credentials(&id("c2")).is_none());
    let outcomes = registry
        .update_twins_forced(
            &[id("c1"), id("c2")],
            &patch(json!({"properties": {"desired": {"x": 1}}})),
        )
        .await;
    assert_eq!(outcomes[0].1.as_ref().unwrap(), &Some(json!({"x": 1, "$version": 2})));
    assert_eq!(outcomes[1].1.as_ref().unwrap_err().error_code(), ErrorCode::DeviceNotFound);
    let all = registry.matching_device_ids(&query::Condition::match_all());
    assert_eq!(all, [id("c1")]);
    let stats = registry.statistics();
    assert_eq!((stats.total_device_count, stats.enabled_device_count), (1, 1));
}
