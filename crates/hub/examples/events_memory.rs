//! Long-run memory check of the event broker: publishes telemetry, twin and job events on a
//! bounded topic set (N devices, a few jobs) for a while with a live `#` subscriber, and prints the
//! process RSS every few seconds, with its growth per message after the first report (the commit logs
//! are full by then, so what still grows is per-topic state). With `--unbounded` it publishes every message on a new topic
//! instead, the pattern hubsim must never use, to measure what rumqttd keeps per topic name.
//!
//! `cargo run --release -p hub --example events_memory -- [--seconds 60] [--devices 1000] [--rate 20000] [--unbounded]`

#![allow(clippy::print_stdout, reason = "an example reports its measurement on stdout")]
#![allow(clippy::unwrap_used, reason = "an example may stop at the first failure")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use hub::api::{Policy, ServiceAuth};
use hub::broker::{self, BrokerConfig};
use hub::events::{HubEvent, TelemetryEvent};
use protocol::ids::{DeviceId, JobId};
use protocol::job::{DeviceJobStatistics, JobStatus, JobType};
use protocol::property_bag::PropertyBag;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HOST: &str = "localhost";

struct Args {
    seconds: u64,
    devices: usize,
    rate: u64,
    unbounded: bool,
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { seconds: 60, devices: 1000, rate: 20_000, unbounded: false };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "--seconds" => args.seconds = iter.next().ok_or("--seconds N")?.parse()?,
            "--devices" => args.devices = iter.next().ok_or("--devices N")?.parse()?,
            "--rate" => args.rate = iter.next().ok_or("--rate N")?.parse()?,
            "--unbounded" => args.unbounded = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let key = protocol::sas::encode_key(&[3u8; 32]);
    let auth = ServiceAuth {
        host_name: HOST.to_owned(),
        policies: vec![Policy {
            name: "iothubowner".to_owned(),
            keys: vec![protocol::sas::decode_key(&key)?],
        }],
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let cfg = BrokerConfig::new("127.0.0.1:0".parse()?);
    let broker = broker::start(cfg, auth, shutdown.clone(), &tasks).await?;
    let received = Arc::new(AtomicU64::new(0));
    subscribe_all(broker.addr(), &key, received.clone(), &tasks).await?;

    let devices: Vec<DeviceId> = (0..args.devices)
        .map(|idx| DeviceId::new(format!("mem-{idx:06}")))
        .collect::<Result<_, _>>()?;
    let jobs: Vec<JobId> =
        (0..4).map(|idx| JobId::new(format!("job-{idx}"))).collect::<Result<_, _>>()?;
    let events = broker.events().clone();
    let baseline = rss_kib();
    println!(
        "bounded={} devices={} rate={}/s seconds={} baseline_rss_kib={baseline}",
        !args.unbounded, args.devices, args.rate, args.seconds
    );
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (args.rate / 100).max(1);
    let mut n_sent: u64 = 0;
    let mut next_report = started + Duration::from_secs(5);
    let mut first = None;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        ticker.tick().await;
        for _ in 0..per_tick {
            events.publish(next_event(&args, &devices, &jobs, n_sent));
            n_sent += 1;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            report(started, n_sent, &received, &events, &mut first);
        }
    }
    report(started, n_sent, &received, &events, &mut first);
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn next_event(args: &Args, devices: &[DeviceId], jobs: &[JobId], n_sent: u64) -> HubEvent {
    let idx = usize::try_from(n_sent).unwrap_or(usize::MAX);
    if n_sent % 10 == 9 {
        let job = &jobs[idx % jobs.len()];
        let statistics = DeviceJobStatistics { device_count: n_sent, ..Default::default() };
        return HubEvent::job_progress(
            job,
            JobType::ScheduleUpdateTwin,
            JobStatus::Running,
            statistics,
        );
    }
    let device_id = if args.unbounded {
        // A new topic for every message: what rumqttd must never be fed.
        DeviceId::new(format!("once-{n_sent:012}")).unwrap()
    } else {
        devices[idx % devices.len()].clone()
    };
    HubEvent::Telemetry(Box::new(TelemetryEvent {
        device_id,
        module_id: None,
        properties: PropertyBag::new().with("$.ct", "application/json"),
        body: Bytes::from_static(br#"{"temperature":21.5,"humidity":40}"#),
        enqueued_at: Utc::now(),
    }))
}

/// RSS and message count at the first report: growth after it is the steady-state slope.
struct FirstReport {
    rss_kib: u64,
    n_sent: u64,
}

fn report(
    started: Instant,
    n_sent: u64,
    received: &AtomicU64,
    events: &hub::events::Events,
    first: &mut Option<FirstReport>,
) {
    let rss = rss_kib();
    let stats = events.stats();
    let first = first.get_or_insert(FirstReport { rss_kib: rss, n_sent });
    let grown_kib = rss.saturating_sub(first.rss_kib);
    let slope = match n_sent.saturating_sub(first.n_sent) {
        0 => 0.0,
        n_since => grown_kib as f64 * 1024.0 / n_since as f64,
    };
    println!(
        "t={:>4}s sent={n_sent} published={} received={} dropped={} rss_kib={rss} \
         grown_since_first_kib={grown_kib} bytes_per_message_since_first={slope:.1}",
        started.elapsed().as_secs(),
        stats.published,
        received.load(Ordering::Relaxed),
        stats.dropped,
    );
}

/// A `#` subscriber that counts what it receives.
async fn subscribe_all(
    addr: std::net::SocketAddr,
    key: &str,
    received: Arc<AtomicU64>,
    tasks: &TaskTracker,
) -> Result<(), BoxError> {
    let expiry = u64::try_from(Utc::now().timestamp())? + 24 * 3600;
    let token = protocol::sas::generate(HOST, key, Some("iothubowner"), expiry)?;
    let mut options = MqttOptions::new("memory-subscriber", addr.ip().to_string(), addr.port());
    options.set_credentials("iothubowner", token);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe("#", QoS::AtMostOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await? {
            break;
        }
    }
    tasks.spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(_)) = event {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

/// This process's resident set size in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
