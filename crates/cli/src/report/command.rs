//! `hubsim job report ID [--record FILE] [--report-dir DIR]`: reads a job and its device records from
//! the hub, prints the report (tables, or JSON with `--output json`), writes `report.json` and
//! `timeline.svg`, and — given the fleet's ground-truth record — reconciles each device.
//!
//! [`finish`] is shared with `hubsim demo`: attach a reconciliation, write the directory, print.
//! It works on any job state; a running job's report covers the devices finished so far.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use protocol::ids::JobId;
use protocol::job::DeviceJob;
use service::ServiceClient;

use crate::args::ConnectionArgs;
use crate::commands::{connect, parse_id};
use crate::config::UsageError;
use crate::output::Output;
use crate::report::text::Detail;
use crate::report::{reconcile, text, write_dir, JobReport};

/// Records per page when reading device job records.
const RECORD_PAGE_SIZE: usize = 1000;

/// `job report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The job id.
    job_id: String,
    /// A fleet ground-truth record (the JSON lines of `hubsim fleet run --record FILE`) to check
    /// every device's job record against: what the hub says next to what the device did.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Where to write report.json and timeline.svg (default ./hubsim-report-<JOB_ID>).
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs `job report`.
pub(crate) async fn run(args: ReportArgs, out: &Output) -> anyhow::Result<()> {
    let job_id = parse_id::<JobId>("job id", &args.job_id)?;
    let client = connect(&args.connection)?;
    let (report, records) = fetch(&client, &job_id).await?;
    let dir = args.report_dir.unwrap_or_else(|| default_dir(&job_id));
    finish(report, &records, args.record.as_deref(), &dir, Detail::Full, out)
}

/// The job document and its device records, as a report.
///
/// # Errors
/// When the job or its records cannot be read.
pub(crate) async fn fetch(
    client: &ServiceClient,
    job_id: &JobId,
) -> anyhow::Result<(JobReport, Vec<DeviceJob>)> {
    let job =
        client.get_job(job_id).await.with_context(|| format!("could not read job {job_id}"))?;
    let records = client
        .device_jobs(job_id, Some(RECORD_PAGE_SIZE))
        .await
        .with_context(|| format!("could not read the device records of job {job_id}"))?;
    Ok((JobReport::build(job, &records), records))
}

/// `./hubsim-report-<jobId>`.
pub(crate) fn default_dir(job_id: &JobId) -> PathBuf {
    PathBuf::from(format!("hubsim-report-{job_id}"))
}

/// Reconciles against `record` when given, writes the report directory and prints the report
/// (JSON document, or text followed by the directory).
///
/// # Errors
/// A usage error for a record given with a twin job; record and file errors.
pub(crate) fn finish(
    mut report: JobReport,
    records: &[DeviceJob],
    record: Option<&Path>,
    dir: &Path,
    detail: Detail,
    out: &Output,
) -> anyhow::Result<()> {
    if let Some(path) = record {
        let Some(method) = report.job.cloud_to_device_method.as_ref() else {
            return Err(UsageError(format!(
                "--record: job {} is not a direct-method job; only method jobs can be reconciled",
                report.job.job_id
            ))
            .into());
        };
        let truth = reconcile::read_record(path)?;
        let timeout_ms = u64::from(method.response_timeout_secs()) * 1000;
        report.reconciliation =
            Some(reconcile::reconcile(path, records, method.method_name(), timeout_ms, &truth));
    }
    write_dir(&report, dir)?;
    if out.is_json() {
        let mut doc = report.to_json();
        if let serde_json::Value::Object(fields) = &mut doc {
            fields.insert("reportDir".into(), dir.display().to_string().into());
        }
        out.document(&doc);
    } else {
        out.line(text::render(&report, detail).trim_end());
        let mut files = vec![super::REPORT_FILE, super::TIMELINE_FILE];
        if let Some(name) =
            record.filter(|path| path.parent() == Some(dir)).and_then(Path::file_name)
        {
            files.extend(name.to_str());
        }
        out.line(&format!("\nreport: {}/ ({})", dir.display(), files.join(", ")));
    }
    Ok(())
}
