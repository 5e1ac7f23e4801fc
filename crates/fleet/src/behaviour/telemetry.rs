//! Optional telemetry: a message every `interval_s`, built from a payload template.
//!
//! Each device starts at a random phase within the first interval (drawn from its telemetry stream)
//! so a fleet does not publish in lockstep. The payload template sees the device variables plus
//! `seq` (0, 1, 2, …). This module only describes what to send and when; the runner publishes.

use std::time::Duration;

use rand::{Rng, RngCore};
use serde::Deserialize;

use crate::template::PayloadTemplate;

/// The shortest interval a profile may ask for.
const MIN_INTERVAL_S: f64 = 0.01;

/// A group's telemetry.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Time between two messages of one device.
    pub interval: Duration,
    /// The message body.
    pub payload: PayloadTemplate,
}

/// The profile form (`[group.telemetry]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    interval_s: f64,
    payload: Option<toml::Value>,
}

impl TelemetrySpec {
    /// Validates the spec; `known` are the variable names the payload may use.
    ///
    /// # Errors
    /// A lowercase sentence naming the bad field.
    pub fn resolve(&self, known: &[&str]) -> Result<Telemetry, String> {
        if !self.interval_s.is_finite() || !(MIN_INTERVAL_S..=86_400.0).contains(&self.interval_s) {
            return Err(format!(
                "interval_s must be between {MIN_INTERVAL_S} and 86400, got {}",
                self.interval_s
            ));
        }
        let payload = match &self.payload {
            Some(value) => {
                let template =
                    PayloadTemplate::from_toml(value).map_err(|e| format!("payload: {e}"))?;
                template.check_variables(known).map_err(|e| format!("payload: {e}"))?;
                template
            }
            None => PayloadTemplate::Object(Vec::new()),
        };
        Ok(Telemetry { interval: Duration::from_secs_f64(self.interval_s), payload })
    }
}

impl Telemetry {
    /// The offset of a device's first message within the first interval.
    pub fn phase(&self, rng: &mut dyn RngCore) -> Duration {
        Duration::from_micros(rng.gen_range(0..self.interval.as_micros().max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn payload_renders_with_seq_and_phase_is_within_interval() {
        let spec: TelemetrySpec = toml::from_str(
            "interval_s = 10\npayload = { temp = \"{uniform:18:26}\", seq = \"{seq}\" }",
        )
        .unwrap();
        let t = spec.resolve(&["seq"]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let phase = t.phase(&mut rng);
        assert!(phase < Duration::from_secs(10));
        let vars = |name: &str| (name == "seq").then(|| json!(3));
        let body: Value = t.payload.render(&vars, &mut rng);
        expect![[r#"{"seq":3,"temp":23.72}"#]].assert_eq(&body.to_string());
    }

    #[test]
    fn bad_interval_and_variables_are_rejected() {
        let spec: TelemetrySpec = toml::from_str("interval_s = 0").unwrap();
        expect!["interval_s must be between 0.01 and 86400, got 0"]
            .assert_eq(&spec.resolve(&[]).unwrap_err());
        let spec: TelemetrySpec =
            toml::from_str("interval_s = 1\npayload = { x = \"{y}\" }").unwrap();
        expect!["payload: unknown variable {y} (known here: seq)"]
            .assert_eq(&spec.resolve(&["seq"]).unwrap_err());
    }
}
