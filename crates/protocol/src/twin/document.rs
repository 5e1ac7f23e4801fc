//! The twin document the hub stores: tags, desired and reported sections with `$version` and
//! `$metadata`, the twin `version`, and the etag.
//!
//! Every write goes through [`TwinDocument`]; each operation validates first, applies to a copy,
//! checks the section size, and only then commits, so a refused operation changes nothing.
//! Counting rules: a write is a patch that sets at least one value (even to its current value) or
//! deletes an existing key. Each write bumps the etag; a tags or desired write bumps `version` once per
//! operation; a desired write bumps desired `$version`, a reported write reported `$version`.
//! Patches that write nothing (`{}`, deleting missing keys) change no counter.
//!
//! `$metadata` keeps `$lastUpdated` (and, in desired, `$lastUpdatedVersion`) for every object level,
//! including the section root, which keeps its stamp when keys under it are deleted.
//! Renderings to JSON live in [`super::wire`].

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::limits::{check_section_size, validate_patch, SectionKind, TwinError};
use super::merge::merge_object;
use super::wire::desired_push_body;

/// A twin etag: an 8-byte big-endian counter, shown as base64 (`7` → `AAAAAAAAAAc=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TwinEtag(pub u64);

/// A stored twin. Serializes to an internal form for the hub's store (not a wire shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinDocument {
    etag: TwinEtag,
    version: u64,
    tags: Map<String, Value>,
    desired: Section,
    reported: Section,
}

/// One of `properties.desired` / `properties.reported`: values, `$version` and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    values: Map<String, Value>,
    version: u64,
    metadata: MetaNode,
}

/// `$metadata` of one object level (or one leaf).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetaNode {
    pub(crate) last_updated: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_updated_version: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) children: BTreeMap<String, MetaNode>,
}

/// What an operation did, with the counters after it.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinUpdate {
    /// Whether anything was written (if not, no counter moved and nothing should be pushed).
    pub written: bool,
    /// The body to publish on `$iothub/twin/PATCH/properties/desired/?$version=n` (patch as applied
    /// plus `"$version"`), when desired was written.
    pub desired_push: Option<Value>,
    /// Desired `$version` after the operation.
    pub desired_version: u64,
    /// Reported `$version` after the operation (the `$version` of a 204 twin response).
    pub reported_version: u64,
    /// Twin `version` after the operation.
    pub twin_version: u64,
    /// Etag after the operation.
    pub etag: TwinEtag,
}

/// When and at which desired version a write happened.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: DateTime<Utc>,
    version: Option<u64>,
}

impl TwinEtag {
    /// The base64 text, e.g. `AAAAAAAAAAc=`.
    pub fn to_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.to_be_bytes())
    }

    /// Reads an etag as the service writes it (surrounding quotes allowed); `None` if it is not one.
    pub fn parse(text: &str) -> Option<TwinEtag> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(strip_quotes(text)).ok()?;
        let counter: [u8; 8] = bytes.try_into().ok()?;
        Some(TwinEtag(u64::from_be_bytes(counter)))
    }

    /// Whether an `If-Match` header value allows a write: absent, `*` or `"*"`, or this etag with or
    /// without quotes.
    pub fn matches_if_match(self, if_match: Option<&str>) -> bool {
        match if_match.map(strip_quotes) {
            None | Some("*") => true,
            Some(given) => given == self.to_base64(),
        }
    }
}

impl std::fmt::Display for TwinEtag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl TwinDocument {
    /// A new twin: etag 1, version 1, both sections empty at `$version` 1.
    pub fn new(now: DateTime<Utc>) -> TwinDocument {
        TwinDocument {
            etag: TwinEtag(1),
            version: 1,
            tags: Map::new(),
            desired: Section::new(now, Some(1)),
            reported: Section::new(now, None),
        }
    }

    /// The etag.
    pub fn etag(&self) -> TwinEtag {
        self.etag
    }

    /// The twin `version` (tags and desired writes).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The tags.
    pub fn tags(&self) -> &Map<String, Value> {
        &self.tags
    }

    /// The desired section.
    pub fn desired(&self) -> &Section {
        &self.desired
    }

