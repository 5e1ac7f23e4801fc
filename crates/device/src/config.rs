//! [`DeviceConfig`]: everything one device client needs, resolved and typed.
//!
//! The MQTT username and the SAS token name [`DeviceConfig::host_name`]; the socket goes to
//! [`DeviceConfig::transport_addr`]. The two differ on purpose: a fleet connects to `127.0.0.1:8883`
//! while the hub is configured as `localhost` or `myhub.azure-devices.net`.
//! [`TlsConfig`] wraps one rustls client configuration so ten thousand devices share a single copy.
//! This module reads no files and no environment; the caller passes PEM bytes and strings.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use protocol::connection_string::{ConnectionStringError, DeviceConnectionString};
use protocol::ids::{DeviceId, ModuleId};

use crate::error::ConfigError;

/// Default MQTT keep-alive (the Python SDK's default).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Default SAS token lifetime (both SDKs use one hour).
pub const DEFAULT_SAS_TTL: Duration = Duration::from_secs(3600);
/// Default time before expiry at which the token is renewed (the Python SDK's margin).
pub const DEFAULT_SAS_RENEWAL_MARGIN: Duration = Duration::from_secs(120);
/// Default time allowed for a twin request, a telemetry PUBACK or a connection attempt.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest MQTT packet accepted or sent (IoT Hub's 256 KiB message limit plus headers).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024 + 4096;

/// A resolved device configuration. Build it with [`DeviceConfig::new`] or
/// [`DeviceConfig::from_connection_string`] and adjust the public fields.
#[derive(Clone)]
pub struct DeviceConfig {
    /// The hub's host name as named in the username and in the SAS `sr` (e.g. `localhost`).
    pub host_name: String,
    /// The device id: the MQTT client id (with the module id, `{device}/{module}`).
    pub device_id: DeviceId,
    /// The module id, for a module identity.
    pub module_id: Option<ModuleId>,
    /// The device's (or module's) shared access key, base64 as in the connection string.
    pub shared_access_key: String,
    /// Where the socket connects (may differ from `host_name`).
    pub transport_addr: SocketAddr,
    /// TLS settings; `None` is plain TCP (only hubsim offers that; the real hub requires TLS).
    pub tls: Option<TlsConfig>,
    /// Local source address to bind before connecting (spreads ephemeral ports over 127.0.0.x).
    pub local_addr: Option<IpAddr>,
    /// MQTT keep-alive; must be 1..=1740 s (IoT Hub's maximum) or zero to disable.
    pub keep_alive: Duration,
    /// SAS token lifetime.
    pub sas_ttl: Duration,
    /// The token is renewed (disconnect and reconnect with a new password) this long before expiry.
    pub sas_renewal_margin: Duration,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// Time allowed for a connection attempt and for each twin, telemetry or subscribe operation.
    pub operation_timeout: Duration,
    /// Largest MQTT packet accepted from the hub or sent to it.
    pub max_packet_size: usize,
    /// Whether CONNACK 4/5 (auth refused) is retried with backoff instead of stopping the client.
    pub retry_auth_refused: bool,
    /// Seed of the RNG used for backoff jitter (a fleet derives it from `(run_seed, device_idx)`).
    pub rng_seed: u64,
    /// Value of `DeviceClientType` in the username.
    pub client_type: String,
}

/// Capped exponential backoff with jitter for reconnects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound on the delay.
    pub max: Duration,
    /// Fraction of the delay that is randomized, 0.0..=1.0 (0.5 → the delay is 50–100 % of nominal).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(60), jitter: 0.5 }
    }
}

