//! CONTRACT SKELETON (owned by hub-core; replace the bodies, keep these signatures or tell the others).
//! The device registry and twins: in-memory, durable through the store.

use chrono::{DateTime, Utc};
use protocol::error::ErrorCode;
use protocol::ids::DeviceId;

/// Cheap-to-clone handle to the registry.
#[derive(Clone)]
pub struct Registry {}

/// Base64-decoded keys and status used to authenticate a device's CONNECT.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    /// Primary key, decoded.
    pub primary_key: Vec<u8>,
    /// Secondary key, decoded.
    pub secondary_key: Vec<u8>,
    /// `status == "enabled"`.
    pub enabled: bool,
}

/// A change of a device's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionChange {
    /// The device's MQTT session connected.
    Connected,
    /// The device's MQTT session ended.
    Disconnected,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Placeholder variant of the skeleton.
    #[error("device {0} not found")]
    DeviceNotFound(DeviceId),
}

impl RegistryError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        todo!()
    }
}

impl Registry {
    /// Keys and status for CONNECT; `None` when the device does not exist. Sync, in-memory, hot path.
    pub fn credentials(&self, _device: &DeviceId) -> Option<DeviceCredentials> {
        todo!()
    }

    /// The device view for an MQTT twin GET: `{"desired":{..,"$version":n},"reported":{..,"$version":m}}`.
    pub fn device_twin_view(&self, _device: &DeviceId) -> Result<serde_json::Value, RegistryError> {
        todo!()
    }

    /// Applies a reported-properties patch (validated); returns the new reported `$version`.
    /// `expected_version` is the optional `$version` of the request topic (412 on mismatch).
    /// Durable when it returns.
    pub async fn patch_reported(
        &self,
        _device: &DeviceId,
        _patch: serde_json::Value,
        _expected_version: Option<u64>,
    ) -> Result<u64, RegistryError> {
        todo!()
    }

    /// Records a connect or disconnect (connectionState, connectionStateUpdatedTime).
    pub fn record_connection(&self, _device: &DeviceId, _change: ConnectionChange, _at: DateTime<Utc>) {
        todo!()
    }

    /// Records device activity (lastActivityTime). Hot path: must be cheap.
    pub fn record_activity(&self, _device: &DeviceId, _at: DateTime<Utc>) {
        todo!()
    }
}
