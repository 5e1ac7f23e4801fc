//! The device client against the real hub (`hub::Hub::spawn` on port 0 in a temp dir).

#![allow(clippy::unwrap_used, reason = "test harness: a failed setup step should fail the test")]

use std::time::Duration;

use device::{handler, Client, DeviceConfig, MethodAnswer, Telemetry, TlsConfig};
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HOST: &str = "hubsim-device-test.azure-devices.net";
const WAIT: Duration = Duration::from_secs(10);

struct TestHub {
    handle: HubHandle,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestHub {
    async fn start() -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = HubListeners {
            mqtt: Some(bind().await),
            mqtts: Some(bind().await),
            http: Some(bind().await),
            https: None,
        };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(HubConfig::new(dir.path(), HOST), listeners, shutdown.clone())
            .await
            .unwrap();
        TestHub { handle, shutdown, _dir: dir }
    }

    async fn add_device(&self, id: &str) -> String {
        let key = protocol::sas::encode_key(format!("key of {id} for device tests").as_bytes());
        let body = format!(
            r#"{{"deviceId":"{id}","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
        );
        let request = DeviceRequest::parse(body.as_bytes()).unwrap();
        self.handle.registry().create_device(&DeviceId::new(id).unwrap(), &request).await.unwrap();
        key
    }

    fn service_token(&self) -> String {
        let expiry =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
                + 3600;
        protocol::sas::generate(HOST, self.handle.owner_key(), Some("iothubowner"), expiry).unwrap()
    }

    async fn rest(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let http = self.handle.addrs().http.unwrap();
        let url = format!("http://{http}{path}?api-version=2021-04-12");
        let response = reqwest::Client::new()
            .request(method, url)
            .header("Authorization", self.service_token())
            .header("If-Match", "\"*\"")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn twin_methods_desired_and_telemetry_against_the_hub() {
    let hub = TestHub::start().await;
    let key = hub.add_device("dev-a").await;
    let mqtt = hub.handle.addrs().mqtt.unwrap();
    let cfg = DeviceConfig::new(HOST, DeviceId::new("dev-a").unwrap(), key, mqtt).unwrap();
    let tracker = TaskTracker::new();
    let client = Client::connect(cfg, &tracker, hub.shutdown.child_token()).await.unwrap();

    let twin = client.get_twin().await.unwrap();
    assert_eq!((twin.desired_version, twin.reported_version), (1, 1));
    assert_eq!(client.patch_reported(&json!({ "fw": "1.0" })).await, Ok(2));
    let twin = client.get_twin().await.unwrap();
    assert_eq!((twin.reported_version, twin.reported.get("fw")), (2, Some(&json!("1.0"))));

    client.on_method(
        "double",
        handler(|req| async move {
            let n = req.payload.get("n").and_then(Value::as_i64).unwrap_or(0);
            MethodAnswer::ok(json!({ "result": n * 2 }))
        }),
    );
    let call =
        json!({ "methodName": "double", "payload": { "n": 21 }, "responseTimeoutInSeconds": 5 });
    // The subscription is asynchronous: retry while the hub still reports the device offline for methods.
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let (status, body) = hub.rest(reqwest::Method::POST, "/twins/dev-a/methods", &call).await;
        if status == 200 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(answer, (200, json!({ "status": 200, "payload": { "result": 42 } })));

    let mut patches = client.desired_patches();
    let patch = json!({ "properties": { "desired": { "rate": 5 } } });
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivered = loop {
        let (status, _) = hub.rest(reqwest::Method::PATCH, "/twins/dev-a", &patch).await;
        assert_eq!(status, 200);
        match tokio::time::timeout(Duration::from_millis(200), patches.recv()).await {
            Ok(Some(delivered)) => break delivered,
            _ => assert!(tokio::time::Instant::now() < deadline, "no desired patch delivered"),
        }
    };
    assert_eq!(delivered.patch.get("rate"), Some(&json!(5)));
    assert!(delivered.version >= 2);

    client.send_telemetry(Telemetry::json(&json!({ "t": 1 })).property("k", "v")).await.unwrap();
    client.disconnect().await;
    hub.shutdown.cancel();
    tokio::time::timeout(WAIT, hub.handle.wait()).await.unwrap();
}

#[tokio::test]
async fn wrong_key_is_refused_by_the_hub_and_tls_works() {
    let hub = TestHub::start().await;
    let key = hub.add_device("dev-b").await;
    let addrs = hub.handle.addrs();
    let tracker = TaskTracker::new();

    let wrong = protocol::sas::encode_key(b"not the key of dev-b at all....");
    let cfg = DeviceConfig::new(HOST, DeviceId::new("dev-b").unwrap(), wrong, addrs.mqtt.unwrap())
        .unwrap();
    let refused = Client::connect(cfg, &tracker, hub.shutdown.child_token()).await;
    assert_eq!(refused.err(), Some(device::Error::AuthRefused { code: 5 }));

    let ca_pem = hub.handle.ca_pem().unwrap().to_owned();
    let mut cfg =
        DeviceConfig::new(HOST, DeviceId::new("dev-b").unwrap(), key, addrs.mqtts.unwrap())
            .unwrap();
    cfg.tls = Some(TlsConfig::from_ca_pem(ca_pem.as_bytes()).unwrap());
    let client = Client::connect(cfg, &tracker, hub.shutdown.child_token()).await.unwrap();
    assert_eq!(client.patch_reported(&json!({ "tls": true })).await, Ok(2));
    hub.shutdown.cancel();
    tokio::time::timeout(WAIT, hub.handle.wait()).await.unwrap();
}
