//! Misbehaving clients against the real hub: another device's topics, garbage bytes, QoS 2,
//! unsupported filters, forged method responses. Each closes only the offending connection;
//! nothing reaches another device and the hub keeps serving.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::time::Duration;

use hub::mqtt::MethodCall;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use test_support::{device_id, rid, spawn_hub, RawClient, TestHub};

/// The hub still serves: `id` connects and answers a twin GET.
async fn hub_still_serves(hub: &TestHub, id: &str, key: &str) {
    let mut client = hub.connect(id, key).await;
    client.subscribe("$iothub/twin/res/#", QoS::AtMostOnce).await;
    client.publish("$iothub/twin/GET/?$rid=alive", QoS::AtMostOnce, b" ").await;
    assert_eq!(client.next_publish().await.topic, "$iothub/twin/res/200/?$rid=alive");
}

#[tokio::test]
async fn foreign_topics_close_only_the_offender() {
    let hub = spawn_hub().await;
    let key1 = hub.add_device("a1", true).await.primary;
    let key2 = hub.add_device("a2", true).await.primary;
    let mut victim = hub.connect("a2", &key2).await;
    victim.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;
    victim.subscribe("devices/a2/messages/devicebound/#", QoS::AtLeastOnce).await;

    let attempts: Vec<(&str, Packet)> = vec![
        ("telemetry as a2", publish("devices/a2/messages/events/", QoS::AtLeastOnce)),
        ("a hub-to-device topic", publish("$iothub/methods/POST/reboot/?$rid=1", QoS::AtMostOnce)),
        ("an arbitrary topic", publish("some/topic", QoS::AtMostOnce)),
        ("a2's c2d filter", subscribe("devices/a2/messages/devicebound/#")),
        ("a wildcard filter", subscribe("#")),
        ("a wildcard method filter", subscribe("$iothub/methods/+/#")),
        ("qos 2", publish("devices/a1/messages/events/", QoS::ExactlyOnce)),
    ];
    for (what, packet) in attempts {
        let mut attacker = hub.connect("a1", &key1).await;
        attacker.send(packet).await;
        attacker.expect_closed().await;
        assert!(
            hub.handle.sessions().is_connected(&device_id("a2")),
            "{what} disturbed another device"
        );
    }
    assert!(hub.handle.sessions().stats().protocol_violations >= 7);
    assert_eq!(victim.try_recv(Duration::from_millis(200)).await, None, "nothing leaked to a2");

    // A forged answer for a2's pending call from a1 does not complete it: request ids are per device.
    let sessions = hub.handle.sessions().clone();
    let call = MethodCall {
        name: "m".into(),
        payload: Value::Null,
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::ZERO,
    };
    let a2 = device_id("a2");
    let invoke = sessions.invoke_method(&a2, call);
    tokio::pin!(invoke);
    assert!(futures::poll!(&mut invoke).is_pending());
    let request = victim.next_publish().await;
    let rid = rid(&request.topic);
    let mut forger = hub.connect("a1", &key1).await;
    forger.answer_method(&rid, 666, QoS::AtLeastOnce, b"\"forged\"").await;
    assert!(matches!(forger.recv().await, Some(Packet::PubAck(_))));
    assert!(futures::poll!(&mut invoke).is_pending(), "a1 completed a2's call");
    victim.answer_method(&rid, 200, QoS::AtLeastOnce, b"\"real\"").await;
    let answer = invoke.await.unwrap();
    assert_eq!((answer.status, answer.payload), (200, Value::from("real")));

    hub_still_serves(&hub, "a1", &key1).await;
    hub.stop().await;
}

#[tokio::test]
async fn garbage_bytes_get_a_clean_disconnect() {
    let hub = spawn_hub().await;
    let key = hub.add_device("g1", true).await.primary;
    let garbage: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff; 64],
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x10, 0x04, 0x00, 0x02, b'X', b'Y'],
        &[0x30, 0xff, 0xff, 0xff, 0x7f],
    ];
    for bytes in garbage {
        let mut client = RawClient::open(hub.mqtt).await;
        client.send_bytes(bytes).await;
        client.expect_closed().await;
    }
    // Garbage after a successful CONNECT closes that session too.
    let mut client = hub.connect("g1", &key).await;
    client.send_bytes(&[0x00, 0x00, 0x00]).await;
    client.expect_closed().await;
    // Garbage on the TLS port fails the handshake.
    let mut tls_client = RawClient::open(hub.mqtts).await;
    tls_client.send_bytes(&[0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80]).await;
    tls_client.expect_closed_raw().await;

    hub_still_serves(&hub, "g1", &key).await;
    hub.stop().await;
}

fn publish(topic: &str, qos: QoS) -> Packet {
    let mut publish = Publish::new(topic, qos, b"{}".to_vec());
    if qos != QoS::AtMostOnce {
        publish.pkid = 1;
    }
    Packet::Publish(publish)
}

fn subscribe(filter: &str) -> Packet {
    let mut subscribe = rumqttc::mqttbytes::v4::Subscribe::new(filter, QoS::AtLeastOnce);
    subscribe.pkid = 1;
    Packet::Subscribe(subscribe)
}
