//! Registry REST flows: create (generated and given keys), get, update with If-Match, list,
//! statistics, delete, and their error codes.

use reqwest::Method;
use serde_json::json;
use test_support::spawn_hub;

#[tokio::test]
async fn device_lifecycle() {
    let hub = spawn_hub().await;

    // Create with `"symmetricKey":{}` → 200, generated base64 keys, quoted ETag header.
    let created = hub
        .call(
            Method::PUT,
            "/devices/d1",
            Some(json!({"deviceId":"d1","status":"enabled","authentication":{"symmetricKey":{}}})),
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(created.header("etag"), Some("\"MA==\""));
    let body = &created.body;
    assert_eq!(body["deviceId"], "d1");
    assert_eq!(body["etag"], "MA==");
    assert_eq!(body["connectionState"], "Disconnected");
    assert_eq!(body["authentication"]["type"], "sas");
    let primary = body["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_owned();
    assert!(protocol::sas::decode_key(&primary).is_ok());
    assert_ne!(primary, body["authentication"]["symmetricKey"]["secondaryKey"].as_str().unwrap());

    // Create again → 409 DeviceAlreadyExists.
    let again = hub.call(Method::PUT, "/devices/d1", Some(json!({"deviceId":"d1"}))).await;
    assert_eq!(again.error(), "409 DeviceAlreadyExists");

    // Get → 200, same keys.
    let got = hub.call(Method::GET, "/devices/d1", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["authentication"]["symmetricKey"]["primaryKey"], primary.as_str());

    // Update with a stale etag → 412; with "*" → 200 and a new etag; keys kept when not given.
    let stale = hub
        .call_with(
            Method::PUT,
            "/devices/d1",
            Some(json!({"status":"disabled"})),
            &[("If-Match", "\"OTk=\"")],
        )
        .await;
    assert_eq!(stale.error(), "412 PreconditionFailed");
    let updated = hub
        .call_with(
            Method::PUT,
            "/devices/d1",
            Some(json!({"deviceId":"d1","status":"disabled","statusReason":"maintenance"})),
            &[("If-Match", "\"*\"")],
        )
        .await;
    assert_eq!(updated.status, 200, "{updated:?}");
    assert_eq!(updated.body["status"], "disabled");
    assert_eq!(updated.body["statusReason"], "maintenance");
    assert_eq!(updated.body["etag"], "MQ==");
    assert_eq!(updated.body["authentication"]["symmetricKey"]["primaryKey"], primary.as_str());
    // The real etag (quoted or not) matches.
    let with_etag = hub
        .call_with(
            Method::PUT,
            "/devices/d1",
            Some(json!({"status":"enabled"})),
            &[("If-Match", "MQ==")],
        )
        .await;
    assert_eq!(with_etag.status, 200);

    // Update of a missing device → 404.
    let missing = hub
        .call_with(Method::PUT, "/devices/ghost", Some(json!({})), &[("If-Match", "\"*\"")])
        .await;
    assert_eq!(missing.error(), "404 DeviceNotFound");

    // Given keys are kept; keys that are not base64 → 400.
    let given = hub.call(Method::PUT, "/devices/d2", Some(json!({"authentication":{"type":"sas","symmetricKey":{"primaryKey":"cHJpbWFyeQ==","secondaryKey":"c2Vjb25kYXJ5"}}}))).await;
    assert_eq!(given.status, 200);
    assert_eq!(given.body["authentication"]["symmetricKey"]["primaryKey"], "cHJpbWFyeQ==");
    let bad_key = hub
        .call(
            Method::PUT,
            "/devices/d3",
            Some(json!({"authentication":{"symmetricKey":{"primaryKey":"not base64!"}}})),
        )
        .await;
    assert_eq!(bad_key.error(), "400 ArgumentInvalid");
    let id_mismatch = hub.call(Method::PUT, "/devices/d3", Some(json!({"deviceId":"other"}))).await;
    assert_eq!(id_mismatch.error(), "400 ArgumentInvalid");

    // List and statistics.
    let listed = hub.call(Method::GET, "/devices?top=1", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    let all = hub.call(Method::GET, "/devices", None).await;
    let ids: Vec<&str> =
        all.body.as_array().unwrap().iter().map(|d| d["deviceId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["d1", "d2"]);
    let bad_top = hub.call(Method::GET, "/devices?top=many", None).await;
    assert_eq!(bad_top.error(), "400 ArgumentInvalid");
    let stats = hub.call(Method::GET, "/statistics/devices", None).await;
    assert_eq!(
        stats.body,
        json!({"totalDeviceCount":2,"enabledDeviceCount":2,"disabledDeviceCount":0})
    );
    let service = hub.call(Method::GET, "/statistics/service", None).await;
    assert_eq!(service.body, json!({"connectedDeviceCount":0}));

    // Delete: stale etag → 412, "*" → 204, then 404 everywhere.
    let stale_delete =
        hub.call_with(Method::DELETE, "/devices/d1", None, &[("If-Match", "\"MA==\"")]).await;
    assert_eq!(stale_delete.error(), "412 PreconditionFailed");
    let deleted =
        hub.call_with(Method::DELETE, "/devices/d1", None, &[("If-Match", "\"*\"")]).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(hub.call(Method::GET, "/devices/d1", None).await.error(), "404 DeviceNotFound");
    assert_eq!(hub.call(Method::GET, "/twins/d1", None).await.error(), "404 DeviceNotFound");
    assert_eq!(hub.call(Method::DELETE, "/devices/d1", None).await.error(), "404 DeviceNotFound");

    // Re-create after delete gets a fresh identity and twin.
    let recreated = hub.create_device("d1").await;
    assert_eq!(recreated["etag"], "MA==");
    let twin = hub.call(Method::GET, "/twins/d1", None).await;
    assert_eq!(twin.body["properties"]["desired"]["$version"], 1);
    hub.stop().await;
}
