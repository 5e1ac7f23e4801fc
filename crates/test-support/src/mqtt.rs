//! [`RawClient`]: a raw MQTT 3.1.1 client on rumqttc's `mqttbytes::v4` codec.
//!
//! It sends packets exactly as given (or raw bytes, garbage included) and reads exactly what the
//! hub answers, so a test can check wire behaviour that a real client library would hide. Every
//! read has a deadline ([`crate::WAIT`]). It works over any byte stream, so a test can wrap a TLS
//! stream it set up itself. Not here: reconnects, keep-alive pings or retries (a test does those
//! explicitly).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, Packet, PubAck, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// A raw MQTT 3.1.1 client: sends packets as given and reads exactly what arrives.
pub struct RawClient<S> {
    stream: S,
    buf: BytesMut,
    next_pkid: u16,
}

impl RawClient<TcpStream> {
    /// Opens a TCP connection to `addr` without sending anything.
    pub async fn open(addr: SocketAddr) -> RawClient<TcpStream> {
        let stream = TcpStream::connect(addr).await.expect("the hub accepts TCP connections");
        RawClient::new(stream)
    }

    /// Connects (keep-alive 60 s) and returns the client with the CONNACK, whatever its code.
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
    /// Wraps an open stream (plain TCP, or TLS the test set up).
    pub fn new(stream: S) -> RawClient<S> {
        RawClient { stream, buf: BytesMut::new(), next_pkid: 0 }
    }

    /// Sends CONNECT (keep-alive 60 s) and returns the CONNACK; panics on anything else.
    pub async fn handshake(
        &mut self,
        client_id: &str,
        username: &str,
        password: &str,
        clean_session: bool,
    ) -> ConnAck {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 60;
        connect.clean_session = clean_session;
        connect.set_login(username, password);
        self.send(Packet::Connect(connect)).await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Encodes and sends `packet`.
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).expect("the test's packet encodes");
        self.send_bytes(&out).await;
    }

    /// Writes raw bytes; a write error (the hub already closed) is ignored.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next packet, or `None` when the hub closed the connection. Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.read_packet())
            .await
            .expect("a packet or a close within the wait")
    }

    /// `Some(next packet or None on close)` if something happens within `limit`, else `None`.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Option<Packet>> {
        tokio::time::timeout(limit, self.read_packet()).await.ok()
    }

    async fn read_packet(&mut self) -> Option<Packet> {
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

    /// Asserts that the hub closes the connection within [`WAIT`] per packet (packets that come
    /// before the close are skipped).
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

    /// Subscribes to `filter` at `qos` and returns the SUBACK's return codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
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

    /// The next PUBLISH from the hub (PUBACKs are skipped, QoS 1 deliveries acknowledged);
    /// panics on any other packet or a close.
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

    /// Answers direct-method request `rid` with `status` and `payload` on
    /// `$iothub/methods/res/{status}/?$rid={rid}` at `qos`.
    pub async fn answer_method(&mut self, rid: &str, status: i32, qos: QoS, payload: &[u8]) {
        self.publish(&format!("$iothub/methods/res/{status}/?$rid={rid}"), qos, payload).await;
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }
}

/// The request id of a hub request topic (what follows the last `$rid=`); panics if there is none.
pub fn rid(topic: &str) -> String {
    match topic.rsplit_once("$rid=") {
        Some((_, rid)) => rid.to_owned(),
        None => panic!("no $rid in {topic}"),
    }
}
