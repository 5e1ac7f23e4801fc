//! Direct-method invocation: wait for the device to be reachable, queue the request, await the
//! answer correlated by request id.
//!
//! The wait for a device to come online is event-driven (the slot's `reachable` notification),
//! never a polling loop. Pending calls live in the device's slot, not in a global map, so the hot
//! path only touches that device's lock. Request ids are per-device decimal counters.
//! This module does not parse REST bodies (`api::methods` does) and does not check that the device
//! is registered (callers answer 404001 first).

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use protocol::ids::DeviceId;
use protocol::method::{CloudToDeviceMethodResult, MAX_METHOD_PAYLOAD_BYTES};
use protocol::topic::HubPublish;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use super::session::{DeviceSlot, MethodReply, SendMethodError};
use super::{MethodCall, MethodCallError, MethodResponse, Shared};

/// Runs one method call to completion; see `Sessions::invoke_method`.
pub(crate) async fn invoke(
    shared: &Shared,
    device: &DeviceId,
    call: MethodCall,
) -> Result<MethodResponse, MethodCallError> {
    let body = serde_json::to_vec(&call.payload).expect("a serde_json::Value always serializes");
    if body.len() > MAX_METHOD_PAYLOAD_BYTES {
        return Err(MethodCallError::PayloadTooLarge(body.len()));
    }
    let started = Instant::now();
    let connect_deadline = started + call.connect_timeout;
    let response_deadline = started + call.connect_timeout + call.response_timeout;
    let slot = shared.table.get_or_insert(device);
    let (rid, reply) =
        queue_request(&slot, &call.name, Bytes::from(body), connect_deadline, response_deadline)
            .await?;
    shared.counters.method_requests_sent.fetch_add(1, Ordering::Relaxed);
    // Forgets the pending entry if this future is dropped or times out.
    let _pending = PendingGuard { slot: &slot, rid };
    // The response timeout counts from the moment the request is queued for the device.
    match timeout_at(Instant::now() + call.response_timeout, reply).await {
        Ok(Ok(reply)) => {
            shared.method_latency.observe(started.elapsed());
            to_response(reply)
        }
        // The slot was dropped: the device was deleted or disabled while the call waited.
        Ok(Err(_)) => Err(MethodCallError::NotOnline),
        Err(_) => Err(MethodCallError::Timeout),
    }
}

/// Queues the request on the device's live connection, waiting (event-driven) for the device to
/// become reachable until `connect_deadline` and for outbox space until `response_deadline`.
async fn queue_request(
    slot: &DeviceSlot,
    name: &str,
    body: Bytes,
    connect_deadline: Instant,
    response_deadline: Instant,
) -> Result<(u64, oneshot::Receiver<MethodReply>), MethodCallError> {
    loop {
        let (tx, rx) = oneshot::channel();
        let topic_for = |rid: u64| {
            HubPublish::MethodRequest { name: name.to_owned(), rid: rid.to_string() }.to_topic()
        };
        match slot.send_method(topic_for, body.clone(), tx) {
            Ok(rid) => return Ok((rid, rx)),
            Err(SendMethodError::NotReachable) => {
                wait_until_reachable(slot, connect_deadline).await?
            }
            Err(SendMethodError::Full(conn)) => wait_for_space(&conn, response_deadline).await?,
        }
    }
}

/// Waits for the slot's `reachable` notification until `deadline` (404103 after it). Registered
/// before re-checking, so a device that subscribes in between is not missed.
async fn wait_until_reachable(slot: &DeviceSlot, deadline: Instant) -> Result<(), MethodCallError> {
    let mut reachable = pin!(slot.reachable_changed());
    reachable.as_mut().enable();
    if slot.is_reachable() {
        return Ok(());
    }
    if Instant::now() >= deadline || timeout_at(deadline, reachable).await.is_err() {
        return Err(MethodCallError::NotOnline);
    }
    Ok(())
}

/// Waits until the connection's outbox has room (or it closes); times out as the device would.
async fn wait_for_space(
    conn: &Arc<super::session::ConnHandle>,
    deadline: Instant,
) -> Result<(), MethodCallError> {
    let mut space = pin!(conn.space.notified());
    space.as_mut().enable();
    if conn.has_space_or_closed() {
        return Ok(());
    }
    timeout_at(deadline, space).await.map_err(|_| MethodCallError::Timeout)
}

fn to_response(reply: MethodReply) -> Result<MethodResponse, MethodCallError> {
    if reply.body.len() > MAX_METHOD_PAYLOAD_BYTES {
        return Err(MethodCallError::PayloadTooLarge(reply.body.len()));
    }
    let result = CloudToDeviceMethodResult::from_device(reply.status, &reply.body);
    Ok(MethodResponse { status: result.status, payload: result.payload })
}

/// Removes a pending call from its slot when the caller stops waiting.
struct PendingGuard<'a> {
    slot: &'a DeviceSlot,
    rid: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.slot.cancel_method(self.rid);
    }
}
