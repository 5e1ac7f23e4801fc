//! Direct-method JSON: the `POST /twins/{id}/methods` request ([`CloudToDeviceMethod`]) and its
//! result ([`CloudToDeviceMethodResult`]), plus the 128 KB payload limit.
//!
//! The request is validated on construction: a non-empty method name usable in an MQTT topic,
//! `responseTimeoutInSeconds` 5..=300 (default 30), `connectTimeoutInSeconds` 0..=300 (default 0).
//! `payload` may be any JSON; a missing payload is `null`, and the device always receives a JSON body
//! (`null`, never an empty one). The legacy `timeoutInSeconds` is ignored, as the service ignores it.
//! Invoking the method and timing out are the hub's business, not this module's.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;

/// The largest request or response payload, in bytes of serialized JSON.
pub const MAX_METHOD_PAYLOAD_BYTES: usize = 128 * 1024;
/// `responseTimeoutInSeconds` when the request has none.
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u32 = 30;
/// `connectTimeoutInSeconds` when the request has none (the device must already be online).
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u32 = 0;
/// Allowed `responseTimeoutInSeconds`.
pub const RESPONSE_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 5..=300;
/// Allowed `connectTimeoutInSeconds`.
pub const CONNECT_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 0..=300;

/// Characters a method name may not contain: it becomes a segment of `$iothub/methods/POST/{name}/`.
const FORBIDDEN_NAME_CHARS: &[char] = &['/', '+', '#', '?'];

/// A validated direct-method invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudToDeviceMethod {
    method_name: String,
    payload: Value,
    response_timeout_in_seconds: u32,
    connect_timeout_in_seconds: u32,
}

/// A direct method's outcome as the service returns it: `{"status":<int>,"payload":<json>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudToDeviceMethodResult {
    /// The status the device answered with.
    pub status: i32,
    /// The device's JSON body, `null` when it sent none.
    #[serde(default)]
    pub payload: Value,
}

/// Why a method request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// The body is not a JSON object of the expected shape.
    #[error("invalid method request body: {0}")]
    Body(String),
    /// `methodName` is missing or empty.
    #[error("methodName is required")]
    MissingName,
    /// `methodName` contains a character that cannot appear in the MQTT topic.
    #[error("methodName {0:?} contains one of / + # ?")]
    BadName(String),
    /// `responseTimeoutInSeconds` is outside 5..=300.
    #[error("responseTimeoutInSeconds must be between 5 and 300, got {0}")]
    ResponseTimeout(String),
    /// `connectTimeoutInSeconds` is outside 0..=300.
    #[error("connectTimeoutInSeconds must be between 0 and 300, got {0}")]
    ConnectTimeout(String),
    /// The serialized payload is larger than [`MAX_METHOD_PAYLOAD_BYTES`].
    #[error("method payload is {0} bytes; the limit is 131072")]
    PayloadTooLarge(usize),
}

impl MethodError {
    /// The IoT Hub error code for this failure (413001 for size, 400004 otherwise).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            MethodError::PayloadTooLarge(_) => ErrorCode::MessageTooLarge,
            MethodError::Body(_) => ErrorCode::DeserializationError,
            _ => ErrorCode::ArgumentInvalid,
        }
    }
}

/// The request as it arrives: every field optional, timeouts as raw JSON numbers.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RawMethodRequest {
    method_name: Option<String>,
    #[serde(deserialize_with = "present")]
    payload: Option<Value>,
    response_timeout_in_seconds: Option<Value>,
    connect_timeout_in_seconds: Option<Value>,
}

