//! The pure device session: MQTT packets and client requests in, [`Action`]s out.
//!
//! [`Session`] tracks packet ids, PUBACKs owed to callers, twin requests by `$rid`, which of the three
//! IoT Hub subscriptions are wanted and acknowledged, and the last desired version seen. It does no IO
//! and reads no clock, so it is tested with plain data. The generic `R` is the caller's reply handle
//! (a oneshot sender in the client, a number in tests).
//! It deliberately does not run method handlers, time out requests or reconnect: the driver does.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::Value;

use crate::error::Error;
use crate::mqtt::{Packet, PubAck, Publish, QoS, SubAck, Subscribe, SubscribeReasonCode};
use protocol::topic::{self, DevicePublish, HubPublish};

use crate::twin::{DesiredPatch, TwinView};

/// Most requests parked while offline or while the twin subscription is pending; more are refused.
const MAX_PARKED: usize = 32;

/// One of the IoT Hub subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    /// `$iothub/methods/POST/#`.
    Methods = 1,
    /// `$iothub/twin/res/#`.
    TwinResponses = 2,
    /// `$iothub/twin/PATCH/properties/desired/#`.
    Desired = 4,
}

impl Sub {
    pub(crate) const ALL: [Sub; 3] = [Sub::Methods, Sub::TwinResponses, Sub::Desired];

    fn filter(self) -> &'static str {
        match self {
            Sub::Methods => topic::METHODS_FILTER,
            Sub::TwinResponses => topic::TWIN_RESPONSES_FILTER,
            Sub::Desired => topic::DESIRED_PATCHES_FILTER,
        }
    }

    fn bit(self) -> u8 {
        self as u8
    }
}

/// A request from the client handle.
#[derive(Debug)]
pub(crate) enum Request<R> {
    /// Publish telemetry at QoS 1 and resolve on PUBACK.
    Telemetry { topic: String, payload: Bytes, reply: R },
    /// `$iothub/twin/GET`.
    TwinGet { reply: R },
    /// `$iothub/twin/PATCH/properties/reported` with a JSON object body.
    ReportedPatch { body: Bytes, reply: R },
    /// Make sure a subscription is in place.
    Subscribe(Sub),
    /// Answer a direct method.
    MethodResponse { rid: String, status: i32, payload: Bytes },
}

/// What a completed request yields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Done {
    /// A PUBACK for telemetry.
    Acked,
    /// A twin GET response.
    Twin(TwinView),
    /// A reported patch's new version.
    Version(u64),
}

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action<R> {
    /// Write this packet.
    Send(Packet),
    /// Complete a caller's request.
    Resolve(R, Result<Done, Error>),
    /// Run the method handler and answer with [`Request::MethodResponse`].
    InvokeMethod { name: String, rid: String, payload: Result<Value, String> },
    /// Hand a desired patch to the application.
    Desired(DesiredPatch),
    /// The hub broke the protocol: drop the connection.
    Close(Error),
}

/// A twin request parked until the twin-response subscription is acknowledged.
#[derive(Debug)]
enum TwinOp<R> {
    Get(R),
    Patch(Bytes, R),
    /// The GET sent after a reconnect to catch up on desired changes.
    Resync,
}

/// The session state. See the module docs.
#[derive(Debug)]
pub(crate) struct Session<R> {
    connected: bool,
    next_pkid: u16,
    next_rid: u64,
    wanted: u8,
    acked: u8,
    subscribing: Vec<(u16, Sub)>,
    awaiting_puback: Vec<(u16, R)>,
    awaiting_twin: Vec<(String, TwinOp<R>)>,
    parked_twin: VecDeque<TwinOp<R>>,
    parked_telemetry: VecDeque<(String, Bytes, R)>,
    last_desired_version: Option<u64>,
}

impl<R> Default for Session<R> {
    fn default() -> Self {
        Session {
            connected: false,
            next_pkid: 0,
            next_rid: 0,
            wanted: 0,
            acked: 0,
            subscribing: Vec::new(),
            awaiting_puback: Vec::new(),
            awaiting_twin: Vec::new(),
            parked_twin: VecDeque::new(),
            parked_telemetry: VecDeque::new(),
            last_desired_version: None,
        }
    }
}

