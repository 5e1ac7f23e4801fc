//! test-support crate (in progress).
