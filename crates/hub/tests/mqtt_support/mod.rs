//! Compatibility shim for the `jobs_*` tests, which still declare `mod mqtt_support;`: the raw MQTT
//! client and credential helpers now live in `test-support`; this only re-exports them under the
//! names those tests use. Delete it once `jobs_support` imports `test_support` directly.

pub use test_support::device_id as device;
pub use test_support::sas::{device_token as token, username};
pub use test_support::RawClient;
