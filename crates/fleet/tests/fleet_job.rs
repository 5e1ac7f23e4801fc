//! A 2,000-device fleet against the real hub (plain MQTT and HTTP on port 0): a method job's
//! per-device outcomes match what the profile implies, and a second run with the same seed (which
//! re-registers the same devices, exercising the 409 path) produces the same outcomes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleet::behaviour::method::MethodDecision;
use fleet::{DevicePlan, FleetConfig, FleetStats, Shard, Target};
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::connection_string::ServiceConnectionString;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HOST: &str = "fleet-test.azure-devices.net";
const DEVICES: u64 = 2000;
const SEED: u64 = 2026;

const PROFILE: &str = r#"
[fleet]
connect_rate = 2000

[[group]]
name = "floor"
count = 2000
id = "b{building}-f{floor}-{n:04}"
tags = { building = 43, floor = { cycle = [1, 2, 3, 4] } }
reported = { firmware = "1.0.0" }
[group.methods.ping]
latency = { dist = "uniform", min_ms = 0, max_ms = 40 }
no_answer = 0.05
error = { probability = 0.1, status = 503, payload = { message = "busy", device = "{deviceId}" } }
response = { ok = true, device = "{deviceId}", floor = "{floor}" }
[group.connectivity]
never_connects = 0.1
"#;

struct TestHub {
    handle: HubHandle,
    shutdown: CancellationToken,
    mqtt: std::net::SocketAddr,
    http: std::net::SocketAddr,
    http_client: reqwest::Client,
}

impl TestHub {
    async fn start(dir: &Path) -> TestHub {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = HubListeners { mqtt: Some(bind().await), http: Some(bind().await), ..HubListeners::default() };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(HubConfig::new(dir, HOST), listeners, shutdown.clone()).await.unwrap();
        let addrs = handle.addrs();
        TestHub { mqtt: addrs.mqtt.unwrap(), http: addrs.http.unwrap(), handle, shutdown, http_client: reqwest::Client::new() }
    }

    fn service(&self) -> ServiceConnectionString {
        ServiceConnectionString {
            host_name: HOST.to_owned(),
            shared_access_key_name: "iothubowner".to_owned(),
            shared_access_key: self.handle.owner_key().to_owned(),
        }
    }

