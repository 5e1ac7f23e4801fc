//! Twin over MQTT against the real hub: GET, reported patches (204 + `$version`, 400 with an
//! `errorCode` body), desired pushes after a service PATCH, and responses at the subscribed QoS.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use test_support::{device_id, spawn_hub};

#[tokio::test]
async fn get_and_reported_patch() {
    let hub = spawn_hub().await;
    let key = hub.add_device("t1", true).await.primary;
    let mut client = hub.connect("t1", &key).await;
    client.subscribe("$iothub/twin/res/#", QoS::AtLeastOnce).await;

    client.publish("$iothub/twin/GET/?$rid=get1", QoS::AtLeastOnce, b" ").await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=get1");
    assert_eq!(response.qos, QoS::AtLeastOnce, "twin responses use the subscribed QoS");
    let body: Value = serde_json::from_slice(&response.payload).unwrap();
    assert_eq!(body, json!({"desired":{"$version":1},"reported":{"$version":1}}));

    client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=p1",
            QoS::AtLeastOnce,
            br#"{"fw":"1.2"}"#,
        )
        .await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=p1&$version=2");
    assert!(response.payload.is_empty());

    client.publish("$iothub/twin/GET/?$rid=get2", QoS::AtMostOnce, b" ").await;
    let body: Value = serde_json::from_slice(&client.next_publish().await.payload).unwrap();
    assert_eq!(body["reported"], json!({"fw":"1.2","$version":2}));

    // A malformed patch is answered with 400 and an errorCode body (Node needs the body).
    client
        .publish("$iothub/twin/PATCH/properties/reported/?$rid=bad", QoS::AtLeastOnce, b"{not json")
        .await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/400/?$rid=bad");
    let error: Value = serde_json::from_slice(&response.payload).unwrap();
    assert_eq!(error["errorCode"], json!(400004));

    // A conditional patch against a stale version is refused with the registry's code.
    client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=old&$version=1",
            QoS::AtLeastOnce,
            b"{}",
        )
        .await;
    let response = client.next_publish().await;
    assert!(response.topic.starts_with("$iothub/twin/res/4"), "{}", response.topic);
    let error: Value = serde_json::from_slice(&response.payload).unwrap();
    assert!(
        error["errorCode"].as_u64().is_some_and(|code| (400_000..500_000).contains(&code)),
        "{error}"
    );

    let twin = hub.handle.registry().device_twin_view(&device_id("t1")).unwrap();
    assert_eq!(twin["reported"]["fw"], json!("1.2"));
    hub.stop().await;
}

#[tokio::test]
async fn node_style_qos0_and_unsubscribed_responses() {
    let hub = spawn_hub().await;
    let key = hub.add_device("t2", true).await.primary;
    let mut client = hub.connect("t2", &key).await;
    // Without a subscription to $iothub/twin/res/# there is nothing to deliver the answer to.
    client.publish("$iothub/twin/GET/?$rid=lost", QoS::AtMostOnce, b" ").await;
    client.subscribe("$iothub/twin/res/#", QoS::AtMostOnce).await;
    client.publish("$iothub/twin/GET/?$rid=seen", QoS::AtMostOnce, b" ").await;
    let response = client.next_publish().await;
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=seen");
    assert_eq!(response.qos, QoS::AtMostOnce);
    hub.stop().await;
}

#[tokio::test]
async fn desired_patches_are_pushed_with_version() {
    let hub = spawn_hub().await;
    let key = hub.add_device("t3", true).await.primary;
    let mut client = hub.connect("t3", &key).await;
    client.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtLeastOnce).await;

    let response = hub
        .call_with(
            reqwest::Method::PATCH,
            "/twins/t3",
            Some(json!({"properties":{"desired":{"interval":5,"mode":null}}})),
            &[("If-Match", "\"*\"")],
        )
        .await;
    assert_eq!(response.status, 200);

    let push = client.next_publish().await;
    assert_eq!(push.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    let body: Value = serde_json::from_slice(&push.payload).unwrap();
    assert_eq!(body["interval"], json!(5));
    assert_eq!(body["$version"], json!(2));

    // Without a desired subscription the push is dropped, and counted.
    let before = hub.handle.sessions().stats().desired_dropped;
    hub.handle.sessions().push_desired(&device_id("nobody"), json!({"x":1,"$version":9}));
    assert_eq!(hub.handle.sessions().stats().desired_dropped, before + 1);
    hub.stop().await;
}
