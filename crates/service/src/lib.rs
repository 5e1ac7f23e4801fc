//! A typed async client of the Azure IoT Hub service REST API, for hubsim's own hub and for real hubs.
//!
//! Build a [`ServiceConfig`] from a service connection string (`HostName=..;SharedAccessKeyName=..;
//! SharedAccessKey=..`), optionally point it at another base URL (the local hub's plain HTTP listener)
//! or trust a CA PEM, then make a [`ServiceClient`]. Every call signs a fresh SAS token, sends
//! `api-version=2021-04-12`, and turns IoT Hub's error responses into [`ServiceError::Hub`] carrying the
//! IoT Hub error code ([`HubError`]).
//!
//! Operations, one module each: devices (create/update/get/list/delete, plus bounded-concurrency bulk
//! helpers), twins (get/patch/replace), direct methods, device queries with paging ([`Page`]), and
//! jobs v2 (create/get/cancel/list with paging). Request and response JSON types are the `protocol`
//! crate's. Not covered: modules, cloud-to-device messages (AMQP), import/export jobs, retries.

mod client;
mod devices;
mod error;
mod jobs;
mod methods;
mod query;
mod twins;

pub use client::{ServiceClient, ServiceConfig, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TOKEN_TTL};
pub use devices::DeviceSpec;
pub use error::{HubError, ServiceError};
pub use jobs::JobFilter;
pub use query::Page;
