//! Jobs crash check: SIGKILL the hub in the middle of a 10k-device method job and of a twin job,
//! restart it, and check that each job finishes without invoking or patching any device twice.
//!
//! Throughput and start accuracy of jobs moved to `hubsim bench` (see docs/benchmarks.md), which
//! runs them side by side with the machine's TCP ceiling; this example keeps what `hubsim bench`
//! does not do: killing the hub.
//!
//! The hub runs in a child process (this binary with `hub DIR N MQTT_PORT HTTP_PORT`), so it can be
//! killed and the simulated devices keep their own file-descriptor budget. Devices are minimal MQTT
//! clients on rumqttc's codec that answer every method with 200 after a delay and reconnect when the
//! hub goes away.
//!
//! `cargo run --release -p hub --example bench_jobs -- [--devices 10000]`

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark may stop at the first failure")]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use hub::{Hub, HubConfig, HubListeners};
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::topic::HubPublish;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HOST: &str = "hubsim-bench.azure-devices.net";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("hub") => runtime.block_on(run_hub(&args[1..])),
        _ => runtime.block_on(run_bench(&args)),
    }
}

// ---------------------------------------------------------------------------------------------
// Child: the hub.

async fn run_hub(args: &[String]) -> Result<(), BoxError> {
    let [dir, n_devices, mqtt_port, http_port] = args else {
        return Err("usage: hub DIR N MQTT_PORT HTTP_PORT".into());
    };
    let n_devices: usize = n_devices.parse()?;
    let bind = |port: &String| {
        let port: u16 = port.parse().unwrap_or(0);
        tokio::net::TcpListener::bind(("127.0.0.1", port))
    };
    let listeners = HubListeners {
        mqtt: Some(bind(mqtt_port).await?),
        http: Some(bind(http_port).await?),
        ..HubListeners::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Hub::spawn(HubConfig::new(dir, HOST), listeners, shutdown.clone()).await?;
    let registry = handle.registry().clone();
    for chunk in (0..n_devices).collect::<Vec<_>>().chunks(1000) {
        let creates = chunk.iter().map(|idx| {
            let registry = registry.clone();
            async move {
                let id = DeviceId::new(device_name(*idx)).unwrap();
                if registry.get_device(&id).is_ok() {
                    return Ok(());
                }
                let key = device_key(*idx);
                let body = format!(r#"{{"deviceId":"{id}","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#);
                let request = DeviceRequest::parse(body.as_bytes()).unwrap();
                registry.create_device(&id, &request).await.map(|_| ())
            }
        });
        for res in futures::future::join_all(creates).await {
            res?;
        }
    }
    println!("READY {}", handle.owner_key());
    std::io::stdout().flush()?;
    // Runs until the parent closes stdin (or kills the process).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            line.clear();
        }
    })
    .await?;
    shutdown.cancel();
    handle.wait().await;
    Ok(())
}

fn device_name(idx: usize) -> String {
    format!("bench-{idx:05}")
}

