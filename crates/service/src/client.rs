//! [`ServiceClient`]: configuration, the HTTP client, SAS authorization and the one request path every
//! operation goes through.
//!
//! Each request gets a fresh `Authorization: SharedAccessSignature sr=<host>&sig=..&se=..&skn=<policy>`
//! (as the Node service SDK does), `?api-version=2021-04-12`, JSON bodies, and its answer checked:
//! success statuses pass, everything else becomes a [`ServiceError::Hub`] read from IoT Hub's error
//! shape. The client is a cheap `Clone` (reqwest pools connections) so bulk operations can fan out.
//! It deliberately does not retry: callers decide what a throttle or timeout means to them.

use std::time::Duration;

use protocol::connection_string::{ConnectionStringError, ServiceConnectionString};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;

use crate::error::{HubError, ServiceError};

/// How long one request may take unless the operation says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each SAS token is valid (a new one is made per request, so this only has to outlast it).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Resolved settings for a [`ServiceClient`].
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The hub's host name, policy name and key; the host name is the SAS `sr` and, by default,
    /// the host of the base URL.
    pub connection: ServiceConnectionString,
    /// Where requests go: `https://<host_name>` by default, or e.g. `http://127.0.0.1:8080`.
    pub base_url: Url,
    /// Extra CA certificates (PEM) trusted for HTTPS, e.g. a local hub's `ca.pem`.
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of one request (direct-method calls add the method's own timeouts to it).
    pub request_timeout: Duration,
    /// Lifetime of each SAS token.
    pub token_ttl: Duration,
}

/// A typed client of the IoT Hub service REST API.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    config: ServiceConfig,
}

/// A success response: its headers and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) operation: String,
}

/// One request, before it is sent.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(&'a str, String)>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
}

impl ServiceConfig {
    /// Reads a service connection string (`HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`);
    /// the base URL is `https://<HostName>`.
    ///
    /// # Errors
    /// [`ServiceError::ConnectionString`] when a field is missing or the string is a device one.
    pub fn from_connection_string(text: &str) -> Result<ServiceConfig, ServiceError> {
        let connection: ServiceConnectionString =
            text.parse().map_err(|err: ConnectionStringError| {
                ServiceError::ConnectionString(err.to_string())
            })?;
        ServiceConfig::new(connection)
    }

    /// Settings for `connection` with the defaults: base URL `https://<HostName>`, built-in roots only.
    ///
    /// # Errors
    /// [`ServiceError::BaseUrl`] when the host name does not make a URL.
    pub fn new(connection: ServiceConnectionString) -> Result<ServiceConfig, ServiceError> {
        let base_url = parse_base_url(&format!("https://{}", connection.host_name))?;
        Ok(ServiceConfig {
            connection,
            base_url,
            ca_pem: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token_ttl: DEFAULT_TOKEN_TTL,
        })
    }

    /// Sends requests to `url` (e.g. `http://127.0.0.1:8080`) instead of `https://<host_name>`.
    ///
    /// # Errors
    /// [`ServiceError::BaseUrl`] when `url` is not an absolute http(s) URL.
    pub fn with_base_url(mut self, url: &str) -> Result<ServiceConfig, ServiceError> {
        self.base_url = parse_base_url(url)?;
        Ok(self)
    }

    /// Trusts the CA certificates in `pem` for HTTPS (in addition to the built-in roots).
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> ServiceConfig {
        self.ca_pem = Some(pem);
        self
    }
}

impl ServiceClient {
    /// Builds the client (TLS set-up happens here, requests are lazy).
    ///
    /// # Errors
    /// [`ServiceError::CaCertificate`] for unreadable PEM, [`ServiceError::Client`] when TLS cannot be set up.
    pub fn new(config: ServiceConfig) -> Result<ServiceClient, ServiceError> {
        let mut builder =
            reqwest::Client::builder().timeout(config.request_timeout).user_agent(USER_AGENT);
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|err| ServiceError::CaCertificate(err.to_string()))?;
            if certs.is_empty() {
                return Err(ServiceError::CaCertificate("no certificate in the PEM data".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(ServiceError::Client)?;
        Ok(ServiceClient { http, config })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The hub's host name (what device connection strings must name).
    pub fn host_name(&self) -> &str {
        &self.config.connection.host_name
    }

    /// Sends `call`, checks the status, and returns the answer (error statuses become [`ServiceError::Hub`]).
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Answer, ServiceError> {
        let operation = format!("{} {}", call.method, call.path);
        let url = self.url(&call.path, &call.query);
        let mut request = self
            .http
            .request(call.method, url)
            .header(AUTHORIZATION, self.authorization()?)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = call.body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE))
                .body(body);
        }
        if let Some(timeout) = call.timeout {
            request = request.timeout(timeout);
        }
        tracing::debug!(operation = %operation, "service request");
        let response = request
            .send()
            .await
            .map_err(|source| ServiceError::Transport { operation: operation.clone(), source })?;
        read_answer(response, operation).await
    }

