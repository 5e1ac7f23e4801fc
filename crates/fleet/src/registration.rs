//! Registering a fleet through the hub's registry REST API, idempotently and in parallel.
//!
//! For each device: `PUT /devices/{id}` with `symmetricKey: {}` (the hub generates keys); on `409`
//! (the device exists) `GET /devices/{id}` and use its keys; then, when the device has tags,
//! `PATCH /twins/{id}` with `If-Match: "*"`. Up to [`Registrar::concurrency`] requests run at once.
//! Each request carries a fresh service SAS built with `protocol::connection_string`. TLS trusts the
//! given CA PEM in addition to the system roots, so the same code registers against a real IoT Hub.
//! Initial *reported* properties are not set here: devices report them after they connect.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use protocol::connection_string::ServiceConnectionString;
use protocol::device::Device;
use protocol::ids::DeviceId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::plan::DevicePlan;
use crate::stats::FleetStats;

/// Default number of registry requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Lifetime of each service SAS token.
const SAS_TTL: Duration = Duration::from_secs(3600);

/// Characters escaped in a device id path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// A device's credentials after registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The device id.
    pub device_id: DeviceId,
    /// Its primary key (base64).
    pub primary_key: String,
}

/// A registry client for one hub.
#[derive(Debug, Clone)]
pub struct Registrar {
    http: reqwest::Client,
    service: ServiceConnectionString,
    base_url: String,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// A registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The HTTP client cannot be built (bad CA PEM).
    #[error("cannot build the registry http client: {0}")]
    Client(String),
    /// The service SAS cannot be built.
    #[error("cannot sign a service token: {0}")]
    Sas(String),
    /// The request did not complete.
    #[error("{method} {url}: {error}")]
    Http {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// What failed.
        error: String,
    },
    /// The hub answered with an unexpected status.
    #[error("{method} {url}: hub answered {status}: {body}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The device has no symmetric key (for example an X.509 device).
    #[error("device {0} has no symmetric primary key")]
    NoKey(String),
}

impl Registrar {
    /// A registrar for `service`. `base_url` overrides `https://{HostName}` (e.g. a local hub's REST
    /// port); `ca_pem` adds a trusted root.
    ///
    /// # Errors
    /// [`RegistrationError::Client`] when the CA PEM is not a certificate.
    pub fn new(
        service: ServiceConnectionString,
        base_url: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Registrar, RegistrationError> {
        let mut builder =
            reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(60));
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistrationError::Client(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| RegistrationError::Client(e.to_string()))?;
        let base_url = base_url.unwrap_or_else(|| format!("https://{}", service.host_name));
        Ok(Registrar {
            http,
            service,
            base_url: base_url.trim_end_matches('/').to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// Registers every device of `plans` (and sets their tags), returning credentials in plan order.
    ///
    /// # Errors
    /// The first [`RegistrationError`]; devices already registered stay registered.
    pub async fn register_all(
        &self,
        plans: &[DevicePlan],
        stats: &FleetStats,
    ) -> Result<Vec<Credentials>, RegistrationError> {
        let mut results: Vec<Option<Credentials>> = vec![None; plans.len()];
        let mut in_flight = FuturesUnordered::new();
        let mut next = 0;
        loop {
            while in_flight.len() < self.concurrency.max(1) && next < plans.len() {
                in_flight.push(self.register_indexed(next, &plans[next]));
                next += 1;
            }
            match in_flight.next().await {
                Some((slot, res)) => {
                    results[slot] = Some(res?);
                    stats.registered.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn register_indexed(
        &self,
        slot: usize,
        plan: &DevicePlan,
    ) -> (usize, Result<Credentials, RegistrationError>) {
        (slot, self.register(plan).await)
    }

    /// Registers one device and sets its tags.
    ///
    /// # Errors
    /// [`RegistrationError`] when a call fails.
    pub async fn register(&self, plan: &DevicePlan) -> Result<Credentials, RegistrationError> {
        let id = plan.device_id.as_str();
        let body = json!({ "deviceId": id, "status": "enabled", "authentication": { "type": "sas", "symmetricKey": {} } });
        let path = format!("/devices/{}", encode(id));
        let device = match self.call(Method::PUT, &path, Some(&body), false).await? {
            Answer::Ok(device) => device,
            Answer::Conflict => match self.call(Method::GET, &path, None, false).await? {
                Answer::Ok(device) => device,
                Answer::Conflict => {
                    return Err(self.unexpected(
                        Method::GET,
                        &path,
                        StatusCode::CONFLICT,
                        String::new(),
                    ))
                }
            },
        };
        let device: Device =
            serde_json::from_value(device).map_err(|e| RegistrationError::Http {
                method: "PUT".to_owned(),
                url: self.url(&path),
                error: format!("cannot read the device: {e}"),
            })?;
        if !plan.tags.is_empty() {
            let patch = json!({ "tags": Value::Object(plan.tags.clone()) });
            self.call(Method::PATCH, &format!("/twins/{}", encode(id)), Some(&patch), true).await?;
        }
        let primary_key = device
            .authentication
            .symmetric_key
            .primary_key
            .ok_or_else(|| RegistrationError::NoKey(id.to_owned()))?;
        Ok(Credentials { device_id: plan.device_id.clone(), primary_key })
    }

    /// Sets the tags of one device (used by tests and by callers that register elsewhere).
    ///
    /// # Errors
    /// [`RegistrationError`] when the call fails.
    pub async fn set_tags(
        &self,
        device_id: &DeviceId,
        tags: &Map<String, Value>,
    ) -> Result<(), RegistrationError> {
        let patch = json!({ "tags": Value::Object(tags.clone()) });
        self.call(
            Method::PATCH,
            &format!("/twins/{}", encode(device_id.as_str())),
            Some(&patch),
            true,
        )
        .await
        .map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: bool,
    ) -> Result<Answer, RegistrationError> {
        let url = self.url(path);
        let expiry = chrono::Utc::now().timestamp().max(0) as u64 + SAS_TTL.as_secs();
        let token =
            self.service.sas_token(expiry).map_err(|e| RegistrationError::Sas(e.to_string()))?;
        let mut request = self
            .http
            .request(method.clone(), &url)
            .query(&[("api-version", protocol::API_VERSION)])
            .header(reqwest::header::AUTHORIZATION, token);
        if if_match {
            request = request.header(reqwest::header::IF_MATCH, "\"*\"");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let http_error = |e: reqwest::Error| RegistrationError::Http {
            method: method.to_string(),
            url: url.clone(),
            error: e.to_string(),
        };
        let response = request.send().await.map_err(http_error)?;
        let status = response.status();
        let text = response.text().await.map_err(http_error)?;
        match status {
            StatusCode::CONFLICT if method == Method::PUT => Ok(Answer::Conflict),
            s if s.is_success() => {
                let value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::Null)
                };
                Ok(Answer::Ok(value))
            }
            s => Err(self.unexpected(method, path, s, text)),
        }
    }

    fn unexpected(
        &self,
        method: Method,
        path: &str,
        status: StatusCode,
        body: String,
    ) -> RegistrationError {
        RegistrationError::Status {
            method: method.to_string(),
            url: self.url(path),
            status: status.as_u16(),
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

enum Answer {
    Ok(Value),
    Conflict,
}

fn encode(id: &str) -> String {
    utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_in_paths() {
        assert_eq!(encode("b43-f3-0001"), "b43-f3-0001");
        assert_eq!(encode("a#b?c/d"), "a%23b%3Fc%2Fd");
    }
}
