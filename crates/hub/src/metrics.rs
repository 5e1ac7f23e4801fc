//! Hub metrics in the Prometheus text format, served at `GET /metrics` on the REST listeners.
//!
//! [`LatencyHistogram`] is a fixed-bucket histogram on atomics (no lock on the hot path), used for
//! direct-method round trips; [`HttpCounters`] counts throttled (429) REST responses. [`render`]
//! turns a [`Snapshot`] of everything — sessions, registry size, jobs by status, job device
//! operations, method latency, 429s, event-stream drops — into the exposition text.
//! It keeps no history and computes no rates: Prometheus does that from the counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::events::EventStats;
use crate::mqtt::SessionStats;

/// Upper bounds of the method-latency buckets, in seconds (the last bucket is `+Inf`).
const LATENCY_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// A cumulative latency histogram with fixed buckets, safe to update from many tasks at once.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (non-cumulative) counts; index `LATENCY_BUCKETS.len()` is the `+Inf` bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let idx = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (idx, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[idx].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Counters of the REST layer.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Responses with status 429 (throttling, active-job cap).
    pub throttled: AtomicU64,
}

/// Everything one scrape reports, gathered by the caller.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// MQTT session counters.
    pub sessions: SessionStats,
    /// Registered device identities.
    pub registered_devices: usize,
    /// Jobs per wire status (`queued`, `running`, ...).
    pub jobs_by_status: Vec<(String, u64)>,
    /// Per-device job operations that reached a terminal state.
    pub job_device_operations: u64,
    /// Direct-method round-trip latency (REST and jobs).
    pub method_latency: &'a LatencyHistogram,
    /// REST counters.
    pub http: &'a HttpCounters,
    /// Event-stream counters.
    pub events: EventStats,
}

/// Renders a scrape in the Prometheus text exposition format (version 0.0.4).
pub fn render(snapshot: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let sessions = &snapshot.sessions;
    let gauges: [(&str, &str, u64); 2] = [
        (
            "hubsim_connected_devices",
            "Devices with a live MQTT connection.",
            sessions.connected as u64,
        ),
        (
            "hubsim_registered_devices",
            "Device identities in the registry.",
            snapshot.registered_devices as u64,
        ),
    ];
    for (name, help, value) in gauges {
        metric(&mut out, name, help, "gauge", value);
    }
    let counters: [(&str, &str, u64); 10] = [
        (
            "hubsim_mqtt_connections_accepted_total",
            "MQTT CONNECTs accepted.",
            sessions.connections_accepted,
        ),
        (
            "hubsim_mqtt_connections_refused_total",
            "MQTT CONNECTs refused (CONNACK 5).",
            sessions.connections_refused,
        ),
        (
            "hubsim_mqtt_protocol_violations_total",
            "Connections closed for breaking the protocol.",
            sessions.protocol_violations,
        ),
        (
            "hubsim_telemetry_received_total",
            "Device-to-cloud messages received.",
            sessions.telemetry_received,
        ),
        (
            "hubsim_method_requests_sent_total",
            "Direct-method requests delivered to devices.",
            sessions.method_requests_sent,
        ),
        (
            "hubsim_desired_patches_dropped_total",
            "Desired patches not delivered (offline, unsubscribed, full).",
            sessions.desired_dropped,
        ),
        (
            "hubsim_job_device_operations_total",
            "Per-device job operations that reached a terminal state.",
            snapshot.job_device_operations,
        ),
        (
            "hubsim_http_throttled_total",
            "REST responses with status 429.",
            snapshot.http.throttled.load(Ordering::Relaxed),
        ),
        (
            "hubsim_events_published_total",
            "Events handed to the event-stream broker.",
            snapshot.events.published,
        ),
        (
            "hubsim_events_dropped_total",
            "Events dropped because the event queue was full.",
            snapshot.events.dropped,
        ),
    ];
    for (name, help, value) in counters {
        metric(&mut out, name, help, "counter", value);
    }
    let _ = writeln!(out, "# HELP hubsim_jobs Jobs by status.\n# TYPE hubsim_jobs gauge");
    for (status, count) in &snapshot.jobs_by_status {
        let _ = writeln!(out, "hubsim_jobs{{status=\"{status}\"}} {count}");
    }
    snapshot.method_latency.render(
        "hubsim_method_latency_seconds",
        "Direct-method round trips answered by devices (REST and jobs).",
        &mut out,
    );
    out
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = LatencyHistogram::default();
        for millis in [1, 3, 3, 40, 2_000, 90_000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let mut out = String::new();
        histogram.render("m", "help", &mut out);
        expect_test::expect![[r#"
            # HELP m help
            # TYPE m histogram
            m_bucket{le="0.001"} 1
            m_bucket{le="0.0025"} 1
            m_bucket{le="0.005"} 3
            m_bucket{le="0.01"} 3
            m_bucket{le="0.025"} 3
            m_bucket{le="0.05"} 4
            m_bucket{le="0.1"} 4
            m_bucket{le="0.25"} 4
            m_bucket{le="0.5"} 4
            m_bucket{le="1"} 4
            m_bucket{le="2.5"} 5
            m_bucket{le="10"} 5
            m_bucket{le="60"} 5
            m_bucket{le="+Inf"} 6
            m_sum 92.047
            m_count 6
        "#]]
        .assert_eq(&out);
        assert_eq!(histogram.count(), 6);
    }
}
