//! Per-device session state that outlives a single connection, and the sharded table that holds it.
//!
//! A [`DeviceSlot`] exists per device id once the device connects (or once someone waits for it): it
//! keeps the subscriptions (CleanSession 0 sessions keep them across reconnects, because the Python
//! SDK never re-subscribes), the live connection's [`ConnHandle`] if any, and the device's pending
//! direct-method calls keyed by request id. A [`ConnHandle`] is the sending side of one live
//! connection: a small bounded outbox the connection task drains into its socket.
//!
//! Lock order: a slot's state lock, then a connection's outbox lock; neither is held across `.await`.
//! This module does no I/O and does not decide which topics a device may use (see `routing`).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use protocol::ids::DeviceId;
use rumqttc::mqttbytes::QoS;
use tokio::sync::{oneshot, Notify};

/// How many publishes may wait in one connection's outbox. When it is full, method calls wait for
/// space (bounded by their response timeout) and desired-property pushes are dropped, as the service
/// drops them for offline devices; the device re-reads its twin on reconnect.
pub(crate) const OUTBOX_CAPACITY: usize = 64;

/// Number of independently locked shards in the session table (a power of two).
const SHARDS: usize = 32;

/// One shard of the session table.
type Shard = RwLock<HashMap<DeviceId, Arc<DeviceSlot>>>;

/// The sharded map from device id to its slot; read-mostly, never locked across `.await`.
pub(crate) struct SessionTable {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

/// One device's long-lived session: subscriptions, live connection, pending method calls.
#[derive(Default)]
pub(crate) struct DeviceSlot {
    state: Mutex<SlotState>,
    /// Woken whenever the device becomes reachable for methods (connects with a method
    /// subscription, or subscribes to methods).
    reachable: Notify,
}

/// The topic filters a device may subscribe to, each with the QoS the hub granted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscriptions {
    /// `$iothub/methods/POST/#`.
    pub(crate) methods: Option<QoS>,
    /// `$iothub/twin/res/#`.
    pub(crate) twin_responses: Option<QoS>,
    /// `$iothub/twin/PATCH/properties/desired/#`.
    pub(crate) desired: Option<QoS>,
    /// `devices/{id}/messages/devicebound/#`.
    pub(crate) cloud_to_device: Option<QoS>,
}

/// Which of the allowed filters a SUBSCRIBE or UNSUBSCRIBE names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterKind {
    /// `$iothub/methods/POST/#`.
    Methods,
    /// `$iothub/twin/res/#`.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`.
    Desired,
    /// `devices/{id}/messages/devicebound/#`.
    CloudToDevice,
}

/// What a device answered to a direct method: its status and raw body.
#[derive(Debug)]
pub(crate) struct MethodReply {
    pub(crate) status: i32,
    pub(crate) body: Bytes,
}

/// A publish queued for a live connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
}

/// Why a connection was told to close by someone other than its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// A new connection with the same client id took over (400027).
    Replaced,
    /// The hub dropped the device (deleted, disabled or re-keyed).
    Evicted,
}

/// The sending side of one live connection.
#[derive(Default)]
pub(crate) struct ConnHandle {
    outbox: Mutex<Outbox>,
    /// Wakes the connection task: there is something in the outbox, or it must close.
    pub(crate) wake: Notify,
    /// Wakes senders waiting for outbox space.
    pub(crate) space: Notify,
}

/// Why a publish could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The outbox holds [`OUTBOX_CAPACITY`] publishes already.
    Full,
    /// The connection is closing.
    Closed,
}

/// Why a method request could not be queued.
pub(crate) enum SendMethodError {
    /// No live connection subscribed to methods.
    NotReachable,
    /// The connection's outbox is full; wait on its `space` and retry.
    Full(Arc<ConnHandle>),
}

#[derive(Default)]
struct SlotState {
    conn: Option<Arc<ConnHandle>>,
    subscriptions: Subscriptions,
    pending: HashMap<u64, oneshot::Sender<MethodReply>>,
    next_rid: u64,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outbound>,
    closing: Option<CloseReason>,
}