    /// The reported section.
    pub fn reported(&self) -> &Section {
        &self.reported
    }

    /// Checks an `If-Match` header against the etag.
    ///
    /// # Errors
    /// [`TwinError::EtagMismatch`] when the header names another etag.
    pub fn check_if_match(&self, if_match: Option<&str>) -> Result<(), TwinError> {
        if self.etag.matches_if_match(if_match) {
            return Ok(());
        }
        Err(TwinError::EtagMismatch {
            given: if_match.map(strip_quotes).unwrap_or_default().to_owned(),
            actual: self.etag.to_base64(),
        })
    }

    /// Applies a desired-properties patch (service side).
    ///
    /// # Errors
    /// [`TwinError`] when the patch breaks a limit; the twin is then unchanged.
    pub fn apply_desired(
        &mut self,
        patch: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        self.apply(None, Some(patch), None, now)
    }

    /// Applies a reported-properties patch (device side). `expected_version` is the optional
    /// `$version` of the request topic.
    ///
    /// # Errors
    /// [`TwinError::VersionMismatch`] when `expected_version` is not the current reported version;
    /// otherwise [`TwinError`] when the patch breaks a limit. The twin is then unchanged.
    pub fn apply_reported(
        &mut self,
        patch: &Map<String, Value>,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        if let Some(expected) =
            expected_version.filter(|expected| *expected != self.reported.version)
        {
            return Err(TwinError::VersionMismatch { expected, actual: self.reported.version });
        }
        self.apply(None, None, Some(patch), now)
    }

    /// Applies a tags patch.
    ///
    /// # Errors
    /// [`TwinError`] when the patch breaks a limit; the twin is then unchanged.
    pub fn apply_tags(
        &mut self,
        patch: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        self.apply(Some(patch), None, None, now)
    }

    /// Applies a combined patch (`PATCH /twins`, a job's `updateTwin`) as one operation.
    ///
    /// # Errors
    /// [`TwinError`] when any part breaks a limit; the twin is then unchanged.
    pub fn apply_patch(
        &mut self,
        patch: &super::wire::TwinPatch,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        self.apply(patch.tags.as_ref(), patch.desired.as_ref(), patch.reported.as_ref(), now)
    }

    /// Replaces tags and/or desired wholesale (`PUT /twins`); `None` leaves that part as it is.
    /// `null`s inside the new documents are dropped. A replaced desired section is always a write, and
    /// its push body is the whole new desired section plus `"$version"`.
    ///
    /// # Errors
    /// [`TwinError`] when a new document breaks a limit; the twin is then unchanged.
    pub fn replace(
        &mut self,
        tags: Option<&Map<String, Value>>,
        desired: Option<&Map<String, Value>>,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        let mut next = self.clone();
        if let Some(new_tags) = tags {
            validate_patch(SectionKind::Tags, new_tags)?;
            next.tags = Map::new();
            merge_object(&mut next.tags, new_tags);
            check_section_size(SectionKind::Tags, &next.tags)?;
        }
        let mut desired_push = None;
        if let Some(new_desired) = desired {
            validate_patch(SectionKind::Desired, new_desired)?;
            let version = next.desired.version + 1;
            let mut section = Section::new(now, Some(version));
            section.merge(new_desired, Stamp { at: now, version: Some(version) });
            section.version = version;
            check_section_size(SectionKind::Desired, &section.values)?;
            desired_push = Some(desired_push_body(&section.values, version));
            next.desired = section;
        }
        let written = tags.is_some() || desired.is_some();
        if written {
            next.version += 1;
            next.etag.0 += 1;
        }
        *self = next;
        Ok(self.outcome(written, desired_push))
    }

