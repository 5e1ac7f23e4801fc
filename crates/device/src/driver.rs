//! [`Driver`]: the one task per device that owns the connection, the session and running method calls.
//!
//! Loop: connect (TCP/TLS, CONNECT with a fresh SAS token) → serve until the connection drops, the SAS
//! token is due for renewal, or the client stops → back off (capped exponential with seeded jitter) →
//! reconnect. While offline it keeps accepting requests, which wait in the session.
//! Method handlers run as futures inside this task, so a device costs one task no matter how many calls.
//! It does not parse topics or pick packet ids (`session`) and has no public API besides `run`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::client::{answer_body, method_request, Command, ConnectionState, Reply, Shared};
use protocol::ids::ModuleId;
use protocol::sas;
use protocol::username::MqttUsername;

use crate::config::{decode_key, DeviceConfig};
use crate::error::{ConfigError, Error};
use crate::method::{self, MethodAnswer};
use crate::mqtt::Packet;
use crate::session::{Action, Done, Request, Session, Sub};
use crate::transport::{Connection, Credentials};

/// Most method calls running at once per device; more are answered 429 at once.
const MAX_RUNNING_METHODS: usize = 16;

/// Runs one device's connection. Obtain it from [`Client::new`](crate::Client::new).
pub struct Driver {
    cfg: DeviceConfig,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    session: Session<Reply>,
    methods: FuturesUnordered<BoxFuture<'static, (String, MethodAnswer)>>,
    rng: SmallRng,
    subscribed_bits: u8,
    close_reason: Option<Error>,
    stop_waiters: Vec<oneshot::Sender<()>>,
}

/// Why serving a connection ended.
enum Exit {
    /// Shutdown, `disconnect()` or every handle dropped.
    Stop,
    /// The SAS token is due: reconnect at once with a new one.
    Renew,
    /// The connection failed.
    Lost(Error),
}

impl Driver {
    pub(crate) fn new(
        cfg: DeviceConfig,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
    ) -> Result<Driver, ConfigError> {
        decode_key(&cfg.shared_access_key)?;
        let rng = SmallRng::seed_from_u64(cfg.rng_seed);
        Ok(Driver {
            cfg,
            shared,
            commands,
            session: Session::default(),
            methods: FuturesUnordered::new(),
            rng,
            subscribed_bits: 0,
            close_reason: None,
            stop_waiters: Vec::new(),
        })
    }

