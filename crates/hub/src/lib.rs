//! The hubsim hub: a local Azure IoT Hub.
//!
//! Devices speak MQTT 3.1.1 to [`mqtt`] (built on rumqttc's codec, one task per connection);
//! back ends speak REST to [`api`] (axum). State lives in [`registry`] (devices and twins) and
//! [`jobs`] (jobs v2 engine), both durable through [`store`] (SQLite in WAL mode, group commit).
//! [`Hub::spawn`] wires them together on caller-supplied listeners and a cancellation token, with
//! TLS material from [`tls`] and settings from [`config`].
//! The hub reads no argv, environment or signals and installs no tracing subscriber: the CLI does.

pub mod api;
pub mod broker;
pub mod config;
pub mod events;
mod hub;
pub mod jobs;
pub mod metrics;
pub mod mqtt;
pub mod registry;
pub mod store;
pub mod tls;

pub use config::HubConfig;
pub use hub::{Hub, HubAddrs, HubError, HubHandle, HubListeners, DATABASE_FILE, OWNER_KEY_FILE};
