//! The human form of a [`JobReport`]: a heading, then aligned tables (devices per status, failed
//! devices with their error codes, latency percentiles, duration) and, when a fleet record was given,
//! the reconciliation summary.
//!
//! [`render`] returns the text; the caller hands it to `output`. Long lists are not truncated here
//! except the reconciliation's agreeing devices, which [`Detail::Summary`] leaves out.

use protocol::job::DeviceJobStatus;

use crate::output::Table;
use crate::report::reconcile::{Reconciliation, Verdict};
use crate::report::stats::LatencySummary;
use crate::report::JobReport;

/// How much of the reconciliation to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Counts and the devices that disagree or could not be checked.
    Summary,
    /// One line per device.
    Full,
}

/// The report as text, ending with a newline.
pub(crate) fn render(report: &JobReport, detail: Detail) -> String {
    let mut sections = vec![heading(report), status_table(report).render()];
    if !report.failures.is_empty() {
        sections.push(failure_table(report).render());
    }
    sections.push(latency_table(report).render());
    if let Some(reconciliation) = &report.reconciliation {
        sections.push(reconciliation_text(reconciliation, detail));
    }
    sections.join("\n")
}

fn heading(report: &JobReport) -> String {
    let job = &report.job;
    let what = match &job.cloud_to_device_method {
        Some(method) => format!(
            "{} {} (response timeout {} s)",
            job.job_type.as_str(),
            method.method_name(),
            method.response_timeout_secs()
        ),
        None => job.job_type.as_str().to_owned(),
    };
    let duration = match report.duration_ms {
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "-".to_owned(),
    };
    format!(
        "job {}: {what}, {}\ndevices: {} matching {}\nduration: {duration} from the start time to the last device\n",
        job.job_id,
        job.status.as_str(),
        report.total(),
        job.query_condition.as_deref().unwrap_or("*"),
    )
}

fn status_table(report: &JobReport) -> Table {
    let mut table = Table::new(["status", "devices", "detail"]);
    for (status, count) in &report.counts {
        let detail = match status {
            DeviceJobStatus::Completed => report
                .method_statuses
                .iter()
                .map(|(code, n)| format!("{n} answered {code}"))
                .collect::<Vec<_>>()
                .join(", "),
            DeviceJobStatus::Failed => report
                .failures_by_code()
                .iter()
                .map(|(label, n)| format!("{n} {label}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        if *count > 0 || matches!(status, DeviceJobStatus::Completed | DeviceJobStatus::Failed) {
            table.row([status.as_str().to_owned(), count.to_string(), detail]);
        }
    }
    table
}

fn failure_table(report: &JobReport) -> Table {
    let mut table = Table::new(["failed device", "code", "error", "description"]);
    for failure in &report.failures {
        table.row([
            failure.device_id.clone(),
            failure.code.map(|code| code.to_string()).unwrap_or_default(),
            failure.name.clone(),
            failure.description.clone(),
        ]);
    }
    table
}

fn latency_table(report: &JobReport) -> Table {
    let mut table = Table::new(["latency (start→end)", "devices", "p50", "p95", "p99", "max"]);
    let mut row = |name: &str, summary: Option<&LatencySummary>| {
        let Some(s) = summary else { return };
        table.row([
            name.to_owned(),
            s.count.to_string(),
            millis(s.p50),
            millis(s.p95),
            millis(s.p99),
            millis(s.max),
        ]);
    };
    row("completed", report.latency.as_ref());
    row("failed", report.failed_latency.as_ref());
    table
}

fn reconciliation_text(reconciliation: &Reconciliation, detail: Detail) -> String {
    let mut text = format!(
        "fleet record: {} of {} devices agree, {} disagree, {} not checkable\n",
        reconciliation.count(Verdict::Agrees),
        reconciliation.devices.len(),
        reconciliation.count(Verdict::Disagrees),
        reconciliation.count(Verdict::Unknown),
    );
    for device in &reconciliation.devices {
        if detail == Detail::Full || device.verdict != Verdict::Agrees {
            text.push_str(&format!(
                "  {} {}: hub says {}; {}\n",
                device.verdict.mark(),
                device.device_id,
                device.hub,
                device.device
            ));
        }
    }
    text
}

/// `850 ms` or `8.21 s`.
fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}
