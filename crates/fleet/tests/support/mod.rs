//! Shared harness of the fleet integration tests: a real hub on port 0 (plain MQTT and HTTP) and
//! REST helpers signed with the owner key.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "test harness: a broken setup step fails the test"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::connection_string::ServiceConnectionString;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const HOST: &str = "fleet-test.azure-devices.net";

pub struct TestHub {
    pub handle: HubHandle,
    shutdown: CancellationToken,
    pub mqtt: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    http_client: reqwest::Client,
}

impl TestHub {
    pub async fn start(dir: &Path) -> TestHub {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = HubListeners {
            mqtt: Some(bind().await),
            http: Some(bind().await),
            ..HubListeners::default()
        };
        let shutdown = CancellationToken::new();
        let handle =
            Hub::spawn(HubConfig::new(dir, HOST), listeners, shutdown.clone()).await.unwrap();
        let addrs = handle.addrs();
        TestHub {
            mqtt: addrs.mqtt.unwrap(),
            http: addrs.http.unwrap(),
            handle,
            shutdown,
            http_client: reqwest::Client::new(),
        }
    }

    pub fn service(&self) -> ServiceConnectionString {
        ServiceConnectionString {
            host_name: HOST.to_owned(),
            shared_access_key_name: "iothubowner".to_owned(),
            shared_access_key: self.handle.owner_key().to_owned(),
        }
    }

    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Option<String>, Value) {
        let expiry = u64::try_from(chrono::Utc::now().timestamp() + 3600).unwrap();
        let sas = self.service().sas_token(expiry).unwrap();
        let url = format!("http://{}{path}?api-version=2021-04-12", self.http);
        let mut request = self.http_client.request(method, url).header("Authorization", sas);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let continuation = response
            .headers()
            .get("x-ms-continuation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.unwrap();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, continuation, body)
    }

    /// Runs a `ping` method job on every device and returns `deviceId -> outcome summary`.
    pub async fn ping_job(&self, job_id: &str) -> BTreeMap<String, String> {
        let body = json!({
            "type": "scheduleDeviceMethod",
            "cloudToDeviceMethod": {"methodName": "ping", "payload": {"n": 1}, "responseTimeoutInSeconds": 5},
            "queryCondition": "*",
            "maxExecutionTimeInSeconds": 300,
        });
        let (status, _, created) =
            self.rest(Method::PUT, &format!("/jobs/v2/{job_id}"), Some(body), &[]).await;
        assert_eq!(status, 200, "{created}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, _, job) =
                self.rest(Method::GET, &format!("/jobs/v2/{job_id}"), None, &[]).await;
            match job["status"].as_str() {
                Some("completed") => break,
                Some("failed" | "cancelled") => panic!("job ended badly: {job}"),
                _ => assert!(Instant::now() < deadline, "job did not finish: {job}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.records(job_id)
            .await
            .iter()
            .map(|r| (r["deviceId"].as_str().unwrap().to_owned(), outcome(r)))
            .collect()
    }

    pub async fn records(&self, job_id: &str) -> Vec<Value> {
        let query = json!({"query": format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'")});
        let mut records = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "1000")];
            if let Some(token) = &continuation {
                headers.push(("x-ms-continuation", token.as_str()));
            }
            let (status, next, body) =
                self.rest(Method::POST, "/devices/query", Some(query.clone()), &headers).await;
            assert_eq!(status, 200, "{body}");
            records.extend(body.as_array().cloned().unwrap_or_default());
            continuation = next;
            if continuation.is_none() {
                return records;
            }
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle.wait())
            .await
            .expect("the hub drains");
    }
}

/// `completed <status> <payload>` or `failed <error code>`.
pub fn outcome(record: &Value) -> String {
    match record["status"].as_str() {
        Some("completed") => {
            let response = &record["outcome"]["deviceMethodResponse"];
            format!("completed {} {}", response["status"], response["payload"])
        }
        other => {
            format!("{} {}", other.unwrap_or("?"), record["error"]["code"].as_str().unwrap_or("-"))
        }
    }
}
