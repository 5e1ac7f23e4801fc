//! MQTT topic builders and parsers for every IoT Hub device topic.
//!
//! [`DevicePublish`] covers what a device publishes (twin GET, reported patch, method response,
//! telemetry); [`HubPublish`] what the hub publishes (method request, twin response, desired patch,
//! cloud-to-device message); [`Subscription`] the filters a device may subscribe to. Parsing never
//! panics and returns a typed [`TopicError`]; building percent-encodes request ids and property bags.
//! Device and module ids appear literally (they are never URL-encoded in topics). This module does
//! not decide who may use a topic: the hub checks that the ids in a topic are the connection's own.

use std::fmt;

use crate::property_bag::{decode, encode_component, PropertyBag, PropertyBagError};

/// Filter a device subscribes to for direct-method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";
/// Filter a device subscribes to for twin responses.
pub const TWIN_RESPONSES_FILTER: &str = "$iothub/twin/res/#";
/// Filter a device subscribes to for desired-property patches.
pub const DESIRED_PATCHES_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

const METHOD_POST_PREFIX: &str = "$iothub/methods/POST/";
const METHOD_RES_PREFIX: &str = "$iothub/methods/res/";
const TWIN_GET_PREFIX: &str = "$iothub/twin/GET/";
const TWIN_RES_PREFIX: &str = "$iothub/twin/res/";
const REPORTED_PREFIX: &str = "$iothub/twin/PATCH/properties/reported/";
const DESIRED_PREFIX: &str = "$iothub/twin/PATCH/properties/desired/";

/// Why a topic or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is not one IoT Hub defines.
    #[error("{topic:?} is not an IoT Hub device topic")]
    Unknown {
        /// The topic as received.
        topic: String,
    },
    /// A required query parameter (such as `$rid`) is missing or empty.
    #[error("topic {topic:?} lacks the {param} parameter")]
    MissingParam {
        /// The topic as received.
        topic: String,
        /// The missing parameter.
        param: &'static str,
    },
    /// A parameter or path segment has a value of the wrong form.
    #[error("topic {topic:?}: {what}")]
    BadValue {
        /// The topic as received.
        topic: String,
        /// What is wrong.
        what: String,
    },
    /// The property bag is malformed.
    #[error("topic {topic:?}: {source}")]
    PropertyBag {
        /// The topic as received.
        topic: String,
        /// The property-bag error.
        source: PropertyBagError,
    },
    /// A subscription filter that IoT Hub does not support for this device.
    #[error("subscription filter {filter:?} is not supported for this device")]
    UnsupportedFilter {
        /// The filter as received.
        filter: String,
    },
}

/// A topic a device publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePublish {
    /// `$iothub/twin/GET/?$rid={rid}`.
    TwinGet {
        /// Request id.
        rid: String,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}[&$version={v}]`.
    ReportedPatch {
        /// Request id.
        rid: String,
        /// Optional expected reported version (conditional patch).
        expected_version: Option<u64>,
    },
    /// `$iothub/methods/res/{status}/?$rid={rid}`.
    MethodResponse {
        /// Status code the device answers with.
        status: i32,
        /// Request id of the method request being answered.
        rid: String,
    },
    /// `devices/{id}[/modules/{m}]/messages/events/{property bag}`.
    Telemetry {
        /// Device id named in the topic.
        device_id: String,
        /// Module id named in the topic, if any.
        module_id: Option<String>,
        /// Application and system properties.
        properties: PropertyBag,
    },
}

/// A topic the hub publishes to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubPublish {
    /// `$iothub/methods/POST/{name}/?$rid={rid}`.
    MethodRequest {
        /// Method name.
        name: String,
        /// Request id.
        rid: String,
    },
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
    TwinResponse {
        /// HTTP-like status (200, 204, 400, ...).
        status: u16,
        /// Request id being answered.
        rid: String,
        /// New reported version (after a reported patch).
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
    DesiredPatch {
        /// New desired version.
        version: u64,
    },
    /// `devices/{id}/messages/devicebound/{property bag}` (always with the trailing `/`).
    CloudToDevice {
        /// Target device.
        device_id: String,
        /// Message properties.
        properties: PropertyBag,
    },
}

/// A subscription filter IoT Hub accepts from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// [`METHODS_FILTER`].
    Methods,
    /// [`TWIN_RESPONSES_FILTER`].
    TwinResponses,
    /// [`DESIRED_PATCHES_FILTER`].
    DesiredPatches,
    /// `devices/{id}/messages/devicebound/#`.
    CloudToDevice,
    /// `devices/{id}/modules/{m}/inputs/#`.
    ModuleInputs,
}