impl CloudToDeviceMethod {
    /// Validates and builds a method call; `None` timeouts take the defaults (30 and 0).
    ///
    /// # Errors
    /// [`MethodError`] for an empty or topic-breaking name, an out-of-range timeout, or a payload over 128 KB.
    pub fn new(
        method_name: impl Into<String>,
        payload: Value,
        response_timeout_secs: Option<u32>,
        connect_timeout_secs: Option<u32>,
    ) -> Result<CloudToDeviceMethod, MethodError> {
        let method_name = method_name.into();
        if method_name.is_empty() {
            return Err(MethodError::MissingName);
        }
        if method_name.contains(FORBIDDEN_NAME_CHARS) {
            return Err(MethodError::BadName(method_name));
        }
        let response = response_timeout_secs.unwrap_or(DEFAULT_RESPONSE_TIMEOUT_SECS);
        if !RESPONSE_TIMEOUT_RANGE.contains(&response) {
            return Err(MethodError::ResponseTimeout(response.to_string()));
        }
        let connect = connect_timeout_secs.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);
        if !CONNECT_TIMEOUT_RANGE.contains(&connect) {
            return Err(MethodError::ConnectTimeout(connect.to_string()));
        }
        let size = serde_json::to_vec(&payload).map_or(0, |bytes| bytes.len());
        if size > MAX_METHOD_PAYLOAD_BYTES {
            return Err(MethodError::PayloadTooLarge(size));
        }
        Ok(CloudToDeviceMethod {
            method_name,
            payload,
            response_timeout_in_seconds: response,
            connect_timeout_in_seconds: connect,
        })
    }

    /// Parses and validates a `POST /twins/{id}/methods` body.
    ///
    /// # Errors
    /// [`MethodError::Body`] for a body that is not a JSON object; otherwise as [`CloudToDeviceMethod::new`].
    pub fn parse(body: &[u8]) -> Result<CloudToDeviceMethod, MethodError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| MethodError::Body(err.to_string()))?;
        CloudToDeviceMethod::from_value(value)
    }

    /// Validates an already-parsed JSON value (e.g. a job's `cloudToDeviceMethod`).
    ///
    /// # Errors
    /// As [`CloudToDeviceMethod::parse`].
    pub fn from_value(value: Value) -> Result<CloudToDeviceMethod, MethodError> {
        if !value.is_object() {
            return Err(MethodError::Body("expected a json object".into()));
        }
        let raw: RawMethodRequest =
            serde_json::from_value(value).map_err(|err| MethodError::Body(err.to_string()))?;
        let response = raw
            .response_timeout_in_seconds
            .map(|v| timeout_secs(&v).ok_or_else(|| MethodError::ResponseTimeout(v.to_string())))
            .transpose()?;
        let connect = raw
            .connect_timeout_in_seconds
            .map(|v| timeout_secs(&v).ok_or_else(|| MethodError::ConnectTimeout(v.to_string())))
            .transpose()?;
        let name = raw.method_name.ok_or(MethodError::MissingName)?;
        CloudToDeviceMethod::new(name, raw.payload.unwrap_or(Value::Null), response, connect)
    }

    /// The method name.
    pub fn method_name(&self) -> &str {
        &self.method_name
    }

    /// The payload (`Null` when the request had none).
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// Seconds to wait for the device's answer.
    pub fn response_timeout_secs(&self) -> u32 {
        self.response_timeout_in_seconds
    }

    /// Seconds to wait for the device to come online (0 = it must be online now).
    pub fn connect_timeout_secs(&self) -> u32 {
        self.connect_timeout_in_seconds
    }

    /// The MQTT body published to the device: the payload's JSON text (`null` for no payload, never empty).
    pub fn device_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).expect("a serde_json::Value always serializes")
    }
}

impl<'de> Deserialize<'de> for CloudToDeviceMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        CloudToDeviceMethod::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl CloudToDeviceMethodResult {
    /// Builds the result from the device's answer; an empty or non-JSON body becomes `null` or a JSON string.
    pub fn from_device(status: i32, body: &[u8]) -> CloudToDeviceMethodResult {
        let payload = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        CloudToDeviceMethodResult { status, payload }
    }
}

