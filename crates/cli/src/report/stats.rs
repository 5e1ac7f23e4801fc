//! Latency percentiles of a job's device records: [`LatencySummary`] (count, p50, p95, p99, max).
//!
//! Percentiles use the nearest-rank method on the exact values (no histogram, no interpolation): p
//! is the smallest value with at least p % of the samples at or below it, so every percentile is a
//! latency some device actually had. Nothing here knows about jobs.

use serde_json::{json, Value};

/// Latency percentiles of a set of devices, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatencySummary {
    /// Number of samples.
    pub(crate) count: usize,
    /// Median.
    pub(crate) p50: u64,
    /// 95th percentile.
    pub(crate) p95: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// Largest value.
    pub(crate) max: u64,
}

impl LatencySummary {
    /// The summary of `values` (any order); `None` when there are none.
    pub(crate) fn of(values: &[u64]) -> Option<LatencySummary> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        Some(LatencySummary {
            count: sorted.len(),
            p50: nearest_rank(&sorted, 50),
            p95: nearest_rank(&sorted, 95),
            p99: nearest_rank(&sorted, 99),
            max,
        })
    }

    /// `{"count":..,"p50":..,"p95":..,"p99":..,"max":..}`.
    pub(crate) fn to_json(self) -> Value {
        json!({"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max})
    }
}

/// The nearest-rank `percent`-th percentile of a non-empty ascending slice.
fn nearest_rank(sorted: &[u64], percent: usize) -> u64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(values: &[u64], expect: Expect) {
        expect.assert_eq(&format!("{:?}", LatencySummary::of(values)));
    }

    #[test]
    fn nearest_rank_percentiles() {
        check(&[], expect!["None"]);
        check(&[7], expect!["Some(LatencySummary { count: 1, p50: 7, p95: 7, p99: 7, max: 7 })"]);
        check(
            &[40, 10, 30, 20],
            expect!["Some(LatencySummary { count: 4, p50: 20, p95: 40, p99: 40, max: 40 })"],
        );
        let hundred: Vec<u64> = (1..=100).rev().collect();
        check(
            &hundred,
            expect!["Some(LatencySummary { count: 100, p50: 50, p95: 95, p99: 99, max: 100 })"],
        );
        let mut skewed = vec![100; 98];
        skewed.extend([9000, 10000]);
        check(
            &skewed,
            expect![
                "Some(LatencySummary { count: 100, p50: 100, p95: 100, p99: 9000, max: 10000 })"
            ],
        );
    }
}
