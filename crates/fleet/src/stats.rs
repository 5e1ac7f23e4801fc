//! Live fleet counters for the terminal summary and the final report: [`FleetStats`] and its
//! [`StatsSnapshot`].
//!
//! Every field is an atomic updated by device tasks without locks; method-handler latency goes into
//! a log-bucketed [`LatencyHistogram`] (about 9 % resolution) for p50/p99. There is deliberately no
//! per-device state here and no printing: the cli polls [`FleetStats::snapshot`] at its own rate.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Buckets per power of two in the latency histogram.
const SUB_BUCKETS: u32 = 8;
/// Number of buckets: covers 1 µs .. 2^40 µs.
const BUCKETS: usize = (40 * SUB_BUCKETS) as usize;

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating devices and setting tags through the registry REST API.
    Registering,
    /// Devices are connecting (ramp-up) or running.
    Running,
    /// Disconnecting devices after Ctrl-C or `--duration`.
    Stopping,
    /// Everything has stopped.
    Finished,
}

/// Shared counters of one run. Create it with [`FleetStats::default`], keep an `Arc` for the live
/// summary and pass another to [`crate::run`].
#[derive(Debug, Default)]
pub struct FleetStats {
    phase: AtomicU8,
    pub(crate) devices: AtomicU64,
    pub(crate) registered: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) offline: AtomicU64,
    pub(crate) never_connect: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) calls: AtomicU64,
    pub(crate) calls_ok: AtomicU64,
    pub(crate) calls_error: AtomicU64,
    pub(crate) calls_silent: AtomicU64,
    pub(crate) reboots: AtomicU64,
    pub(crate) desired: AtomicU64,
    pub(crate) desired_acked: AtomicU64,
    pub(crate) desired_failed: AtomicU64,
    pub(crate) telemetry: AtomicU64,
    pub(crate) device_errors: AtomicU64,
    pub(crate) handler_latency: LatencyHistogram,
}

/// A point-in-time copy of [`FleetStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The phase.
    pub phase: Phase,
    /// Devices in this run (this shard).
    pub devices: u64,
    /// Devices registered (created or found) so far.
    pub registered: u64,
    /// Device tasks started by the ramp.
    pub started: u64,
    /// Devices connected right now.
    pub connected: u64,
    /// Devices deliberately offline right now (churn, outage, reboot, never-connects).
    pub offline: u64,
    /// Devices that never connect by profile.
    pub never_connect: u64,
    /// Successful connections, including reconnects.
    pub connects: u64,
    /// Failed connection attempts (not planned by the profile).
    pub connect_failures: u64,
    /// Direct-method calls received.
    pub calls: u64,
    /// Calls answered with the success status.
    pub calls_ok: u64,
    /// Calls answered with a simulated error status.
    pub calls_error: u64,
    /// Calls deliberately left unanswered.
    pub calls_silent: u64,
    /// Reboots performed.
    pub reboots: u64,
    /// Desired patches received.
    pub desired: u64,
    /// Desired patches acknowledged into reported.
    pub desired_acked: u64,
    /// Desired patches deliberately not acknowledged.
    pub desired_failed: u64,
    /// Telemetry messages acknowledged by the hub.
    pub telemetry: u64,
    /// Operations that failed without the profile asking for it (reported patch, telemetry, ...).
    pub device_errors: u64,
    /// Median method-handler latency.
    pub handler_p50: Duration,
    /// 99th-percentile method-handler latency.
    pub handler_p99: Duration,
}

/// A lock-free log-bucketed latency histogram.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl FleetStats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            phase: self.phase(),
            devices: get(&self.devices),
            registered: get(&self.registered),
            started: get(&self.started),
            connected: get(&self.connected),
            offline: get(&self.offline),
            never_connect: get(&self.never_connect),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            calls: get(&self.calls),
            calls_ok: get(&self.calls_ok),
            calls_error: get(&self.calls_error),
            calls_silent: get(&self.calls_silent),
            reboots: get(&self.reboots),
            desired: get(&self.desired),
            desired_acked: get(&self.desired_acked),
            desired_failed: get(&self.desired_failed),
            telemetry: get(&self.telemetry),
            device_errors: get(&self.device_errors),
            handler_p50: self.handler_latency.quantile(0.5),
            handler_p99: self.handler_latency.quantile(0.99),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Registering,
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Finished,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        let value = match phase {
            Phase::Registering => 0,
            Phase::Running => 1,
            Phase::Stopping => 2,
            Phase::Finished => 3,
        };
        self.phase.store(value, Ordering::Relaxed);
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn drop_one(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The latency below which a fraction `q` of the samples fall (bucket upper bound; zero when empty).
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(upper_bound(bucket));
            }
        }
        Duration::from_micros(upper_bound(BUCKETS - 1))
    }
}

fn bucket_of(micros: u64) -> usize {
    let log2 = f64::from(micros.ilog2());
    let fraction = (micros as f64).log2() - log2;
    let bucket = log2 * f64::from(SUB_BUCKETS) + (fraction * f64::from(SUB_BUCKETS)).floor();
    (bucket as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> u64 {
    2f64.powf((bucket as f64 + 1.0) / f64::from(SUB_BUCKETS)).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).as_secs_f64() * 1000.0;
        assert!((500.0..=500.0 * 1.1).contains(&p50), "p50 {p50}");
        assert!((990.0..=990.0 * 1.1).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn snapshot_reads_counters_and_phase() {
        let stats = FleetStats::default();
        bump(&stats.calls);
        bump(&stats.connected);
        bump(&stats.connected);
        drop_one(&stats.connected);
        stats.set_phase(Phase::Running);
        let snap = stats.snapshot();
        assert_eq!((snap.calls, snap.connected, snap.phase), (1, 1, Phase::Running));
    }
}
