//! The `POST /devices/query` envelope: the `{"query":".."}` body, the paging headers and the
//! `x-ms-item-type` values.
//!
//! The query language itself lives in the `query` crate; this module only reads the body and names the
//! headers. Paging rule the SDKs depend on: send [`CONTINUATION_HEADER`] only when another page exists
//! (Node loops forever on an empty value).
//!
//! Item-type spelling: we send the swagger's spelling (`twin`, `deviceJob`, `jobResponse`, `raw`), which
//! the Java SDK reads; Python and Node ignore the header. (The C# v1 SDK parses it case-sensitively
//! against PascalCase names; whether the real hub sends those is unconfirmed, so we follow the swagger.)

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Request and response header carrying the continuation token.
pub const CONTINUATION_HEADER: &str = "x-ms-continuation";
/// Request header with the wanted page size (decimal).
pub const MAX_ITEM_COUNT_HEADER: &str = "x-ms-max-item-count";
/// Response header naming the kind of items in the page.
pub const ITEM_TYPE_HEADER: &str = "x-ms-item-type";
/// The longest accepted query text, in characters.
pub const MAX_QUERY_CHARS: usize = 8192;
/// Page size when the client asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page the hub returns; larger requests are clamped silently.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The `POST /devices/query` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// The query text, e.g. `SELECT * FROM devices WHERE deviceId IN ['a','b']`.
    pub query: String,
}

/// What a query page holds, as written in [`ITEM_TYPE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryItemType {
    /// Full device or module twins (`SELECT * FROM devices`).
    Twin,
    /// Per-device job records (`FROM devices.jobs`).
    DeviceJob,
    /// Job responses (`GET /jobs/v2/query`).
    JobResponse,
    /// Projections and aggregates.
    Raw,
}

/// Why a query body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryRequestError {
    /// Not a JSON object with a string `query`.
    #[error("invalid query body: {0}")]
    Body(String),
    /// The query text is empty or only whitespace.
    #[error("the query is empty")]
    Empty,
    /// The query text is longer than [`MAX_QUERY_CHARS`].
    #[error("the query is {0} characters long; the limit is 8192")]
    TooLong(usize),
}

impl QueryRequestError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            QueryRequestError::Body(_) => ErrorCode::DeserializationError,
            QueryRequestError::Empty => ErrorCode::ArgumentNull,
            // The service answers over-long queries with PreconditionFailed (412).
            QueryRequestError::TooLong(_) => ErrorCode::PreconditionFailed,
        }
    }
}

impl QueryRequest {
    /// Parses and checks a query body.
    ///
    /// # Errors
    /// [`QueryRequestError`] when the body is not `{"query":"<text>"}`, or the text is empty or too long.
    pub fn parse(body: &[u8]) -> Result<QueryRequest, QueryRequestError> {
        let request: QueryRequest =
            serde_json::from_slice(body).map_err(|err| QueryRequestError::Body(err.to_string()))?;
        let n_chars = request.query.chars().count();
        if request.query.trim().is_empty() {
            return Err(QueryRequestError::Empty);
        }
        if n_chars > MAX_QUERY_CHARS {
            return Err(QueryRequestError::TooLong(n_chars));
        }
        Ok(request)
    }
}

impl QueryItemType {
    /// The header value (the swagger's spelling, see the module doc).
    pub fn header_value(self) -> &'static str {
        match self {
            QueryItemType::Twin => "twin",
            QueryItemType::DeviceJob => "deviceJob",
            QueryItemType::JobResponse => "jobResponse",
            QueryItemType::Raw => "raw",
        }
    }

    /// Reads a header value in any case (`twin`, `Twin`, `deviceJob` ...).
    pub fn parse(value: &str) -> Option<QueryItemType> {
        [
            QueryItemType::Twin,
            QueryItemType::DeviceJob,
            QueryItemType::JobResponse,
            QueryItemType::Raw,
        ]
        .into_iter()
        .find(|kind| kind.header_value().eq_ignore_ascii_case(value.trim()))
    }
}

/// The page size for a request's [`MAX_ITEM_COUNT_HEADER`]: default when absent or unreadable,
/// clamped to `1..=MAX_PAGE_SIZE` otherwise.
pub fn page_size(header: Option<&str>) -> usize {
    match header.and_then(|text| text.trim().parse::<usize>().ok()) {
        Some(asked) => asked.clamp(1, MAX_PAGE_SIZE),
        None => DEFAULT_PAGE_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(body: &str, expect: Expect) {
        let actual = match QueryRequest::parse(body.as_bytes()) {
            Ok(request) => format!("ok {:?}", request.query),
            Err(err) => format!("{} {err}", err.error_code().code()),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn bodies() {
        check(r#"{"query":"SELECT * FROM devices"}"#, expect![[r#"ok "SELECT * FROM devices""#]]);
        check(r#"{"query":"  "}"#, expect![["400005 the query is empty"]]);
        check(
            r#"{"sql":"x"}"#,
            expect![["400012 invalid query body: missing field `query` at line 1 column 11"]],
        );
        check(
            &format!(r#"{{"query":"{}"}}"#, "x".repeat(8193)),
            expect![["412001 the query is 8193 characters long; the limit is 8192"]],
        );
    }

    #[test]
    fn headers() {
        let sizes: Vec<usize> =
            [None, Some("10"), Some("0"), Some("1000"), Some("5000"), Some("abc")]
                .into_iter()
                .map(page_size)
                .collect();
        expect![["[100, 10, 1, 1000, 1000, 100]"]].assert_eq(&format!("{sizes:?}"));
        let kinds: Vec<Option<QueryItemType>> =
            ["twin", "DeviceJob", "jobresponse", "raw", "unknown"]
                .into_iter()
                .map(QueryItemType::parse)
                .collect();
        expect![["[Some(Twin), Some(DeviceJob), Some(JobResponse), Some(Raw), None]"]]
            .assert_eq(&format!("{kinds:?}"));
    }
}
