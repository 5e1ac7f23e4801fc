//! The embedded rumqttd broker that carries the back-end event stream (the only module that
//! names rumqttd).
//!
//! [`start`] runs rumqttd 0.20 in three pieces, each configured here explicitly:
//! - the router (`rumqttd::Router`, its own thread): keeps a commit log per subscription filter,
//!   `max_segment_size` × `max_segment_count` bytes each, so a slow subscriber skips ahead instead
//!   of holding anything up;
//! - the MQTT 3.1.1 listener (`rumqttd::Server`) on a dedicated thread with its own single-threaded
//!   runtime, so shutdown stops the accept loop and every subscriber connection by dropping that
//!   runtime; CONNECT is authenticated by [`authorize`] (username = policy name, password = a
//!   service SAS token of that policy; device tokens are refused);
//! - the publisher: a dedicated thread that drains the hub's [`EventQueue`] and pushes each batch
//!   through a rumqttd local link (`hub-events`) with one router notification per batch.
//!
//! Known limits: the router thread cannot be stopped (rumqttd has no API for it, upstream #771),
//! so after shutdown it stays parked with its state until the process exits; and rumqttd binds
//! its own listening socket from an address, so a port-0 address is resolved here by picking a
//! free port first (bind, read, release), which is racy against other processes on the machine.
//! rumqttd also keeps router state for every distinct topic name it has routed and never frees
//! it; [`crate::events`] keeps the topic set bounded by device ids and job ids.
//! Deliberately absent: TLS, WebSockets, MQTT 5, retained events and per-topic permissions
//! (any holder of a service policy key may subscribe to everything).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use bytes::Bytes;
use protocol::sas::SasToken;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Packet, Publish};
use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ServiceAuth;
use crate::events::{EncodedEvent, EventQueue, Events, EventsConfig};

/// Default address of the event listener.
pub const DEFAULT_EVENTS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1884);
/// The local link's client id.
const LINK_CLIENT_ID: &str = "hub-events";
/// How long [`start`] waits for rumqttd to bind its listener.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the publisher checks for shutdown when no events arrive.
const PUBLISHER_POLL: Duration = Duration::from_millis(50);

/// Settings of the event broker (all explicit: rumqttd's defaults refuse every connection).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where subscribers connect; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Most simultaneous connections, subscribers plus the hub's local link.
    pub max_connections: usize,
    /// Largest packet a subscriber may send (CONNECT, SUBSCRIBE); does not limit events.
    pub max_payload_size: usize,
    /// Most unacknowledged QoS 1 deliveries per subscriber.
    pub max_inflight_count: usize,
    /// Bytes per commit-log segment of one subscription filter.
    pub max_segment_size: usize,
    /// Segments kept per subscription filter; a subscriber further behind skips ahead.
    pub max_segment_count: usize,
    /// Most events handed to one subscriber connection per router pass.
    pub max_outgoing_packet_count: u64,
    /// How long a new connection may take to send CONNECT.
    pub connection_timeout: Duration,
    /// Pause after each accepted connection (rate limit of connects).
    pub next_connection_delay: Duration,
    /// Queue and rate-limit settings of the stream itself.
    pub events: EventsConfig,
}

/// A running event broker.
#[derive(Debug, Clone)]
pub struct EventBroker {
    addr: SocketAddr,
    events: Events,
}

/// Why the event broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A setting is out of range.
    #[error("invalid event broker setting: {0}")]
    Config(&'static str),
    /// The listen address is unusable (in use, not local, no permission).
    #[error("cannot listen for events on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rumqttd stopped, or did not bind, before it was listening.
    #[error("the event listener on {addr} did not start: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What rumqttd reported.
        reason: String,
    },
    /// The router refused the hub's local link.
    #[error("the event broker refused the hub's link: {0}")]
    Link(String),
    /// A broker thread could not be started.
    #[error("cannot start an event broker thread: {0}")]
    Thread(std::io::Error),
}