impl<R> Session<R> {
    /// The connection is up (CONNACK 0): subscribe to everything wanted, resync desired, flush parked telemetry.
    pub(crate) fn connected(&mut self) -> Vec<Action<R>> {
        self.connected = true;
        let mut actions = Vec::new();
        for sub in Sub::ALL {
            if self.wanted & sub.bit() != 0 {
                self.send_subscribe(sub, &mut actions);
            }
        }
        if self.wanted & Sub::Desired.bit() != 0 && self.last_desired_version.is_some() {
            self.park_twin(TwinOp::Resync, &mut actions);
        }
        while let Some((topic, payload, reply)) = self.parked_telemetry.pop_front() {
            self.send_telemetry(topic, payload, reply, &mut actions);
        }
        actions
    }

    /// The connection dropped: fail what was in flight; parked requests wait for the next connection.
    pub(crate) fn disconnected(&mut self) -> Vec<Action<R>> {
        self.connected = false;
        self.acked = 0;
        self.subscribing.clear();
        let mut actions = Vec::new();
        for (_, reply) in self.awaiting_puback.drain(..) {
            actions.push(Action::Resolve(
                reply,
                Err(Error::ConnectionLost { operation: "telemetry" }),
            ));
        }
        for (_, op) in self.awaiting_twin.drain(..) {
            match op {
                TwinOp::Get(reply) => actions.push(Action::Resolve(
                    reply,
                    Err(Error::ConnectionLost { operation: "twin get" }),
                )),
                TwinOp::Patch(_, reply) => actions.push(Action::Resolve(
                    reply,
                    Err(Error::ConnectionLost { operation: "reported patch" }),
                )),
                TwinOp::Resync => {}
            }
        }
        actions
    }

    /// The client stopped for good: fail everything, parked requests included.
    pub(crate) fn stopped(&mut self) -> Vec<Action<R>> {
        let mut actions = self.disconnected();
        let parked_twin = self.parked_twin.drain(..).filter_map(|op| match op {
            TwinOp::Get(reply) | TwinOp::Patch(_, reply) => Some(reply),
            TwinOp::Resync => None,
        });
        let parked_telemetry = self.parked_telemetry.drain(..).map(|(_, _, reply)| reply);
        for reply in parked_twin.chain(parked_telemetry).collect::<Vec<_>>() {
            actions.push(Action::Resolve(reply, Err(Error::Stopped)));
        }
        actions
    }

    /// Drops pending requests whose caller has gone away (timed out).
    pub(crate) fn prune(&mut self, gone: impl Fn(&R) -> bool) {
        self.awaiting_puback.retain(|(_, reply)| !gone(reply));
        self.awaiting_twin.retain(|(_, op)| !op.reply().is_some_and(&gone));
        self.parked_twin.retain(|op| !op.reply().is_some_and(&gone));
        self.parked_telemetry.retain(|(_, _, reply)| !gone(reply));
    }

    /// A request from the client handle.
    pub(crate) fn request(&mut self, request: Request<R>) -> Vec<Action<R>> {
        let mut actions = Vec::new();
        match request {
            Request::Telemetry { topic, payload, reply } => {
                if self.connected {
                    self.send_telemetry(topic, payload, reply, &mut actions);
                } else if self.parked_telemetry.len() < MAX_PARKED {
                    self.parked_telemetry.push_back((topic, payload, reply));
                } else {
                    actions.push(Action::Resolve(reply, Err(Error::Busy)));
                }
            }
            Request::TwinGet { reply } => self.park_twin(TwinOp::Get(reply), &mut actions),
            Request::ReportedPatch { body, reply } => {
                self.park_twin(TwinOp::Patch(body, reply), &mut actions)
            }
            Request::Subscribe(sub) => self.want(sub, &mut actions),
            Request::MethodResponse { rid, status, payload } => {
                if self.connected {
                    let topic = DevicePublish::MethodResponse { status, rid }.to_topic();
                    actions.push(Action::Send(Packet::Publish(Publish::from_bytes(
                        topic,
                        QoS::AtMostOnce,
                        payload,
                    ))));
                }
            }
        }
        actions
    }

    /// The driver could not send a packet this session produced (e.g. too large): fail its request.
    pub(crate) fn rejected(&mut self, pkid: u16, topic: &str, error: Error) -> Vec<Action<R>> {
        let mut actions = Vec::new();
        if pkid != 0 {
            if let Some(idx) = self.awaiting_puback.iter().position(|(id, _)| *id == pkid) {
                let (_, reply) = self.awaiting_puback.swap_remove(idx);
                actions.push(Action::Resolve(reply, Err(error)));
            }
            return actions;
        }
        let rid = topic.rsplit_once("$rid=").map(|(_, rid)| rid);
        if let Some(idx) = self.awaiting_twin.iter().position(|(id, _)| Some(id.as_str()) == rid) {
            let (_, op) = self.awaiting_twin.swap_remove(idx);
            if let Some(reply) = op.into_reply() {
                actions.push(Action::Resolve(reply, Err(error)));
            }
        }
        actions
    }

