//! Integration tests: the device client against a scripted MQTT peer (`support`).

mod support;

use std::time::Duration;

use device::{handler, Client, ConnectionState, Error, MethodAnswer, Telemetry};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use serde_json::{json, Value};
use support::{config, rid, wait_for, Peer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

async fn connected(peer: &Peer, id: &str) -> (Client, support::PeerConn, TaskTracker) {
    let tracker = TaskTracker::new();
    let cfg = config(id, peer.addr());
    let (client, accepted) =
        tokio::join!(Client::connect(cfg, &tracker, CancellationToken::new()), peer.accept_ok());
    (client.expect("connects"), accepted.0, tracker)
}

#[tokio::test]
async fn connect_sends_iot_hub_credentials() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let (client, (mut conn, connect)) = tokio::join!(
        Client::connect(config("dev-1", peer.addr()), &tracker, CancellationToken::new()),
        peer.accept_ok()
    );
    let client = client.unwrap();
    assert_eq!(connect.client_id, "dev-1");
    assert!(!connect.clean_session);
    assert_eq!(connect.keep_alive, 60);
    let login = connect.login.unwrap();
    assert_eq!(
        login.username,
        "hubsim.test/dev-1/?api-version=2021-04-12&DeviceClientType=hubsim-device%2F0.1.0"
    );
    let token = login.password.strip_prefix("SharedAccessSignature ").unwrap();
    let fields: Vec<&str> =
        token.split('&').map(|field| field.split_once('=').unwrap().0).collect();
    assert_eq!(fields, ["sr", "sig", "se"]);
    assert!(token.starts_with("sr=hubsim.test%2Fdevices%2Fdev-1&sig="), "{token}");
    assert!(client.is_connected());
    assert_eq!(client.stats().connects, 1);

    client.disconnect().await;
    assert_eq!(conn.recv_or_eof().await, Some(Packet::Disconnect));
    assert_eq!(*client.state().borrow(), ConnectionState::Stopped { error: None });
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn auth_refused_is_typed_and_not_retried() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let refuse = async {
        let mut conn = peer.accept().await;
        conn.handshake(ConnectReturnCode::NotAuthorized).await;
    };
    let (client, ()) = tokio::join!(
        Client::connect(config("d1", peer.addr()), &tracker, CancellationToken::new()),
        refuse
    );
    assert_eq!(client.err(), Some(Error::AuthRefused { code: 5 }));
    // The driver stops by itself: the tracker drains without anyone cancelling it.
    tracker.close();
    tokio::time::timeout(support::DEADLINE, tracker.wait()).await.unwrap();
}

#[tokio::test]
async fn auth_refused_stops_a_spawned_client() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let client =
        Client::spawn(config("d1", peer.addr()), &tracker, CancellationToken::new()).unwrap();
    let mut conn = peer.accept().await;
    conn.handshake(ConnectReturnCode::BadUserNamePassword).await;
    let mut state = client.state();
    let state = state
        .wait_for(|state| matches!(state, ConnectionState::Stopped { .. }))
        .await
        .unwrap()
        .clone();
    assert_eq!(state, ConnectionState::Stopped { error: Some(Error::AuthRefused { code: 4 }) });
    assert_eq!(client.get_twin().await, Err(Error::Stopped));
}

