//! [`Hub::spawn`]: opens the store, loads the registry, starts the jobs engine, and serves MQTT and
//! REST on the caller's listeners until the cancellation token fires; [`HubHandle`] reports what
//! runs and [`HubHandle::wait`] drains it.
//!
//! Shutdown order: the token stops every accept loop; open REST connections finish their in-flight
//! request (hyper graceful shutdown) and MQTT sessions close; once every task has returned the
//! registry flushes activity times and the store commits what is queued and stops.
//! The hub reads no argv, environment or signals; the CLI does, and passes resolved values in.

mod serve;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ApiConfig, ApiState, Policy, ServiceAuth};
use crate::config::{HubConfig, OWNER_POLICY};
use crate::events::{forward_telemetry, Events};
use crate::jobs::{Jobs, JobsError};
use crate::mqtt::{MqttConfig, Sessions};
use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "hubsim.db";
/// The owner key file inside the data directory.
pub const OWNER_KEY_FILE: &str = "owner.key";
/// How often activity and connection times are persisted.
const ACTIVITY_FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Telemetry messages waiting to be turned into events.
const TELEMETRY_EVENTS_CAPACITY: usize = 4096;

/// The hub entry point.
pub struct Hub;

/// The listeners the hub serves on, already bound (tests bind `127.0.0.1:0`). `None` = off.
#[derive(Debug, Default)]
pub struct HubListeners {
    /// MQTT over TLS (devices; 8883 for the Python SDK).
    pub mqtts: Option<TcpListener>,
    /// Plain MQTT (local tools only).
    pub mqtt: Option<TcpListener>,
    /// REST over TLS (service SDKs; 443 for the Node SDK).
    pub https: Option<TcpListener>,
    /// Plain REST (local tools and tests).
    pub http: Option<TcpListener>,
}

/// Handle to a running hub.
pub struct HubHandle {
    host_name: String,
    owner_key: String,
    ca_pem: Option<String>,
    registry: Registry,
    sessions: Sessions,
    jobs: Jobs,
    events: Events,
    store: Store,
    addrs: HubAddrs,
    tasks: TaskTracker,
    store_tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// The local addresses the hub listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubAddrs {
    /// MQTT over TLS.
    pub mqtts: Option<SocketAddr>,
    /// Plain MQTT.
    pub mqtt: Option<SocketAddr>,
    /// REST over TLS.
    pub https: Option<SocketAddr>,
    /// Plain REST.
    pub http: Option<SocketAddr>,
    /// The back-end event broker (MQTT), when events are on.
    pub events: Option<SocketAddr>,
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The data directory or the owner key file could not be prepared.
    #[error("{path}: {source}")]
    DataDir {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The owner key is not base64.
    #[error("the owner key is not valid base64")]
    BadOwnerKey,
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The registry could not be loaded.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// The jobs engine could not start.
    #[error("jobs: {0}")]
    Jobs(#[from] JobsError),
    /// TLS material could not be prepared.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// A listener's local address could not be read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
    /// The event broker could not start.
    #[error("events: {0}")]
    Events(#[from] crate::broker::BrokerError),
}

impl Hub {
    /// Starts the hub on `listeners`; everything stops when `shutdown` is cancelled (then call
    /// [`HubHandle::wait`] to drain).
    ///
    /// # Errors
    /// [`HubError`] when the data directory, owner key, store, registry or TLS material is unusable.
    pub async fn spawn(
        cfg: HubConfig,
        listeners: HubListeners,
        shutdown: CancellationToken,
    ) -> Result<HubHandle, HubError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|source| data_dir_error(&cfg.data_dir, source))?;
        let owner_key = resolve_owner_key(&cfg)?;
        let owner_key_bytes =
            protocol::sas::decode_key(&owner_key).map_err(|_| HubError::BadOwnerKey)?;
        let needs_tls = listeners.mqtts.is_some() || listeners.https.is_some();
        let tls_material = if needs_tls {
            Some(tls::load_or_generate(&cfg.tls, &cfg.data_dir, &cfg.host_name)?)
        } else {
            None
        };
        let mut addrs = local_addrs(&listeners)?;

        let store_tasks = TaskTracker::new();
        let store = Store::open(&cfg.data_dir.join(DATABASE_FILE), &store_tasks)?;
        let registry = Registry::open(store.clone()).await?;
        let sessions =
            Sessions::new(registry.clone(), MqttConfig { host_name: cfg.host_name.clone() });
        let tasks = TaskTracker::new();
        let auth = ServiceAuth {
            host_name: cfg.host_name.clone(),
            policies: vec![Policy { name: OWNER_POLICY.to_owned(), keys: vec![owner_key_bytes] }],
        };
        let events = start_events(&cfg, &auth, &sessions, &shutdown, &tasks).await?;
        addrs.events = events.addr;
        registry.set_events(events.events.clone());
        let jobs = crate::jobs::spawn_with_events(
            cfg.jobs.clone(),
            registry.clone(),
            sessions.clone(),
            store.clone(),
            events.events.clone(),
            shutdown.clone(),
            &tasks,
        )
        .await?;
        let state = ApiState {
            registry: registry.clone(),
            sessions: sessions.clone(),
            jobs: jobs.clone(),
            auth: Arc::new(auth),
            http: Arc::default(),
            events: events.events.clone(),
            throttle: Arc::new(crate::api::RestThrottle::new(cfg.jobs.tier)),
        };
        let router = crate::api::router(state, ApiConfig { max_body_bytes: cfg.max_body_bytes });
        let ca_pem = tls_material.as_ref().and_then(|material| material.ca_pem.clone());
        serve::start(
            serve::Services {
                router,
                sessions: sessions.clone(),
                tls: tls_material,
                tasks: tasks.clone(),
            },
            listeners,
            &shutdown,
        )?;
        tasks.spawn(flush_activity(registry.clone(), shutdown.clone()));
        tracing::info!(
            host_name = %cfg.host_name,
            mqtts = ?addrs.mqtts, mqtt = ?addrs.mqtt, https = ?addrs.https, http = ?addrs.http,
            events = ?addrs.events,
            devices = registry.device_count(),
            "hub started"
        );
        Ok(HubHandle {
            host_name: cfg.host_name,
            owner_key,
            ca_pem,
            registry,
            sessions,
            jobs,
            events: events.events,
            store,
            addrs,
            tasks,
            store_tasks,
            shutdown,
        })
    }
}

impl HubHandle {
    /// `HostName=<host>;SharedAccessKeyName=iothubowner;SharedAccessKey=<key>`.
    pub fn service_connection_string(&self) -> String {
        format!(
            "HostName={};SharedAccessKeyName={OWNER_POLICY};SharedAccessKey={}",
            self.host_name, self.owner_key
        )
    }