    /// Sends `call` and decodes its JSON body as `T`.
    pub(crate) async fn execute_json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<T, ServiceError> {
        let answer = self.execute(call).await?;
        answer.json()
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
            pairs.append_pair("api-version", protocol::API_VERSION);
        }
        url
    }

    fn authorization(&self) -> Result<String, ServiceError> {
        let ttl = i64::try_from(self.config.token_ttl.as_secs()).unwrap_or(i64::MAX);
        let expiry = chrono::Utc::now().timestamp().saturating_add(ttl);
        let expiry = u64::try_from(expiry).unwrap_or(0);
        self.config
            .connection
            .sas_token(expiry)
            .map_err(|err| ServiceError::ConnectionString(err.to_string()))
    }
}

impl<'a> Call<'a> {
    /// A request without body, query or extra headers.
    pub(crate) fn new(method: Method, path: String) -> Call<'a> {
        Call { method, path, query: Vec::new(), headers: Vec::new(), body: None, timeout: None }
    }

    /// Adds a JSON body.
    pub(crate) fn json<T: serde::Serialize>(mut self, body: &T) -> Result<Call<'a>, ServiceError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|err| ServiceError::InvalidRequest(err.to_string()))?;
        self.body = Some(bytes);
        Ok(self)
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Call<'a> {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a query parameter (before `api-version`).
    pub(crate) fn query(mut self, name: &'a str, value: impl Into<String>) -> Call<'a> {
        self.query.push((name, value.into()));
        self
    }

    /// Overrides the request timeout.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Call<'a> {
        self.timeout = Some(timeout);
        self
    }
}

impl Answer {
    /// Decodes the body as JSON.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ServiceError> {
        serde_json::from_slice(&self.body).map_err(|err| self.decode_error(err.to_string()))
    }

    /// A header's value as text, when present and readable.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// A [`ServiceError::Decode`] for this answer.
    pub(crate) fn decode_error(&self, detail: String) -> ServiceError {
        ServiceError::Decode { operation: self.operation.clone(), detail }
    }
}

/// Quotes an etag for `If-Match` as the SDKs do (`*` → `"*"`, `AAA=` → `"AAA="`, already quoted stays).
pub(crate) fn if_match(etag: Option<&str>) -> String {
    let etag = etag.unwrap_or("*");
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// One URL path segment, percent-encoded like JavaScript's `encodeURIComponent`.
pub(crate) fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

const USER_AGENT: &str = concat!("hubsim-service/", env!("CARGO_PKG_VERSION"));
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Everything but the unreserved characters is encoded inside a path segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn parse_base_url(text: &str) -> Result<Url, ServiceError> {
    let url = Url::parse(text)
        .map_err(|err| ServiceError::BaseUrl { url: text.to_owned(), reason: err.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ServiceError::BaseUrl {
            url: text.to_owned(),
            reason: "the scheme must be http or https".into(),
        });
    }
    if url.host_str().is_none() {
        return Err(ServiceError::BaseUrl {
            url: text.to_owned(),
            reason: "the url names no host".into(),
        });
    }
    Ok(url)
}

async fn read_answer(response: Response, operation: String) -> Result<Answer, ServiceError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|source| ServiceError::Transport { operation: operation.clone(), source })?
        .to_vec();
    if status.is_success() {
        return Ok(Answer { headers, body, operation });
    }
    let header_code =
        headers.get(protocol::error::ERROR_CODE_HEADER).and_then(|value| value.to_str().ok());
    let error = HubError::from_response(status.as_u16(), header_code, &body);
    Err(ServiceError::Hub { operation, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(if_match(None), "\"*\"");
        assert_eq!(if_match(Some("AAAAAAAAAAE=")), "\"AAAAAAAAAAE=\"");
        assert_eq!(if_match(Some("\"MA==\"")), "\"MA==\"");
        assert_eq!(segment("b43-f3_0001.x"), "b43-f3_0001.x");
        assert_eq!(segment("a#b?c%d/e'(f)"), "a%23b%3Fc%25d%2Fe%27%28f%29");
    }

    #[test]
    fn base_urls() {
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("https://localhost:8443/prefix/").is_ok());
        assert!(matches!(parse_base_url("ftp://x"), Err(ServiceError::BaseUrl { .. })));
        assert!(matches!(parse_base_url("127.0.0.1:8080"), Err(ServiceError::BaseUrl { .. })));
    }
}
