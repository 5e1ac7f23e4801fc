//! `POST /devices/query`: filters, projections, aggregates, paging with continuation tokens,
//! item types, and the devices.jobs collection.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test loudly on any error")]

use reqwest::Method;
use serde_json::{json, Value};
use test_support::{spawn_hub, Reply, TestHub};

async fn query(
    hub: &TestHub,
    text: &str,
    page_size: Option<usize>,
    continuation: Option<&str>,
) -> Reply {
    let mut request = hub.request(Method::POST, "/devices/query").json(&json!({ "query": text }));
    if let Some(size) = page_size {
        request = request.header("x-ms-max-item-count", size.to_string());
    }
    if let Some(token) = continuation {
        request = request.header("x-ms-continuation", token);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Runs a query to the end; returns every row and the number of pages.
async fn query_all(hub: &TestHub, text: &str, page_size: usize) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let reply = query(hub, text, Some(page_size), token.as_deref()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        pages += 1;
        rows.extend(reply.body.as_array().unwrap().iter().cloned());
        match reply.header("x-ms-continuation") {
            Some(next) => {
                assert!(!next.is_empty(), "the continuation header is never empty");
                token = Some(next.to_owned());
            }
            None => return (rows, pages),
        }
        assert!(pages < 1000, "paging does not terminate");
    }
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|row| row["deviceId"].as_str().unwrap().to_owned()).collect()
}

async fn seed(hub: &TestHub, n: usize) {
    for idx in 0..n {
        let id = format!("dev{idx:03}");
        hub.create_device(&id).await;
        let building = if idx % 2 == 0 { "43" } else { "44" };
        let patch = json!({"tags": {"building": building, "floor": idx % 5}, "properties": {"desired": {"n": idx}}});
        assert_eq!(hub.call(Method::PATCH, &format!("/twins/{id}"), Some(patch)).await.status, 200);
    }
}

#[tokio::test]
async fn filters_projections_and_aggregates() {
    let hub = spawn_hub().await;
    seed(&hub, 10).await;

    let all = query(&hub, "SELECT * FROM devices", None, None).await;
    assert_eq!(all.header("x-ms-item-type"), Some("twin"));
    assert_eq!(all.header("x-ms-continuation"), None);
    assert_eq!(all.body.as_array().unwrap().len(), 10);
    assert_eq!(all.body[0]["properties"]["desired"]["n"], 0);

    let by_id = query(
        &hub,
        "SELECT * FROM devices WHERE deviceId IN ['dev003', 'dev001', 'nope']",
        None,
        None,
    )
    .await;
    assert_eq!(ids(by_id.body.as_array().unwrap()), ["dev001", "dev003"]);
    let by_tag = query(
        &hub,
        "SELECT * FROM devices WHERE tags.building = '43' AND tags.floor >= 2",
        None,
        None,
    )
    .await;
    assert_eq!(ids(by_tag.body.as_array().unwrap()), ["dev002", "dev004", "dev008"]);
    let scan =
        query(&hub, "SELECT * FROM devices WHERE properties.desired.n > 7", None, None).await;
    assert_eq!(ids(scan.body.as_array().unwrap()), ["dev008", "dev009"]);

    let projected = query(
        &hub,
        "SELECT deviceId, tags.building FROM devices WHERE deviceId = 'dev004'",
        None,
        None,
    )
    .await;
    assert_eq!(projected.header("x-ms-item-type"), Some("raw"));
    assert_eq!(projected.body, json!([{"deviceId": "dev004", "building": "43"}]));
    let counted = query(&hub, "SELECT COUNT() AS n FROM devices", None, None).await;
    assert_eq!(counted.body, json!([{"n": 10}]));
    let grouped = query(
        &hub,
        "SELECT tags.building AS b, COUNT() AS n FROM devices GROUP BY tags.building",
        None,
        None,
    )
    .await;
    assert_eq!(grouped.body, json!([{"b": "43", "n": 5}, {"b": "44", "n": 5}]));
    let top = query(&hub, "SELECT TOP 3 * FROM devices", Some(2), None).await;
    assert_eq!(top.body.as_array().unwrap().len(), 2);
    let (top_rows, _) = query_all(&hub, "SELECT TOP 3 * FROM devices", 2).await;
    assert_eq!(ids(&top_rows), ["dev000", "dev001", "dev002"]);

    let modules = query(&hub, "SELECT * FROM devices.modules", None, None).await;
    assert_eq!(modules.body, json!([]));
    let jobs =
        query(&hub, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'none'", None, None)
            .await;
    assert_eq!(jobs.status, 200);
    assert_eq!(jobs.header("x-ms-item-type"), Some("deviceJob"));
    assert_eq!(jobs.body, json!([]));

    let malformed = query(&hub, "SELECT * FROM devices WHERE", None, None).await;
    assert_eq!(malformed.error(), "400 ArgumentInvalid");
    assert!(malformed.body["Message"].as_str().unwrap().contains("line 1"), "{malformed:?}");
    let bad_token = query(&hub, "SELECT * FROM devices", Some(2), Some("not-a-token")).await;
    assert_eq!(bad_token.error(), "400 ArgumentInvalid");
    hub.stop().await;
}

#[tokio::test]
async fn paging_is_complete_and_stable_under_writes() {
    let hub = spawn_hub().await;
    seed(&hub, 25).await;

    let (rows, pages) = query_all(&hub, "SELECT * FROM devices", 10).await;
    assert_eq!(rows.len(), 25);
    assert_eq!(pages, 3);
    let (tagged, _) = query_all(&hub, "SELECT * FROM devices WHERE tags.building = '44'", 4).await;
    assert_eq!(tagged.len(), 12);

    // Devices created and deleted between pages neither repeat nor hide the others.
    let first = query(&hub, "SELECT * FROM devices", Some(10), None).await;
    let token = first.header("x-ms-continuation").unwrap().to_owned();
    hub.create_device("aaa-before-cursor").await;
    hub.create_device("zzz-after-cursor").await;
    let deleted =
        hub.call_with(Method::DELETE, "/devices/dev012", None, &[("If-Match", "\"*\"")]).await;
    assert_eq!(deleted.status, 204);
    let mut seen = ids(first.body.as_array().unwrap());
    let mut token = Some(token);
    while let Some(current) = token {
        let page = query(&hub, "SELECT * FROM devices", Some(10), Some(&current)).await;
        seen.extend(ids(page.body.as_array().unwrap()));
        token = page.header("x-ms-continuation").map(str::to_owned);
    }
    let mut expected: Vec<String> =
        (0..25).filter(|idx| *idx != 12).map(|idx| format!("dev{idx:03}")).collect();
    expected.push("zzz-after-cursor".into());
    assert_eq!(seen, expected);
    hub.stop().await;
}