impl SessionTable {
    /// An empty table.
    pub(crate) fn new() -> SessionTable {
        SessionTable {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The device's slot, if it has one.
    pub(crate) fn get(&self, device: &DeviceId) -> Option<Arc<DeviceSlot>> {
        self.shard(device).read().get(device).cloned()
    }

    /// The device's slot, created empty when missing.
    pub(crate) fn get_or_insert(&self, device: &DeviceId) -> Arc<DeviceSlot> {
        if let Some(slot) = self.get(device) {
            return slot;
        }
        self.shard(device).write().entry(device.clone()).or_default().clone()
    }

    /// Removes the device's slot (its subscriptions and pending calls go with it).
    pub(crate) fn remove(&self, device: &DeviceId) -> Option<Arc<DeviceSlot>> {
        self.shard(device).write().remove(device)
    }

    fn shard(&self, device: &DeviceId) -> &Shard {
        let hash = self.hasher.hash_one(device);
        // The mask keeps the index below SHARDS, so the cast cannot truncate a meaningful bit.
        &self.shards[(hash as usize) & (SHARDS - 1)]
    }
}

impl DeviceSlot {
    /// Makes `conn` the live connection. With `clean_session` the old subscriptions are dropped.
    /// Returns the replaced connection (the caller tells it to close) and whether a previous
    /// session was resumed (CONNACK's session-present flag).
    pub(crate) fn attach(
        &self,
        conn: Arc<ConnHandle>,
        clean_session: bool,
    ) -> (Option<Arc<ConnHandle>>, bool) {
        let mut state = self.state.lock();
        let session_present = !clean_session && state.subscriptions != Subscriptions::default();
        if clean_session {
            state.subscriptions = Subscriptions::default();
        }
        let replaced = state.conn.replace(conn);
        let reachable = state.subscriptions.methods.is_some();
        drop(state);
        if reachable {
            self.reachable.notify_waiters();
        }
        (replaced, session_present)
    }

    /// Clears the live connection if it is still `conn`; returns whether it was (a connection
    /// replaced by a newer one must not mark the device disconnected).
    pub(crate) fn detach(&self, conn: &Arc<ConnHandle>) -> bool {
        let mut state = self.state.lock();
        match &state.conn {
            Some(current) if Arc::ptr_eq(current, conn) => {
                state.conn = None;
                true
            }
            _ => false,
        }
    }

    /// Whether a connection is live.
    pub(crate) fn is_connected(&self) -> bool {
        self.state.lock().conn.is_some()
    }

    /// The live connection, if any (used to evict it).
    pub(crate) fn connection(&self) -> Option<Arc<ConnHandle>> {
        self.state.lock().conn.clone()
    }

    /// Records a granted subscription.
    pub(crate) fn subscribe(&self, kind: FilterKind, qos: QoS) {
        let mut state = self.state.lock();
        *state.subscriptions.slot_mut(kind) = Some(qos);
        let reachable = kind == FilterKind::Methods && state.conn.is_some();
        drop(state);
        if reachable {
            self.reachable.notify_waiters();
        }
    }

    /// Removes a subscription.
    pub(crate) fn unsubscribe(&self, kind: FilterKind) {
        *self.state.lock().subscriptions.slot_mut(kind) = None;
    }

    /// The QoS granted for `kind`, if subscribed.
    pub(crate) fn subscription(&self, kind: FilterKind) -> Option<QoS> {
        self.state.lock().subscriptions.get(kind)
    }

    /// Queues a publish on the live connection if the device subscribed to `kind`; the QoS is the
    /// granted one. Returns whether it was queued.
    pub(crate) fn push_if_subscribed(
        &self,
        kind: FilterKind,
        topic: String,
        payload: Bytes,
    ) -> Result<(), PushError> {
        let state = self.state.lock();
        let (Some(conn), Some(qos)) = (&state.conn, state.subscriptions.get(kind)) else {
            return Err(PushError::Closed);
        };
        conn.push(Outbound { topic, payload, qos })
    }

    /// A future that completes on the next `reachable` notification; call `enable` on it before
    /// checking [`DeviceSlot::is_reachable`] so that no wake-up is lost.
    pub(crate) fn reachable_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.reachable.notified()
    }

    /// Whether a connection is live and subscribed to methods.
    pub(crate) fn is_reachable(&self) -> bool {
        let state = self.state.lock();
        state.conn.is_some() && state.subscriptions.methods.is_some()
    }

    /// Registers a pending call and queues its request, built by `topic_for(rid)`, at QoS 0.
    /// On error `reply` is dropped.
    pub(crate) fn send_method(
        &self,
        topic_for: impl FnOnce(u64) -> String,
        payload: Bytes,
        reply: oneshot::Sender<MethodReply>,
    ) -> Result<u64, SendMethodError> {
        let mut state = self.state.lock();
        let conn = match (&state.conn, state.subscriptions.methods) {
            (Some(conn), Some(_)) => conn.clone(),
            _ => return Err(SendMethodError::NotReachable),
        };
        state.next_rid = state.next_rid.wrapping_add(1);
        let rid = state.next_rid;
        match conn.push(Outbound { topic: topic_for(rid), payload, qos: QoS::AtMostOnce }) {
            Ok(()) => {
                state.pending.insert(rid, reply);
                Ok(rid)
            }
            Err(PushError::Full) => Err(SendMethodError::Full(conn)),
            Err(PushError::Closed) => Err(SendMethodError::NotReachable),
        }
    }

    /// Hands the device's answer to the waiting caller; `false` when nobody waits for `rid`
    /// (it timed out, or the device made the id up).
    pub(crate) fn complete_method(&self, rid: u64, reply: MethodReply) -> bool {
        let sender = self.state.lock().pending.remove(&rid);
        sender.is_some_and(|sender| sender.send(reply).is_ok())
    }

    /// Forgets a pending call (its caller gave up).
    pub(crate) fn cancel_method(&self, rid: u64) {
        self.state.lock().pending.remove(&rid);
    }

    /// Number of calls waiting for this device's answer.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }
}

impl Subscriptions {
    /// The QoS granted for `kind`.
    pub(crate) fn get(&self, kind: FilterKind) -> Option<QoS> {
        match kind {
            FilterKind::Methods => self.methods,
            FilterKind::TwinResponses => self.twin_responses,
            FilterKind::Desired => self.desired,
            FilterKind::CloudToDevice => self.cloud_to_device,
        }
    }

