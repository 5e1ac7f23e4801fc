//! Process facts the benchmark reports: resident memory (`VmRSS`), the open-file limit (raised to its
//! hard limit, as `hubsim fleet run` does), and percentiles of latency samples.
//!
//! Linux only in substance: elsewhere `VmRSS` reads as unavailable and memory rows say so.

use std::time::Duration;

use anyhow::Context as _;

/// The open-file limits of this process after raising the soft one to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit now in force.
    pub(crate) soft: u64,
    /// The hard limit (what an unprivileged process can reach).
    pub(crate) hard: u64,
}

/// Raises the soft open-file limit to the hard one (each device or echo connection holds a socket)
/// and returns both.
pub(crate) fn raise_open_files() -> OpenFiles {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%err, "could not raise the open-file limit");
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) => OpenFiles { soft, hard },
        Err(err) => {
            tracing::warn!(%err, "could not read the open-file limit");
            OpenFiles { soft: 0, hard: 0 }
        }
    }
}

/// This process's resident set size in KiB (`VmRSS` of /proc/self/status).
///
/// # Errors
/// When /proc/self/status cannot be read or has no `VmRSS` line.
pub(crate) fn rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("could not read /proc/self/status")?;
    parse_vm_rss(&status).context("no VmRSS line in /proc/self/status")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `pct` percentile (0..=100, nearest rank) of `samples`, which it sorts; zero when empty.
pub(crate) fn percentile(samples: &mut [Duration], pct: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a slice length"
    )]
    let rank = ((pct / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Milliseconds as a float, for tables and JSON.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `count` per second over `elapsed` (zero when nothing elapsed).
pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let count = count as f64;
    if secs > 0.0 {
        count / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&mut samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&mut [], 50.0), Duration::ZERO);
        assert_eq!(percentile(&mut [Duration::from_millis(7)], 0.0), Duration::from_millis(7));
    }

    #[test]
    fn reads_vm_rss() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\nVmSwap: 0 kB\n"), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib().is_ok_and(|kib| kib > 0));
    }
}
