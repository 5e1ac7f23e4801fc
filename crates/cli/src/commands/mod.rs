//! One module per subcommand, each with its clap arguments and an `async fn run`.
//!
//! [`run`] dispatches; [`connect`] builds the service client every client command uses.

pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod device;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod hub;
pub(crate) mod job;
pub(crate) mod method;
pub(crate) mod query;
pub(crate) mod twin;

use anyhow::Context as _;
use service::ServiceClient;

use crate::args::{Command, ConnectionArgs};
use crate::config::{resolve_connection, ProcessEnv, UsageError};
use crate::output::Output;

/// Runs one command to completion.
pub(crate) async fn run(command: Command, out: &Output) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(args, out).await,
        Command::Hub(args) => hub::run(args, out).await,
        Command::Device(command) => device::run(command, out).await,
        Command::Twin(command) => twin::run(command, out).await,
        Command::Method(command) => method::run(command, out).await,
        Command::Query(args) => query::run(args, out).await,
        Command::Job(command) => job::run(command, out).await,
        Command::Fleet(command) => fleet::run(command, out).await,
        Command::Events(args) => events::run(args, out).await,
        Command::Bench(args) => bench::run(args, out).await,
        Command::BenchDevices(args) => bench::run_devices(args, out).await,
    }
}

/// The service client for the hub `args` name.
pub(crate) fn connect(args: &ConnectionArgs) -> anyhow::Result<ServiceClient> {
    let config = resolve_connection(args, &ProcessEnv)?;
    let client =
        ServiceClient::new(config).context("could not set up the connection to the hub")?;
    Ok(client)
}

/// Parses an id argument into its newtype, as a usage error naming the flag.
pub(crate) fn parse_id<T>(what: &str, text: &str) -> Result<T, UsageError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|err| UsageError(format!("{what} {text:?}: {err}")))
}
