//! Topic parse/print tables and round-trip properties.
use expect_test::{expect, Expect};
use proptest::prelude::*;

use super::*;

fn check_device(topic: &str, expect: Expect) {
    let actual = match DevicePublish::parse(topic) {
        Ok(parsed) => format!("{parsed:?} -> {}", parsed.to_topic()),
        Err(err) => format!("error: {err}"),
    };
    expect.assert_eq(&actual);
}

fn check_hub(topic: &str, expect: Expect) {
    let actual = match HubPublish::parse(topic) {
        Ok(parsed) => format!("{parsed:?} -> {}", parsed.to_topic()),
        Err(err) => format!("error: {err}"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn device_topics() {
    check_device(
        "$iothub/twin/GET/?$rid=42",
        expect![[r#"TwinGet { rid: "42" } -> $iothub/twin/GET/?$rid=42"#]],
    );
    check_device(
        "$iothub/twin/PATCH/properties/reported/?$rid=reported_prop&$version=3",
        expect![[
            r#"ReportedPatch { rid: "reported_prop", expected_version: Some(3) } -> $iothub/twin/PATCH/properties/reported/?$rid=reported_prop&$version=3"#
        ]],
    );
    check_device(
        "$iothub/methods/res/200/?$rid=1f",
        expect![[
            r#"MethodResponse { status: 200, rid: "1f" } -> $iothub/methods/res/200/?$rid=1f"#
        ]],
    );
    check_device(
        "devices/d1/messages/events/%24.mid=abc&%24.ct=application%2Fjson&temp=25",
        expect![[
            r#"Telemetry { device_id: "d1", module_id: None, properties: PropertyBag { entries: [("$.mid", Some("abc")), ("$.ct", Some("application/json")), ("temp", Some("25"))] } } -> devices/d1/messages/events/%24.mid=abc&%24.ct=application%2Fjson&temp=25"#
        ]],
    );
    check_device(
        "devices/d1/modules/m1/messages/events/",
        expect![[
            r#"Telemetry { device_id: "d1", module_id: Some("m1"), properties: PropertyBag { entries: [] } } -> devices/d1/modules/m1/messages/events/"#
        ]],
    );
    check_device(
        "devices/d1/messages/events",
        expect![[
            r#"Telemetry { device_id: "d1", module_id: None, properties: PropertyBag { entries: [] } } -> devices/d1/messages/events/"#
        ]],
    );
    check_device(
        "$iothub/twin/GET/",
        expect![[r#"error: topic "$iothub/twin/GET/" lacks the ? parameter"#]],
    );
    check_device(
        "$iothub/twin/GET/?$rid=",
        expect![[r#"error: topic "$iothub/twin/GET/?$rid=" lacks the $rid parameter"#]],
    );
    check_device(
        "$iothub/methods/res/ok/?$rid=1",
        expect![[
            r#"error: topic "$iothub/methods/res/ok/?$rid=1": method response status "ok" is not an integer"#
        ]],
    );
    check_device(
        "$iothub/twin/PATCH/properties/reported/?$rid=1&$version=x",
        expect![[
            r#"error: topic "$iothub/twin/PATCH/properties/reported/?$rid=1&$version=x": $version "x" is not a non-negative integer"#
        ]],
    );
    check_device(
        "devices/d1/messages/devicebound/",
        expect![[r#"error: "devices/d1/messages/devicebound/" is not an IoT Hub device topic"#]],
    );
    check_device(
        "devices//messages/events/",
        expect![[r#"error: "devices//messages/events/" is not an IoT Hub device topic"#]],
    );
    check_device("foo/bar", expect![[r#"error: "foo/bar" is not an IoT Hub device topic"#]]);
}

#[test]
fn hub_topics() {
    check_hub(
        "$iothub/methods/POST/reboot/?$rid=7",
        expect![[
            r#"MethodRequest { name: "reboot", rid: "7" } -> $iothub/methods/POST/reboot/?$rid=7"#
        ]],
    );
    check_hub(
        "$iothub/twin/res/204/?$rid=reported_prop&$version=2",
        expect![[
            r#"TwinResponse { status: 204, rid: "reported_prop", version: Some(2) } -> $iothub/twin/res/204/?$rid=reported_prop&$version=2"#
        ]],
    );
    check_hub(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        expect![[
            r#"DesiredPatch { version: 8 } -> $iothub/twin/PATCH/properties/desired/?$version=8"#
        ]],
    );
    check_hub(
        "devices/d1/messages/devicebound/prop1&prop2=&prop3=a%20string",
        expect![[
            r#"CloudToDevice { device_id: "d1", properties: PropertyBag { entries: [("prop1", None), ("prop2", Some("")), ("prop3", Some("a string"))] } } -> devices/d1/messages/devicebound/prop1&prop2=&prop3=a%20string"#
        ]],
    );
    check_hub(
        "$iothub/twin/PATCH/properties/desired/?x=1",
        expect![[
            r#"error: topic "$iothub/twin/PATCH/properties/desired/?x=1" lacks the $version parameter"#
        ]],
    );
    check_hub(
        "$iothub/methods/POST//?$rid=1",
        expect![[r#"error: "$iothub/methods/POST//?$rid=1" is not an IoT Hub device topic"#]],
    );
}

#[test]
fn subscriptions() {
    let parse = |filter: &str, module: Option<&str>| Subscription::parse(filter, "d1", module);
    assert_eq!(parse(METHODS_FILTER, None), Ok(Subscription::Methods));
    assert_eq!(parse(TWIN_RESPONSES_FILTER, None), Ok(Subscription::TwinResponses));
    assert_eq!(parse(DESIRED_PATCHES_FILTER, None), Ok(Subscription::DesiredPatches));
    assert_eq!(parse("devices/d1/messages/devicebound/#", None), Ok(Subscription::CloudToDevice));
    assert_eq!(parse("devices/d1/modules/m/inputs/#", Some("m")), Ok(Subscription::ModuleInputs));
    for refused in [
        "devices/d2/messages/devicebound/#",
        "#",
        "$iothub/#",
        "devices/+/messages/devicebound/#",
        "",
    ] {
        assert!(parse(refused, None).is_err(), "{refused}");
    }
    for sub in [Subscription::Methods, Subscription::CloudToDevice, Subscription::DesiredPatches] {
        assert_eq!(parse(&sub.filter("d1", None), None), Ok(sub));
    }
}

fn rid() -> impl Strategy<Value = String> {
    "[ -~]{1,20}"
}

proptest! {
    #[test]
    fn device_round_trip(rid in rid(), status in any::<i32>(), version in proptest::option::of(any::<u64>())) {
        for topic in [
            DevicePublish::TwinGet { rid: rid.clone() },
            DevicePublish::ReportedPatch { rid: rid.clone(), expected_version: version },
            DevicePublish::MethodResponse { status, rid: rid.clone() },
        ] {
            prop_assert_eq!(DevicePublish::parse(&topic.to_topic()).unwrap(), topic);
        }
    }

    #[test]
    fn hub_round_trip(rid in rid(), name in "[A-Za-z0-9_ .-]{1,20}", status in any::<u16>(), version in any::<u64>()) {
        for topic in [
            HubPublish::MethodRequest { name: name.clone(), rid: rid.clone() },
            HubPublish::TwinResponse { status, rid: rid.clone(), version: Some(version) },
            HubPublish::DesiredPatch { version },
        ] {
            prop_assert_eq!(HubPublish::parse(&topic.to_topic()).unwrap(), topic);
        }
    }

    #[test]
    fn parsers_never_panic(topic in ".{0,80}") {
        let _ = DevicePublish::parse(&topic);
        let _ = HubPublish::parse(&topic);
        let _ = Subscription::parse(&topic, "d1", None);
    }
}
