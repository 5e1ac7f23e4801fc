//! `GET /metrics`: Prometheus text without a SAS token, and the counters move (429s, jobs by status).

use std::num::NonZeroU32;

use hub::jobs::{Tier, TierLimits};
use hub::{Hub, HubConfig, HubListeners};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = HubConfig::new(dir.path(), "localhost");
    cfg.jobs.tier = Some(TierLimits { tier: Tier::Free, units: NonZeroU32::MIN });
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", http.local_addr().unwrap());
    let listeners = HubListeners { http: Some(http), ..HubListeners::default() };
    let shutdown = CancellationToken::new();
    let hub = Hub::spawn(cfg, listeners, shutdown.clone()).await.unwrap();
    let client = reqwest::Client::new();

    let scrape = || async {
        let response = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        response.text().await.unwrap()
    };
    let before = scrape().await;
    for line in [
        "hubsim_connected_devices 0",
        "hubsim_http_throttled_total 0",
        "hubsim_method_latency_seconds_count 0",
    ] {
        assert!(before.lines().any(|l| l == line), "{line} in:\n{before}");
    }

    // The free tier allows one active job: the second PUT is throttled with 429.
    let expiry = chrono::Utc::now().timestamp().unsigned_abs() + 600;
    let token =
        protocol::sas::generate("localhost", hub.owner_key(), Some("iothubowner"), expiry).unwrap();
    let job = json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "responseTimeoutInSeconds": 5},
        "queryCondition": "*",
        "startTime": "2099-01-01T00:00:00Z",
        "maxExecutionTimeInSeconds": 60
    });
    let mut statuses = Vec::new();
    for id in ["first", "second"] {
        let response = client
            .put(format!("{base}/jobs/v2/{id}?api-version=2021-04-12"))
            .header("authorization", &token)
            .json(&job)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 429]);
    let after = scrape().await;
    assert!(after.lines().any(|l| l == "hubsim_http_throttled_total 1"), "{after}");
    assert!(after.lines().any(|l| l.starts_with("hubsim_jobs{status=")), "{after}");

    shutdown.cancel();
    hub.wait().await;
}
