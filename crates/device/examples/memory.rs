//! Measures resident memory per connected device client.
//!
//! `cargo run --release -p device --example memory -- [N]` starts a minimal MQTT responder in a child
//! process (so its memory is not counted), connects N clients (default 10,000) over plain TCP from
//! source addresses 127.0.0.2–127.0.0.20, each with a method handler and a desired-patch receiver,
//! does one twin GET per client, and prints VmRSS before and after and the difference per client.

#![allow(clippy::print_stdout, reason = "an example that reports a measurement")]
#![allow(clippy::unwrap_used, reason = "an example: any failure should abort it loudly")]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use device::{handler, Client, DeviceConfig, MethodAnswer};
use protocol::ids::DeviceId;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if args.get(1).map(String::as_str) == Some("responder") {
        runtime.block_on(responder());
    } else {
        let n_clients: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        runtime.block_on(measure(n_clients));
    }
}

async fn measure(n_clients: usize) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("responder")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().parse().unwrap();

    {
        let cfg =
            DeviceConfig::new("localhost", DeviceId::new("x").unwrap(), "a2V5", addr).unwrap();
        let (_client, driver) = Client::new(cfg).unwrap();
        let fut = driver.run(CancellationToken::new());
        println!("driver future: {} bytes", std::mem::size_of_val(&fut));
    }
    let rss_before = rss_kib();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let method = handler(|req| async move { MethodAnswer::ok(req.payload) });
    let started = tokio::time::Instant::now();
    let mut clients = Vec::with_capacity(n_clients);
    let mut receivers = Vec::with_capacity(n_clients);
    for device_idx in 0..n_clients {
        let mut cfg = DeviceConfig::new(
            "localhost",
            DeviceId::new(format!("dev-{device_idx}")).unwrap(),
            "a2V5",
            addr,
        )
        .unwrap();
        let last_octet = u8::try_from(2 + device_idx % 19).unwrap();
        cfg.local_addr = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)));
        cfg.rng_seed = device_idx as u64;
        cfg.operation_timeout = Duration::from_secs(120);
        let client = Client::spawn(cfg, &tracker, shutdown.clone()).unwrap();
        client.on_method("echo", method.clone());
        receivers.push(client.desired_patches());
        clients.push(client);
        if device_idx % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while clients.iter().filter(|client| client.is_connected()).count() < n_clients {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_time = started.elapsed();
    let rss_connected = rss_kib();
    let mut gets = tokio::task::JoinSet::new();
    for client in &clients {
        let client = client.clone();
        gets.spawn(async move { client.get_twin().await.map(|_| ()) });
    }
    let mut failed = 0;
    while let Some(result) = gets.join_next().await {
        failed += usize::from(!matches!(result, Ok(Ok(()))));
    }
    let rss_after = rss_kib();
    println!("clients: {n_clients} connected in {connect_time:?}; twin GET failures: {failed}");
    println!("VmRSS before: {rss_before} KiB, connected: {rss_connected} KiB, after one twin GET each: {rss_after} KiB");
    let per_client =
        |rss: u64| (rss.saturating_sub(rss_before) as f64 * 1024.0 / n_clients as f64) / 1024.0;
    println!(
        "per client: {:.1} KiB connected idle, {:.1} KiB after twin GET",
        per_client(rss_connected),
        per_client(rss_after)
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    drop(receivers);
    let _ = child.kill();
    let _ = child.wait();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A minimal hub stand-in: CONNACK 0, SUBACK, PINGRESP, PUBACK, and a fixed twin for GETs.
async fn responder() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let tracker = TaskTracker::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tracker.spawn(serve(stream));
    }
}

async fn serve(mut stream: TcpStream) {
    let mut buf = BytesMut::new();
    loop {
        let packet = match Packet::read(&mut buf, 1 << 20) {
            Ok(packet) => packet,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                match stream.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => continue,
                    _ => return,
                }
            }
            Err(_) => return,
        };
        let reply = match packet {
            Packet::Connect(_) => Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
            Packet::Subscribe(subscribe) => Packet::SubAck(SubAck::new(
                subscribe.pkid,
                vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            )),
            Packet::PingReq => Packet::PingResp,
            Packet::Publish(publish) if publish.topic.starts_with("$iothub/twin/GET/") => {
                let rid = publish
                    .topic
                    .rsplit_once("$rid=")
                    .map(|(_, rid)| rid.to_owned())
                    .unwrap_or_default();
                let body = r#"{"desired":{"$version":1},"reported":{"$version":1}}"#;
                Packet::Publish(Publish::new(
                    format!("$iothub/twin/res/200/?$rid={rid}"),
                    QoS::AtMostOnce,
                    body,
                ))
            }
            Packet::Publish(publish) if publish.qos == QoS::AtLeastOnce => {
                Packet::PubAck(PubAck::new(publish.pkid))
            }
            Packet::Disconnect => return,
            _ => continue,
        };
        let mut out = BytesMut::new();
        if reply.write(&mut out, 1 << 20).is_err() || stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
