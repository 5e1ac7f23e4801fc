//! Dev-only scaffolding shared by the workspace's integration tests (style guide §9).
//!
//! - [`spawn_hub`] / [`spawn_hub_with`] start the real [`hub::Hub::spawn`] on `127.0.0.1:0`
//!   listeners (plain MQTT, MQTT/TLS, plain HTTP, HTTPS) with its data in a fresh temp dir and
//!   return a [`TestHub`]: its addresses, service connection string, owner key and CA, REST
//!   helpers signed with a service SAS ([`Reply`]), device registration, [`TestHub::restart`] on
//!   the same data dir, and [`TestHub::stop`] that waits for the drain. [`spawn_hub_in`] uses a
//!   data dir the test owns, for tests that kill a hub and start another on the same data.
//! - [`RawClient`] is a raw MQTT 3.1.1 client on rumqttc's `mqttbytes::v4` codec: it sends exactly
//!   the packets (or bytes) a test gives it and shows exactly what the hub answers.
//! - [`sas`] builds service and device SAS tokens and MQTT usernames through `protocol`.
//! - [`wait_for`] and [`wait_until`] poll a condition with a deadline; tests never sleep to wait.
//! - [`jobs`] adds jobs v2 REST helpers to [`TestHub`] and job-body fixtures; [`sim`] runs simulated
//!   devices (answer methods, record desired patches) on raw MQTT clients; [`events`] reads the
//!   back-end event stream with a plain MQTT subscriber.
//!
//! Deliberately not here: assertions about hub behaviour (they belong to the tests), anything a
//! production crate may use (this crate is only ever a `[dev-dependencies]` entry), and scripted
//! fake hubs (the device crate's tests keep their own scripted peer).
//!
//! Failures panic with a message saying what was expected: this is test scaffolding, and a broken
//! setup step must fail the test that uses it.

pub mod events;
mod hub;
pub mod jobs;
mod mqtt;
mod rest;
pub mod sas;
pub mod sim;
mod wait;

use std::time::Duration;

pub use crate::hub::{spawn_hub, spawn_hub_in, spawn_hub_with, DeviceKeys, TestHub};
pub use crate::mqtt::{rid, RawClient};
pub use crate::rest::Reply;
pub use crate::wait::{wait_for, wait_until};

/// The host name a [`TestHub`] uses unless the config tweak changes it.
pub const HOST: &str = "hubsim-test.azure-devices.net";
/// The REST `api-version` the helpers send.
pub const API_VERSION: &str = "2021-04-12";
/// How long a helper waits for anything (a packet, a close, a drain) before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// `id` as a [`protocol::ids::DeviceId`]; panics on an id the test got wrong.
pub fn device_id(id: &str) -> protocol::ids::DeviceId {
    protocol::ids::DeviceId::new(id).expect("the test uses a valid device id")
}
