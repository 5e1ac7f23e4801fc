//! A scripted in-process MQTT 3.1.1 peer for the device client's integration tests.
//!
//! [`Peer`] listens on `127.0.0.1:0`; each test accepts connections and plays the hub's side packet by
//! packet ([`PeerConn`]), so it can send exactly what a real or broken hub would. Every wait has a deadline.

#![allow(dead_code, unreachable_pub, reason = "each test binary uses a different subset")]
#![allow(clippy::unwrap_used, reason = "test support: a failed setup step should fail the test")]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use device::{Backoff, DeviceConfig};
use protocol::ids::DeviceId;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The base64 key the test devices use ("test-key").
pub const KEY: &str = "dGVzdC1rZXk=";

/// A listening scripted peer, plain TCP or TLS.
pub struct Peer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// A byte stream from the device.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One accepted connection.
pub struct PeerConn {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    /// The device's address as seen by the peer.
    pub remote: SocketAddr,
}

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`.
pub struct TestPki {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();
        TestPki { ca_pem: ca.pem(), acceptor: TlsAcceptor::from(std::sync::Arc::new(server)) }
    }
}

impl Peer {
    pub async fn bind() -> Peer {
        Peer { listener: TcpListener::bind("127.0.0.1:0").await.unwrap(), tls: None }
    }

    pub async fn bind_tls(acceptor: TlsAcceptor) -> Peer {
        Peer { listener: TcpListener::bind("127.0.0.1:0").await.unwrap(), tls: Some(acceptor) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    pub async fn accept(&self) -> PeerConn {
        let (tcp, remote) = tokio::time::timeout(DEADLINE, self.listener.accept())
            .await
            .expect("no connection in time")
            .unwrap();
        let stream: Box<dyn Stream> = match &self.tls {
            Some(acceptor) => Box::new(acceptor.accept(tcp).await.unwrap()),
            None => Box::new(tcp),
        };
        PeerConn { stream, buf: BytesMut::new(), remote }
    }

    /// Accepts a TCP connection whose TLS handshake is expected to fail; returns the server-side error.
    pub async fn accept_failing_tls(&self) -> String {
        let (tcp, _) = tokio::time::timeout(DEADLINE, self.listener.accept())
            .await
            .expect("no connection in time")
            .unwrap();
        let acceptor = self.tls.as_ref().expect("a tls peer");
        match acceptor.accept(tcp).await {
            Ok(_) => panic!("the handshake unexpectedly succeeded"),
            Err(err) => err.to_string(),
        }
    }

    /// Accepts a connection, reads CONNECT and answers CONNACK 0.
    pub async fn accept_ok(&self) -> (PeerConn, Connect) {
        let mut conn = self.accept().await;
        let connect = conn.handshake(ConnectReturnCode::Success).await;
        (conn, connect)
    }
}

impl PeerConn {
    /// The next packet from the device; answers PINGREQ itself.
    pub async fn recv(&mut self) -> Packet {
        loop {
            let packet =
                tokio::time::timeout(DEADLINE, self.read()).await.expect("no packet in time");
            match packet {
                Some(Packet::PingReq) => self.send(Packet::PingResp).await,
                Some(packet) => return packet,
                None => panic!("device closed the connection"),
            }
        }
    }

    /// The next packet, or `None` when the device closes the connection.
    pub async fn recv_or_eof(&mut self) -> Option<Packet> {
        tokio::time::timeout(DEADLINE, self.read()).await.expect("no packet in time")
    }

    async fn read(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(err) => panic!("device sent a malformed packet: {err}"),
            }
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The device may already have closed the socket (e.g. after a protocol violation).
        let _ = self.stream.write_all(bytes).await;
    }

    pub async fn handshake(&mut self, code: ConnectReturnCode) -> Connect {
        let Packet::Connect(connect) = self.recv().await else { panic!("expected CONNECT") };
        self.send(Packet::ConnAck(ConnAck::new(code, false))).await;
        connect
    }

    /// Reads one SUBSCRIBE, grants it at QoS 1 and returns its filter.
    pub async fn expect_subscribe(&mut self) -> String {
        match self.recv().await {
            Packet::Subscribe(subscribe) => {
                let codes =
                    vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); subscribe.filters.len()];
                self.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes))).await;
                subscribe.filters[0].path.clone()
            }
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        }
    }

    /// Reads one PUBLISH (PUBACKing QoS 1).
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(publish) => {
                if publish.qos == QoS::AtLeastOnce {
                    self.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
                }
                publish
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        self.send(Packet::Publish(Publish::new(topic, QoS::AtMostOnce, body.to_vec()))).await;
    }

    /// Drops the TCP connection without DISCONNECT.
    pub async fn drop_connection(self) {
        drop(self.stream);
    }
}

/// Splits `…?$rid=X…` out of a topic.
pub fn rid(topic: &str) -> String {
    let after = topic.split_once("$rid=").expect("topic has a $rid").1;
    after.split('&').next().unwrap().to_owned()
}

/// A config for device `id` pointing at `addr`, with fast backoff for tests.
pub fn config(id: &str, addr: SocketAddr) -> DeviceConfig {
    let mut cfg = DeviceConfig::new("hubsim.test", DeviceId::new(id).unwrap(), KEY, addr).unwrap();
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.5,
    };
    cfg.operation_timeout = Duration::from_secs(5);
    cfg.rng_seed = 7;
    cfg
}

/// Polls `condition` until it holds or the deadline passes.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
