//! Twin JSON on the wire: the device view (MQTT twin GET), the desired push body, the service Twin
//! (`GET /twins/{id}`, query results), and the service patch body (`PATCH`/`PUT /twins`, jobs' `updateTwin`).
//!
//! The twin document itself carries no identity; [`TwinIdentity`] brings the registry fields
//! (status, connection state, ...) that the service Twin shows next to the properties.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::document::{MetaNode, Section, TwinDocument};
use super::limits::{validate_patch, SectionKind, TwinError};
use crate::device::{
    timestamps, AuthenticationType, Capabilities, ConnectionState, DeviceStatus, X509Thumbprint,
};
use crate::ids::{DeviceId, ModuleId};
use crate::time::format_timestamp;

/// The registry fields a service Twin shows; the hub fills them from the device identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinIdentity {
    /// The device.
    pub device_id: DeviceId,
    /// The module, for module twins.
    pub module_id: Option<ModuleId>,
    /// The identity etag (base64 of a decimal string), when known.
    pub device_etag: Option<String>,
    /// Enabled or disabled.
    pub status: DeviceStatus,
    /// Free text set with the status.
    pub status_reason: Option<String>,
    /// Last status change (`None` = never).
    pub status_update_time: Option<DateTime<Utc>>,
    /// Whether a session is live.
    pub connection_state: ConnectionState,
    /// Last activity (`None` = never).
    pub last_activity_time: Option<DateTime<Utc>>,
    /// Pending cloud-to-device messages.
    pub cloud_to_device_message_count: u64,
    /// How the device authenticates.
    pub authentication_type: AuthenticationType,
    /// X.509 thumbprints (both `null` for SAS devices).
    pub x509_thumbprint: X509Thumbprint,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// The Plug and Play model id, `""` when none.
    pub model_id: String,
}

/// The service Twin JSON (§3.1), key order as the service writes it. Also what `SELECT * FROM devices`
/// returns per device. Clients deserialize it leniently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTwin {
    /// The device id.
    pub device_id: String,
    /// The module id, for module twins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The twin etag (e.g. `AAAAAAAAAAc=`).
    pub etag: String,
    /// The identity etag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_etag: Option<String>,
    /// Enabled or disabled.
    #[serde(default)]
    pub status: DeviceStatus,
    /// Free text set with the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Last status change; `None` is written as `0001-01-01T00:00:00Z`.
    #[serde(default, with = "timestamps::never_or")]
    pub status_update_time: Option<DateTime<Utc>>,
    /// Whether a session is live.
    #[serde(default)]
    pub connection_state: ConnectionState,
    /// Last activity; `None` is written as "never".
    #[serde(default, with = "timestamps::never_or")]
    pub last_activity_time: Option<DateTime<Utc>>,
    /// Pending cloud-to-device messages.
    #[serde(default)]
    pub cloud_to_device_message_count: u64,
    /// How the device authenticates.
    #[serde(default)]
    pub authentication_type: AuthenticationType,
    /// X.509 thumbprints.
    #[serde(default)]
    pub x509_thumbprint: X509Thumbprint,
    /// The Plug and Play model id.
    #[serde(default)]
    pub model_id: String,
    /// The twin version (tags and desired writes).
    #[serde(default)]
    pub version: u64,
    /// The tags, present when any are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    /// `desired` and `reported`, each with `$metadata` and `$version`.
    #[serde(default)]
    pub properties: TwinProperties,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// `properties` of a service Twin: each section as JSON including `$metadata` and `$version`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TwinProperties {
    /// The desired section.
    #[serde(default)]
    pub desired: Map<String, Value>,
    /// The reported section.
    #[serde(default)]
    pub reported: Map<String, Value>,
}

/// A service-side twin patch: `{"tags":{..},"properties":{"desired":{..},"reported":{..}}}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TwinPatch {
    /// The tags patch, when the body has a `tags` object.
    pub tags: Option<Map<String, Value>>,
    /// The desired patch, when the body has `properties.desired`.
    pub desired: Option<Map<String, Value>>,
    /// The reported patch, only with [`ReportedInPatch::Keep`] and a non-empty `properties.reported`.
    pub reported: Option<Map<String, Value>>,
}

