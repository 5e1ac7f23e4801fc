//! Connection strings: `HostName=..;DeviceId=..;SharedAccessKey=..` (device) and
//! `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..` (service policy).
//!
//! Parsing splits on `;` and then on the first `=` (keys contain `=` padding), ignores empty
//! segments, refuses duplicate and unknown keys with a message naming them, and validates ids.
//! X.509 device strings (`x509=true`) are refused: hubsim authenticates with SAS only.

use std::fmt;
use std::str::FromStr;

use crate::ids::{DeviceId, IdError, ModuleId};
use crate::sas;

/// Why a connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// A segment has no `=`.
    #[error("connection string segment {0:?} is not of the form Key=Value")]
    NotKeyValue(String),
    /// A key appears twice.
    #[error("connection string has {0} twice")]
    Duplicate(String),
    /// A key hubsim does not know.
    #[error("connection string key {0:?} is not supported (expected HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName, GatewayHostName)")]
    UnknownKey(String),
    /// A required key is missing.
    #[error("connection string lacks {0}")]
    Missing(&'static str),
    /// The combination of keys is neither a device nor a service string.
    #[error("connection string has both DeviceId and SharedAccessKeyName; use one (device) or the other (service)")]
    Ambiguous,
    /// An id is invalid.
    #[error("connection string: {0}")]
    Id(#[from] IdError),
    /// The key is not base64.
    #[error("connection string SharedAccessKey is not valid base64")]
    BadKey,
}

/// A device (or module) connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnectionString {
    /// The hub host name (used in the MQTT username and the SAS `sr`).
    pub host_name: String,
    /// The device id.
    pub device_id: DeviceId,
    /// The module id, for module identities.
    pub module_id: Option<ModuleId>,
    /// The device's base64 shared access key.
    pub shared_access_key: String,
    /// Where to open the network connection instead of `host_name` (may carry `:port`).
    pub gateway_host_name: Option<String>,
}

/// A service (shared access policy) connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    /// The hub host name; may carry `:port` for a local hub on a non-default HTTPS port.
    pub host_name: String,
    /// The policy name, e.g. `iothubowner`.
    pub shared_access_key_name: String,
    /// The policy's base64 key.
    pub shared_access_key: String,
}

/// Either kind of connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionString {
    /// A device or module connection string.
    Device(DeviceConnectionString),
    /// A service policy connection string.
    Service(ServiceConnectionString),
}

#[derive(Default)]
struct Fields {
    host_name: Option<String>,
    device_id: Option<String>,
    module_id: Option<String>,
    key: Option<String>,
    key_name: Option<String>,
    gateway: Option<String>,
}

fn split_fields(text: &str) -> Result<Fields, ConnectionStringError> {
    let mut fields = Fields::default();
    for segment in text.trim().split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = segment
            .split_once('=')
            .ok_or_else(|| ConnectionStringError::NotKeyValue(segment.to_owned()))?;
        let slot = match key {
            "HostName" => &mut fields.host_name,
            "DeviceId" => &mut fields.device_id,
            "ModuleId" => &mut fields.module_id,
            "SharedAccessKey" => &mut fields.key,
            "SharedAccessKeyName" => &mut fields.key_name,
            "GatewayHostName" => &mut fields.gateway,
            other => return Err(ConnectionStringError::UnknownKey(other.to_owned())),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(ConnectionStringError::Duplicate(key.to_owned()));
        }
    }
    Ok(fields)
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(text)?;
        let host_name = fields
            .host_name
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionStringError::Missing("HostName"))?;
        let key = fields
            .key
            .filter(|k| !k.is_empty())
            .ok_or(ConnectionStringError::Missing("SharedAccessKey"))?;
        sas::decode_key(&key).map_err(|_| ConnectionStringError::BadKey)?;
        match (fields.device_id, fields.key_name) {
            (Some(_), Some(_)) => Err(ConnectionStringError::Ambiguous),
            (Some(device), None) => Ok(Self::Device(DeviceConnectionString {
                host_name,
                device_id: DeviceId::new(device)?,
                module_id: fields.module_id.map(ModuleId::new).transpose()?,
                shared_access_key: key,
                gateway_host_name: fields.gateway.filter(|g| !g.is_empty()),
            })),
            (None, Some(name)) if !name.is_empty() => Ok(Self::Service(ServiceConnectionString {
                host_name,
                shared_access_key_name: name,
                shared_access_key: key,
            })),
            _ => Err(ConnectionStringError::Missing("DeviceId or SharedAccessKeyName")),
        }
    }
}