#[tokio::test]
async fn direct_methods_are_answered() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    client.on_method(
        "reboot",
        handler(|req| async move { MethodAnswer::new(201, json!({ "echo": req.payload })) }),
    );
    assert_eq!(conn.expect_subscribe().await, "$iothub/methods/POST/#");

    let cases: [(&str, &[u8], &str, &str); 4] = [
        ("reboot", br#"{"delay":5}"#, "201", r#"{"echo":{"delay":5}}"#),
        ("reboot", b"null", "201", r#"{"echo":null}"#),
        (
            "reboot",
            b"not json",
            "400",
            "\"Invalid request format: expected ident at line 1 column 2\"",
        ),
        ("unknown", b"{}", "404", r#"{"message":"no handler for method \"unknown\""}"#),
    ];
    for (idx, (name, body, status, answer)) in cases.into_iter().enumerate() {
        conn.publish(&format!("$iothub/methods/POST/{name}/?$rid={idx}"), body).await;
        let response = conn.expect_publish().await;
        assert_eq!(response.topic, format!("$iothub/methods/res/{status}/?$rid={idx}"));
        assert_eq!(String::from_utf8_lossy(&response.payload), answer);
    }

    client
        .on_default_method(handler(|req| async move { MethodAnswer::ok(Value::String(req.name)) }));
    conn.publish("$iothub/methods/POST/other/?$rid=x", b"1").await;
    let response = conn.expect_publish().await;
    assert_eq!(
        (response.topic.as_str(), &response.payload[..]),
        ("$iothub/methods/res/200/?$rid=x", &b"\"other\""[..])
    );
    assert_eq!(client.stats().methods_answered, 5);
}

#[tokio::test]
async fn a_panicking_handler_answers_500() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    client.on_method("boom", handler(|_| async move { panic!("handler bug") }));
    conn.expect_subscribe().await;
    conn.publish("$iothub/methods/POST/boom/?$rid=1", b"{}").await;
    let response = conn.expect_publish().await;
    assert_eq!(response.topic, "$iothub/methods/res/500/?$rid=1");
    assert!(client.is_connected());
}

#[tokio::test]
async fn twin_get_and_reported_patch() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    let hub = async {
        assert_eq!(conn.expect_subscribe().await, "$iothub/twin/res/#");
        let get = conn.expect_publish().await;
        assert_eq!(get.topic, format!("$iothub/twin/GET/?$rid={}", rid(&get.topic)));
        assert_eq!(&get.payload[..], b" ");
        let body = br#"{"desired":{"rate":5,"$version":3},"reported":{"fw":"1.0","$version":2}}"#;
        conn.publish(&format!("$iothub/twin/res/200/?$rid={}", rid(&get.topic)), body).await;

        let patch = conn.expect_publish().await;
        assert_eq!(
            patch.topic,
            format!("$iothub/twin/PATCH/properties/reported/?$rid={}", rid(&patch.topic))
        );
        assert_eq!(&patch.payload[..], br#"{"fw":"2.0","old":null}"#);
        conn.publish(&format!("$iothub/twin/res/204/?$rid={}&$version=3", rid(&patch.topic)), b"")
            .await;

        let rejected = conn.expect_publish().await;
        let error = br#"{"errorCode":400004,"trackingId":"t","message":"bad property","timestampUtc":"2026-01-01T00:00:00.0000000Z"}"#;
        conn.publish(&format!("$iothub/twin/res/400/?$rid={}", rid(&rejected.topic)), error).await;
    };
    let device = async {
        let twin = client.get_twin().await.unwrap();
        assert_eq!((twin.desired_version, twin.reported_version), (3, 2));
        assert_eq!(twin.desired.get("rate"), Some(&json!(5)));
        assert_eq!(twin.reported.get("fw"), Some(&json!("1.0")));
        assert_eq!(client.patch_reported(&json!({ "fw": "2.0", "old": null })).await, Ok(3));
        let rejected = client.patch_reported(&json!({ "bad": 1 })).await;
        assert_eq!(
            rejected,
            Err(Error::Hub {
                status: 400,
                error_code: Some(400004),
                message: "bad property".into()
            })
        );
        assert!(matches!(client.patch_reported(&json!([1])).await, Err(Error::InvalidPayload(_))));
    };
    tokio::join!(hub, device);
}

#[tokio::test]
async fn desired_patches_are_delivered() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    let mut patches = client.desired_patches();
    assert_eq!(conn.expect_subscribe().await, "$iothub/twin/PATCH/properties/desired/#");
    conn.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        br#"{"rate":"5m","route":null,"$version":8}"#,
    )
    .await;
    let patch = tokio::time::timeout(support::DEADLINE, patches.recv()).await.unwrap().unwrap();
    assert_eq!((patch.version, patch.full), (8, false));
    assert_eq!(Value::Object(patch.patch), json!({ "rate": "5m", "route": null }));
}

