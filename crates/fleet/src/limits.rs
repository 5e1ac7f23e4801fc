//! Process limits that cap a fleet: open files, and ephemeral ports per source address.
//!
//! Each device holds one socket (one file descriptor); each connection from one source address to
//! one hub address and port needs its own ephemeral port, so one source address runs out near the
//! size of `ip_local_port_range` (~28k by default). [`check`] reads `/proc/self/limits` and
//! `/proc/sys/net/ipv4/ip_local_port_range`, works out how many devices fit, and names the limit that
//! caps the run. It does not *raise* anything: the cli raises the soft open-file limit to the hard one
//! before calling in here. [`parse_source_addrs`] reads `127.0.0.2-127.0.0.20` style ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// File descriptors kept free for the runtime, the record file, REST connections and logs.
pub const RESERVED_FDS: u64 = 100;

/// Ephemeral ports used when the kernel's range cannot be read (Linux default 32768–60999).
const DEFAULT_PORTS: u64 = 28_232;

/// What the machine allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Soft `RLIMIT_NOFILE` (`None`: unlimited or unreadable).
    pub open_files_soft: Option<u64>,
    /// Hard `RLIMIT_NOFILE`.
    pub open_files_hard: Option<u64>,
    /// Ephemeral ports per source address.
    pub ports_per_source: u64,
    /// Source addresses the fleet spreads over (at least one: the default route's).
    pub source_addrs: u64,
}

/// Which limit caps a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The soft open-file limit (raise it to the hard limit, or run shards in more processes).
    OpenFiles,
    /// Ephemeral ports of the source addresses (add `--source-addrs`).
    SourcePorts,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// The limits read.
    pub limits: Limits,
    /// Devices one process can hold under them.
    pub max_devices: u64,
    /// The limit that decides `max_devices`.
    pub cap: Cap,
}

/// The run does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{devices} devices do not fit in this process: {capacity}")]
pub struct LimitError {
    /// Devices asked for.
    pub devices: u64,
    /// What fits and why.
    pub capacity: Capacity,
}

/// A bad `--source-addrs` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad source address list {0:?}: expected IP, IP-IP (IPv4 range) or a comma-separated list of those")]
pub struct SourceAddrError(String);

/// Reads the limits and checks that `devices` fit with `source_addrs` source addresses (0 counts as 1).
///
/// # Errors
/// [`LimitError`] naming the capping limit when they do not fit.
pub fn check(devices: u64, source_addrs: usize) -> Result<Capacity, LimitError> {
    let capacity = capacity(read_limits(source_addrs));
    if devices > capacity.max_devices {
        return Err(LimitError { devices, capacity });
    }
    Ok(capacity)
}

/// Reads the limits of this process.
pub fn read_limits(source_addrs: usize) -> Limits {
    let (open_files_soft, open_files_hard) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| parse_open_files(&text))
        .unwrap_or((None, None));
    let ports_per_source = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_port_range(&text))
        .unwrap_or(DEFAULT_PORTS);
    Limits {
        open_files_soft,
        open_files_hard,
        ports_per_source,
        source_addrs: source_addrs.max(1) as u64,
    }
}

/// What fits under `limits`.
pub fn capacity(limits: Limits) -> Capacity {
    let by_files =
        limits.open_files_soft.map_or(u64::MAX, |soft| soft.saturating_sub(RESERVED_FDS));
    let by_ports = limits.ports_per_source.saturating_mul(limits.source_addrs);
    let (max_devices, cap) = if by_files <= by_ports {
        (by_files, Cap::OpenFiles)
    } else {
        (by_ports, Cap::SourcePorts)
    };
    Capacity { limits, max_devices, cap }
}

/// Parses `IP`, `A.B.C.D-A.B.C.E` or a comma-separated list of those.
///
/// # Errors
/// [`SourceAddrError`] for anything else, an empty list, or a range over 65,536 addresses.
pub fn parse_source_addrs(text: &str) -> Result<Vec<IpAddr>, SourceAddrError> {
    let bad = || SourceAddrError(text.to_owned());
    let mut addrs = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => addrs.push(part.parse::<IpAddr>().map_err(|_| bad())?),
            Some((first, last)) => {
                let first: u32 = first.trim().parse::<Ipv4Addr>().map_err(|_| bad())?.into();
                let last: u32 = last.trim().parse::<Ipv4Addr>().map_err(|_| bad())?.into();
                if first > last || last - first >= 65_536 {
                    return Err(bad());
                }
                addrs.extend((first..=last).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
            }
        }
    }
    if addrs.is_empty() {
        return Err(bad());
    }
    Ok(addrs)
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
        let l = &self.limits;
        write!(f, "at most {} devices per process, capped by ", self.max_devices)?;
        match self.cap {
            Cap::OpenFiles => write!(
                f,
                "the open-file limit (soft {}, hard {}, {RESERVED_FDS} kept free); raise the soft limit to the hard one or split the fleet with --shard I/N over more processes",
                files(l.open_files_soft),
                files(l.open_files_hard)
            ),
            Cap::SourcePorts => write!(
                f,
                "ephemeral ports ({} per source address x {} source addresses); add addresses with --source-addrs",
                l.ports_per_source, l.source_addrs
            ),
        }
    }
}

fn parse_open_files(limits: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let value = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
    Some((value(fields.next()), value(fields.next())))
}

fn parse_port_range(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (low, high) = (fields.next()??, fields.next()??);
    (high >= low).then(|| high - low + 1)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn parses_proc_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 20000                files\n";
        assert_eq!(parse_open_files(limits), Some((Some(1024), Some(20000))));
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28232));
    }

    #[test]
    fn names_the_capping_limit() {
        let limits = |soft, sources| Limits {
            open_files_soft: Some(soft),
            open_files_hard: Some(20_000),
            ports_per_source: 28_232,
            source_addrs: sources,
        };
        expect!["at most 19900 devices per process, capped by the open-file limit (soft 20000, hard 20000, 100 kept free); raise the soft limit to the hard one or split the fleet with --shard I/N over more processes"]
            .assert_eq(&capacity(limits(20_000, 1)).to_string());
        expect!["at most 28232 devices per process, capped by ephemeral ports (28232 per source address x 1 source addresses); add addresses with --source-addrs"]
            .assert_eq(&capacity(limits(1_000_000, 1)).to_string());
        assert_eq!(capacity(limits(1_000_000, 19)).max_devices, 536_408);
    }

    #[test]
    fn parses_source_addresses() {
        let addrs = parse_source_addrs("127.0.0.2-127.0.0.4, ::1").unwrap();
        expect!["[127.0.0.2, 127.0.0.3, 127.0.0.4, ::1]"].assert_eq(&format!("{addrs:?}"));
        expect![[r#"bad source address list "127.0.0.9-127.0.0.2": expected IP, IP-IP (IPv4 range) or a comma-separated list of those"#]]
            .assert_eq(&parse_source_addrs("127.0.0.9-127.0.0.2").unwrap_err().to_string());
        assert!(parse_source_addrs("").is_err());
    }

    #[test]
    fn reads_this_process() {
        let limits = read_limits(0);
        assert_eq!(limits.source_addrs, 1);
        assert!(limits.ports_per_source > 0);
    }
}
