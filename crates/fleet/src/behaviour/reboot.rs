//! The built-in `reboot` behaviour: answer, disconnect, stay down, reconnect, report `lastReboot`.
//!
//! A method whose profile table has `reboot = { down_for_s = N }` answers like any other method
//! (its latency, errors and silence still apply); only a successful answer triggers the reboot.
//! This module holds the configuration and the reported patch; the runner does the disconnecting.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest reboot a profile may ask for (one day).
const MAX_DOWN_FOR_S: f64 = 86_400.0;

/// How a reboot behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct RebootBehaviour {
    /// How long the device stays disconnected after answering.
    pub down_for: Duration,
}

/// The profile form: `reboot = { down_for_s = 20 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootSpec {
    down_for_s: f64,
}

impl RebootSpec {
    /// Validates the down time.
    ///
    /// # Errors
    /// A lowercase sentence when `down_for_s` is negative, not finite, or over a day.
    pub fn resolve(&self) -> Result<RebootBehaviour, String> {
        if !self.down_for_s.is_finite() || !(0.0..=MAX_DOWN_FOR_S).contains(&self.down_for_s) {
            return Err(format!(
                "reboot.down_for_s must be between 0 and {MAX_DOWN_FOR_S} seconds, got {}",
                self.down_for_s
            ));
        }
        Ok(RebootBehaviour { down_for: Duration::from_secs_f64(self.down_for_s) })
    }
}

/// The reported patch a device sends once it is back: `{"lastReboot": "<RFC 3339 time>"}`.
pub fn last_reboot_patch(rebooted_at: DateTime<Utc>) -> Value {
    json!({ "lastReboot": rebooted_at.to_rfc3339_opts(SecondsFormat::Millis, true) })
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn patch_names_the_reboot_time() {
        let at =
            DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z").unwrap().with_timezone(&Utc);
        expect![[r#"{"lastReboot":"2026-01-02T03:04:05.678Z"}"#]]
            .assert_eq(&last_reboot_patch(at).to_string());
    }

    #[test]
    fn down_time_is_validated() {
        let ok = RebootSpec { down_for_s: 1.5 }.resolve().unwrap();
        assert_eq!(ok.down_for, Duration::from_millis(1500));
        expect!["reboot.down_for_s must be between 0 and 86400 seconds, got -1"]
            .assert_eq(&RebootSpec { down_for_s: -1.0 }.resolve().unwrap_err());
    }
}