impl BrokerConfig {
    /// Defaults sized for a handful of back-end subscribers, listening on `addr`.
    pub fn new(addr: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            addr,
            max_connections: 64,
            max_payload_size: 16 * 1024,
            max_inflight_count: 256,
            max_segment_size: 1024 * 1024,
            max_segment_count: 16,
            max_outgoing_packet_count: 1024,
            connection_timeout: Duration::from_secs(5),
            next_connection_delay: Duration::from_millis(1),
            events: EventsConfig::default(),
        }
    }

    fn validate(&self) -> Result<(), BrokerError> {
        if self.max_connections < 2 {
            return Err(BrokerError::Config("max_connections must leave room for subscribers"));
        }
        if self.max_payload_size < 1024 {
            return Err(BrokerError::Config(
                "max_payload_size must fit a CONNECT with a SAS token",
            ));
        }
        if self.max_segment_size == 0 || self.max_segment_count == 0 {
            return Err(BrokerError::Config("segments must have a size and a count"));
        }
        if self.max_inflight_count == 0 || self.max_outgoing_packet_count == 0 {
            return Err(BrokerError::Config("inflight and outgoing counts must not be zero"));
        }
        if u16::try_from(self.connection_timeout.as_millis()).is_err() {
            return Err(BrokerError::Config("connection_timeout must be under 65 seconds"));
        }
        Ok(())
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::new(DEFAULT_EVENTS_ADDR)
    }
}

impl EventBroker {
    /// Where subscribers connect (the resolved port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handle the hub publishes through.
    pub fn events(&self) -> &Events {
        &self.events
    }
}

/// Starts the broker and returns once it is listening. Runs until `shutdown` is cancelled; the
/// listener and publisher threads are awaited by a task registered on `tasks`.
///
/// # Errors
/// [`BrokerError`] for a bad setting, an unusable address, or a broker that did not come up.
pub async fn start(
    cfg: BrokerConfig,
    auth: ServiceAuth,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<EventBroker, BrokerError> {
    cfg.validate()?;
    let addr = resolve_addr(cfg.addr)?;
    let router_tx = rumqttd::Router::new(0, router_config(&cfg)).spawn();
    let (events, queue) = Events::channel(&cfg.events, &auth.host_name);

    let (link_ready_tx, link_ready) = oneshot::channel();
    let (publisher_done_tx, publisher_done) = oneshot::channel::<()>();
    let link_router = router_tx.clone();
    let publisher_shutdown = shutdown.clone();
    spawn_thread("hub-events-publisher", move || {
        let link = rumqttd::local::LinkBuilder::new(LINK_CLIENT_ID, link_router).build();
        match link {
            Ok((link_tx, link_rx, _ack)) => {
                let _ = link_ready_tx.send(Ok(()));
                run_publisher(queue, link_tx, link_rx, &publisher_shutdown);
            }
            Err(err) => {
                let _ = link_ready_tx.send(Err(err.to_string()));
            }
        }
        drop(publisher_done_tx);
    })?;
    link_ready
        .await
        .map_err(|_| BrokerError::Link("the publisher thread ended".to_owned()))?
        .map_err(BrokerError::Link)?;

    let server = rumqttd::Server::new(server_settings(&cfg, addr, auth), router_tx, V4);
    let (server_done_tx, mut server_done) = oneshot::channel();
    let server_shutdown = shutdown.clone();
    spawn_thread("hub-events-listener", move || {
        let outcome = run_listener(server, &server_shutdown);
        let _ = server_done_tx.send(outcome);
    })?;
    if let Err(err) = wait_listening(addr, &mut server_done).await {
        shutdown.cancel();
        return Err(err);
    }

    tasks.spawn(async move {
        let _ = publisher_done.await;
        let _ = server_done.await;
        tracing::info!(%addr, "event broker stopped (its router thread stays parked, rumqttd #771)");
    });
    tracing::info!(%addr, max_connections = cfg.max_connections, "event broker listening");
    Ok(EventBroker { addr, events })
}

/// Whether a subscriber may connect: `username` must be the token's policy (`skn`) and the token a
/// valid, unexpired service token of that policy for this hub. Device tokens have no `skn`.
pub fn authorize(auth: &ServiceAuth, username: &str, password: &str, now: u64) -> bool {
    let Ok(token) = SasToken::parse(password) else {
        tracing::debug!(username, "event subscriber refused: the password is not a SAS token");
        return false;
    };
    if token.key_name.as_deref() != Some(username) {
        tracing::debug!(username, "event subscriber refused: username is not the token's policy");
        return false;
    }
    match auth.check(Some(password), now) {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(username, err = %err, "event subscriber refused");
            false
        }
    }
}

