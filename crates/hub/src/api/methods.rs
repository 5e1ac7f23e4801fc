//! Direct methods REST: `POST /twins/{id}/methods`.
//!
//! The body is validated by `protocol::method` (name, `responseTimeoutInSeconds` 5..=300 default 30,
//! `connectTimeoutInSeconds` 0..=300 default 0, payload ≤ 128 KB); a bad body is 400 (413 for size).
//! An unknown or disabled device is 404001; otherwise the call goes through
//! [`crate::mqtt::Sessions::invoke_method`] and answers 200 `{"status":..,"payload":..}` with whatever
//! status the device reported, or 404103 (not online / not subscribed) or 504101 (no answer in time).
//! Module methods (`/twins/{id}/modules/{mid}/methods`) are not served: the device endpoint does not
//! accept module identities yet.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use protocol::error::ErrorCode;
use protocol::method::{CloudToDeviceMethod, CloudToDeviceMethodResult};

use super::extract::{DevicePath, RawBody};
use super::{json_response, ApiError, ApiState};
use crate::mqtt::{MethodCall, MethodCallError};

/// The routes of this file.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/twins/{id}/methods", post(invoke_device_method))
}

async fn invoke_device_method(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request = CloudToDeviceMethod::parse(&body)
        .map_err(|err| ApiError::new(err.error_code(), err.to_string()))?;
    state.throttle.method().await?;
    match state.registry.credentials(&id) {
        Some(credentials) if credentials.enabled => {}
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::DeviceNotFound,
                format!("device {id} is disabled"),
            ))
        }
        None => {
            return Err(ApiError::new(
                ErrorCode::DeviceNotFound,
                format!("device {id} is not registered"),
            ))
        }
    }
    let call = MethodCall {
        name: request.method_name().to_owned(),
        payload: request.payload().clone(),
        response_timeout: Duration::from_secs(u64::from(request.response_timeout_secs())),
        connect_timeout: Duration::from_secs(u64::from(request.connect_timeout_secs())),
    };
    let response = state.sessions.invoke_method(&id, call).await.map_err(method_error)?;
    let result = CloudToDeviceMethodResult { status: response.status, payload: response.payload };
    Ok(json_response(StatusCode::OK, &result))
}

/// IoT Hub's texts for the two ways a call fails on the device side.
fn method_error(err: MethodCallError) -> ApiError {
    let message = match &err {
        MethodCallError::NotOnline => {
            "The operation failed because the requested device isn't online or hasn't registered the direct method callback."
                .to_owned()
        }
        MethodCallError::Timeout => "Timed out waiting for the response from device.".to_owned(),
        MethodCallError::PayloadTooLarge(_) => err.to_string(),
    };
    ApiError::new(err.error_code(), message)
}
