//! Twin REST flows: get, merge patch, replace, etags and If-Match, versions and `$metadata`.

use reqwest::Method;
use serde_json::json;
use test_support::spawn_hub;

#[tokio::test]
async fn twin_get_patch_replace() {
    let hub = spawn_hub().await;
    hub.create_device("t1").await;

    let fresh = hub.call(Method::GET, "/twins/t1", None).await;
    assert_eq!(fresh.status, 200);
    let twin = &fresh.body;
    assert_eq!(twin["deviceId"], "t1");
    assert_eq!(twin["etag"], "AAAAAAAAAAE=");
    assert_eq!(fresh.header("etag"), Some("\"AAAAAAAAAAE=\""));
    assert_eq!(twin["version"], 1);
    assert_eq!(twin["status"], "enabled");
    assert_eq!(twin["connectionState"], "Disconnected");
    assert_eq!(twin["properties"]["desired"]["$version"], 1);
    assert_eq!(twin["properties"]["reported"]["$version"], 1);
    assert!(twin["properties"]["desired"]["$metadata"]["$lastUpdated"].is_string());
    assert!(twin.get("tags").is_none());

    // PATCH with the current etag (quoted, as the SDKs send it).
    let patch = json!({"tags": {"site": "b43", "floor": 3}, "properties": {"desired": {"rate": 5, "mode": {"a": 1}}}});
    let patched = hub
        .call_with(Method::PATCH, "/twins/t1", Some(patch), &[("If-Match", "\"AAAAAAAAAAE=\"")])
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    let twin = &patched.body;
    assert_eq!(twin["tags"], json!({"site": "b43", "floor": 3}));
    assert_eq!(twin["properties"]["desired"]["rate"], 5);
    assert_eq!(twin["properties"]["desired"]["$version"], 2);
    assert_eq!(twin["properties"]["desired"]["$metadata"]["rate"]["$lastUpdatedVersion"], 2);
    assert_eq!(twin["version"], 2);
    let etag = twin["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag, "AAAAAAAAAAE=");
    assert_eq!(patched.header("etag"), Some(format!("\"{etag}\"").as_str()));

    // The old etag no longer matches → 412; the wildcard always does.
    let stale = hub
        .call_with(
            Method::PATCH,
            "/twins/t1",
            Some(json!({"tags":{"x":1}})),
            &[("If-Match", "\"AAAAAAAAAAE=\"")],
        )
        .await;
    assert_eq!(stale.error(), "412 PreconditionFailed");
    let deletion = json!({"properties": {"desired": {"mode": null}}});
    let merged =
        hub.call_with(Method::PATCH, "/twins/t1", Some(deletion), &[("If-Match", "\"*\"")]).await;
    assert_eq!(merged.status, 200);
    assert!(merged.body["properties"]["desired"].get("mode").is_none());
    assert_eq!(merged.body["properties"]["desired"]["rate"], 5);
    assert_eq!(merged.body["properties"]["desired"]["$version"], 3);

    // PUT replaces tags and desired wholesale.
    let replacement = json!({"tags": {"only": true}, "properties": {"desired": {"fresh": "yes"}}});
    let replaced = hub.call(Method::PUT, "/twins/t1", Some(replacement)).await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(replaced.body["tags"], json!({"only": true}));
    assert!(replaced.body["properties"]["desired"].get("rate").is_none());
    assert_eq!(replaced.body["properties"]["desired"]["fresh"], "yes");
    assert_eq!(replaced.body["properties"]["desired"]["$version"], 4);

    // A twin read earlier and edited can be PUT back whole (reported and desired's $metadata/$version ignored).
    let mut read_back = hub.call(Method::GET, "/twins/t1", None).await.body;
    read_back["properties"]["desired"]["fresh"] = json!("again");
    read_back["properties"]["reported"]["ignored"] = json!(1);
    let round_trip = hub.call(Method::PUT, "/twins/t1", Some(read_back)).await;
    assert_eq!(round_trip.status, 200, "{round_trip:?}");
    assert_eq!(round_trip.body["properties"]["desired"]["fresh"], "again");
    assert!(round_trip.body["properties"]["reported"].get("ignored").is_none());

    // An empty patch changes nothing.
    let before = hub.call(Method::GET, "/twins/t1", None).await.body;
    let noop = hub.call(Method::PATCH, "/twins/t1", Some(json!({}))).await;
    assert_eq!(noop.body["etag"], before["etag"]);
    assert_eq!(noop.body["version"], before["version"]);

    // Unknown device → 404 DeviceNotFound for every twin verb.
    assert_eq!(hub.call(Method::GET, "/twins/nobody", None).await.error(), "404 DeviceNotFound");
    assert_eq!(
        hub.call(Method::PATCH, "/twins/nobody", Some(json!({}))).await.error(),
        "404 DeviceNotFound"
    );
    assert_eq!(
        hub.call(Method::PUT, "/twins/nobody", Some(json!({}))).await.error(),
        "404 DeviceNotFound"
    );
    hub.stop().await;
}

#[tokio::test]
async fn reported_comes_from_the_device_and_desired_push_has_version() {
    let hub = spawn_hub().await;
    hub.create_device("t2").await;
    let id = protocol::ids::DeviceId::new("t2").unwrap();
    let registry = hub.handle.registry();

    // The device side (what the MQTT endpoint calls) bumps reported and shows in the service twin.
    let version = registry.patch_reported(&id, json!({"temp": 21.5}), None).await.unwrap();
    assert_eq!(version, 2);
    let stale = registry.patch_reported(&id, json!({"temp": 22}), Some(1)).await.unwrap_err();
    assert_eq!(stale.error_code(), protocol::error::ErrorCode::PreconditionFailed);
    let twin = hub.call(Method::GET, "/twins/t2", None).await.body;
    assert_eq!(twin["properties"]["reported"]["temp"], 21.5);
    assert_eq!(twin["properties"]["reported"]["$version"], 2);
    assert_eq!(twin["version"], 1, "reported writes do not bump the twin version");
    assert_eq!(
        registry.device_twin_view(&id).unwrap(),
        json!({"desired":{"$version":1},"reported":{"temp":21.5,"$version":2}})
    );

    // A desired write returns the body pushed to the device: the patch as applied plus $version.
    let patch = protocol::twin::TwinPatch::parse(
        &json!({"properties":{"desired":{"a":1,"b":null}}}),
        protocol::twin::ReportedInPatch::Reject,
    )
    .unwrap();
    let write = registry.update_twin(&id, &patch, &hub::registry::IfMatch::Any).await.unwrap();
    assert_eq!(write.desired_push, Some(json!({"a":1,"b":null,"$version":2})));
    let tags_only = protocol::twin::TwinPatch::parse(
        &json!({"tags":{"t":1}}),
        protocol::twin::ReportedInPatch::Reject,
    )
    .unwrap();
    assert_eq!(
        registry
            .update_twin(&id, &tags_only, &hub::registry::IfMatch::Absent)
            .await
            .unwrap()
            .desired_push,
        None
    );
    hub.stop().await;
}