/// What [`TwinPatch::parse`] does with `properties.reported` (empty `{}` is always ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedInPatch {
    /// Drop it silently (jobs' `updateTwin`).
    Ignore,
    /// Refuse a non-empty one with [`TwinError::ReportedNotWritable`].
    Reject,
    /// Keep it in [`TwinPatch::reported`].
    Keep,
}

impl TwinPatch {
    /// Parses a patch body and validates every part against the twin limits. Other twin fields
    /// (`deviceId`, `etag`, `version` ...) and the read-only `$metadata`/`$version` of `desired` and
    /// `reported` are ignored; `null` for a part means "not given".
    ///
    /// # Errors
    /// [`TwinError::NotAnObject`] when the body or a part is not an object,
    /// [`TwinError::ReportedNotWritable`] per `reported`, or the first limit broken.
    pub fn parse(body: &Value, reported: ReportedInPatch) -> Result<TwinPatch, TwinError> {
        let root = body.as_object().ok_or_else(|| not_object("twin patch"))?;
        let properties = match root.get("properties") {
            None | Some(Value::Null) => None,
            Some(Value::Object(props)) => Some(props),
            Some(_) => return Err(not_object("properties")),
        };
        let part = |holder: Option<&Map<String, Value>>, key: &str, what: &str| match holder
            .and_then(|map| map.get(key))
        {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map.clone())),
            Some(_) => Err(not_object(what)),
        };
        let mut patch = TwinPatch {
            tags: part(Some(root), "tags", "tags")?,
            desired: part(properties, "desired", "properties.desired")?.map(without_read_only),
            reported: part(properties, "reported", "properties.reported")?
                .map(without_read_only)
                .filter(|map| !map.is_empty()),
        };
        match reported {
            ReportedInPatch::Ignore => patch.reported = None,
            ReportedInPatch::Reject if patch.reported.is_some() => {
                return Err(TwinError::ReportedNotWritable)
            }
            ReportedInPatch::Reject | ReportedInPatch::Keep => {}
        }
        patch.validate()?;
        Ok(patch)
    }

    /// Parses a patch body from bytes; see [`TwinPatch::parse`].
    ///
    /// # Errors
    /// [`TwinError::Json`] for bytes that are not JSON, then as [`TwinPatch::parse`].
    pub fn from_slice(body: &[u8], reported: ReportedInPatch) -> Result<TwinPatch, TwinError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| TwinError::Json(err.to_string()))?;
        TwinPatch::parse(&value, reported)
    }

    /// Checks every part against the twin limits.
    ///
    /// # Errors
    /// The first limit broken.
    pub fn validate(&self) -> Result<(), TwinError> {
        let parts = [
            (SectionKind::Tags, &self.tags),
            (SectionKind::Desired, &self.desired),
            (SectionKind::Reported, &self.reported),
        ];
        parts.into_iter().try_for_each(|(kind, part)| {
            part.as_ref().map_or(Ok(()), |map| validate_patch(kind, map))
        })
    }

    /// The patch as a service body: `tags` and `properties` only where set.
    pub fn to_value(&self) -> Value {
        let mut body = Map::new();
        if let Some(tags) = &self.tags {
            body.insert("tags".into(), Value::Object(tags.clone()));
        }
        let mut properties = Map::new();
        if let Some(desired) = &self.desired {
            properties.insert("desired".into(), Value::Object(desired.clone()));
        }
        if let Some(reported) = &self.reported {
            properties.insert("reported".into(), Value::Object(reported.clone()));
        }
        if !properties.is_empty() {
            body.insert("properties".into(), Value::Object(properties));
        }
        Value::Object(body)
    }
}

/// Parses the body of an MQTT reported-properties patch: it must be a JSON object.
///
/// # Errors
/// [`TwinError::Json`] for bytes that are not JSON, [`TwinError::NotAnObject`] for other JSON.
pub fn parse_section_patch(body: &[u8]) -> Result<Map<String, Value>, TwinError> {
    match serde_json::from_slice(body).map_err(|err| TwinError::Json(err.to_string()))? {
        Value::Object(map) => Ok(map),
        _ => Err(not_object("patch")),
    }
}

