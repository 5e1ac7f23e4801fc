//! The registry's table in the store: `devices(device_id, seq, deleted, doc)`.
//!
//! `doc` is the JSON of a [`Record`]. Upserts keep the row with the highest `seq`, so writes that reach
//! the writer out of order never regress a device; a delete writes a tombstone (`deleted = 1`,
//! `doc = NULL`) for the same reason, and tombstones are dropped when the registry next loads.
//! Rows go through a [`RowQueue`]: every caller appends its rows and one store operation writes
//! whatever has accumulated by the time the writer runs it, so thousands of concurrent twin patches
//! cost one savepoint and one prepared statement loop, not one store operation each. Each caller
//! still returns only after the batch holding its rows has committed.
//! This module does not decide what to write; [`super::Registry`] snapshots records under their locks.

use std::sync::Arc;

use parking_lot::Mutex;
use protocol::ids::DeviceId;
use rusqlite::params;
use tokio::sync::oneshot;

use super::record::Record;
use super::{Registry, RegistryError};
use crate::store::{Store, StoreError};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc TEXT
) WITHOUT ROWID";

const UPSERT: &str = "INSERT INTO devices (device_id, seq, deleted, doc) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted, doc = excluded.doc
    WHERE excluded.seq > devices.seq";

/// One row to upsert.
#[derive(Debug)]
pub(super) struct Row {
    device_id: String,
    seq: u64,
    doc: Option<String>,
}

/// A row snapshotted under a record's lock, to be committed after the lock is released.
#[derive(Debug)]
pub(super) struct PendingWrite(pub(super) Row);

/// What [`load`] found.
pub(super) struct Loaded {
    pub(super) records: Vec<Record>,
    pub(super) next_seq: u64,
}

impl Row {
    /// The live row of `record` at `seq`.
    pub(super) fn of(record: &Record, seq: u64) -> Row {
        let doc =
            serde_json::to_string(record).expect("a record holds only JSON-representable values");
        Row { device_id: record.identity.device_id.as_str().to_owned(), seq, doc: Some(doc) }
    }

    /// A tombstone for `device` at `seq`.
    pub(super) fn tombstone(device: &DeviceId, seq: u64) -> Row {
        Row { device_id: device.as_str().to_owned(), seq, doc: None }
    }
}

/// Rows waiting for the next store operation, and who waits for their commit.
#[derive(Default)]
pub(super) struct RowQueue {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    rows: Vec<Row>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// Whether a store operation that will take these rows is already queued.
    scheduled: bool,
}

impl PendingWrite {
    /// Writes the row and waits for its commit.
    pub(super) async fn commit(self, registry: &Registry) -> Result<(), RegistryError> {
        write_rows(registry, vec![self.0]).await.map_err(RegistryError::from)
    }
}

/// Upserts `rows` and waits until the batch holding them has committed.
pub(super) async fn write_rows(registry: &Registry, rows: Vec<Row>) -> Result<(), StoreError> {
    let queue = &registry.inner.rows;
    let (done_tx, done) = oneshot::channel();
    let schedule = {
        let mut pending = queue.pending.lock();
        pending.rows.extend(rows);
        pending.waiters.push(done_tx);
        !std::mem::replace(&mut pending.scheduled, true)
    };
    if schedule {
        let taker = Arc::clone(queue);
        if let Err(err) = registry.inner.store.write_then(move |tx| taker.write_pending(tx)).await {
            queue.fail_pending(&err);
        }
    }
    match done.await {
        Ok(res) => res.map_err(StoreError::Commit),
        Err(_) => Err(StoreError::Closed),
    }
}

impl RowQueue {
    /// Runs on the writer: takes every pending row and upserts them; the waiters learn the outcome.
    fn write_pending(
        &self,
        tx: &rusqlite::Transaction<'_>,
    ) -> rusqlite::Result<crate::store::AfterCommit> {
        let (rows, waiters) = {
            let mut pending = self.pending.lock();
            pending.scheduled = false;
            (std::mem::take(&mut pending.rows), std::mem::take(&mut pending.waiters))
        };
        match upsert_rows(tx, &rows) {
            Ok(()) => Ok(Box::new(move |outcome: Result<(), StoreError>| {
                let outcome = outcome.map_err(|err| err.to_string());
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            })),
            Err(err) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(err.to_string()));
                }
                Err(err)
            }
        }
    }

    /// The store refused the operation (closed): everyone pending learns it.
    fn fail_pending(&self, err: &StoreError) {
        let waiters = {
            let mut pending = self.pending.lock();
            pending.scheduled = false;
            pending.rows.clear();
            std::mem::take(&mut pending.waiters)
        };
        for waiter in waiters {
            let _ = waiter.send(Err(err.to_string()));
        }
    }
}

fn upsert_rows(tx: &rusqlite::Transaction<'_>, rows: &[Row]) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(UPSERT)?;
    for row in rows {
        let seq = i64::try_from(row.seq).unwrap_or(i64::MAX);
        upsert.execute(params![row.device_id, seq, row.doc.is_none(), row.doc])?;
    }
    Ok(())
}

/// Creates the table, drops tombstones and reads every device.
pub(super) async fn load(store: &Store) -> Result<Loaded, StoreError> {
    store
        .write(|tx| {
            tx.execute_batch(CREATE_TABLE)?;
            tx.execute("DELETE FROM devices WHERE deleted = 1", [])?;
            Ok(())
        })
        .await?;
    let (rows, max_seq) = store
        .read(|conn| {
            let max_seq: Option<i64> =
                conn.query_row("SELECT max(seq) FROM devices", [], |row| row.get(0))?;
            let mut select = conn.prepare(
                "SELECT device_id, doc FROM devices WHERE deleted = 0 ORDER BY device_id",
            )?;
            let rows = select
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, max_seq.unwrap_or(0)))
        })
        .await?;
    let mut records = Vec::with_capacity(rows.len());
    for (device_id, doc) in rows {
        match doc.as_deref().map(serde_json::from_str::<Record>) {
            Some(Ok(record)) => records.push(record),
            Some(Err(err)) => tracing::error!(device_id, %err, "skipping unreadable device row"),
            None => tracing::error!(device_id, "skipping device row without a document"),
        }
    }
    let next_seq = u64::try_from(max_seq).unwrap_or(0) + 1;
    Ok(Loaded { records, next_seq })
}
