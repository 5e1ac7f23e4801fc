//! Back-end event stream helpers: [`Subscriber`], a plain rumqttc client on the hub's event broker
//! (the way a back-end service reads the stream), and [`TestHub::event_subscriber`], the owner
//! subscribed to everything.
//!
//! Every wait has a deadline ([`EVENT_WAIT`]). Not here: starting a broker on its own (the broker
//! tests do that with `hub::broker::start`) or asserting event shapes (the tests do).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::time::Instant;

use crate::{sas, TestHub};

/// How long any single wait for an event may take before the test fails.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// One received event.
#[derive(Debug, Clone)]
pub struct Received {
    /// The topic it came on (`lifecycle/<id>`, `telemetry/<id>`, ...).
    pub topic: String,
    /// The JSON payload.
    pub payload: Value,
}

/// A plain MQTT subscriber on an event broker.
pub struct Subscriber {
    /// The rumqttc client (publish, subscribe, disconnect).
    pub client: AsyncClient,
    /// Its event loop; the helpers poll it.
    pub eventloop: EventLoop,
}

/// Client ids unique within the test process.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(0);

impl Subscriber {
    /// Connects to the broker at `addr` with `username`/`password`; `Err(<what came back>)` when
    /// the broker refuses or does not answer within [`EVENT_WAIT`].
    pub async fn connect(
        addr: SocketAddr,
        username: &str,
        password: &str,
    ) -> Result<Subscriber, String> {
        let serial = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("sub-{}-{serial}", std::process::id());
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        match tokio::time::timeout(EVENT_WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack))))
                if ack.code == ConnectReturnCode::Success =>
            {
                Ok(Subscriber { client, eventloop })
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// Subscribes to `filter` (QoS 0) and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtMostOnce).await.expect("the request queue has room");
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.eventloop.poll())
                .await
                .expect("a SUBACK within the wait");
            if let Event::Incoming(Packet::SubAck(_)) = event.expect("the broker keeps the link") {
                return;
            }
        }
    }

    /// The next event, or `None` when nothing arrives within `wait`; panics on a broken link or a
    /// payload that is not JSON.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.eventloop.poll()).await.ok()?;
            if let Event::Incoming(Packet::Publish(publish)) =
                event.expect("the broker keeps the link")
            {
                let payload =
                    serde_json::from_slice(&publish.payload).expect("event payloads are JSON");
                return Some(Received { topic: publish.topic, payload });
            }
        }
    }

    /// The next event; panics after [`EVENT_WAIT`].
    pub async fn next(&mut self) -> Received {
        self.next_within(EVENT_WAIT).await.expect("an event within the wait")
    }

    /// The next event on `topic`, skipping events on other topics.
    pub async fn next_on(&mut self, topic: &str) -> Received {
        loop {
            let event = self.next().await;
            if event.topic == topic {
                return event;
            }
        }
    }

    /// Receives `n` events; returns their payloads by topic.
    pub async fn collect(&mut self, n: usize) -> HashMap<String, Vec<Value>> {
        let mut by_topic: HashMap<String, Vec<Value>> = HashMap::new();
        for _ in 0..n {
            let event = self.next().await;
            by_topic.entry(event.topic).or_default().push(event.payload);
        }
        by_topic
    }
}

impl TestHub {
    /// The event broker's address; panics unless the config turned events on
    /// (`cfg.events = Some(..)` in [`crate::spawn_hub_with`]).
    pub fn events_addr(&self) -> SocketAddr {
        self.handle.addrs().events.expect("events are on in this hub's config")
    }

    /// The `iothubowner` policy connected to the event broker and subscribed to `#`.
    pub async fn event_subscriber(&self) -> Subscriber {
        let token = sas::service_token(self.host(), self.owner_key(), sas::OWNER_POLICY, 600);
        let mut subscriber = Subscriber::connect(self.events_addr(), sas::OWNER_POLICY, &token)
            .await
            .expect("the owner may subscribe to events");
        subscriber.subscribe("#").await;
        subscriber
    }
}
