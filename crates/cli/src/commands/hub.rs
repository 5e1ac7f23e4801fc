//! `hubsim hub`: binds the listeners, starts `hub::Hub`, prints the service connection string, writes
//! `DIR/endpoints.json` for local client commands, and on Ctrl-C / SIGTERM cancels the root token and
//! drains within the grace period.
//!
//! The flags are a contract (external tests start the hub this way); add flags, never rename them.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::{resolve_hub, HubPlan, HubSchema, ListenAddr, LocalEndpoints, ENDPOINTS_FILE};
use crate::output::Output;

/// The `hub` command's flags (the contract; the help text is on `args::Command::Hub`).
#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    /// Holds the database, the owner key, the TLS material and endpoints.json.
    #[arg(long, value_name = "DIR", default_value = hub::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The hub's host name: what connection strings, SAS tokens and MQTT usernames must name.
    #[arg(long, value_name = "NAME", default_value = hub::config::DEFAULT_HOST_NAME)]
    host_name: String,
    /// MQTT over TLS for devices (ADDR or `off`).
    #[arg(long, value_name = "ADDR", default_value = hub::config::DEFAULT_MQTTS_ADDR)]
    mqtts: ListenAddr,
    /// REST over TLS for back ends (ADDR or `off`).
    #[arg(long, value_name = "ADDR", default_value = hub::config::DEFAULT_HTTPS_ADDR)]
    https: ListenAddr,
    /// Plain MQTT for local tools (ADDR or `off`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_MQTT_ADDR)]
    mqtt: ListenAddr,
    /// Plain HTTP REST for local tools; hubsim's own commands use it (ADDR or `off`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP_ADDR)]
    http: ListenAddr,
    /// The back-end event stream, an MQTT broker for `hubsim events` and any MQTT client; log in
    /// with the policy name as username and a service SAS token as password (ADDR or `off`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_EVENTS_ADDR)]
    events: ListenAddr,
    /// Server certificate chain (PEM) instead of the generated one; needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The iothubowner key (base64); default: DIR/owner.key, generated at first start.
    #[arg(long, value_name = "BASE64")]
    owner_key: Option<String>,
    /// Reproduce an IoT Hub tier's job limits and pacing (free, s1, s2, s3); default: unthrottled.
    #[arg(long, value_name = "TIER")]
    tier: Option<hub::jobs::Tier>,
    /// Purchased units of --tier.
    #[arg(long, value_name = "N", requires = "tier")]
    units: Option<NonZeroU32>,
    /// Seconds in-flight work gets to finish after Ctrl-C / SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = hub::config::DEFAULT_SHUTDOWN_GRACE.as_secs())]
    shutdown_grace: u64,
}

/// Default plain MQTT address.
const DEFAULT_MQTT_ADDR: &str = "127.0.0.1:1883";
/// Default plain HTTP address.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default event-stream address (`hub::broker::DEFAULT_EVENTS_ADDR`).
const DEFAULT_EVENTS_ADDR: &str = "127.0.0.1:1884";

/// Runs the hub until a signal arrives.
pub(crate) async fn run(args: HubArgs, out: &Output) -> anyhow::Result<()> {
    let plan = resolve_hub(args.into_schema())?;
    let listeners = bind(&plan).await?;
    let data_dir = plan.config.data_dir.clone();
    let grace = plan.config.shutdown_grace;
    let shutdown = CancellationToken::new();
    let handle = hub::Hub::spawn(plan.config, listeners, shutdown.clone())
        .await
        .context("could not start the hub")?;
    let addrs = handle.addrs();
    tracing::info!(mqtts = ?addrs.mqtts, mqtt = ?addrs.mqtt, https = ?addrs.https, http = ?addrs.http, events = ?addrs.events, "listening");
    let endpoints = LocalEndpoints {
        connection_string: handle.service_connection_string(),
        http_url: addrs.http.map(|addr| format!("http://{addr}")),
        https_url: addrs.https.map(|addr| format!("https://{addr}")),
        ca_file: handle.ca_pem().map(|_| data_dir.join(hub::tls::CA_FILE)),
        mqtts_addr: addrs.mqtts,
        mqtt_addr: addrs.mqtt,
        events_addr: addrs.events,
    };
    let endpoints_path = data_dir.join(ENDPOINTS_FILE);
    write_endpoints(&endpoints_path, &endpoints)?;
    out.line(&handle.service_connection_string());

    let signal = wait_for_signal().await;
    match &signal {
        Ok(name) => tracing::info!(signal = name, "stopping"),
        Err(err) => tracing::error!(%err, "could not wait for signals; stopping"),
    }
    shutdown.cancel();
    let drained = tokio::time::timeout(grace, handle.wait()).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "the hub did not drain within the grace period"
        );
    }
    if let Err(err) = std::fs::remove_file(&endpoints_path) {
        tracing::warn!(path = %endpoints_path.display(), %err, "could not remove the endpoints file");
    }
    signal.map(drop)
}

impl HubArgs {
    fn into_schema(self) -> HubSchema {
        HubSchema {
            data_dir: self.data_dir,
            host_name: self.host_name,
            mqtts: self.mqtts,
            https: self.https,
            mqtt: self.mqtt,
            http: self.http,
            events: self.events,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            owner_key: self.owner_key,
            tier: self.tier,
            units: self.units,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
        }
    }
}

async fn bind(plan: &HubPlan) -> anyhow::Result<hub::HubListeners> {
    Ok(hub::HubListeners {
        mqtts: bind_one("mqtts", plan.mqtts).await?,
        mqtt: bind_one("mqtt", plan.mqtt).await?,
        https: bind_one("https", plan.https).await?,
        http: bind_one("http", plan.http).await?,
    })
}

async fn bind_one(name: &str, addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener =
        listen_on(addr).with_context(|| format!("could not listen on {addr} (--{name})"))?;
    Ok(Some(listener))
}

/// Listen backlog of the hub's listeners: tokio's default (128, like std's) overflows when
/// thousands of devices connect at once, and each dropped SYN costs the device a 1 s retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`LISTEN_BACKLOG`]-deep accept queue.
pub(crate) fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("could not listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("could not listen for Ctrl-C").map(|()| "SIGINT"),
        _ = terminate.recv() => Ok("SIGTERM"),
    }
}

/// Writes the endpoints file readable by the owner only (it holds the owner key).
fn write_endpoints(path: &Path, endpoints: &LocalEndpoints) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text =
        serde_json::to_string_pretty(endpoints).context("could not encode the endpoints file")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}
