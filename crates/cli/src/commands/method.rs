//! `hubsim method invoke`: call a direct method on one device and print its status and payload.
//!
//! Any answer from the device is a success of the command (its status is printed); the hub's refusals
//! (device unknown 404001, offline 404103, timeout 504101) are failures.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use protocol::ids::DeviceId;
use protocol::method::CloudToDeviceMethod;
use serde_json::{json, Value};

use crate::args::ConnectionArgs;
use crate::commands::{connect, parse_id};
use crate::config::{parse_json_arg, UsageError};
use crate::output::{cell, Output, Table};

/// Direct-method commands.
#[derive(Debug, Subcommand)]
pub(crate) enum MethodCommand {
    /// Invoke a direct method and wait for the device's answer.
    Invoke(InvokeArgs),
}

/// `method invoke`.
#[derive(Debug, Args)]
pub(crate) struct InvokeArgs {
    /// The device id.
    device_id: String,
    /// The method name.
    method_name: String,
    /// The payload, any JSON (default null).
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Seconds to wait for the device's answer (5-300).
    #[arg(long, value_name = "SECS", default_value_t = protocol::method::DEFAULT_RESPONSE_TIMEOUT_SECS)]
    response_timeout: u32,
    /// Seconds to wait for the device to come online (0-300; 0 = it must be online now).
    #[arg(long, value_name = "SECS", default_value_t = protocol::method::DEFAULT_CONNECT_TIMEOUT_SECS)]
    connect_timeout: u32,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs a method command.
pub(crate) async fn run(command: MethodCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        MethodCommand::Invoke(args) => invoke(args, out).await,
    }
}

async fn invoke(args: InvokeArgs, out: &Output) -> anyhow::Result<()> {
    let device_id = parse_id::<DeviceId>("device id", &args.device_id)?;
    let payload = match &args.payload {
        Some(text) => parse_json_arg("--payload", text)?,
        None => Value::Null,
    };
    let call = CloudToDeviceMethod::new(
        args.method_name.clone(),
        payload,
        Some(args.response_timeout),
        Some(args.connect_timeout),
    )
    .map_err(|err| UsageError(err.to_string()))?;
    let client = connect(&args.connection)?;
    let result = client
        .invoke_method(&device_id, &call)
        .await
        .with_context(|| format!("could not invoke {} on {device_id}", args.method_name))?;
    let mut table = Table::new(["status", "payload"]);
    table.row([result.status.to_string(), cell(&result.payload)]);
    out.table(&table, &json!({"status": result.status, "payload": result.payload}));
    Ok(())
}
