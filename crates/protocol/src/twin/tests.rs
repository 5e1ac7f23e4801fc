//! Tests of the twin document through its operations and renderings, written as scripts of steps.

use chrono::{DateTime, Duration, Utc};
use expect_test::{expect, Expect};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::device::{
    AuthenticationType, Capabilities, ConnectionState, DeviceStatus, X509Thumbprint,
};
use crate::ids::DeviceId;
use crate::time::parse_timestamp;

/// One operation on a twin.
enum Step {
    Desired(Value),
    Reported(Value, Option<u64>),
    Tags(Value),
    Patch(Value),
    Replace(Option<Value>, Option<Value>),
    IfMatch(&'static str),
}

fn start() -> DateTime<Utc> {
    parse_timestamp("2022-10-19T12:10:35.7728649Z").unwrap()
}

fn object(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn run(doc: &mut TwinDocument, step: &Step, now: DateTime<Utc>) -> Result<TwinUpdate, TwinError> {
    match step {
        Step::Desired(patch) => doc.apply_desired(&object(patch), now),
        Step::Reported(patch, expected) => doc.apply_reported(&object(patch), *expected, now),
        Step::Tags(patch) => doc.apply_tags(&object(patch), now),
        Step::Patch(body) => {
            doc.apply_patch(&TwinPatch::parse(body, ReportedInPatch::Reject)?, now)
        }
        Step::Replace(tags, desired) => doc.replace(
            tags.as_ref().map(object).as_ref(),
            desired.as_ref().map(object).as_ref(),
            now,
        ),
        Step::IfMatch(header) => doc
            .check_if_match(Some(header))
            .map(|()| doc.apply_tags(&Map::new(), now).expect("empty patch")),
    }
}

/// Runs the steps one second apart and prints each outcome, then the device view.
fn check(steps: &[Step], expect: Expect) {
    let mut doc = TwinDocument::new(start());
    let mut lines = Vec::new();
    for (idx, step) in steps.iter().enumerate() {
        let now = start() + Duration::seconds(i64::try_from(idx).unwrap() + 1);
        lines.push(match run(&mut doc, step, now) {
            Ok(update) => format!(
                "written={} push={} desired=${} reported=${} version={} etag={}",
                update.written,
                update.desired_push.map_or_else(|| "-".to_owned(), |push| push.to_string()),
                update.desired_version,
                update.reported_version,
                update.twin_version,
                update.etag
            ),
            Err(err) => format!("error {} {err}", err.error_code().code()),
        });
    }
    lines.push(format!("view {}", doc.device_view()));
    expect.assert_eq(&(lines.join("\n") + "\n"));
}

fn identity() -> TwinIdentity {
    TwinIdentity {
        device_id: DeviceId::new("derniertest").unwrap(),
        module_id: None,
        device_etag: Some("ODQ4NDk5Mzk=".into()),
        status: DeviceStatus::Enabled,
        status_reason: None,
        status_update_time: None,
        connection_state: ConnectionState::Disconnected,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication_type: AuthenticationType::Sas,
        x509_thumbprint: X509Thumbprint::default(),
        capabilities: Capabilities::default(),
        model_id: String::new(),
    }
}

#[test]
fn known_vectors() {
    expect![["AAAAAAAAAAc="]].assert_eq(&TwinEtag(7).to_string());
    assert_eq!(TwinEtag::parse("\"AAAAAAAAAAc=\""), Some(TwinEtag(7)));
    assert_eq!(TwinEtag::parse("MA=="), None);
    expect![[r#"{"desired":{"$version":1},"reported":{"$version":1}}"#]]
        .assert_eq(&TwinDocument::new(start()).device_view().to_string());
}

#[test]
fn versions_and_pushes() {
    check(
        &[
            Step::Reported(json!({"fw": "1.0", "net": {"rssi": -70}}), None),
            Step::Reported(json!({}), None),
            Step::Desired(json!({"telemetrySendFrequency": "5m", "route": null})),
            Step::Desired(json!({"route": null})),
            Step::Tags(json!({"building": "43"})),
            Step::Reported(json!({"net": {"rssi": null}}), Some(2)),
            Step::Reported(json!({"fw": "2.0"}), Some(9)),
            Step::Desired(json!({"telemetrySendFrequency": "5m"})),
        ],
        expect![[r#"
            written=true push=- desired=$1 reported=$2 version=1 etag=AAAAAAAAAAI=
            written=false push=- desired=$1 reported=$2 version=1 etag=AAAAAAAAAAI=
            written=true push={"telemetrySendFrequency":"5m","route":null,"$version":2} desired=$2 reported=$2 version=2 etag=AAAAAAAAAAM=
            written=false push=- desired=$2 reported=$2 version=2 etag=AAAAAAAAAAM=
            written=true push=- desired=$2 reported=$2 version=3 etag=AAAAAAAAAAQ=
            written=true push=- desired=$2 reported=$3 version=3 etag=AAAAAAAAAAU=
            error 412001 expected reported $version 9, but it is 3
            written=true push={"telemetrySendFrequency":"5m","$version":3} desired=$3 reported=$3 version=4 etag=AAAAAAAAAAY=
            view {"desired":{"telemetrySendFrequency":"5m","$version":3},"reported":{"fw":"1.0","net":{},"$version":3}}
        "#]],
    );
}

#[test]
fn service_patches() {
    check(
        &[
            Step::Patch(
                json!({"tags": {"a": 1}, "properties": {"desired": {"x": {"y": 1}}, "reported": {}}}),
            ),
            Step::Patch(json!({"properties": {"reported": {"r": 1}}})),
            Step::Patch(json!({"tags": {"a": "b.c"}, "properties": {"desired": {"bad key": 1}}})),
            Step::Patch(json!({"tags": [1]})),
            Step::Patch(json!({"properties": {"desired": {"x": {"z": [1, 2]}}}})),
            Step::Patch(
                json!({"properties": {"desired": {"x": {"y": 2}, "$metadata": {}, "$version": 3}}}),
            ),
            Step::IfMatch("\"AAAAAAAAAAQ=\""),
            Step::IfMatch("\"AAAAAAAAAAE=\""),
            Step::IfMatch("*"),
        ],
        expect![[r#"
            written=true push={"x":{"y":1},"$version":2} desired=$2 reported=$1 version=2 etag=AAAAAAAAAAI=
            error 400004 properties.reported cannot be written by the service
            error 400004 property name "bad key" at properties.desired contains ' '; control characters, '.', '$' and ' ' are not allowed
            error 400004 tags must be a json object
            written=true push={"x":{"z":[1,2]},"$version":3} desired=$3 reported=$1 version=3 etag=AAAAAAAAAAM=
            written=true push={"x":{"y":2},"$version":4} desired=$4 reported=$1 version=4 etag=AAAAAAAAAAQ=
            written=false push=- desired=$4 reported=$1 version=4 etag=AAAAAAAAAAQ=
            error 412001 etag AAAAAAAAAAE= does not match the twin's etag AAAAAAAAAAQ=
            written=false push=- desired=$4 reported=$1 version=4 etag=AAAAAAAAAAQ=
            view {"desired":{"x":{"y":2,"z":[1,2]},"$version":4},"reported":{"$version":1}}
        "#]],
    );
}

#[test]
fn replace_and_limits() {
    let big: Map<String, Value> =
        (0..9).map(|idx| (format!("k{idx}"), json!("v".repeat(4000)))).collect();
    check(
        &[
            Step::Desired(json!({"a": 1, "b": {"c": 2}})),
            Step::Replace(Some(json!({"t": 1})), Some(json!({"z": 26, "gone": null}))),
            Step::Replace(None, None),
            Step::Desired(Value::Object(big)),
            Step::Reported(json!({"n": 4503599627370496_i64}), None),
        ],
        expect![[r#"
            written=true push={"a":1,"b":{"c":2},"$version":2} desired=$2 reported=$1 version=2 etag=AAAAAAAAAAI=
            written=true push={"z":26,"$version":3} desired=$3 reported=$1 version=3 etag=AAAAAAAAAAM=
            written=false push=- desired=$3 reported=$1 version=3 etag=AAAAAAAAAAM=
            error 413001 properties.desired would be 36027 bytes; the limit is 32768
            error 400004 integer 4503599627370496 at properties.reported.n is out of range [-4503599627370496, 4503599627370495]
            view {"desired":{"z":26,"$version":3},"reported":{"$version":1}}
        "#]],
    );
}

#[test]
fn service_twin_shape() {
    let mut doc = TwinDocument::new(start());
    let later = start() + Duration::seconds(1);
    doc.apply_reported(&object(&json!({"net": {"rssi": -70}, "fw": "1"})), None, later).unwrap();
    doc.apply_desired(&object(&json!({"test": "newtest23456", "deep": {"a": 1}})), later).unwrap();
    doc.apply_desired(&object(&json!({"deep": {"a": null}})), later + Duration::seconds(1))
        .unwrap();
    let twin = doc.to_service_twin(&identity());
    let text = serde_json::to_string_pretty(&twin).unwrap();
    expect![[r#"
        {
          "deviceId": "derniertest",
          "etag": "AAAAAAAAAAQ=",
          "deviceEtag": "ODQ4NDk5Mzk=",
          "status": "enabled",
          "statusUpdateTime": "0001-01-01T00:00:00Z",
          "connectionState": "Disconnected",
          "lastActivityTime": "0001-01-01T00:00:00Z",
          "cloudToDeviceMessageCount": 0,
          "authenticationType": "sas",
          "x509Thumbprint": {
            "primaryThumbprint": null,
            "secondaryThumbprint": null
          },
          "modelId": "",
          "version": 3,
          "properties": {
            "desired": {
              "test": "newtest23456",
              "deep": {},
              "$metadata": {
                "$lastUpdated": "2022-10-19T12:10:37.7728649Z",
                "$lastUpdatedVersion": 3,
                "test": {
                  "$lastUpdated": "2022-10-19T12:10:36.7728649Z",
                  "$lastUpdatedVersion": 2
                },
                "deep": {
                  "$lastUpdated": "2022-10-19T12:10:37.7728649Z",
                  "$lastUpdatedVersion": 3
                }
              },
              "$version": 3
            },
            "reported": {
              "net": {
                "rssi": -70
              },
              "fw": "1",
              "$metadata": {
                "$lastUpdated": "2022-10-19T12:10:36.7728649Z",
                "net": {
                  "$lastUpdated": "2022-10-19T12:10:36.7728649Z",
                  "rssi": {
                    "$lastUpdated": "2022-10-19T12:10:36.7728649Z"
                  }
                },
                "fw": {
                  "$lastUpdated": "2022-10-19T12:10:36.7728649Z"
                }
              },
              "$version": 2
            }
          },
          "capabilities": {
            "iotEdge": false
          }
        }"#]]
    .assert_eq(&text);
    let back: ServiceTwin = serde_json::from_str(&text).unwrap();
    assert_eq!(back, twin);
}

#[test]
fn mqtt_error_body() {
    let err = parse_section_patch(b"[1,2]").unwrap_err();
    let body = String::from_utf8(err.mqtt_error_body(start())).unwrap();
    expect![[r#"400 {"errorCode":400004,"message":"patch must be a json object","timestampUtc":"2022-10-19T12:10:35.7728649Z"}"#]]
        .assert_eq(&format!("{} {body}", err.mqtt_status()));
    let err = parse_section_patch(b"{").unwrap_err();
    expect![["400012 invalid json: EOF while parsing an object at line 1 column 1"]]
        .assert_eq(&format!("{} {err}", err.error_code().code()));
}

fn small_object() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-99_i64..99).prop_map(Value::from),
        "[a-z]{0,3}".prop_map(Value::from)
    ];
    let value = leaf.prop_recursive(2, 12, 3, |inner| {
        prop::collection::btree_map("[a-c]", inner, 0..3)
            .prop_map(|map| Value::Object(map.into_iter().collect()))
    });
    prop::collection::btree_map("[a-d]", value, 0..4).prop_map(|map| map.into_iter().collect())
}

proptest! {
    #[test]
    fn document_round_trips_through_serde(desired in small_object(), reported in small_object(), tags in small_object()) {
        let mut doc = TwinDocument::new(start());
        doc.apply_desired(&desired, start()).unwrap();
        doc.apply_reported(&reported, None, start()).unwrap();
        doc.apply_tags(&tags, start()).unwrap();
        let stored = serde_json::to_string(&doc).unwrap();
        let back: TwinDocument = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(&back, &doc);
        let twin = doc.to_service_twin(&identity());
        let twin_back: ServiceTwin = serde_json::from_str(&serde_json::to_string(&twin).unwrap()).unwrap();
        prop_assert_eq!(twin_back, twin);
    }

    #[test]
    fn device_view_matches_sections(desired in small_object(), reported in small_object()) {
        let mut doc = TwinDocument::new(start());
        doc.apply_desired(&desired, start()).unwrap();
        doc.apply_reported(&reported, None, start()).unwrap();
        let mut view = doc.device_view();
        let mut expected_desired = desired.clone();
        expected_desired.insert("$version".into(), json!(doc.desired().version()));
        prop_assert_eq!(view["desired"].take(), Value::Object(expected_desired));
        prop_assert_eq!(view["reported"]["$version"].take(), json!(if reported.is_empty() { 1 } else { 2 }));
    }
}
