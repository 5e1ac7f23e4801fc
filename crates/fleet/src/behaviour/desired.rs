//! Desired-property behaviour: acknowledge a desired patch into reported after a latency, or fail to.
//!
//! An acknowledgement is a reported patch that copies every desired key of the patch (except
//! `$version`) and sets `desiredVersionAcked` to the patch's `$version`, so a report can check which
//! desired version each device took. A failure sends nothing: the reported side stays stale, as it
//! does when a real device cannot apply a setting. The decision is a pure function of the RNG stream
//! that the plan derives from the desired `$version`, so it does not depend on arrival order.

use std::time::Duration;

use rand::{Rng, RngCore};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::distribution::{Distribution, DistributionSpec};
use crate::profile::check_probability;

/// How a device treats desired-property patches.
#[derive(Debug, Clone)]
pub struct DesiredBehaviour {
    /// Delay before the acknowledgement is sent.
    pub latency: Distribution,
    /// Probability (0..=1) that a patch is never acknowledged.
    pub failure_probability: f64,
}

/// What a device does with one desired patch.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredDecision {
    /// Report the patch back after `latency`.
    Ack {
        /// Delay before the reported patch.
        latency: Duration,
    },
    /// Never acknowledge this version.
    Fail,
}

/// The profile form (`[group.desired]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredSpec {
    latency: Option<DistributionSpec>,
    failure_probability: Option<f64>,
}

impl DesiredSpec {
    /// Validates the spec.
    ///
    /// # Errors
    /// A lowercase sentence naming the bad field.
    pub fn resolve(&self) -> Result<DesiredBehaviour, String> {
        let latency = match &self.latency {
            Some(dist) => dist.resolve().map_err(|e| format!("latency: {e}"))?,
            None => Distribution::zero(),
        };
        let failure_probability =
            check_probability("failure_probability", self.failure_probability.unwrap_or(0.0))?;
        Ok(DesiredBehaviour { latency, failure_probability })
    }
}

impl DesiredBehaviour {
    /// Decides one patch. `rng` must be the stream for this desired `$version`.
    pub fn decide(&self, rng: &mut dyn RngCore) -> DesiredDecision {
        let fail = rng.gen_bool(self.failure_probability);
        let latency = self.latency.sample(rng);
        if fail {
            DesiredDecision::Fail
        } else {
            DesiredDecision::Ack { latency }
        }
    }
}

/// The reported patch that acknowledges `desired_patch` (see the module docs).
pub fn ack_patch(desired_patch: &Value) -> Value {
    let mut reported = Map::new();
    if let Value::Object(fields) = desired_patch {
        for (key, value) in fields.iter().filter(|(k, _)| !k.starts_with('$')) {
            reported.insert(key.clone(), value.clone());
        }
        if let Some(version) = fields.get("$version") {
            reported.insert("desiredVersionAcked".to_owned(), version.clone());
        }
    }
    Value::Object(reported)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    use super::*;

    fn behaviour(failure: f64) -> DesiredBehaviour {
        let spec: DesiredSpec = toml::from_str(&format!(
            "latency = {{ dist = \"uniform\", min_ms = 100, max_ms = 200 }}\nfailure_probability = {failure}"
        ))
        .unwrap();
        spec.resolve().unwrap()
    }

    #[test]
    fn acks_after_latency_with_failures() {
        let b = behaviour(0.25);
        let decisions: Vec<DesiredDecision> = (0..400u64)
            .map(|version| {
                let mut rng = ChaCha8Rng::seed_from_u64(9);
                rng.set_stream(version);
                b.decide(&mut rng)
            })
            .collect();
        let failed = decisions.iter().filter(|d| **d == DesiredDecision::Fail).count();
        let in_range = decisions.iter().all(|d| match d {
            DesiredDecision::Ack { latency } => (100..=200).contains(&latency.as_millis()),
            DesiredDecision::Fail => true,
        });
        expect!["failed=106 latencies_in_range=true first=Fail"].assert_eq(&format!(
            "failed={failed} latencies_in_range={in_range} first={:?}",
            decisions[0]
        ));
    }

    #[test]
    fn never_fails_at_zero_and_always_at_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..100).all(|_| behaviour(0.0).decide(&mut rng) != DesiredDecision::Fail));
        assert!((0..100).all(|_| behaviour(1.0).decide(&mut rng) == DesiredDecision::Fail));
    }

    #[test]
    fn ack_copies_keys_and_version() {
        let patch = json!({"interval": 30, "mode": {"eco": true}, "$version": 7});
        expect![[r#"{"interval":30,"mode":{"eco":true},"desiredVersionAcked":7}"#]]
            .assert_eq(&ack_patch(&patch).to_string());
    }

    #[test]
    fn bad_probability_is_rejected() {
        let spec: DesiredSpec = toml::from_str("failure_probability = -0.1").unwrap();
        expect!["failure_probability must be a probability between 0 and 1, got -0.1"]
            .assert_eq(&spec.resolve().unwrap_err());
    }
}
