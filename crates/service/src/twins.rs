//! Twin operations: read (`GET /twins/{id}`), merge-patch (`PATCH`) and replace (`PUT`).
//!
//! Patches are `protocol::twin::TwinPatch` (tags and desired; the hub refuses reported), sent with a
//! quoted `If-Match` (`"*"` unless the caller passes the etag it last saw). Answers are the full
//! `protocol::twin::ServiceTwin`. Modules' twins are not covered.

use protocol::ids::DeviceId;
use protocol::twin::{ServiceTwin, TwinPatch};
use reqwest::Method;

use crate::client::{if_match, segment, Call, ServiceClient};
use crate::error::ServiceError;

impl ServiceClient {
    /// Reads a device twin.
    ///
    /// # Errors
    /// 404001 DeviceNotFound; transport and decode errors.
    pub async fn get_twin(&self, device_id: &DeviceId) -> Result<ServiceTwin, ServiceError> {
        self.execute_json(Call::new(Method::GET, twin_path(device_id))).await
    }

    /// Merges `patch` into the twin (`PATCH /twins/{id}`); `etag` `None` means `"*"`.
    ///
    /// # Errors
    /// 404001 DeviceNotFound, 412001 PreconditionFailed, 400004 for a patch that breaks the twin limits.
    pub async fn update_twin(
        &self,
        device_id: &DeviceId,
        patch: &TwinPatch,
        etag: Option<&str>,
    ) -> Result<ServiceTwin, ServiceError> {
        self.write_twin(Method::PATCH, device_id, patch, etag).await
    }

    /// Replaces the twin's tags and desired properties (`PUT /twins/{id}`); `etag` `None` means `"*"`.
    ///
    /// # Errors
    /// As [`ServiceClient::update_twin`].
    pub async fn replace_twin(
        &self,
        device_id: &DeviceId,
        twin: &TwinPatch,
        etag: Option<&str>,
    ) -> Result<ServiceTwin, ServiceError> {
        self.write_twin(Method::PUT, device_id, twin, etag).await
    }

    async fn write_twin(
        &self,
        method: Method,
        device_id: &DeviceId,
        patch: &TwinPatch,
        etag: Option<&str>,
    ) -> Result<ServiceTwin, ServiceError> {
        let call = Call::new(method, twin_path(device_id))
            .json(&patch.to_value())?
            .header("If-Match", if_match(etag));
        self.execute_json(call).await
    }
}

fn twin_path(device_id: &DeviceId) -> String {
    format!("/twins/{}", segment(device_id.as_str()))
}
