//! The store's writer loop: takes queued operations in batches and commits each batch once.
//!
//! Runs on a blocking thread and owns the only read-write connection. It does not interpret the
//! operations; each is a closure run inside its own savepoint of the batch's transaction. An
//! operation may return an [`AfterCommit`] callback, which runs with the batch's outcome once the
//! commit has happened (or failed).

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{AfterCommit, StoreError, MAX_BATCH};

/// A write closure; `Some` callback runs after the commit.
pub(super) type WriteFn =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Option<AfterCommit>> + Send>;

/// Who learns the outcome of a write.
pub(super) type Ack = Option<oneshot::Sender<Result<(), StoreError>>>;

/// One queued request.
pub(super) enum Op {
    /// Run `op`; send the outcome on `ack` after the commit (no ack: log failures).
    Write { op: WriteFn, ack: Ack },
    /// Commit what came before, then stop.
    Close { ack: oneshot::Sender<()> },
}

/// The result of one operation inside the batch.
struct Done {
    ack: Ack,
    res: Result<Option<AfterCommit>, rusqlite::Error>,
}

/// Runs until the channel closes or a [`Op::Close`] arrives.
pub(super) fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(64);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let close = commit_batch(&mut conn, &mut batch);
        if let Some(ack) = close {
            rx.close();
            // Anything that slipped in before `close()` still gets committed.
            while let Ok(op) = rx.try_recv() {
                batch.push(op);
            }
            let _ = commit_batch(&mut conn, &mut batch);
            let _ = ack.send(());
            tracing::debug!("store writer stopped");
            return;
        }
    }
    tracing::debug!("store writer stopped: every handle dropped");
}

/// Commits the writes of `batch` (draining it); returns the close ack if the batch held a close.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Op>) -> Option<oneshot::Sender<()>> {
    let mut close = None;
    let mut ops = Vec::with_capacity(batch.len());
    for op in batch.drain(..) {
        match op {
            Op::Write { op, ack } => ops.push((op, ack)),
            Op::Close { ack } => close = Some(ack),
        }
    }
    if ops.is_empty() {
        return close;
    }
    let mut done = Vec::with_capacity(ops.len());
    let outcome = run_in_transaction(conn, ops, &mut done);
    for Done { ack, res } in done {
        let res = match (&outcome, res) {
            (Err(err), Ok(after)) => {
                let failed = StoreError::Commit(err.to_string());
                if let Some(after) = after {
                    after(Err(StoreError::Commit(err.to_string())));
                }
                Err(failed)
            }
            (Ok(()), Ok(after)) => {
                if let Some(after) = after {
                    after(Ok(()));
                }
                Ok(())
            }
            (_, Err(err)) => Err(StoreError::Sqlite(err)),
        };
        match ack {
            // The caller may have given up waiting; its write is committed anyway.
            Some(ack) => {
                let _ = ack.send(res);
            }
            None => {
                if let Err(err) = res {
                    tracing::warn!(%err, "detached store write failed");
                }
            }
        }
    }
    close
}

fn run_in_transaction(
    conn: &mut Connection,
    ops: Vec<(WriteFn, Ack)>,
    done: &mut Vec<Done>,
) -> rusqlite::Result<()> {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(err) => {
            // Nothing ran; every operation reports the failure to begin.
            done.extend(ops.into_iter().map(|(_, ack)| Done { ack, res: Ok(None) }));
            return Err(err);
        }
    };
    for (op, ack) in ops {
        let res = run_one(&tx, op);
        done.push(Done { ack, res });
    }
    tx.commit().inspect_err(|err| tracing::error!(%err, "store commit failed"))
}

fn run_one(tx: &rusqlite::Transaction<'_>, op: WriteFn) -> rusqlite::Result<Option<AfterCommit>> {
    // A named savepoint (plain SQL, so the closure still sees the batch's `Transaction`) scopes
    // a failing operation's changes to itself.
    tx.execute_batch("SAVEPOINT store_op")?;
    match op(tx) {
        Ok(after) => {
            tx.execute_batch("RELEASE store_op")?;
            Ok(after)
        }
        Err(err) => {
            tx.execute_batch("ROLLBACK TO store_op; RELEASE store_op")?;
            Err(err)
        }
    }
}
