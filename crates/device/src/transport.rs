//! One MQTT connection: TCP (optionally bound to a local address) or TLS, framed with the MQTT codec.
//!
//! [`Connection::open`] connects, sends CONNECT and reads CONNACK; [`Connection::read_packet`] is
//! cancel-safe (bytes stay in the read buffer), [`Connection::write_packet`] writes one packet.
//! Buffers start empty and shrink back after a large packet, so an idle connection costs little.
//! It does not keep the session (see `session`) and does not reconnect (see `client`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::config::DeviceConfig;
use crate::error::{ConfigError, Error};
use crate::mqtt::{CodecError, Connect, ConnectReturnCode, Login, Packet};

/// Buffers larger than this are released once empty.
const KEEP_BUFFER: usize = 4096;
/// Smallest read.
const MIN_READ: usize = 512;

/// A byte stream to the hub.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open, authenticated MQTT connection.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_packet_size: usize,
}

/// Credentials for one CONNECT.
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl Connection {
    /// Connects, handshakes TLS when configured, sends CONNECT (CleanSession 0) and awaits CONNACK.
    ///
    /// # Errors
    /// [`Error::Network`], [`Error::Tls`], [`Error::AuthRefused`], [`Error::ConnectionRefused`] or
    /// [`Error::Protocol`].
    pub(crate) async fn open(
        cfg: &DeviceConfig,
        credentials: Credentials,
    ) -> Result<Connection, Error> {
        let tcp = connect_tcp(cfg.transport_addr, cfg.local_addr).await?;
        let stream: Box<dyn Stream> = match (&cfg.tls, cfg.tls_server_name()) {
            (Some(tls), Some(name)) => {
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|_| ConfigError::ServerName(name))?;
                let connector = tokio_rustls::TlsConnector::from(tls.client_config.clone());
                let tls_stream = connector
                    .connect(server_name, tcp)
                    .await
                    .map_err(|err| Error::Tls(err.to_string()))?;
                Box::new(tls_stream)
            }
            _ => Box::new(tcp),
        };
        let mut connection = Connection {
            stream,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            max_packet_size: cfg.max_packet_size,
        };
        let mut connect = Connect::new(cfg.client_id());
        connect.keep_alive = u16::try_from(cfg.keep_alive.as_secs()).unwrap_or(u16::MAX);
        connect.clean_session = false;
        connect.login = Some(Login::new(credentials.username, credentials.password));
        connection.write_packet(&Packet::Connect(connect)).await?;
        match connection.read_packet().await? {
            Packet::ConnAck(ack) => match ack.code {
                ConnectReturnCode::Success => Ok(connection),
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                    Err(Error::AuthRefused { code: ack.code as u8 })
                }
                other => Err(Error::ConnectionRefused { code: other as u8 }),
            },
            other => Err(Error::Protocol(format!("expected CONNACK, got {}", packet_name(&other)))),
        }
    }

    /// Reads the next packet. Cancel-safe: a partial packet stays buffered.
    ///
    /// # Errors
    /// [`Error::Network`] on a socket error or EOF, [`Error::Protocol`] on a malformed or oversized packet.
    pub(crate) async fn read_packet(&mut self) -> Result<Packet, Error> {
        loop {
            match Packet::read(&mut self.read_buf, self.max_packet_size) {
                Ok(packet) => {
                    if self.read_buf.is_empty() && self.read_buf.capacity() > KEEP_BUFFER {
                        self.read_buf = BytesMut::new();
                    }
                    return Ok(packet);
                }
                Err(CodecError::InsufficientBytes(needed)) => {
                    self.read_buf.reserve(needed.clamp(MIN_READ, self.max_packet_size));
                    let n = self
                        .stream
                        .read_buf(&mut self.read_buf)
                        .await
                        .map_err(|err| Error::Network(err.to_string()))?;
                    if n == 0 {
                        return Err(Error::Network("connection closed by the hub".to_owned()));
                    }
                }
                Err(err) => {
                    return Err(Error::Protocol(format!("malformed packet from the hub: {err}")))
                }
            }
        }
    }

    /// Encodes and writes one packet, then flushes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the packet exceeds the maximum size, [`Error::Network`] on a socket error.
    pub(crate) async fn write_packet(&mut self, packet: &Packet) -> Result<(), Error> {
        self.write_buf.clear();
        packet.write(&mut self.write_buf, self.max_packet_size).map_err(|err| match err {
            CodecError::OutgoingPacketTooLarge { pkt_size, max } => {
                Error::TooLarge { size: pkt_size, limit: max }
            }
            other => Error::Protocol(format!("cannot encode packet: {other}")),
        })?;
        let result = async {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await
        }
        .await;
        if self.write_buf.capacity() > KEEP_BUFFER {
            self.write_buf = BytesMut::new();
        }
        result.map_err(|err| Error::Network(err.to_string()))
    }

    /// Sends DISCONNECT and shuts the write side down, bounded by `timeout`; errors are ignored
    /// because the connection is being dropped anyway.
    pub(crate) async fn close(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            if self.write_packet(&Packet::Disconnect).await.is_ok() {
                let _ = self.stream.shutdown().await;
            }
        })
        .await;
    }
}

/// Connects TCP, binding the local address first when one is given (port 0: the kernel picks).
async fn connect_tcp(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> Result<TcpStream, Error> {
    let network = |err: std::io::Error| Error::Network(format!("connect to {addr}: {err}"));
    let socket =
        if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(network)?;
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0)).map_err(network)?;
    }
    let stream = socket.connect(addr).await.map_err(network)?;
    stream.set_nodelay(true).map_err(network)?;
    Ok(stream)
}

/// The packet's kind, for messages.
pub(crate) fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
