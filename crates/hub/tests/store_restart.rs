//! Restart the hub on the same data directory: devices, keys, twins (with versions and etags), the
//! owner key and deletions are all still there.

use reqwest::Method;
use serde_json::json;
use test_support::{spawn_hub, spawn_hub_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let hub = spawn_hub().await;
    let owner_key = hub.handle.owner_key().to_owned();
    let mut keys = Vec::new();
    for idx in 0..50 {
        let device = hub.create_device(&format!("r{idx:02}")).await;
        keys.push(
            device["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_owned(),
        );
    }
    // Many concurrent twin writes share store transactions; all must be durable.
    let mut set = tokio::task::JoinSet::new();
    for idx in 0..50 {
        let client = hub.client.clone();
        let url = hub.url(&format!("/twins/r{idx:02}"));
        let token = hub.service_token();
        set.spawn(async move {
            let body = json!({"tags": {"idx": idx}, "properties": {"desired": {"v": idx}}});
            client
                .patch(url)
                .header("Authorization", token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let id = protocol::ids::DeviceId::new("r07").unwrap();
    hub.handle.registry().patch_reported(&id, json!({"fw": "1.2"}), None).await.unwrap();
    let deleted =
        hub.call_with(Method::DELETE, "/devices/r49", None, &[("If-Match", "\"*\"")]).await;
    assert_eq!(deleted.status, 204);
    let twin_before = hub.call(Method::GET, "/twins/r07", None).await.body;
    let device_before = hub.call(Method::GET, "/devices/r07", None).await.body;
    let hub = hub.restart().await;
    assert_eq!(hub.handle.owner_key(), owner_key, "the generated owner key is reused");
    let listed = hub.call(Method::GET, "/devices", None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 49);
    for (idx, key) in keys.iter().enumerate().take(49) {
        let device = hub.call(Method::GET, &format!("/devices/r{idx:02}"), None).await.body;
        assert_eq!(device["authentication"]["symmetricKey"]["primaryKey"], key.as_str());
    }
    let twin_after = hub.call(Method::GET, "/twins/r07", None).await.body;
    assert_eq!(twin_after, twin_before);
    assert_eq!(twin_after["properties"]["reported"]["fw"], "1.2");
    assert_eq!(twin_after["properties"]["desired"]["v"], 7);
    assert_eq!(hub.call(Method::GET, "/devices/r07", None).await.body, device_before);
    assert_eq!(hub.call(Method::GET, "/devices/r49", None).await.error(), "404 DeviceNotFound");
    // Writes continue from the stored versions and etags.
    let next = hub
        .call(Method::PATCH, "/twins/r07", Some(json!({"properties": {"desired": {"v": 8}}})))
        .await
        .body;
    assert_eq!(next["properties"]["desired"]["$version"], 3);
    let query = hub
        .request(Method::POST, "/devices/query")
        .json(&json!({"query": "SELECT * FROM devices WHERE tags.idx = 3"}))
        .send()
        .await
        .unwrap();
    let rows: serde_json::Value = query.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "the tag index is rebuilt on load");
    hub.stop().await;
}

#[tokio::test]
async fn a_given_owner_key_is_used() {
    let hub = spawn_hub_with(|cfg| {
        cfg.host_name = "hub.test".into();
        cfg.owner_key = Some("b3duZXIta2V5LWZvci10ZXN0cw==".into());
    })
    .await;
    assert_eq!(hub.handle.owner_key(), "b3duZXIta2V5LWZvci10ZXN0cw==");
    assert_eq!(
        hub.handle.service_connection_string(),
        "HostName=hub.test;SharedAccessKeyName=iothubowner;SharedAccessKey=b3duZXIta2V5LWZvci10ZXN0cw=="
    );
    assert_eq!(hub.call(Method::GET, "/devices", None).await.status, 200);
    hub.stop().await;
}