    fn apply(
        &mut self,
        tags: Option<&Map<String, Value>>,
        desired: Option<&Map<String, Value>>,
        reported: Option<&Map<String, Value>>,
        now: DateTime<Utc>,
    ) -> Result<TwinUpdate, TwinError> {
        for (kind, patch) in [
            (SectionKind::Tags, tags),
            (SectionKind::Desired, desired),
            (SectionKind::Reported, reported),
        ] {
            if let Some(patch) = patch {
                validate_patch(kind, patch)?;
            }
        }
        let mut next = self.clone();
        let tags_written = tags.is_some_and(|patch| merge_object(&mut next.tags, patch));
        check_section_size(SectionKind::Tags, &next.tags)?;
        let desired_written = match desired {
            Some(patch) => next.desired.write(SectionKind::Desired, patch, now)?,
            None => false,
        };
        let reported_written = match reported {
            Some(patch) => next.reported.write(SectionKind::Reported, patch, now)?,
            None => false,
        };
        if tags_written || desired_written {
            next.version += 1;
        }
        let written = tags_written || desired_written || reported_written;
        if written {
            next.etag.0 += 1;
        }
        *self = next;
        let push = desired
            .filter(|_| desired_written)
            .map(|patch| desired_push_body(patch, self.desired.version));
        Ok(self.outcome(written, push))
    }

    fn outcome(&self, written: bool, desired_push: Option<Value>) -> TwinUpdate {
        TwinUpdate {
            written,
            desired_push,
            desired_version: self.desired.version,
            reported_version: self.reported.version,
            twin_version: self.version,
            etag: self.etag,
        }
    }
}

impl Section {
    fn new(now: DateTime<Utc>, version: Option<u64>) -> Section {
        Section {
            values: Map::new(),
            version: 1,
            metadata: MetaNode::new(Stamp { at: now, version }),
        }
    }

    /// The section's properties, without `$version` or `$metadata`.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The section's `$version`.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn metadata(&self) -> &MetaNode {
        &self.metadata
    }

    /// Merges `patch` and bumps the version when it wrote anything; returns whether it did.
    fn write(
        &mut self,
        kind: SectionKind,
        patch: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<bool, TwinError> {
        let next_version = self.version + 1;
        let stamp =
            Stamp { at: now, version: (kind == SectionKind::Desired).then_some(next_version) };
        let written = self.merge(patch, stamp);
        check_section_size(kind, &self.values)?;
        if written {
            self.version = next_version;
        }
        Ok(written)
    }

    fn merge(&mut self, patch: &Map<String, Value>, stamp: Stamp) -> bool {
        merge_with_metadata(&mut self.values, &mut self.metadata, patch, stamp)
    }
}

impl MetaNode {
    fn new(stamp: Stamp) -> MetaNode {
        MetaNode {
            last_updated: stamp.at,
            last_updated_version: stamp.version,
            children: BTreeMap::new(),
        }
    }

    fn touch(&mut self, stamp: Stamp) {
        self.last_updated = stamp.at;
        self.last_updated_version = stamp.version;
    }
}

/// [`merge_object`] that also keeps `$metadata` in step: written leaves get a fresh node, written
/// object levels (and every level above them) get a fresh stamp, deleted keys lose their node.
fn merge_with_metadata(
    values: &mut Map<String, Value>,
    meta: &mut MetaNode,
    patch: &Map<String, Value>,
    stamp: Stamp,
) -> bool {
    let mut written = false;
    for (key, patch_value) in patch {
        match patch_value {
            Value::Null => {
                if values.shift_remove(key).is_some() {
                    meta.children.remove(key);
                    written = true;
                }
            }
            Value::Object(patch_child) => {
                let child_meta =
                    meta.children.entry(key.clone()).or_insert_with(|| MetaNode::new(stamp));
                if let Some(Value::Object(existing)) = values.get_mut(key) {
                    written |= merge_with_metadata(existing, child_meta, patch_child, stamp);
                } else {
                    *child_meta = MetaNode::new(stamp);
                    let mut fresh = Map::new();
                    merge_with_metadata(&mut fresh, child_meta, patch_child, stamp);
                    values.insert(key.clone(), Value::Object(fresh));
                    written = true;
                }
            }
            other => {
                values.insert(key.clone(), other.clone());
                meta.children.insert(key.clone(), MetaNode::new(stamp));
                written = true;
            }
        }
    }
    if written {
        meta.touch(stamp);
    }
    written
}

fn strip_quotes(text: &str) -> &str {
    let trimmed = text.trim();
    trimmed.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(trimmed)
}
