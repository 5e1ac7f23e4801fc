//! IoT Hub error codes and the two error bodies the hub sends: REST and MQTT twin.
//!
//! [`ErrorCode`] is the one table of six-digit codes (`404001`), their names (`DeviceNotFound`) and
//! HTTP statuses (the first three digits). [`RestErrorBody`] is the REST body and [`MqttErrorBody`] the
//! body of an MQTT twin error response.
//!
//! REST body form: we emit the *legacy* form `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":".."}`
//! rather than the newer form that nests a JSON string inside `Message`. The Node service SDK only
//! understands the legacy form (it splits `Message` on `;` and `:`), and that is how `DeviceNotFoundError`
//! and friends appear there; C# and Python read both. The `iothub-errorcode` header ([`ERROR_CODE_HEADER`])
//! carries the name in both forms. [`RestErrorBody::parse`] reads either form back.
//!
//! This module does not decide *which* code a failure gets; each boundary's error type maps itself.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::format_timestamp;

/// The response header naming the error (`iothub-errorcode: DeviceNotFound`).
pub const ERROR_CODE_HEADER: &str = "iothub-errorcode";

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// An IoT Hub error code: numeric code, name and HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code this crate knows, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The six-digit numeric code, e.g. `404001`.
            pub fn code(self) -> u32 {
                match self {
                    $(ErrorCode::$name => $code,)*
                }
            }

            /// The name used in `iothub-errorcode` and in `ErrorCode:<Name>;`, e.g. `DeviceNotFound`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }
        }
    };
}

error_codes! {
    /// 400000: a bad request with no more specific code.
    GenericBadRequest = 400000,
    /// 400001: missing or unsupported `api-version`.
    InvalidProtocolVersion = 400001,
    /// 400003: the operation is not valid in the current state.
    InvalidOperation = 400003,
    /// 400004: an argument (body field, property, timeout) is invalid.
    ArgumentInvalid = 400004,
    /// 400005: a required argument is missing.
    ArgumentNull = 400005,
    /// 400006: the request is not well formed (e.g. bad MQTT payload format).
    IotHubFormatError = 400006,
    /// 400012: the body could not be deserialized.
    DeserializationError = 400012,
    /// 400023: the etag does not match (legacy form of 412001).
    EtagDoesNotMatch = 400023,
    /// 400027: a new connection for the same identity closed this one.
    ConnectionForcefullyClosedOnNewConnection = 400027,
    /// 401000: unauthorized with no more specific code.
    GenericUnauthorized = 401000,
    /// 401002: the credentials are invalid or lack the needed permission.
    IotHubUnauthorizedAccess = 401002,
    /// 401003: the token is invalid or expired.
    IotHubUnauthorized = 401003,
    /// 403002: the daily message quota is exhausted.
    IotHubQuotaExceeded = 403002,
    /// 403003: too many import/export jobs.
    JobQuotaExceeded = 403003,
    /// 403004: too many pending cloud-to-device messages for the device.
    DeviceMaximumQueueDepthExceeded = 403004,
    /// 404000: not found with no more specific code.
    GenericNotFound = 404000,
    /// 404001: the device is not registered (or is disabled, for methods).
    DeviceNotFound = 404001,
    /// 404002: no job with that id.
    JobNotFound = 404002,
    /// 404010: no module with that id on the device.
    ModuleNotFound = 404010,
    /// 404103: the device is not online or has not subscribed to direct methods.
    DeviceNotOnline = 404103,
    /// 404104: the device connection was closed.
    DeviceConnectionClosedRemotely = 404104,
    /// 409001: a device with that id already exists.
    DeviceAlreadyExists = 409001,
    /// 409104: a job with that id already exists.
    JobAlreadyExists = 409104,
    /// 409301: a module with that id already exists on the device.
    ModuleAlreadyExistsOnDevice = 409301,
    /// 412001: `If-Match` or the expected `$version` does not match.
    PreconditionFailed = 412001,
    /// 412003: the job is not in a state that allows the operation (e.g. cancel while running).
    JobRunPreconditionFailed = 412003,
    /// 413001: a message, payload or twin section is too large.
    MessageTooLarge = 413001,
    /// 429001: throttled.
    ThrottlingException = 429001,
    /// 429002: the throttling backlog is full.
    ThrottleBacklogLimitExceeded = 429002,
    /// 429003: the request waited too long in the throttling backlog.
    ThrottlingBacklogTimeout = 429003,
    /// 429004: too many active jobs for the tier.
    ThrottlingMaxActiveJobCountExceeded = 429004,
    /// 500001: an internal error.
    ServerError = 500001,
    /// 503001: the service is unavailable.
    ServiceUnavailable = 503001,
    /// 504101: the device did not answer a direct method in time.
    GatewayTimeout = 504101,
}

