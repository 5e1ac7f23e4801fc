//! Shared helpers of the event-stream tests: an event broker on a free port and a plain rumqttc
//! subscriber that logs in with a service SAS token.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::collections::HashMap;
use std::time::Duration;

use hub::api::{Policy, ServiceAuth};
use hub::broker::{self, BrokerConfig, EventBroker};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The hub host name the tests use.
pub(crate) const HOST: &str = "localhost";
/// The owner policy.
pub(crate) const OWNER: &str = "iothubowner";
/// How long any single wait may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A running broker with its owner key.
pub(crate) struct TestBroker {
    pub(crate) broker: EventBroker,
    pub(crate) owner_key: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// One received event.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) topic: String,
    pub(crate) payload: Value,
}

impl TestBroker {
    /// Starts a broker on a free local port with `cfg` (its address is replaced).
    pub(crate) async fn start_with(mut cfg: BrokerConfig) -> TestBroker {
        cfg.addr = "127.0.0.1:0".parse().unwrap();
        let owner_key = protocol::sas::encode_key(&[7u8; 32]);
        let auth = ServiceAuth {
            host_name: HOST.to_owned(),
            policies: vec![Policy {
                name: OWNER.to_owned(),
                keys: vec![protocol::sas::decode_key(&owner_key).unwrap()],
            }],
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let broker = broker::start(cfg, auth, shutdown.clone(), &tasks).await.unwrap();
        TestBroker { broker, owner_key, shutdown, tasks }
    }

    pub(crate) async fn start() -> TestBroker {
        Self::start_with(BrokerConfig::default()).await
    }

    /// A service token of `policy` signed with the owner key.
    pub(crate) fn service_token(&self, policy: &str) -> String {
        protocol::sas::generate(HOST, &self.owner_key, Some(policy), expiry()).unwrap()
    }

    /// A device token for `device` signed with the owner key (no `skn`).
    pub(crate) fn device_token(&self, device: &str) -> String {
        let resource = protocol::sas::device_resource(HOST, device, None);
        protocol::sas::generate(&resource, &self.owner_key, None, expiry()).unwrap()
    }

    /// Connects with `username`/`password`; `Err` when the broker refuses.
    pub(crate) async fn connect(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Subscriber, String> {
        let addr = self.broker.addr();
        let mut options =
            MqttOptions::new(format!("sub-{}", rand_suffix()), addr.ip().to_string(), addr.port());
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let connack = tokio::time::timeout(DEADLINE, eventloop.poll()).await;
        match connack {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack))))
                if ack.code == ConnectReturnCode::Success =>
            {
                Ok(Subscriber { client, eventloop })
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// Connects as the owner policy.
    pub(crate) async fn owner(&self) -> Subscriber {
        self.connect(OWNER, &self.service_token(OWNER)).await.unwrap()
    }

    /// Cancels and waits for the broker's tasks.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(DEADLINE, self.tasks.wait()).await.unwrap();
    }
}

/// A plain MQTT subscriber.
pub(crate) struct Subscriber {
    pub(crate) client: AsyncClient,
    pub(crate) eventloop: EventLoop,
}

impl Subscriber {
    /// Subscribes to `filter` and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtMostOnce).await.unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.eventloop.poll()).await.unwrap();
            if let Event::Incoming(Packet::SubAck(_)) = event.unwrap() {
                return;
            }
        }
    }

    /// The next event, or `None` when nothing arrives within `wait`.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.eventloop.poll()).await.ok()?;
            if let Event::Incoming(Packet::Publish(publish)) = event.unwrap() {
                let payload = serde_json::from_slice(&publish.payload).unwrap();
                return Some(Received { topic: publish.topic, payload });
            }
        }
    }

    /// The next event (fails the test after [`DEADLINE`]).
    pub(crate) async fn next(&mut self) -> Received {
        self.next_within(DEADLINE).await.expect("an event within the deadline")
    }

    /// Receives until `n` events arrived; returns them by topic.
    pub(crate) async fn collect(&mut self, n: usize) -> HashMap<String, Vec<Value>> {
        let mut by_topic: HashMap<String, Vec<Value>> = HashMap::new();
        for _ in 0..n {
            let event = self.next().await;
            by_topic.entry(event.topic).or_default().push(event.payload);
        }
        by_topic
    }
}

fn expiry() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap() + 3600
}

fn rand_suffix() -> u64 {
    rand::random()
}