impl Subscription {
    /// Parses a filter, accepting only the filters IoT Hub supports for `device_id` (and `module_id`).
    ///
    /// # Errors
    /// [`TopicError::UnsupportedFilter`] for anything else, including other devices' topics.
    pub fn parse(
        filter: &str,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<Self, TopicError> {
        match filter {
            METHODS_FILTER => return Ok(Self::Methods),
            TWIN_RESPONSES_FILTER => return Ok(Self::TwinResponses),
            DESIRED_PATCHES_FILTER => return Ok(Self::DesiredPatches),
            _ => {}
        }
        let own_prefix = identity_prefix(device_id, module_id);
        if module_id.is_none() && filter == format!("{own_prefix}/messages/devicebound/#") {
            return Ok(Self::CloudToDevice);
        }
        if module_id.is_some() && filter == format!("{own_prefix}/inputs/#") {
            return Ok(Self::ModuleInputs);
        }
        Err(TopicError::UnsupportedFilter { filter: filter.to_owned() })
    }

    /// The filter text for this subscription.
    pub fn filter(&self, device_id: &str, module_id: Option<&str>) -> String {
        match self {
            Self::Methods => METHODS_FILTER.to_owned(),
            Self::TwinResponses => TWIN_RESPONSES_FILTER.to_owned(),
            Self::DesiredPatches => DESIRED_PATCHES_FILTER.to_owned(),
            Self::CloudToDevice => {
                format!("{}/messages/devicebound/#", identity_prefix(device_id, None))
            }
            Self::ModuleInputs => format!("{}/inputs/#", identity_prefix(device_id, module_id)),
        }
    }
}

fn identity_prefix(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(module) => format!("devices/{device_id}/modules/{module}"),
        None => format!("devices/{device_id}"),
    }
}

impl DevicePublish {
    /// Parses a topic a device published to.
    ///
    /// # Errors
    /// [`TopicError`] when the topic is not a device topic or its parameters are malformed.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if let Some(rest) = topic.strip_prefix(TWIN_GET_PREFIX) {
            let params = Params::parse(topic, rest)?;
            return Ok(Self::TwinGet { rid: params.rid(topic)? });
        }
        if let Some(rest) = topic.strip_prefix(REPORTED_PREFIX) {
            let params = Params::parse(topic, rest)?;
            return Ok(Self::ReportedPatch {
                rid: params.rid(topic)?,
                expected_version: params.version(topic)?,
            });
        }
        if let Some(rest) = topic.strip_prefix(METHOD_RES_PREFIX) {
            let (status, query) = split_segment(topic, rest)?;
            let status = status.parse::<i32>().map_err(|_| TopicError::BadValue {
                topic: topic.to_owned(),
                what: format!("method response status {status:?} is not an integer"),
            })?;
            let params = Params::parse(topic, query)?;
            return Ok(Self::MethodResponse { status, rid: params.rid(topic)? });
        }
        parse_telemetry(topic)
    }

    /// The topic string for this publish.
    pub fn to_topic(&self) -> String {
        match self {
            Self::TwinGet { rid } => format!("{TWIN_GET_PREFIX}?$rid={}", encode_component(rid)),
            Self::ReportedPatch { rid, expected_version } => {
                let mut topic = format!("{REPORTED_PREFIX}?$rid={}", encode_component(rid));
                if let Some(version) = expected_version {
                    topic.push_str(&format!("&$version={version}"));
                }
                topic
            }
            Self::MethodResponse { status, rid } => {
                format!("{METHOD_RES_PREFIX}{status}/?$rid={}", encode_component(rid))
            }
            Self::Telemetry { device_id, module_id, properties } => {
                format!(
                    "{}/messages/events/{}",
                    identity_prefix(device_id, module_id.as_deref()),
                    properties.encode()
                )
            }
        }
    }
}

impl fmt::Display for DevicePublish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_topic())
    }
}

fn parse_telemetry(topic: &str) -> Result<DevicePublish, TopicError> {
    let unknown = || TopicError::Unknown { topic: topic.to_owned() };
    let rest = topic.strip_prefix("devices/").ok_or_else(unknown)?;
    let (device_id, rest) = rest.split_once('/').ok_or_else(unknown)?;
    let (module_id, rest) = match rest.strip_prefix("modules/") {
        Some(after) => {
            let (module, rest) = after.split_once('/').ok_or_else(unknown)?;
            (Some(module), rest)
        }
        None => (None, rest),
    };
    let bag = match rest.strip_prefix("messages/events") {
        Some("") => "",
        Some(after) => after.strip_prefix('/').ok_or_else(unknown)?,
        None => return Err(unknown()),
    };
    if device_id.is_empty() || module_id.is_some_and(str::is_empty) {
        return Err(unknown());
    }
    let properties = PropertyBag::parse(bag.trim_start_matches('?'))
        .map_err(|source| TopicError::PropertyBag { topic: topic.to_owned(), source })?;
    Ok(DevicePublish::Telemetry {
        device_id: device_id.to_owned(),
        module_id: module_id.map(str::to_owned),
        properties,
    })
}

