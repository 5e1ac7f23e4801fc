//! An async Azure IoT Hub device client: MQTT 3.1.1 over TCP or TLS, cheap enough to run tens of
//! thousands of sessions in one process.
//!
//! [`Client`] is a cloneable handle; [`Driver`] is the one task per device that owns the connection,
//! reconnects with capped exponential backoff and seeded jitter, renews the SAS token before it expires
//! and re-subscribes. Features: direct methods ([`Client::on_method`]), twin GET ([`Client::get_twin`]),
//! reported patches ([`Client::patch_reported`]), desired patches ([`Client::desired_patches`]), and
//! telemetry ([`Client::send_telemetry`]). Configuration is [`DeviceConfig`]; failures are [`Error`].
//!
//! It deliberately does not do cloud-to-device messages, module inputs, X.509 auth, WebSockets or
//! file upload. Only this crate names rumqttc, and only its packet codec (see `mqtt`); no rumqttc type
//! is part of the API.
//!
//! ```no_run
//! # async fn example() -> Result<(), device::Error> {
//! use device::{handler, Client, DeviceConfig, MethodAnswer};
//! use tokio_util::{sync::CancellationToken, task::TaskTracker};
//!
//! let cfg = DeviceConfig::from_connection_string(
//!     "HostName=localhost;DeviceId=d1;SharedAccessKey=a2V5",
//!     "127.0.0.1:1883".parse().expect("a socket address"),
//! )?;
//! let tracker = TaskTracker::new();
//! let client = Client::connect(cfg, &tracker, CancellationToken::new()).await?;
//! client.on_method("reboot", handler(|req| async move { MethodAnswer::ok(req.payload) }));
//! let version = client.patch_reported(&serde_json::json!({ "firmware": "1.2.3" })).await?;
//! let twin = client.get_twin().await?;
//! assert_eq!(twin.reported_version, version);
//! client.disconnect().await;
//! # Ok(()) }
//! ```

mod client;
mod config;
mod driver;
mod error;
mod method;
mod mqtt;
mod session;
mod transport;
mod twin;

pub use client::{Client, ClientStats, ConnectionState, DesiredPatches, Telemetry};
pub use config::{
    Backoff, DeviceConfig, TlsConfig, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_SAS_RENEWAL_MARGIN, DEFAULT_SAS_TTL,
};
pub use driver::Driver;
pub use error::{ConfigError, Error};
pub use method::{handler, MethodAnswer, MethodHandler, MethodRequest};
pub use twin::{DesiredPatch, TwinView};
