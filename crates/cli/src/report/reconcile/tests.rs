//! Reconciliation tests as data: a small record file next to the report fixture's job records.

use std::path::Path;

use expect_test::{expect, Expect};

use super::*;
use crate::report::tests::records;

fn check(record: &str, expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("record.jsonl");
    std::fs::write(&path, record).unwrap();
    let text = match read_record(&path) {
        Ok(truth) => {
            let result = reconcile(Path::new("record.jsonl"), &records(), "reboot", 10_000, &truth);
            let mut lines = vec![format!(
                "agree {} disagree {} unknown {}",
                result.count(Verdict::Agrees),
                result.count(Verdict::Disagrees),
                result.count(Verdict::Unknown)
            )];
            lines.extend(result.devices.iter().map(|d| {
                format!("{} {}: hub says {}; {}", d.verdict.mark(), d.device_id, d.hub, d.device)
            }));
            lines.join("\n")
        }
        Err(err) => err.to_string().replace(&path.display().to_string(), "FILE"),
    };
    expect.assert_eq(&text);
}

const AGREEING: &str = r#"{"t_ms":5,"device":"b43-f3-0001","index":0,"event":"connected"}
{"t_ms":900,"device":"b43-f3-0001","index":0,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":940,"status":200,"payload":null}
{"t_ms":941,"device":"b43-f3-0001","index":0,"event":"reboot","down_ms":30000}
{"t_ms":900,"device":"b43-f3-0002","index":1,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":970,"status":200,"payload":null}
{"t_ms":0,"device":"b43-f3-0003","index":2,"event":"never_connects"}
{"t_ms":900,"device":"b43-f3-slow-01","index":3,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":9100,"status":200,"payload":{"ok":true}}
{"t_ms":900,"device":"b43-f3-slow-02","index":4,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":null,"status":null,"payload":null}
{"t_ms":99,"device":"b43-f3-slow-02","index":4,"event":"desired","version":2,"acked":true}
"#;

#[test]
fn every_device_agrees_with_its_record() {
    check(
        AGREEING,
        expect![[r#"
            agree 5 disagree 0 unknown 0
            ✓ b43-f3-0001: hub says completed 200; device answered 200
            ✓ b43-f3-0002: hub says completed 200; device answered 200
            ✓ b43-f3-0003: hub says failed 404103 DeviceNotOnline; device never connects (profile)
            ✓ b43-f3-slow-01: hub says completed 200; device answered 200
            ✓ b43-f3-slow-02: hub says failed 504101 GatewayTimeout; device received the call and never answered"#]],
    );
}

#[test]
fn contradictions_are_listed() {
    let record = r#"{"t_ms":900,"device":"b43-f3-0001","index":0,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":940,"status":500,"payload":null}
{"t_ms":5,"device":"b43-f3-0003","index":2,"event":"connected"}
{"t_ms":900,"device":"b43-f3-0003","index":2,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":920,"status":200,"payload":null}
{"t_ms":900,"device":"b43-f3-slow-01","index":3,"event":"method","method":"other","call":0,"received_ms":900,"answered_ms":901,"status":200,"payload":null}
{"t_ms":900,"device":"b43-f3-slow-02","index":4,"event":"method","method":"reboot","call":0,"received_ms":900,"answered_ms":10000,"status":200,"payload":null}
"#;
    check(
        record,
        expect![[r#"
            agree 1 disagree 3 unknown 1
            ✗ b43-f3-0001: hub says completed 200; device answered 500 after 40 ms
            ? b43-f3-0002: hub says completed 200; not in the record
            ✗ b43-f3-0003: hub says failed 404103 DeviceNotOnline; device answered 200 after 20 ms
            ✗ b43-f3-slow-01: hub says completed 200; the device never received the call
            ✓ b43-f3-slow-02: hub says failed 504101 GatewayTimeout; device answered after 9100 ms, past the 10 s timeout"#]],
    );
}

#[test]
fn bad_record_lines_name_the_line() {
    check(
        "{\"t_ms\":1,\"device\":\"d\",\"index\":0,\"event\":\"connected\"}\nnot json\n",
        expect!["FILE:2: not a fleet record line: expected ident at line 1 column 2"],
    );
    check(
        "{\"t_ms\":1,\"index\":0,\"event\":\"connected\"}\n",
        expect!["FILE:1: not a fleet record line: missing field `device` at line 1 column 40"],
    );
}

#[test]
fn a_missing_record_is_an_error() {
    let err = read_record(Path::new("/nonexistent/record.jsonl")).unwrap_err();
    expect!["could not read the fleet record /nonexistent/record.jsonl: No such file or directory (os error 2)"]
        .assert_eq(&err.to_string());
}
