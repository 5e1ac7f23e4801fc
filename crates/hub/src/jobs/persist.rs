//! The jobs engine's tables in the hub store: `jobs_v2` (one row per job, its serde form),
//! `job_devices` (a running job's device set, one compact row) and `job_records` (one row per
//! device whose operation has started, the `devices.jobs` wire JSON).
//!
//! A job's device set is committed as a single row of newline-separated ids when it starts
//! (10,000 ids commit in a few milliseconds, so the first device operation is not held up), and a
//! device gets its own record row only when its operation starts or ends. Readers render the
//! devices of the set that have no row yet as `pending` records. The set row goes when the job
//! finishes, by which time every device has its terminal row. Rows without a document (`doc` NULL),
//! which older versions wrote for pending devices, are read the same way.
//!
//! Functions here are either closures' bodies for [`Store::write`] (they take a transaction) or reads.
//! They do not decide when to write; the engine and the runners do. Records are keyed by
//! `(job_id, device_id)`, so a device has exactly one record per job however often it is written.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use protocol::ids::{DeviceId, JobId};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;

use super::model::{pending_record, DeviceRecord, Job, JobStatus};
use crate::store::{Store, StoreError};

/// Filters for reading device records (the rest of a `devices.jobs` condition is evaluated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only records of this job.
    pub job_id: Option<JobId>,
    /// Only records of this device.
    pub device_id: Option<DeviceId>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs_v2 (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    end_ms INTEGER,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_records (
    job_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT,
    PRIMARY KEY (job_id, device_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_records_by_device ON job_records(device_id);
CREATE TABLE IF NOT EXISTS job_devices (
    job_id TEXT PRIMARY KEY,
    devices TEXT NOT NULL
) WITHOUT ROWID;
";

/// Separates ids in a `job_devices` row; device ids cannot contain it.
const SET_SEPARATOR: char = '\n';

/// Creates the tables if needed.
pub(crate) async fn init(store: &Store) -> Result<(), StoreError> {
    store.write(|tx| tx.execute_batch(SCHEMA)).await
}

/// Every job in the store, oldest first. Rows that no longer parse are skipped with a warning.
pub(crate) async fn load_jobs(store: &Store) -> Result<Vec<Job>, StoreError> {
    let docs = store
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT job_id, doc FROM jobs_v2")?;
            let rows =
                stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    let mut jobs: Vec<Job> = docs
        .into_iter()
        .filter_map(|(job_id, doc)| match serde_json::from_str(&doc) {
            Ok(job) => Some(job),
            Err(err) => {
                tracing::warn!(%job_id, %err, "skipping a stored job that does not parse");
                None
            }
        })
        .collect();
    jobs.sort_by(|a, b| (a.created_time, &a.job_id).cmp(&(b.created_time, &b.job_id)));
    Ok(jobs)
}

/// Inserts or replaces a job row.
pub(crate) fn save_job(tx: &Transaction<'_>, job: &Job) -> rusqlite::Result<()> {
    let doc = serde_json::to_string(job)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    let end_ms = job.end_time.map(|at| at.timestamp_millis());
    tx.prepare_cached(
        "INSERT OR REPLACE INTO jobs_v2 (job_id, status, end_ms, doc) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![job.job_id.as_str(), job.status.as_str(), end_ms, doc])?;
    Ok(())
}

/// Inserts or replaces a device record.
pub(crate) fn save_record(tx: &Transaction<'_>, record: &DeviceRecord) -> rusqlite::Result<()> {
    let doc = serde_json::to_string(record)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    tx.prepare_cached("INSERT OR REPLACE INTO job_records (job_id, device_id, status, doc) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![record.job_id.as_str(), record.device_id.as_str(), record.status.as_str(), doc])?;
    Ok(())
}

/// Stores a job's device set (see the module doc).
pub(crate) fn save_device_set(
    tx: &Transaction<'_>,
    job_id: &JobId,
    devices: &[DeviceId],
) -> rusqlite::Result<()> {
    let mut joined = String::with_capacity(devices.iter().map(|id| id.as_str().len() + 1).sum());
    for device in devices {
        joined.push_str(device.as_str());
        joined.push(SET_SEPARATOR);
    }
    tx.prepare_cached("INSERT OR REPLACE INTO job_devices (job_id, devices) VALUES (?1, ?2)")?
        .execute(params![job_id.as_str(), joined])?;
    Ok(())
}

/// Drops a finished job's device set (see `runner::commit_finished` for why nothing is lost).
pub(crate) fn delete_device_set(tx: &Transaction<'_>, job_id: &JobId) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM job_devices WHERE job_id = ?1")?.execute([job_id.as_str()])?;
    Ok(())
}

/// The records of `job` (for resuming it), in device-id order.
pub(crate) async fn load_records(
    store: &Store,
    job: &Job,
) -> Result<Vec<DeviceRecord>, StoreError> {
    let filter = RecordFilter { job_id: Some(job.job_id.clone()), device_id: None };
    let rows = store.read(move |conn| read_stored(conn, &filter)).await?;
    Ok(rows.iter().filter_map(|(_, device, doc)| render(job, device, doc.as_deref())).collect())
}

/// Device records as `devices.jobs` JSON, narrowed by `filter`, ordered by job then device.
pub(crate) async fn read_records(
    store: &Store,
    filter: RecordFilter,
) -> Result<Vec<Value>, StoreError> {
    let (rows, jobs) = store
        .read(move |conn| {
            let rows = read_stored(conn, &filter)?;
            // The jobs whose pending devices must be rendered.
            let mut jobs = HashMap::new();
            let mut job_doc = conn.prepare("SELECT doc FROM jobs_v2 WHERE job_id = ?1")?;
            for (job_id, _, doc) in &rows {
                if doc.is_none() && !jobs.contains_key(job_id) {
                    let doc: Option<String> =
                        job_doc.query_row([job_id], |row| row.get(0)).optional()?;
                    jobs.insert(job_id.clone(), doc);
                }
            }
            Ok((rows, jobs))
        })
        .await?;
    let jobs: HashMap<String, Job> = jobs
        .into_iter()
        .filter_map(|(id, doc)| Some((id, serde_json::from_str(doc.as_deref()?).ok()?)))
        .collect();
    Ok(rows
        .iter()
        .filter_map(|(job_id, device, doc)| match doc {
            Some(doc) => serde_json::from_str(doc).ok(),
            None => render(jobs.get(job_id)?, device, None).map(|record| record.to_value()),
        })
        .collect())
}

/// A record as stored: `(job_id, device_id, doc)`; `None` is a pending device.
type StoredRecord = (String, String, Option<String>);

/// The record rows matching `filter`, plus a `None` entry for each device of a running job's set
/// that has no row yet, ordered by job then device.
fn read_stored(conn: &Connection, filter: &RecordFilter) -> rusqlite::Result<Vec<StoredRecord>> {
    let job = filter.job_id.as_ref().map(JobId::as_str);
    let device = filter.device_id.as_ref().map(DeviceId::as_str);
    let mut stmt = conn.prepare_cached(
        "SELECT job_id, device_id, doc FROM job_records \
         WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR device_id = ?2) ORDER BY job_id, device_id",
    )?;
    let mut rows = stmt
        .query_map(params![job, device], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<Vec<StoredRecord>>>()?;
    let mut sets = conn.prepare_cached(
        "SELECT job_id, devices FROM job_devices WHERE (?1 IS NULL OR job_id = ?1) ORDER BY job_id",
    )?;
    let sets = sets
        .query_map(params![job], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if sets.is_empty() {
        return Ok(rows);
    }
    let stored: HashSet<(&str, &str)> =
        rows.iter().map(|(job, device, _)| (job.as_str(), device.as_str())).collect();
    let mut pending = Vec::new();
    for (job_id, devices) in &sets {
        for member in devices.split(SET_SEPARATOR).filter(|member| !member.is_empty()) {
            if device.is_none_or(|wanted| wanted == member)
                && !stored.contains(&(job_id.as_str(), member))
            {
                pending.push((job_id.clone(), member.to_owned(), None));
            }
        }
    }
    rows.append(&mut pending);
    rows.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(rows)
}

/// A stored row as a record: its document, or a pending record of `job` for a thin row.
fn render(job: &Job, device: &str, doc: Option<&str>) -> Option<DeviceRecord> {
    match doc {
        Some(doc) => match serde_json::from_str(doc) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(job_id = %job.job_id, device_id = device, %err, "skipping a stored device job record that does not parse");
                None
            }
        },
        None => {
            let device = DeviceId::new(device).ok()?;
            Some(pending_record(job, device, job.run_started.unwrap_or(job.start_time)))
        }
    }
}

/// Deletes finished jobs that ended before `cutoff`, with their records. Returns how many jobs went.
pub(crate) fn delete_expired(
    tx: &Transaction<'_>,
    cutoff: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let cutoff_ms = cutoff.timestamp_millis();
    let terminal =
        [JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled].map(JobStatus::as_str);
    tx.execute(
        "DELETE FROM job_records WHERE job_id IN \
         (SELECT job_id FROM jobs_v2 WHERE end_ms IS NOT NULL AND end_ms < ?1 AND status IN (?2, ?3, ?4))",
        params![cutoff_ms, terminal[0], terminal[1], terminal[2]],
    )?;
    tx.execute(
        "DELETE FROM job_devices WHERE job_id IN \
         (SELECT job_id FROM jobs_v2 WHERE end_ms IS NOT NULL AND end_ms < ?1 AND status IN (?2, ?3, ?4))",
        params![cutoff_ms, terminal[0], terminal[1], terminal[2]],
    )?;
    tx.execute(
        "DELETE FROM jobs_v2 WHERE end_ms IS NOT NULL AND end_ms < ?1 AND status IN (?2, ?3, ?4)",
        params![cutoff_ms, terminal[0], terminal[1], terminal[2]],
    )
}

/// Jobs per status and the count of terminal device records (see `Jobs::metrics`).
pub(crate) async fn read_metrics(store: &Store) -> Result<(Vec<(String, u64)>, u64), StoreError> {
    store
        .read(|conn| {
            let mut statement = conn.prepare("SELECT status, COUNT(*) FROM jobs_v2 GROUP BY status ORDER BY status")?;
            let by_status = statement
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let done = conn.query_row(
                "SELECT COUNT(*) FROM job_records WHERE status IN ('completed', 'failed', 'canceled')",
                [],
                |row| row.get::<_, u64>(0),
            )?;
            Ok((by_status, done))
        })
        .await
}
