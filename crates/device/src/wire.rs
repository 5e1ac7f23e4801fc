//! IoT Hub device topics, SAS tokens, the MQTT username and connection strings, as the device needs them.
//!
//! This is a thin private layer: it builds the exact strings the official SDKs send and parses the
//! topics the hub publishes. It does no IO. It deliberately covers only the device side.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use protocol::ids::{DeviceId, ModuleId};
use sha2::Sha256;

use crate::error::ConfigError;

/// The api-version in the username (the Node SDK's).
pub(crate) const API_VERSION: &str = "2021-04-12";
/// Filter for direct-method requests.
pub(crate) const METHODS_FILTER: &str = "$iothub/methods/POST/#";
/// Filter for twin responses.
pub(crate) const TWIN_RES_FILTER: &str = "$iothub/twin/res/#";
/// Filter for desired-property patches.
pub(crate) const DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

/// `encodeURIComponent`-style set: everything but `A-Za-z0-9-_.!~*'()` is escaped.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// Python `quote(safe="")`: everything but `A-Za-z0-9-_.~` is escaped.
const QUOTE_ALL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A topic the hub publishes to a device, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HubTopic {
    /// `$iothub/methods/POST/{name}/?$rid={rid}`.
    MethodRequest { name: String, rid: String },
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
    TwinResponse { status: u16, rid: String, version: Option<u64> },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
    DesiredPatch { version: Option<u64> },
    /// `devices/{id}/messages/devicebound/...`.
    CloudToDevice,
}

/// Why a topic could not be classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicError(pub(crate) String);

/// Classifies a topic published by the hub.
pub(crate) fn parse_hub_topic(topic: &str) -> Result<HubTopic, TopicError> {
    let bad = |why: &str| TopicError(format!("{why}: {topic:?}"));
    let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
    let props = parse_query(query);
    let get = |key: &str| props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["$iothub", "methods", "POST", name, ""] | ["$iothub", "methods", "POST", name]
            if !name.is_empty() =>
        {
            let rid = get("$rid")
                .filter(|rid| !rid.is_empty())
                .ok_or_else(|| bad("method request without $rid"))?;
            let name = percent_decode_str(name).decode_utf8_lossy().into_owned();
            Ok(HubTopic::MethodRequest { name, rid })
        }
        ["$iothub", "twin", "res", status, ""] | ["$iothub", "twin", "res", status] => {
            let status =
                status.parse::<u16>().map_err(|_| bad("twin response status is not a number"))?;
            let rid = get("$rid").ok_or_else(|| bad("twin response without $rid"))?;
            let version = get("$version").and_then(|v| v.parse().ok());
            Ok(HubTopic::TwinResponse { status, rid, version })
        }
        ["$iothub", "twin", "PATCH", "properties", "desired", ..] => {
            Ok(HubTopic::DesiredPatch { version: get("$version").and_then(|v| v.parse().ok()) })
        }
        ["devices", _, "messages", "devicebound", ..]
        | ["devices", _, "modules", _, "messages", "devicebound", ..] => {
            Ok(HubTopic::CloudToDevice)
        }
        _ => Err(bad("unexpected topic")),
    }
}

/// Splits `a=1&b&c=` into percent-decoded pairs (`+` is not a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(key).decode_utf8_lossy().into_owned(),
                percent_decode_str(value).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

/// `$iothub/methods/res/{status}/?$rid={rid}`.
pub(crate) fn method_response_topic(status: i32, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// `$iothub/twin/GET/?$rid={rid}`.
pub(crate) fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub(crate) fn reported_patch_topic(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `devices/{d}[/modules/{m}]/messages/events/{property bag}`; system properties first, then custom
/// ones, each `key=value` percent-encoded (a `None` value is written as a bare key).
pub(crate) fn telemetry_topic(
    device_id: &DeviceId,
    module_id: Option<&ModuleId>,
    properties: &[(String, Option<String>)],
) -> String {
    let mut topic = match module_id {
        Some(module_id) => format!("devices/{device_id}/modules/{module_id}/messages/events/"),
        None => format!("devices/{device_id}/messages/events/"),
    };
    let bag: Vec<String> = properties
        .iter()
        .map(|(key, value)| {
            let key = utf8_percent_encode(key, URI_COMPONENT);
            match value {
                Some(value) => format!("{key}={}", utf8_percent_encode(value, URI_COMPONENT)),
                None => key.to_string(),
            }
        })
        .collect();
    topic.push_str(&bag.join("&"));
    topic
}

/// `{host}/{clientId}/?api-version=2021-04-12&DeviceClientType={urlencoded}`.
pub(crate) fn username(host_name: &str, client_id: &str, client_type: &str) -> String {
    format!(
        "{host_name}/{client_id}/?api-version={API_VERSION}&DeviceClientType={}",
        utf8_percent_encode(client_type, URI_COMPONENT)
    )
}

/// A device SAS token valid until `now + ttl`, and its expiry in Unix seconds.
///
/// `sr` is `{host}/devices/{id}[/modules/{mid}]` percent-encoded with uppercase hex (`%2F`), signed as sent.
pub(crate) fn sas_token(
    host_name: &str,
    device_id: &DeviceId,
    module_id: Option<&ModuleId>,
    key: &[u8],
    now: SystemTime,
    ttl: Duration,
) -> Result<(String, u64), ConfigError> {
    let resource = match module_id {
        Some(module_id) => format!("{host_name}/devices/{device_id}/modules/{module_id}"),
        None => format!("{host_name}/devices/{device_id}"),
    };
    let sr = utf8_percent_encode(&resource, QUOTE_ALL).to_string();
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let expiry = (since_epoch + ttl).as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| ConfigError::KeyNotBase64)?;
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig = utf8_percent_encode(&signature, QUOTE_ALL);
    Ok((format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"), expiry))
}

/// The fields of a device connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionString {
    pub(crate) host_name: String,
    pub(crate) device_id: DeviceId,
    pub(crate) module_id: Option<ModuleId>,
    pub(crate) key: String,
}

/// Parses `HostName=..;DeviceId=..[;ModuleId=..];SharedAccessKey=..` (any order; values may hold `=`).
pub(crate) fn parse_connection_string(text: &str) -> Result<ConnectionString, ConfigError> {
    let mut host_name = None;
    let mut device_id = None;
    let mut module_id = None;
    let mut key = None;
    for part in text.trim().split(';').filter(|part| !part.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::ConnectionString(format!("segment {part:?} has no '='")))?;
        match name {
            "HostName" => host_name = Some(value.to_owned()),
            "DeviceId" => device_id = Some(DeviceId::new(value)?),
            "ModuleId" => module_id = Some(ModuleId::new(value)?),
            "SharedAccessKey" => key = Some(value.to_owned()),
            "x509" | "GatewayHostName" | "SharedAccessKeyName" => {
                return Err(ConfigError::ConnectionString(format!(
                    "{name} is not supported by this client"
                )))
            }
            other => return Err(ConfigError::ConnectionString(format!("unknown field {other:?}"))),
        }
    }
    let missing = |field: &str| ConfigError::ConnectionString(format!("missing {field}"));
    Ok(ConnectionString {
        host_name: host_name.filter(|h| !h.is_empty()).ok_or_else(|| missing("HostName"))?,
        device_id: device_id.ok_or_else(|| missing("DeviceId"))?,
        module_id,
        key: key.ok_or_else(|| missing("SharedAccessKey"))?,
    })
}
