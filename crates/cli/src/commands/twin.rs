//! `hubsim twin show|update`: read a device twin, or merge (or replace) its tags and desired properties.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, TwinPatch};
use serde_json::{Map, Value};

use crate::args::ConnectionArgs;
use crate::commands::{connect, parse_id};
use crate::config::{parse_json_object_arg, UsageError};
use crate::output::Output;

/// Twin commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TwinCommand {
    /// Print a device twin (tags, desired and reported properties with versions).
    Show(ShowArgs),
    /// Merge tags and/or desired properties into a twin (null deletes a key); --replace replaces them.
    Update(UpdateArgs),
}

/// `twin show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The device id.
    device_id: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `twin update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The device id.
    device_id: String,
    /// Desired properties patch, a JSON object (e.g. '{"fw":"2.0","old":null}').
    #[arg(long, value_name = "JSON")]
    desired: Option<String>,
    /// Tags patch, a JSON object (e.g. '{"building":"43"}').
    #[arg(long, value_name = "JSON")]
    tags: Option<String>,
    /// Only update if the twin still has this etag (default: any).
    #[arg(long, value_name = "ETAG")]
    etag: Option<String>,
    /// Replace tags and desired properties instead of merging.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs a twin command.
pub(crate) async fn run(command: TwinCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        TwinCommand::Show(args) => show(args, out).await,
        TwinCommand::Update(args) => update(args, out).await,
    }
}

async fn show(args: ShowArgs, out: &Output) -> anyhow::Result<()> {
    let device_id = parse_id::<DeviceId>("device id", &args.device_id)?;
    let client = connect(&args.connection)?;
    let twin = client
        .get_twin(&device_id)
        .await
        .with_context(|| format!("could not show the twin of {device_id}"))?;
    out.document(&twin.to_value());
    Ok(())
}

async fn update(args: UpdateArgs, out: &Output) -> anyhow::Result<()> {
    let device_id = parse_id::<DeviceId>("device id", &args.device_id)?;
    let patch = build_patch(args.desired.as_deref(), args.tags.as_deref())?;
    let client = connect(&args.connection)?;
    let etag = args.etag.as_deref();
    let twin = if args.replace {
        client.replace_twin(&device_id, &patch, etag).await
    } else {
        client.update_twin(&device_id, &patch, etag).await
    }
    .with_context(|| format!("could not update the twin of {device_id}"))?;
    out.document(&twin.to_value());
    Ok(())
}

fn build_patch(desired: Option<&str>, tags: Option<&str>) -> Result<TwinPatch, UsageError> {
    if desired.is_none() && tags.is_none() {
        return Err(UsageError("give --desired and/or --tags".into()));
    }
    let mut body = Map::new();
    if let Some(tags) = tags {
        body.insert("tags".into(), Value::Object(parse_json_object_arg("--tags", tags)?));
    }
    if let Some(desired) = desired {
        let mut properties = Map::new();
        properties
            .insert("desired".into(), Value::Object(parse_json_object_arg("--desired", desired)?));
        body.insert("properties".into(), Value::Object(properties));
    }
    TwinPatch::parse(&Value::Object(body), ReportedInPatch::Reject)
        .map_err(|err| UsageError(err.to_string()))
}
