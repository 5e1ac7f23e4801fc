//! Topic names and JSON payloads of the event stream: turns a [`HubEvent`] into an
//! [`EncodedEvent`] (topic + bytes).
//!
//! Device events use one envelope, the shape IoT Hub's routed messages have on the built-in
//! endpoint: `{"body": .., "properties": {application}, "systemProperties": {system}}`
//! (telemetry adds `"bodyEncoding"`). Job events carry the REST shapes directly.
//! Every topic is a function of a device id or a job id, never of a message, so the set of
//! topic names the broker ever sees is bounded by the registry and the job history.
//! Deliberately absent: routing queries, enrichments and custom endpoints.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use protocol::ids::DeviceId;
use protocol::time::format_timestamp_millis;
use serde_json::{json, Map, Value};

use super::{
    ConnectionStateEvent, HubEvent, JobProgressEvent, LifecycleEvent, LifecycleOp, TelemetryEvent,
    TwinChangeEvent, TwinChangeOp,
};

/// Telemetry system properties a device sets in its topic's property bag (`$.`-prefixed short
/// names) and the names back ends see them under.
const SYSTEM_PROPERTY_NAMES: &[(&str, &str)] = &[
    ("$.mid", "message-id"),
    ("$.cid", "correlation-id"),
    ("$.uid", "user-id"),
    ("$.to", "to"),
    ("$.ct", "content-type"),
    ("$.ce", "content-encoding"),
    ("$.exp", "absolute-expiry-time"),
    ("$.ctime", "iothub-creation-time-utc"),
];

/// What `iothub-connection-auth-method` says for a device that connected with a SAS token.
const SAS_AUTH_METHOD: &str =
    r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#;

/// One event ready for the broker: its topic and its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The MQTT topic name.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// What the encoder needs besides the event itself.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    /// `hubName` in application properties: the first label of the host name.
    hub_name: String,
    /// The next `sequenceNumber` of a connection-state event.
    next_sequence: u64,
}

impl Encoder {
    pub(crate) fn new(host_name: &str) -> Encoder {
        let hub_name = host_name.split('.').next().unwrap_or(host_name).to_owned();
        Encoder { hub_name, next_sequence: 1 }
    }

    /// Encodes one event.
    pub(crate) fn encode(&mut self, event: &HubEvent) -> EncodedEvent {
        let payload = match event {
            HubEvent::Telemetry(event) => telemetry(event),
            HubEvent::TwinChange(event) => self.twin_change(event),
            HubEvent::ConnectionState(event) => {
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                self.connection_state(event, sequence)
            }
            HubEvent::Lifecycle(event) => self.lifecycle(event),
            HubEvent::JobProgress(event) => job_progress(event),
            HubEvent::DeviceJobRecord(record) => {
                serde_json::to_value(record.as_ref()).unwrap_or(Value::Null)
            }
        };
        let payload = serde_json::to_vec(&payload).expect("a serde_json::Value always serializes");
        EncodedEvent { topic: topic(event), payload }
    }

    fn twin_change(&self, event: &TwinChangeEvent) -> Value {
        let mut properties = Map::new();
        for (name, section) in [("desired", &event.desired), ("reported", &event.reported)] {
            if let Some(section) = section {
                properties.insert(name.to_owned(), section.clone());
            }
        }
        let mut body = Map::new();
        body.insert("version".to_owned(), json!(event.version));
        if let Some(tags) = &event.tags {
            body.insert("tags".to_owned(), tags.clone());
        }
        body.insert("properties".to_owned(), Value::Object(properties));
        let op = match event.op {
            TwinChangeOp::Update => "updateTwin",
            TwinChangeOp::Replace => "replaceTwin",
        };
        let at = format_timestamp_millis(event.at);
        envelope(
            Value::Object(body),
            self.notification_properties(&event.device_id, op, &at, "twinChangeNotification"),
            notification_system(&event.device_id, &at, "twinChangeEvents"),
        )
    }

    fn connection_state(&self, event: &ConnectionStateEvent, sequence: u64) -> Value {
        let op = if event.connected { "deviceConnected" } else { "deviceDisconnected" };
        let at = format_timestamp_millis(event.at);
        envelope(
            json!({ "sequenceNumber": format!("{sequence:064X}") }),
            self.notification_properties(
                &event.device_id,
                op,
                &at,
                "deviceConnectionStateNotification",
            ),
            notification_system(&event.device_id, &at, "deviceConnectionStateEvents"),
        )
    }

    fn lifecycle(&self, event: &LifecycleEvent) -> Value {
        let op = match event.op {
            LifecycleOp::Created => "createDeviceIdentity",
            LifecycleOp::Deleted => "deleteDeviceIdentity",
        };
        let at = format_timestamp_millis(event.at);
        envelope(
            event.twin.clone(),
            self.notification_properties(&event.device_id, op, &at, "deviceLifecycleNotification"),
            notification_system(&event.device_id, &at, "deviceLifecycleEvents"),
        )
    }

