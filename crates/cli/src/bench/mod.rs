//! `hubsim bench`: hubsim's own speed against the machine's ceiling, in one process tree and one run.
//!
//! For each device count the parent (this process) runs, on a hub of its own ([`BenchHub`]): the
//! connect storm and memory per connection (devices in a child process, [`child`]), one method job
//! and one twin job over every device ([`jobs`]), scheduled jobs' start delay, and direct methods over
//! REST ([`rest`]); then the ceiling, plain TCP with the same connections, window and bytes
//! ([`ceiling`]). Once, the selective tag query over many twins ([`query`]). [`report`] turns the
//! results into the table, the JSON and the closing `ratio method-job/ceiling:` line.
//!
//! Absolute numbers drift on a shared machine; the ratio of the method job to the ceiling, measured
//! minutes apart in the same run, is the figure to compare. Nothing here asserts a speed: targets are
//! printed beside the numbers, and `--quick` only shows the harness still runs.

mod ceiling;
mod child;
mod jobs;
mod query;
mod report;
mod rest;
mod sys;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::connection_string::ServiceConnectionString;
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use child::{run as run_child, ChildMode};

use crate::config::UsageError;
use crate::output::Output;

/// The hub host name devices and SAS tokens name.
const HOST: &str = "hubsim-bench.local";
/// Direct-method calls in flight in the REST measurement.
const REST_CONCURRENCY: usize = 64;
/// File descriptors a process keeps for itself beyond one per device (listeners, store, stdio).
pub(crate) const FD_HEADROOM: u64 = 100;
/// Registry writers running at once while devices are registered.
const REGISTER_WORKERS: usize = 64;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchOptions {
    /// One full set of measurements per count.
    pub(crate) device_counts: Vec<usize>,
    /// Small and short: shows the harness runs, in seconds.
    pub(crate) quick: bool,
}

/// Everything measured at one device count.
#[derive(Debug, Clone)]
pub(crate) struct DeviceRun {
    devices: usize,
    ceiling: ceiling::Ceiling,
    method_job: jobs::JobTiming,
    twin_job: jobs::JobTiming,
    rest: rest::RestMethods,
    accuracy: Vec<Duration>,
    connect_time: Duration,
    hub_rss_kib: (u64, u64),
    fleet: child::Ready,
    counts: child::Counts,
    hub_open_files: sys::OpenFiles,
}

/// Runs the benchmark and prints the table (or JSON), then the ratio line.
pub(crate) async fn run(options: BenchOptions, out: &Output) -> anyhow::Result<()> {
    let hub_open_files = sys::raise_open_files();
    if let Some(&too_many) =
        options.device_counts.iter().find(|&&n| n as u64 + FD_HEADROOM > hub_open_files.soft)
    {
        return Err(UsageError(format!(
            "{too_many} devices need {} open files in the hub process and as many in the device process; the limit here is {} (hard {}); raise it or use fewer devices",
            too_many as u64 + FD_HEADROOM,
            hub_open_files.soft,
            hub_open_files.hard
        ))
        .into());
    }
    let mut runs = Vec::with_capacity(options.device_counts.len());
    for &n_devices in &options.device_counts {
        tracing::info!(devices = n_devices, "benchmark: devices, jobs, REST methods, ceiling");
        runs.push(run_devices(n_devices, &options, hub_open_files).await?);
    }
    let (n_twins, query_runs) = if options.quick { (2_000, 5) } else { (100_000, 50) };
    tracing::info!(twins = n_twins, "benchmark: selective query");
    let query = query::measure(n_twins, query_runs).await?;
    report::print(&runs, &query, options.quick, out);
    Ok(())
}

