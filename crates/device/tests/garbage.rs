//! The client never panics on what the hub sends: garbage bytes, malformed packets, odd topics.

mod support;

use device::{handler, Client, ConnectionState, MethodAnswer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use serde_json::json;
use support::{config, wait_for, Peer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::test]
async fn survives_garbage_and_keeps_reconnecting() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let client =
        Client::spawn(config("d1", peer.addr()), &tracker, CancellationToken::new()).unwrap();
    client.on_method("m", handler(|_| async { MethodAnswer::ok(json!(1)) }));
    let _patches = client.desired_patches();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for round in 0..40 {
        let mut conn = peer.accept().await;
        let Packet::Connect(_) = conn.recv().await else { panic!("expected CONNECT") };
        if round % 4 == 0 {
            // Garbage instead of CONNACK.
            let len = rng.gen_range(1..64);
            conn.send_raw(&(0..len).map(|_| rng.gen()).collect::<Vec<u8>>()).await;
        } else {
            conn.send(Packet::ConnAck(rumqttc::mqttbytes::v4::ConnAck::new(
                ConnectReturnCode::Success,
                false,
            )))
            .await;
            let frame = garbage_frame(&mut rng);
            conn.send_raw(&frame).await;
        }
        conn.drop_connection().await;
    }
    let (mut conn, _) = peer.accept_ok().await;
    let mut filters = Vec::new();
    while filters.len() < 2 {
        filters.push(conn.expect_subscribe().await);
    }
    conn.publish("$iothub/methods/POST/m/?$rid=ok", b"{}").await;
    let response = conn.expect_publish().await;
    assert_eq!(response.topic, "$iothub/methods/res/200/?$rid=ok");
    wait_for("connected", || client.is_connected()).await;
    assert!(!matches!(*client.state().borrow(), ConnectionState::Stopped { .. }));
}

#[tokio::test]
async fn odd_topics_and_bodies_are_ignored_or_answered() {
    let peer = Peer::bind().await;
    let tracker = TaskTracker::new();
    let client =
        Client::spawn(config("d1", peer.addr()), &tracker, CancellationToken::new()).unwrap();
    client.on_method("m", handler(|_| async { MethodAnswer::ok(json!(1)) }));
    let mut patches = client.desired_patches();
    let (mut conn, _) = peer.accept_ok().await;
    conn.expect_subscribe().await;
    conn.expect_subscribe().await;
    let odd: [(&str, &[u8]); 10] = [
        ("$iothub/methods/POST/m/", b"{}"),
        ("$iothub/methods/POST//?$rid=1", b"{}"),
        ("$iothub/twin/res/200/?$rid=nobody", b"{}"),
        ("$iothub/twin/res/xyz/?$rid=1", b""),
        ("$iothub/twin/PATCH/properties/desired/?$version=abc", b"{\"a\":1}"),
        ("$iothub/twin/PATCH/properties/desired/?$version=3", b"\xff\xfe"),
        ("devices/d1/messages/devicebound/%24.mid=1", b"c2d"),
        ("something/else", b""),
        ("$iothub/methods/POST/m/?$rid=%ZZ", b"{}"),
        ("$iothub/methods/POST/m/?$rid=last", b"\xff"),
    ];
    for (topic, body) in odd {
        conn.publish(topic, body).await;
    }
    // Only the last two are method calls: a stray `%` in the rid round-trips percent-encoded, and an
    // invalid body is answered 400. The connection stays up throughout.
    let response = conn.expect_publish().await;
    assert_eq!(response.topic, "$iothub/methods/res/200/?$rid=%25ZZ");
    let response = conn.expect_publish().await;
    assert_eq!(response.topic, "$iothub/methods/res/400/?$rid=last");
    conn.publish("$iothub/twin/PATCH/properties/desired/?$version=9", b"{\"b\":2,\"$version\":9}")
        .await;
    assert_eq!(patches.recv().await.unwrap().version, 9);
    assert!(client.is_connected());
}

/// A frame that starts like an MQTT packet and then goes wrong.
fn garbage_frame(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let kind: u8 = rng.gen_range(0..16) << 4 | rng.gen_range(0..16);
    let len = rng.gen_range(0..40u8);
    let mut frame = vec![kind, len];
    frame.extend((0..len).map(|_| rng.gen::<u8>()));
    frame
}
