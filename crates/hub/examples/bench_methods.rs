//! Benchmark (not a test): direct-method round trips per second through `Sessions::invoke_method`
//! and through `POST /twins/{id}/methods`, and hub memory per connected device.
//!
//! `cargo run --release -p hub --example bench_methods -- [N ...] [--secs S] [--concurrency C]`
//! (default: 1000 and 10000 devices, 5 s per measurement, 64 calls in flight).
//!
//! Each device count runs in a fresh process (`--point N`) so memory figures do not mix. That process
//! starts a hub (plain MQTT and HTTP on 127.0.0.1:0, temp dir), registers N devices, and starts the
//! devices in *another* process (`--devices ...`): N raw MQTT 3.1.1 clients on rumqttc's codec that
//! subscribe to methods at QoS 0 and answer every request with status 200. So the hub's VmRSS delta
//! from before the devices connect to after they all have is the hub's cost per connected device,
//! and each process stays well under the 20,000 file-descriptor limit at 10,000 devices.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::error::Error;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use hub::mqtt::MethodCall;
use hub::{Hub, HubConfig, HubListeners};
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::topic::{DevicePublish, HubPublish};
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const HOST: &str = "bench.azure-devices.net";
/// Device connections opened at once by the device process.
const CONNECT_PARALLELISM: usize = 128;

struct Options {
    device_counts: Vec<usize>,
    secs: u64,
    concurrency: usize,
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--devices") => run_devices(&args[1..]),
        Some("--point") => {
            let options = parse_options(&args[2..])?;
            let n_devices = args.get(1).ok_or("--point needs a device count")?.parse()?;
            runtime()?.block_on(run_point(n_devices, &options))
        }
        _ => orchestrate(&args),
    }
}

fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn parse_options(args: &[String]) -> BenchResult<Options> {
    let mut options = Options { device_counts: Vec::new(), secs: 5, concurrency: 64 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => options.secs = args.next().ok_or("--secs needs a value")?.parse()?,
            "--concurrency" => {
                options.concurrency = args.next().ok_or("--concurrency needs a value")?.parse()?
            }
            count => options.device_counts.push(count.parse()?),
        }
    }
    if options.device_counts.is_empty() {
        options.device_counts = vec![1_000, 10_000];
    }
    Ok(options)
}

