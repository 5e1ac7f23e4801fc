//! Fleet benchmark: memory per device and connect rate.
//!
//! `cargo run -p fleet --example bench_fleet -- [PROFILE] [CONNECT_RATE] [SHARD I/N]` starts a hub in a child
//! process (this same binary, `hub` mode: plain MQTT and HTTP on loopback) so the fleet's memory and
//! open files are measured alone, registers the profile's devices through REST, connects them at
//! CONNECT_RATE (default: the profile's), and prints registration time, connect rate and resident
//! memory per connected device. Default profile: `fleet-profiles/load-10k.toml`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark binary reports on stdout and fails loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fleet::{FleetConfig, FleetStats, Shard, Target};
use hub::{Hub, HubConfig, HubListeners};
use protocol::connection_string::ServiceConnectionString;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HOST: &str = "bench-fleet.azure-devices.net";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("hub") => runtime.block_on(run_hub(&args[1..])),
        _ => runtime.block_on(run_bench(&args)),
    }
}

async fn run_hub(args: &[String]) -> Result<(), BoxError> {
    let [dir] = args else { return Err("usage: hub DIR".into()) };
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let listeners = HubListeners {
        mqtt: Some(bind().await?),
        http: Some(bind().await?),
        ..HubListeners::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Hub::spawn(HubConfig::new(dir, HOST), listeners, shutdown.clone()).await?;
    let addrs = handle.addrs();
    println!(
        "READY {} {} {}",
        handle.owner_key(),
        addrs.mqtt.ok_or("no mqtt")?,
        addrs.http.ok_or("no http")?
    );
    std::io::stdout().flush()?;
    // Runs until the parent closes stdin.
    let tracker = TaskTracker::new();
    tracker
        .spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                line.clear();
            }
        })
        .await?;
    shutdown.cancel();
    handle.wait().await;
    Ok(())
}

async fn run_bench(args: &[String]) -> Result<(), BoxError> {
    let profile_path = args.first().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleet-profiles/load-10k.toml"),
        PathBuf::from,
    );
    let profile = fleet::load(&profile_path)?;
    let rate: f64 = args.get(1).map(|r| r.parse()).transpose()?.unwrap_or(profile.connect_rate);
    let dir = tempfile::tempdir()?;
    let (mut child, owner_key, mqtt, http) = start_hub(dir.path())?;

    let rss_start = rss_kib();
    let shard: Shard = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(Shard::ALL);
    let plans = profile.expand(1, shard)?;
    let n = plans.len() as u64;
    let rss_plans = rss_kib();
    let service = ServiceConnectionString {
        host_name: HOST.to_owned(),
        shared_access_key_name: "iothubowner".to_owned(),
        shared_access_key: owner_key,
    };
    let mut cfg = FleetConfig::new(
        Target::Registry { service, rest_url: Some(format!("http://{http}")) },
        rate,
    );
    cfg.mqtt_addr = Some(mqtt);
    cfg.mqtt_tls = false;
    let connecting = plans.iter().filter(|p| !p.schedule().never_connects()).count() as u64;
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let started = Instant::now();
    let run = tracker.spawn(fleet::run(cfg, plans, stop.clone(), stats.clone()));
    let mut registered_at = None;
    loop {
        let snap = stats.snapshot();
        if registered_at.is_none() && snap.registered == n {
            registered_at = Some(started.elapsed());
        }
        if snap.connected >= connecting {
            break;
        }
        if run.is_finished() {
            drop(child.stdin.take());
            return Err(format!("fleet run ended: {:?}", run.await?.err()).into());
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!("fleet did not connect: {snap:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_connected = started.elapsed();
    let registration = registered_at.unwrap_or(all_connected);
    let connect_time = all_connected.saturating_sub(registration);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_connected = rss_kib();
    stop.cancel();
    let report = run.await??;
    drop(child.stdin.take());
    let _ = child.wait();

    println!("profile            {} shard {shard}", profile_path.display());
    println!("devices            {n} ({connecting} connecting), ramp rate {rate}/s");
    println!(
        "registration       {:.1} s ({:.0} devices/s over REST)",
        registration.as_secs_f64(),
        n as f64 / registration.as_secs_f64()
    );
    println!(
        "connect            {:.1} s ({:.0} devices/s until all connected)",
        connect_time.as_secs_f64(),
        connecting as f64 / connect_time.as_secs_f64()
    );
    println!("rss                start {rss_start} KiB, plans {rss_plans} KiB, connected {rss_connected} KiB");
    println!(
        "memory per device  {:.1} KiB (plans {:.2} KiB)",
        (rss_connected - rss_start) as f64 / n as f64,
        (rss_plans - rss_start) as f64 / n as f64
    );
    println!("final              {:?}", report.stats);
    Ok(())
}

fn start_hub(
    dir: &Path,
) -> Result<(Child, String, std::net::SocketAddr, std::net::SocketAddr), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("hub")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    let ["READY", key, mqtt, http] = parts.as_slice() else {
        return Err(format!("hub said {line:?}").into());
    };
    Ok((child, (*key).to_owned(), mqtt.parse()?, http.parse()?))
}

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
