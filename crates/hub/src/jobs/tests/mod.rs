//! Engine tests against a real store and a fake device side: lifecycle, outcomes, limits, restart.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, JobId};
use protocol::twin::TwinPatch;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::{
    holds, DeviceBackend, DeviceOpError, MethodAnswer, MethodInvocation, RecordWrite,
};
use super::model::{pending_record, DeviceJobStatus, DeviceRecord, Job, JobStatus, RecordExt};
use super::*;
use crate::events::{EventQueue, Events, EventsConfig};
use crate::store::Store;

/// How a fake device behaves when called.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Answers,
    Offline,
    Late,
    Hangs,
}

/// A registered fake device: id, behaviour, tags.
type FakeDevice = (DeviceId, Behaviour, Map<String, Value>);

#[derive(Default)]
struct Fake {
    devices: Mutex<Vec<FakeDevice>>,
    calls: Mutex<HashMap<DeviceId, u32>>,
    twin_writes: Mutex<HashMap<DeviceId, u32>>,
    desired: Mutex<HashMap<DeviceId, Map<String, Value>>>,
    store: Mutex<Option<Store>>,
}

impl Fake {
    fn add(&self, id: &str, behaviour: Behaviour, tags: Value) {
        let tags = tags.as_object().cloned().unwrap_or_default();
        self.devices.lock().push((DeviceId::new(id).unwrap(), behaviour, tags));
    }

    fn behaviour(&self, device: &DeviceId) -> Option<Behaviour> {
        self.devices
            .lock()
            .iter()
            .find(|(id, _, _)| id == device)
            .map(|(_, behaviour, _)| *behaviour)
    }

    fn calls(&self, id: &str) -> u32 {
        self.calls.lock().get(&DeviceId::new(id).unwrap()).copied().unwrap_or(0)
    }

    fn twin_writes(&self, id: &str) -> u32 {
        self.twin_writes.lock().get(&DeviceId::new(id).unwrap()).copied().unwrap_or(0)
    }
}

impl DeviceBackend for Fake {
    fn resolve(&self, condition: &str) -> Result<Vec<DeviceId>, String> {
        let condition =
            query::parse_condition(condition).map_err(|err| err.sql_parse_failed_message())?;
        let devices = self.devices.lock();
        Ok(devices
            .iter()
            .filter(|(id, _, tags)| condition.matches(&json!({"deviceId": id, "tags": tags})))
            .map(|(id, _, _)| id.clone())
            .collect())
    }

    fn invoke_method(
        &self,
        device: DeviceId,
        call: MethodInvocation,
    ) -> BoxFuture<'static, Result<MethodAnswer, DeviceOpError>> {
        *self.calls.lock().entry(device.clone()).or_default() += 1;
        let behaviour = self.behaviour(&device);
        Box::pin(async move {
            match behaviour {
                Some(Behaviour::Answers) => Ok(MethodAnswer {
                    status: 200,
                    payload: json!({"echo": call.payload, "device": device}),
                }),
                Some(Behaviour::Late) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(DeviceOpError {
                        code: ErrorCode::GatewayTimeout,
                        description: "timed out".into(),
                    })
                }
                Some(Behaviour::Hangs) => futures::future::pending().await,
                Some(Behaviour::Offline) | None => Err(DeviceOpError {
                    code: ErrorCode::DeviceNotOnline,
                    description: "not online".into(),
                }),
            }
        })
    }

    fn update_twin(
        &self,
        device: DeviceId,
        patch: Arc<TwinPatch>,
        record: RecordWrite,
    ) -> BoxFuture<'static, Result<(), DeviceOpError>> {
        let known = self.behaviour(&device).is_some();
        if known {
            *self.twin_writes.lock().entry(device.clone()).or_default() += 1;
            let mut desired = self.desired.lock();
            let twin = desired.entry(device.clone()).or_default();
            if let Some(patch) = &patch.desired {
                protocol::twin::merge_object(twin, patch);
            }
        }
        let store = self.store.lock().clone();
        Box::pin(async move {
            if !known {
                return Err(DeviceOpError {
                    code: ErrorCode::DeviceNotFound,
                    description: "gone".into(),
                });
            }
            let store = store.expect("the test sets the store");
            store.write(record).await.map_err(|err| DeviceOpError {
                code: ErrorCode::ServerError,
                description: err.to_string(),
            })
        })
    }

    fn twin_holds(&self, device: &DeviceId, patch: &TwinPatch) -> bool {
        let desired = self.desired.lock();
        let empty = Map::new();
        patch
            .desired
            .as_ref()
            .is_none_or(|wanted| holds(desired.get(device).unwrap_or(&empty), wanted))
    }
}

