//! `hubsim job ...`: schedule direct-method and twin-update jobs, show, list, cancel, watch a job to
//! its end, and list its per-device results.
//!
//! Flags mirror `az iot hub job create`: a query condition (the WHERE clause, `*` for all devices), a
//! start time (ISO-8601 or `+30s`), and the job's timeouts. `job watch` polls the job document and
//! prints one line per change; it exits 0 only when the job completes.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use protocol::ids::{DeviceId, JobId};
use protocol::job::{
    DeviceJob, DeviceJobStatus, JobAction, JobRequest, JobResponse, JobStatus, JobType,
};
use protocol::method::CloudToDeviceMethod;
use serde_json::{json, Map, Value};
use service::{JobFilter, ServiceClient};

use crate::args::{ConnectionArgs, OutputFormat};
use crate::commands::{connect, parse_id};
use crate::config::{
    parse_duration, parse_json_arg, parse_json_object_arg, parse_start_time, UsageError,
};
use crate::output::{cell, Output, Table};

/// Job commands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Schedule a direct-method job on the devices matching --query.
    CreateMethod(CreateMethodArgs),
    /// Schedule a twin-update job (tags and/or desired properties) on the devices matching --query.
    CreateTwin(CreateTwinArgs),
    /// Show a job document.
    Show(JobIdArgs),
    /// List jobs.
    List(ListArgs),
    /// Cancel a queued or scheduled job.
    Cancel(JobIdArgs),
    /// Print the job's progress until it ends; exit 0 only if it completes.
    Watch(WatchArgs),
    /// List the job's per-device results.
    Results(ResultsArgs),
    /// Report on a job: counts, failed devices with their error codes, latency percentiles, a
    /// timeline chart (SVG), and with --record a check of every device against the fleet's record.
    Report(crate::report::command::ReportArgs),
}

