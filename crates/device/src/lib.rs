//! device crate (in progress).
