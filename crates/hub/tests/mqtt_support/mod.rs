//! Compatibility shim for the `jobs_*` tests, which still declare `mod mqtt_support;`: the raw MQTT
//! client and credential helpers now live in `test-support`; this only re-exports them under the
//! names those tests use. Delete it once `jobs_support` imports `test_support` directly.

#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "each jobs test binary uses a different subset"
)]

pub use test_support::device_id as device;
pub use test_support::sas::{device_token as token, username};
pub use test_support::RawClient;

/// Polls `condition` until it holds, for up to [`test_support::WAIT`].
pub async fn wait_for(what: &str, condition: impl FnMut() -> bool) {
    test_support::wait_for(what, test_support::WAIT, condition).await;
}
