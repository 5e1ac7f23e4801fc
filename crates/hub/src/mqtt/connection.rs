//! One device connection's task: CONNECT and authentication, then a single loop that reads packets,
//! answers twin requests, completes method calls, and writes what the hub queued for the device.
//!
//! A single task owns the socket (no split halves, no per-connection channel): it waits on the
//! socket, on its outbox notification, on one timer (keep-alive and token expiry) and on shutdown.
//! Everything a connection does wrong ends that connection only ([`Ended`]); it never panics the
//! hub. This module does not decide which topics are allowed (`routing`) or how calls wait (`methods`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use protocol::error::{ErrorCode, MqttErrorBody};
use protocol::ids::DeviceId;
use protocol::property_bag::PropertyBag;
use protocol::topic::HubPublish;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
};
use rumqttc::mqttbytes::v4::{SubscribeReasonCode, UnsubAck, Unsubscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::{self, Authenticated};
use super::io::{PacketIo, ReadError};
use super::routing::{self, Route, Violation, MAX_SUBSCRIPTIONS};
use super::session::{CloseReason, ConnHandle, DeviceSlot, FilterKind, MethodReply, Outbound};
use super::{Shared, Telemetry};
use crate::registry::ConnectionChange;

/// Time allowed from accept (including the TLS handshake) to a complete CONNECT.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet before authentication (a CONNECT with a long username and token fits easily).
const MAX_CONNECT_BYTES: usize = 16 * 1024;
/// Largest packet after authentication: a 256 KB telemetry message plus its topic.
const MAX_PACKET_BYTES: usize = 256 * 1024 + 4 * 1024;
/// How long a write may block before the peer is considered gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// IoT Hub's cap on the server-side keep-alive timeout.
const MAX_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1767);
/// `lastActivityTime` is recorded at most this often per connection.
const ACTIVITY_RECORD_INTERVAL: Duration = Duration::from_secs(1);
/// Largest drain buffer kept between outbox drains.
const KEEP_DRAIN_CAPACITY: usize = 4;
/// A timer deadline that never fires in practice.
const FAR_AWAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("peer sent DISCONNECT")]
    PeerDisconnect,
    #[error("keep-alive timeout")]
    KeepAlive,
    #[error("sas token expired")]
    TokenExpired,
    #[error("replaced by a new connection with the same client id")]
    Replaced,
    #[error("device evicted by the hub")]
    Evicted,
    #[error("hub shutting down")]
    Shutdown,
    #[error("protocol violation: {0}")]
    Violation(Violation),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
}

/// An authenticated connection's state (the task's own; nothing here is shared).
struct Session<'a> {
    shared: &'a Shared,
    device: DeviceId,
    slot: Arc<DeviceSlot>,
    conn: Arc<ConnHandle>,
    next_pkid: u16,
    keep_alive_timeout: Option<Duration>,
    token_expiry: Instant,
    last_read: Instant,
    activity_recorded: Instant,
    outgoing: Vec<Outbound>,
}

/// Runs one connection from its first byte to its close.
pub(crate) async fn run<S>(stream: S, shared: Arc<Shared>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = PacketIo::new(stream, MAX_CONNECT_BYTES);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, io.read_connect()).await {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(_)) => return note_violation(&shared, "first packet is not CONNECT"),
        Ok(Err(err @ (ReadError::Malformed(_) | ReadError::NotConnect(_)))) => {
            return note_violation(&shared, &err.to_string())
        }
        Ok(Err(_)) | Err(_) => return,
    };
    let auth = match auth::authenticate(
        &connect,
        &shared.cfg.host_name,
        &shared.registry,
        Utc::now(),
    ) {
        Ok(auth) => auth,
        Err(refusal) => {
            shared.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client_id = %connect.client_id, reason = %refusal, "connection refused");
            io.queue(&Packet::ConnAck(ConnAck::new(refusal.return_code(), false)));
            let _ = io.flush(WRITE_TIMEOUT).await;
            io.shutdown(WRITE_TIMEOUT).await;
            return;
        }
    };
    let span = tracing::debug_span!("mqtt_connection", device_id = %auth.device);
    run_authenticated(io, &shared, auth, connect.keep_alive, connect.clean_session, shutdown)
        .instrument(span)
        .await;
}

