//! Request gates that run before any handler: the service SAS check and the api-version check.
//!
//! Every call needs `Authorization: SharedAccessSignature sr=<host>&sig=..&se=..&skn=<policy>`
//! signed with a shared access policy's key (hubsim has one policy, `iothubowner`, which may do
//! everything). A missing, malformed or forged token, an unknown policy or a token for another hub
//! gets 401 IotHubUnauthorizedAccess (401002); an expired one 401 IotHubUnauthorized (401003).
//! Then `api-version` must be one the service SDKs send, else 400 InvalidProtocolVersion.
//! Device-key tokens (no `skn`) are not service credentials here.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use protocol::error::ErrorCode;
use protocol::sas::{SasError, SasToken};

use super::{ApiError, ApiState};

/// A shared access policy: name and decoded keys.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy name (`skn`).
    pub name: String,
    /// Decoded primary (and optionally secondary) keys.
    pub keys: Vec<Vec<u8>>,
}

/// What service tokens are checked against.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    /// The hub host name the token's `sr` must name.
    pub host_name: String,
    /// The accepted policies.
    pub policies: Vec<Policy>,
}

impl ServiceAuth {
    /// Checks an `Authorization` header value at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// 401002 for a missing, malformed, forged or foreign token; 401003 when it has expired.
    pub fn check(&self, header: Option<&str>, now: u64) -> Result<(), ApiError> {
        let unauthorized =
            |message: String| ApiError::new(ErrorCode::IotHubUnauthorizedAccess, message);
        let header =
            header.ok_or_else(|| unauthorized("Authorization header missing".to_owned()))?;
        let token = SasToken::parse(header)
            .map_err(|err| unauthorized(format!("malformed authorization token: {err}")))?;
        let key_name = token.key_name.as_deref().ok_or_else(|| {
            unauthorized("the token names no shared access policy (skn)".to_owned())
        })?;
        let policy =
            self.policies.iter().find(|policy| policy.name == key_name).ok_or_else(|| {
                unauthorized(format!("unknown shared access policy '{key_name}'"))
            })?;
        if !token.covers_hub(&self.host_name) {
            return Err(unauthorized(format!(
                "the token's resource '{}' is not this hub",
                token.resource
            )));
        }
        let keys: Vec<&[u8]> = policy.keys.iter().map(Vec::as_slice).collect();
        token.verify(&keys, now).map_err(|err| match err {
            SasError::Expired { .. } => ApiError::new(
                ErrorCode::IotHubUnauthorized,
                format!("the authorization token has expired: {err}"),
            ),
            other => unauthorized(format!("invalid authorization token: {other}")),
        })
    }
}

/// Middleware: the SAS check.
pub(crate) async fn require_sas(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    state.auth.check(header, now)?;
    Ok(next.run(request).await)
}

/// Middleware: `api-version` must be present and known.
pub(crate) async fn require_api_version(
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let query = request.uri().query().unwrap_or_default();
    let version = query.split('&').find_map(|pair| pair.strip_prefix("api-version="));
    match version {
        Some(version) if protocol::ACCEPTED_API_VERSIONS.contains(&version) => {
            Ok(next.run(request).await)
        }
        Some(version) => Err(ApiError::new(
            ErrorCode::InvalidProtocolVersion,
            format!("api-version '{version}' is not supported; use {}", protocol::API_VERSION),
        )),
        None => Err(ApiError::new(
            ErrorCode::InvalidProtocolVersion,
            format!(
                "the api-version query parameter is required (e.g. api-version={})",
                protocol::API_VERSION
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItaHVic2ltLXRlc3RzISE=";

    fn auth() -> ServiceAuth {
        let key = protocol::sas::decode_key(KEY).unwrap();
        ServiceAuth {
            host_name: "hub.local".into(),
            policies: vec![Policy { name: "iothubowner".into(), keys: vec![key] }],
        }
    }

    fn check(token: Option<&str>) -> String {
        match auth().check(token, 1_000) {
            Ok(()) => "ok".to_owned(),
            Err(err) => format!("{} {}", err.code.code(), err.message),
        }
    }

    #[test]
    fn gates() {
        let good = protocol::sas::generate("hub.local", KEY, Some("iothubowner"), 2_000).unwrap();
        assert_eq!(check(Some(&good)), "ok");
        let expired = protocol::sas::generate("hub.local", KEY, Some("iothubowner"), 999).unwrap();
        assert!(check(Some(&expired)).starts_with("401003"));
        let other_hub =
            protocol::sas::generate("other.local", KEY, Some("iothubowner"), 2_000).unwrap();
        assert!(check(Some(&other_hub)).starts_with("401002"));
        let wrong_policy =
            protocol::sas::generate("hub.local", KEY, Some("registryRead"), 2_000).unwrap();
        assert!(check(Some(&wrong_policy)).contains("unknown shared access policy"));
        let forged =
            protocol::sas::generate("hub.local", "Zm9yZ2Vk", Some("iothubowner"), 2_000).unwrap();
        assert!(check(Some(&forged)).contains("signature does not match"));
        let device = protocol::sas::generate("hub.local/devices/d1", KEY, None, 2_000).unwrap();
        assert!(check(Some(&device)).contains("skn"));
        assert!(check(None).contains("Authorization header missing"));
        assert!(check(Some("Bearer x")).starts_with("401002"));
    }
}
