//! Framing of one connection's byte stream into MQTT 3.1.1 packets with rumqttc's `mqttbytes::v4`
//! codec, with buffers kept small while the connection idles.
//!
//! [`PacketIo`] owns the stream, a read buffer that grows only as far as the largest packet being
//! assembled (and is given back afterwards), and a write buffer that batches everything produced
//! while handling one read before a single flush. It does not interpret packets.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::Error as CodecError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes requested from the socket per read while idle.
const READ_CHUNK: usize = 1024;
/// A read buffer with less free space than this gets another [`READ_CHUNK`].
const MIN_READ_SPACE: usize = 256;
/// Buffers that grew past this are released once empty, so idle connections stay small.
const KEEP_BUFFER_BYTES: usize = 4 * 1024;
/// No packet encoded by the hub comes near this; it only guards the encoder.
const MAX_OUTGOING_BYTES: usize = 16 * 1024 * 1024;

/// The first byte of every valid CONNECT (type 1, no flags).
const CONNECT_HEADER_BYTE: u8 = 0x10;

/// One connection's stream with its read and write buffers.
pub(crate) struct PacketIo<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_incoming: usize,
}

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer closed the stream.
    #[error("connection closed by the peer")]
    Closed,
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The first byte of the connection is not a CONNECT header.
    #[error("first byte {0:#04x} is not a CONNECT header")]
    NotConnect(u8),
    /// The bytes are not a valid MQTT 3.1.1 packet, or one larger than allowed.
    #[error("malformed packet: {0}")]
    Malformed(CodecError),
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketIo<S> {
    /// Wraps a stream; packets larger than `max_incoming` bytes are refused.
    pub(crate) fn new(stream: S, max_incoming: usize) -> Self {
        PacketIo { stream, read_buf: BytesMut::new(), write_buf: BytesMut::new(), max_incoming }
    }

    /// Changes the largest accepted packet (small before authentication, larger after).
    pub(crate) fn set_max_incoming(&mut self, max_incoming: usize) {
        self.max_incoming = max_incoming;
    }

    /// The next complete packet already in the read buffer, if any.
    pub(crate) fn next_buffered(&mut self) -> Result<Option<Packet>, ReadError> {
        if self.read_buf.is_empty() {
            return Ok(None);
        }
        match Packet::read(&mut self.read_buf, self.max_incoming) {
            Ok(packet) => {
                if self.read_buf.is_empty() && self.read_buf.capacity() > KEEP_BUFFER_BYTES {
                    self.read_buf = BytesMut::new();
                }
                Ok(Some(packet))
            }
            Err(CodecError::InsufficientBytes(missing)) => {
                self.read_buf.reserve(missing);
                Ok(None)
            }
            Err(err) => Err(ReadError::Malformed(err)),
        }
    }

    /// Reads more bytes from the stream into the read buffer. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> Result<(), ReadError> {
        if self.read_buf.capacity() - self.read_buf.len() < MIN_READ_SPACE {
            self.read_buf.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.read_buf).await? {
            0 => Err(ReadError::Closed),
            _ => Ok(()),
        }
    }

    /// Reads until one whole packet is available.
    #[cfg(test)]
    pub(crate) async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(packet) = self.next_buffered()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Reads until one whole packet is available, failing as soon as the first byte shows it is
    /// not a CONNECT (so an HTTP request or TLS hello on the plain port is dropped at once).
    pub(crate) async fn read_connect(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(&first) = self.read_buf.first() {
                if first != CONNECT_HEADER_BYTE {
                    return Err(ReadError::NotConnect(first));
                }
            }
            if let Some(packet) = self.next_buffered()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Encodes a packet into the write buffer (sent by the next [`PacketIo::flush`]).
    pub(crate) fn queue(&mut self, packet: &Packet) {
        if let Err(err) = packet.write(&mut self.write_buf, MAX_OUTGOING_BYTES) {
            // Only a zero packet id or an absurd size can fail here; both are hub bugs, and the
            // device simply does not receive that packet.
            tracing::error!(%err, "failed to encode an outgoing packet");
        }
    }

    /// Whether anything waits in the write buffer.
    pub(crate) fn has_pending_writes(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Writes the write buffer out, failing after `limit` (a peer that stopped reading).
    pub(crate) async fn flush(&mut self, limit: Duration) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")),
        }
        if self.write_buf.capacity() > KEEP_BUFFER_BYTES {
            self.write_buf = BytesMut::new();
        } else {
            self.write_buf.clear();
        }
        Ok(())
    }

    /// Shuts the write side down (best effort, bounded by `limit`).
    pub(crate) async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::mqttbytes::v4::{PubAck, Publish};
    use rumqttc::mqttbytes::QoS;

    use super::*;

    #[tokio::test]
    async fn frames_split_and_batched_packets() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = PacketIo::new(server, 1024);
        let mut client = PacketIo::new(client, 1024);
        let mut publish = Publish::new("$iothub/twin/GET/?$rid=1", QoS::AtLeastOnce, " ");
        publish.pkid = 7;
        client.queue(&Packet::Publish(publish.clone()));
        client.queue(&Packet::PubAck(PubAck::new(3)));
        client.queue(&Packet::PingReq);
        // 37 bytes: they fit in the duplex buffer, so the flush completes before anyone reads.
        client.flush(Duration::from_secs(5)).await.unwrap();
        drop(client);
        assert_eq!(server.read_packet().await.unwrap(), Packet::Publish(publish));
        assert_eq!(server.read_packet().await.unwrap(), Packet::PubAck(PubAck::new(3)));
        assert_eq!(server.read_packet().await.unwrap(), Packet::PingReq);
        assert!(matches!(server.read_packet().await, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn refuses_garbage_and_oversized_packets() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = PacketIo::new(server, 16);
        client.write_all(b"\xf0\x00").await.unwrap();
        assert!(matches!(server.read_packet().await, Err(ReadError::Malformed(_))));

        let (mut client, server) = tokio::io::duplex(64);
        let mut server = PacketIo::new(server, 16);
        client.write_all(&[0x30, 0x7f]).await.unwrap();
        assert!(matches!(
            server.read_packet().await,
            Err(ReadError::Malformed(CodecError::PayloadSizeLimitExceeded(127)))
        ));
    }
}
