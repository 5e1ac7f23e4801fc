//! The TOML schema of a profile file, exactly as written (serde types with source spans).
//!
//! Nothing here is validated beyond TOML types and unknown keys; [`super::load`] turns a
//! [`ProfileSpec`] into a [`super::Profile`] and reports semantic errors at these spans.
//! The file format is documented in `fleet-profiles/README.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::behaviour::connectivity::ConnectivitySpec;
use crate::behaviour::desired::DesiredSpec;
use crate::behaviour::method::MethodSpec;
use crate::behaviour::telemetry::TelemetrySpec;

/// A whole profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileSpec {
    #[serde(default)]
    pub(crate) fleet: FleetSpec,
    #[serde(rename = "group", default)]
    pub(crate) groups: Vec<Spanned<GroupSpec>>,
}

/// `[fleet]`: settings for the whole run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetSpec {
    pub(crate) name: Option<String>,
    pub(crate) connect_rate: Option<Spanned<f64>>,
}

/// `[[group]]`: one kind of device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupSpec {
    pub(crate) name: Spanned<String>,
    pub(crate) count: Spanned<i64>,
    pub(crate) id: Spanned<String>,
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, Spanned<toml::Value>>,
    pub(crate) reported: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub(crate) methods: BTreeMap<String, Spanned<MethodSpec>>,
    pub(crate) desired: Option<Spanned<DesiredSpec>>,
    pub(crate) connectivity: Option<Spanned<ConnectivitySpec>>,
    pub(crate) telemetry: Option<Spanned<TelemetrySpec>>,
}
