//! The event broker with plain MQTT subscribers: service-SAS login (device tokens and unknown
//! policies refused), every topic kind with its documented payload, a 10,000-device job burst
//! that arrives whole, a stalled subscriber that slows nothing, counted drops, and shutdown.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test, with its location"
)]

mod events_support;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use events_support::{TestBroker, DEADLINE, OWNER};
use hub::broker::BrokerConfig;
use hub::events::{
    EventsConfig, HubEvent, LifecycleOp, TelemetryEvent, TwinChangeEvent, TwinChangeOp,
};
use protocol::ids::{DeviceId, JobId};
use protocol::job::{
    DeviceJob, DeviceJobOutcome, DeviceJobStatistics, DeviceJobStatus, JobStatus, JobType,
};
use protocol::property_bag::PropertyBag;
use serde_json::json;
use tokio::time::Instant;

fn device(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn record(job: &JobId, device_idx: usize) -> HubEvent {
    let now = Utc::now();
    HubEvent::device_job_record(&DeviceJob {
        device_id: device(&format!("dev-{device_idx:05}")),
        job_id: job.clone(),
        job_type: JobType::ScheduleDeviceMethod,
        status: DeviceJobStatus::Completed,
        start_time_utc: Some(now),
        end_time_utc: Some(now),
        created_date_time_utc: now,
        last_updated_date_time_utc: now,
        outcome: DeviceJobOutcome::default(),
        error: None,
    })
}

fn progress(job: &JobId, done: u64, total: u64) -> HubEvent {
    let status = if done == total { JobStatus::Completed } else { JobStatus::Running };
    let statistics = DeviceJobStatistics {
        device_count: total,
        succeeded_count: done,
        pending_count: total - done,
        ..Default::default()
    };
    HubEvent::job_progress(job, JobType::ScheduleDeviceMethod, status, statistics)
}

#[tokio::test]
async fn service_sas_logs_in_device_sas_and_foreign_policies_do_not() {
    let broker = TestBroker::start().await;
    assert!(broker.connect(OWNER, &broker.service_token(OWNER)).await.is_ok());

    let device_token = broker.device_token("d1");
    assert!(broker.connect(OWNER, &device_token).await.is_err(), "a device token");
    assert!(broker.connect("d1", &device_token).await.is_err(), "a device token as d1");
    let foreign = broker.service_token("registryRead");
    assert!(broker.connect("registryRead", &foreign).await.is_err(), "an unknown policy");
    let owner_token = broker.service_token(OWNER);
    assert!(broker.connect("someoneElse", &owner_token).await.is_err(), "username is not skn");
    assert!(broker.connect(OWNER, "not a token").await.is_err(), "garbage password");
    let forged = protocol::sas::generate(
        "localhost",
        &protocol::sas::encode_key(&[1u8; 32]),
        Some(OWNER),
        u64::try_from(Utc::now().timestamp()).unwrap() + 60,
    )
    .unwrap();
    assert!(broker.connect(OWNER, &forged).await.is_err(), "a token signed with another key");
    broker.stop().await;
}

#[tokio::test]
async fn every_topic_kind_arrives_with_its_payload() {
    let broker = TestBroker::start().await;
    let mut sub = broker.owner().await;
    for filter in ["telemetry/+", "twin-changes/+", "connection-state/+", "lifecycle/+", "jobs/#"] {
        sub.subscribe(filter).await;
    }
    let events = broker.broker.events();
    let job = JobId::new("job-a").unwrap();
    events.publish(HubEvent::Telemetry(Box::new(TelemetryEvent {
        device_id: device("d+1"),
        module_id: None,
        properties: PropertyBag::new().with("$.ct", "application/json").with("level", "3"),
        body: Bytes::from_static(br#"{"temp":20}"#),
        enqueued_at: Utc::now(),
    })));
    events.publish(HubEvent::TwinChange(Box::new(TwinChangeEvent {
        device_id: device("d1"),
        op: TwinChangeOp::Replace,
        version: 4,
        tags: Some(json!({"site": "a"})),
        desired: Some(json!({"fan": 1, "$version": 2})),
        reported: None,
        at: Utc::now(),
    })));
    events.publish(HubEvent::connection_state(&device("d1"), true));
    events.publish(HubEvent::lifecycle(
        &device("d1"),
        LifecycleOp::Created,
        json!({"deviceId": "d1"}),
    ));
    events.publish(progress(&job, 1, 1));
    events.publish(record(&job, 1));

    let got = sub.collect(6).await;
    let one = |topic: &str| got.get(topic).and_then(|v| v.first()).unwrap().clone();
    let telemetry = one("telemetry/d%2B1");
    assert_eq!(telemetry["body"], json!({"temp": 20}));
    assert_eq!(telemetry["properties"]["level"], "3");
    assert_eq!(telemetry["systemProperties"]["content-type"], "application/json");
    assert_eq!(telemetry["systemProperties"]["iothub-connection-device-id"], "d+1");
    assert!(telemetry["systemProperties"]["iothub-enqueuedtime"].is_string());
    let twin = one("twin-changes/d1");
    assert_eq!(twin["properties"]["opType"], "replaceTwin");
    assert_eq!(twin["body"]["properties"]["desired"]["$version"], 2);
    assert_eq!(twin["body"]["tags"]["site"], "a");
    assert_eq!(twin["systemProperties"]["iothub-message-source"], "twinChangeEvents");
    let state = one("connection-state/d1");
    assert_eq!(state["properties"]["opType"], "deviceConnected");
    assert!(state["body"]["sequenceNumber"].is_string());
    assert_eq!(one("lifecycle/d1")["properties"]["opType"], "createDeviceIdentity");
    let job_progress = one("jobs/job-a/progress");
    assert_eq!(job_progress["final"], true);
    assert_eq!(job_progress["deviceJobStatistics"]["succeededCount"], 1);
    assert_eq!(one("jobs/job-a/devices")["deviceId"], "dev-00001");
    broker.stop().await;
}

#[tokio::test]
async fn a_10000_device_job_arrives_whole_despite_a_stalled_subscriber() {
    const N_DEVICES: usize = 10_000;
    let broker = TestBroker::start().await;
    let mut live = broker.owner().await;
    live.subscribe("jobs/+/devices").await;
    live.subscribe("jobs/+/progress").await;
    // Subscribed, then never read again: its socket fills and the broker stops writing to it.
    let mut stalled = broker.owner().await;
    stalled.subscribe("#").await;

    let events = broker.broker.events();
    // 32 MB for the stalled subscriber alone: far more than its socket buffers hold.
    let big_body = Bytes::from(serde_json::to_vec(&"x".repeat(16 * 1024)).unwrap());
    for message_idx in 0..2_000 {
        events.publish(HubEvent::Telemetry(Box::new(TelemetryEvent {
            device_id: device(&format!("noisy-{}", message_idx % 10)),
            module_id: None,
            properties: PropertyBag::new(),
            body: big_body.clone(),
            enqueued_at: Utc::now(),
        })));
    }
    let job = JobId::new("big-job").unwrap();
    let started = Instant::now();
    for device_idx in 0..N_DEVICES {
        events.publish(record(&job, device_idx));
        events.publish(progress(&job, device_idx as u64 + 1, N_DEVICES as u64));
    }
    let publish_time = started.elapsed();
    assert!(publish_time < Duration::from_secs(2), "publishing took {publish_time:?}");
    assert_eq!(events.dropped(), 0);

    let mut devices = HashSet::new();
    let mut final_seen = false;
    let mut n_progress = 0;
    while devices.len() < N_DEVICES || !final_seen {
        let event = live.next().await;
        if event.topic == "jobs/big-job/devices" {
            devices.insert(event.payload["deviceId"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(event.topic, "jobs/big-job/progress");
            n_progress += 1;
            final_seen |= event.payload["final"] == true;
        }
    }
    assert_eq!(devices.len(), N_DEVICES);
    // Rate-limited: far fewer snapshots than device updates, the last one final.
    assert!(n_progress < 200, "{n_progress} progress snapshots");
    assert!(events.stats().progress_coalesced > 9_000);
    drop(stalled);
    broker.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_delivers_the_rest() {
    let cfg = BrokerConfig {
        events: EventsConfig {
            queue_capacity: NonZeroUsize::new(8).unwrap(),
            progress_interval: Duration::from_millis(100),
        },
        ..BrokerConfig::default()
    };
    let broker = TestBroker::start_with(cfg).await;
    let mut sub = broker.owner().await;
    sub.subscribe("connection-state/#").await;
    let events = broker.broker.events();
    const N_EVENTS: u64 = 20_000;
    for event_idx in 0..N_EVENTS {
        events.publish(HubEvent::connection_state(&device("d1"), event_idx % 2 == 0));
    }
    let stats = events.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.enqueued + stats.dropped, N_EVENTS);
    let deadline = Instant::now() + DEADLINE;
    while events.stats().published < stats.enqueued {
        assert!(Instant::now() < deadline, "{:?}", events.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..stats.enqueued {
        sub.next().await;
    }
    assert!(sub.next_within(Duration::from_millis(200)).await.is_none());
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_subscribers() {
    let broker = TestBroker::start().await;
    let addr = broker.broker.addr();
    let mut sub = broker.owner().await;
    sub.subscribe("#").await;
    broker.stop().await;
    let deadline = Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting on {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The subscriber's connection ends too.
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            if sub.eventloop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok());
}
