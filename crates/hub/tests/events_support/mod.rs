//! Shared helpers of the event-stream tests: an event broker on its own on a free port, with
//! subscribers from `test_support::events` that log in with a service SAS token.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::time::Duration;

use hub::api::{Policy, ServiceAuth};
use hub::broker::{self, BrokerConfig, EventBroker};
use test_support::events::Subscriber;
use test_support::sas;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The hub host name the tests use.
pub(crate) const HOST: &str = "localhost";
/// The owner policy.
pub(crate) const OWNER: &str = "iothubowner";
/// How long any single wait may take before the test fails.
pub(crate) const DEADLINE: Duration = test_support::events::EVENT_WAIT;

/// A running broker with its owner key.
pub(crate) struct TestBroker {
    pub(crate) broker: EventBroker,
    pub(crate) owner_key: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
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
        sas::service_token(HOST, &self.owner_key, policy, 3600)
    }

    /// A device token for `device` signed with the owner key (no `skn`).
    pub(crate) fn device_token(&self, device: &str) -> String {
        let resource = protocol::sas::device_resource(HOST, device, None);
        sas::device_token(&resource, &self.owner_key, sas::now_secs() + 3600)
    }

    /// Connects with `username`/`password`; `Err` when the broker refuses.
    pub(crate) async fn connect(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Subscriber, String> {
        Subscriber::connect(self.broker.addr(), username, password).await
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