/// Flags every job creation takes.
#[derive(Debug, Args)]
pub(crate) struct CommonCreateArgs {
    /// The job id (letters, digits and '-'); default: generated from the time.
    #[arg(long, value_name = "ID")]
    job_id: Option<String>,
    /// Which devices: the WHERE clause of a device query ('*' = all), e.g. "tags.building = '43'".
    #[arg(long, value_name = "CONDITION", default_value = "*")]
    query: String,
    /// When to start: ISO-8601 (2026-01-02T03:04:05Z) or relative (+30s, +5m); default now.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// How long the job may run (e.g. 3600, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    max_time: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `job create-method`.
#[derive(Debug, Args)]
pub(crate) struct CreateMethodArgs {
    /// The method name.
    #[arg(long, value_name = "NAME")]
    method: String,
    /// The payload, any JSON (default null).
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// Seconds each device gets to answer (5-300).
    #[arg(long, value_name = "SECS", default_value_t = protocol::method::DEFAULT_RESPONSE_TIMEOUT_SECS)]
    response_timeout: u32,
    /// Seconds to wait for each device to come online (0-300).
    #[arg(long, value_name = "SECS", default_value_t = protocol::method::DEFAULT_CONNECT_TIMEOUT_SECS)]
    connect_timeout: u32,
    #[command(flatten)]
    common: CommonCreateArgs,
}

/// `job create-twin`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("patch").required(true).multiple(true).args(["desired", "tags"])))]
pub(crate) struct CreateTwinArgs {
    /// Desired properties patch, a JSON object.
    #[arg(long, value_name = "JSON")]
    desired: Option<String>,
    /// Tags patch, a JSON object.
    #[arg(long, value_name = "JSON")]
    tags: Option<String>,
    #[command(flatten)]
    common: CommonCreateArgs,
}

/// A job id and the connection.
#[derive(Debug, Args)]
pub(crate) struct JobIdArgs {
    /// The job id.
    job_id: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `job list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this type: scheduleDeviceMethod or scheduleUpdateTwin.
    #[arg(long = "type", value_name = "TYPE")]
    job_type: Option<String>,
    /// Only this status: queued, scheduled, running, completed, failed, cancelled.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `job watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The job id.
    job_id: String,
    /// Time between polls (e.g. 1s, 5s).
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    interval: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `job results`.
#[derive(Debug, Args)]
pub(crate) struct ResultsArgs {
    /// The job id.
    job_id: String,
    /// Only devices in this status: pending, scheduled, running, completed, failed, canceled.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// Output format for this command (overrides --output).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<OutputFormat>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs a job command.
pub(crate) async fn run(command: JobCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        JobCommand::CreateMethod(args) => create_method(args, out).await,
        JobCommand::CreateTwin(args) => create_twin(args, out).await,
        JobCommand::Show(args) => show(args, out).await,
        JobCommand::List(args) => list(args, out).await,
        JobCommand::Cancel(args) => cancel(args, out).await,
        JobCommand::Watch(args) => watch(args, out).await,
        JobCommand::Results(args) => results(args, out).await,
        JobCommand::Report(args) => crate::report::command::run(args, out).await,
    }
}

async fn create_method(args: CreateMethodArgs, out: &Output) -> anyhow::Result<()> {
    let payload = args
        .payload
        .as_deref()
        .map(|text| parse_json_arg("--payload", text))
        .transpose()?
        .unwrap_or(Value::Null);
    let method = CloudToDeviceMethod::new(
        args.method,
        payload,
        Some(args.response_timeout),
        Some(args.connect_timeout),
    )
    .map_err(|err| UsageError(err.to_string()))?;
    create(args.common, JobAction::DeviceMethod(method), out).await
}

async fn create_twin(args: CreateTwinArgs, out: &Output) -> anyhow::Result<()> {
    let mut body = Map::new();
    if let Some(tags) = &args.tags {
        body.insert("tags".into(), Value::Object(parse_json_object_arg("--tags", tags)?));
    }
    if let Some(desired) = &args.desired {
        body.insert(
            "properties".into(),
            json!({"desired": Value::Object(parse_json_object_arg("--desired", desired)?)}),
        );
    }
    let patch = protocol::twin::TwinPatch::parse(
        &Value::Object(body),
        protocol::twin::ReportedInPatch::Reject,
    )
    .map_err(|err| UsageError(err.to_string()))?;
    create(args.common, JobAction::UpdateTwin(patch), out).await
}

async fn create(common: CommonCreateArgs, action: JobAction, out: &Output) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let job_id = match &common.job_id {
        Some(text) => parse_id::<JobId>("job id", text)?,
        None => parse_id::<JobId>("job id", &now.format("job-%Y%m%d-%H%M%S-%3f").to_string())?,
    };
    if common.query.trim().is_empty() {
        return Err(UsageError("--query must not be empty (use '*' for all devices)".into()).into());
    }
    let start_time = common.start.as_deref().map(|text| parse_start_time(text, now)).transpose()?;
    let request = JobRequest {
        job_id: Some(job_id.to_string()),
        query_condition: common.query.clone(),
        start_time,
        max_execution_time_in_seconds: parse_duration(&common.max_time)?.as_secs().max(1),
        action,
    };
    let client = connect(&common.connection)?;
    let job = client
        .create_job(&job_id, &request)
        .await
        .with_context(|| format!("could not create job {job_id}"))?;
    out.table(&job_table(std::slice::from_ref(&job)), &job.to_value());
    Ok(())
}

async fn show(args: JobIdArgs, out: &Output) -> anyhow::Result<()> {
    let job_id = parse_id::<JobId>("job id", &args.job_id)?;
    let client = connect(&args.connection)?;
    let job =
        client.get_job(&job_id).await.with_context(|| format!("could not show job {job_id}"))?;
    out.document(&job.to_value());
    Ok(())
}

async fn list(args: ListArgs, out: &Output) -> anyhow::Result<()> {
    let job_type = args
        .job_type
        .as_deref()
        .map(JobType::parse)
        .transpose()
        .map_err(|err| UsageError(err.to_string()))?;
    let status = args
        .status
        .as_deref()
        .map(JobStatus::parse)
        .transpose()
        .map_err(|err| UsageError(err.to_string()))?;
    let client = connect(&args.connection)?;
    let jobs = client
        .list_jobs(JobFilter { job_type, status }, None)
        .await
        .context("could not list jobs")?;
    out.table(&job_table(&jobs), &Value::Array(jobs.iter().map(JobResponse::to_value).collect()));
    Ok(())
}

async fn cancel(args: JobIdArgs, out: &Output) -> anyhow::Result<()> {
    let job_id = parse_id::<JobId>("job id", &args.job_id)?;
    let client = connect(&args.connection)?;
    let job = client
        .cancel_job(&job_id)
        .await
        .with_context(|| format!("could not cancel job {job_id}"))?;
    out.table(&job_table(std::slice::from_ref(&job)), &job.to_value());
    Ok(())
}

async fn watch(args: WatchArgs, out: &Output) -> anyhow::Result<()> {
    let job_id = parse_id::<JobId>("job id", &args.job_id)?;
    let interval = parse_duration(&args.interval)?.max(Duration::from_millis(100));
    let client = connect(&args.connection)?;
    let job = poll_until_terminal(&client, &job_id, interval, out).await?;
    if out.is_json() {
        out.document(&job.to_value());
    }
    match job.status {
        JobStatus::Completed => Ok(()),
        other => {
            let reason = job.failure_reason.or(job.status_message).unwrap_or_default();
            anyhow::bail!("job {job_id} ended {} {reason}", other.as_str())
        }
    }
}

async fn poll_until_terminal(
    client: &ServiceClient,
    job_id: &JobId,
    interval: Duration,
    out: &Output,
) -> anyhow::Result<JobResponse> {
    let mut ticker = tokio::time::interval(interval);
    let mut last_line = String::new();
    loop {
        ticker.tick().await;
        let job =
            client.get_job(job_id).await.with_context(|| format!("could not read job {job_id}"))?;
        let line = progress_line(&job);
        if line != last_line && !out.is_json() {
            out.line(&line);
            last_line = line;
        }
        if job.status.is_terminal() {
            return Ok(job);
        }
    }
}

async fn results(args: ResultsArgs, out: &Output) -> anyhow::Result<()> {
    let job_id = parse_id::<JobId>("job id", &args.job_id)?;
    let wanted = args
        .status
        .as_deref()
        .map(DeviceJobStatus::parse)
        .transpose()
        .map_err(|err| UsageError(err.to_string()))?;
    let client = connect(&args.connection)?;
    let mut records = client
        .device_jobs(&job_id, None)
        .await
        .with_context(|| format!("could not read the results of job {job_id}"))?;
    records.retain(|record| wanted.is_none_or(|status| record.status == status));
    records.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let out = args.format.map_or(*out, Output::new);
    out.table(
        &results_table(&records),
        &Value::Array(records.iter().map(DeviceJob::to_value).collect()),
    );
    Ok(())
}

/// `running: 40/100 succeeded, 2 failed, 10 running, 48 pending`.
fn progress_line(job: &JobResponse) -> String {
    match &job.device_job_statistics {
        Some(stats) => format!(
            "{}: {}/{} succeeded, {} failed, {} running, {} pending",
            job.status.as_str(),
            stats.succeeded_count,
            stats.device_count,
            stats.failed_count,
            stats.running_count,
            stats.pending_count
        ),
        None => job.status.as_str().to_owned(),
    }
}

fn job_table(jobs: &[JobResponse]) -> Table {
    let mut table =
        Table::new(["jobId", "type", "status", "startTime", "devices", "succeeded", "failed"]);
    for job in jobs {
        let stats = job.device_job_statistics.as_ref();
        let count = |pick: fn(&protocol::job::DeviceJobStatistics) -> u64| {
            stats.map(|s| pick(s).to_string()).unwrap_or_default()
        };
        table.row([
            job.job_id.to_string(),
            job.job_type.as_str().to_owned(),
            job.status.as_str().to_owned(),
            job.start_time.map(protocol::time::format_timestamp_millis).unwrap_or_default(),
            count(|s| s.device_count),
            count(|s| s.succeeded_count),
            count(|s| s.failed_count),
        ]);
    }
    table
}

fn results_table(records: &[DeviceJob]) -> Table {
    let mut table = Table::new([
        "deviceId",
        "status",
        "methodStatus",
        "payload",
        "errorCode",
        "error",
        "endTime",
    ]);
    for record in records {
        let response = record.outcome.device_method_response.as_ref();
        table.row([
            DeviceId::as_str(&record.device_id).to_owned(),
            record.status.as_str().to_owned(),
            response.map(|r| r.status.to_string()).unwrap_or_default(),
            response.map(|r| cell(&r.payload)).unwrap_or_default(),
            record.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
            record.error.as_ref().map(|e| e.description.clone()).unwrap_or_default(),
            record.end_time_utc.map(protocol::time::format_timestamp_millis).unwrap_or_default(),
        ]);
    }
    table
}
