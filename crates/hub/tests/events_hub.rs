//! The event stream of a real hub: a plain MQTT subscriber sees a device's lifecycle, connection
//! state, telemetry and twin changes (reported from the device, desired from the service), in
//! the documented shapes, while a device does the real thing over MQTT.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::time::Duration;

use hub::broker::BrokerConfig;
use hub::registry::IfMatch;
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;
use test_support::events::EVENT_WAIT as DEADLINE;
use test_support::sas::{device_token, now_secs};
use test_support::{spawn_hub_with, TestHub, HOST};

async fn start_hub() -> TestHub {
    spawn_hub_with(|cfg| cfg.events = Some(BrokerConfig::new("127.0.0.1:0".parse().unwrap()))).await
}

/// A device connected over plain MQTT with its SAS key.
async fn connect_device(hub: &TestHub, id: &str, key: &str) -> (AsyncClient, EventLoop) {
    let addr = hub.mqtt;
    let resource = protocol::sas::device_resource(HOST, id, None);
    let token = device_token(&resource, key, now_secs() + 600);
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_credentials(format!("{HOST}/{id}/?api-version=2021-04-12"), token);
    options.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::ConnAck(_))).await;
    (client, eventloop)
}

async fn poll_until(eventloop: &mut EventLoop, wanted: impl Fn(&Packet) -> bool) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Event::Incoming(packet) = eventloop.poll().await.unwrap() {
                if wanted(&packet) {
                    return;
                }
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_devices_life_on_the_event_stream() {
    let hub = start_hub().await;
    let mut backend = hub.event_subscriber().await;
    let device = DeviceId::new("ev-1").unwrap();
    let key = protocol::sas::encode_key(&[9u8; 32]);
    let body = format!(
        r#"{{"deviceId":"ev-1","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
    );
    let request = DeviceRequest::parse(body.as_bytes()).unwrap();
    hub.handle.registry().create_device(&device, &request).await.unwrap();
    let created = backend.next_on("lifecycle/ev-1").await;
    assert_eq!(created.payload["properties"]["opType"], "createDeviceIdentity");
    assert_eq!(created.payload["body"]["deviceId"], "ev-1");

    let (client, mut eventloop) = connect_device(&hub, "ev-1", &key).await;
    let connected = backend.next_on("connection-state/ev-1").await;
    assert_eq!(connected.payload["properties"]["opType"], "deviceConnected");

    let topic = "devices/ev-1/messages/events/%24.ct=application%2Fjson&level=warn";
    client.publish(topic, QoS::AtLeastOnce, false, r#"{"temp":30}"#).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::PubAck(_))).await;
    let telemetry = backend.next_on("telemetry/ev-1").await;
    assert_eq!(telemetry.payload["body"], json!({"temp": 30}));
    assert_eq!(telemetry.payload["properties"]["level"], "warn");
    assert_eq!(telemetry.payload["systemProperties"]["content-type"], "application/json");
    assert_eq!(telemetry.payload["systemProperties"]["iothub-connection-device-id"], "ev-1");

    client.subscribe("$iothub/twin/res/#", QoS::AtMostOnce).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::SubAck(_))).await;
    let reported_topic = "$iothub/twin/PATCH/properties/reported/?$rid=1";
    client.publish(reported_topic, QoS::AtMostOnce, false, r#"{"fw":"1.2"}"#).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::Publish(_))).await;
    let reported = backend.next_on("twin-changes/ev-1").await;
    assert_eq!(reported.payload["body"]["properties"]["reported"]["fw"], "1.2");
    assert!(reported.payload["body"]["properties"]["reported"]["$version"].is_u64());

    let body = json!({"properties": {"desired": {"fan": "on"}}});
    let patch = TwinPatch::parse(&body, ReportedInPatch::Ignore).unwrap();
    hub.handle.registry().update_twin(&device, &patch, &IfMatch::Any).await.unwrap();
    let desired = backend.next_on("twin-changes/ev-1").await;
    assert_eq!(desired.payload["properties"]["opType"], "updateTwin");
    assert_eq!(desired.payload["body"]["properties"]["desired"]["fan"], "on");
    assert!(desired.payload["body"]["properties"]["desired"]["$version"].is_u64());

    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    let disconnected = backend.next_on("connection-state/ev-1").await;
    assert_eq!(disconnected.payload["properties"]["opType"], "deviceDisconnected");

    hub.handle.registry().delete_device(&device, &IfMatch::Any).await.unwrap();
    let deleted = backend.next_on("lifecycle/ev-1").await;
    assert_eq!(deleted.payload["properties"]["opType"], "deleteDeviceIdentity");
    assert_eq!(hub.handle.events().dropped(), 0);

    hub.stop().await;
}
