//! The device endpoint: MQTT 3.1.1 on rumqttc's codec, one task per connection, sessions keyed by
//! device id.
//!
//! [`serve`] accepts connections (plain or TLS) and runs one task per connection (`connection`):
//! CONNECT is authenticated with the device's SAS key (`auth`), then the task reads packets, routes
//! device topics (`routing`: twin GET and reported patches, method responses, telemetry) and
//! writes what other parts of the hub queue for the device. [`Sessions`] is the handle the rest of
//! the hub uses: direct methods ([`Sessions::invoke_method`]), desired-property pushes and
//! eviction. Session state (subscriptions, pending method calls) lives per device id in `session`
//! and survives reconnects, because IoT Hub sessions are CleanSession 0 and the Python SDK never
//! re-subscribes.
//!
//! Deliberately absent: rumqttd (devices never touch a general-purpose broker; a device can only
//! reach its own topics), QoS 2, retained messages, wills, X.509 client certificates, module
//! identities, policy (`skn`) device tokens, cloud-to-device delivery (the C2D subscription is
//! accepted and remembered for a later issue), WebSocket transport, and retransmission of
//! unacknowledged QoS 1 publishes after a reconnect (twin responses and desired patches are
//! requests the SDKs time out and repeat themselves).
//!
//! Method calls whose request was delivered keep waiting when the device disconnects: a device
//! that reconnects and answers within the response timeout completes the call; otherwise it fails
//! with 504101. Calls that never reached a device fail with 404103 after the connect timeout.

mod auth;
mod connection;
mod io;
mod listener;
mod methods;
mod routing;
mod session;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, ModuleId};
use protocol::property_bag::PropertyBag;
use protocol::topic::HubPublish;
use tokio::sync::mpsc;

use crate::registry::Registry;
use session::{CloseReason, FilterKind, PushError, SessionTable};

pub use listener::serve;

/// Settings of the device endpoint.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The hub host name that usernames and SAS `sr` must name.
    pub host_name: String,
}

/// Cheap-to-clone handle to the live device sessions: routes method calls and desired pushes.
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

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
    /// The request payload, or the device's response, is larger than 128 KB (413001).
    #[error("method payload is {0} bytes; the limit is 131072")]
    PayloadTooLarge(usize),
}

/// One telemetry message a device published on `devices/{id}[/modules/{m}]/messages/events/..`.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The sending device.
    pub device_id: DeviceId,
    /// The sending module, for module identities (always `None` today).
    pub module_id: Option<ModuleId>,
    /// System and application properties from the topic's property bag.
    pub properties: PropertyBag,
    /// The message body as sent.
    pub body: Bytes,
    /// When the hub received it.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// Counters of the device endpoint since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Devices with a live connection right now.
    pub connected: usize,
    /// CONNECTs accepted.
    pub connections_accepted: u64,
    /// CONNECTs refused (bad credentials, unknown or disabled device, bad username).
    pub connections_refused: u64,
    /// Connections closed for breaking the protocol (foreign topics, QoS 2, garbage bytes).
    pub protocol_violations: u64,
    /// Telemetry messages received.
    pub telemetry_received: u64,
    /// Telemetry messages dropped because the telemetry channel was full.
    pub telemetry_dropped: u64,
    /// Direct-method requests delivered to devices' outboxes.
    pub method_requests_sent: u64,
    /// Desired-property patches dropped (device offline, not subscribed, or outbox full).
    pub desired_dropped: u64,
}

/// State shared by the handle and every connection task.
pub(crate) struct Shared {
    pub(crate) table: SessionTable,
    pub(crate) registry: Registry,
    pub(crate) cfg: MqttConfig,
    pub(crate) counters: Counters,
    /// Round trips of answered direct-method calls (for `/metrics`).
    pub(crate) method_latency: crate::metrics::LatencyHistogram,
    /// Devices with a live connection (kept by the connection tasks on attach and detach).
    pub(crate) connected: AtomicUsize,
    telemetry: OnceLock<mpsc::Sender<Telemetry>>,
}

/// Monotonic counters behind [`SessionStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) protocol_violations: AtomicU64,
    pub(crate) telemetry_received: AtomicU64,
    pub(crate) telemetry_dropped: AtomicU64,
    pub(crate) method_requests_sent: AtomicU64,
    pub(crate) desired_dropped: AtomicU64,
}

impl MethodCallError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            MethodCallError::NotOnline => ErrorCode::DeviceNotOnline,
            MethodCallError::Timeout => ErrorCode::GatewayTimeout,
            MethodCallError::PayloadTooLarge(_) => ErrorCode::MessageTooLarge,
        }
    }
}

