//! The back-end event stream, transport side excluded: what happened on the hub ([`HubEvent`]),
//! the cheap handle the rest of the hub publishes through ([`Events`]), and the queue a
//! publisher drains ([`EventQueue`]) into topics and JSON payloads ([`EncodedEvent`]).
//!
//! [`Events::publish`] never blocks and never fails: it is a `try_send` on a bounded queue, and an
//! event that does not fit is dropped and counted ([`EventStats::dropped`]). So a slow subscriber,
//! or a stalled broker, costs back ends events, never devices or jobs any latency. Job progress
//! snapshots are rate-limited per job on the draining side (the latest is kept, the final one
//! always goes out). A disabled [`Events`] (events off) does nothing.
//!
//! Deliberately absent: the broker (only [`crate::broker`] names rumqttd), persistence or replay
//! of events, per-subscriber filtering beyond MQTT topic filters, and cloud-to-device messages.

mod hooks;
mod limiter;
mod payload;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use protocol::ids::{DeviceId, JobId, ModuleId};
use protocol::job::{DeviceJob, DeviceJobStatistics, JobStatus, JobType};
use protocol::property_bag::PropertyBag;
use serde_json::Value;
use tokio::time::Instant;

use limiter::ProgressLimiter;
use payload::Encoder;

pub use hooks::forward_telemetry;
pub use payload::{escape_topic_level, EncodedEvent};

/// Default queue capacity: a 10,000-device job's records plus its progress fit several times over.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
/// Default shortest time between two progress snapshots of one job (10 per second).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Largest number of events encoded and handed to the broker in one batch.
const MAX_BATCH: usize = 1024;

/// Something that happened on the hub that back ends may want to see.
///
/// Variants are boxed so the queue's slots stay small.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// A device-to-cloud message (`telemetry/{deviceId}`).
    Telemetry(Box<TelemetryEvent>),
    /// Tags or desired or reported properties changed (`twin-changes/{deviceId}`).
    TwinChange(Box<TwinChangeEvent>),
    /// A device connected or disconnected (`connection-state/{deviceId}`).
    ConnectionState(Box<ConnectionStateEvent>),
    /// A device identity was created or deleted (`lifecycle/{deviceId}`).
    Lifecycle(Box<LifecycleEvent>),
    /// A job's statistics changed (`jobs/{jobId}/progress`, rate-limited).
    JobProgress(Box<JobProgressEvent>),
    /// A device's job record became terminal (`jobs/{jobId}/devices`).
    DeviceJobRecord(Box<DeviceJob>),
}

/// A device-to-cloud message as the hub received it.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// The sending device.
    pub device_id: DeviceId,
    /// The sending module, for module identities.
    pub module_id: Option<ModuleId>,
    /// The topic's property bag: `$.`-prefixed system properties and application properties.
    pub properties: PropertyBag,
    /// The body as sent.
    pub body: Bytes,
    /// When the hub accepted it (`iothub-enqueuedtime`).
    pub enqueued_at: DateTime<Utc>,
}

/// Whether a twin change patched or replaced the twin (`opType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinChangeOp {
    /// A patch (`updateTwin`): sections hold only what changed.
    Update,
    /// A full replacement (`replaceTwin`): sections hold the new content.
    Replace,
}

/// A twin change: the changed sections, each with its new `$version`.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinChangeEvent {
    /// The device.
    pub device_id: DeviceId,
    /// Patch or replacement.
    pub op: TwinChangeOp,
    /// The twin's version after the change.
    pub version: u64,
    /// Changed tags, when tags changed.
    pub tags: Option<Value>,
    /// The desired change (including `"$version"`), when desired properties changed.
    pub desired: Option<Value>,
    /// The reported change (including `"$version"`), when reported properties changed.
    pub reported: Option<Value>,
    /// When the change was made.
    pub at: DateTime<Utc>,
}

