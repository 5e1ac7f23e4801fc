//! CONNECT authentication: MQTT 3.1.1 only, client id = device id, username naming the configured
//! hub host and the same device, password a device SAS token signed with the primary or secondary key.
//!
//! Every refusal is CONNACK 5 (not authorized), as IoT Hub answers, except a wrong protocol level
//! (CONNACK 1). [`Refusal`]'s messages never contain the token's signature or the keys.
//! Not supported (refused): module identities, X.509 (no password), and policy tokens (`skn`),
//! because the registry hands out device keys only.

use chrono::{DateTime, Utc};
use protocol::ids::DeviceId;
use protocol::sas::{SasError, SasToken};
use protocol::username::MqttUsername;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};
use rumqttc::mqttbytes::Protocol;

use crate::registry::Registry;

/// A CONNECT that passed authentication.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// The device the connection acts for.
    pub(crate) device: DeviceId,
    /// The token's `se`: seconds since the Unix epoch after which the connection is closed.
    pub(crate) token_expiry: u64,
}

/// Why a CONNECT was refused (safe to log: no secrets).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// Not MQTT 3.1.1.
    #[error("protocol level is not MQTT 3.1.1")]
    ProtocolVersion,
    /// The client id is not a valid device id (module client ids land here too).
    #[error("client id {client_id:?} is not a device id: {reason}")]
    ClientId { client_id: String, reason: String },
    /// No username or password (X.509 client certificates are not supported).
    #[error("no username and SAS token password")]
    NoCredentials,
    /// The username is malformed or names another host or identity.
    #[error("username {username:?} does not name {expected:?}")]
    Username { username: String, expected: String },
    /// The password is not a SAS token.
    #[error("password is not a SAS token: {0}")]
    Token(SasError),
    /// Policy (`skn`) tokens are not accepted on the device endpoint.
    #[error("policy tokens (skn={0}) are not supported for device connections")]
    PolicyToken(String),
    /// The token's `sr` does not cover this device on this hub.
    #[error("token resource {0:?} does not cover this device on this hub")]
    Resource(String),
    /// The device is not registered.
    #[error("device is not registered")]
    UnknownDevice,
    /// The device is disabled.
    #[error("device is disabled")]
    Disabled,
    /// Bad signature or expired token.
    #[error("{0}")]
    Signature(SasError),
}

impl Refusal {
    /// The CONNACK return code for this refusal.
    pub(crate) fn return_code(&self) -> ConnectReturnCode {
        match self {
            Refusal::ProtocolVersion => ConnectReturnCode::RefusedProtocolVersion,
            _ => ConnectReturnCode::NotAuthorized,
        }
    }
}

/// Checks a CONNECT against the registry at time `now`.
pub(crate) fn authenticate(
    connect: &Connect,
    host_name: &str,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refusal> {
    if connect.protocol != Protocol::V4 {
        return Err(Refusal::ProtocolVersion);
    }
    let device = DeviceId::new(connect.client_id.as_str()).map_err(|err| Refusal::ClientId {
        client_id: connect.client_id.clone(),
        reason: err.to_string(),
    })?;
    let login = connect
        .login
        .as_ref()
        .filter(|login| !login.password.is_empty())
        .ok_or(Refusal::NoCredentials)?;
    check_username(&login.username, host_name, &device)?;
    let token = SasToken::parse(&login.password).map_err(Refusal::Token)?;
    if let Some(policy) = token.key_name {
        return Err(Refusal::PolicyToken(policy));
    }
    if !token.covers_device(host_name, device.as_str(), None) {
        return Err(Refusal::Resource(token.resource));
    }
    let credentials = registry.credentials(&device).ok_or(Refusal::UnknownDevice)?;
    if !credentials.enabled {
        return Err(Refusal::Disabled);
    }
    let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
    token
        .verify(
            &[credentials.primary_key.as_slice(), credentials.secondary_key.as_slice()],
            now_secs,
        )
        .map_err(Refusal::Signature)?;
    Ok(Authenticated { device, token_expiry: token.expiry })
}

/// The username must be `{configured host}/{client id}/...` (host case-insensitive, no module).
fn check_username(username: &str, host_name: &str, device: &DeviceId) -> Result<(), Refusal> {
    let refused = || Refusal::Username {
        username: username.to_owned(),
        expected: format!("{host_name}/{device}"),
    };
    let parsed = MqttUsername::parse(username).map_err(|_| refused())?;
    let matches = parsed.host.eq_ignore_ascii_case(host_name)
        && parsed.device_id == device.as_str()
        && parsed.module_id.is_none();
    if matches {
        Ok(())
    } else {
        Err(refused())
    }
}
