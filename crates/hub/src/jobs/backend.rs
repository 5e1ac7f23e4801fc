//! What a job does to devices, behind [`DeviceBackend`]: resolve a `queryCondition` to device ids,
//! invoke a direct method, apply a twin patch. [`HubBackend`] is the real one (registry + sessions);
//! engine tests use a fake.
//!
//! The twin operation takes a [`RecordWrite`]: the device's terminal job record, committed with the
//! twin row or right after it (the store is FIFO). After a crash a record that is not terminal is
//! checked with [`DeviceBackend::twin_holds`] before the patch is applied again, so a twin job applies
//! its patch once per device even across restarts.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use protocol::error::ErrorCode;
use protocol::ids::DeviceId;
use protocol::twin::TwinPatch;
use serde_json::{Map, Value};

use crate::mqtt::{MethodCall, Sessions};
use crate::registry::Registry;

/// A write of a device's job record, run inside the transaction of the operation it records.
pub(crate) type RecordWrite =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send>;

/// A device operation's failure, recorded in the device's job record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceOpError {
    pub(crate) code: ErrorCode,
    pub(crate) description: String,
}

/// A method call's outcome: the device's status and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MethodAnswer {
    pub(crate) status: i32,
    pub(crate) payload: Value,
}

/// A job's method call to one device.
#[derive(Debug, Clone)]
pub(crate) struct MethodInvocation {
    pub(crate) method_name: String,
    pub(crate) payload: Value,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// The device side of the jobs engine.
pub(crate) trait DeviceBackend: Send + Sync + 'static {
    /// The devices matching `condition` now (a WHERE body, `*` for all), in a stable order.
    /// `Err` holds the reason the job fails with (e.g. the condition does not parse).
    fn resolve(&self, condition: &str) -> Result<Vec<DeviceId>, String>;

    /// Invokes a method on one device and waits for its answer or a timeout.
    fn invoke_method(
        &self,
        device: DeviceId,
        call: MethodInvocation,
    ) -> BoxFuture<'static, Result<MethodAnswer, DeviceOpError>>;

    /// Applies `patch` (forced etag) to one device's twin, then runs `record` in a store transaction
    /// that is the twin's or a later one, and pushes the desired change to the device if it is
    /// connected. On `Err` nothing was recorded.
    fn update_twin(
        &self,
        device: DeviceId,
        patch: Arc<TwinPatch>,
        record: RecordWrite,
    ) -> BoxFuture<'static, Result<(), DeviceOpError>>;

    /// Whether the device's twin already holds everything `patch` sets (used after a restart for
    /// records that were not terminal, so a patch that committed before the crash is not applied again).
    fn twin_holds(&self, device: &DeviceId, patch: &TwinPatch) -> bool;
}

/// The real backend: the registry for device sets and twins, the MQTT sessions for methods and pushes.
#[derive(Clone)]
pub(crate) struct HubBackend {
    pub(crate) registry: Registry,
    pub(crate) sessions: Sessions,
}

impl DeviceBackend for HubBackend {
    fn resolve(&self, condition: &str) -> Result<Vec<DeviceId>, String> {
        let condition =
            query::parse_condition(condition).map_err(|err| err.sql_parse_failed_message())?;
        Ok(self.registry.matching_device_ids(&condition))
    }

    fn invoke_method(
        &self,
        device: DeviceId,
        call: MethodInvocation,
    ) -> BoxFuture<'static, Result<MethodAnswer, DeviceOpError>> {
        let sessions = self.sessions.clone();
        Box::pin(async move {
            let call = MethodCall {
                name: call.method_name,
                payload: call.payload,
                response_timeout: call.response_timeout,
                connect_timeout: call.connect_timeout,
            };
            match sessions.invoke_method(&device, call).await {
                Ok(answer) => Ok(MethodAnswer { status: answer.status, payload: answer.payload }),
                Err(err) => {
                    Err(DeviceOpError { code: err.error_code(), description: err.to_string() })
                }
            }
        })
    }

    fn update_twin(
        &self,
        device: DeviceId,
        patch: Arc<TwinPatch>,
        record: RecordWrite,
    ) -> BoxFuture<'static, Result<(), DeviceOpError>> {
        let registry = self.registry.clone();
        let sessions = self.sessions.clone();
        Box::pin(async move {
            let op_error =
                |code: ErrorCode, description: String| DeviceOpError { code, description };
            let push = registry
                .update_twin_forced(&device, &patch)
                .await
                .map_err(|err| op_error(err.error_code(), err.to_string()))?;
            // The store is FIFO: this commits with the twin row or after it. A crash in between leaves
            // the record non-terminal, and `twin_holds` then finds the patch already applied.
            registry
                .store()
                .write(record)
                .await
                .map_err(|err| op_error(ErrorCode::ServerError, err.to_string()))?;
            if let Some(body) = push {
                sessions.push_desired(&device, body);
            }
            Ok(())
        })
    }

    fn twin_holds(&self, device: &DeviceId, patch: &TwinPatch) -> bool {
        let Ok(twin) = self.registry.get_twin(device) else { return false };
        let empty = Map::new();
        let tags_hold = patch
            .tags
            .as_ref()
            .is_none_or(|tags| holds(twin.tags.as_ref().unwrap_or(&empty), tags));
        let desired_hold =
            patch.desired.as_ref().is_none_or(|desired| holds(&twin.properties.desired, desired));
        tags_hold && desired_hold
    }
}

/// Whether merging `patch` into `target` would change nothing (`null` deletes, objects merge).
pub(crate) fn holds(target: &Map<String, Value>, patch: &Map<String, Value>) -> bool {
    patch.iter().all(|(key, wanted)| match (wanted, target.get(key)) {
        (Value::Null, current) => current.is_none(),
        (Value::Object(inner), Some(Value::Object(current))) => holds(current, inner),
        (Value::Object(_), _) => false,
        (wanted, current) => current == Some(wanted),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn holds_follows_merge_patch() {
        let target = json!({"a": 1, "b": {"c": "x", "d": 2}}).as_object().cloned().unwrap();
        let check = |patch: Value| holds(&target, patch.as_object().unwrap());
        assert!(check(json!({"a": 1})));
        assert!(check(json!({"b": {"c": "x"}, "z": null})));
        assert!(!check(json!({"a": 2})));
        assert!(!check(json!({"a": null})));
        assert!(!check(json!({"b": {"e": 1}})));
        assert!(!check(json!({"a": {"x": 1}})));
    }
}
