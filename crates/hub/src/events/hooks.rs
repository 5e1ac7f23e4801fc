//! Constructors the rest of the hub calls at its integration points, each shaped so the call site
//! is one line: twin writes (registry), identity lifecycle (registry), and the telemetry forwarder
//! (hub). They build events from what the caller already has and never fail.

use chrono::Utc;
use protocol::ids::DeviceId;
use protocol::twin::{ServiceTwin, TwinPatch};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Events, HubEvent, LifecycleEvent, LifecycleOp, TwinChangeEvent, TwinChangeOp};

impl HubEvent {
    /// A service patch of tags and/or desired (`updateTwin`): `desired_push` is the applied desired
    /// patch with its `"$version"` (the registry's push body). `None` when nothing changed.
    pub fn twin_patched(
        device: &DeviceId,
        patch: &TwinPatch,
        desired_push: Option<&Value>,
        twin_version: u64,
    ) -> Option<HubEvent> {
        if patch.tags.is_none() && desired_push.is_none() {
            return None;
        }
        Some(twin_change(TwinChangeEvent {
            device_id: device.clone(),
            op: TwinChangeOp::Update,
            version: twin_version,
            tags: patch.tags.clone().map(Value::Object),
            desired: desired_push.cloned(),
            reported: None,
            at: Utc::now(),
        }))
    }

    /// A service replacement (`replaceTwin`) of tags and/or desired: the new sections, read from
    /// the twin after the write.
    pub fn twin_replaced(
        twin: &ServiceTwin,
        tags_replaced: bool,
        desired_replaced: bool,
    ) -> Option<HubEvent> {
        let device_id = DeviceId::new(twin.device_id.clone()).ok()?;
        if !tags_replaced && !desired_replaced {
            return None;
        }
        let tags = tags_replaced.then(|| Value::Object(twin.tags.clone().unwrap_or_default()));
        let desired = desired_replaced.then(|| Value::Object(twin.properties.desired.clone()));
        Some(twin_change(TwinChangeEvent {
            device_id,
            op: TwinChangeOp::Replace,
            version: twin.version,
            tags,
            desired,
            reported: None,
            at: Utc::now(),
        }))
    }

    /// A device's reported-properties patch, as applied, with the new reported `$version`.
    pub fn reported_patched(
        device: &DeviceId,
        patch: &Map<String, Value>,
        reported_version: u64,
        twin_version: u64,
    ) -> HubEvent {
        let mut reported = patch.clone();
        reported.insert("$version".to_owned(), Value::from(reported_version));
        twin_change(TwinChangeEvent {
            device_id: device.clone(),
            op: TwinChangeOp::Update,
            version: twin_version,
            tags: None,
            desired: None,
            reported: Some(Value::Object(reported)),
            at: Utc::now(),
        })
    }

    /// A device identity created or deleted now; the body is `twin` (service shape).
    pub fn identity_lifecycle(op: LifecycleOp, twin: &ServiceTwin) -> Option<HubEvent> {
        let device_id = DeviceId::new(twin.device_id.clone()).ok()?;
        let twin = serde_json::to_value(twin).ok()?;
        Some(HubEvent::Lifecycle(Box::new(LifecycleEvent { device_id, op, twin, at: Utc::now() })))
    }
}

/// Forwards every telemetry message from the device endpoint's channel
/// (`mqtt::Sessions::telemetry_receiver`) to `events` until `shutdown` or the channel closes.
pub async fn forward_telemetry(
    mut telemetry: mpsc::Receiver<crate::mqtt::Telemetry>,
    events: Events,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            message = telemetry.recv() => match message {
                Some(message) => events.publish(HubEvent::from(message)),
                None => return,
            },
        }
    }
}

fn twin_change(event: TwinChangeEvent) -> HubEvent {
    HubEvent::TwinChange(Box::new(event))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn device() -> DeviceId {
        DeviceId::new("d1").expect("valid id")
    }

    #[test]
    fn patch_without_changes_is_no_event() {
        assert!(HubEvent::twin_patched(&device(), &TwinPatch::default(), None, 3).is_none());
    }

    #[test]
    fn patch_carries_tags_and_desired_push() {
        let patch = TwinPatch {
            tags: Some(json!({"site": "b"}).as_object().cloned().expect("an object")),
            ..TwinPatch::default()
        };
        let push = json!({"fan": 2, "$version": 5});
        let Some(HubEvent::TwinChange(event)) =
            HubEvent::twin_patched(&device(), &patch, Some(&push), 9)
        else {
            panic!("a twin change");
        };
        assert_eq!(event.version, 9);
        assert_eq!(event.tags, Some(json!({"site": "b"})));
        assert_eq!(event.desired, Some(push));
    }

    #[test]
    fn reported_patch_gets_its_version() {
        let patch = json!({"temp": 20}).as_object().cloned().expect("an object");
        let HubEvent::TwinChange(event) = HubEvent::reported_patched(&device(), &patch, 4, 2)
        else {
            panic!("a twin change");
        };
        assert_eq!(event.reported, Some(json!({"temp": 20, "$version": 4})));
    }
}
