//! The registry's Device JSON (`PUT/GET /devices/{id}`), its enums, and registry statistics.
//!
//! The response side ([`Device`]) serializes exactly the keys the service sends, with `null` where the
//! service writes `null` and `0001-01-01T00:00:00Z` for "never". The request side ([`DeviceRequest`]) is
//! tolerant: every field may be missing, `"symmetricKey":{}` means "generate keys", unknown keys are
//! ignored. Key generation, etags and generation ids are the hub's job; this module only shapes JSON.
//!
//! Also here because twins and jobs share them: [`DeviceStatus`], [`ConnectionState`],
//! [`AuthenticationType`], [`X509Thumbprint`], [`Capabilities`], and the crate's timestamp serde helpers.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;

/// Whether a device may connect: `enabled` / `disabled` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// The device may connect.
    #[default]
    #[serde(alias = "Enabled")]
    Enabled,
    /// The device is refused.
    #[serde(alias = "Disabled")]
    Disabled,
}

/// `Connected` / `Disconnected` (capitalized on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ConnectionState {
    /// No live MQTT session.
    #[default]
    #[serde(alias = "disconnected")]
    Disconnected,
    /// A live MQTT session.
    #[serde(alias = "connected")]
    Connected,
}

/// How a device authenticates: `sas`, `selfSigned`, `certificateAuthority` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationType {
    /// Symmetric keys and SAS tokens.
    #[default]
    Sas,
    /// X.509 with registered thumbprints.
    SelfSigned,
    /// X.509 signed by a registered CA.
    CertificateAuthority,
    /// No credentials (modules of edge devices).
    None,
}

/// The two keys of a SAS device; `None` on requests means "generate one".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    /// Base64 primary key.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Base64 secondary key.
    #[serde(default)]
    pub secondary_key: Option<String>,
}

/// X.509 thumbprints; serialized with explicit `null`s as the service does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    /// Hex SHA-1/SHA-256 thumbprint of the primary certificate.
    #[serde(default)]
    pub primary_thumbprint: Option<String>,
    /// Hex thumbprint of the secondary certificate.
    #[serde(default)]
    pub secondary_thumbprint: Option<String>,
}

/// Device capabilities: `{"iotEdge":false}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// Whether the device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// The `authentication` object of a Device response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// The SAS keys (both `null` for X.509 devices).
    pub symmetric_key: SymmetricKey,
    /// The X.509 thumbprints (both `null` for SAS devices).
    pub x509_thumbprint: X509Thumbprint,
    /// The authentication type.
    #[serde(rename = "type")]
    pub auth_type: AuthenticationType,
}

/// A Device as the service returns it (§4.1), key order as the service writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The device id.
    pub device_id: DeviceId,
    /// A decimal string that changes when a device is re-created with the same id.
    pub generation_id: String,
    /// The identity etag (base64 of a decimal counter, see [`device_etag`]).
    pub etag: String,
    /// Whether a session is live.
    pub connection_state: ConnectionState,
    /// Enabled or disabled.
    pub status: DeviceStatus,
    /// Free text set with the status.
    pub status_reason: Option<String>,
    /// Last connect/disconnect; `None` is written as `0001-01-01T00:00:00Z`.
    #[serde(with = "timestamps::never_or")]
    pub connection_state_updated_time: Option<DateTime<Utc>>,
    /// Last status change; `None` is written as "never".
    #[serde(with = "timestamps::never_or")]
    pub status_updated_time: Option<DateTime<Utc>>,
    /// Last message from the device; `None` is written as "never".
    #[serde(with = "timestamps::never_or")]
    pub last_activity_time: Option<DateTime<Utc>>,
    /// Pending cloud-to-device messages.
    pub cloud_to_device_message_count: u64,
    /// Credentials.
    pub authentication: Authentication,
    /// Capabilities.
    pub capabilities: Capabilities,
}

