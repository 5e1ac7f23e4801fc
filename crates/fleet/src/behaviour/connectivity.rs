//! Connectivity: devices that never connect, churn, scheduled outages and per-message network delay.
//!
//! A device's [`Schedule`] says whether it should be online at a time `t` since the run started, and
//! until when that holds. It is a pure function of the device's RNG streams (and so of `(seed, device
//! index)`) and `t`: two runs with the same seed take the same devices offline at the same moments,
//! whatever the interleaving of events. Churn alternates exponentially distributed online and offline
//! periods (starting in the steady state); an outage takes a device offline when the device's draw for
//! that outage falls under the outage's `share`. This module does no I/O and reads no clock.

use std::time::Duration;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Exp1};
use serde::Deserialize;

use crate::profile::check_probability;

/// The longest time value a profile may use (30 days), which keeps every `Duration` finite.
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

/// A group's connectivity behaviour.
#[derive(Debug, Clone, Default)]
pub struct Connectivity {
    /// Probability that a device never connects at all.
    pub never_connects: f64,
    /// Alternating online/offline periods, if any.
    pub churn: Option<Churn>,
    /// Scheduled outages.
    pub outages: Vec<Outage>,
    /// Delay added before every message the device publishes.
    pub network: Network,
}

/// Churn: mean online and offline durations (exponentially distributed).
#[derive(Debug, Clone, PartialEq)]
pub struct Churn {
    /// Mean time connected.
    pub mean_online: Duration,
    /// Mean time disconnected.
    pub mean_offline: Duration,
}

/// A scheduled outage: from `at` for `duration`, for a `share` of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// Start, from the beginning of the run.
    pub at: Duration,
    /// Length.
    pub duration: Duration,
    /// Fraction of the group's devices affected.
    pub share: f64,
}

/// Per-message network latency and jitter (uniform in `0..=jitter`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    /// Fixed part of the delay.
    pub latency: Duration,
    /// Upper bound of the random part.
    pub jitter: Duration,
}

/// Whether a device should be online now, and until when that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Whether the device should be connected.
    pub online: bool,
    /// When to look again (`None`: this never changes).
    pub until: Option<Duration>,
}

/// One device's connectivity timeline.
#[derive(Debug, Clone)]
pub struct Schedule {
    never_connects: bool,
    churn: Option<ChurnTimeline>,
    outages: Vec<(Duration, Duration)>,
}

#[derive(Debug, Clone)]
struct ChurnTimeline {
    churn: Churn,
    initial: ChaCha8Rng,
    rng: ChaCha8Rng,
    online: bool,
    start: Duration,
    end: Duration,
}

