//! Session lifecycle against the real hub: subscriptions that survive a CleanSession 0 reconnect,
//! a duplicate client id replacing the old connection, connection state in the registry,
//! keep-alive expiry, and eviction by the hub.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::time::Duration;

use hub::mqtt::{MethodCall, MethodResponse};
use rumqttc::mqttbytes::v4::{Connect, Packet};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use test_support::{device_id, rid, spawn_hub, wait_for, RawClient, TestHub, WAIT};

fn ping() -> MethodCall {
    MethodCall {
        name: "ping".into(),
        payload: Value::Null,
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::ZERO,
    }
}

fn connection_state(hub: &TestHub, id: &str) -> Value {
    serde_json::to_value(hub.handle.registry().get_device(&device_id(id)).unwrap()).unwrap()
        ["connectionState"]
        .clone()
}

async fn answer_ping(client: &mut RawClient<tokio::net::TcpStream>) {
    let request = client.next_publish().await;
    assert!(request.topic.starts_with("$iothub/methods/POST/ping/?$rid="), "{}", request.topic);
    let rid = rid(&request.topic);
    client.answer_method(&rid, 200, QoS::AtLeastOnce, b"\"pong\"").await;
}

#[tokio::test]
async fn subscriptions_survive_a_reconnect_without_resubscribing() {
    let hub = spawn_hub().await;
    let key = hub.add_device("s1", true).await.primary;
    let sessions = hub.handle.sessions().clone();
    let s1 = device_id("s1");
    let mut client = hub.connect("s1", &key).await;
    client.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await;
    assert_eq!(connection_state(&hub, "s1"), json!("Connected"));
    client.send(Packet::Disconnect).await;
    client.expect_closed().await;
    wait_for("the session to end", WAIT, || !sessions.is_connected(&device_id("s1"))).await;
    assert_eq!(connection_state(&hub, "s1"), json!("Disconnected"));

    // Like the Python SDK: reconnect with CleanSession 0 and never subscribe again.
    let (user, password) = hub.login("s1", &key);
    let (mut client, ack) = RawClient::connect(hub.mqtt, "s1", &user, &password, false).await;
    assert!(ack.session_present);
    let (answer, ()) = tokio::join!(sessions.invoke_method(&s1, ping()), answer_ping(&mut client));
    assert_eq!(answer.unwrap(), MethodResponse { status: 200, payload: json!("pong") });

    // CleanSession 1 starts over.
    drop(client);
    let (_client, ack) = RawClient::connect(hub.mqtt, "s1", &user, &password, true).await;
    assert!(!ack.session_present);
    let err = sessions.invoke_method(&device_id("s1"), ping()).await.unwrap_err();
    assert_eq!(err.error_code().code(), 404103);
    hub.stop().await;
}

#[tokio::test]
async fn duplicate_client_id_replaces_the_old_connection() {
    let hub = spawn_hub().await;
    let key = hub.add_device("s2", true).await.primary;
    let sessions = hub.handle.sessions().clone();
    let s2 = device_id("s2");
    let mut old = hub.connect("s2", &key).await;
    old.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await;
    let mut new = hub.connect("s2", &key).await;
    old.expect_closed().await;
    assert!(sessions.is_connected(&device_id("s2")));
    assert_eq!(sessions.connected_count(), 1);

    // The new connection inherited the session and gets the calls; the old one's close did not
    // mark the device disconnected.
    let (answer, ()) = tokio::join!(sessions.invoke_method(&s2, ping()), answer_ping(&mut new));
    assert_eq!(answer.unwrap().status, 200);
    assert_eq!(connection_state(&hub, "s2"), json!("Connected"));
    hub.stop().await;
}

#[tokio::test]
async fn keep_alive_expiry_and_eviction_close_the_connection() {
    let hub = spawn_hub().await;
    let key = hub.add_device("s3", true).await.primary;
    let (user, password) = hub.login("s3", &key);
    let mut client = RawClient::open(hub.mqtt).await;
    let mut connect = Connect::new("s3");
    connect.keep_alive = 1;
    connect.clean_session = false;
    connect.set_login(user, password);
    client.send(Packet::Connect(connect)).await;
    assert!(matches!(client.recv().await, Some(Packet::ConnAck(_))));
    // A silent client with keep-alive 1 s is dropped after 1.5 s.
    let started = tokio::time::Instant::now();
    client.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());

    let mut client = hub.connect("s3", &key).await;
    client.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp));
    let sessions = hub.handle.sessions().clone();
    let s3 = device_id("s3");
    sessions.disconnect(&s3);
    client.expect_closed().await;
    wait_for("the evicted session to end", WAIT, || !sessions.is_connected(&s3)).await;

    // disconnect keeps the session: the device comes back without subscribing and gets calls.
    let mut client = hub.connect("s3", &key).await;
    let (answer, ()) = tokio::join!(sessions.invoke_method(&s3, ping()), answer_ping(&mut client));
    assert_eq!(answer.unwrap().status, 200);

    // forget (device deleted) drops it: the same id starts clean.
    sessions.forget(&s3);
    client.expect_closed().await;
    wait_for("the forgotten session to end", WAIT, || !sessions.is_connected(&s3)).await;
    let _client = hub.connect("s3", &key).await;
    assert_eq!(sessions.invoke_method(&s3, ping()).await.unwrap_err().error_code().code(), 404103);
    hub.stop().await;
}

#[tokio::test]
async fn a_delivered_call_survives_the_device_reconnecting() {
    let hub = spawn_hub().await;
    let key = hub.add_device("s4", true).await.primary;
    let sessions = hub.handle.sessions().clone();
    let s4 = device_id("s4");
    let mut client = hub.connect("s4", &key).await;
    client.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await;

    let invoke = sessions.invoke_method(&s4, ping());
    tokio::pin!(invoke);
    assert!(futures::poll!(&mut invoke).is_pending());
    let request = client.next_publish().await;
    let rid = rid(&request.topic);
    drop(client);
    wait_for("the session to end", WAIT, || !sessions.is_connected(&s4)).await;
    assert!(
        futures::poll!(&mut invoke).is_pending(),
        "the call keeps waiting while the device is away"
    );

    // The device comes back (CleanSession 0) and answers the request it got before the drop.
    let mut client = hub.connect("s4", &key).await;
    client.answer_method(&rid, 200, QoS::AtLeastOnce, b"\"late\"").await;
    assert_eq!(invoke.await.unwrap(), MethodResponse { status: 200, payload: json!("late") });
    hub.stop().await;
}