impl HubPublish {
    /// Parses a topic the hub published to a device.
    ///
    /// # Errors
    /// [`TopicError`] when the topic is not a hub-to-device topic or its parameters are malformed.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if let Some(rest) = topic.strip_prefix(METHOD_POST_PREFIX) {
            let (name, query) = split_segment(topic, rest)?;
            let params = Params::parse(topic, query)?;
            let name = decode(name)
                .map_err(|source| TopicError::PropertyBag { topic: topic.to_owned(), source })?;
            return Ok(Self::MethodRequest { name, rid: params.rid(topic)? });
        }
        if let Some(rest) = topic.strip_prefix(TWIN_RES_PREFIX) {
            let (status, query) = split_segment(topic, rest)?;
            let status = status.parse::<u16>().map_err(|_| TopicError::BadValue {
                topic: topic.to_owned(),
                what: format!("twin response status {status:?} is not a number"),
            })?;
            let params = Params::parse(topic, query)?;
            return Ok(Self::TwinResponse {
                status,
                rid: params.rid(topic)?,
                version: params.version(topic)?,
            });
        }
        if let Some(rest) = topic.strip_prefix(DESIRED_PREFIX) {
            let params = Params::parse(topic, rest)?;
            let version = params.version(topic)?.ok_or_else(|| TopicError::MissingParam {
                topic: topic.to_owned(),
                param: "$version",
            })?;
            return Ok(Self::DesiredPatch { version });
        }
        parse_cloud_to_device(topic)
    }

    /// The topic string for this publish.
    pub fn to_topic(&self) -> String {
        match self {
            Self::MethodRequest { name, rid } => {
                format!(
                    "{METHOD_POST_PREFIX}{}/?$rid={}",
                    encode_component(name),
                    encode_component(rid)
                )
            }
            Self::TwinResponse { status, rid, version } => {
                let mut topic =
                    format!("{TWIN_RES_PREFIX}{status}/?$rid={}", encode_component(rid));
                if let Some(version) = version {
                    topic.push_str(&format!("&$version={version}"));
                }
                topic
            }
            Self::DesiredPatch { version } => format!("{DESIRED_PREFIX}?$version={version}"),
            Self::CloudToDevice { device_id, properties } => {
                format!("devices/{device_id}/messages/devicebound/{}", properties.encode())
            }
        }
    }
}

impl fmt::Display for HubPublish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_topic())
    }
}

fn parse_cloud_to_device(topic: &str) -> Result<HubPublish, TopicError> {
    let unknown = || TopicError::Unknown { topic: topic.to_owned() };
    let rest = topic.strip_prefix("devices/").ok_or_else(unknown)?;
    let (device_id, rest) = rest.split_once('/').ok_or_else(unknown)?;
    let bag = rest.strip_prefix("messages/devicebound/").ok_or_else(unknown)?;
    if device_id.is_empty() {
        return Err(unknown());
    }
    let properties = PropertyBag::parse(bag.trim_start_matches('?'))
        .map_err(|source| TopicError::PropertyBag { topic: topic.to_owned(), source })?;
    Ok(HubPublish::CloudToDevice { device_id: device_id.to_owned(), properties })
}

/// Splits `{segment}/?{query}` into the segment and the query part (after `?`).
fn split_segment<'a>(topic: &str, rest: &'a str) -> Result<(&'a str, &'a str), TopicError> {
    let (segment, query) =
        rest.split_once('/').ok_or_else(|| TopicError::Unknown { topic: topic.to_owned() })?;
    if segment.is_empty() {
        return Err(TopicError::Unknown { topic: topic.to_owned() });
    }
    Ok((segment, query))
}

/// The `?$rid=..&$version=..` parameters of a `$iothub` topic.
struct Params(PropertyBag);

impl Params {
    fn parse(topic: &str, query: &str) -> Result<Self, TopicError> {
        let query = query
            .strip_prefix('?')
            .ok_or_else(|| TopicError::MissingParam { topic: topic.to_owned(), param: "?" })?;
        PropertyBag::parse(query)
            .map(Self)
            .map_err(|source| TopicError::PropertyBag { topic: topic.to_owned(), source })
    }

    fn rid(&self, topic: &str) -> Result<String, TopicError> {
        match self.0.get("$rid") {
            Some(Some(rid)) if !rid.is_empty() => Ok(rid.to_owned()),
            _ => Err(TopicError::MissingParam { topic: topic.to_owned(), param: "$rid" }),
        }
    }

    fn version(&self, topic: &str) -> Result<Option<u64>, TopicError> {
        match self.0.get("$version") {
            None => Ok(None),
            Some(Some(text)) => text.parse::<u64>().map(Some).map_err(|_| TopicError::BadValue {
                topic: topic.to_owned(),
                what: format!("$version {text:?} is not a non-negative integer"),
            }),
            Some(None) => Err(TopicError::BadValue {
                topic: topic.to_owned(),
                what: "$version has no value".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