/// Runs every device count in its own process, one after the other.
fn orchestrate(args: &[String]) -> BenchResult<()> {
    let options = parse_options(args)?;
    let exe = std::env::current_exe()?;
    println!(
        "direct-method benchmark: {} s per measurement, {} calls in flight, {} cpus",
        options.secs,
        options.concurrency,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for n_devices in &options.device_counts {
        let status = std::process::Command::new(&exe)
            .args(["--point", &n_devices.to_string(), "--secs", &options.secs.to_string()])
            .args(["--concurrency", &options.concurrency.to_string()])
            .status()?;
        if !status.success() {
            return Err(format!("the {n_devices}-device run failed: {status}").into());
        }
    }
    Ok(())
}

fn device_key(device_idx: usize) -> String {
    protocol::sas::encode_key(format!("bench device key {device_idx:08}").as_bytes())
}

fn device_id(device_idx: usize) -> String {
    format!("bench-{device_idx:05}")
}

/// One device count: hub, devices in a child process, memory, then both throughput runs.
async fn run_point(n_devices: usize, options: &Options) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let listeners = HubListeners {
        mqtt: Some(TcpListener::bind("127.0.0.1:0").await?),
        http: Some(TcpListener::bind("127.0.0.1:0").await?),
        ..HubListeners::default()
    };
    let shutdown = CancellationToken::new();
    let hub = Hub::spawn(HubConfig::new(dir.path(), HOST), listeners, shutdown.clone()).await?;
    let addrs = hub.addrs();
    let (mqtt, http) =
        (addrs.mqtt.ok_or("no mqtt listener")?, addrs.http.ok_or("no http listener")?);
    register_devices(hub.registry(), n_devices).await?;

    let rss_before = vm_rss_kib()?;
    let connect_started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut devices = tokio::process::Command::new(exe)
        .args(["--devices", &mqtt.to_string(), &n_devices.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = devices.stdout.take().ok_or("no device stdout")?;
    let ready = BufReader::new(stdout).lines().next_line().await?;
    if ready.as_deref() != Some("ready") {
        return Err(format!("device process said {ready:?}").into());
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connected = hub.sessions().connected_count();
    let rss_after = vm_rss_kib()?;
    let per_device =
        (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / connected.max(1) as f64;
    println!(
        "{n_devices} devices: {connected} connected in {connect_secs:.1} s; hub VmRSS {rss_before} KiB -> {rss_after} KiB = {per_device:.0} bytes per connected device"
    );

    let duration = Duration::from_secs(options.secs);
    let (count, errors, secs) =
        bench_in_process(hub.sessions(), n_devices, options.concurrency, duration).await;
    println!("  Sessions::invoke_method: {:.0} round trips/s ({count} ok, {errors} failed in {secs:.1} s)", count as f64 / secs);
    let token =
        protocol::sas::generate(HOST, hub.owner_key(), Some("iothubowner"), now_secs() + 3600)?;
    let (count, errors, secs) =
        bench_rest(http, &token, n_devices, options.concurrency, duration).await?;
    println!("  POST /twins/{{id}}/methods: {:.0} round trips/s ({count} ok, {errors} failed in {secs:.1} s)", count as f64 / secs);

    devices.kill().await?;
    shutdown.cancel();
    hub.wait().await;
    Ok(())
}

async fn register_devices(registry: &hub::registry::Registry, n_devices: usize) -> BenchResult<()> {
    let creates = futures::stream::iter(0..n_devices).map(|device_idx| async move {
        let key = device_key(device_idx);
        let body = format!(r#"{{"authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#);
        let request = DeviceRequest::parse(body.as_bytes())?;
        registry.create_device(&DeviceId::new(device_id(device_idx))?, &request).await?;
        BenchResult::Ok(())
    });
    let results: Vec<BenchResult<()>> = creates.buffer_unordered(256).collect().await;
    results.into_iter().collect()
}

/// `concurrency` workers calling devices round-robin for `duration`; returns (ok, failed, seconds).
async fn bench_in_process(
    sessions: &hub::mqtt::Sessions,
    n_devices: usize,
    concurrency: usize,
    duration: Duration,
) -> (u64, u64, f64) {
    let ids: Arc<Vec<DeviceId>> =
        Arc::new((0..n_devices).filter_map(|idx| DeviceId::new(device_id(idx)).ok()).collect());
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for worker_idx in 0..concurrency {
        let (sessions, ids, ok, failed) =
            (sessions.clone(), ids.clone(), ok.clone(), failed.clone());
        workers.spawn(async move {
            let mut device_idx = worker_idx;
            while Instant::now() < deadline {
                let call = MethodCall {
                    name: "bench".into(),
                    payload: serde_json::json!({"n": device_idx}),
                    response_timeout: Duration::from_secs(30),
                    connect_timeout: Duration::ZERO,
                };
                let counter = match sessions.invoke_method(&ids[device_idx % ids.len()], call).await
                {
                    Ok(_) => &ok,
                    Err(_) => &failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                device_idx += concurrency;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), started.elapsed().as_secs_f64())
}

/// Like [`bench_in_process`], through the REST endpoint with a keep-alive connection pool.
async fn bench_rest(
    http: std::net::SocketAddr,
    token: &str,
    n_devices: usize,
    concurrency: usize,
    duration: Duration,
) -> BenchResult<(u64, u64, f64)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for worker_idx in 0..concurrency {
        let (client, ok, failed, token) =
            (client.clone(), ok.clone(), failed.clone(), token.to_owned());
        workers.spawn(async move {
            let mut device_idx = worker_idx;
            while Instant::now() < deadline {
                let url = format!("http://{http}/twins/{}/methods?api-version=2021-04-12", device_id(device_idx % n_devices));
                let body = serde_json::json!({"methodName":"bench","payload":{"n":device_idx},"responseTimeoutInSeconds":30});
                let sent = client.post(url).header("Authorization", &token).json(&body).send().await;
                let succeeded = match sent {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if succeeded { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                device_idx += concurrency;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Ok((
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

/// The device process: `--devices ADDR N`. Prints `ready` once every device is subscribed.
fn run_devices(args: &[String]) -> BenchResult<()> {
    let addr: std::net::SocketAddr = args.first().ok_or("--devices needs an address")?.parse()?;
    let n_devices: usize = args.get(1).ok_or("--devices needs a count")?.parse()?;
    runtime()?.block_on(async move {
        let mut devices = JoinSet::new();
        let (ready_tx, mut ready_rx) =
            tokio::sync::mpsc::channel::<BenchResult<()>>(CONNECT_PARALLELISM);
        let permits = Arc::new(tokio::sync::Semaphore::new(CONNECT_PARALLELISM));
        for device_idx in 0..n_devices {
            let (ready_tx, permits) = (ready_tx.clone(), permits.clone());
            devices.spawn(async move {
                let permit = permits.acquire_owned().await;
                let connected = connect_device(addr, device_idx).await;
                drop(permit);
                match connected {
                    Ok(stream) => {
                        let _ = ready_tx.send(Ok(())).await;
                        drop(ready_tx);
                        answer_methods(stream).await;
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err)).await;
                    }
                }
            });
        }
        drop(ready_tx);
        for _ in 0..n_devices {
            ready_rx.recv().await.ok_or("device tasks ended early")??;
        }
        let mut stdout = tokio::io::stdout();
        stdout.write_all(b"ready\n").await?;
        stdout.flush().await?;
        // Serve until the benchmark process kills us.
        while devices.join_next().await.is_some() {}
        Ok(())
    })
}

async fn connect_device(
    addr: std::net::SocketAddr,
    device_idx: usize,
) -> BenchResult<(TcpStream, BytesMut)> {
    let id = device_id(device_idx);
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut connect = Connect::new(id.as_str());
    connect.keep_alive = 600;
    connect.clean_session = false;
    let token = protocol::sas::generate(
        &format!("{HOST}/devices/{id}"),
        &device_key(device_idx),
        None,
        now_secs() + 3600,
    )?;
    connect.set_login(
        protocol::username::MqttUsername::build(HOST, &id, None, "2021-04-12", "bench"),
        token,
    );
    let mut subscribe = Subscribe::new(protocol::topic::METHODS_FILTER, QoS::AtMostOnce);
    subscribe.pkid = 1;
    let mut out = BytesMut::new();
    Packet::Connect(connect).write(&mut out, usize::MAX)?;
    Packet::Subscribe(subscribe).write(&mut out, usize::MAX)?;
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(256);
    for expected in ["CONNACK", "SUBACK"] {
        match read_packet(&mut stream, &mut buf).await? {
            Packet::ConnAck(ack) if ack.code as u8 == 0 => {}
            Packet::SubAck(_) => {}
            other => return Err(format!("{id}: expected {expected}, got {other:?}").into()),
        }
    }
    Ok((stream, buf))
}

/// Answers every method request with status 200 and a small JSON body, at QoS 0 (like Node).
async fn answer_methods((mut stream, mut buf): (TcpStream, BytesMut)) {
    let mut out = BytesMut::new();
    while let Ok(packet) = read_packet(&mut stream, &mut buf).await {
        let Packet::Publish(request) = packet else { continue };
        let Ok(HubPublish::MethodRequest { rid, .. }) = HubPublish::parse(&request.topic) else {
            continue;
        };
        let topic = DevicePublish::MethodResponse { status: 200, rid }.to_topic();
        let response = Publish::new(topic, QoS::AtMostOnce, &b"{\"ok\":true}"[..]);
        out.clear();
        if Packet::Publish(response).write(&mut out, usize::MAX).is_err()
            || stream.write_all(&out).await.is_err()
        {
            return;
        }
    }
}

async fn read_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> BenchResult<Packet> {
    loop {
        match Packet::read(buf, usize::MAX) {
            Ok(packet) => return Ok(packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(missing)) => {
                buf.reserve(missing.max(256))
            }
            Err(err) => return Err(err.into()),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err("connection closed".into());
        }
    }
}

fn vm_rss_kib() -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(line.split_whitespace().nth(1).ok_or("malformed VmRSS line")?.parse()?)
}

fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}