async fn run_devices(
    n_devices: usize,
    options: &BenchOptions,
    hub_open_files: sys::OpenFiles,
) -> anyhow::Result<DeviceRun> {
    let (rest_time, ceiling_time, samples) = if options.quick {
        (Duration::from_millis(500), Duration::from_millis(300), 3)
    } else {
        (Duration::from_secs(3), Duration::from_secs(2), 10)
    };
    let hub = BenchHub::start().await?;
    register(hub.handle.registry(), n_devices).await?;
    let rss_before = sys::rss_kib()?;
    let mode = ChildMode::Mqtt { host: HOST.to_owned() };
    let devices = child::DeviceProcess::start(&mode, hub.mqtt, n_devices).await?;
    wait_connected(&hub.handle, n_devices).await?;
    let rss_after = sys::rss_kib()?;
    let connect_time = devices.ready.connect_time;
    let fleet = devices.ready;
    tracing::debug!(pid = ?devices.id(), "device process ready");

    let jobs = hub.handle.jobs();
    let records =
        jobs::run_job(jobs, &format!("bench-method-{n_devices}"), &jobs::method_job("*", None))
            .await?;
    let method_job = jobs::timing(&records)?;
    let records =
        jobs::run_job(jobs, &format!("bench-twin-{n_devices}"), &jobs::twin_job("1")).await?;
    let twin_job = jobs::timing(&records)?;
    let accuracy = jobs::schedule_accuracy(jobs, samples, &n_devices.to_string()).await?;
    let rest =
        rest::measure(hub.http, hub.connection(), n_devices, REST_CONCURRENCY, rest_time).await?;
    let counts = devices.finish().await?;
    hub.stop().await;

    let window = hub::jobs::config::DEFAULT_MAX_IN_FLIGHT;
    let sizes = ceiling::message_sizes(jobs::METHOD_NAME, jobs::METHOD_PAYLOAD, br#"{"ok":true}"#);
    let ceiling = ceiling::measure(n_devices, window, sizes, ceiling_time).await?;
    Ok(DeviceRun {
        devices: n_devices,
        ceiling,
        method_job,
        twin_job,
        rest,
        accuracy,
        connect_time,
        hub_rss_kib: (rss_before, rss_after),
        fleet,
        counts,
        hub_open_files,
    })
}

/// The id of benchmark device `device_idx`.
pub(crate) fn device_id(device_idx: usize) -> anyhow::Result<DeviceId> {
    Ok(DeviceId::new(format!("bench-{device_idx:05}"))?)
}

/// The SAS key of benchmark device `device_idx`: derived from the index, so the device process needs
/// no list of keys.
pub(crate) fn device_key(device_idx: usize) -> String {
    protocol::sas::encode_key(format!("hubsim bench device key {device_idx:08}").as_bytes())
}

/// A hub on loopback ports in a temporary directory: plain MQTT and plain HTTP.
pub(crate) struct BenchHub {
    pub(crate) handle: HubHandle,
    pub(crate) mqtt: SocketAddr,
    pub(crate) http: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl BenchHub {
    /// Starts the hub.
    pub(crate) async fn start() -> anyhow::Result<BenchHub> {
        let dir = tempfile::tempdir().context("could not create a temporary directory")?;
        let listeners = HubListeners {
            mqtt: Some(listen().context("could not bind the MQTT listener")?),
            http: Some(listen().context("could not bind the HTTP listener")?),
            ..HubListeners::default()
        };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(HubConfig::new(dir.path(), HOST), listeners, shutdown.clone())
            .await
            .context("could not start the hub")?;
        let addrs = handle.addrs();
        let mqtt = addrs.mqtt.context("the hub has no MQTT listener")?;
        let http = addrs.http.context("the hub has no HTTP listener")?;
        Ok(BenchHub { handle, mqtt, http, shutdown, _dir: dir })
    }

    /// The owner's connection string.
    pub(crate) fn connection(&self) -> ServiceConnectionString {
        ServiceConnectionString {
            host_name: HOST.to_owned(),
            shared_access_key_name: hub::config::OWNER_POLICY.to_owned(),
            shared_access_key: self.handle.owner_key().to_owned(),
        }
    }

    /// Stops the hub and waits for it to drain.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.handle.wait().await;
    }
}

/// A loopback listener on a free port with the hub's deep accept queue (a connect storm overflows
/// tokio's default backlog of 128).
pub(crate) fn listen() -> std::io::Result<TcpListener> {
    crate::commands::hub::listen_on(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Registers devices `0..n_devices` with their derived keys, straight in the registry.
async fn register(registry: &hub::registry::Registry, n_devices: usize) -> anyhow::Result<()> {
    let registry = Arc::new(registry.clone());
    let mut workers = JoinSet::new();
    for worker_idx in 0..REGISTER_WORKERS {
        let registry = registry.clone();
        workers.spawn(async move {
            for device_idx in (worker_idx..n_devices).step_by(REGISTER_WORKERS) {
                let key = device_key(device_idx);
                let body = format!(
                    r#"{{"authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
                );
                let request = DeviceRequest::parse(body.as_bytes())?;
                registry.create_device(&device_id(device_idx)?, &request).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a registry writer panicked")??;
    }
    Ok(())
}

/// Waits until the hub counts `n_devices` live sessions (the child saw its CONNACKs already).
async fn wait_connected(hub: &HubHandle, n_devices: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.sessions().connected_count() < n_devices {
        if Instant::now() > deadline {
            bail!(
                "the hub has {} of {n_devices} devices connected",
                hub.sessions().connected_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
