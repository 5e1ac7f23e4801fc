//! Durable state in one SQLite database (WAL mode): one writer thread with group commit, reads on
//! their own connections.
//!
//! Writes are closures over a [`rusqlite::Transaction`]. [`Store::write`] queues one on a bounded
//! channel and returns once the transaction that ran it has committed; the writer takes whatever is
//! queued (up to [`MAX_BATCH`] operations) and runs it in a single transaction, so many concurrent
//! callers share one fsync. Each operation runs inside its own savepoint: a failing operation is
//! rolled back and reported to its caller alone, the rest of the batch still commits.
//! Reads ([`Store::read`]) borrow one of a few read-only connections; WAL lets them run beside the writer.
//!
//! Other modules keep their own tables in the same file: create them with [`Store::write`] at start
//! (`CREATE TABLE IF NOT EXISTS ...`) and write them with the same call, e.g.
//! ```ignore
//! store.write(move |tx| { tx.execute("INSERT INTO jobs(id, doc) VALUES (?1, ?2)", (id, doc))?; Ok(()) }).await?;
//! let n: i64 = store.read(|conn| conn.query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))).await?;
//! ```
//! Use `tx.prepare_cached(..)` for statements that run once per operation: the writer's connection
//! keeps them compiled across batches.
//!
//! The store knows nothing about devices or jobs; [`crate::registry`] owns the `devices` table.
//! It does not retry: a failed commit is reported to every caller of that batch.

mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use writer::{Op, WriteFn};

/// Most operations one transaction takes from the queue.
pub const MAX_BATCH: usize = 8192;

/// Capacity of the write queue; when full, [`Store::write`] waits (back-pressure on the callers).
const QUEUE_CAPACITY: usize = 16_384;

/// Read-only connections kept for [`Store::read`].
const READ_CONNECTIONS: usize = 4;

/// A callback run on the writer thread with the outcome of the batch that held its operation.
pub type AfterCommit = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Cheap-to-clone handle to the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    ops: mpsc::Sender<Op>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch holding this write did not commit.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer has stopped (the hub is shutting down or the store was closed).
    #[error("the store is closed")]
    Closed,
    /// A read task could not be run.
    #[error("store read task failed: {0}")]
    Task(String),
}

impl Store {
    /// Opens (creating if needed) the database at `path` in WAL mode and starts the writer on
    /// `tracker` (a blocking thread). The writer stops after [`Store::close`].
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the file cannot be opened or configured.
    pub fn open(path: &Path, tracker: &TaskTracker) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        configure_writer(&conn)?;
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            readers.push(open_reader(path)?);
        }
        // Bounded: a full queue makes `write` wait, which slows producers to the disk's pace.
        let (ops, rx) = mpsc::channel(QUEUE_CAPACITY);
        tracker.spawn_blocking(move || writer::run(conn, rx));
        Ok(Store {
            inner: Arc::new(Inner { ops, readers: Mutex::new(readers), path: path.to_owned() }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` in the next transaction and returns once that transaction has committed.
    ///
    /// # Errors
    /// The closure's own error (its savepoint is rolled back), a commit failure, or
    /// [`StoreError::Closed`] after [`Store::close`].
    pub async fn write<F>(&self, op: F) -> Result<(), StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let (ack, done) = oneshot::channel();
        let op: WriteFn = Box::new(move |tx| op(tx).map(|()| None));
        self.inner
            .ops
            .send(Op::Write { op, ack: Some(ack) })
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `op` without waiting for its commit (failures are logged by the writer). For state
    /// that is fine to lose on a crash, e.g. last-activity times. Waits only when the queue is full.
    ///
    /// # Errors
    /// [`StoreError::Closed`] after [`Store::close`].
    pub async fn write_detached<F>(&self, op: F) -> Result<(), StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let op: WriteFn = Box::new(move |tx| op(tx).map(|()| None));
        self.inner.ops.send(Op::Write { op, ack: None }).await.map_err(|_| StoreError::Closed)
    }

    /// Queues `op` without waiting; the callback it returns runs on the writer thread once the
    /// batch holding `op` has committed (`Ok`) or failed to (`Err`). If `op` itself fails, its
    /// savepoint is rolled back, no callback runs and the failure is logged, so `op` should report
    /// its own error to whoever waits. This is how callers coalesce many logical writes into one
    /// operation (see the registry's row queue). Waits only when the queue is full.
    ///
    /// # Errors
    /// [`StoreError::Closed`] after [`Store::close`] (`op` is dropped without running).
    pub async fn write_then<F>(&self, op: F) -> Result<(), StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<AfterCommit> + Send + 'static,
    {
        let op: WriteFn = Box::new(move |tx| op(tx).map(Some));
        self.inner.ops.send(Op::Write { op, ack: None }).await.map_err(|_| StoreError::Closed)
    }

    /// Runs `read` on a read-only connection on the blocking pool.
    ///
    /// # Errors
    /// The closure's error, or [`StoreError::Task`] when the blocking task panicked.
    pub async fn read<F, T>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(read))
            .await
            .map_err(|err| StoreError::Task(err.to_string()))?
    }

    /// Runs `read` on a read-only connection on this thread (startup loading, blocking contexts).
    ///
    /// # Errors
    /// The closure's error, or opening an extra connection failed.
    pub fn read_blocking<F, T>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T>,
    {
        let pooled = self.inner.readers.lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.inner.path)?,
        };
        let res = read(&conn);
        let mut readers = self.inner.readers.lock();
        if readers.len() < READ_CONNECTIONS {
            readers.push(conn);
        }
        Ok(res?)
    }

    /// Waits until every write queued before this call has committed.
    ///
    /// # Errors
    /// [`StoreError::Closed`] when the writer has stopped.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    /// Commits everything queued, then stops the writer (later writes fail with
    /// [`StoreError::Closed`]). Idempotent.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.inner.ops.send(Op::Close { ack }).await.is_ok() {
            // An error means the writer already stopped; either way nothing is left queued.
            let _ = done.await;
        }
    }
}

fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a commit survives a process crash; an OS crash may lose the last batch.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each operation runs in a savepoint; keep its statement journal in memory, not in a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 16 MiB page cache (negative = KiB); larger caches cost more per transaction end.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
