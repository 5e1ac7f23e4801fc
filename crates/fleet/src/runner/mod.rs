//! [`run`]: register a fleet, connect it at the ramp rate, let it behave, and disconnect it cleanly.
//!
//! The runner owns a `TaskTracker` with one task per device (plus each device's `device::Client`
//! driver) and a child `CancellationToken` per device. It stops on the caller's token or after
//! [`FleetConfig::duration`], then cancels every device (each sends MQTT DISCONNECT) and waits.
//! Live numbers go to the caller's [`FleetStats`]; ground truth to the `record` file. It does not
//! read argv or signals, print, or raise process limits (the cli does), and it talks to devices only
//! through `device`'s public API.

mod device;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::connection_string::{DeviceConnectionString, ServiceConnectionString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{self, LimitError};
use crate::plan::DevicePlan;
use crate::record::{RecordError, Recorder};
use crate::registration::{Credentials, Registrar, RegistrationError, DEFAULT_CONCURRENCY};
use crate::stats::{FleetStats, Phase, StatsSnapshot};

/// The default MQTT-over-TLS port (what the SDKs use).
pub const MQTT_TLS_PORT: u16 = 8883;

/// Where the devices come from.
#[derive(Debug, Clone)]
pub enum Target {
    /// Register the profile's devices through the registry REST API with this service policy.
    Registry {
        /// The service connection string (`HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`).
        service: ServiceConnectionString,
        /// REST base URL; `None` is `https://{HostName}`.
        rest_url: Option<String>,
    },
    /// Use existing devices (e.g. on a real Azure IoT Hub): device `k` of the plan uses connection
    /// string `k`. Tags are not set (there is no service credential).
    Devices(Vec<DeviceConnectionString>),
}

/// Resolved configuration of one run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The hub and the device identities.
    pub target: Target,
    /// Where MQTT connects; `None` resolves `{HostName}:8883`.
    pub mqtt_addr: Option<SocketAddr>,
    /// TLS for MQTT (`false` only for hubsim's plain listener).
    pub mqtt_tls: bool,
    /// Trusted CA (PEM) for MQTT and REST; without it MQTT trusts the public web PKI roots (a real hub).
    pub ca_pem: Option<Vec<u8>>,
    /// Name verified against the MQTT server certificate; `None` is the hub host name.
    pub tls_server_name: Option<String>,
    /// Source addresses devices bind before connecting, assigned round-robin by device index.
    pub source_addrs: Vec<IpAddr>,
    /// Ground-truth JSON lines file.
    pub record: Option<PathBuf>,
    /// Stop after this long (from the start of the ramp); `None` runs until cancelled.
    pub duration: Option<Duration>,
    /// Devices connected per second during ramp-up (the cli passes the profile's `connect_rate`
    /// unless overridden).
    pub connect_rate: f64,
    /// Registry requests in flight.
    pub registration_concurrency: usize,
    /// MQTT keep-alive of every device.
    pub keep_alive: Duration,
    /// Whether to check open-file and port limits before starting.
    pub check_limits: bool,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetReport {
    /// Devices in the run.
    pub devices: u64,
    /// Time spent registering.
    pub registration: Duration,
    /// Time from the first to the last device task start (the ramp).
    pub ramp: Duration,
    /// Time from the start of the ramp to the end of the run.
    pub running: Duration,
    /// The final counters.
    pub stats: StatsSnapshot,
}

/// Why a run could not start (or its record could not be written).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The configuration is unusable.
    #[error("bad fleet configuration: {0}")]
    Config(String),
    /// The run does not fit this process.
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// Registration failed.
    #[error("registration failed: {0}")]
    Registration(#[from] RegistrationError),
    /// The record file cannot be created.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl FleetConfig {
    /// A configuration with defaults: TLS on, MQTT at `{HostName}:8883`, 64 registry requests in flight,
    /// 60 s keep-alive, limits checked, no record, no duration.
    pub fn new(target: Target, connect_rate: f64) -> FleetConfig {
        FleetConfig {
            target,
            mqtt_addr: None,
            mqtt_tls: true,
            ca_pem: None,
            tls_server_name: None,
            source_addrs: Vec::new(),
            record: None,
            duration: None,
            connect_rate,
            registration_concurrency: DEFAULT_CONCURRENCY,
            keep_alive: ::device::DEFAULT_KEEP_ALIVE,
            check_limits: true,
        }
    }

    /// The hub host name devices put in their username and SAS (without any `:port`).
    pub fn hub_host(&self) -> Option<String> {
        let host = match &self.target {
            Target::Registry { service, .. } => service.host_name.clone(),
            Target::Devices(devices) => devices.first()?.host_name.clone(),
        };
        Some(strip_port(&host).to_owned())
    }
}

/// Registers `plans`, connects them at the ramp rate, runs their behaviours until `shutdown` is
/// cancelled or `cfg.duration` passes, then disconnects every device and returns the report.
///
/// # Errors
/// [`FleetError`] when the run cannot start: bad config, limits, registration or record file.
/// Per-device failures never end the run; they are counted in `stats`.
pub async fn run(
    cfg: FleetConfig,
    plans: Vec<DevicePlan>,
    shutdown: CancellationToken,
    stats: Arc<FleetStats>,
) -> Result<FleetReport, FleetError> {
    let devices = plans.len() as u64;
    stats.devices.store(devices, std::sync::atomic::Ordering::Relaxed);
    if cfg.check_limits {
        let capacity = limits::check(devices, cfg.source_addrs.len())?;
        tracing::info!(devices, max_devices = capacity.max_devices, "limits checked: {capacity}");
    }
    if !(cfg.connect_rate.is_finite() && cfg.connect_rate > 0.0) {
        return Err(FleetError::Config(format!(
            "connect rate must be > 0, got {}",
            cfg.connect_rate
        )));
    }
    let host = cfg
        .hub_host()
        .ok_or_else(|| FleetError::Config("the devices file holds no device".to_owned()))?;
    let mqtt_addr = resolve_mqtt_addr(&cfg, &host).await?;
    let tls = tls_config(&cfg, &host)?;
    stats.set_phase(Phase::Registering);
    let registration_started = Instant::now();
    // Ctrl-C during a long registration ends the run at once; what is registered stays registered.
    let credentials = tokio::select! {
        res = credentials(&cfg, &plans, &stats) => res?,
        () = shutdown.cancelled() => {
            stats.set_phase(Phase::Finished);
            let registration = registration_started.elapsed();
            return Ok(FleetReport { devices, registration, ramp: Duration::ZERO, running: Duration::ZERO, stats: stats.snapshot() });
        }
    };
    let registration = registration_started.elapsed();
    tracing::info!(devices, ?registration, %mqtt_addr, tls = cfg.mqtt_tls, "fleet registered; connecting");

    let tracker = TaskTracker::new();
    let recorder = match &cfg.record {
        Some(path) => Recorder::create(path, &tracker).await?,
        None => Recorder::disabled(),
    };
    let ctx = Arc::new(device::RunContext {
        host,
        mqtt_addr,
        tls,
        keep_alive: cfg.keep_alive,
        started: Instant::now(),
        stats: stats.clone(),
        recorder,
        tracker: tracker.clone(),
    });
    stats.set_phase(Phase::Running);
    let stop = shutdown.child_token();
    let deadline = cfg.duration.map(|d| ctx.started + d);
    let ramp = ramp(&cfg, plans, credentials, &ctx, &stop, deadline).await;
    if !stop.is_cancelled() {
        wait_for_end(&stop, deadline).await;
    }
    stats.set_phase(Phase::Stopping);
    stop.cancel();
    let running = ctx.started.elapsed();
    drop(ctx);
    tracker.close();
    tracker.wait().await;
    stats.set_phase(Phase::Finished);
    Ok(FleetReport { devices, registration, ramp, running, stats: stats.snapshot() })
}

/// Starts one device task per plan, `1 / connect_rate` apart; returns the ramp's length.
async fn ramp(
    cfg: &FleetConfig,
    plans: Vec<DevicePlan>,
    credentials: Vec<Credentials>,
    ctx: &Arc<device::RunContext>,
    stop: &CancellationToken,
    deadline: Option<Instant>,
) -> Duration {
    let step = Duration::from_secs_f64(1.0 / cfg.connect_rate);
    for (slot, (plan, creds)) in plans.into_iter().zip(credentials).enumerate() {
        let due = ctx.started + step.mul_f64(slot as f64);
        tokio::select! {
            () = stop.cancelled() => break,
            () = sleep_until_opt(deadline) => break,
            () = tokio::time::sleep_until(due) => {}
        }
        let local_addr = match cfg.source_addrs.len() {
            0 => None,
            n => Some(cfg.source_addrs[(plan.index % n as u64) as usize]),
        };
        let device = device::SimDevice::new(ctx.clone(), Arc::new(plan), creds, local_addr);
        ctx.tracker.spawn(device.run(stop.child_token()));
    }
    ctx.started.elapsed()
}

async fn wait_for_end(stop: &CancellationToken, deadline: Option<Instant>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = sleep_until_opt(deadline) => {}
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn credentials(
    cfg: &FleetConfig,
    plans: &[DevicePlan],
    stats: &FleetStats,
) -> Result<Vec<Credentials>, FleetError> {
    match &cfg.target {
        Target::Registry { service, rest_url } => {
            let mut registrar =
                Registrar::new(service.clone(), rest_url.clone(), cfg.ca_pem.as_deref())?;
            registrar.concurrency = cfg.registration_concurrency;
            Ok(registrar.register_all(plans, stats).await?)
        }
        Target::Devices(devices) => {
            if devices.len() < plans.len() {
                return Err(FleetError::Config(format!(
                    "the devices file has {} devices but the plan needs {}",
                    devices.len(),
                    plans.len()
                )));
            }
            Ok(plans
                .iter()
                .map(|plan| &devices[plan.index as usize % devices.len()])
                .map(|d| Credentials {
                    device_id: d.device_id.clone(),
                    primary_key: d.shared_access_key.clone(),
                })
                .collect())
        }
    }
}

async fn resolve_mqtt_addr(cfg: &FleetConfig, host: &str) -> Result<SocketAddr, FleetError> {
    if let Some(addr) = cfg.mqtt_addr {
        return Ok(addr);
    }
    let gateway = match &cfg.target {
        Target::Devices(devices) => devices.first().and_then(|d| d.gateway_host_name.clone()),
        Target::Registry { .. } => None,
    };
    let target = gateway.unwrap_or_else(|| format!("{host}:{MQTT_TLS_PORT}"));
    let target = if target.contains(':') { target } else { format!("{target}:{MQTT_TLS_PORT}") };
    let mut addrs = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|e| FleetError::Config(format!("cannot resolve mqtt address {target}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| FleetError::Config(format!("mqtt address {target} resolves to nothing")))
}

fn tls_config(cfg: &FleetConfig, host: &str) -> Result<Option<::device::TlsConfig>, FleetError> {
    if !cfg.mqtt_tls {
        return Ok(None);
    }
    // A given CA (a local hub's ca.pem) is trusted alone; without one, the public roots a real
    // Azure IoT Hub's certificate chains to.
    let tls = match cfg.ca_pem.as_deref() {
        Some(pem) => ::device::TlsConfig::from_ca_pem(pem),
        None => ::device::TlsConfig::public_roots(),
    }
    .map_err(|e| FleetError::Config(e.to_string()))?;
    Ok(Some(tls.with_server_name(cfg.tls_server_name.clone().unwrap_or_else(|| host.to_owned()))))
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
        _ => host,
    }
}
