//! Extractors that turn request parts into typed values or IoT Hub errors (never axum's plain-text
//! rejections): [`DevicePath`] (a validated device id from the path), [`IfMatchHeader`], and
//! [`JsonBody`] (the body as JSON, size-limited).
//!
//! Handlers in every resource file (including `methods.rs` and `jobs.rs`) use these.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use protocol::error::ErrorCode;
use protocol::ids::DeviceId;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::registry::IfMatch;

/// The `{id}` path segment as a validated [`DeviceId`] (400 ArgumentInvalid otherwise).
#[derive(Debug, Clone)]
pub struct DevicePath(pub DeviceId);

/// The `If-Match` header, quotes stripped (`"*"` and `*` are the wildcard).
#[derive(Debug, Clone)]
pub struct IfMatchHeader(pub IfMatch);

/// The request body parsed as JSON into `T`.
/// Too large → 413 MessageTooLarge; unreadable or not `T` → 400 DeserializationError.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// The raw request body (size-limited like [`JsonBody`]).
#[derive(Debug, Clone)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequestParts<S> for DevicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|err| {
            ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid path: {err}"))
        })?;
        DeviceId::new(raw).map(DevicePath).map_err(|err| {
            ApiError::new(ErrorCode::ArgumentInvalid, format!("invalid device id: {err}"))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatchHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = match parts.headers.get(axum::http::header::IF_MATCH) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::new(ErrorCode::ArgumentInvalid, "the If-Match header is not ASCII text")
            })?),
        };
        Ok(IfMatchHeader(IfMatch::from_header(value)))
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state).await.map(RawBody).map_err(body_error)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|err| {
            ApiError::new(ErrorCode::DeserializationError, format!("invalid json body: {err}"))
        })
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::MessageTooLarge, "the request body is larger than the hub accepts")
    } else {
        ApiError::new(
            ErrorCode::GenericBadRequest,
            format!("could not read the request body: {}", rejection.body_text()),
        )
    }
}
