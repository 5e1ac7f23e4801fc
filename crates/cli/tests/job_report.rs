//! End to end: `hubsim job report --record` against a real hub and fleet, as a user runs them.
//!
//! Starts `hubsim hub` on port 0 in a temp dir, runs `hubsim fleet run` with a small profile (10
//! devices of which some never connect, 4 that answer after 7 s) and its ground-truth record, runs a
//! reboot job with a 5 s response timeout, and checks the report's counts and that every device's
//! job record agrees with what the device did.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

const PROFILE: &str = r#"
[fleet]
name = "report-test"
connect_rate = 200

[[group]]
name = "f3"
count = 10
id = "dev-{n:02}"
tags = { building = 43, floor = 3 }
[group.methods.reboot]
reboot = { down_for_s = 5 }
[group.connectivity]
never_connects = 0.3

[[group]]
name = "slow"
count = 4
id = "slow-{n:02}"
tags = { building = 43, floor = 3 }
[group.methods.default]
latency = { dist = "fixed", ms = 7000 }
"#;

/// Kills the child on drop so a failing test leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hubsim(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hubsim"));
    command.current_dir(dir).env("RUST_LOG", "warn").env_remove("HUBSIM_CONNECTION_STRING");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let output = hubsim(dir).args(args).output().expect("hubsim runs");
    assert!(output.status.success(), "hubsim {args:?} failed: {output:?}");
    output
}

/// Polls `condition` every 100 ms until it holds or `limit` passes.
fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connected_devices(dir: &Path) -> u64 {
    let query = "SELECT COUNT() AS n FROM devices WHERE connectionState = 'Connected'";
    let output = run(dir, &["query", query, "--output", "json"]);
    let value: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    value.pointer("/0/n").and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn job_report_reconciles_with_the_fleet_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("profile.toml"), PROFILE).unwrap();
    let hub_args =
        ["hub", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--events", "127.0.0.1:0"];
    let _hub = Running(
        hubsim(dir)
            .args(hub_args)
            .args(["--mqtts", "off", "--https", "off"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the hub", Duration::from_secs(30), || dir.join(".hubsim/endpoints.json").is_file());
    let fleet_args = ["fleet", "run", "profile.toml", "--plain-mqtt", "--record", "record.jsonl"];
    let mut fleet = Running(
        hubsim(dir)
            .args(fleet_args)
            .args(["--duration", "25s"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Seed 1 (the default): 4 of the 10 f3 devices never connect, so 10 devices come online.
    wait_for("the connected fleet", Duration::from_secs(30), || connected_devices(dir) >= 10);
    let create = ["job", "create-method", "--job-id", "j1", "--method", "reboot"];
    run(dir, &create.into_iter().chain(["--response-timeout", "5"]).collect::<Vec<_>>());
    wait_for("job j1", Duration::from_secs(60), || {
        hubsim(dir).args(["job", "watch", "j1"]).output().is_ok_and(|o| o.status.code().is_some())
    });
    let ended = fleet.0.wait().expect("the fleet ends after --duration");
    assert!(ended.success(), "fleet run failed: {ended}");
    let output = run(dir, &["job", "report", "j1", "--record", "record.jsonl", "--output", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(report["counts"]["devices"], 14, "{report:#}");
    assert_eq!(report["failuresByCode"]["504101 GatewayTimeout"], 4, "{report:#}");
    let offline = report["failuresByCode"]["404103 DeviceNotOnline"].as_u64().unwrap_or(0);
    assert!(offline >= 1, "seed 1 makes some devices never connect: {report:#}");
    assert_eq!(report["counts"]["completed"].as_u64(), Some(10 - offline), "{report:#}");
    let reconciliation = &report["reconciliation"];
    assert_eq!(reconciliation["agrees"], 14, "{reconciliation:#}");
    assert_eq!(reconciliation["disagrees"], 0, "{reconciliation:#}");
    assert!(dir.join("hubsim-report-j1/timeline.svg").is_file());
    assert!(dir.join("hubsim-report-j1/report.json").is_file());
}