/// The desired push body: the patch as applied plus `"$version"` (`{"a":1,"b":null,"$version":8}`).
pub fn desired_push_body(patch: &Map<String, Value>, version: u64) -> Value {
    let mut body = patch.clone();
    body.insert("$version".into(), Value::from(version));
    Value::Object(body)
}

impl TwinDocument {
    /// The MQTT twin GET body: `{"desired":{..,"$version":n},"reported":{..,"$version":m}}`
    /// (no `properties` wrapper, no tags, no `$metadata`).
    pub fn device_view(&self) -> Value {
        let section = |section: &Section| desired_push_body(section.values(), section.version());
        json!({ "desired": section(self.desired()), "reported": section(self.reported()) })
    }

    /// The service Twin for `GET /twins/{id}`, PATCH/PUT responses and query results.
    pub fn to_service_twin(&self, identity: &TwinIdentity) -> ServiceTwin {
        ServiceTwin {
            device_id: identity.device_id.to_string(),
            module_id: identity.module_id.as_ref().map(ToString::to_string),
            etag: self.etag().to_base64(),
            device_etag: identity.device_etag.clone(),
            status: identity.status,
            status_reason: identity.status_reason.clone(),
            status_update_time: identity.status_update_time,
            connection_state: identity.connection_state,
            last_activity_time: identity.last_activity_time,
            cloud_to_device_message_count: identity.cloud_to_device_message_count,
            authentication_type: identity.authentication_type,
            x509_thumbprint: identity.x509_thumbprint.clone(),
            model_id: identity.model_id.clone(),
            version: self.version(),
            tags: (!self.tags().is_empty()).then(|| self.tags().clone()),
            properties: TwinProperties {
                desired: service_section(self.desired()),
                reported: service_section(self.reported()),
            },
            capabilities: identity.capabilities,
        }
    }
}

impl ServiceTwin {
    /// The service Twin as a JSON value (for query evaluation and projection).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .expect("a ServiceTwin always serializes: string keys, finite numbers")
    }
}

/// A section as the service shows it: values, then `$metadata`, then `$version`.
fn service_section(section: &Section) -> Map<String, Value> {
    let mut out = section.values().clone();
    out.insert(
        "$metadata".into(),
        Value::Object(render_metadata(section.values(), section.metadata())),
    );
    out.insert("$version".into(), Value::from(section.version()));
    out
}

/// `$metadata` for one object level, following the values' key order.
fn render_metadata(values: &Map<String, Value>, meta: &MetaNode) -> Map<String, Value> {
    let mut out = stamp_of(meta);
    for (key, value) in values {
        let rendered = match (value, meta.children.get(key)) {
            (Value::Object(child), Some(child_meta)) => render_metadata(child, child_meta),
            (_, Some(child_meta)) => stamp_of(child_meta),
            // Every written value gets its own node; should one be missing, the parent's stamp is the best answer.
            (Value::Object(child), None) => render_metadata(child, meta),
            (_, None) => stamp_of(meta),
        };
        out.insert(key.clone(), Value::Object(rendered));
    }
    out
}

fn stamp_of(meta: &MetaNode) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("$lastUpdated".into(), Value::from(format_timestamp(meta.last_updated)));
    if let Some(version) = meta.last_updated_version {
        out.insert("$lastUpdatedVersion".into(), Value::from(version));
    }
    out
}

/// Drops the read-only `$metadata` and `$version` of a section, which clients echo back when they
/// send a twin they fetched (e.g. Python `replace_twin(get_twin(..))`); the service ignores them.
fn without_read_only(mut section: Map<String, Value>) -> Map<String, Value> {
    for key in ["$metadata", "$version"] {
        section.shift_remove(key);
    }
    section
}

fn not_object(what: &str) -> TwinError {
    TwinError::NotAnObject { what: what.to_owned() }
}
