//! Restart and shutdown: jobs left running by a crash or a drain resume without repeating devices.

use super::*;

/// Writes a running job with its device set and records in every state, as a crash would leave
/// them: pending devices have no record row of their own.
async fn crashed_job(store: &Store, job: &Job, states: &[(&str, DeviceJobStatus)]) {
    let now = chrono::Utc::now();
    let devices: Vec<DeviceId> = states.iter().map(|(id, _)| DeviceId::new(*id).unwrap()).collect();
    let records: Vec<DeviceRecord> = states
        .iter()
        .filter_map(|(id, status)| {
            let pending = pending_record(job, DeviceId::new(*id).unwrap(), now);
            match status {
                DeviceJobStatus::Pending => None,
                DeviceJobStatus::Running => Some(pending.started(now)),
                _ => Some(pending.started(now).completed(None, now)),
            }
        })
        .collect();
    let job = job.clone();
    store
        .write(move |tx| {
            persist::save_job(tx, &job)?;
            persist::save_device_set(tx, &job.job_id, &devices)?;
            records.iter().try_for_each(|record| persist::save_record(tx, record))
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn restart_resumes_without_repeating_devices() {
    let hub = Harness::start(JobsConfig::default()).await;
    let now = chrono::Utc::now();
    let mut method =
        request::parse_request("rm", &method_job("*", json!({})), now, Duration::from_secs(60))
            .unwrap();
    method.status = JobStatus::Running;
    method.run_started = Some(now);
    let mut twin =
        request::parse_request("rt", &twin_job("*", json!({})), now, Duration::from_secs(60))
            .unwrap();
    twin.status = JobStatus::Running;
    twin.run_started = Some(now);
    for id in ["done", "inflight", "todo", "applied"] {
        hub.fake.add(id, Behaviour::Answers, json!({}));
    }
    // "applied" got the twin patch before the crash, but its record did not commit.
    hub.fake.desired.lock().insert(
        DeviceId::new("applied").unwrap(),
        json!({"fw": "2.0"}).as_object().cloned().unwrap(),
    );
    let store = hub.store.clone();
    let states = [
        ("done", DeviceJobStatus::Completed),
        ("inflight", DeviceJobStatus::Running),
        ("todo", DeviceJobStatus::Pending),
    ];
    crashed_job(&store, &method, &states).await;
    let twin_states = [
        ("done", DeviceJobStatus::Completed),
        ("applied", DeviceJobStatus::Running),
        ("todo", DeviceJobStatus::Pending),
    ];
    crashed_job(&store, &twin, &twin_states).await;
    let (dir, fake) = hub.stop().await;

    let hub = Harness::start_in(JobsConfig::default(), dir, fake).await;
    let done = hub.wait_status("rm", "completed").await;
    assert_eq!(
        done["deviceJobStatistics"],
        json!({"deviceCount": 3, "failedCount": 1, "succeededCount": 2, "runningCount": 0, "pendingCount": 0})
    );
    assert_eq!(
        summary(&hub.records("rm").await),
        ["done completed -", "inflight failed JobInterrupted", "todo completed -"]
    );
    assert_eq!(
        (hub.fake.calls("done"), hub.fake.calls("inflight"), hub.fake.calls("todo")),
        (0, 0, 1)
    );
    let done = hub.wait_status("rt", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 3);
    assert_eq!(
        (
            hub.fake.twin_writes("done"),
            hub.fake.twin_writes("applied"),
            hub.fake.twin_writes("todo")
        ),
        (0, 0, 1)
    );
    hub.stop().await;
}

#[tokio::test]
async fn shutdown_leaves_unstarted_devices_for_the_next_start() {
    let cfg = JobsConfig { max_in_flight: NonZeroUsize::new(1).unwrap(), ..JobsConfig::default() };
    let hub = Harness::start(cfg.clone()).await;
    hub.fake.add("first", Behaviour::Late, json!({}));
    for idx in 0..20 {
        hub.fake.add(&format!("n{idx:02}"), Behaviour::Late, json!({}));
    }
    hub.jobs.create("drain", &method_job("*", json!({}))).await.unwrap();
    hub.wait_status("drain", "running").await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let (dir, fake) = hub.stop().await;
    let called: u32 = fake.calls.lock().values().sum();
    assert!((1..21).contains(&called), "{called} devices called before shutdown");

    let hub = Harness::start_in(cfg, dir, fake).await;
    let done = hub.wait_status("drain", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["failedCount"], 21);
    let calls = hub.fake.calls.lock().clone();
    assert!(calls.values().all(|n| *n == 1), "every device called exactly once: {calls:?}");
    assert_eq!(calls.len(), 21);
    hub.stop().await;
}
