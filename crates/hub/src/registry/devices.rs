//! Identity-registry operations: create, update, get, list and delete devices.
//!
//! `PUT /devices/{id}` without `If-Match` creates (409 when the id exists); with `If-Match` it updates
//! (404 when missing, 412 on an etag mismatch). Missing keys are generated. A delete removes the twin too.

use std::sync::Arc;

use chrono::Utc;
use parking_lot::Mutex;
use protocol::device::{AuthenticationType, Device, DeviceRequest, DeviceStatus};
use protocol::ids::DeviceId;

use crate::events::{HubEvent, LifecycleOp};

use super::persist::{self, Row};
use super::record::{self, Identity, Record};
use super::{DeviceWrite, IfMatch, Registry, RegistryError};
use protocol::twin::TwinDocument;

impl Registry {
    /// `PUT /devices/{id}`: creates when `if_match` is [`IfMatch::Absent`], otherwise updates.
    ///
    /// # Errors
    /// 409 on create of an existing id, 404 on update of a missing one, 412 on an etag mismatch,
    /// 400 for an invalid body (id mismatch, keys that are not base64), or a store failure.
    pub async fn put_device(
        &self,
        id: &DeviceId,
        request: &DeviceRequest,
        if_match: &IfMatch,
    ) -> Result<DeviceWrite, RegistryError> {
        validate_request(id, request)?;
        match if_match {
            IfMatch::Absent => self
                .create_device(id, request)
                .await
                .map(|device| DeviceWrite { device, disconnect: false }),
            precondition => self.update_device(id, request, precondition).await,
        }
    }

    /// Creates a device; keys missing from the request are generated.
    ///
    /// # Errors
    /// [`RegistryError::DeviceAlreadyExists`], an invalid body, or a store failure.
    pub async fn create_device(
        &self,
        id: &DeviceId,
        request: &DeviceRequest,
    ) -> Result<Device, RegistryError> {
        validate_request(id, request)?;
        let now = Utc::now();
        let record = new_record(id, request, now);
        let (device, row) = {
            let mut devices = self.inner.devices.write();
            if devices.contains_key(id) {
                return Err(RegistryError::DeviceAlreadyExists(id.clone()));
            }
            let row = Row::of(&record, self.next_seq());
            let device = record.to_device();
            devices.insert(id.clone(), Arc::new(Mutex::new(record)));
            (device, row)
        };
        persist::PendingWrite(row).commit(self).await?;
        self.events().publish(
            self.get_twin(id)
                .ok()
                .and_then(|twin| HubEvent::identity_lifecycle(LifecycleOp::Created, &twin)),
        );
        Ok(device)
    }

    async fn update_device(
        &self,
        id: &DeviceId,
        request: &DeviceRequest,
        if_match: &IfMatch,
    ) -> Result<DeviceWrite, RegistryError> {
        let now = Utc::now();
        let (write, pending) = self.mutate(id, |record| {
            if_match.check(&record.identity.etag_string())?;
            let disconnect = apply_update(&mut record.identity, request, now);
            Ok(DeviceWrite { device: record.to_device(), disconnect })
        })?;
        if let Some(pending) = pending {
            pending.commit(self).await?;
        }
        Ok(write)
    }

    /// `GET /devices/{id}`.
    ///
    /// # Errors
    /// [`RegistryError::DeviceNotFound`].
    pub fn get_device(&self, id: &DeviceId) -> Result<Device, RegistryError> {
        let record = self.record(id)?;
        let guard = record.lock();
        Ok(guard.to_device())
    }

    /// `GET /devices?top=N`: the first `top` devices in id order.
    pub fn list_devices(&self, top: usize) -> Vec<Device> {
        let records: Vec<_> = self.inner.devices.read().values().take(top).cloned().collect();
        records.iter().map(|record| record.lock().to_device()).collect()
    }

