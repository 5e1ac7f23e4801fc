//! CONTRACT SKELETON (owned by hub-mqtt; replace the bodies, keep these signatures or tell the others).
//! The device endpoint: MQTT 3.1.1 on rumqttc's codec, one task per connection, sessions keyed by device id.

use std::time::Duration;

use protocol::error::ErrorCode;
use protocol::ids::DeviceId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Settings of the device endpoint.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The hub host name that usernames and SAS `sr` must name.
    pub host_name: String,
}

/// Cheap-to-clone handle to the live device sessions: routes method calls and desired pushes.
#[derive(Clone)]
pub struct Sessions {}

/// A direct-method call to one device.
#[derive(Debug, Clone)]
pub struct MethodCall {
    /// Method name.
    pub name: String,
    /// JSON payload (`Null` is sent as the literal `null`).
    pub payload: serde_json::Value,
    /// How long to wait for the device's answer.
    pub response_timeout: Duration,
    /// How long to wait for the device to be connected and subscribed to methods.
    pub connect_timeout: Duration,
}

/// The device's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResponse {
    /// Status the device reported.
    pub status: i32,
    /// Payload the device sent (`Null` when empty).
    pub payload: serde_json::Value,
}

/// Why a method call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum MethodCallError {
    /// Not connected or not subscribed within the connect timeout (404103).
    #[error("device is not online or has not subscribed to direct methods")]
    NotOnline,
    /// No answer within the response timeout (504101).
    #[error("timed out waiting for the response from the device")]
    Timeout,
}

impl MethodCallError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        todo!()
    }
}

impl Sessions {
    /// Creates the session table.
    pub fn new(_registry: Registry, _cfg: MqttConfig) -> Self {
        todo!()
    }

    /// Invokes a direct method (does not check that the device exists: callers answer 404001 first).
    pub async fn invoke_method(&self, _device: &DeviceId, _call: MethodCall) -> Result<MethodResponse, MethodCallError> {
        todo!()
    }

    /// Pushes a desired-properties patch (body includes `"$version"`); dropped when offline or not subscribed.
    pub fn push_desired(&self, _device: &DeviceId, _body: serde_json::Value) {
        todo!()
    }

    /// Whether the device has a live session.
    pub fn is_connected(&self, _device: &DeviceId) -> bool {
        todo!()
    }

    /// Closes the device's session (device deleted, disabled or re-keyed).
    pub fn disconnect(&self, _device: &DeviceId) {
        todo!()
    }

    /// Number of live sessions.
    pub fn connected_count(&self) -> usize {
        todo!()
    }
}

/// Accepts device connections until `shutdown`, then closes them and returns.
/// `tls` is `Some` for the MQTT-over-TLS listener.
pub async fn serve(
    _listener: TcpListener,
    _tls: Option<tokio_rustls::TlsAcceptor>,
    _sessions: Sessions,
    _shutdown: CancellationToken,
) -> std::io::Result<()> {
    todo!()
}