    /// A packet from the hub.
    pub(crate) fn packet(&mut self, packet: Packet) -> Vec<Action<R>> {
        let mut actions = Vec::new();
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, &mut actions),
            Packet::PubAck(PubAck { pkid }) => {
                if let Some(idx) = self.awaiting_puback.iter().position(|(id, _)| *id == pkid) {
                    let (_, reply) = self.awaiting_puback.swap_remove(idx);
                    actions.push(Action::Resolve(reply, Ok(Done::Acked)));
                }
            }
            Packet::SubAck(suback) => self.on_suback(suback, &mut actions),
            Packet::PingResp | Packet::UnsubAck(_) => {}
            other => {
                let name = crate::transport::packet_name(&other);
                actions.push(Action::Close(Error::Protocol(format!(
                    "unexpected {name} from the hub"
                ))));
            }
        }
        actions
    }

    fn on_publish(&mut self, publish: Publish, actions: &mut Vec<Action<R>>) {
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                actions.push(Action::Send(Packet::PubAck(PubAck::new(publish.pkid))))
            }
            QoS::ExactlyOnce => {
                actions.push(Action::Close(Error::Protocol("hub published at qos 2".to_owned())));
                return;
            }
        }
        match HubPublish::parse(&publish.topic) {
            Ok(HubPublish::MethodRequest { name, rid }) => {
                let payload = serde_json::from_slice::<Value>(&publish.payload)
                    .map_err(|err| err.to_string());
                actions.push(Action::InvokeMethod { name, rid, payload });
            }
            Ok(HubPublish::TwinResponse { status, rid, version }) => {
                self.on_twin_response(status, &rid, version, &publish.payload, actions)
            }
            Ok(HubPublish::DesiredPatch { version }) => {
                match DesiredPatch::parse(&publish.payload, Some(version)) {
                    Ok(patch) => {
                        self.last_desired_version = Some(patch.version);
                        actions.push(Action::Desired(patch));
                    }
                    Err(err) => tracing::debug!(err, "ignoring malformed desired patch"),
                }
            }
            Ok(HubPublish::CloudToDevice { .. }) => {
                tracing::debug!(topic = %publish.topic, "ignoring cloud-to-device message")
            }
            Err(err) => tracing::debug!(%err, "ignoring publish on an unknown topic"),
        }
    }

    fn on_twin_response(
        &mut self,
        status: u16,
        rid: &str,
        version: Option<u64>,
        body: &[u8],
        actions: &mut Vec<Action<R>>,
    ) {
        let Some(idx) = self.awaiting_twin.iter().position(|(id, _)| id == rid) else {
            tracing::debug!(rid, "ignoring twin response for an unknown request");
            return;
        };
        let (_, op) = self.awaiting_twin.swap_remove(idx);
        let result = if status >= 300 {
            Err(hub_error(status, body))
        } else {
            match &op {
                TwinOp::Get(_) | TwinOp::Resync => {
                    TwinView::parse(body).map(Done::Twin).map_err(Error::Protocol)
                }
                TwinOp::Patch(..) => version.map(Done::Version).ok_or_else(|| {
                    Error::Protocol(format!("reported patch response {status} carries no $version"))
                }),
            }
        };
        match op {
            TwinOp::Get(reply) | TwinOp::Patch(_, reply) => {
                if let Ok(Done::Twin(view)) = &result {
                    self.note_desired_version(view.desired_version);
                }
                actions.push(Action::Resolve(reply, result));
            }
            TwinOp::Resync => match result {
                Ok(Done::Twin(view)) => {
                    if self.last_desired_version != Some(view.desired_version) {
                        self.last_desired_version = Some(view.desired_version);
                        let patch = DesiredPatch {
                            version: view.desired_version,
                            patch: view.desired,
                            full: true,
                        };
                        actions.push(Action::Desired(patch));
                    }
                }
                Ok(_) | Err(_) => tracing::debug!(status, "desired resync twin get failed"),
            },
        }
    }

    fn note_desired_version(&mut self, version: u64) {
        if self.wanted & Sub::Desired.bit() != 0 || self.last_desired_version.is_none() {
            self.last_desired_version = Some(version);
        }
    }

    fn on_suback(&mut self, suback: SubAck, actions: &mut Vec<Action<R>>) {
        let Some(idx) = self.subscribing.iter().position(|(pkid, _)| *pkid == suback.pkid) else {
            return;
        };
        let (_, sub) = self.subscribing.swap_remove(idx);
        if suback.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
            actions.push(Action::Close(Error::Protocol(format!(
                "hub refused subscription {}",
                sub.filter()
            ))));
            return;
        }
        self.acked |= sub.bit();
        if sub == Sub::TwinResponses {
            while let Some(op) = self.parked_twin.pop_front() {
                self.send_twin(op, actions);
            }
        }
    }

    fn want(&mut self, sub: Sub, actions: &mut Vec<Action<R>>) {
        if self.wanted & sub.bit() != 0 {
            return;
        }
        self.wanted |= sub.bit();
        if self.connected {
            self.send_subscribe(sub, actions);
        }
    }

    fn park_twin(&mut self, op: TwinOp<R>, actions: &mut Vec<Action<R>>) {
        self.want(Sub::TwinResponses, actions);
        if self.connected && self.acked & Sub::TwinResponses.bit() != 0 {
            self.send_twin(op, actions);
        } else if self.parked_twin.len() < MAX_PARKED {
            self.parked_twin.push_back(op);
        } else if let Some(reply) = op.into_reply() {
            actions.push(Action::Resolve(reply, Err(Error::Busy)));
        }
    }

    fn send_twin(&mut self, op: TwinOp<R>, actions: &mut Vec<Action<R>>) {
        self.next_rid = self.next_rid.wrapping_add(1);
        let rid = self.next_rid.to_string();
        let publish = match &op {
            TwinOp::Get(_) | TwinOp::Resync => Publish::new(
                DevicePublish::TwinGet { rid: rid.clone() }.to_topic(),
                QoS::AtMostOnce,
                " ",
            ),
            TwinOp::Patch(body, _) => {
                let topic =
                    DevicePublish::ReportedPatch { rid: rid.clone(), expected_version: None };
                Publish::from_bytes(topic.to_topic(), QoS::AtMostOnce, body.clone())
            }
        };
        actions.push(Action::Send(Packet::Publish(publish)));
        self.awaiting_twin.push((rid, op));
    }

    fn send_subscribe(&mut self, sub: Sub, actions: &mut Vec<Action<R>>) {
        let pkid = self.allocate_pkid();
        let mut subscribe = Subscribe::new(sub.filter(), QoS::AtLeastOnce);
        subscribe.pkid = pkid;
        self.subscribing.push((pkid, sub));
        actions.push(Action::Send(Packet::Subscribe(subscribe)));
    }

    fn send_telemetry(
        &mut self,
        topic: String,
        payload: Bytes,
        reply: R,
        actions: &mut Vec<Action<R>>,
    ) {
        let pkid = self.allocate_pkid();
        let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        self.awaiting_puback.push((pkid, reply));
        actions.push(Action::Send(Packet::Publish(publish)));
    }

    /// The next packet id (1..=65535) not in use by a pending PUBACK or SUBACK.
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            let pkid = self.next_pkid;
            let in_use = self.awaiting_puback.iter().any(|(id, _)| *id == pkid)
                || self.subscribing.iter().any(|(id, _)| *id == pkid);
            if !in_use {
                return pkid;
            }
        }
    }
}

impl<R> TwinOp<R> {
    fn reply(&self) -> Option<&R> {
        match self {
            TwinOp::Get(reply) | TwinOp::Patch(_, reply) => Some(reply),
            TwinOp::Resync => None,
        }
    }

    fn into_reply(self) -> Option<R> {
        match self {
            TwinOp::Get(reply) | TwinOp::Patch(_, reply) => Some(reply),
            TwinOp::Resync => None,
        }
    }
}

/// Turns a twin error response into [`Error::Hub`], reading the `errorCode` body when there is one.
fn hub_error(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<protocol::error::MqttErrorBody>(body) {
        Ok(parsed) => {
            Error::Hub { status, error_code: Some(parsed.error_code), message: parsed.message }
        }
        Err(_) => Error::Hub {
            status,
            error_code: None,
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests;
