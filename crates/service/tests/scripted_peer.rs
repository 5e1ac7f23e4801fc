//! The service client against a scripted HTTP peer on port 0: the peer checks every request the way
//! the hub does (api-version, a SAS token that verifies against the policy key and names the hub) and
//! records it; each test scripts the answers and asserts on what was sent and what the client returned.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on any set-up error")]

use std::num::NonZeroUsize;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use protocol::error::{ErrorCode, RestErrorBody};
use protocol::ids::DeviceId;
use protocol::method::CloudToDeviceMethod;
use protocol::sas::SasToken;
use serde_json::{json, Value};
use service::{DeviceSpec, ServiceClient, ServiceConfig, ServiceError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HOST: &str = "peer.example";
/// "secret-key-for-hubsim-tests!!" in base64.
const KEY: &str = "c2VjcmV0LWtleS1mb3ItaHVic2ltLXRlc3RzISE=";

/// One request as the peer saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Value,
}

type Script =
    dyn Fn(&Seen, usize) -> (StatusCode, Vec<(&'static str, String)>, String) + Send + Sync;

#[derive(Clone)]
struct Peer {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

struct Running {
    client: ServiceClient,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn start(
    script: impl Fn(&Seen, usize) -> (StatusCode, Vec<(&'static str, String)>, String)
        + Send
        + Sync
        + 'static,
) -> Running {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let peer = Peer { seen: seen.clone(), script: Arc::new(script) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().fallback(answer).with_state(peer);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
    });
    let cs = format!("HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
    let config = ServiceConfig::from_connection_string(&cs)
        .unwrap()
        .with_base_url(&format!("http://{addr}"))
        .unwrap();
    Running { client: ServiceClient::new(config).unwrap(), seen, shutdown, tracker }
}

async fn answer(
    State(peer): State<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = check_auth(&uri, &headers) {
        return refusal;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let seen = Seen { method, path_and_query: uri.to_string(), headers, body };
    let index = {
        let mut all = peer.seen.lock();
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, extra, text) = (peer.script)(&seen, index);
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json; charset=utf-8".parse().unwrap());
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The hub's checks: api-version present and a SAS token signed with the key, naming the hub, unexpired.
fn check_auth(uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    if !uri.query().unwrap_or_default().contains("api-version=2021-04-12") {
        return Some(error(ErrorCode::InvalidProtocolVersion, "missing api-version"));
    }
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let key = protocol::sas::decode_key(KEY).unwrap();
    let ok = SasToken::parse(token)
        .map(|parsed| {
            parsed.verify(&[&key], now).is_ok()
                && parsed.covers_hub(HOST)
                && parsed.key_name.as_deref() == Some("iothubowner")
        })
        .unwrap_or(false);
    (!ok).then(|| error(ErrorCode::IotHubUnauthorizedAccess, "bad token"))
}

fn error(code: ErrorCode, text: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap();
    (status, [("iothub-errorcode", code.name())], RestErrorBody::new(code, text).to_json())
        .into_response()
}

fn device_json(id: &str) -> String {
    json!({"deviceId":id,"generationId":"1","etag":"MA==","connectionState":"Disconnected","status":"enabled",
        "statusReason":null,"connectionStateUpdatedTime":"0001-01-01T00:00:00Z","statusUpdatedTime":"0001-01-01T00:00:00Z",
        "lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,
        "authentication":{"symmetricKey":{"primaryKey":"cA==","secondaryKey":"cw=="},
            "x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"},
        "capabilities":{"iotEdge":false}})
    .to_string()
}

fn id(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap()
}

#[tokio::test]
async fn device_lifecycle_requests_are_what_the_sdks_send() {
    let peer = start(|seen, _| match seen.method.as_str() {
        "PUT" => (StatusCode::OK, vec![("etag", "\"MA==\"".into())], device_json("d#1")),
        "GET" => (StatusCode::OK, vec![], format!("[{}]", device_json("d#1"))),
        _ => (StatusCode::NO_CONTENT, vec![], String::new()),
    })
    .await;
    let device = peer.client.create_device(&id("d#1"), &DeviceSpec::default()).await.unwrap();
    assert_eq!(device.device_id.as_str(), "d#1");
    let cs = peer.client.device_connection_string(&device).unwrap().to_string();
    assert_eq!(cs, "HostName=peer.example;DeviceId=d#1;SharedAccessKey=cA==");
    assert_eq!(peer.client.list_devices(Some(5)).await.unwrap().len(), 1);
    peer.client.delete_device(&id("d#1"), None).await.unwrap();

    let seen = peer.requests();
    let lines: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {} if-match={:?} body={}",
                s.method,
                s.path_and_query,
                s.headers.get("if-match"),
                s.body
            )
        })
        .collect();
    expect_test::expect![[r#"
        PUT /devices/d%231?api-version=2021-04-12 if-match=None body={"deviceId":"d#1","status":"enabled","authentication":{"type":"sas","symmetricKey":{}},"capabilities":{"iotEdge":false}}
        GET /devices?top=5&api-version=2021-04-12 if-match=None body=null
        DELETE /devices/d%231?api-version=2021-04-12 if-match=Some("\"*\"") body=null"#]]
    .assert_eq(&lines.join("\n"));
    assert_eq!(seen[0].headers.get("content-type").unwrap(), "application/json; charset=utf-8");
    peer.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_iot_hub_code() {
    let peer = start(|_, _| {
        let body =
            RestErrorBody::new(ErrorCode::DeviceNotFound, "The device nope is not registered")
                .to_json();
        (StatusCode::NOT_FOUND, vec![("iothub-errorcode", "DeviceNotFound".into())], body)
    })
    .await;
    let err = peer.client.get_device(&id("nope")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DeviceNotFound));
    assert_eq!(err.status(), Some(404));
    expect_test::expect![[r#"GET /devices/nope was refused: DeviceNotFound (404001, HTTP 404): The device nope is not registered"#]]
        .assert_eq(&err.to_string());
    peer.stop().await;
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_peer() {
    let peer = start(|_, _| (StatusCode::OK, vec![], "[]".into())).await;
    let cs = format!("HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=d3Jvbmc=");
    let base = peer.client.config().base_url.to_string();
    let wrong = ServiceClient::new(
        ServiceConfig::from_connection_string(&cs).unwrap().with_base_url(&base).unwrap(),
    )
    .unwrap();
    let err = wrong.list_devices(None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IotHubUnauthorizedAccess));
    assert!(peer.client.list_devices(None).await.is_ok());
    peer.stop().await;
}

#[tokio::test]
async fn query_follows_continuation_tokens_until_absent() {
    let peer = start(|seen, _| {
        let token = seen.headers.get("x-ms-continuation").map(|v| v.to_str().unwrap().to_owned());
        match token.as_deref() {
            None => (
                StatusCode::OK,
                vec![("x-ms-continuation", "p2".into()), ("x-ms-item-type", "Twin".into())],
                r#"[{"deviceId":"a"}]"#.into(),
            ),
            Some("p2") => (
                StatusCode::OK,
                vec![("x-ms-continuation", "p3".into())],
                r#"[{"deviceId":"b"}]"#.into(),
            ),
            Some(_) => (StatusCode::OK, vec![], r#"[{"deviceId":"c"}]"#.into()),
        }
    })
    .await;
    let items = peer.client.query_all("SELECT * FROM devices", Some(1)).await.unwrap();
    assert_eq!(
        items,
        vec![json!({"deviceId":"a"}), json!({"deviceId":"b"}), json!({"deviceId":"c"})]
    );
    let seen = peer.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body, json!({"query":"SELECT * FROM devices"}));
    assert_eq!(seen[0].headers.get("x-ms-max-item-count").unwrap(), "1");
    assert_eq!(seen[2].headers.get("x-ms-continuation").unwrap(), "p3");
    let first = peer.client.query_page("SELECT * FROM devices", None, None).await.unwrap();
    assert_eq!(first.item_type, Some(protocol::query::QueryItemType::Twin));
    assert_eq!(first.continuation.as_deref(), Some("p2"));
    peer.stop().await;
}

#[tokio::test]
async fn a_repeating_token_stops_instead_of_looping() {
    let peer =
        start(|_, _| (StatusCode::OK, vec![("x-ms-continuation", "same".into())], "[]".into()))
            .await;
    let err = peer.client.query_all("SELECT * FROM devices", None).await.unwrap_err();
    assert!(matches!(err, ServiceError::PagingLoop { ref token, .. } if token == "same"), "{err}");
    assert_eq!(peer.requests().len(), 2);
    peer.stop().await;
}

#[tokio::test]
async fn method_invocation_and_twin_patch() {
    let peer = start(|seen, _| match seen.path_and_query.split('?').next().unwrap() {
        "/twins/d1/methods" => (StatusCode::OK, vec![], r#"{"status":201,"payload":{"ok":true}}"#.into()),
        _ => (StatusCode::OK, vec![], r#"{"deviceId":"d1","etag":"AAAAAAAAAAI=","version":2,"properties":{"desired":{"a":1,"$version":2},"reported":{"$version":1}}}"#.into()),
    })
    .await;
    let call = CloudToDeviceMethod::new("reboot", json!({"delay":1}), Some(5), None).unwrap();
    let result = peer.client.invoke_method(&id("d1"), &call).await.unwrap();
    assert_eq!((result.status, result.payload), (201, json!({"ok":true})));
    let patch = protocol::twin::TwinPatch::parse(
        &json!({"properties":{"desired":{"a":1}}}),
        protocol::twin::ReportedInPatch::Reject,
    )
    .unwrap();
    let twin = peer.client.update_twin(&id("d1"), &patch, Some("AAAAAAAAAAE=")).await.unwrap();
    assert_eq!(twin.etag, "AAAAAAAAAAI=");
    let seen = peer.requests();
    assert_eq!(
        seen[0].body,
        json!({"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":5,"connectTimeoutInSeconds":0})
    );
    assert_eq!(seen[1].method, Method::PATCH);
    assert_eq!(seen[1].headers.get("if-match").unwrap(), "\"AAAAAAAAAAE=\"");
    assert_eq!(seen[1].body, json!({"properties":{"desired":{"a":1}}}));
    peer.stop().await;
}

#[tokio::test]
async fn bulk_create_reports_each_device_in_order() {
    let peer = start(|seen, _| {
        if seen.path_and_query.starts_with("/devices/taken") {
            let body = RestErrorBody::new(ErrorCode::DeviceAlreadyExists, "taken").to_json();
            (StatusCode::CONFLICT, vec![("iothub-errorcode", "DeviceAlreadyExists".into())], body)
        } else {
            let device_id = seen.body["deviceId"].as_str().unwrap().to_owned();
            (StatusCode::OK, vec![], device_json(&device_id))
        }
    })
    .await;
    let wanted: Vec<(DeviceId, DeviceSpec)> =
        ["a", "taken", "c", "d"].iter().map(|name| (id(name), DeviceSpec::default())).collect();
    let results = peer.client.create_devices(wanted, NonZeroUsize::new(2).unwrap()).await;
    let summary: Vec<String> = results
        .iter()
        .map(|(device_id, result)| {
            format!(
                "{device_id}:{}",
                result
                    .as_ref()
                    .map_or_else(|e| format!("{:?}", e.code()), |d| d.device_id.to_string())
            )
        })
        .collect();
    assert_eq!(summary, ["a:a", "taken:Some(DeviceAlreadyExists)", "c:c", "d:d"]);
    peer.stop().await;
}

#[tokio::test]
async fn transport_failures_name_the_operation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cs = format!("HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
    let config = ServiceConfig::from_connection_string(&cs)
        .unwrap()
        .with_base_url(&format!("http://{addr}"))
        .unwrap();
    let err = ServiceClient::new(config).unwrap().get_device(&id("d1")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Transport { .. }), "{err}");
    assert!(err.to_string().starts_with("GET /devices/d1 failed"), "{err}");
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let device_cs = "HostName=h;DeviceId=d;SharedAccessKey=cA==";
    assert!(matches!(
        ServiceConfig::from_connection_string(device_cs),
        Err(ServiceError::ConnectionString(_))
    ));
    let cs = format!("HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
    let config = ServiceConfig::from_connection_string(&cs).unwrap();
    assert_eq!(config.base_url.as_str(), "https://peer.example/");
    assert!(matches!(config.clone().with_base_url("not a url"), Err(ServiceError::BaseUrl { .. })));
    let bad_pem = config.with_ca_pem(
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
    );
    assert!(matches!(ServiceClient::new(bad_pem), Err(ServiceError::CaCertificate(_))));
}

#[tokio::test]
async fn jobs_create_get_cancel_and_list() {
    let job =
        r#"{"jobId":"j-1","type":"scheduleDeviceMethod","status":"queued","queryCondition":"*"}"#;
    let peer = start(move |seen, _| {
        let path = seen.path_and_query.split('?').next().unwrap().to_owned();
        match (seen.method.as_str(), path.as_str()) {
            ("GET", "/jobs/v2/query") if seen.headers.get("x-ms-continuation").is_none() => {
                (StatusCode::OK, vec![("x-ms-continuation", "next".into())], format!("[{job}]"))
            }
            // The object form (what Python's msrest expects) is read too.
            ("GET", "/jobs/v2/query") => {
                (StatusCode::OK, vec![], format!(r#"{{"type":"jobResponse","items":[{job}]}}"#))
            }
            ("POST", "/jobs/v2/j-1/cancel") => {
                (StatusCode::OK, vec![], job.replace("queued", "cancelled"))
            }
            _ => (StatusCode::OK, vec![], job.to_owned()),
        }
    })
    .await;
    let job_id = protocol::ids::JobId::new("j-1").unwrap();
    let body = json!({"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot"},"queryCondition":"*"});
    let request = protocol::job::JobRequest::from_value(&body).unwrap();
    let created = peer.client.create_job(&job_id, &request).await.unwrap();
    assert_eq!(created.status, protocol::job::JobStatus::Queued);
    assert_eq!(peer.client.get_job(&job_id).await.unwrap().job_id, job_id);
    assert_eq!(
        peer.client.cancel_job(&job_id).await.unwrap().status,
        protocol::job::JobStatus::Cancelled
    );
    let filter = service::JobFilter {
        job_type: Some(protocol::job::JobType::ScheduleDeviceMethod),
        status: None,
    };
    assert_eq!(peer.client.list_jobs(filter, Some(1)).await.unwrap().len(), 2);
    let seen = peer.requests();
    assert_eq!(seen[0].method, Method::PUT);
    assert_eq!(seen[0].path_and_query, "/jobs/v2/j-1?api-version=2021-04-12");
    assert_eq!(seen[0].body["jobId"], "j-1");
    assert_eq!(seen[0].body["cloudToDeviceMethod"]["methodName"], "reboot");
    assert_eq!(seen[2].path_and_query, "/jobs/v2/j-1/cancel?api-version=2021-04-12");
    assert_eq!(
        seen[3].path_and_query,
        "/jobs/v2/query?jobType=scheduleDeviceMethod&api-version=2021-04-12"
    );
    assert_eq!(seen[4].headers.get("x-ms-continuation").unwrap(), "next");
    peer.stop().await;
}
