//! The one error type of the service client, [`ServiceError`], and the hub's refusal, [`HubError`].
//!
//! A refusal is read from the response the way IoT Hub writes it: the `iothub-errorcode` header names the
//! code, the body (`{"Message":"ErrorCode:<Name>;<text>",..}` or the newer nested-JSON form) carries the
//! text. When neither is readable the HTTP status alone still makes a [`HubError`], so a caller always
//! gets the status. This module does not retry and does not decide what a code means for the caller.

use protocol::error::{ErrorCode, RestErrorBody};

/// Everything that can go wrong between building a request and decoding its answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The service connection string could not be read.
    #[error("invalid service connection string: {0}")]
    ConnectionString(String),
    /// The CA certificate given for HTTPS is not PEM.
    #[error("invalid CA certificate: {0}")]
    CaCertificate(String),
    /// The base URL is not an absolute `http`/`https` URL.
    #[error("invalid base url {url:?}: {reason}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the http client: {0}")]
    Client(#[source] reqwest::Error),
    /// A request argument is invalid before anything was sent (e.g. a job request that does not serialize).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request did not get an HTTP answer (connection refused, TLS failure, timeout).
    #[error("{operation} failed: {source}")]
    Transport {
        /// `METHOD /path`.
        operation: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error status.
    #[error("{operation} was refused: {error}")]
    Hub {
        /// `METHOD /path`.
        operation: String,
        /// What the hub said.
        error: HubError,
    },
    /// The hub answered with success but a body or header this client cannot read.
    #[error("{operation} returned an unreadable response: {detail}")]
    Decode {
        /// `METHOD /path`.
        operation: String,
        /// What was wrong.
        detail: String,
    },
    /// A paged listing handed back the same continuation token twice (a server bug that would loop forever).
    #[error("{operation} repeated continuation token {token:?}; stopping")]
    PagingLoop {
        /// `METHOD /path`.
        operation: String,
        /// The repeated token.
        token: String,
    },
}

/// An IoT Hub error response: HTTP status, error code name and number, and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct HubError {
    /// The HTTP status.
    pub status: u16,
    /// The code name as sent (`DeviceNotFound`), or the HTTP reason when the hub sent none.
    pub name: String,
    /// The code, when the name is one IoT Hub documents.
    pub code: Option<ErrorCode>,
    /// The text the hub gave, possibly empty.
    pub message: String,
}

impl ServiceError {
    /// The IoT Hub error code, when the hub refused the request with a known one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ServiceError::Hub { error, .. } => error.code,
            _ => None,
        }
    }

    /// The HTTP status, when the hub answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServiceError::Hub { error, .. } => Some(error.status),
            _ => None,
        }
    }

    /// The hub's refusal, when that is what happened.
    pub fn hub_error(&self) -> Option<&HubError> {
        match self {
            ServiceError::Hub { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl HubError {
    /// Reads an error response: `status`, the `iothub-errorcode` header value (if any) and the body.
    ///
    /// The header wins for the code name when both are present; the body supplies the text.
    pub fn from_response(status: u16, header_code: Option<&str>, body: &[u8]) -> HubError {
        let parsed = RestErrorBody::parse(body).ok();
        let header_name = header_code.map(str::trim).filter(|name| !name.is_empty());
        let name = match (header_name, &parsed) {
            (Some(header), _) => header.to_owned(),
            (None, Some(parsed)) => parsed.name.clone(),
            (None, None) => reason_phrase(status).to_owned(),
        };
        let code = ErrorCode::from_name(&name).or_else(|| parsed.as_ref().and_then(|p| p.code));
        let message = match parsed {
            Some(parsed) => parsed.message,
            None => plain_text(body),
        };
        HubError { status, name, code, message }
    }

    /// One sentence: `DeviceNotFound (404001, HTTP 404): <text>`.
    fn describe(&self) -> String {
        let code = match self.code {
            Some(code) => format!("{} ({}, HTTP {})", self.name, code.code(), self.status),
            None => format!("{} (HTTP {})", self.name, self.status),
        };
        if self.message.is_empty() {
            code
        } else {
            format!("{code}: {}", self.message)
        }
    }
}

/// The body as short text for an error without an IoT Hub body (an HTML proxy page, say).
fn plain_text(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let mut short: String = trimmed.chars().take(MAX_CHARS).collect();
    if trimmed.chars().count() > MAX_CHARS {
        short.push('…');
    }
    short
}

/// A reason phrase for statuses that arrive without an IoT Hub code.
fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("HttpError")
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(status: u16, header: Option<&str>, body: &str, expect: Expect) {
        let error = HubError::from_response(status, header, body.as_bytes());
        expect.assert_eq(&format!("{error} | code={:?}", error.code.map(ErrorCode::code)));
    }

    #[test]
    fn reads_every_body_form() {
        check(
            404,
            Some("DeviceNotFound"),
            r#"{"Message":"ErrorCode:DeviceNotFound;Device d1 is not registered","ExceptionMessage":""}"#,
            expect![["DeviceNotFound (404001, HTTP 404): Device d1 is not registered | code=Some(404001)"]],
        );
        check(
            404,
            None,
            r#"{"Message":"{\"errorCode\":404103,\"message\":\"not online\"}","ExceptionMessage":""}"#,
            expect![["DeviceNotOnline (404103, HTTP 404): not online | code=Some(404103)"]],
        );
        check(
            429,
            Some("ThrottlingMaxActiveJobCountExceeded"),
            "",
            expect![["ThrottlingMaxActiveJobCountExceeded (429004, HTTP 429) | code=Some(429004)"]],
        );
        check(
            502,
            None,
            "<html>bad gateway</html>",
            expect![["Bad Gateway (HTTP 502): <html>bad gateway</html> | code=None"]],
        );
        check(
            400,
            Some("SomethingNew"),
            r#"{"Message":"ErrorCode:SomethingNew;odd"}"#,
            expect![["SomethingNew (HTTP 400): odd | code=None"]],
        );
        check(599, None, "", expect![["HttpError (HTTP 599) | code=None"]]);
    }
}
