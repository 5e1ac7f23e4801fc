//! The device client's one error type, [`Error`], and [`ConfigError`] for bad configuration.
//!
//! Every failure the hub or the network can cause is a variant here; the client never panics on
//! what the hub sends. Expected outcomes (a method the device has no handler for, a dropped
//! connection that will be retried) are not errors; they show up in `ConnectionState` and counters.

use std::time::Duration;

/// Why a [`DeviceConfig`](crate::DeviceConfig) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The connection string is malformed or misses a required field.
    #[error("invalid connection string: {0}")]
    ConnectionString(String),
    /// The device or module id breaks the id rules.
    #[error("invalid id: {0}")]
    Id(#[from] protocol::ids::IdError),
    /// The shared access key is not valid base64.
    #[error("shared access key is not valid base64")]
    KeyNotBase64,
    /// The CA bundle holds no certificate or a certificate rustls rejects.
    #[error("invalid ca certificate: {0}")]
    Ca(String),
    /// The TLS server name is not a valid DNS name or IP address.
    #[error("invalid tls server name {0:?}")]
    ServerName(String),
    /// A duration or size is out of range.
    #[error("invalid setting {name}: {reason}")]
    Setting {
        /// The setting's field name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What went wrong with a device operation or connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hub refused the credentials (CONNACK return code 4 or 5).
    #[error("hub refused the credentials (connack return code {code})")]
    AuthRefused {
        /// The CONNACK return code.
        code: u8,
    },
    /// The hub refused the connection for another reason (CONNACK return code 1, 2 or 3).
    #[error("hub refused the connection (connack return code {code})")]
    ConnectionRefused {
        /// The CONNACK return code.
        code: u8,
    },
    /// TCP connect, TLS handshake or a socket read/write failed.
    #[error("network error: {0}")]
    Network(String),
    /// The TLS handshake failed (bad certificate, wrong name, unsupported version).
    #[error("tls error: {0}")]
    Tls(String),
    /// The hub sent something that breaks MQTT or the IoT Hub topic contract.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out (`connect`, `twin get`, `reported patch`, `telemetry`).
        operation: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The hub answered a twin request with an error status.
    #[error("hub answered {status}: {message}")]
    Hub {
        /// The status from `$iothub/twin/res/{status}`.
        status: u16,
        /// The six-digit `errorCode` from the body, when the body has one.
        error_code: Option<u32>,
        /// The body's `message`, or the raw body when it is not an IoT Hub error body.
        message: String,
    },
    /// The connection dropped before the operation completed; it may or may not have taken effect.
    #[error("connection lost before {operation} completed")]
    ConnectionLost {
        /// The operation that was in flight.
        operation: &'static str,
    },
    /// The payload or topic is larger than the configured maximum packet size.
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is not valid for the operation (e.g. a reported patch that is not a JSON object).
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// Too many requests are already waiting for the connection or the twin subscription.
    #[error("too many requests are waiting; try again later")]
    Busy,
    /// The client has stopped (shutdown, `disconnect()` or a fatal error) and takes no more requests.
    #[error("client is stopped")]
    Stopped,
}