    async fn rest(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
        let expiry = u64::try_from(chrono::Utc::now().timestamp() + 3600).unwrap();
        let sas = self.service().sas_token(expiry).unwrap();
        let url = format!("http://{}{path}?api-version=2021-04-12", self.http);
        let mut request = self.http_client.request(method, url).header("Authorization", sas);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let continuation = response.headers().get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, continuation, body)
    }

    /// Runs a `ping` method job on every device and returns `deviceId -> outcome summary`.
    async fn ping_job(&self, job_id: &str) -> BTreeMap<String, String> {
        let body = json!({
            "type": "scheduleDeviceMethod",
            "cloudToDeviceMethod": {"methodName": "ping", "payload": {"n": 1}, "responseTimeoutInSeconds": 5},
            "queryCondition": "*",
            "maxExecutionTimeInSeconds": 300,
        });
        let (status, _, created) = self.rest(Method::PUT, &format!("/jobs/v2/{job_id}"), Some(body), &[]).await;
        assert_eq!(status, 200, "{created}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, _, job) = self.rest(Method::GET, &format!("/jobs/v2/{job_id}"), None, &[]).await;
            match job["status"].as_str() {
                Some("completed") => break,
                Some("failed" | "cancelled") => panic!("job ended badly: {job}"),
                _ => assert!(Instant::now() < deadline, "job did not finish: {job}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.records(job_id).await.iter().map(|r| (r["deviceId"].as_str().unwrap().to_owned(), outcome(r))).collect()
    }

    async fn records(&self, job_id: &str) -> Vec<Value> {
        let query = json!({"query": format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'")});
        let mut records = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "1000")];
            if let Some(token) = &continuation {
                headers.push(("x-ms-continuation", token.as_str()));
            }
            let (status, next, body) = self.rest(Method::POST, "/devices/query", Some(query.clone()), &headers).await;
            assert_eq!(status, 200, "{body}");
            records.extend(body.as_array().cloned().unwrap_or_default());
            continuation = next;
            if continuation.is_none() {
                return records;
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle.wait()).await.expect("the hub drains");
    }
}

/// `completed <status> <payload>` or `failed <error code>`.
fn outcome(record: &Value) -> String {
    match record["status"].as_str() {
        Some("completed") => {
            let response = &record["outcome"]["deviceMethodResponse"];
            format!("completed {} {}", response["status"], response["payload"])
        }
        other => format!("{} {}", other.unwrap_or("?"), record["error"]["code"].as_str().unwrap_or("-")),
    }
}

/// What the profile says each device does with the first `ping`.
fn expected(plans: &[DevicePlan]) -> BTreeMap<String, String> {
    plans
        .iter()
        .map(|plan| {
            let outcome = if plan.schedule().never_connects() {
                "failed DeviceNotOnline".to_owned()
            } else {
                match plan.method_decision("ping", 0, &json!({"n": 1})) {
                    MethodDecision::NoAnswer => "failed GatewayTimeout".to_owned(),
                    MethodDecision::Answer { status, payload, .. } => format!("completed {status} {payload}"),
                }
            };
            (plan.device_id.to_string(), outcome)
        })
        .collect()
}

/// Runs the fleet until it is fully connected, runs the job, stops the fleet; returns the outcomes.
async fn run_once(hub: &TestHub, plans: Vec<DevicePlan>, job_id: &str, record: &Path) -> BTreeMap<String, String> {
    let connecting = plans.iter().filter(|p| !p.schedule().never_connects()).count() as u64;
    let mut cfg = FleetConfig::new(Target::Registry { service: hub.service(), rest_url: Some(format!("http://{}", hub.http)) }, 2000.0);
    cfg.mqtt_addr = Some(hub.mqtt);
    cfg.mqtt_tls = false;
    cfg.record = Some(record.to_path_buf());
    let stats = Arc::new(FleetStats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let run = tracker.spawn(fleet::run(cfg, plans, stop.clone(), stats.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.snapshot().connected < connecting {
        assert!(Instant::now() < deadline, "fleet did not connect: {:?}", stats.snapshot());
        assert!(!run.is_finished(), "fleet run ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcomes = hub.ping_job(job_id).await;
    stop.cancel();
    let report = run.await.unwrap().unwrap();
    let snap = report.stats;
    assert_eq!(snap.devices, DEVICES);
    assert_eq!(snap.registered, DEVICES);
    assert_eq!(snap.calls, connecting, "{snap:?}");
    assert_eq!(snap.calls_ok + snap.calls_error + snap.calls_silent, snap.calls);
    assert_eq!(snap.connected, 0, "everything disconnected at the end");
    assert_eq!(snap.never_connect, DEVICES - connecting);
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_job_outcomes_match_the_profile_and_repeat_under_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let profile = fleet::profile::parse(PROFILE, Path::new("test.toml")).unwrap();
    let hub = TestHub::start(dir.path()).await;

    let plans = profile.expand(SEED, Shard::ALL).unwrap();
    let expected = expected(&plans);
    let kinds = |outcomes: &BTreeMap<String, String>| {
        let mut counts = BTreeMap::new();
        for o in outcomes.values() {
            *counts.entry(o.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).or_insert(0) += 1;
        }
        counts
    };
    // The profile's mix shows up: some of every kind.
    let expected_kinds = kinds(&expected);
    assert_eq!(expected_kinds.len(), 4, "{expected_kinds:?}");

    let record = dir.path().join("first.jsonl");
    let first = run_once(&hub, plans, "ping-first", &record).await;
    assert_eq!(first.len(), DEVICES as usize);
    let mismatches: Vec<String> =
        expected.iter().filter(|(id, o)| first.get(*id) != Some(*o)).map(|(id, o)| format!("{id}: expected {o}, got {:?}", first.get(id))).take(10).collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // Ground truth: one method line per device that connected, with the same statuses.
    let text = std::fs::read_to_string(&record).unwrap();
    let methods: Vec<Value> =
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|l| l["event"] == "method").collect();
    assert_eq!(methods.len(), expected.values().filter(|o| !o.contains("DeviceNotOnline")).count());
    for line in &methods {
        let want = &expected[line["device"].as_str().unwrap()];
        let got = match line["status"].as_i64() {
            Some(status) => format!("completed {status} {}", line["payload"]),
            None => "failed GatewayTimeout".to_owned(),
        };
        assert_eq!(&got, want);
    }

    // Same profile, same seed, a fresh run (devices already exist): the same per-device outcomes.
    let plans = profile.expand(SEED, Shard::ALL).unwrap();
    let second = run_once(&hub, plans, "ping-second", &dir.path().join("second.jsonl")).await;
    assert_eq!(first, second);
    hub.stop().await;
}
