//! `hubsim events`: prints the hub's back-end event stream, one line per event.
//!
//! The stream is the hub's embedded MQTT broker (`hubsim hub --events`, default 127.0.0.1:1884).
//! This command logs in like any back end would — username = the policy name, password = a service
//! SAS token — subscribes to `--filter` (default `#`: telemetry, twin changes, connection state,
//! lifecycle and job progress; see docs/events.md) and prints each event until Ctrl-C.
//! It does not reconnect: a broker that goes away ends the command with an error.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::args::ConnectionArgs;
use crate::config::{local_endpoints, resolve_connection, ProcessEnv, UsageError};
use crate::output::Output;

/// Default event-stream address when neither `--events-addr` nor the local hub names one.
const DEFAULT_EVENTS_ADDR: &str = "127.0.0.1:1884";
/// Lifetime of the login token; the broker checks it at CONNECT only.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest event accepted from the broker.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The `events` command's flags.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// MQTT topic filter: e.g. `jobs/#`, `telemetry/+`, `twin-changes/b43-f3-0001` (default `#`).
    #[arg(long, value_name = "FILTER", default_value = "#")]
    filter: String,
    /// The event broker's address (default: the local hub's, else 127.0.0.1:1884).
    #[arg(long, value_name = "ADDR")]
    events_addr: Option<SocketAddr>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Subscribes and prints events until Ctrl-C.
pub(crate) async fn run(args: EventsArgs, out: &Output) -> anyhow::Result<()> {
    let service = resolve_connection(&args.connection, &ProcessEnv)?.connection;
    let addr = events_addr(&args)?;
    let expiry = chrono::Utc::now().timestamp().unsigned_abs() + TOKEN_TTL.as_secs();
    let token = service.sas_token(expiry).context("could not sign a service token")?;
    let client_id = format!("hubsim-events-{}", std::process::id());
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(service.shared_access_key_name.clone(), token);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(MAX_EVENT_BYTES, MAX_EVENT_BYTES);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client.subscribe(args.filter.clone(), QoS::AtMostOnce).await.context("could not subscribe")?;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let event = event.with_context(|| {
            format!("the event stream at {addr} closed (is the hub running with --events, and the key right?)")
        })?;
        match event {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code != ConnectReturnCode::Success => {
                bail!("the event stream at {addr} refused the login ({:?})", ack.code)
            }
            Event::Incoming(Packet::Publish(publish)) => {
                print_event(out, &publish.topic, &publish.payload)
            }
            _ => {}
        }
    }
}

/// `--events-addr`, else what the local hub wrote in its endpoints file, else the default.
fn events_addr(args: &EventsArgs) -> Result<SocketAddr, UsageError> {
    if let Some(addr) = args.events_addr {
        return Ok(addr);
    }
    let local = local_endpoints(&args.connection, &ProcessEnv).ok().flatten();
    match local {
        Some(endpoints) => endpoints
            .events_addr
            .ok_or_else(|| UsageError("the local hub runs with --events off".to_owned())),
        None => DEFAULT_EVENTS_ADDR
            .parse()
            .map_err(|err| UsageError(format!("default events address: {err}"))),
    }
}

/// One line per event: `topic<TAB>payload` for people, `{"topic":..,"payload":..}` for scripts.
fn print_event(out: &Output, topic: &str, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    if out.is_json() {
        let payload = serde_json::from_slice::<Value>(payload)
            .unwrap_or_else(|_| Value::String(text.into_owned()));
        out.line(&json!({ "topic": topic, "payload": payload }).to_string());
    } else {
        out.line(&format!("{topic}\t{text}"));
    }
}
