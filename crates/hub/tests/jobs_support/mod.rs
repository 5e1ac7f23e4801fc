//! Shared harness of the `jobs_*` integration tests: a real hub (plain MQTT + plain HTTP on port 0)
//! with a chosen jobs config and data directory, REST helpers for jobs and `devices.jobs` queries, and
//! simulated devices on a raw MQTT client (from `mqtt_support`) that answer methods as told and record
//! the desired patches they receive.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hub::jobs::JobsConfig;
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use parking_lot::Mutex;
use protocol::device::DeviceRequest;
use protocol::topic::HubPublish;
use reqwest::Method;
use rumqttc::mqttbytes::v4::{Packet, PubAck};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mqtt_support::{device, token, username, RawClient};

/// The hub's host name.
pub const HOST: &str = "hubsim-jobs.azure-devices.net";
/// How long a test waits for a job before failing.
pub const JOB_WAIT: Duration = Duration::from_secs(30);

/// A running hub.
pub struct JobsHub {
    pub handle: HubHandle,
    pub shutdown: CancellationToken,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    client: reqwest::Client,
}

/// A REST reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `"<status> <iothub-errorcode>"` of an error reply.
    pub fn error(&self) -> String {
        format!("{} {}", self.status, self.header("iothub-errorcode").unwrap_or("-"))
    }
}

/// How a simulated device answers direct methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Answers with this status after this delay.
    Answer { status: i32, delay: Duration },
    /// Receives method requests and never answers.
    Silent,
}

/// What a simulated device saw.
#[derive(Debug, Default)]
pub struct DeviceLog {
    pub method_calls: AtomicU32,
    pub desired_patches: Mutex<Vec<Value>>,
}

/// Simulated devices, each on its own task; dropped with [`Fleet::stop`].
pub struct Fleet {
    tracker: TaskTracker,
    stop: CancellationToken,
    pub logs: HashMap<String, Arc<DeviceLog>>,
}

impl JobsHub {
    /// Starts a hub on `dir` with `jobs` settings.
    pub async fn start(dir: &Path, jobs: JobsConfig) -> JobsHub {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = HubListeners {
            mqtt: Some(bind().await),
            http: Some(bind().await),
            ..HubListeners::default()
        };
        let shutdown = CancellationToken::new();
        let mut cfg = HubConfig::new(dir, HOST);
        cfg.jobs = jobs;
        let handle = Hub::spawn(cfg, listeners, shutdown.clone()).await.unwrap();
        let addrs = handle.addrs();
        JobsHub {
            mqtt: addrs.mqtt.unwrap(),
            http: addrs.http.unwrap(),
            handle,
            shutdown,
            client: reqwest::Client::new(),
        }
    }

