//! Identity registry REST: `PUT/GET/DELETE /devices/{id}`, `GET /devices?top=N`, and the statistics
//! endpoints `GET /statistics/devices` and `GET /statistics/service`.
//!
//! Device responses carry the identity etag quoted in an `ETag` header, as the service does.
//! Disabling, re-keying or deleting a device closes its live MQTT session. Module identities are not
//! implemented (their routes answer 404 like any unknown path).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use protocol::device::{Device, DeviceRequest};
use protocol::error::ErrorCode;

use super::extract::{DevicePath, IfMatchHeader, RawBody};
use super::{json_response, ApiError, ApiState};

/// Devices listed when `top` is absent.
const DEFAULT_TOP: usize = 1000;
/// The most devices one list call returns.
const MAX_TOP: usize = 1000;

/// The routes of this file.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/{id}", get(get_device).put(put_device).delete(delete_device))
        .route("/statistics/devices", get(device_statistics))
        .route("/statistics/service", get(service_statistics))
}

async fn put_device(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request = DeviceRequest::parse(&body)
        .map_err(|err| ApiError::new(ErrorCode::DeserializationError, err.to_string()))?;
    let write = state.registry.put_device(&id, &request, &if_match).await?;
    if write.disconnect {
        state.sessions.disconnect(&id);
    }
    Ok(device_response(&write.device))
}

async fn get_device(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
) -> Result<Response, ApiError> {
    Ok(device_response(&state.registry.get_device(&id)?))
}

async fn delete_device(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<Response, ApiError> {
    state.registry.delete_device(&id, &if_match).await?;
    // A deleted identity's session state (subscriptions, pending calls) must not carry over to a
    // device later created with the same id.
    state.sessions.forget(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_devices(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let top =
        query.as_deref().unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("top="));
    let top = match top {
        None | Some("") => DEFAULT_TOP,
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("top must be a whole number, got '{text}'"),
            )
        })?,
    };
    let devices = state.registry.list_devices(top.min(MAX_TOP));
    Ok(json_response(StatusCode::OK, &devices))
}

async fn device_statistics(State(state): State<ApiState>) -> Response {
    json_response(StatusCode::OK, &state.registry.statistics())
}

async fn service_statistics(State(state): State<ApiState>) -> Response {
    let body = serde_json::json!({ "connectedDeviceCount": state.sessions.connected_count() });
    json_response(StatusCode::OK, &body)
}

/// 200 with the Device JSON and its quoted etag in `ETag`.
fn device_response(device: &Device) -> Response {
    let mut response = json_response(StatusCode::OK, device);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", device.etag)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
