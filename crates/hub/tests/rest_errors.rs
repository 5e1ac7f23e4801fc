//! Bad inputs through REST: every gate answers in IoT Hub's error shape, the hub keeps serving and
//! nothing stored is lost.

use reqwest::Method;
use serde_json::json;
use test_support::sas::service_token;
use test_support::{spawn_hub, Reply, HOST};

#[tokio::test]
async fn auth_gate() {
    let hub = spawn_hub().await;
    hub.create_device("keep").await;
    let url = hub.url("/devices/keep");
    let send = |token: Option<String>| {
        let mut request = hub.client.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let key = hub.handle.owner_key().to_owned();
    assert_eq!(send(None).await.error(), "401 IotHubUnauthorizedAccess");
    assert_eq!(send(Some("garbage".into())).await.error(), "401 IotHubUnauthorizedAccess");
    assert_eq!(
        send(Some(service_token(HOST, &key, "iothubowner", -10))).await.error(),
        "401 IotHubUnauthorized"
    );
    assert_eq!(
        send(Some(service_token(HOST, "Zm9yZ2VkIGtleQ==", "iothubowner", 3600))).await.error(),
        "401 IotHubUnauthorizedAccess"
    );
    assert_eq!(
        send(Some(service_token(HOST, &key, "registryRead", 3600))).await.error(),
        "401 IotHubUnauthorizedAccess"
    );
    assert_eq!(
        send(Some(service_token("other.hub", &key, "iothubowner", 3600))).await.error(),
        "401 IotHubUnauthorizedAccess"
    );
    let device_token =
        protocol::sas::generate(&format!("{HOST}/devices/keep"), &key, None, 4_000_000_000)
            .unwrap();
    assert_eq!(send(Some(device_token)).await.error(), "401 IotHubUnauthorizedAccess");
    // Node's field order (sr, sig, skn, se) and an unencoded sr are accepted.
    let python = service_token(HOST, &key, "iothubowner", 3600);
    let fields: std::collections::HashMap<&str, &str> = python
        .trim_start_matches("SharedAccessSignature ")
        .split('&')
        .filter_map(|f| f.split_once('='))
        .collect();
    let node = format!(
        "SharedAccessSignature sr={}&sig={}&skn={}&se={}",
        fields["sr"], fields["sig"], fields["skn"], fields["se"]
    );
    assert_eq!(send(Some(node)).await.status, 200);
    assert_eq!(send(Some(python)).await.status, 200);
    hub.stop().await;
}

#[tokio::test]
async fn api_version_gate() {
    let hub = spawn_hub().await;
    let get = |url: String| {
        let request = hub.client.get(url).header("Authorization", hub.service_token());
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let missing = get(format!("{}/devices", hub.base)).await;
    assert_eq!(missing.error(), "400 InvalidProtocolVersion");
    assert_eq!(
        get(format!("{}/devices?api-version=1999-01-01", hub.base)).await.error(),
        "400 InvalidProtocolVersion"
    );
    for version in ["2018-06-30", "2019-10-01", "2020-03-13", "2020-09-30", "2021-04-12"] {
        assert_eq!(
            get(format!("{}/devices?api-version={version}", hub.base)).await.status,
            200,
            "{version}"
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_state_survives() {
    let hub = spawn_hub().await;
    hub.create_device("keep").await;
    let patched = hub.call(Method::PATCH, "/twins/keep", Some(json!({"tags":{"site":"a"}}))).await;
    assert_eq!(patched.status, 200);

    // Unknown routes and methods → 404 in IoT Hub's shape.
    assert_eq!(hub.call(Method::GET, "/nope", None).await.error(), "404 GenericNotFound");
    assert_eq!(hub.call(Method::POST, "/devices/keep", None).await.error(), "404 GenericNotFound");
    assert_eq!(
        hub.call(Method::GET, "/devices/keep/modules", None).await.error(),
        "404 GenericNotFound"
    );

    // Invalid ids → 400.
    assert_eq!(
        hub.call(Method::GET, "/devices/bad%20id", None).await.error(),
        "400 ArgumentInvalid"
    );
    let long = "x".repeat(129);
    assert_eq!(
        hub.call(Method::PUT, &format!("/devices/{long}"), Some(json!({}))).await.error(),
        "400 ArgumentInvalid"
    );
    assert_eq!(hub.call(Method::GET, "/twins/a%2Fb", None).await.error(), "400 ArgumentInvalid");

    // Malformed JSON and wrong shapes → 400.
    let raw = |method: Method, path: &str, body: &'static str| {
        let request =
            hub.request(method, path).header("Content-Type", "application/json").body(body);
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    assert_eq!(
        raw(Method::PUT, "/devices/new1", "{not json").await.error(),
        "400 DeserializationError"
    );
    assert_eq!(
        raw(Method::PUT, "/devices/new1", "[1,2]").await.error(),
        "400 DeserializationError"
    );
    assert_eq!(
        raw(Method::PUT, "/devices/new1", r#"{"status":"paused"}"#).await.error(),
        "400 DeserializationError"
    );
    assert_eq!(raw(Method::PATCH, "/twins/keep", "{").await.error(), "400 DeserializationError");
    assert_eq!(
        raw(Method::PATCH, "/twins/keep", r#"{"tags":5}"#).await.error(),
        "400 ArgumentInvalid"
    );
    assert_eq!(
        raw(Method::PATCH, "/twins/keep", r#"{"tags":{"bad key":1}}"#).await.error(),
        "400 ArgumentInvalid"
    );
    assert_eq!(
        raw(Method::PATCH, "/twins/keep", r#"{"properties":{"reported":{"x":1}}}"#).await.error(),
        "400 ArgumentInvalid"
    );
    assert_eq!(raw(Method::POST, "/devices/query", "{}").await.error(), "400 DeserializationError");
    assert_eq!(
        raw(Method::POST, "/devices/query", r#"{"query":"SELECT FROM"}"#).await.error(),
        "400 ArgumentInvalid"
    );

    // Oversize bodies → 413.
    let huge = json!({"tags": {"blob": "x".repeat(300 * 1024)}});
    assert_eq!(
        hub.call(Method::PATCH, "/twins/keep", Some(huge)).await.error(),
        "413 MessageTooLarge"
    );
    let big_section: serde_json::Map<String, serde_json::Value> =
        (0..20).map(|idx| (format!("k{idx}"), json!("y".repeat(1000)))).collect();
    let too_big = hub.call(Method::PATCH, "/twins/keep", Some(json!({"tags": big_section}))).await;
    assert_eq!(too_big.error(), "413 MessageTooLarge");

    // Nothing was lost or half-applied.
    let twin = hub.call(Method::GET, "/twins/keep", None).await;
    assert_eq!(twin.status, 200);
    assert_eq!(twin.body["tags"], json!({"site":"a"}));
    assert_eq!(hub.call(Method::GET, "/devices/new1", None).await.error(), "404 DeviceNotFound");
    hub.stop().await;
}