    /// Cancels the hub and waits for it to drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle.wait())
            .await
            .expect("the hub drains");
    }

    /// Registers `id` with a fixed key; returns the key.
    pub async fn add_device(&self, id: &str) -> String {
        let key = protocol::sas::encode_key(format!("key of {id} ............").as_bytes());
        let body = format!(
            r#"{{"deviceId":"{id}","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
        );
        let request = DeviceRequest::parse(body.as_bytes()).unwrap();
        self.handle.registry().create_device(&device(id), &request).await.unwrap();
        key
    }

    /// An authorized REST call with extra headers.
    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("http://{}{path}{sep}api-version=2021-04-12", self.http);
        let expiry = u64::try_from(chrono::Utc::now().timestamp() + 3600).unwrap();
        let sas =
            protocol::sas::generate(HOST, self.handle.owner_key(), Some("iothubowner"), expiry)
                .unwrap();
        let mut request = self.client.request(method, url).header("Authorization", sas);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, headers, body }
    }

    pub async fn put_job(&self, job_id: &str, body: Value) -> Reply {
        self.rest(Method::PUT, &format!("/jobs/v2/{job_id}"), Some(body), &[]).await
    }

    pub async fn get_job(&self, job_id: &str) -> Reply {
        self.rest(Method::GET, &format!("/jobs/v2/{job_id}"), None, &[]).await
    }

    pub async fn cancel_job(&self, job_id: &str) -> Reply {
        self.rest(Method::POST, &format!("/jobs/v2/{job_id}/cancel"), None, &[]).await
    }

    /// Polls `GET /jobs/v2/{id}` until `status` (fails on another terminal status or after [`JOB_WAIT`]).
    pub async fn wait_job(&self, job_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + JOB_WAIT;
        loop {
            let reply = self.get_job(job_id).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let current = reply.body["status"].as_str().unwrap_or_default().to_owned();
            if current == status {
                return reply.body;
            }
            let terminal = ["completed", "failed", "cancelled"].contains(&current.as_str());
            assert!(
                !terminal && Instant::now() < deadline,
                "job {job_id} is {current}, waiting for {status}: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every `devices.jobs` record of `job_id`, through `POST /devices/query` (all pages).
    pub async fn device_jobs(&self, job_id: &str) -> Vec<Value> {
        let query = json!({"query": format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'")});
        let mut records = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "100")];
            if let Some(token) = &continuation {
                headers.push(("x-ms-continuation", token.as_str()));
            }
            let reply =
                self.rest(Method::POST, "/devices/query", Some(query.clone()), &headers).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            records.extend(reply.body.as_array().cloned().unwrap_or_default());
            continuation = reply.header("x-ms-continuation").map(str::to_owned);
            if continuation.is_none() {
                return records;
            }
        }
    }

    /// Connects a simulated device; it runs until the fleet stops.
    pub async fn connect_device(
        &self,
        fleet: &mut Fleet,
        id: &str,
        key: &str,
        behaviour: Behaviour,
    ) {
        let expiry = u64::try_from(chrono::Utc::now().timestamp() + 3600).unwrap();
        let password = token(&format!("{HOST}/devices/{id}"), key, expiry);
        let (mut client, ack) =
            RawClient::connect(self.mqtt, id, &username(HOST, id), &password, true).await;
        assert_eq!(ack.code as u8, 0, "CONNACK for {id}");
        // A clean session, so no subscription from an earlier connection delivers a request before
        // the SUBACKs below; the method subscription comes last for the same reason.
        client.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce).await;
        client.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;
        let log = Arc::new(DeviceLog::default());
        fleet.logs.insert(id.to_owned(), log.clone());
        fleet.tracker.spawn(device_loop(client, behaviour, log, fleet.stop.clone()));
    }
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet { tracker: TaskTracker::new(), stop: CancellationToken::new(), logs: HashMap::new() }
    }

    pub fn calls(&self, id: &str) -> u32 {
        self.logs.get(id).map_or(0, |log| log.method_calls.load(Ordering::Relaxed))
    }

    pub fn patches(&self, id: &str) -> Vec<Value> {
        self.logs.get(id).map(|log| log.desired_patches.lock().clone()).unwrap_or_default()
    }

    /// Disconnects every device.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn device_loop(
    mut client: RawClient<TcpStream>,
    behaviour: Behaviour,
    log: Arc<DeviceLog>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let publish = match client.try_recv(Duration::from_millis(50)).await {
            None => continue,
            Some(None) => return,
            Some(Some(Packet::Publish(publish))) => publish,
            Some(Some(_)) => continue,
        };
        if publish.qos == QoS::AtLeastOnce {
            client.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
        }
        match HubPublish::parse(&publish.topic) {
            Ok(HubPublish::MethodRequest { rid, .. }) => {
                log.method_calls.fetch_add(1, Ordering::Relaxed);
                if let Behaviour::Answer { status, delay } = behaviour {
                    tokio::time::sleep(delay).await;
                    let payload: Value =
                        serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                    let body = serde_json::to_vec(&json!({"echo": payload})).unwrap();
                    client
                        .publish(
                            &format!("$iothub/methods/res/{status}/?$rid={rid}"),
                            QoS::AtMostOnce,
                            &body,
                        )
                        .await;
                }
            }
            Ok(HubPublish::DesiredPatch { .. }) => {
                let patch: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                log.desired_patches.lock().push(patch);
            }
            _ => {}
        }
    }
}

/// A method job body.
pub fn method_job(condition: &str, extra: Value) -> Value {
    let mut body = json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 5},
        "queryCondition": condition,
        "maxExecutionTimeInSeconds": 60,
    });
    merge(&mut body, extra);
    body
}

/// A twin job body setting desired `fw` and tag `rolled`.
pub fn twin_job(condition: &str, extra: Value) -> Value {
    let mut body = json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"rolled": "yes"}, "properties": {"desired": {"fw": "2.0"}}},
        "queryCondition": condition,
    });
    merge(&mut body, extra);
    body
}

/// Shallow-merges `extra` into `body` (a `null` value removes the key).
pub fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (key, value) in extra {
            if value.is_null() {
                body.remove(&key);
            } else {
                body.insert(key, value);
            }
        }
    }
}

/// Each record as `device status error-code`, sorted.
pub fn summary(records: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["deviceId"].as_str().unwrap_or("?"),
                r["status"].as_str().unwrap_or("?"),
                r["error"]["code"].as_str().unwrap_or("-")
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A start time `millis` from now, as the SDKs send it.
pub fn start_in(millis: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(millis))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
