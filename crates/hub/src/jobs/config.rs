//! Settings of the jobs engine ([`JobsConfig`]) and IoT Hub's per-tier limits ([`Tier`], [`TierLimits`]).
//!
//! Throttling is opt-in: [`JobsConfig::default`] has no tier and nothing is rate limited, so tests are
//! deterministic. With a tier, the engine caps concurrently active jobs and paces job device operations
//! the way the quotas document describes; the other rates ([`TierLimits::method_calls_per_second`],
//! [`TierLimits::twin_updates_per_second`], ...) are exposed for the REST endpoints that own them.
//! This module does no I/O and reads no environment; the CLI resolves flags into these types.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

/// Default number of device operations one job runs at the same time.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default history retention of jobs and device records (IoT Hub keeps 30 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// `maxExecutionTimeInSeconds` when the request omits it (the Node SDK's default; the service's is undocumented).
pub const DEFAULT_MAX_EXECUTION: Duration = Duration::from_secs(3600);
/// How long a direct-method or twin REST call may wait in a tier's traffic-shaping backlog before 429.
pub const DEFAULT_THROTTLE_BACKLOG: Duration = Duration::from_secs(10);

/// Resolved settings of the jobs engine.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// Device operations (method calls, twin patches) one job keeps in flight at most.
    pub max_in_flight: NonZeroUsize,
    /// How long finished jobs and their device records are kept.
    pub retention: Duration,
    /// `maxExecutionTimeInSeconds` for requests that omit it.
    pub default_max_execution: Duration,
    /// IoT Hub tier limits to reproduce; `None` means unthrottled.
    pub tier: Option<TierLimits>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_in_flight: NonZeroUsize::new(DEFAULT_MAX_IN_FLIGHT)
                .expect("the default is not zero"),
            retention: DEFAULT_RETENTION,
            default_max_execution: DEFAULT_MAX_EXECUTION,
            tier: None,
        }
    }
}

impl JobsConfig {
    /// Concurrently active (queued, scheduled or running) jobs allowed; `None` when unthrottled.
    pub fn max_active_jobs(&self) -> Option<usize> {
        self.tier.map(|limits| limits.max_active_jobs())
    }

    /// Job device operations per second across all jobs; `None` when unthrottled.
    pub fn job_device_ops_per_second(&self) -> Option<f64> {
        self.tier.map(|limits| limits.job_device_ops_per_second())
    }
}

/// An IoT Hub pricing tier (standard tiers; jobs are not available on basic tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The free tier (one unit).
    Free,
    /// Standard S1.
    S1,
    /// Standard S2.
    S2,
    /// Standard S3.
    S3,
}

/// A tier and a number of units: everything needed to compute the hub's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    /// The tier.
    pub tier: Tier,
    /// Purchased units (the free tier always counts as one).
    pub units: NonZeroU32,
}

/// Why a tier name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hub tier {0:?} (expected free, s1, s2 or s3)")]
pub struct TierParseError(pub String);

impl FromStr for Tier {
    type Err = TierParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "free" | "f1" => Ok(Tier::Free),
            "s1" => Ok(Tier::S1),
            "s2" => Ok(Tier::S2),
            "s3" => Ok(Tier::S3),
            _ => Err(TierParseError(text.to_owned())),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Free => "free",
            Tier::S1 => "s1",
            Tier::S2 => "s2",
            Tier::S3 => "s3",
        })
    }
}

impl TierLimits {
    /// Limits of `tier` with `units` units.
    pub fn new(tier: Tier, units: NonZeroU32) -> TierLimits {
        TierLimits { tier, units }
    }

    fn units(self) -> f64 {
        match self.tier {
            Tier::Free => 1.0,
            _ => f64::from(self.units.get()),
        }
    }

    /// Maximum concurrently active jobs: 1 (free, S1), 5 (S2), 10 (S3).
    pub fn max_active_jobs(self) -> usize {
        match self.tier {
            Tier::Free | Tier::S1 => 1,
            Tier::S2 => 5,
            Tier::S3 => 10,
        }
    }

    /// Jobs device operations (twin updates and method calls inside jobs) per second:
    /// 10 (free, S1), max(10, 1/unit) (S2), 50/unit (S3).
    pub fn job_device_ops_per_second(self) -> f64 {
        match self.tier {
            Tier::Free | Tier::S1 => 10.0,
            Tier::S2 => self.units().max(10.0),
            Tier::S3 => 50.0 * self.units(),
        }
    }

    /// Jobs operations (create, get, cancel, list) per second: 100/min/unit, 5000/min/unit on S3.
    pub fn job_operations_per_second(self) -> f64 {
        match self.tier {
            Tier::S3 => 5000.0 / 60.0 * self.units(),
            _ => 100.0 / 60.0 * self.units(),
        }
    }

    /// Direct-method calls per second, metered in 4 KB units: 160 KB/s/unit (free, S1),
    /// 480 KB/s/unit (S2), 24 MB/s/unit (S3), i.e. 40, 120 and 6000 calls/s/unit at ≤ 4 KB.
    pub fn method_calls_per_second(self) -> f64 {
        let per_unit = match self.tier {
            Tier::Free | Tier::S1 => 40.0,
            Tier::S2 => 120.0,
            Tier::S3 => 6000.0,
        };
        per_unit * self.units()
    }

    /// Twin updates per second: 50 (free, S1), max(50, 5/unit) (S2), 250/unit (S3).
    pub fn twin_updates_per_second(self) -> f64 {
        match self.tier {
            Tier::Free | Tier::S1 => 50.0,
            Tier::S2 => (5.0 * self.units()).max(50.0),
            Tier::S3 => 250.0 * self.units(),
        }
    }

    /// Twin reads per second: 100 (free, S1), max(100, 10/unit) (S2), 500/unit (S3).
    pub fn twin_reads_per_second(self) -> f64 {
        match self.tier {
            Tier::Free | Tier::S1 => 100.0,
            Tier::S2 => (10.0 * self.units()).max(100.0),
            Tier::S3 => 500.0 * self.units(),
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn tier_table() {
        let mut rows = Vec::new();
        for (name, units) in [("free", 1), ("S1", 4), ("s2", 1), ("s2", 20), ("s3", 2)] {
            let tier: Tier = name.parse().unwrap();
            let limits = TierLimits::new(tier, NonZeroU32::new(units).unwrap());
            rows.push(format!(
                "{tier} x{units}: active={} jobops/s={} methods/s={} twinupd/s={} twinread/s={} jobapi/s={:.2}",
                limits.max_active_jobs(),
                limits.job_device_ops_per_second(),
                limits.method_calls_per_second(),
                limits.twin_updates_per_second(),
                limits.twin_reads_per_second(),
                limits.job_operations_per_second(),
            ));
        }
        expect![[r#"
            free x1: active=1 jobops/s=10 methods/s=40 twinupd/s=50 twinread/s=100 jobapi/s=1.67
            s1 x4: active=1 jobops/s=10 methods/s=160 twinupd/s=50 twinread/s=100 jobapi/s=6.67
            s2 x1: active=5 jobops/s=10 methods/s=120 twinupd/s=50 twinread/s=100 jobapi/s=1.67
            s2 x20: active=5 jobops/s=20 methods/s=2400 twinupd/s=100 twinread/s=200 jobapi/s=33.33
            s3 x2: active=10 jobops/s=100 methods/s=12000 twinupd/s=500 twinread/s=1000 jobapi/s=166.67"#]]
        .assert_eq(&rows.join("\n"));
        assert!("basic".parse::<Tier>().is_err());
    }
}