    /// `DELETE /devices/{id}`: removes the device and its twin.
    ///
    /// # Errors
    /// 404 when missing, 412 on an etag mismatch, or a store failure.
    pub async fn delete_device(
        &self,
        id: &DeviceId,
        if_match: &IfMatch,
    ) -> Result<(), RegistryError> {
        let twin = self.get_twin(id).ok();
        let row = {
            let mut devices = self.inner.devices.write();
            let record = devices
                .get(id)
                .cloned()
                .ok_or_else(|| RegistryError::DeviceNotFound(id.clone()))?;
            let mut guard = record.lock();
            if_match.check(&guard.identity.etag_string())?;
            guard.deleted = true;
            devices.remove(id);
            Row::tombstone(id, self.next_seq())
        };
        self.inner.tags.lock().remove(id);
        self.inner.dirty_activity.lock().remove(id);
        persist::PendingWrite(row).commit(self).await?;
        self.events().publish(
            twin.and_then(|twin| HubEvent::identity_lifecycle(LifecycleOp::Deleted, &twin)),
        );
        Ok(())
    }
}

fn validate_request(id: &DeviceId, request: &DeviceRequest) -> Result<(), RegistryError> {
    if let Some(body_id) = request.device_id.as_deref().filter(|body_id| *body_id != id.as_str()) {
        return Err(RegistryError::InvalidDevice(format!(
            "the device id in the body ({body_id}) does not match the id in the path ({id})"
        )));
    }
    let (primary, secondary) = request.requested_keys();
    for key in [primary, secondary].into_iter().flatten() {
        if !record::is_base64_key(key) {
            return Err(RegistryError::InvalidDevice(
                "symmetric keys must be non-empty base64".to_owned(),
            ));
        }
    }
    Ok(())
}

fn new_record(id: &DeviceId, request: &DeviceRequest, now: chrono::DateTime<Utc>) -> Record {
    let auth_type = request.auth_type();
    let (primary, secondary) = request.requested_keys();
    let sas = auth_type == AuthenticationType::Sas;
    let thumbprints = request
        .authentication
        .as_ref()
        .and_then(|auth| auth.x509_thumbprint.clone())
        .unwrap_or_default();
    let identity = Identity {
        device_id: id.clone(),
        generation_id: record::generate_generation_id(),
        etag: 0,
        status: request.status.unwrap_or(DeviceStatus::Enabled),
        status_reason: request.status_reason.clone(),
        status_updated_time: Some(now),
        auth_type,
        primary_key: sas.then(|| primary.map_or_else(record::generate_key, str::to_owned)),
        secondary_key: sas.then(|| secondary.map_or_else(record::generate_key, str::to_owned)),
        primary_thumbprint: thumbprints.primary_thumbprint,
        secondary_thumbprint: thumbprints.secondary_thumbprint,
        capabilities: request.capabilities.unwrap_or_default(),
        connection_state: Default::default(),
        connection_state_updated_time: None,
        last_activity_time: None,
    };
    Record { identity, twin: TwinDocument::new(now), deleted: false }
}

/// Applies an update; returns whether live sessions must be closed (disabled or re-keyed).
fn apply_update(
    identity: &mut Identity,
    request: &DeviceRequest,
    now: chrono::DateTime<Utc>,
) -> bool {
    let mut disconnect = false;
    if let Some(status) = request.status.filter(|status| *status != identity.status) {
        identity.status = status;
        identity.status_updated_time = Some(now);
        disconnect |= status == DeviceStatus::Disabled;
    }
    if request.status_reason.is_some() {
        identity.status_reason = request.status_reason.clone();
    }
    if let Some(capabilities) = request.capabilities {
        identity.capabilities = capabilities;
    }
    if let Some(auth) = &request.authentication {
        let auth_type = request.auth_type();
        let (primary, secondary) = request.requested_keys();
        let sas = auth_type == AuthenticationType::Sas;
        let new_primary = sas.then(|| {
            primary
                .map(str::to_owned)
                .or_else(|| identity.primary_key.clone())
                .unwrap_or_else(record::generate_key)
        });
        let new_secondary = sas.then(|| {
            secondary
                .map(str::to_owned)
                .or_else(|| identity.secondary_key.clone())
                .unwrap_or_else(record::generate_key)
        });
        disconnect |= new_primary != identity.primary_key
            || new_secondary != identity.secondary_key
            || auth_type != identity.auth_type;
        identity.auth_type = auth_type;
        identity.primary_key = new_primary;
        identity.secondary_key = new_secondary;
        if let Some(thumbprints) = &auth.x509_thumbprint {
            identity.primary_thumbprint = thumbprints.primary_thumbprint.clone();
            identity.secondary_thumbprint = thumbprints.secondary_thumbprint.clone();
        }
    }
    identity.etag += 1;
    disconnect
}
