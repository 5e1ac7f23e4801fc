//! Direct methods against the real hub, through `Sessions::invoke_method` and through
//! `POST /twins/{id}/methods`: delivery with `$rid`, the literal `null` payload, 404001, 404103,
//! 504101, 400, and `connectTimeoutInSeconds` waiting for a device that connects later.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use std::time::Duration;

use hub::mqtt::{MethodCall, MethodCallError, MethodResponse};
use protocol::topic::HubPublish;
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use test_support::{device_id, rid, spawn_hub, RawClient};
use tokio::net::TcpStream;

fn call(name: &str, payload: Value, response_secs: u64, connect_secs: u64) -> MethodCall {
    MethodCall {
        name: name.to_owned(),
        payload,
        response_timeout: Duration::from_secs(response_secs),
        connect_timeout: Duration::from_secs(connect_secs),
    }
}

/// Answers the next method request with `status` and the request's payload wrapped in `{"echo":..}`.
async fn answer_next(client: &mut RawClient<TcpStream>, status: i32) -> (String, Value) {
    let request = client.next_publish().await;
    let HubPublish::MethodRequest { name, rid } = HubPublish::parse(&request.topic).unwrap() else {
        panic!("not a method request: {}", request.topic);
    };
    let payload: Value = serde_json::from_slice(&request.payload).unwrap();
    let body = serde_json::to_vec(&json!({ "echo": payload })).unwrap();
    client.answer_method(&rid, status, QoS::AtLeastOnce, &body).await;
    (name, payload)
}

#[tokio::test]
async fn invoke_in_process_and_over_rest() {
    let hub = spawn_hub().await;
    let key = hub.add_device("m1", true).await.primary;
    let mut client = hub.connect("m1", &key).await;
    client.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await;
    let sessions = hub.handle.sessions().clone();
    let m1 = device_id("m1");

    let invoke = sessions.invoke_method(&m1, call("reboot", Value::Null, 10, 0));
    let (answer, (name, payload)) = tokio::join!(invoke, answer_next(&mut client, 201));
    assert_eq!((name.as_str(), payload.clone()), ("reboot", Value::Null));
    assert_eq!(answer.unwrap(), MethodResponse { status: 201, payload: json!({ "echo": null }) });

    let rest_body = json!({"methodName":"set","payload":{"k":"v"},"responseTimeoutInSeconds":10});
    let (answer, (name, payload)) =
        tokio::join!(hub.post_method("m1", &rest_body), answer_next(&mut client, 200));
    assert_eq!((name.as_str(), payload), ("set", json!({"k":"v"})));
    assert_eq!(answer, (200, json!({"status":200,"payload":{"echo":{"k":"v"}}})));

    // An empty response body is `null`, and the device's status passes through.
    let invoke = sessions.invoke_method(&m1, call("empty", json!(""), 10, 0));
    let respond = async {
        let request = client.next_publish().await;
        assert_eq!(&request.payload[..], b"\"\"");
        let rid = rid(&request.topic);
        client.answer_method(&rid, 500, QoS::AtMostOnce, b"").await;
    };
    let (answer, ()) = tokio::join!(invoke, respond);
    assert_eq!(answer.unwrap(), MethodResponse { status: 500, payload: Value::Null });
    hub.stop().await;
}

