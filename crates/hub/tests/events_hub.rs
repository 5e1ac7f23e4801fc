//! The event stream of a real hub: a plain MQTT subscriber sees a device's lifecycle, connection
//! state, telemetry and twin changes (reported from the device, desired from the service), in
//! the documented shapes, while a device does the real thing over MQTT.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

mod events_support;

use std::time::Duration;

use events_support::{Received, Subscriber, DEADLINE};
use hub::broker::BrokerConfig;
use hub::registry::IfMatch;
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const HOST: &str = "events-test.azure-devices.net";

struct TestHub {
    handle: HubHandle,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start_hub() -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = HubConfig::new(dir.path(), HOST);
    cfg.events = Some(BrokerConfig::new("127.0.0.1:0".parse().unwrap()));
    let listeners = HubListeners {
        mqtt: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        ..HubListeners::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Hub::spawn(cfg, listeners, shutdown.clone()).await.unwrap();
    TestHub { handle, shutdown, _dir: dir }
}

fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// The owner subscribed to `#` on the hub's event listener.
async fn subscribe_all(hub: &TestHub) -> Subscriber {
    let addr = hub.handle.addrs().events.unwrap();
    let token = protocol::sas::generate(
        HOST,
        hub.handle.owner_key(),
        Some("iothubowner"),
        now_secs() + 600,
    )
    .unwrap();
    let mut options = MqttOptions::new("backend", addr.ip().to_string(), addr.port());
    options.set_credentials("iothubowner", token);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::ConnAck(_))).await;
    let mut subscriber = Subscriber { client, eventloop };
    subscriber.subscribe("#").await;
    subscriber
}

/// A device connected over plain MQTT with its SAS key.
async fn connect_device(hub: &TestHub, id: &str, key: &str) -> (AsyncClient, EventLoop) {
    let addr = hub.handle.addrs().mqtt.unwrap();
    let resource = protocol::sas::device_resource(HOST, id, None);
    let token = protocol::sas::generate(&resource, key, None, now_secs() + 600).unwrap();
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

/// The next event on `topic`, skipping others.
async fn next_on(subscriber: &mut Subscriber, topic: &str) -> Received {
    loop {
        let event = subscriber.next().await;
        if event.topic == topic {
            return event;
        }
    }
}

#[tokio::test]
async fn a_devices_life_on_the_event_stream() {
    let hub = start_hub().await;
    let mut backend = subscribe_all(&hub).await;
    let device = DeviceId::new("ev-1").unwrap();
    let key = protocol::sas::encode_key(&[9u8; 32]);
    let body = format!(
        r#"{{"deviceId":"ev-1","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
    );
    let request = DeviceRequest::parse(body.as_bytes()).unwrap();
    hub.handle.registry().create_device(&device, &request).await.unwrap();
    let created = next_on(&mut backend, "lifecycle/ev-1").await;
    assert_eq!(created.payload["properties"]["opType"], "createDeviceIdentity");
    assert_eq!(created.payload["body"]["deviceId"], "ev-1");

    let (client, mut eventloop) = connect_device(&hub, "ev-1", &key).await;
    let connected = next_on(&mut backend, "connection-state/ev-1").await;
    assert_eq!(connected.payload["properties"]["opType"], "deviceConnected");

    let topic = "devices/ev-1/messages/events/%24.ct=application%2Fjson&level=warn";
    client.publish(topic, QoS::AtLeastOnce, false, r#"{"temp":30}"#).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::PubAck(_))).await;
    let telemetry = next_on(&mut backend, "telemetry/ev-1").await;
    assert_eq!(telemetry.payload["body"], json!({"temp": 30}));
    assert_eq!(telemetry.payload["properties"]["level"], "warn");
    assert_eq!(telemetry.payload["systemProperties"]["content-type"], "application/json");
    assert_eq!(telemetry.payload["systemProperties"]["iothub-connection-device-id"], "ev-1");

    client.subscribe("$iothub/twin/res/#", QoS::AtMostOnce).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::SubAck(_))).await;
    let reported_topic = "$iothub/twin/PATCH/properties/reported/?$rid=1";
    client.publish(reported_topic, QoS::AtMostOnce, false, r#"{"fw":"1.2"}"#).await.unwrap();
    poll_until(&mut eventloop, |packet| matches!(packet, Packet::Publish(_))).await;
    let reported = next_on(&mut backend, "twin-changes/ev-1").await;
    assert_eq!(reported.payload["body"]["properties"]["reported"]["fw"], "1.2");
    assert!(reported.payload["body"]["properties"]["reported"]["$version"].is_u64());

    let body = json!({"properties": {"desired": {"fan": "on"}}});
    let patch = TwinPatch::parse(&body, ReportedInPatch::Ignore).unwrap();
    hub.handle.registry().update_twin(&device, &patch, &IfMatch::Any).await.unwrap();
    let desired = next_on(&mut backend, "twin-changes/ev-1").await;
    assert_eq!(desired.payload["properties"]["opType"], "updateTwin");
    assert_eq!(desired.payload["body"]["properties"]["desired"]["fan"], "on");
    assert!(desired.payload["body"]["properties"]["desired"]["$version"].is_u64());

    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    let disconnected = next_on(&mut backend, "connection-state/ev-1").await;
    assert_eq!(disconnected.payload["properties"]["opType"], "deviceDisconnected");

    hub.handle.registry().delete_device(&device, &IfMatch::Any).await.unwrap();
    let deleted = next_on(&mut backend, "lifecycle/ev-1").await;
    assert_eq!(deleted.payload["properties"]["opType"], "deleteDeviceIdentity");
    assert_eq!(hub.handle.events().dropped(), 0);

    hub.shutdown.cancel();
    tokio::time::timeout(DEADLINE, hub.handle.wait()).await.unwrap();
}