struct Harness {
    jobs: Jobs,
    events: Mutex<EventQueue>,
    fake: Arc<Fake>,
    store: Store,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(cfg: JobsConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::start_in(cfg, dir, Arc::new(Fake::default())).await
    }

    async fn start_in(cfg: JobsConfig, dir: tempfile::TempDir, fake: Arc<Fake>) -> Harness {
        let tracker = TaskTracker::new();
        let store = Store::open(&dir.path().join("hub.db"), &tracker).unwrap();
        *fake.store.lock() = Some(store.clone());
        let shutdown = CancellationToken::new();
        let (events, queue) = Events::channel(&EventsConfig::default(), "hub.test");
        let jobs = spawn_with_backend(
            cfg,
            fake.clone(),
            store.clone(),
            events,
            shutdown.clone(),
            &tracker,
        )
        .await
        .unwrap();
        Harness { jobs, events: Mutex::new(queue), fake, store, tracker, shutdown, dir }
    }

    async fn stop(self) -> (tempfile::TempDir, Arc<Fake>) {
        self.shutdown.cancel();
        self.tracker.close();
        drop(self.jobs);
        self.store.close().await;
        self.tracker.wait().await;
        (self.dir, self.fake)
    }

    async fn wait_status(&self, job_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let job = self.jobs.get(job_id).await.unwrap();
            if job["status"] == status {
                return job;
            }
            assert!(Instant::now() < deadline, "job {job_id} never reached {status}: {job}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn records(&self, job_id: &str) -> Vec<Value> {
        let filter = RecordFilter { job_id: Some(JobId::new(job_id).unwrap()), device_id: None };
        self.jobs.device_job_records(filter).await.unwrap()
    }
}

fn method_job(condition: &str, extra: Value) -> Vec<u8> {
    let mut body = json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"n": 1}, "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0},
        "queryCondition": condition,
    });
    merge(&mut body, extra);
    serde_json::to_vec(&body).unwrap()
}

fn twin_job(condition: &str, extra: Value) -> Vec<u8> {
    let mut body = json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "properties": {"desired": {"fw": "2.0"}}},
        "queryCondition": condition,
    });
    merge(&mut body, extra);
    serde_json::to_vec(&body).unwrap()
}

fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
}

