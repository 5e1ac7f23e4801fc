//! Shared harness of the `mqtt_*` integration tests: a real hub on port 0 in a temp dir, devices
//! registered through the registry, and a raw MQTT 3.1.1 client on rumqttc's codec that lets a test
//! send anything (including garbage) and see exactly what the hub answers.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test crate uses a different part of the harness"
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use hub::{Hub, HubConfig, HubHandle, HubListeners};
use protocol::device::DeviceRequest;
use protocol::ids::DeviceId;
use protocol::username::MqttUsername;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// The hub's configured host name.
pub const HOST: &str = "hubsim-test.azure-devices.net";

/// A running hub with plain MQTT, MQTT/TLS and plain HTTP listeners.
pub struct TestHub {
    pub handle: HubHandle,
    pub shutdown: CancellationToken,
    pub mqtt: SocketAddr,
    pub mqtts: SocketAddr,
    pub http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestHub {
    pub async fn start() -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = HubListeners {
            mqtt: Some(bind().await),
            mqtts: Some(bind().await),
            http: Some(bind().await),
            https: None,
        };
        let shutdown = CancellationToken::new();
        let handle = Hub::spawn(HubConfig::new(dir.path(), HOST), listeners, shutdown.clone())
            .await
            .unwrap();
        let addrs = handle.addrs();
        TestHub {
            mqtt: addrs.mqtt.unwrap(),
            mqtts: addrs.mqtts.unwrap(),
            http: addrs.http.unwrap(),
            handle,
            shutdown,
            _dir: dir,
        }
    }

    /// Registers a device with generated keys; returns its primary and secondary key (base64).
    pub async fn add_device(&self, id: &str, enabled: bool) -> (String, String) {
        let primary = protocol::sas::encode_key(format!("primary key of {id} .....").as_bytes());
        let secondary = protocol::sas::encode_key(format!("secondary key of {id} ...").as_bytes());
        let status = if enabled { "enabled" } else { "disabled" };
        let body = format!(
            r#"{{"deviceId":"{id}","status":"{status}","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{primary}","secondaryKey":"{secondary}"}}}}}}"#
        );
        let request = DeviceRequest::parse(body.as_bytes()).unwrap();
        self.handle.registry().create_device(&device(id), &request).await.unwrap();
        (primary, secondary)
    }

    /// CONNECT credentials for `id` signed with `key`, valid for an hour.
    pub fn login(&self, id: &str, key: &str) -> (String, String) {
        (username(HOST, id), token(&format!("{HOST}/devices/{id}"), key, now_secs() + 3600))
    }

    /// A connected device (CleanSession 0) over plain MQTT.
    pub async fn connect(&self, id: &str, key: &str) -> RawClient<TcpStream> {
        let (username, password) = self.login(id, key);
        let (client, ack) = RawClient::connect(self.mqtt, id, &username, &password, false).await;
        assert_eq!(ack.code as u8, 0, "CONNACK for {id}");
        client
    }

    /// A service SAS token for REST calls.
    pub fn service_token(&self) -> String {
        protocol::sas::generate(
            HOST,
            self.handle.owner_key(),
            Some("iothubowner"),
            now_secs() + 3600,
        )
        .unwrap()
    }

    /// `POST /twins/{id}/methods` with `body`; returns the status and JSON body.
    pub async fn post_method(
        &self,
        id: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("http://{}/twins/{id}/methods?api-version=2021-04-12", self.http);
        let response = reqwest::Client::new()
            .post(url)
            .header("Authorization", self.service_token())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle.wait()).await.expect("the hub drains");
    }
}

pub fn device(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

pub fn username(host: &str, id: &str) -> String {
    MqttUsername::build(host, id, None, "2019-10-01", "hubsim-tests/1.0")
}

pub fn token(resource: &str, key: &str, expiry: u64) -> String {
    protocol::sas::generate(resource, key, None, expiry).unwrap()
}

pub fn now_secs() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// A raw MQTT 3.1.1 client: sends packets as given and reads exactly what arrives.
pub struct RawClient<S> {
    stream: S,
    buf: BytesMut,
    next_pkid: u16,
}

impl RawClient<TcpStream> {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr) -> RawClient<TcpStream> {
        RawClient::new(TcpStream::connect(addr).await.unwrap())
    }

    /// Connects and returns the CONNACK (whatever its code).
    pub async fn connect(
        addr: SocketAddr,
        client_id: &str,
        username: &str,
        password: &str,
        clean_session: bool,
    ) -> (RawClient<TcpStream>, ConnAck) {
        let mut client = RawClient::open(addr).await;
        let ack = client.handshake(client_id, username, password, clean_session).await;
        (client, ack)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub fn new(stream: S) -> RawClient<S> {
        RawClient { stream, buf: BytesMut::new(), next_pkid: 0 }
    }

    /// Sends CONNECT and returns the CONNACK.
    pub async fn handshake(
        &mut self,
        client_id: &str,
        username: &str,
        password: &str,
        clean: bool,
    ) -> ConnAck {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 60;
        connect.clean_session = clean;
        connect.set_login(username, password);
        self.send(Packet::Connect(connect)).await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).unwrap();
        self.send_bytes(&out).await;
    }

    /// Writes raw bytes; a write error (the hub already closed) is ignored.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or `None` when the hub closed the connection. Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.recv_inner())
            .await
            .expect("a packet or a close within the wait")
    }

    /// The next packet if one arrives within `limit`.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Option<Packet>> {
        tokio::time::timeout(limit, self.recv_inner()).await.ok()
    }

    async fn recv_inner(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, usize::MAX) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(err) => panic!("the hub sent a malformed packet: {err}"),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Asserts that the hub closes the connection (packets before the close are skipped).
    pub async fn expect_closed(&mut self) {
        while let Some(packet) = self.recv().await {
            let _ = packet;
        }
    }

    /// Asserts that the hub closes the connection, ignoring whatever bytes come first (a TLS alert).
    pub async fn expect_closed_raw(&mut self) {
        let drain = async {
            let mut sink = [0u8; 1024];
            while let Ok(1..) = self.stream.read(&mut sink).await {}
        };
        tokio::time::timeout(WAIT, drain).await.expect("the hub closes the connection");
    }

    /// Subscribes and returns the granted return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
    ) -> Vec<rumqttc::mqttbytes::v4::SubscribeReasonCode> {
        let mut subscribe = Subscribe::new(filter, qos);
        subscribe.pkid = self.pkid();
        self.send(Packet::Subscribe(subscribe)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes; at QoS 1 the PUBACK is left for [`RawClient::next_publish`] to skip.
    pub async fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8]) {
        let mut publish = Publish::new(topic, qos, payload.to_vec());
        if qos != QoS::AtMostOnce {
            publish.pkid = self.pkid();
        }
        self.send(Packet::Publish(publish)).await;
    }

    /// The next PUBLISH from the hub (PUBACKs are skipped, QoS 1 deliveries acknowledged).
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(publish)) => {
                    if publish.qos == QoS::AtLeastOnce {
                        self.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
                    }
                    return publish;
                }
                Some(Packet::PubAck(_)) => {}
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }
}

/// Polls `condition` until it holds or [`WAIT`] passes.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
