//! Simulated devices for tests that need many well-behaved (or silent) devices at once, such as
//! jobs: each runs on its own task over a [`RawClient`], answers direct methods as its
//! [`Behaviour`] says, and records what it received in a [`DeviceLog`].
//!
//! Not here: the real device SDK stand-in (that is the `device` crate) or misbehaving clients (tests
//! drive a [`RawClient`] by hand for those).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protocol::topic::HubPublish;
use rumqttc::mqttbytes::v4::{Packet, PubAck};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{RawClient, TestHub};

/// How a simulated device answers direct methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with `status` and `{"echo": <request payload>}` after `delay`.
    Answer {
        /// The method status.
        status: i32,
        /// How long the device "works" before answering.
        delay: Duration,
    },
    /// Receives method requests and never answers.
    Silent,
}

/// What a simulated device saw.
#[derive(Debug, Default)]
pub struct DeviceLog {
    /// Method requests received.
    pub method_calls: AtomicU32,
    /// Desired-property patches received, in order (locked only to push or copy).
    pub desired_patches: Mutex<Vec<Value>>,
}

/// A set of simulated devices, each on its own task; [`Fleet::stop`] disconnects them all.
pub struct Fleet {
    tracker: TaskTracker,
    stop: CancellationToken,
    /// Each device's log, by id.
    pub logs: HashMap<String, Arc<DeviceLog>>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet::new()
    }
}

impl Fleet {
    /// No devices yet.
    pub fn new() -> Fleet {
        Fleet { tracker: TaskTracker::new(), stop: CancellationToken::new(), logs: HashMap::new() }
    }

    /// How many method requests `id` received.
    pub fn calls(&self, id: &str) -> u32 {
        self.logs.get(id).map_or(0, |log| log.method_calls.load(Ordering::Relaxed))
    }

    /// The desired patches `id` received.
    pub fn patches(&self, id: &str) -> Vec<Value> {
        self.logs.get(id).map(|log| log.desired_patches.lock().clone()).unwrap_or_default()
    }

    /// Disconnects every device and waits for their tasks.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl TestHub {
    /// Connects `id` (CleanSession 1) with `key`, subscribes to desired patches and then methods,
    /// and runs it in `fleet` until the fleet stops.
    pub async fn connect_device(
        &self,
        fleet: &mut Fleet,
        id: &str,
        key: &str,
        behaviour: Behaviour,
    ) {
        let (username, password) = self.login(id, key);
        let (mut client, ack) = RawClient::connect(self.mqtt, id, &username, &password, true).await;
        assert_eq!(ack.code as u8, 0, "CONNACK for {id}");
        // A clean session, so no subscription from an earlier connection delivers a request before
        // the SUBACKs below; the method subscription comes last for the same reason.
        client.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce).await;
        client.subscribe("$iothub/methods/POST/#", QoS::AtMostOnce).await;
        let log = Arc::new(DeviceLog::default());
        fleet.logs.insert(id.to_owned(), log.clone());
        fleet.tracker.spawn(device_loop(client, behaviour, log, fleet.stop.clone()));
    }
}

async fn device_loop(
    mut client: RawClient<TcpStream>,
    behaviour: Behaviour,
    log: Arc<DeviceLog>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let publish = match client.try_recv(Duration::from_millis(50)).await {
            None => continue,
            Some(None) => return,
            Some(Some(Packet::Publish(publish))) => publish,
            Some(Some(_)) => continue,
        };
        if publish.qos == QoS::AtLeastOnce {
            client.send(Packet::PubAck(PubAck::new(publish.pkid))).await;
        }
        let payload: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
        match HubPublish::parse(&publish.topic) {
            Ok(HubPublish::MethodRequest { rid, .. }) => {
                log.method_calls.fetch_add(1, Ordering::Relaxed);
                if let Behaviour::Answer { status, delay } = behaviour {
                    tokio::time::sleep(delay).await;
                    let body = json!({ "echo": payload }).to_string();
                    client.answer_method(&rid, status, QoS::AtMostOnce, body.as_bytes()).await;
                }
            }
            Ok(HubPublish::DesiredPatch { .. }) => {
                log.desired_patches.lock().push(payload);
            }
            _ => {}
        }
    }
}
