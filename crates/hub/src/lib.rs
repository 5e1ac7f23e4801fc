//! hub crate (in progress).
