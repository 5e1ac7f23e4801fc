//! One device's stored state: its identity ([`Identity`]) and its twin ([`TwinState`]), plus the
//! conversions to the wire shapes (Device JSON, credentials).
//!
//! A [`Record`] is what the registry keeps in memory and what the store persists (as JSON). It does
//! not lock or persist itself; [`super::Registry`] does both.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use protocol::device::{
    device_etag, Authentication, AuthenticationType, Capabilities, ConnectionState, Device,
    DeviceStatus, SymmetricKey, X509Thumbprint,
};
use protocol::ids::DeviceId;
use protocol::twin::TwinDocument;
use serde::{Deserialize, Serialize};

use super::DeviceCredentials;

/// A device: identity plus twin. Serialized as the store's `doc` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) identity: Identity,
    pub(crate) twin: TwinDocument,
    /// Set under the record's lock when the device is deleted; later mutations see it and fail.
    #[serde(skip)]
    pub(crate) deleted: bool,
}

/// The identity-registry half of a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) device_id: DeviceId,
    pub(crate) generation_id: String,
    /// Counter behind the identity etag (`base64(decimal)`).
    pub(crate) etag: u64,
    pub(crate) status: DeviceStatus,
    pub(crate) status_reason: Option<String>,
    pub(crate) status_updated_time: Option<DateTime<Utc>>,
    pub(crate) auth_type: AuthenticationType,
    pub(crate) primary_key: Option<String>,
    pub(crate) secondary_key: Option<String>,
    pub(crate) primary_thumbprint: Option<String>,
    pub(crate) secondary_thumbprint: Option<String>,
    pub(crate) capabilities: Capabilities,
    /// Not persisted as live: a restarted hub has no sessions.
    #[serde(skip)]
    pub(crate) connection_state: ConnectionState,
    pub(crate) connection_state_updated_time: Option<DateTime<Utc>>,
    pub(crate) last_activity_time: Option<DateTime<Utc>>,
}

impl Record {
    /// The Device JSON of `GET /devices/{id}`.
    pub(crate) fn to_device(&self) -> Device {
        let identity = &self.identity;
        Device {
            device_id: identity.device_id.clone(),
            generation_id: identity.generation_id.clone(),
            etag: identity.etag_string(),
            connection_state: identity.connection_state,
            status: identity.status,
            status_reason: identity.status_reason.clone(),
            connection_state_updated_time: identity.connection_state_updated_time,
            status_updated_time: identity.status_updated_time,
            last_activity_time: identity.last_activity_time,
            cloud_to_device_message_count: 0,
            authentication: Authentication {
                symmetric_key: SymmetricKey {
                    primary_key: identity.primary_key.clone(),
                    secondary_key: identity.secondary_key.clone(),
                },
                x509_thumbprint: X509Thumbprint {
                    primary_thumbprint: identity.primary_thumbprint.clone(),
                    secondary_thumbprint: identity.secondary_thumbprint.clone(),
                },
                auth_type: identity.auth_type,
            },
            capabilities: identity.capabilities,
        }
    }

    /// Decoded keys for a CONNECT.
    pub(crate) fn credentials(&self) -> DeviceCredentials {
        let decode = |key: &Option<String>| {
            key.as_deref()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .unwrap_or_default()
        };
        DeviceCredentials {
            primary_key: decode(&self.identity.primary_key),
            secondary_key: decode(&self.identity.secondary_key),
            enabled: self.identity.status == DeviceStatus::Enabled,
        }
    }
}

impl Identity {
    /// The identity etag as sent (unquoted), e.g. `MA==`.
    pub(crate) fn etag_string(&self) -> String {
        device_etag(self.etag)
    }
}

/// A new random base64 key of 32 bytes, the size the service generates.
pub(crate) fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A new generation id: a decimal string, like the service's 18-digit ones.
pub(crate) fn generate_generation_id() -> String {
    let value: u64 = rand::random::<u64>() % 900_000_000_000_000_000 + 100_000_000_000_000_000;
    value.to_string()
}

/// Whether `key` is valid base64 (device keys must be).
pub(crate) fn is_base64_key(key: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|bytes| !bytes.is_empty())
}