impl Sessions {
    /// Creates the session table.
    pub fn new(registry: Registry, cfg: MqttConfig) -> Self {
        let shared = Shared {
            table: SessionTable::new(),
            registry,
            cfg,
            counters: Counters::default(),
            method_latency: crate::metrics::LatencyHistogram::default(),
            connected: AtomicUsize::new(0),
            telemetry: OnceLock::new(),
        };
        Sessions { shared: Arc::new(shared) }
    }

    /// Invokes a direct method (does not check that the device exists: callers answer 404001 first).
    ///
    /// Waits up to `connect_timeout` for the device to be connected and subscribed to
    /// `$iothub/methods/POST/#`, then up to `response_timeout` for its answer.
    ///
    /// # Errors
    /// [`MethodCallError`]: not online (404103), no answer in time (504101), payload over 128 KB (413001).
    pub async fn invoke_method(
        &self,
        device: &DeviceId,
        call: MethodCall,
    ) -> Result<MethodResponse, MethodCallError> {
        methods::invoke(&self.shared, device, call).await
    }

    /// Pushes a desired-properties patch (body includes `"$version"`); dropped when offline or not subscribed.
    pub fn push_desired(&self, device: &DeviceId, body: serde_json::Value) {
        let Some(version) = body.get("$version").and_then(serde_json::Value::as_u64) else {
            tracing::warn!(device_id = %device, "desired patch without a numeric $version not pushed");
            self.shared.counters.desired_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(slot) = self.shared.table.get(device) else {
            self.shared.counters.desired_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let topic = HubPublish::DesiredPatch { version }.to_topic();
        let payload =
            Bytes::from(serde_json::to_vec(&body).expect("a serde_json::Value always serializes"));
        match slot.push_if_subscribed(FilterKind::Desired, topic, payload) {
            Ok(()) => {}
            Err(PushError::Full) => {
                tracing::debug!(device_id = %device, "outbox full; desired patch dropped");
                self.shared.counters.desired_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(PushError::Closed) => {
                self.shared.counters.desired_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether the device has a live session.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.shared.table.get(device).is_some_and(|slot| slot.is_connected())
    }

    /// Closes the device's live connection (device disabled or re-keyed). Its subscriptions are
    /// kept, like any CleanSession 0 session's, because the Python SDK reconnects by itself and never
    /// re-subscribes; calls waiting for it keep waiting until their timeouts.
    pub fn disconnect(&self, device: &DeviceId) {
        if let Some(conn) = self.shared.table.get(device).and_then(|slot| slot.connection()) {
            conn.close(CloseReason::Evicted);
        }
    }

    /// Closes the device's connection and forgets its session: subscriptions and pending calls
    /// (which fail with 404103 at once). For deleted devices, so a device re-created with the same
    /// id starts clean.
    pub fn forget(&self, device: &DeviceId) {
        if let Some(slot) = self.shared.table.remove(device) {
            if let Some(conn) = slot.connection() {
                conn.close(CloseReason::Evicted);
            }
        }
    }

    /// Number of live sessions.
    pub fn connected_count(&self) -> usize {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Counters since the endpoint started.
    /// Round-trip latency of direct-method calls that devices answered.
    pub fn method_latency(&self) -> &crate::metrics::LatencyHistogram {
        &self.shared.method_latency
    }

    /// Counters of the device endpoint.
    pub fn stats(&self) -> SessionStats {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SessionStats {
            connected: self.connected_count(),
            connections_accepted: load(&counters.connections_accepted),
            connections_refused: load(&counters.connections_refused),
            protocol_violations: load(&counters.protocol_violations),
            telemetry_received: load(&counters.telemetry_received),
            telemetry_dropped: load(&counters.telemetry_dropped),
            method_requests_sent: load(&counters.method_requests_sent),
            desired_dropped: load(&counters.desired_dropped),
        }
    }

    /// Starts forwarding telemetry to a channel of `capacity` messages and returns its receiver;
    /// `None` when a receiver was already taken. Without a receiver telemetry is only counted.
    /// When the channel is full, new messages are dropped and counted (the device is still PUBACK'd).
    pub fn telemetry_receiver(&self, capacity: usize) -> Option<mpsc::Receiver<Telemetry>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.shared.telemetry.set(tx).ok().map(|()| rx)
    }
}

impl Shared {
    /// Hands a telemetry message to the receiver, if any (never blocks).
    pub(crate) fn forward_telemetry(&self, message: Telemetry) {
        self.counters.telemetry_received.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = self.telemetry.get() {
            if tx.try_send(message).is_err() {
                self.counters.telemetry_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Sessions {
    /// The shared state, for the listener.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
