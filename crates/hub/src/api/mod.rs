//! The service REST API (axum): IoT Hub's registry, twin, query, method and jobs endpoints.
//!
//! One file per resource, each exposing `pub(crate) fn routes() -> Router<ApiState>`:
//! `devices.rs` (registry and statistics), `twins.rs`, `query.rs` (`/devices/query`), `methods.rs`
//! (direct methods) and `jobs.rs` (jobs v2). [`router`] merges them behind the shared gates:
//! the service SAS check, the `api-version` check (`auth.rs`), a body size limit (413), a 404 in
//! IoT Hub's shape for unknown paths, and `Content-Type: application/json; charset=utf-8` on every
//! response. [`ApiError`] (`error.rs`) is the only error handlers return and becomes the response
//! in one place; the extractors in `extract.rs` turn bad paths, headers and bodies into it.
//! `GET /metrics` (`metrics.rs`) sits outside those gates: Prometheus text, no SAS.
//! Serving the router on sockets (HTTP, HTTPS) is [`crate::Hub::spawn`]'s job, not this module's.

mod auth;
mod devices;
mod error;
mod extract;
mod jobs;
mod methods;
mod metrics;
mod query;
mod throttle;
mod twins;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;

use crate::events::Events;
use crate::jobs::Jobs;
use crate::metrics::HttpCounters;
use crate::mqtt::Sessions;
use crate::registry::Registry;

pub use auth::{Policy, ServiceAuth};
pub use error::ApiError;
pub use extract::{DevicePath, IfMatchHeader, JsonBody, RawBody};
pub use throttle::RestThrottle;

/// The content type of every response.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Devices and twins.
    pub registry: Registry,
    /// Live device sessions (desired pushes, methods, disconnects).
    pub sessions: Sessions,
    /// The jobs engine.
    pub jobs: Jobs,
    /// Who may call.
    pub auth: Arc<ServiceAuth>,
    /// REST counters for `/metrics`.
    pub http: Arc<HttpCounters>,
    /// The event stream (for its counters in `/metrics`).
    pub events: Events,
    /// Tier traffic shaping of direct methods and twin reads and updates.
    pub throttle: Arc<RestThrottle>,
}

/// Settings of the router.
#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// Largest accepted request body in bytes (larger → 413 MessageTooLarge).
    pub max_body_bytes: usize,
}

/// The complete REST router.
pub fn router(state: ApiState, cfg: ApiConfig) -> Router {
    Router::new()
        .merge(devices::routes())
        .merge(twins::routes())
        .merge(query::routes())
        .merge(methods::routes())
        .merge(jobs::routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn(auth::require_api_version))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_sas))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(middleware::from_fn(json_content_type))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_throttled))
        .with_state(state.clone())
        .merge(metrics::routes(state))
}

/// A JSON response with `status`.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, json_body(bytes)).into_response(),
        Err(err) => {
            let message = format!("could not serialize the response: {err}");
            ApiError::new(protocol::error::ErrorCode::ServerError, message).into_response()
        }
    }
}

/// A body with the JSON content type.
pub(crate) fn json_body(bytes: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(bytes.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

async fn unknown_route(request: Request) -> ApiError {
    ApiError::unknown_route(request.method().as_str(), request.uri().path())
}

/// Every response says JSON. The router's own 405 (a known path, another method) becomes the same
/// IoT Hub 404 as an unknown path, so no plain-text response escapes.
async fn json_content_type(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        return ApiError::unknown_route(method.as_str(), &path).into_response();
    }
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}