async fn run_authenticated<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: PacketIo<S>,
    shared: &Shared,
    auth: Authenticated,
    keep_alive_secs: u16,
    clean_session: bool,
    shutdown: CancellationToken,
) {
    shared.counters.connections_accepted.fetch_add(1, Ordering::Relaxed);
    io.set_max_incoming(MAX_PACKET_BYTES);
    let mut session = Session::attach(shared, auth, keep_alive_secs);
    let (replaced, session_present) = session.slot.attach(session.conn.clone(), clean_session);
    match replaced {
        Some(old) => {
            tracing::debug!("closing the previous connection of this device (400027)");
            old.close(CloseReason::Replaced);
        }
        None => {
            shared.connected.fetch_add(1, Ordering::Relaxed);
        }
    }
    // A device evicted between our lookup and attach must not linger in an orphaned slot.
    if !shared.table.get(&session.device).is_some_and(|slot| Arc::ptr_eq(&slot, &session.slot)) {
        session.conn.close(CloseReason::Evicted);
    }
    shared.registry.record_connection(&session.device, ConnectionChange::Connected, Utc::now());
    io.queue(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, session_present)));
    let ended = match io.flush(WRITE_TIMEOUT).await {
        Ok(()) => session.serve(&mut io, &shutdown).await,
        Err(err) => Ended::Io(err),
    };
    match &ended {
        Ended::Violation(violation) => {
            shared.counters.protocol_violations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device_id = %session.device, reason = %violation, "closing connection");
        }
        other => tracing::debug!(reason = %other, "connection ended"),
    }
    session.conn.close(CloseReason::Evicted);
    if session.slot.detach(&session.conn) {
        shared.connected.fetch_sub(1, Ordering::Relaxed);
        shared.registry.record_connection(
            &session.device,
            ConnectionChange::Disconnected,
            Utc::now(),
        );
    }
    io.shutdown(Duration::from_secs(1)).await;
}

fn note_violation(shared: &Shared, reason: &str) {
    shared.counters.protocol_violations.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(reason, "closing connection before CONNECT");
}

impl<'a> Session<'a> {
    fn attach(shared: &'a Shared, auth: Authenticated, keep_alive_secs: u16) -> Self {
        let now = Instant::now();
        let keep_alive_timeout = (keep_alive_secs > 0).then(|| {
            Duration::from_millis(u64::from(keep_alive_secs) * 1500).min(MAX_KEEP_ALIVE_TIMEOUT)
        });
        let now_secs = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let token_expiry =
            now + Duration::from_secs(auth.token_expiry.saturating_sub(now_secs)).min(FAR_AWAY);
        Session {
            shared,
            slot: shared.table.get_or_insert(&auth.device),
            device: auth.device,
            conn: Arc::new(ConnHandle::default()),
            next_pkid: 0,
            keep_alive_timeout,
            token_expiry,
            last_read: now,
            activity_recorded: now,
            outgoing: Vec::new(),
        }
    }

