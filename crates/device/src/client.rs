//! [`Client`]: the cheap, cloneable handle applications use; [`Driver`] is the task that owns the connection.
//!
//! `Client::spawn` starts the driver on a `TaskTracker`; `Client::new` hands the [`Driver`] back for
//! callers that run it themselves (`driver.run(shutdown)`). The handle talks to the driver over a small
//! bounded channel; method handlers and the desired-patch sender live in a short mutex the driver reads.
//! The driver reconnects on its own; [`Client::state`] shows where it is and [`Client::stats`] counts.
//! This module does not parse topics or track packet ids (`session` does) and does not touch sockets
//! (`transport` does).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::ids::{DeviceId, ModuleId};
use protocol::property_bag::PropertyBag;
use protocol::topic::DevicePublish;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DeviceConfig;
use crate::driver::Driver;
use crate::error::{ConfigError, Error};
use crate::method::{MethodAnswer, MethodHandler, MethodRequest};
use crate::session::{Done, Request, Sub};
use crate::twin::{DesiredPatch, TwinView};

/// Capacity of the handle → driver channel; when full, callers wait (bounded by the operation timeout).
const COMMAND_CAPACITY: usize = 8;
/// Capacity of the desired-patch channel; when full, further patches are dropped and counted
/// (`ClientStats::desired_dropped`) rather than stalling the connection.
const DESIRED_CAPACITY: usize = 16;

/// A handle to one device connection. Cloning is cheap; all clones drive the same connection.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    /// The first connection attempt is running.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// The connection dropped or an attempt failed; the driver retries after `retry_in`.
    Reconnecting {
        /// Why the last connection or attempt ended.
        error: Error,
        /// The backoff before the next attempt.
        retry_in: std::time::Duration,
    },
    /// The driver has stopped (shutdown, `disconnect()`, or a fatal error such as auth refused).
    Stopped {
        /// The fatal error, if that is why it stopped.
        error: Option<Error>,
    },
}

/// A snapshot of the client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful connections (CONNACK 0), including reconnects.
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Established connections that were lost or closed for renewal.
    pub disconnects: u64,
    /// SAS renewals (planned reconnects).
    pub sas_renewals: u64,
    /// Telemetry messages acknowledged by the hub.
    pub telemetry_acked: u64,
    /// Direct-method calls answered.
    pub methods_answered: u64,
    /// Desired patches delivered to the application.
    pub desired_delivered: u64,
    /// Desired patches dropped because the application's receiver was full or gone.
    pub desired_dropped: u64,
}

/// A telemetry message: payload plus system and application properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    /// The body.
    pub payload: Bytes,
    /// `$.mid`.
    pub message_id: Option<String>,
    /// `$.ct`, e.g. `application/json`.
    pub content_type: Option<String>,
    /// `$.ce`, e.g. `utf-8`.
    pub content_encoding: Option<String>,
    /// Application properties, in order.
    pub properties: Vec<(String, String)>,
}

/// Desired-property patches from the hub, in order. Also a `futures::Stream`.
#[derive(Debug)]
pub struct DesiredPatches {
    rx: mpsc::Receiver<Box<DesiredPatch>>,
}

/// State shared by the handle and the driver. Locks are short and never held across `.await`.
pub(crate) struct Shared {
    pub(crate) device_id: DeviceId,
    pub(crate) module_id: Option<ModuleId>,
    pub(crate) operation_timeout: std::time::Duration,
    pub(crate) handlers: Mutex<Handlers>,
    pub(crate) desired_tx: Mutex<Option<mpsc::Sender<Box<DesiredPatch>>>>,
    /// Bits of `Sub` the application needs; the driver subscribes when woken.
    pub(crate) wanted: AtomicU8,
    pub(crate) wake: Notify,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) counters: Counters,
}

/// Method handlers by name plus the default.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) by_name: HashMap<String, MethodHandler>,
    pub(crate) default: Option<MethodHandler>,
}

/// The live counters behind [`ClientStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) sas_renewals: AtomicU64,
    pub(crate) telemetry_acked: AtomicU64,
    pub(crate) methods_answered: AtomicU64,
    pub(crate) desired_delivered: AtomicU64,
    pub(crate) desired_dropped: AtomicU64,
}

/// A reply handle for one request.
pub(crate) type Reply = oneshot::Sender<Result<Done, Error>>;

/// What the handle asks of the driver. Boxed so the channel's preallocated block of slots stays small
/// (tokio allocates 32 slots per channel up front; ten thousand channels add up).
pub(crate) enum Command {
    Request(Box<Request<Reply>>),
    Disconnect(oneshot::Sender<()>),
}

