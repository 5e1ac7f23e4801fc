//! Resolved hub configuration ([`HubConfig`]) and its defaults.
//!
//! These are typed, validated values; the CLI turns flags, files and environment into them (the hub
//! reads no argv or environment). Listener addresses are not here: the caller binds the sockets and
//! passes them to [`crate::Hub::spawn`] in [`crate::HubListeners`].

use std::path::PathBuf;
use std::time::Duration;

/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = ".hubsim";
/// Default hub host name: what connection strings, usernames and SAS `sr` must name.
pub const DEFAULT_HOST_NAME: &str = "localhost";
/// Default HTTPS address (the Node service SDK needs 443; see the docs).
pub const DEFAULT_HTTPS_ADDR: &str = "127.0.0.1:8443";
/// Default MQTT-over-TLS address (the Python device SDK needs 8883).
pub const DEFAULT_MQTTS_ADDR: &str = "127.0.0.1:8883";
/// Default time in-flight work gets to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default largest REST request body (bigger bodies get 413).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The service policy with every permission.
pub const OWNER_POLICY: &str = "iothubowner";

/// Where the TLS certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Generate a CA and a server certificate in the data directory at first start, reuse them after.
    Generate,
    /// The user's own PEM files.
    Files {
        /// Certificate chain (server certificate first).
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// Resolved hub configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The hub host name (`HostName=` of connection strings; what SAS `sr` and MQTT usernames name).
    pub host_name: String,
    /// Holds the database, the owner key and generated TLS material.
    pub data_dir: PathBuf,
    /// The `iothubowner` key (base64); `None`: read `DIR/owner.key`, or generate it at first start.
    pub owner_key: Option<String>,
    /// TLS material for the MQTTS and HTTPS listeners.
    pub tls: TlsSource,
    /// How long [`crate::HubHandle::wait`] callers should give in-flight work (the CLI enforces it).
    pub shutdown_grace: Duration,
    /// Largest accepted REST request body in bytes.
    pub max_body_bytes: usize,
    /// Settings of the jobs engine.
    pub jobs: crate::jobs::JobsConfig,
    /// The back-end event broker (`docs/events.md`); `None`: events off.
    pub events: Option<crate::broker::BrokerConfig>,
}

impl HubConfig {
    /// The defaults with `data_dir` and `host_name` set.
    pub fn new(data_dir: impl Into<PathBuf>, host_name: impl Into<String>) -> HubConfig {
        HubConfig {
            host_name: host_name.into(),
            data_dir: data_dir.into(),
            owner_key: None,
            tls: TlsSource::Generate,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            jobs: crate::jobs::JobsConfig::default(),
            events: None,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig::new(DEFAULT_DATA_DIR, DEFAULT_HOST_NAME)
    }
}