    fn slot_mut(&mut self, kind: FilterKind) -> &mut Option<QoS> {
        match kind {
            FilterKind::Methods => &mut self.methods,
            FilterKind::TwinResponses => &mut self.twin_responses,
            FilterKind::Desired => &mut self.desired,
            FilterKind::CloudToDevice => &mut self.cloud_to_device,
        }
    }
}

impl ConnHandle {
    /// Queues a publish and wakes the connection task.
    pub(crate) fn push(&self, outbound: Outbound) -> Result<(), PushError> {
        let mut outbox = self.outbox.lock();
        if outbox.closing.is_some() {
            return Err(PushError::Closed);
        }
        if outbox.queue.len() >= OUTBOX_CAPACITY {
            return Err(PushError::Full);
        }
        outbox.queue.push_back(outbound);
        drop(outbox);
        self.wake.notify_one();
        Ok(())
    }

    /// Tells the connection task to close (the first reason wins).
    pub(crate) fn close(&self, reason: CloseReason) {
        self.outbox.lock().closing.get_or_insert(reason);
        self.wake.notify_one();
        // Senders waiting for space must notice the connection is gone.
        self.space.notify_waiters();
    }

    /// Whether a publish would fit in the outbox now (or the connection is closing, so a retry
    /// fails fast instead of waiting).
    pub(crate) fn has_space_or_closed(&self) -> bool {
        let outbox = self.outbox.lock();
        outbox.closing.is_some() || outbox.queue.len() < OUTBOX_CAPACITY
    }