/// Port 0 becomes a free port; any other address is checked to be bindable now.
fn resolve_addr(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    let listener =
        StdTcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    listener.local_addr().map_err(|source| BrokerError::Bind { addr, source })
}

fn router_config(cfg: &BrokerConfig) -> RouterConfig {
    RouterConfig {
        max_connections: cfg.max_connections,
        max_outgoing_packet_count: cfg.max_outgoing_packet_count,
        max_segment_size: cfg.max_segment_size,
        max_segment_count: cfg.max_segment_count,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

fn server_settings(cfg: &BrokerConfig, addr: SocketAddr, auth: ServiceAuth) -> ServerSettings {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(cfg.connection_timeout.as_millis())
            .unwrap_or(u16::MAX),
        max_payload_size: cfg.max_payload_size,
        max_inflight_count: cfg.max_inflight_count,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |_client_id, username: String, password: String| {
        let now = chrono::Utc::now().timestamp().max(0).unsigned_abs();
        std::future::ready(authorize(&auth, &username, &password, now))
    });
    ServerSettings {
        name: "hub-events".to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: u64::try_from(cfg.next_connection_delay.as_millis())
            .unwrap_or(u64::MAX),
        connections,
    }
}

/// Runs rumqttd's accept loop on this thread until `shutdown`; dropping the runtime afterwards
/// ends every subscriber connection. Returns what stopped it early, if anything.
fn run_listener(
    mut server: rumqttd::Server<V4>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("runtime: {err}"))?;
    runtime.block_on(async {
        tokio::select! {
            res = server.start(rumqttd::LinkType::Remote) => res.map_err(|err| err.to_string()),
            () = shutdown.cancelled() => Ok(()),
        }
    })
}

/// Drains the queue into the local link until `shutdown`, then publishes what is left.
fn run_publisher(
    mut queue: EventQueue,
    mut link: LinkTx,
    _link_rx: LinkRx,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let batch = queue.next_batch(PUBLISHER_POLL);
        publish_batch(&mut link, &queue, batch);
    }
    let rest = queue.drain_now();
    publish_batch(&mut link, &queue, rest);
}

/// Appends a batch to the link's buffer and wakes the router once. Blocks only this thread,
/// and only while the router's inbox is full.
fn publish_batch(link: &mut LinkTx, queue: &EventQueue, batch: Vec<EncodedEvent>) {
    let n_events = batch.len();
    let mut batch = batch.into_iter();
    let Some(last) = batch.next_back() else { return };
    {
        let mut buffer = link.buffer();
        for event in batch {
            let publish = Publish::new(Bytes::from(event.topic), Bytes::from(event.payload), false);
            buffer.push_back(Packet::Publish(publish, None));
        }
    }
    match link.publish(Bytes::from(last.topic), Bytes::from(last.payload)) {
        Ok(_) => queue.record_published(n_events, true),
        Err(err) => {
            tracing::warn!(err = %err, n_events, "the event router refused a batch");
            queue.record_published(n_events, false);
        }
    }
}

/// Polls until `addr` has a listener (rumqttd binds it itself), the listener thread reports an
/// error, or [`LISTEN_TIMEOUT`] passes.
async fn wait_listening(
    addr: SocketAddr,
    server_done: &mut oneshot::Receiver<Result<(), String>>,
) -> Result<(), BrokerError> {
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        if is_listening(addr) {
            return Ok(());
        }
        match server_done.try_recv() {
            Ok(outcome) => {
                let reason = outcome.err().unwrap_or_else(|| "stopped".to_owned());
                return Err(BrokerError::Listen { addr, reason });
            }
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(BrokerError::Listen { addr, reason: "thread ended".to_owned() });
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        if Instant::now() >= deadline {
            return Err(BrokerError::Listen { addr, reason: "not listening in time".to_owned() });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether something listens on `addr`: a socket with SO_REUSEADDR can bind an address that has
/// no listener (without disturbing a concurrent bind by rumqttd, which also sets it), and cannot
/// bind one that has.
fn is_listening(addr: SocketAddr) -> bool {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let Ok(socket) = socket else { return false };
    if socket.set_reuseaddr(true).is_err() {
        return false;
    }
    matches!(socket.bind(addr), Err(err) if err.kind() == std::io::ErrorKind::AddrInUse)
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), BrokerError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(BrokerError::Thread)
}
