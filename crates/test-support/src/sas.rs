//! SAS tokens and MQTT usernames for tests, built with `protocol` (the same code the SDK-facing
//! crates use), so a test can also build wrong ones on purpose (expired, other host, other key).
//!
//! Not here: verification (the hub does that) and connection-string parsing (`protocol`).

/// The `iothubowner` policy name.
pub const OWNER_POLICY: &str = "iothubowner";
/// The MQTT username's `api-version`.
pub const MQTT_API_VERSION: &str = "2019-10-01";
/// The MQTT username's `DeviceClientType`.
pub const CLIENT_TYPE: &str = "hubsim-tests/1.0";

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("the clock is after 1970")
}

/// A service token for `host`, signed with `key` (base64) for `policy`, valid `ttl_secs` from now
/// (negative: already expired).
pub fn service_token(host: &str, key: &str, policy: &str, ttl_secs: i64) -> String {
    let expiry =
        u64::try_from(chrono::Utc::now().timestamp() + ttl_secs).expect("the expiry is after 1970");
    protocol::sas::generate(host, key, Some(policy), expiry).expect("the test key is base64")
}

/// A device token (no `skn`) for `resource` (`{host}/devices/{id}`), signed with `key` (base64),
/// expiring at `expiry` (Unix seconds).
pub fn device_token(resource: &str, key: &str, expiry: u64) -> String {
    protocol::sas::generate(resource, key, None, expiry).expect("the test key is base64")
}

/// `{host}/devices/{id}`, the `sr` a device token names.
pub fn device_resource(host: &str, id: &str) -> String {
    format!("{host}/devices/{id}")
}

/// The MQTT username a device SDK sends: `{host}/{id}/?api-version=..&DeviceClientType=..`.
pub fn username(host: &str, id: &str) -> String {
    protocol::username::MqttUsername::build(host, id, None, MQTT_API_VERSION, CLIENT_TYPE)
}

/// CONNECT credentials for device `id` of `host`: the username and a token signed with `key`
/// (base64), valid for an hour.
pub fn login(host: &str, id: &str, key: &str) -> (String, String) {
    (username(host, id), device_token(&device_resource(host, id), key, now_secs() + 3600))
}
