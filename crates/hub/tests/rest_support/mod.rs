//! Shared helpers of the REST integration tests: start a real hub on port 0 in a temp dir (plain
//! HTTP only), sign service tokens, build URLs, and stop the hub cleanly.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset of the helpers"
)]
#![allow(clippy::unwrap_used, reason = "test helpers fail the test loudly on any error")]

use std::path::Path;

use hub::{Hub, HubConfig, HubHandle, HubListeners};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const HOST: &str = "hub.test";
pub const API: &str = "api-version=2021-04-12";

/// A running hub and a client for it.
pub struct TestHub {
    pub handle: HubHandle,
    pub base: String,
    pub client: Client,
    shutdown: CancellationToken,
}

impl TestHub {
    /// Starts a hub with its data in `dir`, serving plain HTTP on an ephemeral port.
    pub async fn start(dir: &Path) -> TestHub {
        TestHub::start_with(HubConfig::new(dir, HOST)).await
    }

    /// Starts a hub with `cfg`, serving plain HTTP on an ephemeral port.
    pub async fn start_with(cfg: HubConfig) -> TestHub {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listeners = HubListeners { http: Some(http), ..HubListeners::default() };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(cfg, listeners, shutdown.clone()).await.unwrap();
        let base = format!("http://{}", handle.addrs().http.unwrap());
        TestHub { handle, base, client: Client::new(), shutdown }
    }

    /// Cancels the hub and waits for it to drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(20), self.handle.wait())
            .await
            .expect("hub drains");
    }

    /// A valid `iothubowner` token for an hour.
    pub fn token(&self) -> String {
        token_for(HOST, self.handle.owner_key(), "iothubowner", 3600)
    }

    /// `{base}{path}?api-version=...` (or `&api-version` when `path` has a query).
    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}{API}", self.base)
    }

    /// An authorized request to `path` with the api-version.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("Authorization", self.token())
    }

    /// Sends an authorized JSON request; returns status, headers and the parsed body (Null if empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// Creates a SAS device with generated keys; returns the Device JSON.
    pub async fn create_device(&self, id: &str) -> Value {
        let reply = self
            .call(
                Method::PUT,
                &format!("/devices/{id}"),
                Some(serde_json::json!({"deviceId": id, "authentication": {"symmetricKey": {}}})),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }
}

/// A service token for `host`, signed with `key`, for `policy`, valid `ttl_secs` from now (negative = expired).
pub fn token_for(host: &str, key: &str, policy: &str, ttl_secs: i64) -> String {
    let expiry = u64::try_from(chrono::Utc::now().timestamp() + ttl_secs).unwrap();
    protocol::sas::generate(host, key, Some(policy), expiry).unwrap()
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("every response body is JSON")
        };
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `"<status> <iothub-errorcode> <Message>"` of an error reply, checking the IoT Hub error shape.
    pub fn error(&self) -> String {
        assert!(
            self.header("content-type").unwrap_or_default().starts_with("application/json"),
            "{self:?}"
        );
        let code = self.header("iothub-errorcode").expect("error replies carry iothub-errorcode");
        let message = self.body["Message"].as_str().expect("error bodies have a Message string");
        assert!(message.starts_with(&format!("ErrorCode:{code};")), "{message}");
        format!("{} {code}", self.status)
    }
}
