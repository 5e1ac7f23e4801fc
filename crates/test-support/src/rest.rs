//! REST helpers of [`TestHub`]: URLs with the `api-version`, requests signed with a fresh
//! `iothubowner` SAS token, and [`Reply`] (status, headers, JSON body) with a check of IoT Hub's
//! error shape.
//!
//! Not here: typed service clients (that is the `service` crate, which tests on its own) or
//! retries; a test sees exactly what the hub answered.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::{sas, TestHub, API_VERSION};

/// What came back from a REST call.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The parsed JSON body (`Null` when the body is empty).
    pub body: Value,
}

impl Reply {
    /// Reads `response` whole; panics if a non-empty body is not JSON.
    pub async fn read(response: Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("the hub sends the whole body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("every response body is JSON")
        };
        Reply { status, headers, body }
    }

    /// A header's value, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `"<status> <iothub-errorcode>"` of an error reply, after checking IoT Hub's error shape: a
    /// JSON content type, the `iothub-errorcode` header, and a `Message` of
    /// `ErrorCode:<code>;...`.
    pub fn error(&self) -> String {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{self:?}");
        let code = self.header("iothub-errorcode").expect("error replies carry iothub-errorcode");
        let message = self.body["Message"].as_str().expect("error bodies have a Message string");
        assert!(message.starts_with(&format!("ErrorCode:{code};")), "{message}");
        format!("{} {code}", self.status)
    }
}

impl TestHub {
    /// A valid `iothubowner` service token for an hour.
    pub fn service_token(&self) -> String {
        sas::service_token(self.host(), self.owner_key(), sas::OWNER_POLICY, 3600)
    }

    /// `{base}{path}?api-version=..` (`&api-version=..` when `path` has a query).
    pub fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}api-version={API_VERSION}", self.base)
    }

    /// An authorized request to `path` (with the `api-version`), for the test to finish.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("Authorization", self.service_token())
    }

    /// Sends an authorized request with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    /// Sends an authorized request with an optional JSON body and extra headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.expect("the hub answers HTTP")).await
    }

    /// Creates a SAS device with generated keys through `PUT /devices/{id}`; returns the Device
    /// JSON. Panics unless the hub answers 200.
    pub async fn create_device(&self, id: &str) -> Value {
        let body = serde_json::json!({"deviceId": id, "authentication": {"symmetricKey": {}}});
        let reply = self.call(Method::PUT, &format!("/devices/{id}"), Some(body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    }

    /// `POST /twins/{id}/methods` with `body`; returns the status and the JSON body (`Null` when
    /// empty).
    pub async fn post_method(&self, id: &str, body: &Value) -> (u16, Value) {
        let reply =
            self.call(Method::POST, &format!("/twins/{id}/methods"), Some(body.clone())).await;
        (reply.status, reply.body)
    }
}
