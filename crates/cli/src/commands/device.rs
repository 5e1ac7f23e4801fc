//! `hubsim device create|show|list|delete`: the identity registry, printing device connection strings.
//!
//! Several ids may be given to create and delete; they are sent concurrently (bounded) and every id
//! gets its own line, so one taken id does not hide the others. The command fails if any id failed.

use std::num::NonZeroUsize;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use protocol::device::{Device, DeviceStatus};
use protocol::ids::DeviceId;
use serde_json::{json, Value};
use service::{DeviceSpec, ServiceClient, ServiceError};

use crate::args::ConnectionArgs;
use crate::commands::{connect, parse_id};
use crate::output::{Output, Table};

/// Device identity commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Register devices (keys are generated unless given) and print their connection strings.
    Create(CreateArgs),
    /// Show one device and its connection string.
    Show(ShowArgs),
    /// List devices with their connection strings.
    List(ListArgs),
    /// Delete devices.
    Delete(DeleteArgs),
}

/// `device create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Device ids to register.
    #[arg(required = true, value_name = "DEVICE_ID")]
    device_ids: Vec<String>,
    /// Primary key (base64); generated when absent.
    #[arg(long, value_name = "BASE64")]
    primary_key: Option<String>,
    /// Secondary key (base64); generated when absent.
    #[arg(long, value_name = "BASE64")]
    secondary_key: Option<String>,
    /// Register the devices disabled (they cannot connect).
    #[arg(long)]
    disabled: bool,
    /// Requests in flight at once when several ids are given.
    #[arg(long, value_name = "N", default_value = "16")]
    concurrency: NonZeroUsize,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `device show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The device id.
    device_id: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `device list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// At most this many devices.
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `device delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Device ids to delete.
    #[arg(required = true, value_name = "DEVICE_ID")]
    device_ids: Vec<String>,
    /// Requests in flight at once when several ids are given.
    #[arg(long, value_name = "N", default_value = "16")]
    concurrency: NonZeroUsize,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs a device command.
pub(crate) async fn run(command: DeviceCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Create(args) => create(args, out).await,
        DeviceCommand::Show(args) => show(args, out).await,
        DeviceCommand::List(args) => list(args, out).await,
        DeviceCommand::Delete(args) => delete(args, out).await,
    }
}

async fn create(args: CreateArgs, out: &Output) -> anyhow::Result<()> {
    let ids = parse_ids(&args.device_ids)?;
    let client = connect(&args.connection)?;
    let spec = DeviceSpec {
        status: if args.disabled { DeviceStatus::Disabled } else { DeviceStatus::Enabled },
        primary_key: args.primary_key,
        secondary_key: args.secondary_key,
        iot_edge: false,
    };
    let wanted = ids.into_iter().map(|id| (id, spec.clone())).collect();
    let results = client.create_devices(wanted, args.concurrency).await;
    let mut table = Table::new(["deviceId", "status", "connectionString"]);
    let mut json = Vec::new();
    let mut failures = Vec::new();
    for (device_id, result) in results {
        match result {
            Ok(device) => {
                let (row, value) = device_row(&client, &device);
                table.row(row);
                json.push(value);
            }
            Err(err) => failures.push(format!("{device_id}: {}", brief(&err))),
        }
    }
    if !table.is_empty() || out.is_json() {
        out.table(&table, &Value::Array(json));
    }
    fail_if_any("create", failures)
}

async fn show(args: ShowArgs, out: &Output) -> anyhow::Result<()> {
    let device_id = parse_id::<DeviceId>("device id", &args.device_id)?;
    let client = connect(&args.connection)?;
    let device = client
        .get_device(&device_id)
        .await
        .with_context(|| format!("could not show device {device_id}"))?;
    let (_, value) = device_row(&client, &device);
    let mut table = Table::new(["field", "value"]);
    table.row(["deviceId", device.device_id.as_str()]);
    table.row(["status".to_owned(), status_text(device.status)]);
    table.row(["connectionState".to_owned(), format!("{:?}", device.connection_state)]);
    table.row([
        "lastActivityTime".to_owned(),
        value["device"]["lastActivityTime"].as_str().unwrap_or_default().to_owned(),
    ]);
    table.row([
        "connectionString".to_owned(),
        value["connectionString"].as_str().unwrap_or_default().to_owned(),
    ]);
    out.table(&table, &value);
    Ok(())
}

async fn list(args: ListArgs, out: &Output) -> anyhow::Result<()> {
    let client = connect(&args.connection)?;
    let devices = client.list_devices(args.top).await.context("could not list devices")?;
    let mut table = Table::new(["deviceId", "status", "connectionState", "connectionString"]);
    let mut json = Vec::new();
    for device in &devices {
        let (_, value) = device_row(&client, device);
        table.row([
            device.device_id.to_string(),
            status_text(device.status),
            format!("{:?}", device.connection_state),
            value["connectionString"].as_str().unwrap_or_default().to_owned(),
        ]);
        json.push(value);
    }
    out.table(&table, &Value::Array(json));
    Ok(())
}

async fn delete(args: DeleteArgs, out: &Output) -> anyhow::Result<()> {
    let ids = parse_ids(&args.device_ids)?;
    let client = connect(&args.connection)?;
    let results = client.delete_devices(ids, args.concurrency).await;
    let mut table = Table::new(["deviceId", "result"]);
    let mut json = Vec::new();
    let mut failures = Vec::new();
    for (device_id, result) in results {
        match result {
            Ok(()) => {
                table.row([device_id.as_str(), "deleted"]);
                json.push(json!({"deviceId": device_id, "deleted": true}));
            }
            Err(err) => failures.push(format!("{device_id}: {}", brief(&err))),
        }
    }
    if !table.is_empty() || out.is_json() {
        out.table(&table, &Value::Array(json));
    }
    fail_if_any("delete", failures)
}

/// A table row and the JSON object (`{deviceId, connectionString, device}`) for one device.
fn device_row(client: &ServiceClient, device: &Device) -> (Vec<String>, Value) {
    let connection_string =
        client.device_connection_string(device).map(|cs| cs.to_string()).unwrap_or_default();
    let row =
        vec![device.device_id.to_string(), status_text(device.status), connection_string.clone()];
    let value = json!({"deviceId": device.device_id, "connectionString": connection_string, "device": device});
    (row, value)
}

fn status_text(status: DeviceStatus) -> String {
    match status {
        DeviceStatus::Enabled => "enabled".into(),
        DeviceStatus::Disabled => "disabled".into(),
    }
}

fn parse_ids(texts: &[String]) -> anyhow::Result<Vec<DeviceId>> {
    Ok(texts
        .iter()
        .map(|text| parse_id::<DeviceId>("device id", text))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The hub's refusal without the operation prefix (the id already says which device).
fn brief(err: &ServiceError) -> String {
    match err.hub_error() {
        Some(hub_error) => hub_error.to_string(),
        None => err.to_string(),
    }
}

fn fail_if_any(verb: &str, failures: Vec<String>) -> anyhow::Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => anyhow::bail!("could not {verb} device {}", failures.join("")),
        n => anyhow::bail!("could not {verb} {n} devices: {}", failures.join("; ")),
    }
}
