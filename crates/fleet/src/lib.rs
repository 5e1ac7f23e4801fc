//! hubsim's fleet runner: simulated devices that misbehave on purpose, reproducibly under a seed.
//!
//! - [`profile`] loads and validates a TOML profile ([`profile::load`] → [`profile::Profile`]).
//! - [`plan`] expands it into one [`plan::DevicePlan`] per device ([`profile::Profile::expand`]):
//!   id, tags, initial reported properties, per-device RNG seed and behaviour.
//! - [`behaviour`] holds the pure decisions (method answers, reboots, desired acks, churn,
//!   outages, telemetry); [`distribution`] and [`template`] are their building blocks.
//! - [`run`] registers the devices ([`registration`]), connects them at the ramp rate with
//!   `device::Client`, carries out their behaviours, counts into [`FleetStats`] and writes ground
//!   truth ([`record`]); [`limits`] says which process limit caps a run.
//!
//! ```no_run
//! # async fn example(service: protocol::connection_string::ServiceConnectionString, ca: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let profile = fleet::load(std::path::Path::new("fleet-profiles/building-43.toml"))?;
//! let plans = profile.expand(42, fleet::Shard::ALL)?;
//! let mut cfg = fleet::FleetConfig::new(fleet::Target::Registry { service, rest_url: None }, profile.connect_rate);
//! cfg.ca_pem = Some(ca);
//! let stats = Arc::new(fleet::FleetStats::default());
//! let report = fleet::run(cfg, plans, tokio_util::sync::CancellationToken::new(), stats.clone()).await?;
//! # Ok(()) }
//! ```
//!
//! Every random choice a device makes comes from a ChaCha8 RNG seeded by `(seed, device index)`,
//! with a separate stream per concern, so the same profile and seed give the same devices,
//! offline at the same moments, failing the same calls with the same codes.
//!
//! This crate does not read argv, env or signals, does not print and does not raise process
//! limits; the `cli` crate does those and calls in here.

pub mod behaviour;
pub mod distribution;
pub mod limits;
pub mod plan;
pub mod profile;
pub mod record;
pub mod registration;
mod runner;
pub mod stats;
pub mod template;

pub use plan::{DevicePlan, Shard};
pub use profile::{load, Profile, ProfileError};
pub use runner::{run, FleetConfig, FleetError, FleetReport, Target, MQTT_TLS_PORT};
pub use stats::{FleetStats, Phase, StatsSnapshot};
