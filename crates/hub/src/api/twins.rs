//! Device twin REST: `GET /twins/{id}`, `PATCH /twins/{id}` (merge tags and desired) and
//! `PUT /twins/{id}` (replace tags and desired), with `If-Match` etags.
//!
//! Responses are the service Twin JSON with its quoted etag in `ETag`. A write that changed desired
//! properties is pushed to the device's live session (dropped when it is offline, as IoT Hub does).
//! `properties.reported` is device-only: a non-empty one in a service body is refused with 400.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, ServiceTwin, TwinPatch};

use super::extract::{DevicePath, IfMatchHeader, RawBody};
use super::{json_response, ApiError, ApiState};
use crate::registry::TwinWrite;

/// The routes of this file.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/twins/{id}", get(get_twin).patch(patch_twin).put(replace_twin))
}

async fn get_twin(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
) -> Result<Response, ApiError> {
    Ok(twin_response(&state.registry.get_twin(&id)?))
}

async fn patch_twin(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let patch = TwinPatch::from_slice(&body, ReportedInPatch::Reject)?;
    let write = state.registry.update_twin(&id, &patch, &if_match).await?;
    Ok(finish_write(&state, &id, write))
}

async fn replace_twin(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let replacement = TwinPatch::from_slice(&body, ReportedInPatch::Reject)?;
    let write = state
        .registry
        .replace_twin(&id, replacement.tags.as_ref(), replacement.desired.as_ref(), &if_match)
        .await?;
    Ok(finish_write(&state, &id, write))
}

/// Pushes the desired change (if any) and answers with the twin.
fn finish_write(state: &ApiState, id: &DeviceId, write: TwinWrite) -> Response {
    if let Some(push) = write.desired_push {
        state.sessions.push_desired(id, push);
    }
    twin_response(&write.twin)
}

fn twin_response(twin: &ServiceTwin) -> Response {
    let mut response = json_response(StatusCode::OK, twin);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", twin.etag)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