/// A connect or disconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStateEvent {
    /// The device.
    pub device_id: DeviceId,
    /// `true`: connected; `false`: disconnected.
    pub connected: bool,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Whether an identity was created or deleted (`opType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleOp {
    /// `createDeviceIdentity`.
    Created,
    /// `deleteDeviceIdentity`.
    Deleted,
}

/// A device identity was created or deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    /// The device.
    pub device_id: DeviceId,
    /// Created or deleted.
    pub op: LifecycleOp,
    /// The body: the device's twin (service shape) at that moment.
    pub twin: Value,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A snapshot of a job's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgressEvent {
    /// The job.
    pub job_id: JobId,
    /// The job kind.
    pub job_type: JobType,
    /// The job's status at the snapshot.
    pub status: JobStatus,
    /// Device counts at the snapshot.
    pub statistics: DeviceJobStatistics,
    /// When the snapshot was taken.
    pub at: DateTime<Utc>,
}

/// Settings of the event stream.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Events waiting for the publisher; when full, new events are dropped and counted.
    pub queue_capacity: NonZeroUsize,
    /// Shortest time between two progress snapshots of one job.
    pub progress_interval: Duration,
}

/// Counters of the event stream since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Events dropped because the queue was full (or the publisher had stopped).
    pub dropped: u64,
    /// Events handed to the broker.
    pub published: u64,
    /// Progress snapshots superseded by a later one of the same job (rate limit).
    pub progress_coalesced: u64,
    /// Events the broker refused (its router had gone).
    pub publish_failed: u64,
}

/// Cheap-to-clone handle that publishes [`HubEvent`]s; disabled when events are off.
#[derive(Clone, Default)]
pub struct Events {
    inner: Option<Arc<Sender>>,
}

/// The draining side of [`Events`]: receives, rate-limits and encodes.
pub struct EventQueue {
    rx: Receiver<HubEvent>,
    counters: Arc<Counters>,
    limiter: ProgressLimiter,
    encoder: Encoder,
}

struct Sender {
    /// Bounded: when full, [`Events::publish`] drops the event and counts it.
    tx: SyncSender<HubEvent>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    dropped: AtomicU64,
    published: AtomicU64,
    progress_coalesced: AtomicU64,
    publish_failed: AtomicU64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            queue_capacity: NonZeroUsize::new(DEFAULT_QUEUE_CAPACITY)
                .expect("the default capacity is not zero"),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

impl HubEvent {
    /// A connect (`connected = true`) or disconnect of `device` now.
    pub fn connection_state(device: &DeviceId, connected: bool) -> HubEvent {
        HubEvent::ConnectionState(Box::new(ConnectionStateEvent {
            device_id: device.clone(),
            connected,
            at: Utc::now(),
        }))
    }

    /// A device identity created or deleted now; `twin` is the device's twin (service shape).
    pub fn lifecycle(device: &DeviceId, op: LifecycleOp, twin: Value) -> HubEvent {
        HubEvent::Lifecycle(Box::new(LifecycleEvent {
            device_id: device.clone(),
            op,
            twin,
            at: Utc::now(),
        }))
    }

    /// A job statistics snapshot taken now.
    pub fn job_progress(
        job_id: &JobId,
        job_type: JobType,
        status: JobStatus,
        statistics: DeviceJobStatistics,
    ) -> HubEvent {
        HubEvent::JobProgress(Box::new(JobProgressEvent {
            job_id: job_id.clone(),
            job_type,
            status,
            statistics,
            at: Utc::now(),
        }))
    }

    /// A device job record that became terminal.
    pub fn device_job_record(record: &DeviceJob) -> HubEvent {
        HubEvent::DeviceJobRecord(Box::new(record.clone()))
    }

    /// The MQTT topic this event is published on.
    pub fn topic(&self) -> String {
        payload::topic(self)
    }
}

impl From<crate::mqtt::Telemetry> for HubEvent {
    fn from(message: crate::mqtt::Telemetry) -> Self {
        HubEvent::Telemetry(Box::new(TelemetryEvent {
            device_id: message.device_id,
            module_id: message.module_id,
            properties: message.properties,
            body: message.body,
            enqueued_at: message.received_at,
        }))
    }
}

impl JobProgressEvent {
    /// Whether this is the job's last snapshot (completed, failed or cancelled).
    pub fn is_final(&self) -> bool {
        matches!(self.status, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl Events {
    /// A handle that does nothing (events off).
    pub fn disabled() -> Events {
        Events { inner: None }
    }

    /// A handle and the queue it feeds. `host_name` gives `hubName` in payloads.
    pub fn channel(cfg: &EventsConfig, host_name: &str) -> (Events, EventQueue) {
        let (tx, rx) = mpsc::sync_channel(cfg.queue_capacity.get());
        let counters = Arc::new(Counters::default());
        let events = Events { inner: Some(Arc::new(Sender { tx, counters: counters.clone() })) };
        let queue = EventQueue {
            rx,
            counters,
            limiter: ProgressLimiter::new(cfg.progress_interval),
            encoder: Encoder::new(host_name),
        };
        (events, queue)
    }

    /// A `'static` disabled handle, for holders that may be given a real one later.
    pub fn disabled_ref() -> &'static Events {
        static DISABLED: Events = Events { inner: None };
        &DISABLED
    }

    /// Queues `event` for back ends (`None`: nothing happened, nothing is sent). Never blocks:
    /// when the queue is full the event is dropped and counted. Does nothing when events are off.
    pub fn publish(&self, event: impl Into<Option<HubEvent>>) {
        let Some(sender) = &self.inner else { return };
        let Some(event) = event.into() else { return };
        let counter = match sender.tx.try_send(event) {
            Ok(()) => &sender.counters.enqueued,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => &sender.counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether events are on.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats().dropped
    }

    /// Counters since the stream started (all zero when events are off).
    pub fn stats(&self) -> EventStats {
        self.inner.as_ref().map(|sender| sender.counters.snapshot()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("enabled", &self.is_enabled()).finish()
    }
}

impl EventQueue {
    /// Waits up to `max_wait` for events and returns them encoded, at most `MAX_BATCH` (1024),
    /// progress snapshots rate-limited. Empty when nothing arrived (or every sender is gone).
    pub fn next_batch(&mut self, max_wait: Duration) -> Vec<EncodedEvent> {
        let now = Instant::now();
        let wait = match self.limiter.next_due() {
            Some(due) => due.saturating_duration_since(now).min(max_wait),
            None => max_wait,
        };
        let mut received = Vec::new();
        match self.rx.recv_timeout(wait) {
            Ok(event) => received.push(event),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        while received.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(event) => received.push(event),
                Err(_) => break,
            }
        }
        self.admit(received, Instant::now())
    }

    /// Everything still queued (for shutdown), encoded, progress snapshots unlimited.
    pub fn drain_now(&mut self) -> Vec<EncodedEvent> {
        let mut out: Vec<EncodedEvent> = self
            .limiter
            .due(Instant::now() + Duration::from_secs(3600))
            .into_iter()
            .map(|event| self.encoder.encode(&HubEvent::JobProgress(event)))
            .collect();
        while let Ok(event) = self.rx.try_recv() {
            out.push(self.encoder.encode(&event));
        }
        out
    }

    /// Records the outcome of handing `n_events` to the broker.
    pub fn record_published(&self, n_events: usize, ok: bool) {
        let counter = if ok { &self.counters.published } else { &self.counters.publish_failed };
        counter.fetch_add(n_events as u64, Ordering::Relaxed);
    }

    fn admit(&mut self, received: Vec<HubEvent>, now: Instant) -> Vec<EncodedEvent> {
        let mut out = Vec::with_capacity(received.len());
        for event in received {
            let event = match event {
                HubEvent::JobProgress(progress) => match self.limiter.offer(progress, now) {
                    Some(progress) => HubEvent::JobProgress(progress),
                    None => continue,
                },
                other => other,
            };
            out.push(self.encoder.encode(&event));
        }
        for progress in self.limiter.due(now) {
            out.push(self.encoder.encode(&HubEvent::JobProgress(progress)));
        }
        let superseded = self.limiter.take_superseded();
        self.counters.progress_coalesced.fetch_add(superseded, Ordering::Relaxed);
        out
    }
}

impl Counters {
    fn snapshot(&self) -> EventStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EventStats {
            enqueued: load(&self.enqueued),
            dropped: load(&self.dropped),
            published: load(&self.published),
            progress_coalesced: load(&self.progress_coalesced),
            publish_failed: load(&self.publish_failed),
        }
    }
}

#[cfg(test)]
mod tests;
