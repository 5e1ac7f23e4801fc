//! End to end: `hubsim demo` with a small fleet, its numbers checked against what the profile
//! implies for the seed.
//!
//! The test rebuilds the demo's fleet from the profile file, the seed and the group sizes the demo
//! reports, asks every targeted device's plan what it does with the first `reboot` call (never
//! connects → 404103; never answers or answers after the response timeout → 504101; otherwise
//! completed with its status), and compares that with the job's records in the demo's JSON report.
//! Devices whose planned answer lands within a second of the timeout may go either way (network
//! delay), so they are only required to be completed or 504101.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet::behaviour::method::MethodDecision;
use serde_json::Value;

const DEVICES: u64 = 60;
const SEED: u64 = 1;
const RESPONSE_TIMEOUT_MS: u64 = 5_000;
const MARGIN_MS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Completed(i64),
    Failed(u64),
    CompletedOrTimeout(i64),
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary to completion (bounded), returning exit status and stdout.
fn run_demo(report_dir: &Path) -> (std::process::ExitStatus, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_hubsim"))
        .args(["demo", "--devices", &DEVICES.to_string(), "--seed", &SEED.to_string()])
        .args(["--at", "+2s", "--response-timeout", &(RESPONSE_TIMEOUT_MS / 1000).to_string()])
        .args(["--output", "json", "--report-dir"])
        .arg(report_dir)
        .env("RUST_LOG", "warn")
        .env_remove("HUBSIM_CONNECTION_STRING")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hubsim binary starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("hubsim demo finishes within 3 minutes")
        .expect("hubsim demo output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, stdout, stderr)
}

/// What each device on floor 3 of building 43 must end with, from the profile alone.
fn expected_outcomes(groups: &serde_json::Map<String, Value>) -> BTreeMap<String, Expected> {
    let path = repo_root().join("fleet-profiles/building-43.toml");
    let mut profile = fleet::load(&path).expect("the profile loads");
    let mut first_index = 0;
    for group in &mut profile.groups {
        group.count = groups[&group.name].as_u64().expect("group sizes are numbers");
        group.first_index = first_index;
        first_index += group.count;
    }
    assert_eq!(first_index, DEVICES, "the demo runs exactly --devices devices");
    let plans = profile.expand(SEED, fleet::Shard::ALL).expect("the profile expands");
    plans
        .iter()
        .filter(|plan| plan.tags["building"] == "43" && plan.tags["floor"] == 3)
        .map(|plan| (plan.device_id.to_string(), expected(plan)))
        .collect()
}

fn expected(plan: &fleet::DevicePlan) -> Expected {
    if plan.schedule().never_connects() {
        return Expected::Failed(404103);
    }
    match plan.method_decision("reboot", 0, &Value::Null) {
        MethodDecision::NoAnswer => Expected::Failed(504101),
        MethodDecision::Answer { latency, status, .. } => {
            let ms = latency.as_millis() as u64;
            if ms + MARGIN_MS < RESPONSE_TIMEOUT_MS {
                Expected::Completed(i64::from(status))
            } else if ms > RESPONSE_TIMEOUT_MS + MARGIN_MS {
                Expected::Failed(504101)
            } else {
                Expected::CompletedOrTimeout(i64::from(status))
            }
        }
    }
}

/// What the job's records say, per device: completed with a status, or failed with a code.
fn actual_outcomes(report: &Value) -> BTreeMap<String, (Option<i64>, Option<u64>)> {
    let mut actual = BTreeMap::new();
    for completion in report["completions"].as_array().expect("completions") {
        let device = completion["deviceId"].as_str().expect("device id").to_owned();
        actual.insert(device, (completion["methodStatus"].as_i64(), None));
    }
    for failure in report["failures"].as_array().expect("failures") {
        let device = failure["deviceId"].as_str().expect("device id").to_owned();
        actual.insert(device, (None, failure["code"].as_u64()));
    }
    actual
}

#[test]
fn demo_numbers_match_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let (status, stdout, stderr) = run_demo(&report_dir);
    assert!(status.success(), "hubsim demo failed ({status}):\n{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!("stdout is one JSON document ({err}):\n{stdout}\nstderr:\n{stderr}")
    });
    assert_eq!(report["status"], "completed", "{report:#}");
    assert_eq!(report["queryCondition"], "tags.building = '43' AND tags.floor = 3");

    let expected = expected_outcomes(report["fleet"]["groups"].as_object().expect("fleet groups"));
    let codes: Vec<&Expected> = expected.values().collect();
    assert!(
        codes.contains(&&Expected::Failed(404103)),
        "seed gives an offline device: {expected:?}"
    );
    assert!(
        codes.contains(&&Expected::Failed(504101)),
        "seed gives a timed-out device: {expected:?}"
    );
    assert!(codes.iter().any(|e| matches!(e, Expected::Completed(200))), "{expected:?}");

    let actual = actual_outcomes(&report);
    assert_eq!(report["counts"]["devices"], expected.len() as u64, "{report:#}");
    assert_eq!(actual.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (device, want) in &expected {
        let got = actual[device];
        let ok = match want {
            Expected::Completed(status) => got == (Some(*status), None),
            Expected::Failed(code) => got == (None, Some(*code)),
            Expected::CompletedOrTimeout(status) => {
                got == (Some(*status), None) || got == (None, Some(504101))
            }
        };
        assert!(ok, "{device}: expected {want:?}, the hub recorded {got:?}\n{report:#}");
    }
    let succeeded = expected.values().filter(|e| matches!(e, Expected::Completed(_))).count();
    let completed = report["counts"]["completed"].as_u64().unwrap() as usize;
    assert!(completed >= succeeded, "{report:#}");

    let reconciliation = &report["reconciliation"];
    assert_eq!(reconciliation["agrees"], expected.len() as u64, "{reconciliation:#}");
    assert_eq!(reconciliation["disagrees"], 0, "{reconciliation:#}");
    for file in ["report.json", "timeline.svg", "record.jsonl"] {
        assert!(report_dir.join(file).is_file(), "{file} is written");
    }
    let svg = std::fs::read_to_string(report_dir.join("timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("GatewayTimeout"));
}