/// Each record as `device status error-code`, sorted.
fn summary(records: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["deviceId"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["error"]["code"].as_str().unwrap_or("-")
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn method_job_outcomes_per_device() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("a", Behaviour::Answers, json!({}));
    hub.fake.add("b", Behaviour::Answers, json!({}));
    hub.fake.add("c", Behaviour::Offline, json!({}));
    hub.fake.add("d", Behaviour::Late, json!({}));
    let created = hub.jobs.create("m1", &method_job("*", json!({}))).await.unwrap();
    assert_eq!(created["status"], "queued");
    let done = hub.wait_status("m1", "completed").await;
    assert_eq!(
        done["deviceJobStatistics"],
        json!({"deviceCount": 4, "failedCount": 2, "succeededCount": 2, "runningCount": 0, "pendingCount": 0})
    );
    assert_ne!(done["endTime"], protocol::time::FAR_FUTURE);
    let records = hub.records("m1").await;
    assert_eq!(
        summary(&records),
        ["a completed -", "b completed -", "c failed DeviceNotOnline", "d failed GatewayTimeout"]
    );
    let a = records.iter().find(|r| r["deviceId"] == "a").unwrap();
    assert_eq!(
        a["outcome"]["deviceMethodResponse"],
        json!({"status": 200, "payload": {"echo": {"n": 1}, "device": "a"}})
    );
    assert_eq!(a["jobType"], "scheduleDeviceMethod");
    for id in ["a", "b", "c", "d"] {
        assert_eq!(hub.fake.calls(id), 1, "device {id}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn progress_and_device_records_are_published() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("e1", Behaviour::Answers, json!({}));
    hub.fake.add("e2", Behaviour::Offline, json!({}));
    hub.jobs.create("ev", &method_job("*", json!({}))).await.unwrap();
    hub.wait_status("ev", "completed").await;
    let events = hub.events.lock().drain_now();
    let topics: Vec<&str> = events.iter().map(|event| event.topic.as_str()).collect();
    assert_eq!(topics.iter().filter(|topic| **topic == "jobs/ev/devices").count(), 2, "{topics:?}");
    let last_progress =
        events.iter().rev().find(|event| event.topic == "jobs/ev/progress").unwrap();
    let payload: Value = serde_json::from_slice(&last_progress.payload).unwrap();
    assert!(payload.to_string().contains("completed"), "{payload}");
    hub.stop().await;
}

#[tokio::test]
async fn twin_job_by_tag_applies_once_per_device() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("t1", Behaviour::Answers, json!({"building": "43"}));
    hub.fake.add("t2", Behaviour::Offline, json!({"building": "43"}));
    hub.fake.add("t3", Behaviour::Answers, json!({"building": "44"}));
    hub.jobs.create("tw", &twin_job("tags.building = '43'", json!({}))).await.unwrap();
    let done = hub.wait_status("tw", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 2);
    assert_eq!(done["updateTwin"], json!({"etag": "*", "properties": {"desired": {"fw": "2.0"}}}));
    assert_eq!(summary(&hub.records("tw").await), ["t1 completed -", "t2 completed -"]);
    assert_eq!(
        (hub.fake.twin_writes("t1"), hub.fake.twin_writes("t2"), hub.fake.twin_writes("t3")),
        (1, 1, 0)
    );
    hub.stop().await;
}

#[tokio::test]
async fn devices_added_after_start_are_not_part_of_the_job() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("h1", Behaviour::Hangs, json!({}));
    hub.jobs
        .create("late", &method_job("*", json!({"maxExecutionTimeInSeconds": 1})))
        .await
        .unwrap();
    hub.wait_status("late", "running").await;
    hub.fake.add("h2", Behaviour::Answers, json!({}));
    let done = hub.wait_status("late", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["deviceCount"], 1);
    assert_eq!(summary(&hub.records("late").await), ["h1 failed JobExpired"]);
    assert_eq!(hub.fake.calls("h2"), 0);
    hub.stop().await;
}

#[tokio::test]
async fn records_of_a_running_job_are_queryable() {
    let cfg = JobsConfig { max_in_flight: NonZeroUsize::new(1).unwrap(), ..JobsConfig::default() };
    let hub = Harness::start(cfg).await;
    hub.fake.add("q1", Behaviour::Hangs, json!({}));
    hub.fake.add("q2", Behaviour::Hangs, json!({}));
    hub.jobs.create("q", &method_job("*", json!({"maxExecutionTimeInSeconds": 1}))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records = hub.records("q").await;
        if records.iter().any(|r| r["status"] == "running") {
            break records;
        }
        assert!(Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(summary(&records), ["q1 running -", "q2 pending -"]);
    let pending = &records[1];
    assert_eq!(pending["jobType"], "scheduleDeviceMethod");
    assert_eq!(pending["outcome"], json!({"deviceMethodResponse": null}));
    let by_device = hub
        .jobs
        .device_job_records(RecordFilter {
            job_id: None,
            device_id: Some(DeviceId::new("q2").unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(by_device.len(), 1);
    let stats = hub.jobs.get("q").await.unwrap()["deviceJobStatistics"].clone();
    assert_eq!(
        stats,
        json!({"deviceCount": 2, "failedCount": 0, "succeededCount": 0, "runningCount": 1, "pendingCount": 1})
    );
    hub.wait_status("q", "completed").await;
    assert_eq!(summary(&hub.records("q").await), ["q1 failed JobExpired", "q2 failed JobExpired"]);
    // Every device has its own terminal row now; the compact device set is gone.
    let sets: i64 = hub
        .store
        .read(|conn| conn.query_row("SELECT COUNT(*) FROM job_devices", [], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(sets, 0);
    hub.stop().await;
}

#[tokio::test]
async fn bad_condition_fails_the_job() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.jobs.create("bad", &method_job("SELECT * FROM devices", json!({}))).await.unwrap();
    let failed = hub.wait_status("bad", "failed").await;
    let reason = failed["failureReason"].as_str().unwrap();
    assert!(reason.contains("SQL query parse failed"), "{reason}");
    assert_eq!(failed["statusMessage"], failed["failureReason"]);
    hub.stop().await;
}

#[tokio::test]
async fn scheduled_job_can_be_cancelled_and_never_runs() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("s1", Behaviour::Answers, json!({}));
    let start =
        protocol::time::format_timestamp(chrono::Utc::now() + chrono::Duration::milliseconds(300));
    let created =
        hub.jobs.create("sched", &method_job("*", json!({"startTime": start}))).await.unwrap();
    assert_eq!(created["status"], "queued");
    assert_eq!(hub.jobs.get("sched").await.unwrap()["status"], "scheduled");
    let cancelled = hub.jobs.cancel("sched").await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(hub.jobs.cancel("sched").await.unwrap()["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hub.jobs.get("sched").await.unwrap()["status"], "cancelled");
    assert_eq!(hub.fake.calls("s1"), 0);
    let missing = hub.jobs.cancel("nope").await.unwrap_err();
    assert_eq!(missing.error_code(), ErrorCode::JobNotFound);
    hub.stop().await;
}

#[tokio::test]
async fn running_and_finished_jobs_cannot_be_cancelled() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("h", Behaviour::Hangs, json!({}));
    hub.jobs
        .create("run", &method_job("*", json!({"maxExecutionTimeInSeconds": 1})))
        .await
        .unwrap();
    hub.wait_status("run", "running").await;
    let err = hub.jobs.cancel("run").await.unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::JobRunPreconditionFailed);
    assert_eq!(err.to_string(), "job 'run' cannot be cancelled: it is running (only queued or scheduled jobs can be cancelled)");
    hub.wait_status("run", "completed").await;
    assert_eq!(
        hub.jobs.cancel("run").await.unwrap_err().error_code(),
        ErrorCode::JobRunPreconditionFailed
    );
    hub.stop().await;
}

#[tokio::test]
async fn scheduled_job_starts_on_time() {
    let hub = Harness::start(JobsConfig::default()).await;
    hub.fake.add("x", Behaviour::Answers, json!({}));
    let start_at = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let body = method_job("*", json!({"startTime": protocol::time::format_timestamp(start_at)}));
    hub.jobs.create("ontime", &body).await.unwrap();
    hub.wait_status("ontime", "completed").await;
    let stored: Vec<Job> = persist::load_jobs(&hub.store).await.unwrap();
    let started = stored[0].run_started.unwrap();
    let late = (started - start_at).num_milliseconds();
    assert!((0..200).contains(&late), "started {late} ms after its start time");
    hub.stop().await;
}

#[tokio::test]
async fn duplicate_ids_and_active_job_cap() {
    let limits = TierLimits::new(Tier::S1, NonZeroU32::new(1).unwrap());
    let hub = Harness::start(JobsConfig { tier: Some(limits), ..JobsConfig::default() }).await;
    let later = protocol::time::format_timestamp(chrono::Utc::now() + chrono::Duration::hours(1));
    hub.jobs.create("one", &method_job("*", json!({"startTime": later}))).await.unwrap();
    let dup = hub.jobs.create("one", &method_job("*", json!({}))).await.unwrap_err();
    assert_eq!(dup.error_code(), ErrorCode::JobAlreadyExists);
    let capped = hub.jobs.create("two", &method_job("*", json!({}))).await.unwrap_err();
    assert_eq!(capped.error_code(), ErrorCode::ThrottlingMaxActiveJobCountExceeded);
    assert_eq!(capped.to_string(), "the hub already has 1 active jobs; the tier allows 1");
    hub.jobs.cancel("one").await.unwrap();
    hub.jobs.create("two", &twin_job("*", json!({}))).await.unwrap();
    hub.wait_status("two", "completed").await;
    // A cancelled job's id stays taken.
    let dup = hub.jobs.create("one", &method_job("*", json!({}))).await.unwrap_err();
    assert_eq!(dup.error_code(), ErrorCode::JobAlreadyExists);
    hub.stop().await;
}

#[tokio::test]
async fn tier_paces_job_device_operations() {
    let limits = TierLimits::new(Tier::Free, NonZeroU32::new(1).unwrap());
    let hub = Harness::start(JobsConfig { tier: Some(limits), ..JobsConfig::default() }).await;
    for idx in 0..6 {
        hub.fake.add(&format!("p{idx}"), Behaviour::Answers, json!({}));
    }
    let started = Instant::now();
    hub.jobs.create("paced", &twin_job("*", json!({}))).await.unwrap();
    hub.wait_status("paced", "completed").await;
    // 6 operations at 10/s: the last one starts 500 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    hub.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let hub = Harness::start(JobsConfig::default()).await;
    let later = protocol::time::format_timestamp(chrono::Utc::now() + chrono::Duration::hours(1));
    for idx in 0..5 {
        let body = if idx % 2 == 0 {
            method_job("*", json!({"startTime": later}))
        } else {
            twin_job("*", json!({"startTime": later}))
        };
        hub.jobs.create(&format!("l{idx}"), &body).await.unwrap();
    }
    let ids = |page: &JobPage| {
        page.items.iter().map(|job| job["jobId"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let request =
        |job_type: Option<&str>, page_size: usize, continuation: Option<String>| ListRequest {
            job_type: job_type.map(str::to_owned),
            job_status: Some("SCHEDULED".into()),
            page_size: Some(page_size),
            continuation,
        };
    let methods = hub.jobs.list(request(Some("ScheduleDeviceMethod"), 100, None)).await.unwrap();
    assert_eq!(ids(&methods), ["l0", "l2", "l4"]);
    assert_eq!(methods.continuation(), None);
    let first = hub.jobs.list(request(None, 2, None)).await.unwrap();
    assert_eq!(ids(&first), ["l0", "l1"]);
    let second = hub.jobs.list(request(None, 2, first.continuation())).await.unwrap();
    assert_eq!(ids(&second), ["l2", "l3"]);
    let third = hub.jobs.list(request(None, 2, second.continuation())).await.unwrap();
    assert_eq!((ids(&third), third.continuation()), (vec!["l4".to_owned()], None));
    let none = hub
        .jobs
        .list(ListRequest { job_status: Some("completed".into()), ..ListRequest::default() })
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let bad = hub
        .jobs
        .list(ListRequest { job_type: Some("export".into()), ..ListRequest::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.error_code(), ErrorCode::ArgumentInvalid);
    let bad = hub
        .jobs
        .list(ListRequest { continuation: Some("zzz".into()), ..ListRequest::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.error_code(), ErrorCode::ArgumentInvalid);
    hub.stop().await;
}

mod restart;
