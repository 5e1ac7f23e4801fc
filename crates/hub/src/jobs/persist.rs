//! The jobs engine's tables in the hub store: `jobs_v2` (one row per job, its serde form) and
//! `device_jobs` (one row per targeted device, the `devices.jobs` wire JSON).
//!
//! Functions here are either closures' bodies for [`Store::write`] (they take a transaction) or reads.
//! They do not decide when to write; the engine and the runners do. Records are keyed by
//! `(job_id, device_id)`, so a device has exactly one record per job however often it is written.

use chrono::{DateTime, Utc};
use protocol::ids::{DeviceId, JobId};
use rusqlite::{params, Transaction};
use serde_json::Value;

use super::model::{DeviceRecord, Job, JobStatus};
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
CREATE TABLE IF NOT EXISTS device_jobs (
    job_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, device_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_jobs_by_device ON device_jobs(device_id);
";

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
    tx.prepare_cached("INSERT OR REPLACE INTO device_jobs (job_id, device_id, status, doc) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![record.job_id.as_str(), record.device_id.as_str(), record.status.as_str(), doc])?;
    Ok(())
}

/// The records of `job_id` (for resuming a job), in device-id order.
pub(crate) async fn load_records(
    store: &Store,
    job_id: &JobId,
) -> Result<Vec<DeviceRecord>, StoreError> {
    let job_id = job_id.as_str().to_owned();
    let docs = store
        .read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT doc FROM device_jobs WHERE job_id = ?1 ORDER BY device_id")?;
            let rows = stmt.query_map([job_id], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    Ok(docs
        .iter()
        .filter_map(|doc| match serde_json::from_str(doc) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(%err, "skipping a stored device job record that does not parse");
                None
            }
        })
        .collect())
}

/// Device records as `devices.jobs` JSON, narrowed by `filter`, ordered by job then device.
pub(crate) async fn read_records(
    store: &Store,
    filter: RecordFilter,
) -> Result<Vec<Value>, StoreError> {
    let docs = store
        .read(move |conn| {
            let job = filter.job_id.as_ref().map(|id| id.as_str().to_owned());
            let device = filter.device_id.as_ref().map(|id| id.as_str().to_owned());
            let mut stmt = conn.prepare(
                "SELECT doc FROM device_jobs WHERE (?1 IS NULL OR job_id = ?1) AND (?2 IS NULL OR device_id = ?2) \
                 ORDER BY job_id, device_id",
            )?;
            let rows = stmt.query_map(params![job, device], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    Ok(docs.iter().filter_map(|doc| serde_json::from_str(doc).ok()).collect())
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
        "DELETE FROM device_jobs WHERE job_id IN \
         (SELECT job_id FROM jobs_v2 WHERE end_ms IS NOT NULL AND end_ms < ?1 AND status IN (?2, ?3, ?4))",
        params![cutoff_ms, terminal[0], terminal[1], terminal[2]],
    )?;
    tx.execute(
        "DELETE FROM jobs_v2 WHERE end_ms IS NOT NULL AND end_ms < ?1 AND status IN (?2, ?3, ?4)",
        params![cutoff_ms, terminal[0], terminal[1], terminal[2]],
    )
}
