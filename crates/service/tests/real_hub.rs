//! The service client against the real hub (`hub::Hub::spawn` on port 0, plain HTTP and HTTPS with the
//! generated CA): every operation round-trips, and refusals carry the hub's IoT Hub codes.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on any set-up error")]

use std::num::NonZeroUsize;

use protocol::error::ErrorCode;
use protocol::ids::{DeviceId, JobId};
use protocol::job::{JobRequest, JobStatus};
use protocol::twin::{ReportedInPatch, TwinPatch};
use serde_json::json;
use service::{DeviceSpec, JobFilter, ServiceClient, ServiceConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Running {
    http: ServiceClient,
    https: ServiceClient,
    handle: hub::HubHandle,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
    let listeners =
        hub::HubListeners { http: Some(http), https: Some(https), ..Default::default() };
    let shutdown = CancellationToken::new();
    let handle =
        hub::Hub::spawn(hub::HubConfig::new(dir.path(), "localhost"), listeners, shutdown.clone())
            .await
            .unwrap();
    let config =
        ServiceConfig::from_connection_string(&handle.service_connection_string()).unwrap();
    let http =
        ServiceClient::new(config.clone().with_base_url(&format!("http://{http_addr}")).unwrap())
            .unwrap();
    let ca = handle.ca_pem().unwrap().as_bytes().to_vec();
    let https_config = config
        .with_base_url(&format!("https://localhost:{}", https_addr.port()))
        .unwrap()
        .with_ca_pem(ca);
    let https = ServiceClient::new(https_config).unwrap();
    Running { http, https, handle, shutdown, _dir: dir }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.wait().await;
    }
}

fn id(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap()
}

#[tokio::test]
async fn every_operation_round_trips() {
    let hub = start().await;
    let client = &hub.http;
    let wanted = ["r1", "r2", "r3"].iter().map(|name| (id(name), DeviceSpec::default())).collect();
    let created = client.create_devices(wanted, NonZeroUsize::new(2).unwrap()).await;
    assert!(created.iter().all(|(_, result)| result.is_ok()), "{created:?}");
    let duplicate = client.create_device(&id("r1"), &DeviceSpec::default()).await.unwrap_err();
    assert_eq!(duplicate.code(), Some(ErrorCode::DeviceAlreadyExists));
    assert_eq!(client.list_devices(None).await.unwrap().len(), 3);

    let patch = TwinPatch::parse(
        &json!({"tags":{"building":"43"},"properties":{"desired":{"fw":"2.0"}}}),
        ReportedInPatch::Reject,
    )
    .unwrap();
    let twin = client.update_twin(&id("r1"), &patch, None).await.unwrap();
    assert_eq!(twin.properties.desired["fw"], "2.0");
    let stale = client.update_twin(&id("r1"), &patch, Some("AAAAAAAAAAA=")).await.unwrap_err();
    assert_eq!(stale.code(), Some(ErrorCode::PreconditionFailed));
    assert_eq!(client.get_twin(&id("r1")).await.unwrap().etag, twin.etag);

    let page = client.query_page("SELECT * FROM devices", Some(2), None).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.continuation.is_some());
    assert_eq!(client.query_all("SELECT * FROM devices", Some(2)).await.unwrap().len(), 3);
    let tagged = client
        .query_all("SELECT deviceId FROM devices WHERE tags.building = '43'", None)
        .await
        .unwrap();
    assert_eq!(tagged, vec![json!({"deviceId":"r1"})]);

    let offline =
        protocol::method::CloudToDeviceMethod::new("reboot", json!(null), Some(5), None).unwrap();
    let err = client.invoke_method(&id("r2"), &offline).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DeviceNotOnline));

    let job_id = JobId::new("tag-r").unwrap();
    let body = json!({"type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"floor":3}},"queryCondition":"deviceId IN ['r2','r3']"});
    let job = client.create_job(&job_id, &JobRequest::from_value(&body).unwrap()).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = loop {
        let job = client.get_job(&job_id).await.unwrap();
        if job.status.is_terminal() || tokio::time::Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(client.device_jobs(&job_id, None).await.unwrap().len(), 2);
    let listed = client
        .list_jobs(
            JobFilter { status: Some(JobStatus::Completed), ..JobFilter::default() },
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let unknown = client.get_job(&JobId::new("nope").unwrap()).await.unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::JobNotFound));

    let deleted =
        client.delete_devices(vec![id("r1"), id("r2")], NonZeroUsize::new(2).unwrap()).await;
    assert!(deleted.iter().all(|(_, result)| result.is_ok()));
    let gone = client.get_device(&id("r1")).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::DeviceNotFound));
    hub.stop().await;
}

#[tokio::test]
async fn https_with_the_generated_ca() {
    let hub = start().await;
    let device = hub.https.create_device(&id("tls-1"), &DeviceSpec::default()).await.unwrap();
    let cs = hub.https.device_connection_string(&device).unwrap().to_string();
    assert!(cs.starts_with("HostName=localhost;DeviceId=tls-1;SharedAccessKey="), "{cs}");
    assert_eq!(hub.https.get_twin(&id("tls-1")).await.unwrap().device_id, "tls-1");
    hub.stop().await;
}
