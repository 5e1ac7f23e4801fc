//! The store's writer loop: takes queued operations in batches and commits each batch once.
//!
//! Runs on a blocking thread and owns the only read-write connection. It does not interpret the
//! operations; each is a closure run inside its own savepoint of the batch's transaction.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, MAX_BATCH};

/// A write closure.
pub(super) type WriteFn =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send>;

/// One queued request.
pub(super) enum Op {
    /// Run `op`; send the outcome on `ack` after the commit (no ack: log failures).
    Write { op: WriteFn, ack: Option<oneshot::Sender<Result<(), StoreError>>> },
    /// Commit what came before, then stop.
    Close { ack: oneshot::Sender<()> },
}

type Acks = Vec<(Option<oneshot::Sender<Result<(), StoreError>>>, Result<(), rusqlite::Error>)>;

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
    let mut acks: Acks = Vec::with_capacity(batch.len());
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
    let outcome = run_in_transaction(conn, ops, &mut acks);
    for (ack, res) in acks {
        let res = match (&outcome, res) {
            (Err(err), _) => Err(StoreError::Commit(err.to_string())),
            (Ok(()), res) => res.map_err(StoreError::Sqlite),
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

type PendingOp = (WriteFn, Option<oneshot::Sender<Result<(), StoreError>>>);

fn run_in_transaction(
    conn: &mut Connection,
    ops: Vec<PendingOp>,
    acks: &mut Acks,
) -> rusqlite::Result<()> {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(err) => {
            acks.extend(ops.into_iter().map(|(_, ack)| (ack, Ok(()))));
            return Err(err);
        }
    };
    for (op, ack) in ops {
        let res = run_one(&tx, op);
        acks.push((ack, res));
    }
    tx.commit().inspect_err(|err| tracing::error!(%err, "store commit failed"))
}

fn run_one(tx: &rusqlite::Transaction<'_>, op: WriteFn) -> rusqlite::Result<()> {
    // A named savepoint (plain SQL, so the closure still sees the batch's `Transaction`) scopes
    // a failing operation's changes to itself.
    tx.execute_batch("SAVEPOINT store_op")?;
    match op(tx) {
        Ok(()) => tx.execute_batch("RELEASE store_op"),
        Err(err) => {
            tx.execute_batch("ROLLBACK TO store_op; RELEASE store_op")?;
            Err(err)
        }
    }
}
