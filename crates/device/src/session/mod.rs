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
mod tests {
    use expect_test::{expect, Expect};

    use super::*;
    use crate::mqtt::SubAck;

    enum Step {
        Up,
        Down,
        Stop,
        Req(Request<u32>),
        In(Packet),
    }

    fn publish(topic: &str, qos: QoS, pkid: u16, body: &str) -> Step {
        let mut publish = Publish::new(topic, qos, body.as_bytes().to_vec());
        publish.pkid = pkid;
        Step::In(Packet::Publish(publish))
    }

    fn suback(pkid: u16) -> Step {
        Step::In(Packet::SubAck(SubAck::new(
            pkid,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        )))
    }

    fn render(action: &Action<u32>) -> String {
        match action {
            Action::Send(Packet::Publish(p)) => {
                format!(
                    "send PUBLISH q{} id{} {} {:?}",
                    p.qos as u8,
                    p.pkid,
                    p.topic,
                    String::from_utf8_lossy(&p.payload)
                )
            }
            Action::Send(Packet::Subscribe(s)) => {
                format!("send SUBSCRIBE id{} {}", s.pkid, s.filters[0].path)
            }
            Action::Send(Packet::PubAck(a)) => format!("send PUBACK id{}", a.pkid),
            Action::Send(other) => format!("send {}", crate::transport::packet_name(other)),
            Action::Resolve(reply, outcome) => format!("resolve #{reply} {outcome:?}"),
            Action::InvokeMethod { name, rid, payload } => {
                format!("invoke {name} rid={rid} {payload:?}")
            }
            Action::Desired(patch) => format!(
                "desired v{} full={} {}",
                patch.version,
                patch.full,
                Value::Object(patch.patch.clone())
            ),
            Action::Close(error) => format!("close: {error}"),
        }
    }