    /// Application properties of a notification (twin, connection state, lifecycle).
    fn notification_properties(
        &self,
        device: &DeviceId,
        op: &str,
        at: &str,
        schema: &str,
    ) -> Map<String, Value> {
        let mut properties = Map::new();
        properties.insert("hubName".to_owned(), json!(self.hub_name));
        properties.insert("deviceId".to_owned(), json!(device.as_str()));
        properties.insert("opType".to_owned(), json!(op));
        properties.insert("operationTimestamp".to_owned(), json!(at));
        properties.insert("iothub-message-schema".to_owned(), json!(schema));
        properties
    }
}

/// The topic of `event`: a function of its device id or job id only.
pub(crate) fn topic(event: &HubEvent) -> String {
    match event {
        HubEvent::Telemetry(event) => device_topic("telemetry", &event.device_id),
        HubEvent::TwinChange(event) => device_topic("twin-changes", &event.device_id),
        HubEvent::ConnectionState(event) => device_topic("connection-state", &event.device_id),
        HubEvent::Lifecycle(event) => device_topic("lifecycle", &event.device_id),
        HubEvent::JobProgress(event) => format!("jobs/{}/progress", event.job_id),
        HubEvent::DeviceJobRecord(record) => format!("jobs/{}/devices", record.job_id),
    }
}

/// `{prefix}/{deviceId}` with the device id escaped for MQTT (see [`escape_topic_level`]).
pub(crate) fn device_topic(prefix: &str, device: &DeviceId) -> String {
    format!("{prefix}/{}", escape_topic_level(device.as_str()))
}

/// Device ids may contain `+` and `#`, which MQTT reserves for filters, and `%`: these are
/// percent-encoded (`%2B`, `%23`, `%25`; `/`, which ids cannot contain, as `%2F`) so a topic level
/// is always a valid, unambiguous name.
pub fn escape_topic_level(level: &str) -> String {
    let mut out = String::with_capacity(level.len());
    for ch in level.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '/' => out.push_str("%2F"),
            other => out.push(other),
        }
    }
    out
}

fn envelope(body: Value, properties: Map<String, Value>, system: Map<String, Value>) -> Value {
    json!({ "body": body, "properties": properties, "systemProperties": system })
}

/// System properties of a notification: JSON body, the device, the source.
fn notification_system(device: &DeviceId, at: &str, source: &str) -> Map<String, Value> {
    let mut system = Map::new();
    system.insert("content-type".to_owned(), json!("application/json"));
    system.insert("content-encoding".to_owned(), json!("utf-8"));
    system.insert("iothub-connection-device-id".to_owned(), json!(device.as_str()));
    system.insert("iothub-enqueuedtime".to_owned(), json!(at));
    system.insert("iothub-message-source".to_owned(), json!(source));
    system
}

fn telemetry(event: &TelemetryEvent) -> Value {
    let mut application = Map::new();
    let mut system = Map::new();
    for (key, value) in event.properties.iter() {
        let value = json!(value.unwrap_or(""));
        match SYSTEM_PROPERTY_NAMES.iter().find(|(short, _)| *short == key) {
            Some((_, long)) => system.insert((*long).to_owned(), value),
            None if key.starts_with("$.") => system.insert(key.to_owned(), value),
            None => application.insert(key.to_owned(), value),
        };
    }
    system.insert("iothub-connection-device-id".to_owned(), json!(event.device_id.as_str()));
    if let Some(module) = &event.module_id {
        system.insert("iothub-connection-module-id".to_owned(), json!(module.as_str()));
    }
    system.insert("iothub-connection-auth-method".to_owned(), json!(SAS_AUTH_METHOD));
    system.insert(
        "iothub-enqueuedtime".to_owned(),
        json!(format_timestamp_millis(event.enqueued_at)),
    );
    system.insert("iothub-message-source".to_owned(), json!("Telemetry"));
    let (body, encoding) = match serde_json::from_slice::<Value>(&event.body) {
        Ok(value) if !event.body.is_empty() => (value, "json"),
        _ => (json!(BASE64.encode(&event.body)), "base64"),
    };
    json!({
        "body": body,
        "bodyEncoding": encoding,
        "properties": application,
        "systemProperties": system,
    })
}

fn job_progress(event: &JobProgressEvent) -> Value {
    json!({
        "jobId": event.job_id.as_str(),
        "type": event.job_type.as_str(),
        "status": event.status.as_str(),
        "deviceJobStatistics": event.statistics,
        "final": event.is_final(),
        "timestamp": format_timestamp_millis(event.at),
    })
}
