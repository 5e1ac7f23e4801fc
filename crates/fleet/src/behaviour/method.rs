//! Direct-method behaviour: latency, error probability, never answering, response template, and reboot.
//!
//! [`MethodBehaviour::decide`] is a pure function of an RNG (the plan gives it one stream per
//! method name and call index) and the template variables; the runner only carries the decision out.
//! Draw order is fixed — no-answer, error, latency, payload — so adding a profile field never
//! reshuffles earlier draws. This module does no I/O and knows nothing about MQTT.

use std::time::Duration;

use rand::{Rng, RngCore};
use serde::Deserialize;
use serde_json::Value;

use crate::behaviour::reboot::{RebootBehaviour, RebootSpec};
use crate::distribution::{Distribution, DistributionSpec};
use crate::profile::check_probability;
use crate::template::{PayloadTemplate, Vars};

/// How a device answers one method name (or every unnamed method, for `default`).
#[derive(Debug, Clone)]
pub struct MethodBehaviour {
    /// Time from receiving the request to publishing the answer.
    pub latency: Distribution,
    /// Probability (0..=1) of never answering.
    pub no_answer: f64,
    /// The simulated failure, if any.
    pub error: Option<MethodFailure>,
    /// Status of a successful answer.
    pub status: i32,
    /// Payload of a successful answer.
    pub response: PayloadTemplate,
    /// When set, a successful answer is followed by a reboot.
    pub reboot: Option<RebootBehaviour>,
}

/// A simulated method failure.
#[derive(Debug, Clone)]
pub struct MethodFailure {
    /// Probability (0..=1) that a call fails.
    pub probability: f64,
    /// The status the device answers with.
    pub status: i32,
    /// The payload the device answers with.
    pub payload: PayloadTemplate,
}

/// What a device does with one method call.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodDecision {
    /// The device swallows the request; the hub times out.
    NoAnswer,
    /// The device answers after `latency`.
    Answer {
        /// Delay before the answer is published.
        latency: Duration,
        /// The method status.
        status: i32,
        /// The answer payload.
        payload: Value,
        /// Whether this is a simulated failure.
        failed: bool,
        /// Down time of the reboot that follows the answer, if any.
        reboot_for: Option<Duration>,
    },
}

/// The profile form of a method behaviour (`[group.methods.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    latency: Option<DistributionSpec>,
    no_answer: Option<f64>,
    error: Option<FailureSpec>,
    status: Option<i64>,
    response: Option<toml::Value>,
    reboot: Option<RebootSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureSpec {
    probability: f64,
    status: i64,
    payload: Option<toml::Value>,
}

impl MethodBehaviour {
    /// Answers every call at once with status 200 and a `null` payload (used when no `default` is given).
    pub fn immediate_ok() -> Self {
        MethodBehaviour {
            latency: Distribution::zero(),
            no_answer: 0.0,
            error: None,
            status: 200,
            response: PayloadTemplate::null(),
            reboot: None,
        }
    }

    /// Decides one call. `rng` must be the stream for this (method, call index).
    pub fn decide(&self, rng: &mut dyn RngCore, vars: &dyn Vars) -> MethodDecision {
        let silent = rng.gen_bool(self.no_answer);
        let failure = match &self.error {
            Some(err) => rng.gen_bool(err.probability).then_some(err),
            None => None,
        };
        let latency = self.latency.sample(rng);
        if silent {
            return MethodDecision::NoAnswer;
        }
        match failure {
            Some(err) => MethodDecision::Answer {
                latency,
                status: err.status,
                payload: err.payload.render(vars, rng),
                failed: true,
                reboot_for: None,
            },
            None => MethodDecision::Answer {
                latency,
                status: self.status,
                payload: self.response.render(vars, rng),
                failed: false,
                reboot_for: self.reboot.as_ref().map(|r| r.down_for),
            },
        }
    }
}

impl MethodSpec {
    /// Validates the spec; `known` are the variable names templates may use.
    ///
    /// # Errors
    /// A lowercase sentence naming the bad field.
    pub fn resolve(&self, known: &[&str]) -> Result<MethodBehaviour, String> {
        let this = self;
        let latency = match &this.latency {
            Some(dist) => dist.resolve().map_err(|e| format!("latency: {e}"))?,
            None => Distribution::zero(),
        };
        let no_answer = check_probability("no_answer", this.no_answer.unwrap_or(0.0))?;
        let error = match &this.error {
            Some(err) => Some(MethodFailure {
                probability: check_probability("error.probability", err.probability)?,
                status: check_status("error.status", err.status)?,
                payload: payload(err.payload.as_ref(), known)
                    .map_err(|e| format!("error.payload: {e}"))?,
            }),
            None => None,
        };
        Ok(MethodBehaviour {
            latency,
            no_answer,
            error,
            status: check_status("status", this.status.unwrap_or(200))?,
            response: payload(this.response.as_ref(), known)
                .map_err(|e| format!("response: {e}"))?,
            reboot: this.reboot.as_ref().map(RebootSpec::resolve).transpose()?,
        })
    }
}

