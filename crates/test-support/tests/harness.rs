//! The harness against the real hub: a caller-owned data dir survives a restart, registration
//! through the registry and through REST, device login over MQTT, the error-shape check, and the
//! jobs helpers on a job that completes.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

use reqwest::Method;
use rumqttc::mqttbytes::QoS;
use serde_json::json;
use test_support::jobs::{summary, twin_job};
use test_support::{spawn_hub_in, DeviceKeys, HOST};

#[tokio::test]
async fn restart_on_a_given_dir_keeps_devices_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let hub = spawn_hub_in(dir.path(), |_| {}).await;
    assert_eq!(hub.host(), HOST);
    assert_eq!(hub.data_dir(), dir.path());
    assert!(hub.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        hub.service_connection_string(),
        format!(
            "HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            hub.owner_key()
        )
    );
    let keys = hub.add_device("h1", true).await;
    assert_eq!(keys, DeviceKeys::for_device("h1"));
    let created = hub.create_device("h2").await;
    assert_eq!(created["deviceId"], "h2");
    assert_eq!(hub.call(Method::GET, "/devices/nope", None).await.error(), "404 DeviceNotFound");
    let owner_key = hub.owner_key().to_owned();

    let hub = hub.restart().await;
    assert_eq!(hub.owner_key(), owner_key);
    let listed = hub.call(Method::GET, "/devices", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2, "{listed:?}");
    let mut device = hub.connect("h1", &keys.primary).await;
    device.subscribe("$iothub/twin/res/#", QoS::AtMostOnce).await;
    device.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, b" ").await;
    assert_eq!(device.next_publish().await.topic, "$iothub/twin/res/200/?$rid=1");
    hub.stop().await;
    assert!(dir.path().join(hub::DATABASE_FILE).exists(), "a given dir outlives the hub");
}

#[tokio::test]
async fn jobs_helpers_follow_a_twin_job() {
    let hub = test_support::spawn_hub().await;
    hub.add_device("j1", true).await;
    assert_eq!(hub.put_job("j", twin_job("deviceId = 'j1'", json!({}))).await.status, 200);
    let done = hub.wait_job("j", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 1, "{done}");
    assert_eq!(summary(&hub.device_jobs("j").await), ["j1 completed -"]);
    assert_eq!(hub.get_job("none").await.error(), "404 JobNotFound");
    hub.stop().await;
}