    /// Moves every queued publish into `into`; returns the close reason if the task must close.
    pub(crate) fn drain(&self, into: &mut Vec<Outbound>) -> Option<CloseReason> {
        let mut outbox = self.outbox.lock();
        let had_items = !outbox.queue.is_empty();
        into.extend(outbox.queue.drain(..));
        let closing = outbox.closing;
        if outbox.queue.capacity() > OUTBOX_CAPACITY {
            // A burst grew the queue; give the memory back while the connection idles.
            outbox.queue = VecDeque::new();
        }
        drop(outbox);
        if had_items {
            self.space.notify_waiters();
        }
        closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    #[test]
    fn subscriptions_persist_unless_clean_session() {
        let slot = DeviceSlot::default();
        let first = Arc::new(ConnHandle::default());
        let (replaced, present) = slot.attach(first.clone(), false);
        assert!(replaced.is_none() && !present);
        slot.subscribe(FilterKind::Methods, QoS::AtLeastOnce);
        assert!(slot.is_reachable());
        assert!(slot.detach(&first));
        assert!(!slot.is_reachable());

        let second = Arc::new(ConnHandle::default());
        let (replaced, present) = slot.attach(second.clone(), false);
        assert!(replaced.is_none() && present);
        assert!(slot.is_reachable(), "a CleanSession 0 reconnect keeps the method subscription");

        let third = Arc::new(ConnHandle::default());
        let (replaced, present) = slot.attach(third.clone(), true);
        assert!(replaced.is_some_and(|old| Arc::ptr_eq(&old, &second)) && !present);
        assert!(!slot.is_reachable(), "CleanSession 1 drops subscriptions");
        assert!(!slot.detach(&second), "a replaced connection does not detach the new one");
        assert!(slot.is_connected());
    }

    #[test]
    fn method_calls_are_correlated_and_bounded() {
        let slot = DeviceSlot::default();
        let conn = Arc::new(ConnHandle::default());
        slot.attach(conn.clone(), true);
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            slot.send_method(|rid| rid.to_string(), Bytes::new(), tx),
            Err(SendMethodError::NotReachable)
        ));
        slot.subscribe(FilterKind::Methods, QoS::AtMostOnce);

        let mut receivers = Vec::new();
        for _ in 0..OUTBOX_CAPACITY {
            let (tx, rx) = oneshot::channel();
            let rid = slot
                .send_method(|rid| format!("m/{rid}"), Bytes::from_static(b"null"), tx)
                .ok()
                .unwrap();
            receivers.push((rid, rx));
        }
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            slot.send_method(|rid| rid.to_string(), Bytes::new(), tx),
            Err(SendMethodError::Full(_))
        ));

        let mut drained = Vec::new();
        assert_eq!(conn.drain(&mut drained), None);
        assert_eq!(drained.len(), OUTBOX_CAPACITY);
        assert_eq!(drained[0].topic, "m/1");

        let (rid, mut rx) = receivers.remove(0);
        assert!(slot.complete_method(rid, MethodReply { status: 200, body: Bytes::new() }));
        assert_eq!(rx.try_recv().unwrap().status, 200);
        assert!(
            !slot.complete_method(rid, MethodReply { status: 200, body: Bytes::new() }),
            "answered once"
        );
        assert!(!slot.complete_method(9999, MethodReply { status: 200, body: Bytes::new() }));
        slot.cancel_method(receivers[0].0);
        assert_eq!(slot.pending_count(), OUTBOX_CAPACITY - 2);
    }

    #[test]
    fn closed_connections_refuse_pushes() {
        let conn = ConnHandle::default();
        conn.close(CloseReason::Replaced);
        conn.close(CloseReason::Evicted);
        let outbound = Outbound { topic: "t".into(), payload: Bytes::new(), qos: QoS::AtMostOnce };
        assert_eq!(conn.push(outbound), Err(PushError::Closed));
        assert_eq!(conn.drain(&mut Vec::new()), Some(CloseReason::Replaced));
    }

    #[test]
    fn table_inserts_once() {
        let table = SessionTable::new();
        let a = table.get_or_insert(&device("a"));
        assert!(Arc::ptr_eq(&a, &table.get_or_insert(&device("a"))));
        assert!(table.get(&device("b")).is_none());
        assert!(!a.is_connected());
        a.attach(Arc::new(ConnHandle::default()), true);
        assert!(table.get(&device("a")).is_some_and(|slot| slot.is_connected()));
        assert!(table.remove(&device("a")).is_some());
        assert!(table.get(&device("a")).is_none());
    }
}
