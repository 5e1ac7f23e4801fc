//! CONTRACT SKELETON (owned by hub-core).
//! Durable state in SQLite (WAL): one writer task with group commit; reads on their own connection.

/// Cheap-to-clone handle to the store.
#[derive(Clone)]
pub struct Store {}