fn payload(value: Option<&toml::Value>, known: &[&str]) -> Result<PayloadTemplate, String> {
    let Some(value) = value else { return Ok(PayloadTemplate::null()) };
    let template = PayloadTemplate::from_toml(value).map_err(|e| e.to_string())?;
    template.check_variables(known).map_err(|e| e.to_string())?;
    Ok(template)
}

fn check_status(name: &str, status: i64) -> Result<i32, String> {
    if !(100..=999).contains(&status) {
        return Err(format!("{name} must be a status between 100 and 999, got {status}"));
    }
    Ok(status as i32)
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn no_vars(_: &str) -> Option<Value> {
        None
    }

    /// Resolves `spec`, decides 1000 calls with streams 0..1000 and summarises them.
    fn check(spec: &str, expect: Expect) {
        let parsed: MethodSpec = match toml::from_str::<MethodsTable>(&format!("m = {spec}")) {
            Ok(t) => t.m,
            Err(err) => return expect.assert_eq(&format!("parse error: {}", err.message())),
        };
        let behaviour = match parsed.resolve(&["method"]) {
            Ok(b) => b,
            Err(err) => return expect.assert_eq(&format!("invalid: {err}")),
        };
        let (mut silent, mut failed, mut ok, mut reboots, mut total_ms) = (0, 0, 0, 0, 0u128);
        let mut first = None;
        for call in 0..1000u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            rng.set_stream(call);
            let decision = behaviour.decide(&mut rng, &no_vars);
            first.get_or_insert_with(|| format!("{decision:?}"));
            match decision {
                MethodDecision::NoAnswer => silent += 1,
                MethodDecision::Answer { latency, failed: f, reboot_for, .. } => {
                    total_ms += latency.as_millis();
                    if f {
                        failed += 1
                    } else {
                        ok += 1
                    }
                    reboots += usize::from(reboot_for.is_some());
                }
            }
        }
        let answered = (ok + failed).max(1);
        let summary = format!(
            "ok={ok} failed={failed} silent={silent} reboots={reboots} mean_ms={}\nfirst: {}",
            total_ms / answered as u128,
            first.unwrap_or_default()
        );
        expect.assert_eq(&summary);
    }

    #[derive(Deserialize)]
    struct MethodsTable {
        m: MethodSpec,
    }

    #[test]
    fn fixed_latency_answer() {
        check(
            r#"{ latency = { dist = "fixed", ms = 25 }, response = { method = "{method}" } }"#,
            expect![[r#"
                ok=1000 failed=0 silent=0 reboots=0 mean_ms=25
                first: Answer { latency: 25ms, status: 200, payload: Object {"method": Null}, failed: false, reboot_for: None }"#]],
        );
    }

    #[test]
    fn errors_and_silence_follow_their_probabilities() {
        check(
            r#"{ no_answer = 0.1, error = { probability = 0.2, status = 503, payload = { code = "busy" } } }"#,
            expect![[r#"
                ok=720 failed=179 silent=101 reboots=0 mean_ms=0
                first: Answer { latency: 0ns, status: 200, payload: Null, failed: false, reboot_for: None }"#]],
        );
    }

    #[test]
    fn reboot_follows_a_successful_answer() {
        check(
            r#"{ reboot = { down_for_s = 20 }, error = { probability = 0.5, status = 500 } }"#,
            expect![[r#"
                ok=497 failed=503 silent=0 reboots=497 mean_ms=0
                first: Answer { latency: 0ns, status: 200, payload: Null, failed: false, reboot_for: Some(20s) }"#]],
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        check(
            r#"{ no_answer = 1.5 }"#,
            expect!["invalid: no_answer must be a probability between 0 and 1, got 1.5"],
        );
        check(
            r#"{ status = 42 }"#,
            expect!["invalid: status must be a status between 100 and 999, got 42"],
        );
        check(
            r#"{ response = "{nope}" }"#,
            expect!["invalid: response: unknown variable {nope} (known here: method)"],
        );
        check(r#"{ latency = 5 }"#, expect!["parse error: invalid type: integer `5`, expected internally tagged enum DistributionSpec"]);
        check(r#"{ tyop = 5 }"#, expect!["parse error: unknown field `tyop`, expected one of `latency`, `no_answer`, `error`, `status`, `response`, `reboot`"]);
    }
}
