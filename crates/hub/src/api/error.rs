//! [`ApiError`]: every REST failure, and the one place it becomes an HTTP response.
//!
//! The response is IoT Hub's: the status from the error code's first three digits, the
//! `iothub-errorcode` header with the code's name, and the legacy body
//! `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:..-TimeStamp:.."}` from
//! `protocol::error` (the form the Node service SDK parses). Conversions from the hub's boundary
//! errors live here too, so every handler can use `?`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use protocol::error::{ErrorCode, RestErrorBody, ERROR_CODE_HEADER};
use protocol::twin::TwinError;

use crate::registry::RegistryError;

/// A REST failure: an IoT Hub error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The IoT Hub error code (decides the HTTP status).
    pub code: ErrorCode,
    /// The text after `ErrorCode:<Name>;`.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    /// 404 for a path no route serves.
    pub fn unknown_route(method: &str, path: &str) -> ApiError {
        ApiError::new(ErrorCode::GenericNotFound, format!("no resource at {method} {path}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let tracking_id = uuid::Uuid::new_v4().simple().to_string();
        let body = RestErrorBody::with_tracking(self.code, &self.message, &tracking_id, Utc::now());
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed on the hub side");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request refused");
        }
        let mut response = (status, super::json_body(body.to_json())).into_response();
        if let Ok(name) = HeaderValue::from_str(self.code.name()) {
            response.headers_mut().insert(ERROR_CODE_HEADER, name);
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> ApiError {
        ApiError::new(err.error_code(), err.to_string())
    }
}

impl From<TwinError> for ApiError {
    fn from(err: TwinError) -> ApiError {
        ApiError::new(err.error_code(), err.to_string())
    }
}