#[tokio::test]
async fn telemetry_carries_properties_and_awaits_puback() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    let message = Telemetry::json(&json!({ "t": 21.5 })).property("alert level", "high/1");
    let (sent, publish) = tokio::join!(client.send_telemetry(message), conn.expect_publish());
    sent.unwrap();
    assert_eq!(
        publish.topic,
        "devices/d1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&alert%20level=high%2F1"
    );
    assert_eq!(&publish.payload[..], br#"{"t":21.5}"#);
    assert_eq!(client.stats().telemetry_acked, 1);
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_the_peer_drops() {
    let peer = Peer::bind().await;
    let (client, mut conn, _tracker) = connected(&peer, "d1").await;
    client.on_method("ping", handler(|_| async { MethodAnswer::ok(json!("pong")) }));
    let mut patches = client.desired_patches();
    let mut filters = vec![conn.expect_subscribe().await, conn.expect_subscribe().await];
    filters.sort();
    assert_eq!(filters, ["$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#"]);
    conn.publish("$iothub/twin/PATCH/properties/desired/?$version=2", br#"{"a":1,"$version":2}"#)
        .await;
    assert_eq!(patches.recv().await.unwrap().version, 2);
    conn.drop_connection().await;

    let (mut conn, _) = peer.accept_ok().await;
    let mut filters = vec![
        conn.expect_subscribe().await,
        conn.expect_subscribe().await,
        conn.expect_subscribe().await,
    ];
    filters.sort();
    assert_eq!(
        filters,
        ["$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/res/#"]
    );
    // The desired version moved while offline: the client re-GETs the twin and delivers the whole section.
    let get = conn.expect_publish().await;
    let body = br#"{"desired":{"a":2,"b":3,"$version":4},"reported":{"$version":1}}"#;
    conn.publish(&format!("$iothub/twin/res/200/?$rid={}", rid(&get.topic)), body).await;
    let resync = patches.recv().await.unwrap();
    assert_eq!(
        (resync.version, resync.full, Value::Object(resync.patch)),
        (4, true, json!({ "a": 2, "b": 3 }))
    );

    conn.publish("$iothub/methods/POST/ping/?$rid=9", b"null").await;
    let response = conn.expect_publish().await;
    assert_eq!(
        (response.topic.as_str(), &response.payload[..]),
        ("$iothub/methods/res/200/?$rid=9", &b"\"pong\""[..])
    );
    wait_for("stats", || client.stats().connects == 2 && client.stats().disconnects == 1).await;
}

#[tokio::test]
async fn renews_the_sas_token_by_reconnecting() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let mut cfg = config("d1", peer.addr());
    cfg.sas_ttl = Duration::from_secs(3);
    cfg.sas_renewal_margin = Duration::from_secs(2);
    let client = Client::spawn(cfg, &tracker, CancellationToken::new()).unwrap();
    client.on_method("m", handler(|_| async { MethodAnswer::ok(Value::Null) }));
    let (mut first, first_connect) = peer.accept_ok().await;
    first.expect_subscribe().await;
    assert_eq!(first.recv_or_eof().await, Some(Packet::Disconnect));
    let (mut second, second_connect) = peer.accept_ok().await;
    assert_eq!(second.expect_subscribe().await, "$iothub/methods/POST/#");
    let expiry = |connect: &rumqttc::mqttbytes::v4::Connect| -> u64 {
        connect.login.as_ref().unwrap().password.rsplit_once("&se=").unwrap().1.parse().unwrap()
    };
    assert!(expiry(&second_connect) > expiry(&first_connect));
    wait_for("renewal counted", || client.stats().sas_renewals == 1).await;
}

#[tokio::test]
async fn requests_wait_for_the_connection() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let client =
        Client::spawn(config("d1", peer.addr()), &tracker, CancellationToken::new()).unwrap();
    let device = client.send_telemetry(Telemetry::new("early"));
    let hub = async {
        let (mut conn, _) = peer.accept_ok().await;
        conn.expect_publish().await
    };
    let (sent, publish) = tokio::join!(device, hub);
    sent.unwrap();
    assert_eq!(&publish.payload[..], b"early");
}

#[tokio::test]
async fn shutdown_token_stops_the_driver() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let client = Client::spawn(config("d1", peer.addr()), &tracker, shutdown.clone()).unwrap();
    let (mut conn, _) = peer.accept_ok().await;
    wait_for("connected", || client.is_connected()).await;
    shutdown.cancel();
    assert_eq!(conn.recv_or_eof().await, Some(Packet::Disconnect));
    tracker.close();
    tokio::time::timeout(support::DEADLINE, tracker.wait()).await.unwrap();
    assert_eq!(client.send_telemetry(Telemetry::new("late")).await, Err(Error::Stopped));
}
