//! hubsim's fleet runner: simulated devices that misbehave on purpose, reproducibly under a seed.
//!
//! - [`profile`] loads and validates a TOML profile ([`profile::load`] → [`profile::Profile`]).
//! - [`plan`] expands it into one [`plan::DevicePlan`] per device ([`profile::Profile::expand`]):
//!   id, tags, initial reported properties, per-device RNG seed and behaviour.
//! - [`behaviour`] holds the pure decisions (method answers, reboots, desired acks, churn,
//!   outages, telemetry); [`distribution`] and [`template`] are their building blocks.
//!
//! Every random choice a device makes comes from a ChaCha8 RNG seeded by `(seed, device index)`,
//! with a separate stream per concern, so the same profile and seed give the same devices,
//! offline at the same moments, failing the same calls with the same codes.
//!
//! This crate does not read argv, env or signals, does not print and does not raise process
//! limits; the `cli` crate does those and calls in here.

pub mod behaviour;
pub mod distribution;
pub mod plan;
pub mod profile;
pub mod template;

pub use plan::{DevicePlan, Shard};
pub use profile::{load, Profile, ProfileError};
