//! The top-level command line: global flags, the subcommand tree, and the connection flags every
//! client command shares ([`ConnectionArgs`]).
//!
//! Each subcommand's own flags live beside its code in `commands/`. This module only declares
//! (clap derive); resolving flags into settings is `config`'s job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// hubsim: a local Azure IoT Hub and a fleet of simulated devices.
///
/// Start a hub with `hubsim hub`; it prints its service connection string. Point the official Azure
/// SDKs (or the other hubsim commands) at it. Client commands find the local hub through its data
/// directory (./.hubsim) unless --hub or HUBSIM_CONNECTION_STRING names another one.
#[derive(Debug, Parser)]
#[command(name = "hubsim", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// Output format: human tables, JSON for scripts, or CSV for tabular results.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table, display_order = 100)]
    pub(crate) output: OutputFormat,
    /// More logging on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, display_order = 101)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Try it: a hub, the building-43 fleet and a reboot job on floor 3, all in this process.
    ///
    /// Starts a hub in a temporary directory on free loopback ports, runs the building-43 fleet
    /// profile against it (380 devices; a fifth of floor 3 never connects and its valves answer
    /// slowly), schedules a `reboot` direct-method job on tags.building = '43' AND tags.floor = 3, shows
    /// its progress, prints the result (counts, failed devices with their IoT Hub error codes, latency
    /// percentiles) checked against what each device did, and writes report.json, timeline.svg and the
    /// fleet's record.jsonl to the report directory. Nothing to set up; exits 0 when the job ran.
    Demo(commands::demo::DemoArgs),
    /// Run a local IoT Hub (MQTT for devices, REST for back ends) until Ctrl-C or SIGTERM.
    ///
    /// Devices connect with MQTT over TLS (--mqtts) or plain MQTT (--mqtt); back ends use REST over
    /// TLS (--https) or plain HTTP (--http). The official SDKs need port 8883 (Python devices) and
    /// 443 (Node service): on Linux run the hub under `unshare -rn`, or give the binary
    /// CAP_NET_BIND_SERVICE, to bind 443. At first start the hub generates its owner key and a CA and
    /// server certificate in --data-dir (trust DIR/ca.pem). It prints the service connection string on
    /// stdout, writes DIR/endpoints.json for the other hubsim commands, and serves until Ctrl-C or
    /// SIGTERM, then drains for at most --shutdown-grace seconds and exits 0.
    Hub(commands::hub::HubArgs),
    /// Register, show, list and delete device identities.
    #[command(subcommand)]
    Device(commands::device::DeviceCommand),
    /// Show and update device twins.
    #[command(subcommand)]
    Twin(commands::twin::TwinCommand),
    /// Invoke direct methods on devices.
    #[command(subcommand)]
    Method(commands::method::MethodCommand),
    /// Run an IoT Hub query (e.g. "SELECT * FROM devices WHERE tags.building = '43'").
    Query(commands::query::QueryArgs),
    /// Schedule, inspect, watch and cancel jobs (direct-method and twin-update jobs).
    #[command(subcommand)]
    Job(commands::job::JobCommand),
    /// Run fleets of simulated devices from a profile (fleet-profiles/*.toml).
    #[command(subcommand)]
    Fleet(commands::fleet::FleetCommand),
    /// Print the hub's back-end event stream: telemetry, twin changes, connection state, device
    /// lifecycle and job progress (one line per event; see docs/events.md).
    Events(commands::events::EventsArgs),
    /// Measure hubsim against this machine's ceiling: job fan-out, twin jobs, REST methods, connects, memory.
    ///
    /// Runs a hub in this process and the simulated devices in a child process (each device needs a
    /// socket; open files are limited per process) and prints a table ending with the line
    /// `ratio method-job/ceiling: X.XX`. See docs/benchmarks.md.
    Bench(commands::bench::BenchArgs),
    /// The device side of `hubsim bench` (started by it).
    #[command(hide = true)]
    BenchDevices(commands::bench::BenchDevicesArgs),
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
    /// Comma-separated values (tabular results only; other results print JSON).
    Csv,
}

/// Which hub a client command talks to.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ConnectionArgs {
    /// Service connection string (HostName=..;SharedAccessKeyName=..;SharedAccessKey=..).
    /// Default: $HUBSIM_CONNECTION_STRING, else the local hub found in --data-dir.
    #[arg(long, value_name = "CONNECTION_STRING")]
    pub(crate) hub: Option<String>,
    /// Send requests to this URL instead of https://<HostName> (e.g. http://127.0.0.1:8080).
    #[arg(long, value_name = "URL")]
    pub(crate) hub_url: Option<String>,
    /// Trust this CA certificate (PEM) for HTTPS; the local hub's CA is trusted automatically.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Data directory of the local hub to connect to when no connection string is given.
    #[arg(long, value_name = "DIR", default_value = hub::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}
