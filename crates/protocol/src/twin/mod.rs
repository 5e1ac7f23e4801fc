//! Device twins: JSON merge-patch, the stored twin document, its limits, and its wire renderings.
//!
//! - [`merge`]: RFC 7386 merge-patch as IoT Hub applies it ([`merge_patch`], [`merge_object`]).
//! - [`document`]: [`TwinDocument`], the twin the hub stores (tags, desired and reported [`Section`]s
//!   with `$version` and `$metadata`, the twin `version`, the [`TwinEtag`]); every write returns a [`TwinUpdate`].
//! - [`limits`]: key, value, depth and size rules (§3.3) and [`TwinError`], which maps to an
//!   [`ErrorCode`](crate::error::ErrorCode) and renders the MQTT error body.
//! - [`wire`]: the device view (MQTT GET), the desired push body, [`ServiceTwin`] (REST), and
//!   [`TwinPatch`], the service patch body parser.
//!
//! How a hub uses it:
//! - MQTT twin GET → [`TwinDocument::device_view`].
//! - MQTT reported patch → [`parse_section_patch`], then [`TwinDocument::apply_reported`]; answer 204
//!   with `$version` = [`TwinUpdate::reported_version`], or the error's [`TwinError::mqtt_status`] and
//!   [`TwinError::mqtt_error_body`].
//! - `PATCH /twins/{id}` → [`TwinPatch::from_slice`] (with [`ReportedInPatch::Reject`]),
//!   [`TwinDocument::check_if_match`], [`TwinDocument::apply_patch`]; publish [`TwinUpdate::desired_push`]
//!   if it is `Some`; answer with [`TwinDocument::to_service_twin`].
//! - `PUT /twins/{id}` → the same parser, then [`TwinDocument::replace`].
//! - A job's `updateTwin` → [`TwinDocument::apply_patch`] with the job's parsed [`TwinPatch`] (etag is forced).
//!
//! Not here: storage, locking, pushing to devices, identity fields (the hub passes [`TwinIdentity`]).

pub mod document;
pub mod limits;
pub mod merge;
pub mod wire;

#[cfg(test)]
mod tests;

pub use document::{Section, TwinDocument, TwinEtag, TwinUpdate};
pub use limits::{section_size, validate_patch, SectionKind, TwinError};
pub use merge::{merge_object, merge_patch};
pub use wire::{
    desired_push_body, parse_section_patch, ReportedInPatch, ServiceTwin, TwinIdentity, TwinPatch,
    TwinProperties,
};