    /// Connects and keeps the device connected until `shutdown` is cancelled, `disconnect()` is
    /// called, every [`Client`](crate::Client) handle is dropped, or a fatal error occurs.
    ///
    /// # Errors
    /// The fatal error: [`Error::AuthRefused`] (unless `retry_auth_refused`) or a configuration error.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let result = self.run_loop(&shutdown).await;
        let actions = self.session.stopped();
        self.apply(actions);
        let error = result.as_ref().err().cloned();
        self.shared.state.send_replace(ConnectionState::Stopped { error });
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
        result
    }

    async fn run_loop(&mut self, shutdown: &CancellationToken) -> Result<(), Error> {
        let mut attempt: u32 = 0;
        loop {
            let connected = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                // Boxed: the TLS handshake future is large and only lives while connecting.
                connected = timeout(self.cfg.operation_timeout, Box::pin(self.open())) => connected,
            };
            let error = match connected {
                Ok(Ok(connection)) => {
                    attempt = 0;
                    match self.serve(connection, shutdown).await {
                        Exit::Stop => return Ok(()),
                        Exit::Renew => continue,
                        Exit::Lost(error) => error,
                    }
                }
                Ok(Err(error)) => self.failed_attempt(error)?,
                Err(_) => self.failed_attempt(Error::Timeout {
                    operation: "connect",
                    after: self.cfg.operation_timeout,
                })?,
            };
            let retry_in = self.cfg.backoff.delay(attempt, self.rng.gen::<f64>());
            attempt = attempt.saturating_add(1);
            debug!(device_id = %self.cfg.device_id, err = %error, ?retry_in, "reconnecting");
            self.shared.state.send_replace(ConnectionState::Reconnecting { error, retry_in });
            if !self.wait_offline(Instant::now() + retry_in, shutdown).await {
                return Ok(());
            }
        }
    }

    /// Counts a failed attempt; a refused login is fatal unless configured otherwise.
    fn failed_attempt(&mut self, error: Error) -> Result<Error, Error> {
        self.shared.counters.connect_failures.fetch_add(1, Ordering::Relaxed);
        match error {
            Error::AuthRefused { .. } | Error::Config(_) if !self.cfg.retry_auth_refused => {
                Err(error)
            }
            Error::Config(_) => Err(error),
            other => Ok(other),
        }
    }

    /// One connection attempt with a fresh SAS token.
    async fn open(&mut self) -> Result<(Connection, Instant), Error> {
        let cfg = &self.cfg;
        let module_id = cfg.module_id.as_ref().map(ModuleId::as_str);
        let resource = sas::device_resource(&cfg.host_name, cfg.device_id.as_str(), module_id);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let expiry = (now + cfg.sas_ttl).as_secs();
        let password = sas::generate(&resource, &cfg.shared_access_key, None, expiry)
            .map_err(|_| ConfigError::KeyNotBase64)?;
        let username = MqttUsername::build(
            &cfg.host_name,
            cfg.device_id.as_str(),
            module_id,
            protocol::API_VERSION,
            &cfg.client_type,
        );
        let renew_at =
            Instant::now() + self.cfg.sas_ttl.saturating_sub(self.cfg.sas_renewal_margin);
        let connection = Connection::open(&self.cfg, Credentials { username, password }).await?;
        Ok((connection, renew_at))
    }

    /// Serves one connection until it ends.
    async fn serve(
        &mut self,
        (mut connection, renew_at): (Connection, Instant),
        shutdown: &CancellationToken,
    ) -> Exit {
        self.shared.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.shared.state.send_replace(ConnectionState::Connected);
        self.subscribed_bits = 0;
        let initial = self.take_wanted();
        let mut actions = self.session.connected();
        actions.extend(initial);
        let exit = match self.flush(&mut connection, actions).await {
            Ok(()) => self.serve_loop(&mut connection, renew_at, shutdown).await,
            Err(error) => Exit::Lost(error),
        };
        let actions = self.session.disconnected();
        self.apply(actions);
        match exit {
            Exit::Lost(_) => {}
            Exit::Stop | Exit::Renew => {
                Box::pin(connection.close(self.cfg.operation_timeout)).await
            }
        }
        self.shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        exit
    }

    async fn serve_loop(
        &mut self,
        connection: &mut Connection,
        renew_at: Instant,
        shutdown: &CancellationToken,
    ) -> Exit {
        let keep_alive = self.cfg.keep_alive;
        let mut next_ping = Instant::now() + keep_alive;
        let mut ping_outstanding = false;
        loop {
            let actions = tokio::select! {
                () = shutdown.cancelled() => return Exit::Stop,
                () = sleep_until(renew_at) => {
                    self.shared.counters.sas_renewals.fetch_add(1, Ordering::Relaxed);
                    return Exit::Renew;
                }
                () = sleep_until(next_ping), if !keep_alive.is_zero() => {
                    if ping_outstanding {
                        return Exit::Lost(Error::Timeout { operation: "keep-alive", after: keep_alive });
                    }
                    ping_outstanding = true;
                    next_ping = Instant::now() + keep_alive;
                    vec![Action::Send(Packet::PingReq)]
                }
                packet = connection.read_packet() => match packet {
                    Ok(Packet::PingResp) => { ping_outstanding = false; Vec::new() }
                    Ok(packet) => self.session.packet(packet),
                    Err(error) => return Exit::Lost(error),
                },
                command = self.commands.recv() => match self.on_command(command) {
                    Some(actions) => actions,
                    None => return Exit::Stop,
                },
                () = self.shared.wake.notified() => self.take_wanted(),
                Some((rid, answer)) = self.methods.next(), if !self.methods.is_empty() => {
                    self.method_answered(rid, &answer)
                }
            };
            if let Err(error) = self.flush(connection, actions).await {
                return Exit::Lost(error);
            }
        }
    }

    /// Waits out a backoff while still taking requests (they wait in the session). False: stop.
    async fn wait_offline(&mut self, until: Instant, shutdown: &CancellationToken) -> bool {
        loop {
            let actions = tokio::select! {
                () = shutdown.cancelled() => return false,
                () = sleep_until(until) => return true,
                command = self.commands.recv() => match self.on_command(command) {
                    Some(actions) => actions,
                    None => return false,
                },
                () = self.shared.wake.notified() => self.take_wanted(),
                Some((rid, answer)) = self.methods.next(), if !self.methods.is_empty() => self.method_answered(rid, &answer),
            };
            // Offline, the session only parks requests or resolves them; it sends nothing.
            self.apply(actions);
        }
    }

    /// A command from a handle; `None` means stop.
    fn on_command(&mut self, command: Option<Command>) -> Option<Vec<Action<Reply>>> {
        match command {
            Some(Command::Request(request)) => {
                self.session.prune(oneshot::Sender::is_closed);
                Some(self.session.request(*request))
            }
            Some(Command::Disconnect(done)) => {
                self.stop_waiters.push(done);
                None
            }
            None => None,
        }
    }

    /// Subscription requests for newly wanted subscriptions.
    fn take_wanted(&mut self) -> Vec<Action<Reply>> {
        let wanted = self.shared.wanted.load(Ordering::Acquire);
        let new_bits = wanted & !self.subscribed_bits;
        self.subscribed_bits |= new_bits;
        Sub::ALL
            .into_iter()
            .filter(|sub| new_bits & (*sub as u8) != 0)
            .flat_map(|sub| self.session.request(Request::Subscribe(sub)))
            .collect()
    }

    fn method_answered(&mut self, rid: String, answer: &MethodAnswer) -> Vec<Action<Reply>> {
        self.shared.counters.methods_answered.fetch_add(1, Ordering::Relaxed);
        self.session.request(Request::MethodResponse {
            rid,
            status: answer.status,
            payload: answer_body(answer),
        })
    }

    /// Applies actions and writes the packets they produce.
    async fn flush(
        &mut self,
        connection: &mut Connection,
        actions: Vec<Action<Reply>>,
    ) -> Result<(), Error> {
        let mut pending = actions;
        while !pending.is_empty() {
            let packets = self.apply(pending);
            pending = Vec::new();
            for packet in packets {
                let write =
                    timeout(self.cfg.operation_timeout, connection.write_packet(&packet)).await;
                match write {
                    Ok(Ok(())) => {}
                    Ok(Err(Error::TooLarge { size, limit })) => {
                        pending.extend(self.too_large(&packet, size, limit));
                    }
                    Ok(Err(error)) => return Err(error),
                    Err(_) => {
                        return Err(Error::Timeout {
                            operation: "write",
                            after: self.cfg.operation_timeout,
                        })
                    }
                }
            }
        }
        match self.close_reason.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// An outgoing packet over the size limit: fail the request that produced it, keep the connection.
    fn too_large(&mut self, packet: &Packet, size: usize, limit: usize) -> Vec<Action<Reply>> {
        warn!(device_id = %self.cfg.device_id, size, limit, "dropping oversized packet");
        match packet {
            Packet::Publish(publish) => {
                self.session.rejected(publish.pkid, &publish.topic, Error::TooLarge { size, limit })
            }
            _ => Vec::new(),
        }
    }

    /// Carries out everything but sending; returns the packets to send.
    fn apply(&mut self, actions: Vec<Action<Reply>>) -> Vec<Packet> {
        let mut packets = Vec::new();
        for action in actions {
            match action {
                Action::Send(packet) => packets.push(packet),
                Action::Resolve(reply, outcome) => self.resolve(reply, outcome),
                Action::InvokeMethod { name, rid, payload } => self.invoke(name, rid, payload),
                Action::Desired(patch) => self.shared.deliver_desired(patch),
                Action::Close(error) => {
                    warn!(device_id = %self.cfg.device_id, err = %error, "closing connection: the hub broke the protocol");
                    packets.clear();
                    packets.push(Packet::Disconnect);
                    self.close_reason = Some(error);
                }
            }
        }
        packets
    }

    fn resolve(&self, reply: Reply, outcome: Result<Done, Error>) {
        if matches!(outcome, Ok(Done::Acked)) {
            self.shared.counters.telemetry_acked.fetch_add(1, Ordering::Relaxed);
        }
        let _ = reply.send(outcome);
    }

    /// Starts a handler call (or answers at once: bad body, no handler, too busy).
    fn invoke(&mut self, name: String, rid: String, payload: Result<Value, String>) {
        let immediate = |answer: MethodAnswer| -> BoxFuture<'static, (String, MethodAnswer)> {
            let rid = rid.clone();
            Box::pin(async move { (rid, answer) })
        };
        let future = match (payload, self.shared.handler_for(&name)) {
            (Err(reason), _) => immediate(method::invalid_request_answer(&reason)),
            (Ok(_), None) => immediate(method::no_handler_answer(&name)),
            (Ok(_), Some(_)) if self.methods.len() >= MAX_RUNNING_METHODS => {
                immediate(method::busy_answer())
            }
            (Ok(payload), Some(handler)) => {
                let call =
                    AssertUnwindSafe(handler(method_request(name.clone(), rid.clone(), payload)))
                        .catch_unwind();
                let rid = rid.clone();
                Box::pin(async move {
                    let answer =
                        call.await.unwrap_or_else(|_| method::handler_panicked_answer(&name));
                    (rid, answer)
                })
            }
        };
        self.methods.push(future);
    }
}