    /// The hub host name.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The `iothubowner` key (base64).
    pub fn owner_key(&self) -> &str {
        &self.owner_key
    }

    /// The generated CA certificate (PEM), when the hub generated its TLS material.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The device sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The jobs engine.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The back-end event stream (disabled when events are off); its counters belong in `/metrics`.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The local addresses.
    pub fn addrs(&self) -> HubAddrs {
        self.addrs
    }

    /// The token that stops the hub (the one given to [`Hub::spawn`]).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for the shutdown token, then drains: accept loops stop, in-flight requests finish,
    /// sessions close, activity times are persisted and the store commits and stops.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tasks.close();
        self.tasks.wait().await;
        if let Err(err) = self.registry.flush_activity().await {
            tracing::warn!(%err, "could not persist activity times at shutdown");
        }
        self.store.close().await;
        self.store_tasks.close();
        self.store_tasks.wait().await;
        tracing::info!("hub drained");
    }
}

/// The event broker, when configured, and the handle the hub publishes through.
struct StartedEvents {
    events: Events,
    addr: Option<SocketAddr>,
}

/// Starts the event broker when `cfg.events` is set and forwards device telemetry to it.
async fn start_events(
    cfg: &HubConfig,
    auth: &ServiceAuth,
    sessions: &Sessions,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<StartedEvents, HubError> {
    let Some(broker_cfg) = cfg.events.clone() else {
        return Ok(StartedEvents { events: Events::disabled(), addr: None });
    };
    let broker = crate::broker::start(broker_cfg, auth.clone(), shutdown.clone(), tasks).await?;
    // Full channel: the device endpoint drops and counts the message (the device is still acked).
    if let Some(telemetry) = sessions.telemetry_receiver(TELEMETRY_EVENTS_CAPACITY) {
        let forward = forward_telemetry(telemetry, broker.events().clone(), shutdown.clone());
        tasks.spawn(forward);
    }
    Ok(StartedEvents { events: broker.events().clone(), addr: Some(broker.addr()) })
}

async fn flush_activity(registry: Registry, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(ACTIVITY_FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(err) = registry.flush_activity().await {
                    tracing::warn!(%err, "could not persist activity times");
                }
            }
        }
    }
}

fn local_addrs(listeners: &HubListeners) -> Result<HubAddrs, HubError> {
    let addr = |listener: &Option<TcpListener>| {
        listener.as_ref().map(TcpListener::local_addr).transpose().map_err(HubError::Listener)
    };
    Ok(HubAddrs {
        mqtts: addr(&listeners.mqtts)?,
        mqtt: addr(&listeners.mqtt)?,
        https: addr(&listeners.https)?,
        http: addr(&listeners.http)?,
        events: None,
    })
}

/// The owner key: the configured one, else `DIR/owner.key`, else a new one written there.
fn resolve_owner_key(cfg: &HubConfig) -> Result<String, HubError> {
    if let Some(key) = &cfg.owner_key {
        return Ok(key.trim().to_owned());
    }
    let path = cfg.data_dir.join(OWNER_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(data_dir_error(&path, source)),
    }
    let random: [u8; 32] = rand::random();
    let key = protocol::sas::encode_key(&random);
    write_private_file(&path, &key).map_err(|source| data_dir_error(&path, source))?;
    tracing::info!(path = %path.display(), "generated the iothubowner key");
    Ok(key)
}

fn data_dir_error(path: &Path, source: std::io::Error) -> HubError {
    HubError::DataDir { path: path.display().to_string(), source }
}

/// Writes `text` to a file only the owner can read (mode 0600 on Unix).
pub(crate) fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
