//! Service-side twin operations: get, patch and replace (`/twins/{id}`), and the forced patch of jobs.
//!
//! Twin semantics are `protocol::twin::TwinDocument`'s; this file only picks the record, checks the
//! precondition under its lock, renders the service JSON and persists. Pushing the returned desired
//! body to the device is the caller's job (`mqtt::Sessions::push_desired`).

use chrono::Utc;
use protocol::ids::DeviceId;
use protocol::twin::{ServiceTwin, TwinIdentity, TwinPatch};
use serde_json::{Map, Value};

use crate::events::HubEvent;

use super::persist;
use super::record::Record;
use super::{IfMatch, Registry, RegistryError, TwinWrite};

impl Registry {
    /// `GET /twins/{id}`: the service twin.
    ///
    /// # Errors
    /// [`RegistryError::DeviceNotFound`].
    pub fn get_twin(&self, id: &DeviceId) -> Result<ServiceTwin, RegistryError> {
        let record = self.record(id)?;
        let guard = record.lock();
        Ok(guard.service_twin())
    }

    /// `PATCH /twins/{id}`: merges tags and desired (a parsed [`TwinPatch`]) under `if_match`.
    ///
    /// # Errors
    /// 404, 412 on an etag mismatch, a twin limit, or a store failure.
    pub async fn update_twin(
        &self,
        id: &DeviceId,
        patch: &TwinPatch,
        if_match: &IfMatch,
    ) -> Result<TwinWrite, RegistryError> {
        let now = Utc::now();
        let (write, pending) = self.mutate(id, |record| {
            record.twin.check_if_match(if_match.as_header())?;
            let update = record.twin.apply_patch(patch, now)?;
            Ok(TwinWrite { twin: record.service_twin(), desired_push: update.desired_push })
        })?;
        if let Some(pending) = pending {
            pending.commit(self).await?;
        }
        self.events().publish(HubEvent::twin_patched(
            id,
            patch,
            write.desired_push.as_ref(),
            write.twin.version,
        ));
        Ok(write)
    }

    /// `PUT /twins/{id}`: replaces tags and/or desired wholesale (`None` keeps that part).
    ///
    /// # Errors
    /// 404, 412 on an etag mismatch, a twin limit, or a store failure.
    pub async fn replace_twin(
        &self,
        id: &DeviceId,
        tags: Option<&Map<String, Value>>,
        desired: Option<&Map<String, Value>>,
        if_match: &IfMatch,
    ) -> Result<TwinWrite, RegistryError> {
        let now = Utc::now();
        let (write, pending) = self.mutate(id, |record| {
            record.twin.check_if_match(if_match.as_header())?;
            let update = record.twin.replace(tags, desired, now)?;
            Ok(TwinWrite { twin: record.service_twin(), desired_push: update.desired_push })
        })?;
        if let Some(pending) = pending {
            pending.commit(self).await?;
        }
        self.events().publish(HubEvent::twin_replaced(
            &write.twin,
            tags.is_some(),
            desired.is_some(),
        ));
        Ok(write)
    }

    /// A job's `updateTwin` on one device: etag forced (`*`). Returns the desired push body, if any.
    /// Concurrent calls share store transactions; for many devices at once prefer
    /// [`Registry::update_twins_forced`].
    ///
    /// # Errors
    /// 404, a twin limit, or a store failure.
    pub async fn update_twin_forced(
        &self,
        id: &DeviceId,
        patch: &TwinPatch,
    ) -> Result<Option<Value>, RegistryError> {
        let now = Utc::now();
        let (push, pending) =
            self.mutate(id, |record| Ok(record.twin.apply_patch(patch, now)?.desired_push))?;
        if let Some(pending) = pending {
            pending.commit(self).await?;
        }
        self.events().publish(HubEvent::twin_patched(
            id,
            patch,
            push.as_ref(),
            self.get_twin(id).map_or(0, |twin| twin.version),
        ));
        Ok(push)
    }

    /// A job's `updateTwin` on many devices, persisted as one store operation. Returns, per device in
    /// input order, the desired push body or why that device failed. When the store write fails every
    /// device that changed reports [`RegistryError::Store`].
    pub async fn update_twins_forced(
        &self,
        ids: &[DeviceId],
        patch: &TwinPatch,
    ) -> Vec<(DeviceId, Result<Option<Value>, RegistryError>)> {
        let now = Utc::now();
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut rows = Vec::new();
        let mut changed = Vec::new();
        for id in ids {
            match self.mutate(id, |record| Ok(record.twin.apply_patch(patch, now)?.desired_push)) {
                Ok((push, pending)) => {
                    if let Some(pending) = pending {
                        rows.push(pending.0);
                        changed.push(outcomes.len());
                    }
                    outcomes.push((id.clone(), Ok(push)));
                }
                Err(err) => outcomes.push((id.clone(), Err(err))),
            }
        }
        if rows.is_empty() {
            return outcomes;
        }
        if let Err(err) = persist::write_rows(self, rows).await {
            let message = err.to_string();
            for idx in changed {
                outcomes[idx].1 =
                    Err(RegistryError::Store(crate::store::StoreError::Commit(message.clone())));
            }
        }
        for (id, push) in
            outcomes.iter().filter_map(|(id, outcome)| Some((id, outcome.as_ref().ok()?)))
        {
            self.events().publish(HubEvent::twin_patched(
                id,
                patch,
                push.as_ref(),
                self.get_twin(id).map_or(0, |twin| twin.version),
            ));
        }
        outcomes
    }
}

impl IfMatch {
    /// The header form `protocol::twin` checks: `None`, `*` or the bare etag.
    fn as_header(&self) -> Option<&str> {
        match self {
            IfMatch::Absent => None,
            IfMatch::Any => Some("*"),
            IfMatch::Etag(etag) => Some(etag),
        }
    }
}

impl Record {
    /// The registry fields a service twin shows.
    pub(crate) fn twin_identity(&self) -> TwinIdentity {
        let identity = &self.identity;
        TwinIdentity {
            device_id: identity.device_id.clone(),
            module_id: None,
            device_etag: Some(identity.etag_string()),
            status: identity.status,
            status_reason: identity.status_reason.clone(),
            status_update_time: identity.status_updated_time,
            connection_state: identity.connection_state,
            last_activity_time: identity.last_activity_time,
            cloud_to_device_message_count: 0,
            authentication_type: identity.auth_type,
            x509_thumbprint: protocol::device::X509Thumbprint {
                primary_thumbprint: identity.primary_thumbprint.clone(),
                secondary_thumbprint: identity.secondary_thumbprint.clone(),
            },
            capabilities: identity.capabilities,
            model_id: String::new(),
        }
    }

    /// The service twin of this device.
    pub(crate) fn service_twin(&self) -> ServiceTwin {
        self.twin.to_service_twin(&self.twin_identity())
    }
}
