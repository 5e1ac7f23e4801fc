//! The Azure IoT Hub wire contract, shared by the hub and the device client.
//!
//! Everything here is pure: no I/O, no tokio, no clock reads (callers pass `now`).
//! It holds the MQTT device topics and their property bags ([`topic`], [`property_bag`]),
//! SAS tokens and connection strings ([`sas`], [`connection_string`]), MQTT usernames ([`username`]),
//! twin documents with merge-patch and limits ([`twin`]), the JSON shapes of the service REST API
//! ([`device`], [`method`], [`job`], [`query`]) and IoT Hub's error codes and bodies ([`error`]).
//!
//! The reference for every rule is `docs/iothub-protocol.md` in the shared material; the official
//! Azure SDKs are the final word.

pub mod connection_string;
pub mod device;
pub mod error;
pub mod ids;
pub mod job;
pub mod method;
pub mod property_bag;
pub mod query;
pub mod sas;
pub mod time;
pub mod topic;
pub mod twin;
pub mod username;

/// The api-version the service SDKs send and that hubsim's own clients use.
pub const API_VERSION: &str = "2021-04-12";

/// api-versions the hub accepts on REST calls (older SDKs and tools still send these).
pub const ACCEPTED_API_VERSIONS: &[&str] = &[
    "2018-06-30",
    "2019-03-30",
    "2019-10-01",
    "2020-03-13",
    "2020-05-31-preview",
    "2020-09-30",
    "2021-04-12",
];
