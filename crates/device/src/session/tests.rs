//! Session tests as data: a script of inputs, the actions rendered one per line.

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
            Step::Req(Request::ReportedPatch { body: Bytes::from_static(b"{\"a\":1}"), reply: 1 }),
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
            publish("$iothub/methods/POST/reboot/?$rid=7", QoS::AtMostOnce, 0, r#"{"delay":1}"#),
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
            publish("$iothub/twin/PATCH/properties/desired/?$version=5", QoS::AtMostOnce, 0, "[]"),
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
