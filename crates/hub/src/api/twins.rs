//! Device twin REST: `GET /twins/{id}`, `PATCH /twins/{id}` (merge tags and desired) and
//! `PUT /twins/{id}` (replace tags and desired), with `If-Match` etags.
//!
//! Responses are the service Twin JSON with its quoted etag in `ETag`. A write that changed desired
//! properties is pushed to the device's live session (dropped when it is offline, as IoT Hub does).
//! `properties.reported` is device-only: a PATCH carrying a non-empty one is refused with 400; a PUT
//! (usually a whole twin read earlier) ignores it, along with desired's read-only `$metadata`/`$version`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use protocol::ids::DeviceId;
use protocol::twin::{ReportedInPatch, ServiceTwin, TwinError, TwinPatch};
use serde_json::Value;

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
    state.throttle.twin_read().await?;
    Ok(twin_response(&state.registry.get_twin(&id)?))
}

async fn patch_twin(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let patch = TwinPatch::from_slice(&body, ReportedInPatch::Reject)?;
    state.throttle.twin_update().await?;
    let write = state.registry.update_twin(&id, &patch, &if_match).await?;
    Ok(finish_write(&state, &id, write))
}

async fn replace_twin(
    State(state): State<ApiState>,
    DevicePath(id): DevicePath,
    IfMatchHeader(if_match): IfMatchHeader,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mut document: Value =
        serde_json::from_slice(&body).map_err(|err| TwinError::Json(err.to_string()))?;
    strip_read_only(&mut document);
    let replacement = TwinPatch::parse(&document, ReportedInPatch::Ignore)?;
    state.throttle.twin_update().await?;
    let write = state
        .registry
        .replace_twin(&id, replacement.tags.as_ref(), replacement.desired.as_ref(), &if_match)
        .await?;
    Ok(finish_write(&state, &id, write))
}

/// A replacement is often a twin read earlier and edited: its desired section then carries the
/// read-only `$metadata` and `$version`, which are not properties and are dropped here.
fn strip_read_only(document: &mut Value) {
    if let Some(Value::Object(desired)) = document.pointer_mut("/properties/desired") {
        desired.shift_remove("$metadata");
        desired.shift_remove("$version");
    }
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
