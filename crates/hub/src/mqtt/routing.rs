//! Which topics a connected device may use: classifies its PUBLISH topics and SUBSCRIBE filters
//! with `protocol::topic`, refusing anything that is not one of its own IoT Hub topics.
//!
//! A refusal is a [`Violation`]: the connection task closes that one connection. Nothing here does
//! I/O or touches session state.

use protocol::ids::DeviceId;
use protocol::property_bag::PropertyBag;
use protocol::topic::{DevicePublish, Subscription, TopicError};
use rumqttc::mqttbytes::QoS;

use super::session::FilterKind;

/// The most filters one SUBSCRIBE may carry (IoT Hub allows 5 subscriptions per device).
pub(crate) const MAX_SUBSCRIPTIONS: usize = 5;

/// A device publish the hub acts on.
#[derive(Debug)]
pub(crate) enum Route {
    /// Twin GET.
    TwinGet { rid: String },
    /// Reported-properties patch, optionally conditional on the current reported version.
    ReportedPatch { rid: String, expected_version: Option<u64> },
    /// Answer to a direct method request.
    MethodResponse { status: i32, rid: String },
    /// Device-to-cloud message on the device's own events topic.
    Telemetry { properties: PropertyBag },
}

/// Why a connection is closed for what it sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Violation {
    /// The topic is not one of the device's own topics.
    #[error("publish to a topic the device may not use: {0}")]
    Topic(TopicError),
    /// Telemetry on another identity's topic.
    #[error("publish on the events topic of {0:?}")]
    ForeignTelemetry(String),
    /// A filter the device may not subscribe to.
    #[error("subscription refused: {0}")]
    Filter(TopicError),
    /// More filters than IoT Hub allows.
    #[error("{0} filters in one subscribe; the limit is 5")]
    TooManyFilters(usize),
    /// QoS 2 is not supported by IoT Hub.
    #[error("qos 2 publish")]
    ExactlyOnce,
    /// A packet a client never sends to a server, or a second CONNECT.
    #[error("unexpected {0} packet")]
    UnexpectedPacket(&'static str),
    /// Bytes that are not MQTT 3.1.1.
    #[error("{0}")]
    Malformed(String),
}

/// Classifies a topic `device` published to.
pub(crate) fn route_publish(topic: &str, device: &DeviceId) -> Result<Route, Violation> {
    match DevicePublish::parse(topic).map_err(Violation::Topic)? {
        DevicePublish::TwinGet { rid } => Ok(Route::TwinGet { rid }),
        DevicePublish::ReportedPatch { rid, expected_version } => {
            Ok(Route::ReportedPatch { rid, expected_version })
        }
        DevicePublish::MethodResponse { status, rid } => Ok(Route::MethodResponse { status, rid }),
        DevicePublish::Telemetry { device_id, module_id: None, properties }
            if device_id == device.as_str() =>
        {
            Ok(Route::Telemetry { properties })
        }
        DevicePublish::Telemetry { device_id, module_id, .. } => match module_id {
            Some(module) => Err(Violation::ForeignTelemetry(format!("{device_id}/{module}"))),
            None => Err(Violation::ForeignTelemetry(device_id)),
        },
    }
}

/// Classifies a filter `device` subscribes to; returns the kind and the QoS granted (at most 1).
pub(crate) fn route_filter(
    filter: &str,
    requested: QoS,
    device: &DeviceId,
) -> Result<(FilterKind, QoS), Violation> {
    let kind =
        match Subscription::parse(filter, device.as_str(), None).map_err(Violation::Filter)? {
            Subscription::Methods => FilterKind::Methods,
            Subscription::TwinResponses => FilterKind::TwinResponses,
            Subscription::DesiredPatches => FilterKind::Desired,
            Subscription::CloudToDevice => FilterKind::CloudToDevice,
            Subscription::ModuleInputs => {
                return Err(Violation::Filter(TopicError::UnsupportedFilter {
                    filter: filter.to_owned(),
                }))
            }
        };
    let granted = if requested == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    Ok((kind, granted))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check_publish(topic: &str, expect: Expect) {
        let device = DeviceId::new("d1").unwrap();
        let actual = match route_publish(topic, &device) {
            Ok(route) => format!("{route:?}"),
            Err(violation) => format!("violation: {violation}"),
        };
        expect.assert_eq(&actual);
    }

    fn check_filter(filter: &str, qos: QoS, expect: Expect) {
        let device = DeviceId::new("d1").unwrap();
        let actual = match route_filter(filter, qos, &device) {
            Ok((kind, granted)) => format!("{kind:?} {granted:?}"),
            Err(violation) => format!("violation: {violation}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn publishes() {
        check_publish("$iothub/twin/GET/?$rid=7", expect![[r#"TwinGet { rid: "7" }"#]]);
        check_publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=r&$version=4",
            expect![[r#"ReportedPatch { rid: "r", expected_version: Some(4) }"#]],
        );
        check_publish(
            "$iothub/methods/res/500/?$rid=12",
            expect![[r#"MethodResponse { status: 500, rid: "12" }"#]],
        );
        check_publish(
            "devices/d1/messages/events/%24.ct=application%2Fjson&k=v",
            expect![[
                r#"Telemetry { properties: PropertyBag { entries: [("$.ct", Some("application/json")), ("k", Some("v"))] } }"#
            ]],
        );
        check_publish(
            "devices/d2/messages/events/",
            expect![[r#"violation: publish on the events topic of "d2""#]],
        );
        check_publish(
            "devices/d1/modules/m1/messages/events/",
            expect![[r#"violation: publish on the events topic of "d1/m1""#]],
        );
        check_publish(
            "$iothub/methods/POST/reboot/?$rid=1",
            expect![[
                r#"violation: publish to a topic the device may not use: "$iothub/methods/POST/reboot/?$rid=1" is not an IoT Hub device topic"#
            ]],
        );
        check_publish(
            "$iothub/methods/res/ok/?$rid=1",
            expect![[
                r#"violation: publish to a topic the device may not use: topic "$iothub/methods/res/ok/?$rid=1": method response status "ok" is not an integer"#
            ]],
        );
        check_publish(
            "$iothub/twin/GET/",
            expect![[
                r#"violation: publish to a topic the device may not use: topic "$iothub/twin/GET/" lacks the ? parameter"#
            ]],
        );
    }

    #[test]
    fn filters() {
        check_filter("$iothub/methods/POST/#", QoS::AtLeastOnce, expect!["Methods AtLeastOnce"]);
        check_filter("$iothub/twin/res/#", QoS::AtMostOnce, expect!["TwinResponses AtMostOnce"]);
        check_filter(
            "$iothub/twin/PATCH/properties/desired/#",
            QoS::ExactlyOnce,
            expect!["Desired AtLeastOnce"],
        );
        check_filter(
            "devices/d1/messages/devicebound/#",
            QoS::AtLeastOnce,
            expect!["CloudToDevice AtLeastOnce"],
        );
        check_filter(
            "devices/d2/messages/devicebound/#",
            QoS::AtLeastOnce,
            expect![[
                r#"violation: subscription refused: subscription filter "devices/d2/messages/devicebound/#" is not supported for this device"#
            ]],
        );
        check_filter(
            "#",
            QoS::AtMostOnce,
            expect![[
                r##"violation: subscription refused: subscription filter "#" is not supported for this device"##
            ]],
        );
        check_filter(
            "$iothub/methods/+/#",
            QoS::AtMostOnce,
            expect![[
                r#"violation: subscription refused: subscription filter "$iothub/methods/+/#" is not supported for this device"#
            ]],
        );
    }
}