    fn check(steps: Vec<Step>, expect: Expect) {
        let mut session = Session::<u32>::default();
        let mut lines = Vec::new();
        for step in steps {
            let actions = match step {
                Step::Up => session.connected(),
                Step::Down => session.disconnected(),
                Step::Stop => session.stopped(),
                Step::Req(request) => session.request(request),
                Step::In(packet) => session.packet(packet),
            };
            lines.extend(actions.iter().map(render));
            lines.push("--".to_owned());
        }
        expect.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn twin_get_waits_for_suback_and_resolves_by_rid() {
        check(
            vec![
                Step::Up,
                Step::Req(Request::TwinGet { reply: 1 }),
                suback(1),
                publish("$iothub/twin/res/200/?$rid=99", QoS::AtMostOnce, 0, "{}"),
                publish(
                    "$iothub/twin/res/200/?$rid=1",
                    QoS::AtMostOnce,
                    0,
                    r#"{"desired":{"a":1,"$version":2},"reported":{"$version":1}}"#,
                ),
            ],
            expect![[r#"
                --
                send SUBSCRIBE id1 $iothub/twin/res/#
                --
                send PUBLISH q0 id0 $iothub/twin/GET/?$rid=1 " "
                --
                --
                resolve #1 Ok(Twin(TwinView { desired: {"a": Number(1)}, reported: {}, desired_version: 2, reported_version: 1 }))
                --"#]],
        );
    }

    #[test]
    fn reported_patch_version_and_errors() {
        check(
            vec![
                Step::Up,
                Step::Req(Request::ReportedPatch {
                    body: Bytes::from_static(b"{\"a\":1}"),
                    reply: 1,
                }),
                suback(1),
                publish("$iothub/twin/res/204/?$rid=1&$version=5", QoS::AtMostOnce, 0, ""),
                Step::Req(Request::ReportedPatch { body: Bytes::from_static(b"{}"), reply: 2 }),
                publish(
                    "$iothub/twin/res/400/?$rid=2",
                    QoS::AtMostOnce,
                    0,
                    r#"{"errorCode":400004,"message":"bad"}"#,
                ),
                Step::Req(Request::ReportedPatch { body: Bytes::from_static(b"{}"), reply: 3 }),
                publish("$iothub/twin/res/204/?$rid=3", QoS::AtMostOnce, 0, ""),
                Step::Req(Request::TwinGet { reply: 4 }),
                publish("$iothub/twin/res/429/?$rid=4", QoS::AtMostOnce, 0, "slow down"),
            ],
            expect![[r#"
                --
                send SUBSCRIBE id1 $iothub/twin/res/#
                --
                send PUBLISH q0 id0 $iothub/twin/PATCH/properties/reported/?$rid=1 "{\"a\":1}"
                --
                resolve #1 Ok(Version(5))
                --
                send PUBLISH q0 id0 $iothub/twin/PATCH/properties/reported/?$rid=2 "{}"
                --
                resolve #2 Err(Hub { status: 400, error_code: Some(400004), message: "bad" })
                --
                send PUBLISH q0 id0 $iothub/twin/PATCH/properties/reported/?$rid=3 "{}"
                --
                resolve #3 Err(Protocol("reported patch response 204 carries no $version"))
                --
                send PUBLISH q0 id0 $iothub/twin/GET/?$rid=4 " "
                --
                resolve #4 Err(Hub { status: 429, error_code: None, message: "slow down" })
                --"#]],
        );
    }

    #[test]
    fn methods_and_desired() {
        check(
            vec![
                Step::Req(Request::Subscribe(Sub::Methods)),
                Step::Req(Request::Subscribe(Sub::Desired)),
                Step::Up,
                publish(
                    "$iothub/methods/POST/reboot/?$rid=7",
                    QoS::AtMostOnce,
                    0,
                    r#"{"delay":1}"#,
                ),
                publish("$iothub/methods/POST/x%20y/?$rid=8", QoS::AtLeastOnce, 3, "null"),
                publish("$iothub/methods/POST/bad/?$rid=9", QoS::AtMostOnce, 0, "not json"),
                publish("$iothub/methods/POST/norid/", QoS::AtMostOnce, 0, "1"),
                Step::Req(Request::MethodResponse {
                    rid: "7".into(),
                    status: 200,
                    payload: Bytes::from_static(b"null"),
                }),
                publish(
                    "$iothub/twin/PATCH/properties/desired/?$version=4",
                    QoS::AtMostOnce,
                    0,
                    r#"{"x":null,"$version":4}"#,
                ),
                publish(
                    "$iothub/twin/PATCH/properties/desired/?$version=5",
                    QoS::AtMostOnce,
                    0,
                    "[]",
                ),
            ],
            expect![[r#"
                --
                --
                send SUBSCRIBE id1 $iothub/methods/POST/#
                send SUBSCRIBE id2 $iothub/twin/PATCH/properties/desired/#
                --
                invoke reboot rid=7 Ok(Object {"delay": Number(1)})
                --
                send PUBACK id3
                invoke x y rid=8 Ok(Null)
                --
                invoke bad rid=9 Err("expected ident at line 1 column 2")
                --
                --
                send PUBLISH q0 id0 $iothub/methods/res/200/?$rid=7 "null"
                --
                desired v4 full=false {"x":null}
                --
                --"#]],
        );
    }

    #[test]
    fn reconnect_resubscribes_resyncs_and_fails_in_flight() {
        check(
            vec![
                Step::Req(Request::Subscribe(Sub::Desired)),
                Step::Up,
                suback(1),
                publish(
                    "$iothub/twin/PATCH/properties/desired/?$version=2",
                    QoS::AtMostOnce,
                    0,
                    r#"{"a":1,"$version":2}"#,
                ),
                Step::Req(Request::Telemetry {
                    topic: "devices/d/messages/events/".into(),
                    payload: Bytes::from_static(b"t"),
                    reply: 1,
                }),
                Step::Down,
                Step::Req(Request::Telemetry {
                    topic: "devices/d/messages/events/".into(),
                    payload: Bytes::from_static(b"u"),
                    reply: 2,
                }),
                Step::Up,
                Step::In(Packet::PubAck(PubAck::new(5))),
                suback(3),
                suback(4),
                publish(
                    "$iothub/twin/res/200/?$rid=1",
                    QoS::AtMostOnce,
                    0,
                    r#"{"desired":{"a":2,"$version":3},"reported":{"$version":1}}"#,
                ),
                Step::Req(Request::TwinGet { reply: 3 }),
                Step::Stop,
            ],
            expect![[r#"
                --
                send SUBSCRIBE id1 $iothub/twin/PATCH/properties/desired/#
                --
                --
                desired v2 full=false {"a":1}
                --
                send PUBLISH q1 id2 devices/d/messages/events/ "t"
                --
                resolve #1 Err(ConnectionLost { operation: "telemetry" })
                --
                --
                send SUBSCRIBE id3 $iothub/twin/PATCH/properties/desired/#
                send SUBSCRIBE id4 $iothub/twin/res/#
                send PUBLISH q1 id5 devices/d/messages/events/ "u"
                --
                resolve #2 Ok(Acked)
                --
                --
                send PUBLISH q0 id0 $iothub/twin/GET/?$rid=1 " "
                --
                desired v3 full=true {"a":2}
                --
                send PUBLISH q0 id0 $iothub/twin/GET/?$rid=2 " "
                --
                resolve #3 Err(ConnectionLost { operation: "twin get" })
                --"#]],
        );
    }

    #[test]
    fn protocol_violations_close() {
        check(
            vec![
                Step::Up,
                publish("$iothub/twin/res/200/?$rid=1", QoS::ExactlyOnce, 1, ""),
                Step::In(Packet::PingReq),
                publish("weird/topic", QoS::AtLeastOnce, 9, ""),
                publish("$iothub/twin/res/abc/?$rid=1", QoS::AtMostOnce, 0, ""),
            ],
            expect![[r#"
                --
                close: protocol violation: hub published at qos 2
                --
                close: protocol violation: unexpected PINGREQ from the hub
                --
                send PUBACK id9
                --
                --"#]],
        );
    }
}
