//! Jobs v2 helpers of [`TestHub`] (create, get, cancel, wait for a status, read every
//! `devices.jobs` record through the query API) and job-body fixtures.
//!
//! The fixtures are plain JSON the way the service SDKs send it, so a test can also break them on
//! purpose ([`merge`] with a `null` removes a key). Not here: assertions about job outcomes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::{wait_until, Reply, TestHub};

/// How long [`TestHub::wait_job`] waits for a job before failing the test.
pub const JOB_WAIT: Duration = Duration::from_secs(30);

impl TestHub {
    /// `PUT /jobs/v2/{job_id}` with `body`.
    pub async fn put_job(&self, job_id: &str, body: Value) -> Reply {
        self.call(Method::PUT, &format!("/jobs/v2/{job_id}"), Some(body)).await
    }

    /// `GET /jobs/v2/{job_id}`.
    pub async fn get_job(&self, job_id: &str) -> Reply {
        self.call(Method::GET, &format!("/jobs/v2/{job_id}"), None).await
    }

    /// `POST /jobs/v2/{job_id}/cancel`.
    pub async fn cancel_job(&self, job_id: &str) -> Reply {
        self.call(Method::POST, &format!("/jobs/v2/{job_id}/cancel"), None).await
    }

    /// Polls `GET /jobs/v2/{job_id}` until its status is `status` and returns the job; fails on
    /// another terminal status or after [`JOB_WAIT`].
    pub async fn wait_job(&self, job_id: &str, status: &str) -> Value {
        let what = format!("job {job_id} to be {status}");
        wait_until(&what, JOB_WAIT, || async {
            let reply = self.get_job(job_id).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let current = reply.body["status"].as_str().unwrap_or_default();
            if current == status {
                return Some(reply.body);
            }
            let terminal = ["completed", "failed", "cancelled"].contains(&current);
            assert!(!terminal, "job {job_id} is {current}, waiting for {status}: {}", reply.body);
            None
        })
        .await
    }

    /// Every `devices.jobs` record of `job_id`, through `POST /devices/query`, all pages (100 a
    /// page).
    pub async fn device_jobs(&self, job_id: &str) -> Vec<Value> {
        let text = format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'");
        let query = json!({ "query": text });
        let mut records = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut headers = vec![("x-ms-max-item-count", "100")];
            if let Some(token) = &continuation {
                headers.push(("x-ms-continuation", token.as_str()));
            }
            let reply =
                self.call_with(Method::POST, "/devices/query", Some(query.clone()), &headers).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            records.extend(reply.body.as_array().cloned().unwrap_or_default());
            continuation = reply.header("x-ms-continuation").map(str::to_owned);
            if continuation.is_none() {
                return records;
            }
        }
    }
}

/// A `scheduleDeviceMethod` job body: method `reboot` with payload `{"delay":1}`, a 5 s response
/// timeout, `maxExecutionTimeInSeconds` 60, on `condition`; `extra` is [`merge`]d in.
pub fn method_job(condition: &str, extra: Value) -> Value {
    let mut body = json!({
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {
            "methodName": "reboot",
            "payload": {"delay": 1},
            "responseTimeoutInSeconds": 5,
        },
        "queryCondition": condition,
        "maxExecutionTimeInSeconds": 60,
    });
    merge(&mut body, extra);
    body
}

/// A `scheduleUpdateTwin` job body (etag `*`, tag `rolled: yes`, desired `fw: 2.0`) on
/// `condition`; `extra` is [`merge`]d in.
pub fn twin_job(condition: &str, extra: Value) -> Value {
    let mut body = json!({
        "type": "scheduleUpdateTwin",
        "updateTwin": {
            "etag": "*",
            "tags": {"rolled": "yes"},
            "properties": {"desired": {"fw": "2.0"}},
        },
        "queryCondition": condition,
    });
    merge(&mut body, extra);
    body
}

/// Shallow-merges the object `extra` into the object `body`; a `null` value removes the key.
pub fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (key, value) in extra {
            if value.is_null() {
                body.remove(&key);
            } else {
                body.insert(key, value);
            }
        }
    }
}

/// Each `devices.jobs` record as `"<deviceId> <status> <error code or ->"`, sorted.
pub fn summary(records: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = records
        .iter()
        .map(|record| {
            format!(
                "{} {} {}",
                record["deviceId"].as_str().unwrap_or("?"),
                record["status"].as_str().unwrap_or("?"),
                record["error"]["code"].as_str().unwrap_or("-")
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A job `startTime` `millis` from now, RFC 3339 with milliseconds, as the SDKs send it.
pub fn start_in(millis: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(millis))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_merge_and_summarise() {
        let body = method_job("*", json!({"maxExecutionTimeInSeconds": null, "startTime": "t"}));
        assert_eq!(
            body.to_string(),
            r#"{"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":5},"queryCondition":"*","startTime":"t"}"#
        );
        let records = [
            json!({"deviceId": "b", "status": "failed", "error": {"code": "DeviceNotOnline"}}),
            json!({"deviceId": "a", "status": "completed"}),
        ];
        assert_eq!(summary(&records), ["a completed -", "b failed DeviceNotOnline"]);
    }
}
