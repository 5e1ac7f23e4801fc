//! Direct methods through the service REST API (`POST /twins/{id}/methods`) with `concurrency`
//! calls in flight, through the same [`service::ServiceClient`] the other commands use: HTTP
//! parsing, SAS checking, the method round trip to the device and back, and the JSON answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use protocol::connection_string::ServiceConnectionString;
use protocol::method::CloudToDeviceMethod;
use service::{ServiceClient, ServiceConfig};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::sys;

/// Calls made and how long they took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RestMethods {
    /// Calls answered with a device status.
    pub(crate) ok: u64,
    /// Calls that failed (transport or hub error).
    pub(crate) failed: u64,
    /// Calls in flight.
    pub(crate) concurrency: usize,
    /// Over how long.
    pub(crate) elapsed: Duration,
}

impl RestMethods {
    /// Successful calls per second.
    pub(crate) fn rate(&self) -> f64 {
        sys::per_second(self.ok, self.elapsed)
    }
}

/// `concurrency` workers calling devices round-robin over plain HTTP at `http` for `duration`.
pub(crate) async fn measure(
    http: SocketAddr,
    connection: ServiceConnectionString,
    n_devices: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<RestMethods> {
    let config = ServiceConfig::new(connection)?.with_base_url(&format!("http://{http}"))?;
    let client = ServiceClient::new(config).context("could not build the service client")?;
    let payload = serde_json::from_slice(super::jobs::METHOD_PAYLOAD)?;
    let method = CloudToDeviceMethod::new(super::jobs::METHOD_NAME, payload, Some(30), Some(5))?;
    let ids: Arc<Vec<_>> =
        Arc::new((0..n_devices).map(super::device_id).collect::<anyhow::Result<_>>()?);
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for worker_idx in 0..concurrency {
        let (client, method, ids) = (client.clone(), method.clone(), ids.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        workers.spawn(async move {
            let mut device_idx = worker_idx;
            while Instant::now() < deadline {
                let id = &ids[device_idx % ids.len()];
                let counter = match client.invoke_method(id, &method).await {
                    Ok(_) => &ok,
                    Err(err) => {
                        tracing::debug!(device_id = %id, %err, "benchmark method call failed");
                        &failed
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                device_idx += concurrency;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(RestMethods {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        concurrency,
        elapsed: started.elapsed(),
    })
}