impl FromStr for DeviceConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<ConnectionString>()? {
            ConnectionString::Device(device) => Ok(device),
            ConnectionString::Service(_) => Err(ConnectionStringError::Missing("DeviceId")),
        }
    }
}

impl FromStr for ServiceConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<ConnectionString>()? {
            ConnectionString::Service(service) => Ok(service),
            ConnectionString::Device(_) => {
                Err(ConnectionStringError::Missing("SharedAccessKeyName"))
            }
        }
    }
}

impl fmt::Display for DeviceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={};DeviceId={}", self.host_name, self.device_id)?;
        if let Some(module) = &self.module_id {
            write!(f, ";ModuleId={module}")?;
        }
        write!(f, ";SharedAccessKey={}", self.shared_access_key)?;
        if let Some(gateway) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={gateway}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ServiceConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host_name, self.shared_access_key_name, self.shared_access_key
        )
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(device) => device.fmt(f),
            Self::Service(service) => service.fmt(f),
        }
    }
}

impl ServiceConnectionString {
    /// A service SAS token for this policy, valid until `expiry` (seconds since the epoch).
    ///
    /// # Errors
    /// [`sas::SasError::BadKey`] when the key is not base64 (parsing already checked it).
    pub fn sas_token(&self, expiry: u64) -> Result<String, sas::SasError> {
        sas::generate(
            &self.host_name,
            &self.shared_access_key,
            Some(&self.shared_access_key_name),
            expiry,
        )
    }
}

impl DeviceConnectionString {
    /// A device SAS token for this identity, valid until `expiry` (seconds since the epoch).
    ///
    /// # Errors
    /// [`sas::SasError::BadKey`] when the key is not base64 (parsing already checked it).
    pub fn sas_token(&self, expiry: u64) -> Result<String, sas::SasError> {
        let resource = sas::device_resource(
            &self.host_name,
            self.device_id.as_str(),
            self.module_id.as_ref().map(ModuleId::as_str),
        );
        sas::generate(&resource, &self.shared_access_key, None, expiry)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use proptest::prelude::*;

    use super::*;

    fn check(input: &str, expect: Expect) {
        let actual = match input.parse::<ConnectionString>() {
            Ok(parsed) => format!("{parsed}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parse() {
        check(
            "HostName=localhost;DeviceId=b43-f3-0001;SharedAccessKey=c2VjcmV0;",
            expect!["HostName=localhost;DeviceId=b43-f3-0001;SharedAccessKey=c2VjcmV0"],
        );
        check(
            "SharedAccessKey=c2VjcmV0;SharedAccessKeyName=iothubowner;HostName=hub.local:8443",
            expect![
                "HostName=hub.local:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0"
            ],
        );
        check(
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=c2VjcmV0;GatewayHostName=127.0.0.1",
            expect!["HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=c2VjcmV0;GatewayHostName=127.0.0.1"],
        );
        check("HostName=h;DeviceId=d", expect!["error: connection string lacks SharedAccessKey"]);
        check(
            "HostName=h;SharedAccessKey=c2VjcmV0",
            expect!["error: connection string lacks DeviceId or SharedAccessKeyName"],
        );
        check("HostName=h;HostName=i", expect!["error: connection string has HostName twice"]);
        check(
            "HostName=h;x509=true",
            expect![[
                r#"error: connection string key "x509" is not supported (expected HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName, GatewayHostName)"#
            ]],
        );
        check("HostName=h;DeviceId=a b;SharedAccessKey=c2VjcmV0", expect!["error: connection string: device id contains ' ', which is not allowed (ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' : ;)"]);
        check(
            "HostName=h;DeviceId=d;SharedAccessKey=***",
            expect!["error: connection string SharedAccessKey is not valid base64"],
        );
        check(
            "garbage",
            expect![[r#"error: connection string segment "garbage" is not of the form Key=Value"#]],
        );
        check("", expect!["error: connection string lacks HostName"]);
    }

    #[test]
    fn tokens_verify() {
        let device: DeviceConnectionString =
            "HostName=h;DeviceId=d1;SharedAccessKey=c2VjcmV0".parse().unwrap();
        let token = crate::sas::SasToken::parse(&device.sas_token(100).unwrap()).unwrap();
        assert!(token.verify(&[b"secret"], 99).is_ok());
        assert!(token.covers_device("h", "d1", None));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,100}") {
            let _ = text.parse::<ConnectionString>();
        }

        #[test]
        fn round_trip(device in "[a-z0-9-]{1,12}", host in "[a-z0-9.]{1,12}") {
            let text = format!("HostName={host};DeviceId={device};SharedAccessKey=c2VjcmV0");
            let parsed: ConnectionString = text.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), text);
        }
    }
}