/// The profile form (`[group.connectivity]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectivitySpec {
    never_connects: Option<f64>,
    churn: Option<ChurnSpec>,
    #[serde(default)]
    outages: Vec<OutageSpec>,
    network: Option<NetworkSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChurnSpec {
    mean_online_s: f64,
    mean_offline_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageSpec {
    at_s: f64,
    for_s: f64,
    share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSpec {
    latency_ms: f64,
    #[serde(default)]
    jitter_ms: f64,
}

impl ConnectivitySpec {
    /// Validates the spec.
    ///
    /// # Errors
    /// A lowercase sentence naming the bad field.
    pub fn resolve(&self) -> Result<Connectivity, String> {
        let never_connects =
            check_probability("never_connects", self.never_connects.unwrap_or(0.0))?;
        let churn = match &self.churn {
            Some(c) => Some(Churn {
                mean_online: seconds("churn.mean_online_s", c.mean_online_s, true)?,
                mean_offline: seconds("churn.mean_offline_s", c.mean_offline_s, true)?,
            }),
            None => None,
        };
        let outages = self
            .outages
            .iter()
            .enumerate()
            .map(|(i, o)| {
                Ok(Outage {
                    at: seconds(&format!("outages[{i}].at_s"), o.at_s, false)?,
                    duration: seconds(&format!("outages[{i}].for_s"), o.for_s, true)?,
                    share: check_probability(&format!("outages[{i}].share"), o.share)?,
                })
            })
            .collect::<Result<_, String>>()?;
        let network = match &self.network {
            Some(n) => Network {
                latency: seconds("network.latency_ms", n.latency_ms / 1000.0, false)?,
                jitter: seconds("network.jitter_ms", n.jitter_ms / 1000.0, false)?,
            },
            None => Network::default(),
        };
        Ok(Connectivity { never_connects, churn, outages, network })
    }
}

impl Connectivity {
    /// Builds a device's schedule from its presence stream (never-connects and outage draws, in that
    /// order) and its churn stream.
    pub fn schedule(&self, presence_rng: &mut dyn RngCore, churn_rng: ChaCha8Rng) -> Schedule {
        let never_connects = presence_rng.gen_bool(self.never_connects);
        let outages = self
            .outages
            .iter()
            .filter(|o| presence_rng.gen_bool(o.share))
            .map(|o| (o.at, o.at.saturating_add(o.duration)))
            .collect();
        let churn = self.churn.clone().map(|churn| ChurnTimeline::new(churn, churn_rng));
        Schedule { never_connects, churn, outages }
    }
}

impl Network {
    /// The delay before one outgoing message.
    pub fn delay(&self, rng: &mut dyn RngCore) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        self.latency + Duration::from_micros(rng.gen_range(0..=self.jitter.as_micros() as u64))
    }
}

impl Schedule {
    /// Whether this device never connects.
    pub fn never_connects(&self) -> bool {
        self.never_connects
    }

    /// The outages `(start, end)` that affect this device.
    pub fn outages(&self) -> &[(Duration, Duration)] {
        &self.outages
    }

    /// Presence at `t` since the start of the run. Cheapest when `t` never decreases between calls.
    pub fn presence_at(&mut self, t: Duration) -> Presence {
        if self.never_connects {
            return Presence { online: false, until: None };
        }
        let (mut online, mut until) = match &mut self.churn {
            Some(timeline) => timeline.at(t),
            None => (true, None),
        };
        for &(start, end) in &self.outages {
            if (start..end).contains(&t) {
                online = false;
                until = Some(until.map_or(end, |u| u.min(end)));
            } else if start > t {
                until = Some(until.map_or(start, |u| u.min(start)));
            }
        }
        Presence { online, until }
    }
}

impl ChurnTimeline {
    fn new(churn: Churn, rng: ChaCha8Rng) -> Self {
        let mut timeline = ChurnTimeline {
            churn,
            initial: rng.clone(),
            rng,
            online: true,
            start: Duration::ZERO,
            end: Duration::ZERO,
        };
        timeline.reset();
        timeline
    }

    fn reset(&mut self) {
        self.rng = self.initial.clone();
        let on = self.churn.mean_online.as_secs_f64();
        let off = self.churn.mean_offline.as_secs_f64();
        self.online = self.rng.gen_bool(on / (on + off));
        self.start = Duration::ZERO;
        self.end = self.draw_period();
    }

    fn draw_period(&mut self) -> Duration {
        let mean = if self.online { self.churn.mean_online } else { self.churn.mean_offline };
        let factor: f64 = Exp1.sample(&mut self.rng);
        Duration::from_secs_f64((mean.as_secs_f64() * factor).clamp(0.001, MAX_SECONDS))
    }

    fn at(&mut self, t: Duration) -> (bool, Option<Duration>) {
        if t < self.start {
            self.reset();
        }
        while t >= self.end {
            self.online = !self.online;
            self.start = self.end;
            self.end = self.start + self.draw_period();
        }
        (self.online, Some(self.end))
    }
}

fn seconds(name: &str, value: f64, positive: bool) -> Result<Duration, String> {
    let ok = value.is_finite()
        && value <= MAX_SECONDS
        && if positive { value > 0.0 } else { value >= 0.0 };
    if !ok {
        let bound = if positive { "> 0" } else { ">= 0" };
        return Err(format!("{name} must be {bound} and at most 30 days, got {value}"));
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use rand::SeedableRng;

    use super::*;

    fn resolve(spec: &str) -> Result<Connectivity, String> {
        toml::from_str::<ConnectivitySpec>(spec).map_err(|e| e.message().to_owned())?.resolve()
    }

    fn schedule(c: &Connectivity, device_seed: u64) -> Schedule {
        let mut presence = ChaCha8Rng::seed_from_u64(device_seed);
        presence.set_stream(1);
        let mut churn = ChaCha8Rng::seed_from_u64(device_seed);
        churn.set_stream(2);
        c.schedule(&mut presence, churn)
    }

    /// Samples 200 devices every 10 s for 10 minutes: online counts per minute.
    fn check(spec: &str, expect: Expect) {
        let c = match resolve(spec) {
            Ok(c) => c,
            Err(err) => return expect.assert_eq(&format!("invalid: {err}")),
        };
        let mut schedules: Vec<Schedule> = (0..200).map(|d| schedule(&c, d)).collect();
        let counts: Vec<String> = (0..10)
            .map(|minute| {
                let t = Duration::from_secs(minute * 60 + 30);
                schedules
                    .iter_mut()
                    .map(|s| s.presence_at(t).online)
                    .filter(|o| *o)
                    .count()
                    .to_string()
            })
            .collect();
        expect.assert_eq(&counts.join(" "));
    }

    #[test]
    fn never_connects_is_a_fraction() {
        check("never_connects = 0.25", expect!["146 146 146 146 146 146 146 146 146 146"]);
    }

    #[test]
    fn outage_takes_a_share_offline_for_its_window() {
        check(
            "outages = [{ at_s = 120, for_s = 180, share = 0.5 }]",
            expect!["200 200 99 99 99 200 200 200 200 200"],
        );
    }

    #[test]
    fn churn_keeps_the_steady_state_ratio() {
        check(
            "churn = { mean_online_s = 60, mean_offline_s = 20 }",
            expect!["152 151 149 147 152 150 145 144 149 149"],
        );
    }

    #[test]
    fn presence_is_a_pure_function_of_seed_and_time() {
        let c = resolve("churn = { mean_online_s = 30, mean_offline_s = 10 }\noutages = [{ at_s = 5, for_s = 5, share = 0.3 }]")
            .unwrap();
        let times: Vec<Duration> = (0..500).map(|i| Duration::from_millis(i * 997)).collect();
        let forward: Vec<Presence> = {
            let mut s = schedule(&c, 77);
            times.iter().map(|t| s.presence_at(*t)).collect()
        };
        // Asking in reverse order (which forces the timeline to restart) gives the same answers.
        let mut s = schedule(&c, 77);
        let backward: Vec<Presence> = times.iter().rev().map(|t| s.presence_at(*t)).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
        // `until` is always in the future and the state holds until then.
        for (t, p) in times.iter().zip(&forward) {
            let until = p.until.unwrap();
            assert!(until > *t);
            let mut s = schedule(&c, 77);
            assert_eq!(s.presence_at(until - Duration::from_micros(1)).online, p.online);
        }
    }

    #[test]
    fn network_delay_is_latency_plus_jitter() {
        let c = resolve("network = { latency_ms = 20, jitter_ms = 10 }").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let delays: Vec<Duration> = (0..1000).map(|_| c.network.delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| (20..=30).contains(&d.as_millis())));
        assert!(
            delays.iter().any(|d| d.as_millis() >= 29)
                && delays.iter().any(|d| d.as_millis() <= 20)
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        check(
            "never_connects = 2",
            expect!["invalid: never_connects must be a probability between 0 and 1, got 2"],
        );
        check(
            "churn = { mean_online_s = 0, mean_offline_s = 5 }",
            expect!["invalid: churn.mean_online_s must be > 0 and at most 30 days, got 0"],
        );
        check(
            "outages = [{ at_s = 1, for_s = 1, share = 1.2 }]",
            expect!["invalid: outages[0].share must be a probability between 0 and 1, got 1.2"],
        );
        check("outages = [{ at_s = 1, for_s = 1 }]", expect!["invalid: missing field `share`"]);
    }
}
