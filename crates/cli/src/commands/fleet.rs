//! `hubsim fleet run PROFILE`: registers a fleet profile's devices on a hub and runs them (through the
//! `fleet` library) until Ctrl-C / SIGTERM or `--duration`, printing a summary line every few seconds
//! and the final counters.
//!
//! This is where the process's open-file limit is raised to its hard limit (each device holds a
//! socket); the fleet library only checks that the run fits. Devices reach the local hub through the
//! MQTT listener named in its `endpoints.json`, or `HostName:8883` for another hub.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fleet::{FleetConfig, FleetReport, FleetStats, Shard, StatsSnapshot, Target};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::args::ConnectionArgs;
use crate::config::{local_endpoints, parse_duration, resolve_connection, ProcessEnv, UsageError};
use crate::output::{Output, Table};

/// Fleet commands.
#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Register and run a fleet profile's simulated devices until Ctrl-C or --duration.
    Run(RunArgs),
}

/// `fleet run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The fleet profile (TOML), e.g. fleet-profiles/building-43.toml.
    profile: PathBuf,
    /// Seed of every random choice the devices make (same profile + seed = same run).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Run only this shard of the fleet (I/N), to spread it over processes.
    #[arg(long, value_name = "I/N", default_value = "0/1")]
    shard: Shard,
    /// Stop after this long (e.g. 90s, 10m); default: until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// Devices connected per second during ramp-up (default: the profile's connect_rate).
    #[arg(long, value_name = "PER_SEC")]
    connect_rate: Option<f64>,
    /// Write every device's ground truth (calls, answers, reboots) as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// MQTT address devices connect to (default: the local hub's listener, or HostName:8883).
    #[arg(long, value_name = "ADDR")]
    mqtt_addr: Option<SocketAddr>,
    /// Use the local hub's plain MQTT listener instead of MQTT over TLS.
    #[arg(long)]
    plain_mqtt: bool,
    /// Local source addresses devices bind, for more than ~28k devices (e.g. 127.0.0.2-127.0.0.9).
    #[arg(long, value_name = "ADDRS")]
    source_addrs: Option<String>,
    /// Seconds between summary lines.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    summary_every: u64,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs a fleet command.
pub(crate) async fn run(command: FleetCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        FleetCommand::Run(args) => run_fleet(args, out).await,
    }
}

async fn run_fleet(args: RunArgs, out: &Output) -> anyhow::Result<()> {
    raise_open_file_limit();
    let profile = fleet::load(&args.profile).map_err(|err| UsageError(err.to_string()))?;
    let plans = profile.expand(args.seed, args.shard).map_err(|err| UsageError(err.to_string()))?;
    let cfg = fleet_config(&args, profile.connect_rate)?;
    tracing::info!(profile = %profile.name, devices = plans.len(), seed = args.seed, shard = %args.shard, "starting the fleet");

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(cancel_on_signal(shutdown.clone()));
    let stats = Arc::new(FleetStats::default());
    let fleet_run = fleet::run(cfg, plans, shutdown.clone(), stats.clone());
    tokio::pin!(fleet_run);
    let mut ticker = tokio::time::interval(Duration::from_secs(args.summary_every.max(1)));
    ticker.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut fleet_run => break result,
            _ = ticker.tick() => {
                if !out.is_json() {
                    out.line(&summary_line(&stats.snapshot()));
                }
            }
        }
    };
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    let report = result.context("the fleet run failed")?;
    let (table, value) = report_output(&profile.name, &report);
    out.table(&table, &value);
    Ok(())
}

