//! [`TestHub`]: the real hub on `127.0.0.1:0` listeners with its data in a temp dir.
//!
//! [`spawn_hub`] binds all four listeners (plain MQTT, MQTT/TLS, plain HTTP, HTTPS; the TLS ones
//! make the hub generate its CA in the data dir) and starts [`hub::Hub::spawn`]; [`spawn_hub_with`]
//! lets the test adjust the [`HubConfig`] first. [`TestHub::restart`] stops the hub and starts it
//! again on the same data dir and config (fresh ports), as a user restarting `hubsim` would.
//! Device registration lives here too; REST helpers are in `rest.rs`. Not here: killing a hub
//! without a drain (a test that needs a crash runs the hub on a runtime it can drop).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::device::DeviceRequest;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{sas, RawClient, HOST};

/// How long [`TestHub::stop`] gives the hub to drain (jobs in flight included).
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// A running hub, its addresses and an HTTP client for it. Stop it with [`TestHub::stop`].
pub struct TestHub {
    /// The hub's handle (registry, sessions, jobs, owner key, CA).
    pub handle: HubHandle,
    /// Plain MQTT.
    pub mqtt: SocketAddr,
    /// MQTT over TLS.
    pub mqtts: SocketAddr,
    /// Plain HTTP (REST).
    pub http: SocketAddr,
    /// HTTPS (REST).
    pub https: SocketAddr,
    /// `http://127.0.0.1:{port}` of the plain HTTP listener.
    pub base: String,
    /// A plain HTTP client (connection pooling shared by the REST helpers).
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    cfg: HubConfig,
    dir: DataDir,
}

/// Where the hub's data lives: a temp dir the [`TestHub`] owns, or a dir the test owns (so it
/// outlives a hub the test kills).
enum DataDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(dir) => dir.path(),
            DataDir::Given(path) => path,
        }
    }
}

/// The two SAS keys (base64) of a device registered with [`TestHub::add_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The primary key.
    pub primary: String,
    /// The secondary key.
    pub secondary: String,
}

impl DeviceKeys {
    /// The keys [`TestHub::add_device`] gives `id`: fixed per id, so a test (or a restarted hub's
    /// devices) can derive them again.
    pub fn for_device(id: &str) -> DeviceKeys {
        DeviceKeys {
            primary: protocol::sas::encode_key(format!("primary key of {id} .....").as_bytes()),
            secondary: protocol::sas::encode_key(format!("secondary key of {id} ...").as_bytes()),
        }
    }
}

/// Starts a hub with the default test config: host [`HOST`], data in a fresh temp dir.
pub async fn spawn_hub() -> TestHub {
    spawn_hub_with(|_| {}).await
}

/// Starts a hub whose config `tweak` adjusts first (the data dir is already a fresh temp dir).
pub async fn spawn_hub_with(tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
    let dir = tempfile::tempdir().expect("a temp dir for the hub's data");
    let mut cfg = HubConfig::new(dir.path(), HOST);
    tweak(&mut cfg);
    TestHub::start(cfg, DataDir::Temp(dir)).await
}

/// Starts a hub on `dir`, a data dir the test owns (for a restart after a crash the test causes
/// itself); `tweak` adjusts the config first.
pub async fn spawn_hub_in(dir: &Path, tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
    let mut cfg = HubConfig::new(dir, HOST);
    tweak(&mut cfg);
    TestHub::start(cfg, DataDir::Given(dir.to_owned())).await
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port")
}

impl TestHub {
    async fn start(cfg: HubConfig, dir: DataDir) -> TestHub {
        let listeners = HubListeners {
            mqtt: Some(bind().await),
            mqtts: Some(bind().await),
            http: Some(bind().await),
            https: Some(bind().await),
        };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(cfg.clone(), listeners, shutdown.clone())
            .await
            .expect("the hub starts on a fresh or earlier test data dir");
        let addrs = handle.addrs();
        let listening = "the hub reports each listener it was given";
        let http = addrs.http.expect(listening);
        TestHub {
            mqtt: addrs.mqtt.expect(listening),
            mqtts: addrs.mqtts.expect(listening),
            https: addrs.https.expect(listening),
            base: format!("http://{http}"),
            http,
            handle,
            client: reqwest::Client::new(),
            shutdown,
            cfg,
            dir,
        }
    }

    /// Cancels the hub and waits (at most [`DRAIN_WAIT`]) for it to drain; an owned temp dir
    /// goes with it.
    pub async fn stop(self) {
        self.drain().await;
    }

    /// Stops the hub (with the drain) and starts it again on the same data dir and config, on new
    /// ports.
    pub async fn restart(self) -> TestHub {
        let Remains { cfg, dir } = self.drain().await;
        TestHub::start(cfg, dir).await
    }

    async fn drain(self) -> Remains {
        self.shutdown.cancel();
        tokio::time::timeout(DRAIN_WAIT, self.handle.wait()).await.expect("the hub drains");
        Remains { cfg: self.cfg, dir: self.dir }
    }

    /// The hub's host name.
    pub fn host(&self) -> &str {
        self.handle.host_name()
    }

    /// The `iothubowner` key (base64).
    pub fn owner_key(&self) -> &str {
        self.handle.owner_key()
    }

    /// `HostName=..;SharedAccessKeyName=iothubowner;SharedAccessKey=..`.
    pub fn service_connection_string(&self) -> String {
        self.handle.service_connection_string()
    }

    /// The generated CA (PEM) that the TLS listeners chain to.
    pub fn ca_pem(&self) -> &str {
        self.handle.ca_pem().expect("the hub generated its TLS material (the config's default)")
    }

    /// The hub's data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Registers `id` (enabled or disabled) directly in the registry, with the keys
    /// [`DeviceKeys::for_device`] derives from the id; returns the keys.
    pub async fn add_device(&self, id: &str, enabled: bool) -> DeviceKeys {
        let DeviceKeys { primary, secondary } = DeviceKeys::for_device(id);
        let status = if enabled { "enabled" } else { "disabled" };
        let body = serde_json::json!({
            "deviceId": id,
            "status": status,
            "authentication": {
                "type": "sas",
                "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
            },
        });
        let request = DeviceRequest::parse(body.to_string().as_bytes())
            .expect("the test's device body parses");
        self.handle
            .registry()
            .create_device(&crate::device_id(id), &request)
            .await
            .expect("the test device is new");
        DeviceKeys { primary, secondary }
    }

    /// CONNECT credentials (username, password) for `id` signed with `key`, valid for an hour.
    pub fn login(&self, id: &str, key: &str) -> (String, String) {
        sas::login(self.host(), id, key)
    }

    /// A device connected over plain MQTT with CleanSession 0; panics unless CONNACK is 0.
    pub async fn connect(&self, id: &str, key: &str) -> RawClient<TcpStream> {
        let (username, password) = self.login(id, key);
        let (client, ack) = RawClient::connect(self.mqtt, id, &username, &password, false).await;
        assert_eq!(ack.code as u8, 0, "CONNACK for {id}");
        client
    }
}

/// What outlives a drained hub, for a restart.
struct Remains {
    cfg: HubConfig,
    dir: DataDir,
}
