//! MQTT usernames: `{host}/{deviceId}[/{moduleId}]/?api-version=..&DeviceClientType=..`.
//!
//! Parsing is tolerant, as the hub must be: older C SDKs omit the `?`, some clients send no
//! query at all. The host and ids are not URL-encoded; the query is percent-decoded.
//! This module does not check that the host is the hub's: the hub compares it.

use crate::property_bag::{encode_component, PropertyBag};

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// No `/` after the host, or an empty host or device id.
    #[error("username {0:?} is not of the form {{host}}/{{deviceId}}/?api-version=...")]
    Shape(String),
    /// The query part is malformed.
    #[error("username {username:?}: {what}")]
    Query {
        /// The username as received.
        username: String,
        /// What is wrong.
        what: String,
    },
}

/// A parsed MQTT username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUsername {
    /// The hub host name the client addressed.
    pub host: String,
    /// The device id.
    pub device_id: String,
    /// The module id, for module identities.
    pub module_id: Option<String>,
    /// The query parameters (api-version, DeviceClientType, model-id, ...).
    pub params: PropertyBag,
}

impl MqttUsername {
    /// Parses a username tolerantly.
    ///
    /// # Errors
    /// [`UsernameError`] when the host or device id is missing or the query is malformed.
    pub fn parse(username: &str) -> Result<Self, UsernameError> {
        let shape = || UsernameError::Shape(username.to_owned());
        let (host, rest) = username.split_once('/').ok_or_else(shape)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, query),
            None => split_unmarked_query(rest),
        };
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let device_id = segments.next().ok_or_else(shape)?;
        let module_id = segments.next();
        if host.is_empty() || segments.next().is_some() {
            return Err(shape());
        }
        let params = PropertyBag::parse(query).map_err(|err| UsernameError::Query {
            username: username.to_owned(),
            what: err.to_string(),
        })?;
        Ok(Self {
            host: host.to_owned(),
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
            params,
        })
    }

    /// The `api-version` parameter, if present.
    pub fn api_version(&self) -> Option<&str> {
        self.params.get("api-version").flatten()
    }

    /// Builds `{host}/{device}[/{module}]/?api-version={api}&DeviceClientType={client_type}` (client type URL-encoded).
    pub fn build(
        host: &str,
        device_id: &str,
        module_id: Option<&str>,
        api_version: &str,
        client_type: &str,
    ) -> String {
        let identity = match module_id {
            Some(module) => format!("{device_id}/{module}"),
            None => device_id.to_owned(),
        };
        format!(
            "{host}/{identity}/?api-version={}&DeviceClientType={}",
            encode_component(api_version),
            encode_component(client_type)
        )
    }
}

/// Without a `?`, the last segment is the query when it holds an `=` (`{host}/{device}/api-version=...`).
fn split_unmarked_query(rest: &str) -> (&str, &str) {
    match rest.rsplit_once('/') {
        Some((path, last)) if last.contains('=') => (path, last),
        _ if !rest.contains('/') && rest.contains('=') => ("", rest),
        _ => (rest, ""),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use proptest::prelude::*;

    use super::*;

    fn check(input: &str, expect: Expect) {
        let actual = match MqttUsername::parse(input) {
            Ok(parsed) => format!(
                "host={} device={} module={:?} api={:?} params={}",
                parsed.host,
                parsed.device_id,
                parsed.module_id,
                parsed.api_version(),
                parsed.params.len()
            ),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn sdk_forms() {
        check(
            "hub.local/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%29",
            expect![[r#"host=hub.local device=dev1 module=None api=Some("2019-10-01") params=2"#]],
        );
        check(
            "hub.local/dev1/mod1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4",
            expect![[r#"host=hub.local device=dev1 module=Some("mod1") api=Some("2021-04-12") params=2"#]],
        );
        check(
            "hub.local/dev1/api-version=2016-11-14&DeviceClientType=c",
            expect![[r#"host=hub.local device=dev1 module=None api=Some("2016-11-14") params=2"#]],
        );
        check(
            "hub.local/dev1",
            expect![[r#"host=hub.local device=dev1 module=None api=None params=0"#]],
        );
        check(
            "hub.local/dev1/",
            expect![[r#"host=hub.local device=dev1 module=None api=None params=0"#]],
        );
        check(
            "hub.local",
            expect![[
                r#"error: username "hub.local" is not of the form {host}/{deviceId}/?api-version=..."#
            ]],
        );
        check(
            "/dev1/?api-version=1",
            expect![[
                r#"error: username "/dev1/?api-version=1" is not of the form {host}/{deviceId}/?api-version=..."#
            ]],
        );
        check(
            "h/a/b/c/?x=1",
            expect![[
                r#"error: username "h/a/b/c/?x=1" is not of the form {host}/{deviceId}/?api-version=..."#
            ]],
        );
    }

    #[test]
    fn build_round_trips() {
        let text = MqttUsername::build(
            "localhost",
            "b43-f3-0001",
            None,
            "2021-04-12",
            "hubsim-device/0.1.0",
        );
        assert_eq!(
            text,
            "localhost/b43-f3-0001/?api-version=2021-04-12&DeviceClientType=hubsim-device%2F0.1.0"
        );
        let parsed = MqttUsername::parse(&text).unwrap();
        assert_eq!(parsed.params.get("DeviceClientType"), Some(Some("hubsim-device/0.1.0")));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,80}") {
            let _ = MqttUsername::parse(&text);
        }
    }
}
