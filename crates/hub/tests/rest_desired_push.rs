//! REST writes reach connected devices: a desired PATCH/PUT is pushed on
//! `$iothub/twin/PATCH/properties/desired/?$version=n` with `$version` in the body, a tags-only
//! patch pushes nothing, and deleting or disabling a device closes its session.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test loudly on any error")]

use std::time::Duration;

use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use test_support::{spawn_hub, TestHub};

async fn rest(hub: &TestHub, method: reqwest::Method, path: &str, body: Value) -> u16 {
    hub.call_with(method, path, Some(body), &[("If-Match", "\"*\"")]).await.status
}

#[tokio::test]
async fn desired_changes_are_pushed_and_removals_disconnect() {
    let hub = spawn_hub().await;
    let key = hub.add_device("p1", true).await.primary;
    let mut device = hub.connect("p1", &key).await;
    device.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce).await;

    assert_eq!(
        rest(&hub, reqwest::Method::PATCH, "/twins/p1", json!({"tags": {"only": "tags"}})).await,
        200
    );
    assert_eq!(
        rest(
            &hub,
            reqwest::Method::PATCH,
            "/twins/p1",
            json!({"properties": {"desired": {"rate": 5, "old": null}}})
        )
        .await,
        200
    );
    match device.recv().await {
        Some(Packet::Publish(publish)) => {
            assert_eq!(publish.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
            let body: Value = serde_json::from_slice(&publish.payload).unwrap();
            assert_eq!(body, json!({"rate": 5, "old": null, "$version": 2}));
        }
        other => panic!("expected the desired push, got {other:?}"),
    }
    assert_eq!(
        rest(
            &hub,
            reqwest::Method::PUT,
            "/twins/p1",
            json!({"properties": {"desired": {"whole": true}}})
        )
        .await,
        200
    );
    match device.recv().await {
        Some(Packet::Publish(publish)) => {
            assert_eq!(publish.topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
            let body: Value = serde_json::from_slice(&publish.payload).unwrap();
            assert_eq!(body, json!({"whole": true, "$version": 3}));
        }
        other => panic!("expected the replacement push, got {other:?}"),
    }
    assert!(
        device.try_recv(Duration::from_millis(200)).await.is_none(),
        "the tags-only patch pushed nothing"
    );

    // Disabling closes the session; so does deleting.
    assert_eq!(
        rest(&hub, reqwest::Method::PUT, "/devices/p1", json!({"status": "disabled"})).await,
        200
    );
    device.expect_closed().await;
    let key2 = hub.add_device("p2", true).await.primary;
    let mut second = hub.connect("p2", &key2).await;
    assert_eq!(rest(&hub, reqwest::Method::DELETE, "/devices/p2", json!({})).await, 204);
    second.expect_closed().await;
    hub.stop().await;
}