/// A timeout as a whole number of seconds; fractions with no fractional part are accepted.
fn timeout_secs(value: &Value) -> Option<u32> {
    if value.is_null() {
        return None;
    }
    if let Some(whole) = value.as_u64() {
        return u32::try_from(whole).ok();
    }
    let float = value.as_f64()?;
    let in_range = float.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&float);
    // Truncation is exact here: the value is a whole number inside u32's range.
    in_range.then_some(float as u32)
}

/// Deserializes a field so that an explicit `null` is `Some(Value::Null)` and only absence is `None`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(body: &str, expect: Expect) {
        let actual = match CloudToDeviceMethod::parse(body.as_bytes()) {
            Ok(call) => format!(
                "{} device_body={}",
                serde_json::to_string(&call).unwrap(),
                String::from_utf8(call.device_body()).unwrap()
            ),
            Err(err) => format!("{} {err}", err.error_code().code()),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn requests() {
        check(
            r#"{"methodName":"reboot","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}"#,
            expect![[
                r#"{"methodName":"reboot","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0} device_body=null"#
            ]],
        );
        check(
            r#"{"methodName":"m","payload":""}"#,
            expect![[
                r#"{"methodName":"m","payload":"","responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0} device_body="""#
            ]],
        );
        check(
            r#"{"methodName":"m","timeoutInSeconds":1}"#,
            expect![[
                r#"{"methodName":"m","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0} device_body=null"#
            ]],
        );
        check(
            r#"{"methodName":"m","payload":{"k1":"v1"},"responseTimeoutInSeconds":300.0,"connectTimeoutInSeconds":15}"#,
            expect![[
                r#"{"methodName":"m","payload":{"k1":"v1"},"responseTimeoutInSeconds":300,"connectTimeoutInSeconds":15} device_body={"k1":"v1"}"#
            ]],
        );
        check(
            r#"{"methodName":"m","responseTimeoutInSeconds":4}"#,
            expect![["400004 responseTimeoutInSeconds must be between 5 and 300, got 4"]],
        );
        check(
            r#"{"methodName":"m","responseTimeoutInSeconds":-1}"#,
            expect![["400004 responseTimeoutInSeconds must be between 5 and 300, got -1"]],
        );
        check(
            r#"{"methodName":"m","connectTimeoutInSeconds":301}"#,
            expect![["400004 connectTimeoutInSeconds must be between 0 and 300, got 301"]],
        );
        check(
            r#"{"methodName":"m","connectTimeoutInSeconds":"5"}"#,
            expect![[r#"400004 connectTimeoutInSeconds must be between 0 and 300, got "5""#]],
        );
        check(r#"{"payload":1}"#, expect![["400004 methodName is required"]]);
        check(r#"{"methodName":""}"#, expect![["400004 methodName is required"]]);
        check(
            r#"{"methodName":"a/b"}"#,
            expect![[r#"400004 methodName "a/b" contains one of / + # ?"#]],
        );
        check(r#"[1]"#, expect![["400012 invalid method request body: expected a json object"]]);
        check(
            r#"{"methodName":7}"#,
            expect![[
                "400012 invalid method request body: invalid type: integer `7`, expected a string"
            ]],
        );
        let big =
            format!(r#"{{"methodName":"m","payload":"{}"}}"#, "x".repeat(MAX_METHOD_PAYLOAD_BYTES));
        check(&big, expect![["413001 method payload is 131074 bytes; the limit is 131072"]]);
    }

    #[test]
    fn results() {
        let cases: Vec<String> = [(200, ""), (200, "{\"a\":1}"), (500, "not json"), (204, " ")]
            .iter()
            .map(|(status, body)| {
                serde_json::to_string(&CloudToDeviceMethodResult::from_device(
                    *status,
                    body.as_bytes(),
                ))
                .unwrap()
            })
            .collect();
        expect![[r#"{"status":200,"payload":null} {"status":200,"payload":{"a":1}} {"status":500,"payload":"not json"} {"status":204,"payload":null}"#]]
            .assert_eq(&cases.join(" "));
    }
}