/// Resolves where devices register and connect.
fn fleet_config(args: &RunArgs, profile_rate: f64) -> anyhow::Result<FleetConfig> {
    let service = resolve_connection(&args.connection, &ProcessEnv)?;
    let local = local_endpoints(&args.connection, &ProcessEnv)?;
    let target = Target::Registry {
        service: service.connection.clone(),
        rest_url: Some(service.base_url.to_string()),
    };
    let mut cfg = FleetConfig::new(target, args.connect_rate.unwrap_or(profile_rate));
    cfg.ca_pem = service.ca_pem.clone();
    cfg.mqtt_tls = !args.plain_mqtt;
    cfg.mqtt_addr = match (args.mqtt_addr, &local) {
        (Some(addr), _) => Some(addr),
        (None, Some(endpoints)) if args.plain_mqtt => {
            Some(endpoints.mqtt_addr.ok_or_else(|| {
                UsageError("the local hub has no plain MQTT listener (--mqtt off)".into())
            })?)
        }
        (None, Some(endpoints)) => endpoints.mqtts_addr,
        (None, None) => None,
    };
    if let Some(endpoints) = &local {
        // The local hub's CA signs its MQTT certificate too; HTTP-only endpoints did not load it.
        if cfg.ca_pem.is_none() {
            if let Some(ca) = &endpoints.ca_file {
                cfg.ca_pem = Some(crate::config::read_file(ca)?);
            }
        }
    }
    if let Some(text) = &args.source_addrs {
        cfg.source_addrs =
            fleet::limits::parse_source_addrs(text).map_err(|err| UsageError(err.to_string()))?;
    }
    cfg.duration = args.duration.as_deref().map(parse_duration).transpose()?;
    cfg.record = args.record.clone();
    Ok(cfg)
}

/// Raises the soft open-file limit to the hard one: each device holds a socket.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit raised"),
        Err(err) => tracing::warn!(%err, "could not raise the open-file limit"),
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let mut terminate = match terminate {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!(%err, "could not listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping the fleet");
    shutdown.cancel();
}

/// `running: 980/1000 connected, 15 offline, 3 connect failures; calls 120 (ok 110, error 6, silent 4)`.
fn summary_line(stats: &StatsSnapshot) -> String {
    format!(
        "{:?}: {}/{} connected, {} offline, {} connect failures; calls {} (ok {}, error {}, silent {}); desired {} (acked {})",
        stats.phase,
        stats.connected,
        stats.devices,
        stats.offline,
        stats.connect_failures,
        stats.calls,
        stats.calls_ok,
        stats.calls_error,
        stats.calls_silent,
        stats.desired,
        stats.desired_acked
    )
    .to_lowercase()
}

fn report_output(profile: &str, report: &FleetReport) -> (Table, serde_json::Value) {
    let stats = &report.stats;
    let rows: Vec<(&str, String)> = vec![
        ("profile", profile.to_owned()),
        ("devices", report.devices.to_string()),
        ("registration", format!("{:.1?}", report.registration)),
        ("ramp", format!("{:.1?}", report.ramp)),
        ("running", format!("{:.1?}", report.running)),
        ("connects", stats.connects.to_string()),
        ("connect failures", stats.connect_failures.to_string()),
        ("method calls", stats.calls.to_string()),
        ("answered ok", stats.calls_ok.to_string()),
        ("answered with error", stats.calls_error.to_string()),
        ("left unanswered", stats.calls_silent.to_string()),
        ("reboots", stats.reboots.to_string()),
        ("desired patches", stats.desired.to_string()),
        ("desired acked", stats.desired_acked.to_string()),
        ("telemetry", stats.telemetry.to_string()),
        ("device errors", stats.device_errors.to_string()),
        ("handler p50", format!("{:.1?}", stats.handler_p50)),
        ("handler p99", format!("{:.1?}", stats.handler_p99)),
    ];
    let mut table = Table::new(["metric", "value"]);
    for (name, value) in &rows {
        table.row([(*name).to_owned(), value.clone()]);
    }
    let value = json!({
        "profile": profile,
        "devices": report.devices,
        "registrationSecs": report.registration.as_secs_f64(),
        "rampSecs": report.ramp.as_secs_f64(),
        "runningSecs": report.running.as_secs_f64(),
        "connects": stats.connects,
        "connectFailures": stats.connect_failures,
        "calls": stats.calls,
        "callsOk": stats.calls_ok,
        "callsError": stats.calls_error,
        "callsSilent": stats.calls_silent,
        "reboots": stats.reboots,
        "desired": stats.desired,
        "desiredAcked": stats.desired_acked,
        "telemetry": stats.telemetry,
        "deviceErrors": stats.device_errors,
        "handlerP50Ms": stats.handler_p50.as_secs_f64() * 1000.0,
        "handlerP99Ms": stats.handler_p99.as_secs_f64() * 1000.0,
    });
    (table, value)
}