impl ErrorCode {
    /// The HTTP status: the first three digits of the code (`404001` → 404).
    pub fn http_status(self) -> u16 {
        u16::try_from(self.code() / 1000).expect("every code in the table has six digits")
    }

    /// Looks a numeric code up in the table.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|known| known.code() == code)
    }

    /// Looks a name up in the table (exact, case-sensitive, as the service spells it).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|known| known.name() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

/// The REST error body, legacy form: `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":".."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestErrorBody {
    /// `ErrorCode:<Name>;<text>` (or, from newer hubs, a JSON string).
    #[serde(rename = "Message")]
    pub message: String,
    /// Free text; the service puts a tracking id and timestamp here.
    #[serde(rename = "ExceptionMessage", default)]
    pub exception_message: String,
}

/// An error body read back by a client: the code name, the code when known, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedError {
    /// The name as sent, e.g. `DeviceNotFound` (kept even when the table does not know it).
    pub name: String,
    /// The code, when the name or number is in [`ErrorCode`].
    pub code: Option<ErrorCode>,
    /// The human-readable text.
    pub message: String,
}

/// Why an error body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorBodyError {
    /// The body is not JSON of the expected shape.
    #[error("error body is not a json object with a `Message` string: {0}")]
    NotJson(String),
    /// `Message` has neither the `ErrorCode:<Name>;<text>` form nor the nested JSON form.
    #[error("error message {0:?} names no error code")]
    NoCode(String),
}

impl RestErrorBody {
    /// Builds a legacy-form body; `ExceptionMessage` is empty.
    pub fn new(code: ErrorCode, text: &str) -> RestErrorBody {
        RestErrorBody {
            message: format!("ErrorCode:{};{text}", code.name()),
            exception_message: String::new(),
        }
    }

    /// Builds a legacy-form body whose `ExceptionMessage` reads like the service's
    /// (`Tracking ID:<id>-TimeStamp:MM/dd/yyyy HH:mm:ss`).
    pub fn with_tracking(
        code: ErrorCode,
        text: &str,
        tracking_id: &str,
        now: DateTime<Utc>,
    ) -> RestErrorBody {
        let stamp = now.format("%m/%d/%Y %H:%M:%S");
        RestErrorBody {
            exception_message: format!("Tracking ID:{tracking_id}-TimeStamp:{stamp}"),
            ..RestErrorBody::new(code, text)
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of two strings always serializes")
    }

    /// Reads an error body in either form the service uses (legacy `ErrorCode:<Name>;<text>`, or
    /// `Message` holding a JSON string with `errorCode` and `message`).
    ///
    /// # Errors
    /// [`ErrorBodyError`] when the body is not JSON or names no code.
    pub fn parse(body: &[u8]) -> Result<ParsedError, ErrorBodyError> {
        let parsed: RestErrorBody =
            serde_json::from_slice(body).map_err(|err| ErrorBodyError::NotJson(err.to_string()))?;
        if let Ok(nested) = serde_json::from_str::<MqttErrorBody>(&parsed.message) {
            return Ok(nested.to_parsed());
        }
        let rest = parsed
            .message
            .strip_prefix("ErrorCode:")
            .ok_or_else(|| ErrorBodyError::NoCode(parsed.message.clone()))?;
        let (name, text) = rest.split_once(';').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(ErrorBodyError::NoCode(parsed.message.clone()));
        }
        Ok(ParsedError {
            name: name.to_owned(),
            code: ErrorCode::from_name(name),
            message: text.to_owned(),
        })
    }
}

/// The body of an MQTT twin error response (also nested in newer REST bodies):
/// `{"errorCode":400004,"trackingId":"..","message":"..","timestampUtc":".."}`.
///
/// Node devices treat a twin response as an error only when the body has `errorCode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttErrorBody {
    /// The six-digit code.
    pub error_code: u32,
    /// An opaque tracking id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// The human-readable text.
    #[serde(default)]
    pub message: String,
    /// When the error happened (seven fractional digits), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_utc: Option<String>,
}

impl MqttErrorBody {
    /// Builds the body for `code` at `now`, without a tracking id.
    pub fn new(code: ErrorCode, message: &str, now: DateTime<Utc>) -> MqttErrorBody {
        MqttErrorBody {
            error_code: code.code(),
            tracking_id: None,
            message: message.to_owned(),
            timestamp_utc: Some(format_timestamp(now)),
        }
    }

