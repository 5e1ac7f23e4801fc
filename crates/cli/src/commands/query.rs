//! `hubsim query "SELECT ..."`: run an IoT Hub query and print every page's items.
//!
//! Items print as a table with one column per top-level field (nested values as compact JSON);
//! `--output json` prints the array as the hub returned it.

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

use crate::args::ConnectionArgs;
use crate::commands::connect;
use crate::output::{Output, Table};

/// `query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The query, e.g. "SELECT deviceId, tags.floor FROM devices WHERE tags.building = '43'".
    sql: String,
    /// Items per page requested from the hub (the hub may use fewer).
    #[arg(long, value_name = "N")]
    page_size: Option<usize>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs the query and prints all items.
pub(crate) async fn run(args: QueryArgs, out: &Output) -> anyhow::Result<()> {
    let client = connect(&args.connection)?;
    let items = client.query_all(&args.sql, args.page_size).await.context("the query failed")?;
    out.table(&Table::from_objects(&items), &Value::Array(items));
    Ok(())
}