fn device_key(idx: usize) -> String {
    protocol::sas::encode_key(format!("bench key of device {idx:05} ....").as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Parent: devices, jobs, measurements.

struct HubProcess {
    child: Child,
    owner_key: String,
    mqtt: SocketAddr,
    http: SocketAddr,
}

fn free_port() -> Result<u16, BoxError> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_hub(
    dir: &std::path::Path,
    n_devices: usize,
    ports: (u16, u16),
) -> Result<HubProcess, BoxError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("hub")
        .arg(dir)
        .arg(n_devices.to_string())
        .arg(ports.0.to_string())
        .arg(ports.1.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let owner_key = line
        .trim()
        .strip_prefix("READY ")
        .ok_or_else(|| format!("the hub said {line:?}"))?
        .to_owned();
    Ok(HubProcess {
        child,
        owner_key,
        mqtt: ([127, 0, 0, 1], ports.0).into(),
        http: ([127, 0, 0, 1], ports.1).into(),
    })
}

impl HubProcess {
    /// Graceful stop: close stdin, wait.
    fn stop(mut self) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }

    /// SIGKILL.
    fn kill(mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// What the simulated devices saw, per device.
struct Fleet {
    calls: Vec<AtomicU32>,
    patches: Vec<AtomicU32>,
    connected: AtomicUsize,
    answer_delay: Duration,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Fleet {
    async fn connect(addr: SocketAddr, n_devices: usize, answer_delay: Duration) -> Arc<Fleet> {
        let fleet = Arc::new(Fleet {
            calls: (0..n_devices).map(|_| AtomicU32::new(0)).collect(),
            patches: (0..n_devices).map(|_| AtomicU32::new(0)).collect(),
            connected: AtomicUsize::new(0),
            answer_delay,
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        for idx in 0..n_devices {
            fleet.tracker.spawn(device_task(fleet.clone(), addr, idx));
            if idx % 200 == 199 {
                // Ramp: let the hub accept a batch before the next one.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        fleet.wait_connected(n_devices).await;
        fleet
    }

    async fn wait_connected(&self, n_devices: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.connected.load(Ordering::Relaxed) < n_devices {
            assert!(
                Instant::now() < deadline,
                "only {} of {n_devices} devices connected",
                self.connected.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn device_task(fleet: Arc<Fleet>, addr: SocketAddr, idx: usize) {
    while !fleet.stop.is_cancelled() {
        let _ = tokio::select! {
            res = device_session(&fleet, addr, idx) => res,
            () = fleet.stop.cancelled() => return,
        };
        tokio::time::sleep(Duration::from_millis(100 + (idx % 100) as u64)).await;
    }
}

/// One connection: CONNECT, subscribe, answer until the hub closes it.
async fn device_session(fleet: &Fleet, addr: SocketAddr, idx: usize) -> Result<(), BoxError> {
    let id = device_name(idx);
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(1024);
    let expiry = u64::try_from(Utc::now().timestamp() + 3600)?;
    let password =
        protocol::sas::generate(&format!("{HOST}/devices/{id}"), &device_key(idx), None, expiry)?;
    let mut connect = Connect::new(id.as_str());
    connect.keep_alive = 0;
    connect.clean_session = true;
    connect.set_login(
        protocol::username::MqttUsername::build(
            HOST,
            &id,
            None,
            protocol::API_VERSION,
            "hubsim-bench",
        ),
        password,
    );
    write(&mut stream, Packet::Connect(connect)).await?;
    expect_packet(&mut stream, &mut buf, "CONNACK").await?;
    for (pkid, filter) in
        [(1, "$iothub/twin/PATCH/properties/desired/#"), (2, "$iothub/methods/POST/#")]
    {
        let mut subscribe = Subscribe::new(filter, QoS::AtMostOnce);
        subscribe.pkid = pkid;
        write(&mut stream, Packet::Subscribe(subscribe)).await?;
        expect_packet(&mut stream, &mut buf, "SUBACK").await?;
    }
    fleet.connected.fetch_add(1, Ordering::Relaxed);
    let res = serve_device(fleet, &mut stream, &mut buf, idx).await;
    fleet.connected.fetch_sub(1, Ordering::Relaxed);
    res
}

async fn serve_device(
    fleet: &Fleet,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    idx: usize,
) -> Result<(), BoxError> {
    loop {
        let Packet::Publish(publish) = read(stream, buf).await? else { continue };
        match HubPublish::parse(&publish.topic) {
            Ok(HubPublish::MethodRequest { rid, .. }) => {
                fleet.calls[idx].fetch_add(1, Ordering::Relaxed);
                if !fleet.answer_delay.is_zero() {
                    tokio::time::sleep(fleet.answer_delay).await;
                }
                let topic = format!("$iothub/methods/res/200/?$rid={rid}");
                write(
                    stream,
                    Packet::Publish(Publish::new(
                        topic,
                        QoS::AtMostOnce,
                        b"{\"ok\":true}".to_vec(),
                    )),
                )
                .await?;
            }
            Ok(HubPublish::DesiredPatch { .. }) => {
                fleet.patches[idx].fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

async fn write(stream: &mut TcpStream, packet: Packet) -> Result<(), BoxError> {
    let mut out = BytesMut::new();
    packet.write(&mut out, usize::MAX)?;
    stream.write_all(&out).await?;
    Ok(())
}

async fn read(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Packet, BoxError> {
    loop {
        match Packet::read(buf, usize::MAX) {
            Ok(packet) => return Ok(packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(err) => return Err(err.into()),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err("the hub closed the connection".into());
        }
    }
}

async fn expect_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    what: &str,
) -> Result<(), BoxError> {
    let packet = tokio::time::timeout(Duration::from_secs(30), read(stream, buf)).await??;
    match (what, packet) {
        ("CONNACK", Packet::ConnAck(ack)) if ack.code as u8 == 0 => Ok(()),
        ("SUBACK", Packet::SubAck(_)) => Ok(()),
        (_, other) => Err(format!("expected {what}, got {other:?}").into()),
    }
}

/// A REST client for the child hub.
struct Rest {
    client: reqwest::Client,
    base: String,
    owner_key: String,
}

impl Rest {
    fn new(hub: &HubProcess) -> Rest {
        Rest {
            client: reqwest::Client::new(),
            base: format!("http://{}", hub.http),
            owner_key: hub.owner_key.clone(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(Value, Option<String>), BoxError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let expiry = u64::try_from(Utc::now().timestamp() + 3600)?;
        let sas = protocol::sas::generate(HOST, &self.owner_key, Some("iothubowner"), expiry)?;
        let mut request = self
            .client
            .request(method, format!("{}{path}{sep}api-version=2021-04-12", self.base))
            .header("Authorization", sas);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let continuation = response
            .headers()
            .get("x-ms-continuation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {body}").into());
        }
        Ok((body, continuation))
    }

    /// Every row of `query`, page by page.
    async fn query_all(&self, query: &str) -> Result<Vec<Value>, BoxError> {
        let mut rows = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "1000")];
            if let Some(token) = &continuation {
                headers.push(("x-ms-continuation", token));
            }
            let (page, next) = self
                .call(
                    reqwest::Method::POST,
                    "/devices/query",
                    Some(json!({ "query": query })),
                    &headers,
                )
                .await?;
            rows.extend(page.as_array().cloned().unwrap_or_default());
            continuation = next;
            if continuation.is_none() {
                return Ok(rows);
            }
        }
    }

    async fn wait_job(
        &self,
        job_id: &str,
        until: impl Fn(&Value) -> bool,
    ) -> Result<Value, BoxError> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (job, _) =
                self.call(reqwest::Method::GET, &format!("/jobs/v2/{job_id}"), None, &[]).await?;
            if until(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                return Err(format!("job {job_id} did not finish: {job}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn run_bench(args: &[String]) -> Result<(), BoxError> {
    let mut n_devices = 10_000;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--devices" => n_devices = iter.next().ok_or("--devices needs a count")?.parse()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    crash_run(n_devices).await
}

/// SIGKILLs the hub in the middle of a method job and of a twin job, restarts it, and checks the outcome.
async fn crash_run(n_devices: usize) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let ports = (free_port()?, free_port()?);
    let hub = start_hub(dir.path(), n_devices, ports)?;
    // Devices answer after 500 ms, so the job is in flight when the hub dies.
    let fleet = Fleet::connect(hub.mqtt, n_devices, Duration::from_millis(500)).await;
    let rest = Rest::new(&hub);
    let body = json!({"type": "scheduleDeviceMethod", "cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 60, "connectTimeoutInSeconds": 60}, "queryCondition": "*"});
    rest.call(reqwest::Method::PUT, "/jobs/v2/crash-method", Some(body), &[]).await?;
    let half = (n_devices / 2) as u64;
    let mid = rest
        .wait_job("crash-method", |job| {
            job["deviceJobStatistics"]["succeededCount"].as_u64().unwrap_or(0) >= half
        })
        .await?;
    hub.kill()?;
    println!("killed the hub (SIGKILL) with the method job at {}", mid["deviceJobStatistics"]);
    let hub = start_hub(dir.path(), n_devices, ports)?;
    let rest = Rest::new(&hub);
    let job = rest.wait_job("crash-method", |job| job["status"] == "completed").await?;
    let records = rest
        .query_all("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'crash-method'")
        .await?;
    let stats = &job["deviceJobStatistics"];
    let sum: u64 = ["succeededCount", "failedCount", "runningCount", "pendingCount"]
        .iter()
        .map(|k| stats[*k].as_u64().unwrap_or(0))
        .sum();
    let repeated = fleet.calls.iter().filter(|calls| calls.load(Ordering::Relaxed) > 1).count();
    let mut ids: Vec<&str> = records.iter().filter_map(|r| r["deviceId"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    println!(
        "after restart: {} {stats}; {} records for {} distinct devices; statistics sum {sum} of {}; devices invoked more than once: {repeated}",
        job["status"], records.len(), ids.len(), stats["deviceCount"]
    );
    fleet.stop().await;
    let fleet = Fleet::connect(hub.mqtt, n_devices, Duration::ZERO).await;
    let versions_before = desired_versions(&rest).await?;
    rest.call(reqwest::Method::PUT, "/jobs/v2/crash-twin", Some(json!({"type": "scheduleUpdateTwin", "updateTwin": {"etag": "*", "properties": {"desired": {"crash": 1}}}, "queryCondition": "*"})), &[]).await?;
    let quarter = (n_devices / 4) as u64;
    let mid = rest
        .wait_job("crash-twin", |job| {
            job["deviceJobStatistics"]["succeededCount"].as_u64().unwrap_or(0) >= quarter
        })
        .await?;
    hub.kill()?;
    println!("killed the hub (SIGKILL) with the twin job at {}", mid["deviceJobStatistics"]);
    let hub = start_hub(dir.path(), n_devices, ports)?;
    let rest = Rest::new(&hub);
    let job = rest.wait_job("crash-twin", |job| job["status"] == "completed").await?;
    let versions_after = desired_versions(&rest).await?;
    let patched_once =
        versions_before.iter().filter(|(id, v)| versions_after.get(*id) == Some(&(*v + 1))).count();
    println!(
        "after restart: {} {}; twins patched exactly once: {patched_once} of {n_devices}",
        job["status"], job["deviceJobStatistics"]
    );
    fleet.stop().await;
    hub.stop()?;
    Ok(())
}

/// deviceId → desired `$version`, for every device.
async fn desired_versions(rest: &Rest) -> Result<std::collections::HashMap<String, u64>, BoxError> {
    let twins = rest.query_all("SELECT * FROM devices").await?;
    Ok(twins
        .iter()
        .filter_map(|twin| {
            Some((
                twin["deviceId"].as_str()?.to_owned(),
                twin["properties"]["desired"]["$version"].as_u64()?,
            ))
        })
        .collect())
}