impl Client {
    /// Builds a client and its driver without starting anything; run the driver with
    /// [`Driver::run`]. Use this to put the driver on your own `JoinSet`.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is invalid.
    pub fn new(cfg: DeviceConfig) -> Result<(Client, Driver), ConfigError> {
        cfg.validate()?;
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let shared = Arc::new(Shared {
            device_id: cfg.device_id.clone(),
            module_id: cfg.module_id.clone(),
            operation_timeout: cfg.operation_timeout,
            handlers: Mutex::new(Handlers::default()),
            desired_tx: Mutex::new(None),
            wanted: AtomicU8::new(0),
            wake: Notify::new(),
            state: watch::Sender::new(ConnectionState::Connecting),
            counters: Counters::default(),
        });
        let driver = Driver::new(cfg, shared.clone(), command_rx)?;
        Ok((Client { shared, commands }, driver))
    }

    /// Starts the driver on `tracker`; it connects, reconnects and runs until `shutdown` is cancelled,
    /// [`Client::disconnect`] is called, every handle is dropped, or a fatal error stops it.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is invalid.
    pub fn spawn(
        cfg: DeviceConfig,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Client, ConfigError> {
        let (client, driver) = Client::new(cfg)?;
        tracker.spawn(async move {
            // The outcome is visible through `Client::state`; nothing else waits for it.
            let _ = driver.run(shutdown).await;
        });
        Ok(client)
    }

    /// Like [`Client::spawn`], then waits for the first connection attempt: `Ok` once connected;
    /// otherwise the driver is stopped and the attempt's error returned.
    ///
    /// # Errors
    /// [`Error::AuthRefused`], [`Error::Network`], [`Error::Tls`], [`Error::Timeout`], ...
    pub async fn connect(
        cfg: DeviceConfig,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Client, Error> {
        let stop = shutdown.child_token();
        let client = Client::spawn(cfg, tracker, stop.clone())?;
        let mut state = client.state();
        let outcome = state
            .wait_for(|state| !matches!(state, ConnectionState::Connecting))
            .await
            .map(|state| state.clone())
            .unwrap_or(ConnectionState::Stopped { error: None });
        match outcome {
            ConnectionState::Connected => Ok(client),
            ConnectionState::Reconnecting { error, .. }
            | ConnectionState::Stopped { error: Some(error) } => {
                stop.cancel();
                Err(error)
            }
            ConnectionState::Stopped { error: None } | ConnectionState::Connecting => {
                Err(Error::Stopped)
            }
        }
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.shared.device_id
    }

    /// Registers `handler` for direct method `name` (replacing any previous one) and subscribes to
    /// `$iothub/methods/POST/#` if not yet subscribed. Build the handler with [`crate::handler`].
    pub fn on_method(&self, name: impl Into<String>, handler: MethodHandler) {
        self.shared.handlers.lock().by_name.insert(name.into(), handler);
        self.want(Sub::Methods);
    }

    /// Registers the handler for methods without a named handler. Without one, such calls get
    /// status 404 and `{"message":"no handler for method .."}`.
    pub fn on_default_method(&self, handler: MethodHandler) {
        self.shared.handlers.lock().default = Some(handler);
        self.want(Sub::Methods);
    }

    /// Subscribes to desired-property patches and returns their receiver. Calling it again replaces
    /// the previous receiver (which then ends). After a reconnect the client GETs the twin and, if the
    /// desired version moved while offline, delivers the whole desired section with `full: true`.
    pub fn desired_patches(&self) -> DesiredPatches {
        let (tx, rx) = mpsc::channel(DESIRED_CAPACITY);
        *self.shared.desired_tx.lock() = Some(tx);
        self.want(Sub::Desired);
        DesiredPatches { rx }
    }

    /// Gets the twin (`$iothub/twin/GET`), subscribing to twin responses first if needed.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Hub`] (status ≥ 300), [`Error::ConnectionLost`], [`Error::Protocol`], [`Error::Stopped`].
    pub async fn get_twin(&self) -> Result<TwinView, Error> {
        match self.call("twin get", |reply| Request::TwinGet { reply }).await? {
            Done::Twin(view) => Ok(view),
            other => Err(Error::Protocol(format!("unexpected twin get outcome {other:?}"))),
        }
    }

    /// Patches reported properties (merge; `null` deletes) and returns the new reported version from
    /// the hub's `204 .. $version=`.
    ///
    /// # Errors
    /// [`Error::InvalidPayload`] when `patch` is not a JSON object; otherwise as [`Client::get_twin`].
    pub async fn patch_reported(&self, patch: &Value) -> Result<u64, Error> {
        if !patch.is_object() {
            return Err(Error::InvalidPayload("a reported patch must be a json object".to_owned()));
        }
        let body = Bytes::from(patch.to_string());
        match self.call("reported patch", |reply| Request::ReportedPatch { body, reply }).await? {
            Done::Version(version) => Ok(version),
            other => Err(Error::Protocol(format!("unexpected reported patch outcome {other:?}"))),
        }
    }

    /// Sends telemetry at QoS 1 and waits for the PUBACK. While disconnected, the message waits for
    /// the next connection (up to the operation timeout).
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::ConnectionLost`], [`Error::TooLarge`], [`Error::Busy`], [`Error::Stopped`].
    pub async fn send_telemetry(&self, message: Telemetry) -> Result<(), Error> {
        let topic = DevicePublish::Telemetry {
            device_id: self.shared.device_id.to_string(),
            module_id: self.shared.module_id.as_ref().map(ToString::to_string),
            properties: message.bag(),
        }
        .to_topic();
        let payload = message.payload;
        self.call("telemetry", |reply| Request::Telemetry { topic, payload, reply })
            .await
            .map(|_| ())
    }

    /// Sends MQTT DISCONNECT, closes the connection and stops the driver. Pending requests fail
    /// with [`Error::Stopped`]. Returns once the driver has stopped (or at once if it already had).
    pub async fn disconnect(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Disconnect(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// A watch of the connection state.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        matches!(*self.shared.state.borrow(), ConnectionState::Connected)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClientStats {
            connects: load(&counters.connects),
            connect_failures: load(&counters.connect_failures),
            disconnects: load(&counters.disconnects),
            sas_renewals: load(&counters.sas_renewals),
            telemetry_acked: load(&counters.telemetry_acked),
            methods_answered: load(&counters.methods_answered),
            desired_delivered: load(&counters.desired_delivered),
            desired_dropped: load(&counters.desired_dropped),
        }
    }

    fn want(&self, sub: Sub) {
        self.shared.wanted.fetch_or(sub as u8, Ordering::AcqRel);
        self.shared.wake.notify_one();
    }

    async fn call(
        &self,
        operation: &'static str,
        build: impl FnOnce(Reply) -> Request<Reply>,
    ) -> Result<Done, Error> {
        let after = self.shared.operation_timeout;
        let (reply, outcome) = oneshot::channel();
        let attempt = async {
            self.commands
                .send(Command::Request(Box::new(build(reply))))
                .await
                .map_err(|_| Error::Stopped)?;
            outcome.await.map_err(|_| Error::Stopped)?
        };
        tokio::time::timeout(after, attempt)
            .await
            .map_err(|_| Error::Timeout { operation, after })?
    }
}

impl Telemetry {
    /// A message with `payload` and no properties.
    pub fn new(payload: impl Into<Bytes>) -> Telemetry {
        Telemetry { payload: payload.into(), ..Telemetry::default() }
    }

    /// A JSON message (`$.ct=application/json`, `$.ce=utf-8`).
    pub fn json(value: &Value) -> Telemetry {
        Telemetry {
            payload: Bytes::from(value.to_string()),
            content_type: Some("application/json".to_owned()),
            content_encoding: Some("utf-8".to_owned()),
            ..Telemetry::default()
        }
    }

    /// Adds an application property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Telemetry {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The property bag: system properties first (`$.mid`, `$.ct`, `$.ce`), then application ones.
    fn bag(&self) -> PropertyBag {
        let system = [
            ("$.mid", &self.message_id),
            ("$.ct", &self.content_type),
            ("$.ce", &self.content_encoding),
        ];
        let mut bag = PropertyBag::new();
        for (key, value) in system {
            if let Some(value) = value {
                bag.push(key, Some(value.clone()));
            }
        }
        for (key, value) in &self.properties {
            bag.push(key.clone(), Some(value.clone()));
        }
        bag
    }
}

impl DesiredPatches {
    /// The next patch; `None` once the client has stopped or the receiver was replaced.
    pub async fn recv(&mut self) -> Option<DesiredPatch> {
        self.rx.recv().await.map(|patch| *patch)
    }
}

impl futures::Stream for DesiredPatches {
    type Item = DesiredPatch;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DesiredPatch>> {
        self.rx.poll_recv(cx).map(|patch| patch.map(|patch| *patch))
    }
}

impl Shared {
    /// Finds the handler for `name`: the named one, else the default.
    pub(crate) fn handler_for(&self, name: &str) -> Option<MethodHandler> {
        let handlers = self.handlers.lock();
        handlers.by_name.get(name).or(handlers.default.as_ref()).cloned()
    }

    /// Hands a patch to the application without waiting; counts a drop when the receiver is full or gone.
    pub(crate) fn deliver_desired(&self, patch: DesiredPatch) {
        let sent =
            self.desired_tx.lock().as_ref().is_some_and(|tx| tx.try_send(Box::new(patch)).is_ok());
        let counter =
            if sent { &self.counters.desired_delivered } else { &self.counters.desired_dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Builds the method request the handler sees.
pub(crate) fn method_request(name: String, rid: String, payload: Value) -> MethodRequest {
    MethodRequest { name, rid, payload }
}

/// Serializes a handler's answer payload.
pub(crate) fn answer_body(answer: &MethodAnswer) -> Bytes {
    Bytes::from(answer.payload.to_string())
}