    /// The read/write loop of an authenticated connection.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut PacketIo<S>,
        shutdown: &CancellationToken,
    ) -> Ended {
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            if let Err(ended) = self.handle_buffered(io).await {
                let _ = io.flush(WRITE_TIMEOUT).await;
                return ended;
            }
            if io.has_pending_writes() {
                if let Err(err) = io.flush(WRITE_TIMEOUT).await {
                    return Ended::Io(err);
                }
            }
            // Unbiased: a device flooding telemetry must not starve its outbox, nor the reverse.
            tokio::select! {
                () = shutdown.cancelled() => return Ended::Shutdown,
                () = self.conn.wake.notified() => {
                    if let Some(reason) = self.drain_outbox(io) {
                        let _ = io.flush(WRITE_TIMEOUT).await;
                        return reason;
                    }
                }
                read = io.fill() => match read {
                    Ok(()) => self.note_read(),
                    Err(ReadError::Closed) => return Ended::PeerClosed,
                    Err(ReadError::Io(err)) => return Ended::Io(err),
                    Err(err @ (ReadError::Malformed(_) | ReadError::NotConnect(_))) => {
                        return Ended::Violation(Violation::Malformed(err.to_string()))
                    }
                },
                () = &mut timer => {
                    if let Some(ended) = self.check_deadlines() {
                        return ended;
                    }
                    timer.as_mut().reset(self.next_deadline());
                }
            }
        }
    }

    /// Handles every complete packet in the read buffer.
    async fn handle_buffered<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut PacketIo<S>,
    ) -> Result<(), Ended> {
        loop {
            let packet = match io.next_buffered() {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(err) => return Err(Ended::Violation(Violation::Malformed(err.to_string()))),
            };
            self.handle_packet(packet, io).await?;
        }
    }

    async fn handle_packet<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        packet: Packet,
        io: &mut PacketIo<S>,
    ) -> Result<(), Ended> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, io).await,
            // Our QoS 1 deliveries are not retransmitted, so an acknowledgement needs no bookkeeping.
            Packet::PubAck(_) => Ok(()),
            Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe, io),
            Packet::Unsubscribe(unsubscribe) => {
                self.handle_unsubscribe(unsubscribe, io);
                Ok(())
            }
            Packet::PingReq => {
                io.queue(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect => Err(Ended::PeerDisconnect),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Err(Ended::Violation(Violation::ExactlyOnce))
            }
            Packet::Connect(_) => Err(violation("CONNECT")),
            Packet::ConnAck(_) => Err(violation("CONNACK")),
            Packet::SubAck(_) => Err(violation("SUBACK")),
            Packet::UnsubAck(_) => Err(violation("UNSUBACK")),
            Packet::PingResp => Err(violation("PINGRESP")),
        }
    }

    async fn handle_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        publish: Publish,
        io: &mut PacketIo<S>,
    ) -> Result<(), Ended> {
        if publish.qos == QoS::ExactlyOnce {
            return Err(Ended::Violation(Violation::ExactlyOnce));
        }
        let route =
            routing::route_publish(&publish.topic, &self.device).map_err(Ended::Violation)?;
        if publish.qos == QoS::AtLeastOnce {
            io.queue(&Packet::PubAck(PubAck::new(publish.pkid)));
        }
        match route {
            Route::TwinGet { rid } => self.answer_twin_get(rid, io),
            Route::ReportedPatch { rid, expected_version } => {
                self.answer_reported_patch(rid, expected_version, publish.payload, io).await;
            }
            Route::MethodResponse { status, rid } => {
                self.complete_method(status, &rid, publish.payload)
            }
            Route::Telemetry { properties } => {
                self.forward_telemetry(properties, publish.retain, publish.payload)
            }
        }
        Ok(())
    }

    fn answer_twin_get<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        rid: String,
        io: &mut PacketIo<S>,
    ) {
        match self.shared.registry.device_twin_view(&self.device) {
            Ok(view) => {
                let body =
                    serde_json::to_vec(&view).expect("a serde_json::Value always serializes");
                self.twin_response(
                    HubPublish::TwinResponse { status: 200, rid, version: None },
                    body.into(),
                    io,
                );
            }
            Err(err) => self.twin_error(rid, err.error_code(), &err.to_string(), io),
        }
    }

    async fn answer_reported_patch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        rid: String,
        expected_version: Option<u64>,
        payload: Bytes,
        io: &mut PacketIo<S>,
    ) {
        let patch: serde_json::Value = match serde_json::from_slice(&payload) {
            Ok(patch) => patch,
            Err(err) => {
                let message = format!("reported properties patch is not valid JSON: {err}");
                return self.twin_error(rid, ErrorCode::ArgumentInvalid, &message, io);
            }
        };
        // Boxed: the registry's future is large and rare; the connection task stays small.
        match Box::pin(self.shared.registry.patch_reported(&self.device, patch, expected_version))
            .await
        {
            Ok(version) => {
                let topic = HubPublish::TwinResponse { status: 204, rid, version: Some(version) };
                self.twin_response(topic, Bytes::new(), io);
            }
            Err(err) => self.twin_error(rid, err.error_code(), &err.to_string(), io),
        }
    }

    fn twin_error<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        rid: String,
        code: ErrorCode,
        message: &str,
        io: &mut PacketIo<S>,
    ) {
        let body = MqttErrorBody::new(code, message, Utc::now()).to_bytes();
        let topic = HubPublish::TwinResponse { status: code.http_status(), rid, version: None };
        self.twin_response(topic, body.into(), io);
    }

    /// Sends a twin response at the QoS granted for `$iothub/twin/res/#`; dropped when not subscribed.
    fn twin_response<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        topic: HubPublish,
        body: Bytes,
        io: &mut PacketIo<S>,
    ) {
        let Some(qos) = self.slot.subscription(FilterKind::TwinResponses) else {
            tracing::debug!("twin response dropped: not subscribed to $iothub/twin/res/#");
            return;
        };
        let publish = self.publish(topic.to_topic(), body, qos);
        io.queue(&Packet::Publish(publish));
    }

    fn complete_method(&mut self, status: i32, rid: &str, body: Bytes) {
        let delivered = rid
            .parse::<u64>()
            .is_ok_and(|rid| self.slot.complete_method(rid, MethodReply { status, body }));
        if !delivered {
            tracing::debug!(rid, "method response for no pending call (timed out or unknown)");
        }
    }

    fn forward_telemetry(&mut self, mut properties: PropertyBag, retain: bool, body: Bytes) {
        if retain {
            properties.push("mqtt-retain", Some("true".to_owned()));
        }
        let message = Telemetry {
            device_id: self.device.clone(),
            module_id: None,
            properties,
            body,
            received_at: Utc::now(),
        };
        self.shared.forward_telemetry(message);
    }

    fn handle_subscribe<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        subscribe: Subscribe,
        io: &mut PacketIo<S>,
    ) -> Result<(), Ended> {
        if subscribe.filters.len() > MAX_SUBSCRIPTIONS {
            return Err(Ended::Violation(Violation::TooManyFilters(subscribe.filters.len())));
        }
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            granted.push(
                routing::route_filter(&filter.path, filter.qos, &self.device)
                    .map_err(Ended::Violation)?,
            );
        }
        let codes = granted
            .iter()
            .map(|&(kind, qos)| {
                self.slot.subscribe(kind, qos);
                SubscribeReasonCode::Success(qos)
            })
            .collect();
        io.queue(&Packet::SubAck(SubAck::new(subscribe.pkid, codes)));
        Ok(())
    }

    fn handle_unsubscribe<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        unsubscribe: Unsubscribe,
        io: &mut PacketIo<S>,
    ) {
        for topic in &unsubscribe.topics {
            // Unknown filters were never granted, so there is nothing to remove for them.
            if let Ok((kind, _)) = routing::route_filter(topic, QoS::AtMostOnce, &self.device) {
                self.slot.unsubscribe(kind);
            }
        }
        io.queue(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)));
    }

    /// Moves queued publishes into the write buffer; returns why to close, if the hub said so.
    fn drain_outbox<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut PacketIo<S>,
    ) -> Option<Ended> {
        let closing = self.conn.drain(&mut self.outgoing);
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for outbound in outgoing.drain(..) {
            let publish = self.publish(outbound.topic, outbound.payload, outbound.qos);
            io.queue(&Packet::Publish(publish));
        }
        // Keep a small drain buffer; a burst's larger one is freed so idle connections stay small.
        if outgoing.capacity() <= KEEP_DRAIN_CAPACITY {
            self.outgoing = outgoing;
        }
        closing.map(|reason| match reason {
            CloseReason::Replaced => Ended::Replaced,
            CloseReason::Evicted => Ended::Evicted,
        })
    }

    /// Builds a publish, with a packet id when QoS 1.
    fn publish(&mut self, topic: String, payload: Bytes, qos: QoS) -> Publish {
        let mut publish = Publish::from_bytes(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            publish.pkid = self.next_pkid;
        }
        publish
    }

    fn note_read(&mut self) {
        let now = Instant::now();
        self.last_read = now;
        if now.duration_since(self.activity_recorded) >= ACTIVITY_RECORD_INTERVAL {
            self.activity_recorded = now;
            self.shared.registry.record_activity(&self.device, Utc::now());
        }
    }

    fn next_deadline(&self) -> Instant {
        let keep_alive =
            self.keep_alive_timeout.map_or(self.token_expiry, |timeout| self.last_read + timeout);
        keep_alive.min(self.token_expiry)
    }

    fn check_deadlines(&self) -> Option<Ended> {
        let now = Instant::now();
        if now >= self.token_expiry {
            return Some(Ended::TokenExpired);
        }
        match self.keep_alive_timeout {
            Some(timeout) if now >= self.last_read + timeout => Some(Ended::KeepAlive),
            _ => None,
        }
    }
}

fn violation(packet: &'static str) -> Ended {
    Ended::Violation(Violation::UnexpectedPacket(packet))
}
