//! Latency distributions in milliseconds: fixed, uniform, normal and log-normal.
//!
//! A [`Distribution`] is parsed from a profile table such as `{ dist = "log-normal", median_ms = 40, sigma = 0.5 }`
//! and sampled with a caller-supplied RNG, so every draw is reproducible under a seed.
//! Samples are clamped to `0..=MAX_SAMPLE_MS`; this module does not decide *which* RNG stream is used.

use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution as _, LogNormal, Normal};
use serde::Deserialize;

/// The largest latency a distribution yields (one hour); longer tails are clamped.
pub const MAX_SAMPLE_MS: f64 = 3_600_000.0;

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone)]
pub enum Distribution {
    /// Always the same value.
    Fixed {
        /// The value in ms.
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms` (inclusive of both ends).
    Uniform {
        /// Lower bound in ms.
        min_ms: f64,
        /// Upper bound in ms.
        max_ms: f64,
    },
    /// Normal with `mean_ms` and `std_dev_ms`; negative draws clamp to zero.
    Normal {
        /// The sampler.
        normal: Normal<f64>,
    },
    /// Log-normal with the given median (`e^mu`) and `sigma`.
    LogNormal {
        /// The sampler.
        log_normal: LogNormal<f64>,
    },
}

/// The profile form of a distribution, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DistributionSpec {
    /// `{ dist = "fixed", ms = 20 }`
    Fixed {
        /// The value in ms.
        ms: f64,
    },
    /// `{ dist = "uniform", min_ms = 10, max_ms = 50 }`
    Uniform {
        /// Lower bound in ms.
        min_ms: f64,
        /// Upper bound in ms.
        max_ms: f64,
    },
    /// `{ dist = "normal", mean_ms = 50, std_dev_ms = 10 }`
    Normal {
        /// Mean in ms.
        mean_ms: f64,
        /// Standard deviation in ms.
        std_dev_ms: f64,
    },
    /// `{ dist = "log-normal", median_ms = 40, sigma = 0.5 }`
    LogNormal {
        /// Median in ms (must be > 0).
        median_ms: f64,
        /// Shape parameter (standard deviation of the underlying normal).
        sigma: f64,
    },
}

impl DistributionSpec {
    /// Validates the parameters and builds the sampler.
    ///
    /// # Errors
    /// A lowercase sentence naming the bad parameter.
    pub fn resolve(&self) -> Result<Distribution, String> {
        match *self {
            DistributionSpec::Fixed { ms } => {
                check_ms("ms", ms)?;
                Ok(Distribution::Fixed { ms })
            }
            DistributionSpec::Uniform { min_ms, max_ms } => {
                check_ms("min_ms", min_ms)?;
                check_ms("max_ms", max_ms)?;
                if min_ms > max_ms {
                    return Err(format!("min_ms ({min_ms}) is greater than max_ms ({max_ms})"));
                }
                Ok(Distribution::Uniform { min_ms, max_ms })
            }
            DistributionSpec::Normal { mean_ms, std_dev_ms } => {
                check_ms("mean_ms", mean_ms)?;
                check_ms("std_dev_ms", std_dev_ms)?;
                let normal = Normal::new(mean_ms, std_dev_ms)
                    .map_err(|err| format!("bad normal distribution: {err}"))?;
                Ok(Distribution::Normal { normal })
            }
            DistributionSpec::LogNormal { median_ms, sigma } => {
                check_ms("median_ms", median_ms)?;
                if median_ms <= 0.0 {
                    return Err("median_ms must be greater than 0".to_owned());
                }
                if !sigma.is_finite() || sigma < 0.0 {
                    return Err(format!("sigma must be a finite number >= 0, got {sigma}"));
                }
                let log_normal = LogNormal::new(median_ms.ln(), sigma)
                    .map_err(|err| format!("bad log-normal distribution: {err}"))?;
                Ok(Distribution::LogNormal { log_normal })
            }
        }
    }
}

impl Distribution {
    /// A distribution that always yields zero.
    pub fn zero() -> Self {
        Distribution::Fixed { ms: 0.0 }
    }

    /// Draws one latency in milliseconds, clamped to `0..=MAX_SAMPLE_MS`.
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let raw = match self {
            Distribution::Fixed { ms } => *ms,
            Distribution::Uniform { min_ms, max_ms } => {
                if min_ms == max_ms {
                    *min_ms
                } else {
                    rng.gen_range(*min_ms..=*max_ms)
                }
            }
            Distribution::Normal { normal } => normal.sample(rng),
            Distribution::LogNormal { log_normal } => log_normal.sample(rng),
        };
        if raw.is_nan() {
            0.0
        } else {
            raw.clamp(0.0, MAX_SAMPLE_MS)
        }
    }

    /// Draws one latency as a [`Duration`] (whole microseconds).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        ms_to_duration(self.sample_ms(rng))
    }
}

/// Converts non-negative milliseconds to a [`Duration`] with microsecond resolution.
pub fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_micros((ms.clamp(0.0, MAX_SAMPLE_MS) * 1000.0).round() as u64)
}

fn check_ms(name: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{name} must be a finite number of milliseconds >= 0, got {value}"));
    }
    if value > MAX_SAMPLE_MS {
        return Err(format!("{name} is {value} ms; the limit is {MAX_SAMPLE_MS} ms (one hour)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn check(spec: &str, expect: Expect) {
        let parsed: Result<DistributionSpec, _> =
            toml::from_str::<toml::Value>(&format!("d = {spec}"))
                .and_then(|v| {
                    v.get("d").cloned().ok_or_else(|| serde::de::Error::custom("missing"))
                })
                .and_then(|v| v.try_into());
        let out = match parsed {
            Err(err) => format!("parse error: {}", err.message()),
            Ok(spec) => match spec.resolve() {
                Err(err) => format!("invalid: {err}"),
                Ok(dist) => {
                    let mut rng = ChaCha8Rng::seed_from_u64(7);
                    let mut samples: Vec<f64> =
                        (0..2000).map(|_| dist.sample_ms(&mut rng)).collect();
                    samples.sort_by(f64::total_cmp);
                    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
                    format!(
                        "min={:.1} p50={:.1} p99={:.1} max={:.1}",
                        q(0.0),
                        q(0.5),
                        q(0.99),
                        q(1.0)
                    )
                }
            },
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn fixed_is_constant() {
        check(r#"{ dist = "fixed", ms = 20 }"#, expect!["min=20.0 p50=20.0 p99=20.0 max=20.0"]);
    }

    #[test]
    fn uniform_stays_in_bounds() {
        check(
            r#"{ dist = "uniform", min_ms = 10, max_ms = 50 }"#,
            expect!["min=10.0 p50=30.1 p99=49.6 max=50.0"],
        );
    }

    #[test]
    fn normal_clamps_at_zero() {
        check(
            r#"{ dist = "normal", mean_ms = 5, std_dev_ms = 10 }"#,
            expect!["min=0.0 p50=5.1 p99=29.2 max=36.9"],
        );
    }

    #[test]
    fn log_normal_has_its_median() {
        check(
            r#"{ dist = "log-normal", median_ms = 40, sigma = 0.5 }"#,
            expect!["min=8.6 p50=40.3 p99=134.3 max=197.2"],
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        check(
            r#"{ dist = "uniform", min_ms = 50, max_ms = 10 }"#,
            expect!["invalid: min_ms (50) is greater than max_ms (10)"],
        );
        check(
            r#"{ dist = "log-normal", median_ms = 0, sigma = 1 }"#,
            expect!["invalid: median_ms must be greater than 0"],
        );
        check(
            r#"{ dist = "fixed", ms = -1 }"#,
            expect!["invalid: ms must be a finite number of milliseconds >= 0, got -1"],
        );
        check(r#"{ dist = "gamma", ms = 1 }"#, expect!["parse error: unknown variant `gamma`, expected one of `fixed`, `uniform`, `normal`, `log-normal`"]);
        check(
            r#"{ dist = "fixed", ms = 1, extra = 2 }"#,
            expect!["parse error: unknown field `extra`, expected `ms`"],
        );
    }
}
