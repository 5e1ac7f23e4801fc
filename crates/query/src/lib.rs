//! query crate (in progress).