#[tokio::test]
async fn not_online_unknown_and_bad_requests() {
    let hub = spawn_hub().await;
    let key = hub.add_device("m2", true).await.primary;
    hub.add_device("m2-off", false).await;
    let body = json!({"methodName":"x","responseTimeoutInSeconds":5});

    let (status, error) = hub.post_method("m2", &body).await;
    assert_eq!(status, 404);
    assert!(
        error["Message"].as_str().unwrap().starts_with("ErrorCode:DeviceNotOnline;"),
        "{error}"
    );

    // Connected but not subscribed to methods is still "not online".
    let _client = hub.connect("m2", &key).await;
    let (status, _) = hub.post_method("m2", &body).await;
    assert_eq!(status, 404);
    let err = hub
        .handle
        .sessions()
        .invoke_method(&device_id("m2"), call("x", Value::Null, 5, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, MethodCallError::NotOnline));
    assert_eq!(err.error_code().code(), 404103);

    for id in ["ghost", "m2-off"] {
        let (status, error) = hub.post_method(id, &body).await;
        assert_eq!(status, 404, "{id}");
        assert!(
            error["Message"].as_str().unwrap().starts_with("ErrorCode:DeviceNotFound;"),
            "{error}"
        );
    }
    for bad in [
        json!({"payload":1}),
        json!({"methodName":"x","responseTimeoutInSeconds":301}),
        json!({"methodName":"x","responseTimeoutInSeconds":4}),
        json!({"methodName":"x","connectTimeoutInSeconds":-1}),
        json!([1, 2]),
    ] {
        let (status, _) = hub.post_method("m2", &bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn device_that_never_answers_times_out() {
    let hub = spawn_hub().await;
    let key = hub.add_device("m3", true).await.primary;
    let mut client = hub.connect("m3", &key).await;
    client.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;

    let sessions = hub.handle.sessions().clone();
    let mut short = call("slow", Value::Null, 1, 0);
    short.response_timeout = Duration::from_millis(300);
    let err = sessions.invoke_method(&device_id("m3"), short).await.unwrap_err();
    assert!(matches!(err, MethodCallError::Timeout));
    assert_eq!(err.error_code().code(), 504101);

    // A late answer to the timed-out call is ignored and the connection stays usable.
    let request = client.next_publish().await;
    assert_eq!(request.qos, QoS::AtMostOnce, "method requests go at QoS 0");
    let rid = rid(&request.topic);
    client.answer_method(&rid, 200, QoS::AtLeastOnce, b"{}").await;

    let (status, error) =
        hub.post_method("m3", &json!({"methodName":"slow","responseTimeoutInSeconds":5})).await;
    assert_eq!(status, 504);
    assert!(error["Message"].as_str().unwrap().starts_with("ErrorCode:GatewayTimeout;"), "{error}");
    assert!(hub.handle.sessions().is_connected(&device_id("m3")));
    hub.stop().await;
}

#[tokio::test]
async fn connect_timeout_waits_for_the_device_to_subscribe() {
    let hub = spawn_hub().await;
    let key = hub.add_device("m4", true).await.primary;
    let sessions = hub.handle.sessions().clone();

    // In process: the call is provably waiting before the device connects and subscribes.
    let m4 = device_id("m4");
    let invoke = sessions.invoke_method(&m4, call("hello", json!([1, 2]), 10, 20));
    tokio::pin!(invoke);
    assert!(futures::poll!(&mut invoke).is_pending());
    let mut client = hub.connect("m4", &key).await;
    assert!(futures::poll!(&mut invoke).is_pending(), "connected but not subscribed yet");
    let late_subscriber = async {
        client.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce).await;
        answer_next(&mut client, 200).await
    };
    let (answer, (name, payload)) = tokio::join!(invoke, late_subscriber);
    assert_eq!((name.as_str(), payload), ("hello", json!([1, 2])));
    assert_eq!(answer.unwrap(), MethodResponse { status: 200, payload: json!({ "echo": [1, 2] }) });
    drop(client);

    // Over REST with connectTimeoutInSeconds, against a device that connects during the call.
    let key = hub.add_device("m5", true).await.primary;
    let body =
        json!({"methodName":"hi","responseTimeoutInSeconds":10,"connectTimeoutInSeconds":20});
    let late_device = async {
        let mut client = hub.connect("m5", &key).await;
        client.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;
        answer_next(&mut client, 202).await
    };
    let ((status, answer), _) = tokio::join!(hub.post_method("m5", &body), late_device);
    assert_eq!((status, answer), (200, json!({"status":202,"payload":{"echo":null}})));

    // connectTimeoutInSeconds 0 fails at once for a device that is offline.
    let err = sessions
        .invoke_method(&device_id("m5-offline"), call("x", Value::Null, 5, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, MethodCallError::NotOnline));
    hub.stop().await;
}
