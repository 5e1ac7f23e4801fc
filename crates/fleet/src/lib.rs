//! fleet crate (in progress).
