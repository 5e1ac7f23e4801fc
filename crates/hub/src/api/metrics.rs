//! `GET /metrics`: the hub's counters in the Prometheus text format (see [`crate::metrics`]).
//!
//! Served beside the IoT Hub API but outside its gates: a scraper sends no SAS token and no
//! api-version, and the body is `text/plain; version=0.0.4`, not JSON. It exposes counters only,
//! never keys, ids or payloads. [`count_throttled`] is the middleware that counts 429 responses.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{ApiError, ApiState};
use crate::metrics::{render, Snapshot};

/// The Prometheus text exposition content type.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` route, already bound to its state.
pub(crate) fn routes(state: ApiState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let (jobs_by_status, job_device_operations) = state.jobs.metrics().await?;
    let snapshot = Snapshot {
        sessions: state.sessions.stats(),
        registered_devices: state.registry.device_count(),
        jobs_by_status,
        job_device_operations,
        method_latency: state.sessions.method_latency(),
        http: &state.http,
        events: state.events.stats(),
    };
    let mut response = render(&snapshot).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
    Ok(response)
}

/// Counts every 429 the API answers (tier throttling, the active-job cap).
pub(crate) async fn count_throttled(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        state.http.throttled.fetch_add(1, Ordering::Relaxed);
    }
    response
}