/// The `authentication` object of a request; everything optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthenticationRequest {
    /// Keys to set; missing or `{}` means "generate".
    pub symmetric_key: Option<SymmetricKey>,
    /// Thumbprints for X.509 devices.
    pub x509_thumbprint: Option<X509Thumbprint>,
    /// The type; missing means `sas`.
    #[serde(rename = "type")]
    pub auth_type: Option<AuthenticationType>,
}

/// A `PUT /devices/{id}` body as the SDKs send it: every field optional, unknown fields ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceRequest {
    /// The id in the body (the path id is authoritative).
    pub device_id: Option<String>,
    /// The requested status; missing means `enabled` on create and "unchanged" on update.
    pub status: Option<DeviceStatus>,
    /// Free text for the status.
    pub status_reason: Option<String>,
    /// Credentials.
    pub authentication: Option<AuthenticationRequest>,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// The etag the client last saw (the `If-Match` header is what counts).
    pub etag: Option<String>,
}

/// `GET /statistics/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    /// All devices.
    pub total_device_count: u64,
    /// Enabled devices.
    pub enabled_device_count: u64,
    /// Disabled devices.
    pub disabled_device_count: u64,
}

/// Why a device body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid device body: {0}")]
pub struct DeviceBodyError(#[from] serde_json::Error);

impl DeviceRequest {
    /// Parses a `PUT /devices/{id}` body.
    ///
    /// # Errors
    /// [`DeviceBodyError`] when the body is not a JSON object of the Device shape
    /// (e.g. an unknown `status` or `type`).
    pub fn parse(body: &[u8]) -> Result<DeviceRequest, DeviceBodyError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// The keys the request sets: `(primary, secondary)`, each `None` when it must be generated.
    pub fn requested_keys(&self) -> (Option<&str>, Option<&str>) {
        let keys = self.authentication.as_ref().and_then(|auth| auth.symmetric_key.as_ref());
        let primary = keys.and_then(|k| k.primary_key.as_deref()).filter(|k| !k.is_empty());
        let secondary = keys.and_then(|k| k.secondary_key.as_deref()).filter(|k| !k.is_empty());
        (primary, secondary)
    }

    /// The authentication type the request asks for (`sas` when missing).
    pub fn auth_type(&self) -> AuthenticationType {
        self.authentication.as_ref().and_then(|auth| auth.auth_type).unwrap_or_default()
    }
}

/// The identity etag for a counter: base64 of its decimal text (`0` → `MA==`).
pub fn device_etag(counter: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(counter.to_string())
}

/// Serde helpers for the timestamp forms the service writes; shared by the JSON modules of this crate.
pub(crate) mod timestamps {
    /// `Option<DateTime<Utc>>` where `None` is `0001-01-01T00:00:00Z`; other values have 7 fractional digits.
    pub(crate) mod never_or {
        use chrono::{DateTime, Datelike, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::time::{format_timestamp, parse_timestamp, NEVER};

        pub(crate) fn serialize<S: Serializer>(
            value: &Option<DateTime<Utc>>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(at) => ser.serialize_str(&format_timestamp(*at)),
                None => ser.serialize_str(NEVER),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let Some(text) = Option::<String>::deserialize(de)? else { return Ok(None) };
            let at = parse_timestamp(&text).map_err(serde::de::Error::custom)?;
            Ok((at.year() > 1).then_some(at))
        }
    }

    /// `DateTime<Utc>` written with 7 fractional digits.
    pub(crate) mod required {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::time::{format_timestamp, parse_timestamp};

        pub(crate) fn serialize<S: Serializer>(
            value: &DateTime<Utc>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            ser.serialize_str(&format_timestamp(*value))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<DateTime<Utc>, D::Error> {
            let text = String::deserialize(de)?;
            parse_timestamp(&text).map_err(serde::de::Error::custom)
        }
    }

    /// `Option<DateTime<Utc>>` written with 7 fractional digits; `None` is skipped or `null` by the caller's attributes.
    pub(crate) mod optional {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::time::{format_timestamp, parse_timestamp};

        pub(crate) fn serialize<S: Serializer>(
            value: &Option<DateTime<Utc>>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(at) => ser.serialize_str(&format_timestamp(*at)),
                None => ser.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let Some(text) = Option::<String>::deserialize(de)? else { return Ok(None) };
            parse_timestamp(&text).map(Some).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(body: &str, expect: Expect) {
        let actual = match DeviceRequest::parse(body.as_bytes()) {
            Ok(req) => format!(
                "{:?} {:?} keys={:?} type={:?}",
                req.device_id,
                req.status,
                req.requested_keys(),
                req.auth_type()
            ),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn tolerant_requests() {
        check(
            r#"{"deviceId":"d1","status":"enabled","authentication":{"symmetricKey":{}},"capabilities":{"iotEdge":false}}"#,
            expect![[r#"Some("d1") Some(Enabled) keys=(None, None) type=Sas"#]],
        );
        check(
            r#"{"deviceId":"d1","authentication":{"type":"sas","symmetricKey":{"primaryKey":"cA==","secondaryKey":null}},"extra":1}"#,
            expect![[r#"Some("d1") None keys=(Some("cA=="), None) type=Sas"#]],
        );
        check(r#"{}"#, expect![["None None keys=(None, None) type=Sas"]]);
        check(
            r#"{"authentication":{"type":"selfSigned"}}"#,
            expect![["None None keys=(None, None) type=SelfSigned"]],
        );
        check(r#"{"status":"paused"}"#, expect!["error: invalid device body: unknown variant `paused`, expected one of `Enabled`, `enabled`, `Disabled`, `disabled` at line 1 column 18"]);
        check("[]", expect!["None None keys=(None, None) type=Sas"]);
    }

    #[test]
    fn response_is_exact() {
        let device = Device {
            device_id: DeviceId::new("edison1").unwrap(),
            generation_id: "635944482332920305".into(),
            etag: device_etag(0),
            connection_state: ConnectionState::Disconnected,
            status: DeviceStatus::Enabled,
            status_reason: None,
            connection_state_updated_time: None,
            status_updated_time: None,
            last_activity_time: None,
            cloud_to_device_message_count: 0,
            authentication: Authentication {
                symmetric_key: SymmetricKey {
                    primary_key: Some("p".into()),
                    secondary_key: Some("s".into()),
                },
                ..Authentication::default()
            },
            capabilities: Capabilities::default(),
        };
        let json = serde_json::to_string(&device).unwrap();
        expect![[r#"{"deviceId":"edison1","generationId":"635944482332920305","etag":"MA==","connectionState":"Disconnected","status":"enabled","statusReason":null,"connectionStateUpdatedTime":"0001-01-01T00:00:00Z","statusUpdatedTime":"0001-01-01T00:00:00Z","lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authentication":{"symmetricKey":{"primaryKey":"p","secondaryKey":"s"},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"},"capabilities":{"iotEdge":false}}"#]]
            .assert_eq(&json);
        let back: Device = serde_json::from_str(&json).unwrap();
        assert_eq!(back, device);
        // Older captures write "never" without the zone; it still reads as never.
        let old = json.replacen("0001-01-01T00:00:00Z", "0001-01-01T00:00:00", 1);
        assert_eq!(serde_json::from_str::<Device>(&old).unwrap(), device);
    }

    #[test]
    fn statistics_shape() {
        let stats = RegistryStatistics {
            total_device_count: 3,
            enabled_device_count: 2,
            disabled_device_count: 1,
        };
        expect![[r#"{"totalDeviceCount":3,"enabledDeviceCount":2,"disabledDeviceCount":1}"#]]
            .assert_eq(&serde_json::to_string(&stats).unwrap());
    }
}
