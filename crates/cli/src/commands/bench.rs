//! `hubsim bench`: measures hubsim against the machine's own ceiling (see [`crate::bench`]), and the
//! hidden `hubsim bench-devices`, the device-side child process `bench` starts.
//!
//! This module only declares the flags and hands resolved options over; it measures nothing.

use std::net::SocketAddr;

use clap::Args;

use crate::bench::{BenchOptions, ChildMode};
use crate::config::UsageError;
use crate::output::Output;

/// `hubsim bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Device counts to measure at, comma-separated (each count runs every measurement).
    #[arg(long, value_name = "N,N..", value_delimiter = ',', default_values_t = [1_000, 10_000])]
    devices: Vec<usize>,
    /// Small and short (200 devices, 2,000 twins, few samples): shows the harness runs, in seconds.
    #[arg(long)]
    quick: bool,
}

/// `hubsim bench-devices` (hidden): the device side of `hubsim bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchDevicesArgs {
    /// Where to connect (the hub's plain MQTT listener, or the echo listener).
    #[arg(long)]
    addr: SocketAddr,
    /// How many connections.
    #[arg(long)]
    count: usize,
    /// Hub host name for SAS tokens and MQTT usernames (MQTT mode).
    #[arg(long, required_unless_present = "echo_request_bytes")]
    host: Option<String>,
    /// Echo mode: bytes of each request.
    #[arg(long, requires = "echo_response_bytes", conflicts_with = "host")]
    echo_request_bytes: Option<usize>,
    /// Echo mode: bytes of each response.
    #[arg(long, requires = "echo_request_bytes")]
    echo_response_bytes: Option<usize>,
}

/// Runs `hubsim bench`.
pub(crate) async fn run(args: BenchArgs, out: &Output) -> anyhow::Result<()> {
    let device_counts =
        if args.quick && args.devices == [1_000, 10_000] { vec![200] } else { args.devices };
    if device_counts.is_empty() || device_counts.contains(&0) {
        return Err(UsageError("--devices needs counts above zero".into()).into());
    }
    crate::bench::run(BenchOptions { device_counts, quick: args.quick }, out).await
}

/// Runs `hubsim bench-devices`.
pub(crate) async fn run_devices(args: BenchDevicesArgs, out: &Output) -> anyhow::Result<()> {
    let mode = match (args.host, args.echo_request_bytes, args.echo_response_bytes) {
        (_, Some(request_bytes), Some(response_bytes)) => {
            ChildMode::Echo { request_bytes, response_bytes }
        }
        (Some(host), None, None) => ChildMode::Mqtt { host },
        _ => {
            return Err(UsageError(
                "give --host, or both --echo-request-bytes and --echo-response-bytes".into(),
            )
            .into())
        }
    };
    crate::bench::run_child(mode, args.addr, args.count, out).await
}