    /// The body as JSON bytes, ready to publish on `$iothub/twin/res/{status}/?$rid=..`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and a number always serializes")
    }

    /// Reads the body as a client would.
    pub fn to_parsed(&self) -> ParsedError {
        let code = ErrorCode::from_code(self.error_code);
        let name =
            code.map_or_else(|| self.error_code.to_string(), |known| known.name().to_owned());
        ParsedError { name, code, message: self.message.clone() }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(body: &str, expect: Expect) {
        let actual = match RestErrorBody::parse(body.as_bytes()) {
            Ok(parsed) => format!(
                "{} {:?} {:?}",
                parsed.name,
                parsed.code.map(ErrorCode::code),
                parsed.message
            ),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parses_both_forms() {
        check(
            r#"{"Message":"ErrorCode:DeviceNotOnline;Timed out waiting for device to connect.","ExceptionMessage":"Tracking ID:x-G:5-TimeStamp:01/18/2017 08:11:45"}"#,
            expect![[r#"DeviceNotOnline Some(404103) "Timed out waiting for device to connect.""#]],
        );
        check(
            r#"{"Message":"{\"errorCode\":404103,\"trackingId\":\"aa\",\"message\":\"not online\",\"info\":{\"timeout\":\"00:00:00\"},\"timestampUtc\":\"2024-03-14T09:54:49.6536567Z\"}","ExceptionMessage":""}"#,
            expect![[r#"DeviceNotOnline Some(404103) "not online""#]],
        );
        check(
            r#"{"Message":"ErrorCode:ThrottlingMaxActiveJobCountExceeded;429"}"#,
            expect![[r#"ThrottlingMaxActiveJobCountExceeded Some(429004) "429""#]],
        );
        check(r#"{"Message":"ErrorCode:SomethingNew;x"}"#, expect![[r#"SomethingNew None "x""#]]);
        check(
            r#"{"Message":"plain text"}"#,
            expect![[r#"error: error message "plain text" names no error code"#]],
        );
        check("<html>", expect![["error: error body is not a json object with a `Message` string: expected value at line 1 column 1"]]);
    }

    #[test]
    fn table_is_consistent() {
        let rows: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|code| format!("{} {} {}", code.code(), code.name(), code.http_status()))
            .collect();
        expect![[r#"
            400000 GenericBadRequest 400
            400001 InvalidProtocolVersion 400
            400003 InvalidOperation 400
            400004 ArgumentInvalid 400
            400005 ArgumentNull 400
            400006 IotHubFormatError 400
            400012 DeserializationError 400
            400023 EtagDoesNotMatch 400
            400027 ConnectionForcefullyClosedOnNewConnection 400
            401000 GenericUnauthorized 401
            401002 IotHubUnauthorizedAccess 401
            401003 IotHubUnauthorized 401
            403002 IotHubQuotaExceeded 403
            403003 JobQuotaExceeded 403
            403004 DeviceMaximumQueueDepthExceeded 403
            404000 GenericNotFound 404
            404001 DeviceNotFound 404
            404002 JobNotFound 404
            404010 ModuleNotFound 404
            404103 DeviceNotOnline 404
            404104 DeviceConnectionClosedRemotely 404
            409001 DeviceAlreadyExists 409
            409104 JobAlreadyExists 409
            409301 ModuleAlreadyExistsOnDevice 409
            412001 PreconditionFailed 412
            412003 JobRunPreconditionFailed 412
            413001 MessageTooLarge 413
            429001 ThrottlingException 429
            429002 ThrottleBacklogLimitExceeded 429
            429003 ThrottlingBacklogTimeout 429
            429004 ThrottlingMaxActiveJobCountExceeded 429
            500001 ServerError 500
            503001 ServiceUnavailable 503
            504101 GatewayTimeout 504
        "#]]
        .assert_eq(&(rows.join("\n") + "\n"));
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(*code));
        }
    }

    #[test]
    fn bodies_round_trip() {
        let now = crate::time::parse_timestamp("2026-01-02T03:04:05Z").unwrap();
        let rest = RestErrorBody::with_tracking(
            ErrorCode::DeviceNotFound,
            "Device d1 not found",
            "abc",
            now,
        );
        expect![[r#"{"Message":"ErrorCode:DeviceNotFound;Device d1 not found","ExceptionMessage":"Tracking ID:abc-TimeStamp:01/02/2026 03:04:05"}"#]]
            .assert_eq(&rest.to_json());
        check(&rest.to_json(), expect![[r#"DeviceNotFound Some(404001) "Device d1 not found""#]]);
        let mqtt = MqttErrorBody::new(ErrorCode::ArgumentInvalid, "bad key", now);
        expect![[r#"{"errorCode":400004,"message":"bad key","timestampUtc":"2026-01-02T03:04:05.0000000Z"}"#]]
            .assert_eq(&String::from_utf8(mqtt.to_bytes()).unwrap());
    }
}
