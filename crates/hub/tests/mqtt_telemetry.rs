//! Device-to-cloud telemetry against the real hub: PUBACK'd, counted, and forwarded with its
//! property bag and body to the telemetry receiver; a token that expires closes the connection.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::time::Duration;

use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use test_support::sas::{device_token, now_secs, username};
use test_support::{spawn_hub, RawClient, HOST, WAIT};

#[tokio::test]
async fn telemetry_is_acknowledged_and_forwarded() {
    let hub = spawn_hub().await;
    let key = hub.add_device("e1", true).await.primary;
    let mut receiver = hub.handle.sessions().telemetry_receiver(16).unwrap();
    assert!(hub.handle.sessions().telemetry_receiver(16).is_none(), "one receiver only");
    let mut client = hub.connect("e1", &key).await;

    client
        .publish(
            "devices/e1/messages/events/%24.mid=m1&%24.ct=application%2Fjson&temp=21%20C",
            QoS::AtLeastOnce,
            b"{\"t\":21}",
        )
        .await;
    assert!(matches!(client.recv().await, Some(Packet::PubAck(_))));
    let message = tokio::time::timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
    assert_eq!(message.device_id.as_str(), "e1");
    assert_eq!(&message.body[..], b"{\"t\":21}");
    assert_eq!(message.properties.get("$.mid"), Some(Some("m1")));
    assert_eq!(message.properties.get("temp"), Some(Some("21 C")));

    // RETAIN is dropped and becomes the mqtt-retain property; QoS 0 gets no PUBACK.
    let mut retained = Publish::new("devices/e1/messages/events/", QoS::AtMostOnce, b"r".to_vec());
    retained.retain = true;
    client.send(Packet::Publish(retained)).await;
    let message = tokio::time::timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
    assert_eq!(message.properties.get("mqtt-retain"), Some(Some("true")));
    assert_eq!(hub.handle.sessions().stats().telemetry_received, 2);
    client.send(Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp), "no PUBACK for QoS 0");
    hub.stop().await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection() {
    let hub = spawn_hub().await;
    let key = hub.add_device("e2", true).await.primary;
    let password = device_token(&format!("{HOST}/devices/e2"), &key, now_secs() + 2);
    let (mut client, ack) =
        RawClient::connect(hub.mqtt, "e2", &username(HOST, "e2"), &password, false).await;
    assert_eq!(ack.code as u8, 0);
    let started = tokio::time::Instant::now();
    client.expect_closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed at expiry, not at once: {:?}",
        started.elapsed()
    );
    hub.stop().await;
}
