//! The registry's table in the store: `devices(device_id, seq, deleted, doc)`.
//!
//! `doc` is the JSON of a [`Record`]. Upserts keep the row with the highest `seq`, so writes that reach
//! the writer out of order never regress a device; a delete writes a tombstone (`deleted = 1`,
//! `doc = NULL`) for the same reason, and tombstones are dropped when the registry next loads.
//! This module does not decide what to write; [`super::Registry`] snapshots records under their locks.

use protocol::ids::DeviceId;
use rusqlite::params;

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

impl PendingWrite {
    /// Writes the row and waits for its commit.
    pub(super) async fn commit(self, registry: &Registry) -> Result<(), RegistryError> {
        write_rows(&registry.inner.store, vec![self.0]).await.map_err(RegistryError::from)
    }
}

/// Upserts `rows` in one store operation.
pub(super) async fn write_rows(store: &Store, rows: Vec<Row>) -> Result<(), StoreError> {
    store
        .write(move |tx| {
            let mut upsert = tx.prepare_cached(UPSERT)?;
            for row in &rows {
                let seq = i64::try_from(row.seq).unwrap_or(i64::MAX);
                upsert.execute(params![row.device_id, seq, row.doc.is_none(), row.doc])?;
            }
            Ok(())
        })
        .await
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
