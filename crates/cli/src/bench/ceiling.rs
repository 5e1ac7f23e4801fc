//! The machine's ceiling for a job's traffic: plain tokio TCP over loopback with the same number of
//! connections, the same in-flight window and the same bytes per round trip as a direct-method call
//! (the hub's MQTT PUBLISH, the device's PUBACK and its response PUBLISH), no MQTT, no JSON, no hub.
//!
//! The peer is the same child process the devices run in ([`super::child`], echo mode), so both
//! measurements cross the same process boundary. Each connection has one task here; a semaphore of
//! `window` permits caps the round trips in flight, as the jobs engine's `max_in_flight` does.
//! [`message_sizes`] derives the byte counts from the real topics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use protocol::topic::{DevicePublish, HubPublish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::child::{ChildMode, DeviceProcess};
use super::sys;

/// Bytes on the wire of one direct-method round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageSizes {
    /// Hub to device: the method request PUBLISH (QoS 1).
    pub(crate) request: usize,
    /// Device to hub: PUBACK plus the response PUBLISH (QoS 0).
    pub(crate) response: usize,
}

/// The ceiling's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ceiling {
    /// Round trips completed.
    pub(crate) round_trips: u64,
    /// Over how long.
    pub(crate) elapsed: Duration,
    /// Round trips in flight at most.
    pub(crate) window: usize,
    /// The bytes of each round trip.
    pub(crate) sizes: MessageSizes,
}

impl Ceiling {
    /// Round trips per second.
    pub(crate) fn rate(&self) -> f64 {
        sys::per_second(self.round_trips, self.elapsed)
    }
}

/// The sizes of a call of method `name` with `request_payload` answered with `response_payload`,
/// with a five-digit request id (what a job over 10,000 devices mostly sends).
pub(crate) fn message_sizes(
    name: &str,
    request_payload: &[u8],
    response_payload: &[u8],
) -> MessageSizes {
    let rid = "12345".to_owned();
    let request_topic =
        HubPublish::MethodRequest { name: name.to_owned(), rid: rid.clone() }.to_topic();
    let response_topic = DevicePublish::MethodResponse { status: 200, rid }.to_topic();
    const PUBACK: usize = 4;
    MessageSizes {
        request: publish_size(request_topic.len(), request_payload.len(), true),
        response: PUBACK + publish_size(response_topic.len(), response_payload.len(), false),
    }
}

/// MQTT 3.1.1 PUBLISH: fixed header, remaining length, topic (length-prefixed), packet id at QoS > 0, payload.
fn publish_size(topic: usize, payload: usize, with_packet_id: bool) -> usize {
    let remaining = 2 + topic + if with_packet_id { 2 } else { 0 } + payload;
    let mut length_bytes = 1;
    let mut rest = remaining >> 7;
    while rest > 0 {
        length_bytes += 1;
        rest >>= 7;
    }
    1 + length_bytes + remaining
}

/// Opens `n_connections` to a child echo process and runs round trips for `duration`.
pub(crate) async fn measure(
    n_connections: usize,
    window: usize,
    sizes: MessageSizes,
    duration: Duration,
) -> anyhow::Result<Ceiling> {
    let listener = super::listen().context("could not bind the echo listener")?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut accepting = JoinSet::new();
    accepting.spawn(accept_all(listener, n_connections));
    let mode = ChildMode::Echo { request_bytes: sizes.request, response_bytes: sizes.response };
    let child = DeviceProcess::start(&mode, addr, n_connections).await?;
    let streams = accepting
        .join_next()
        .await
        .context("the accept task vanished")?
        .context("the accept task panicked")??;
    let window = window.clamp(1, n_connections.max(1));
    let (round_trips, elapsed) = drive(streams, window, sizes, duration).await;
    child.finish().await?;
    Ok(Ceiling { round_trips, elapsed, window, sizes })
}

async fn accept_all(listener: TcpListener, n_connections: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n_connections);
    while streams.len() < n_connections {
        let (stream, _) = listener.accept().await.context("echo accept failed")?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// One task per connection, `window` round trips in flight, until `duration` has passed.
async fn drive(
    streams: Vec<TcpStream>,
    window: usize,
    sizes: MessageSizes,
    duration: Duration,
) -> (u64, Duration) {
    let permits = Arc::new(Semaphore::new(window));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut connections = JoinSet::new();
    for stream in streams {
        let (permits, done) = (permits.clone(), done.clone());
        connections.spawn(round_trips(stream, permits, done, sizes, deadline));
    }
    while connections.join_next().await.is_some() {}
    (done.load(Ordering::Relaxed), started.elapsed())
}

async fn round_trips(
    mut stream: TcpStream,
    permits: Arc<Semaphore>,
    done: Arc<AtomicU64>,
    sizes: MessageSizes,
    deadline: Instant,
) {
    let request = vec![b'q'; sizes.request];
    let mut response = vec![0u8; sizes.response];
    while Instant::now() < deadline {
        let Ok(_permit) = permits.acquire().await else { return };
        if stream.write_all(&request).await.is_err()
            || stream.read_exact(&mut response).await.is_err()
        {
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_mqtt_framing() {
        // "$iothub/methods/POST/bench/?$rid=12345" is 38 bytes: 1 + 1 + (2 + 38 + 2 + 7).
        let sizes = message_sizes("bench", br#"{"n":1}"#, br#"{"ok":true}"#);
        assert_eq!(sizes.request, 51);
        // "$iothub/methods/res/200/?$rid=12345" is 35 bytes: 4 + 1 + 1 + (2 + 35 + 11).
        assert_eq!(sizes.response, 54);
        assert_eq!(publish_size(200, 0, false), 1 + 2 + 202);
    }
}
