//! CONTRACT SKELETON (owned by hub-core). The service REST API (axum). One file per resource:
//! devices.rs, twins.rs, query.rs (hub-core), methods.rs (hub-mqtt), jobs.rs (jobs engineer).
//! Each resource file exposes `pub(crate) fn routes() -> axum::Router<ApiState>`.