/// TLS settings shared by many clients: a rustls client configuration (trust roots, TLS 1.2 and 1.3,
/// ring provider) plus an optional server name override. Cloning is cheap.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) client_config: Arc<rustls::ClientConfig>,
    /// The name verified against the server certificate; `None` uses the config's `host_name`.
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Trusts exactly the certificates in `ca_pem` (one or more PEM `CERTIFICATE` blocks).
    ///
    /// # Errors
    /// [`ConfigError::Ca`] when the PEM holds no certificate or rustls rejects one.
    pub fn from_ca_pem(ca_pem: &[u8]) -> Result<TlsConfig, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut reader = ca_pem;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|err| ConfigError::Ca(err.to_string()))?;
            roots.add(cert).map_err(|err| ConfigError::Ca(err.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ConfigError::Ca("no CERTIFICATE block in the pem".to_owned()));
        }
        Self::from_roots(roots)
    }

    /// Trusts the public web PKI roots (Mozilla's set, built in): what a real Azure IoT Hub needs.
    ///
    /// # Errors
    /// [`ConfigError::Ca`] when rustls refuses the protocol versions (it does not with ring).
    pub fn public_roots() -> Result<TlsConfig, ConfigError> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        Self::from_roots(roots)
    }

    fn from_roots(roots: rustls::RootCertStore) -> Result<TlsConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| ConfigError::Ca(err.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConfig { client_config: Arc::new(client_config), server_name: None })
    }

    /// Sets the name verified against the server certificate (e.g. `127.0.0.1` or `localhost`).
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field("shared_access_key", &"<redacted>")
            .field("transport_addr", &self.transport_addr)
            .field("tls", &self.tls)
            .field("local_addr", &self.local_addr)
            .field("keep_alive", &self.keep_alive)
            .field("sas_ttl", &self.sas_ttl)
            .field("sas_renewal_margin", &self.sas_renewal_margin)
            .field("backoff", &self.backoff)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_packet_size", &self.max_packet_size)
            .field("retry_auth_refused", &self.retry_auth_refused)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

