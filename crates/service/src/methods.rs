//! Direct-method invocation: `POST /twins/{id}/methods` with a validated
//! `protocol::method::CloudToDeviceMethod`, answered by `{status,payload}`.
//!
//! The HTTP timeout of the call is the method's connect and response timeouts plus a margin, so the
//! hub's own 404103/504101 answers arrive before the client gives up. Module methods are not covered.

use std::time::Duration;

use protocol::ids::DeviceId;
use protocol::method::{CloudToDeviceMethod, CloudToDeviceMethodResult};
use reqwest::Method;

use crate::client::{segment, Call, ServiceClient};
use crate::error::ServiceError;

/// Added to the method's own timeouts for the HTTP request timeout.
const METHOD_HTTP_MARGIN: Duration = Duration::from_secs(10);

impl ServiceClient {
    /// Invokes a direct method and returns the device's status and payload (any device status is a success here).
    ///
    /// # Errors
    /// 404001 DeviceNotFound, 404103 DeviceNotOnline, 504101 GatewayTimeout, 400004 bad arguments;
    /// transport and decode errors.
    pub async fn invoke_method(
        &self,
        device_id: &DeviceId,
        method: &CloudToDeviceMethod,
    ) -> Result<CloudToDeviceMethodResult, ServiceError> {
        let waits =
            u64::from(method.response_timeout_secs()) + u64::from(method.connect_timeout_secs());
        let timeout = Duration::from_secs(waits) + METHOD_HTTP_MARGIN;
        let path = format!("/twins/{}/methods", segment(device_id.as_str()));
        let call = Call::new(Method::POST, path).json(method)?.timeout(timeout);
        self.execute_json(call).await
    }
}