impl DeviceConfig {
    /// A configuration with the defaults (`DEFAULT_*`), plain TCP, no module.
    ///
    /// # Errors
    /// [`ConfigError::KeyNotBase64`] when the key is not base64.
    pub fn new(
        host_name: impl Into<String>,
        device_id: DeviceId,
        shared_access_key: impl Into<String>,
        transport_addr: SocketAddr,
    ) -> Result<DeviceConfig, ConfigError> {
        let shared_access_key = shared_access_key.into();
        decode_key(&shared_access_key)?;
        Ok(DeviceConfig {
            host_name: host_name.into(),
            device_id,
            module_id: None,
            shared_access_key,
            transport_addr,
            tls: None,
            local_addr: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            sas_ttl: DEFAULT_SAS_TTL,
            sas_renewal_margin: DEFAULT_SAS_RENEWAL_MARGIN,
            backoff: Backoff::default(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            retry_auth_refused: false,
            rng_seed: 0,
            client_type: format!("hubsim-device/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Reads a device (or module) connection string
    /// `HostName=..;DeviceId=..[;ModuleId=..];SharedAccessKey=..`; the socket goes to `transport_addr`
    /// (a `GatewayHostName` is accepted and ignored: the caller resolves where to connect).
    ///
    /// # Errors
    /// [`ConfigError`] when a field is missing or invalid.
    pub fn from_connection_string(
        connection_string: &str,
        transport_addr: SocketAddr,
    ) -> Result<DeviceConfig, ConfigError> {
        let parsed: DeviceConnectionString = connection_string
            .parse()
            .map_err(|err: ConnectionStringError| ConfigError::ConnectionString(err.to_string()))?;
        let mut cfg = DeviceConfig::new(
            parsed.host_name,
            parsed.device_id,
            parsed.shared_access_key,
            transport_addr,
        )?;
        cfg.module_id = parsed.module_id;
        Ok(cfg)
    }

    /// The MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(module_id) => format!("{}/{}", self.device_id, module_id),
            None => self.device_id.to_string(),
        }
    }

    /// Checks ranges the hub enforces, so a bad setting fails at start rather than on the wire.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        decode_key(&self.shared_access_key)?;
        let bad = |name: &'static str, reason: &str| {
            Err(ConfigError::Setting { name, reason: reason.to_owned() })
        };
        if self.host_name.is_empty() {
            return bad("host_name", "must not be empty");
        }
        if self.keep_alive > Duration::from_secs(1740)
            || (!self.keep_alive.is_zero() && self.keep_alive.as_secs() == 0)
        {
            return bad("keep_alive", "must be zero or 1..=1740 s");
        }
        if self.sas_ttl <= self.sas_renewal_margin {
            return bad("sas_ttl", "must be longer than sas_renewal_margin");
        }
        if self.operation_timeout.is_zero() {
            return bad("operation_timeout", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.backoff.jitter)
            || self.backoff.initial.is_zero()
            || self.backoff.max < self.backoff.initial
        {
            return bad("backoff", "needs 0 < initial <= max and jitter in 0..=1");
        }
        if self.max_packet_size < 1024 {
            return bad("max_packet_size", "must be at least 1024 bytes");
        }
        Ok(())
    }

    /// The TLS server name to verify, when TLS is on.
    pub(crate) fn tls_server_name(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|tls| tls.server_name.clone().unwrap_or_else(|| self.host_name.clone()))
    }
}

/// Decodes a base64 shared access key.
pub(crate) fn decode_key(key: &str) -> Result<Vec<u8>, ConfigError> {
    protocol::sas::decode_key(key).map_err(|_| ConfigError::KeyNotBase64)
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): `min(max, initial * 2^attempt)`, of which the
    /// `jitter` fraction is scaled by `unit` (a uniform draw from 0..1 supplied by the caller's RNG).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let nominal = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + jitter * unit.clamp(0.0, 1.0);
        nominal.mul_f64(scale)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn backoff_is_capped_exponential_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter: 0.5,
        };
        let delays: Vec<String> = (0..8)
            .map(|attempt| {
                format!("{:?}/{:?}", backoff.delay(attempt, 0.0), backoff.delay(attempt, 1.0))
            })
            .collect();
        expect![[r#"50ms/100ms 100ms/200ms 200ms/400ms 400ms/800ms 800ms/1.6s 1s/2s 1s/2s 1s/2s"#]]
            .assert_eq(&delays.join(" "));
        assert_eq!(backoff.delay(u32::MAX, 1.0), Duration::from_secs(2));
    }

    #[test]
    fn config_validation() {
        let device_id = DeviceId::new("d1").unwrap();
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        assert_eq!(
            DeviceConfig::new("h", device_id.clone(), "not base64!", addr).unwrap_err(),
            ConfigError::KeyNotBase64
        );
        let mut cfg = DeviceConfig::new("h", device_id, "a2V5", addr).unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        cfg.sas_ttl = Duration::from_secs(60);
        expect!["invalid setting sas_ttl: must be longer than sas_renewal_margin"]
            .assert_eq(&cfg.validate().unwrap_err().to_string());
    }

    #[test]
    fn from_connection_string() {
        let addr: SocketAddr = "127.0.0.1:8883".parse().unwrap();
        let cfg = DeviceConfig::from_connection_string(
            "HostName=localhost;DeviceId=d-1;SharedAccessKey=a2V5PQ==",
            addr,
        )
        .unwrap();
        assert_eq!((cfg.host_name.as_str(), cfg.client_id().as_str()), ("localhost", "d-1"));
        let cfg = DeviceConfig::from_connection_string(
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5",
            addr,
        )
        .unwrap();
        assert_eq!(cfg.client_id(), "d/m");
        let err = DeviceConfig::from_connection_string("HostName=h;SharedAccessKey=a2V5", addr)
            .unwrap_err();
        expect![
            "invalid connection string: connection string lacks DeviceId or SharedAccessKeyName"
        ]
        .assert_eq(&err.to_string());
    }
}
