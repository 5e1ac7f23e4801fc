//! The device registry and twins: in memory for speed, durable through [`crate::store`].
//!
//! [`Registry`] is a cheap `Clone` handle. State is an ordered map of device id → record, each record
//! behind its own short `parking_lot::Mutex` (never held across `.await`), so patches to different
//! devices never contend and queries iterate in device-id order (stable paging).
//! Every mutation is written through to the store's `devices` table and the call returns once that
//! write has committed; the store's group commit lets thousands of concurrent patches share one
//! transaction. Each write carries a sequence number taken under the record's lock, and the upsert
//! keeps the highest, so writes that reach the store out of order never regress a row; deletes leave
//! a tombstone (dropped at the next start) for the same reason.
//! Activity times (`record_activity`) are hot-path and only marked dirty; [`Registry::flush_activity`]
//! writes them in the background.
//!
//! Twin semantics (merge patch, validation, limits, the service and device JSON shapes) come from
//! `protocol::twin`; this module applies them under the right lock and persists the result.
//! It does not talk to devices: REST handlers and the jobs engine push the returned desired patch
//! through `mqtt::Sessions`.

mod devices;
mod index;
mod persist;
mod record;
mod twin_query;
mod twins;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use protocol::device::{ConnectionState, Device, DeviceStatus, RegistryStatistics};

use protocol::error::ErrorCode;
use protocol::ids::DeviceId;
use protocol::twin::{ServiceTwin, TwinError};
use serde_json::Value;

use crate::events::{Events, HubEvent};
use crate::store::{Store, StoreError};
use record::Record;
pub use twin_query::QueryPage;

/// Cheap-to-clone handle to the registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    devices: RwLock<BTreeMap<DeviceId, Arc<Mutex<Record>>>>,
    tags: Mutex<index::TagIndex>,
    store: Store,
    /// Next persistence sequence number (see the module doc).
    seq: AtomicU64,
    /// Devices whose activity time changed since the last [`Registry::flush_activity`].
    dirty_activity: Mutex<HashSet<DeviceId>>,
    /// Rows waiting for the store (see `persist`).
    rows: Arc<persist::RowQueue>,
    /// Where lifecycle, twin and connection-state changes are published (set once by the hub).
    events: std::sync::OnceLock<Events>,
}

/// Base64-decoded keys and status used to authenticate a device's CONNECT.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    /// Primary key, decoded.
    pub primary_key: Vec<u8>,
    /// Secondary key, decoded.
    pub secondary_key: Vec<u8>,
    /// `status == "enabled"`.
    pub enabled: bool,
}

/// A change of a device's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionChange {
    /// The device's MQTT session connected.
    Connected,
    /// The device's MQTT session ended.
    Disconnected,
}

/// An `If-Match` precondition, read from the header as the SDKs send it (quoted or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: create-only for `PUT /devices`, unconditional for twins and deletes.
    Absent,
    /// `*` or `"*"`: any existing version.
    Any,
    /// A specific etag, quotes stripped.
    Etag(String),
}

/// The outcome of a twin write from the service side.
#[derive(Debug, Clone)]
pub struct TwinWrite {
    /// The service twin after the write (`GET /twins/{id}` shape).
    pub twin: ServiceTwin,
    /// The body to push to the device on `$iothub/twin/PATCH/properties/desired/` (with `"$version"`),
    /// `None` when the desired section did not change.
    pub desired_push: Option<Value>,
}

/// What a device write did, so REST can tell the device endpoint.
#[derive(Debug, Clone)]
pub struct DeviceWrite {
    /// The Device JSON after the write.
    pub device: Device,
    /// Whether live sessions must be closed (device disabled or keys changed).
    pub disconnect: bool,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No device with that id.
    #[error("device {0} not found")]
    DeviceNotFound(DeviceId),
    /// Create of an id that exists.
    #[error("a device with id '{0}' is already registered")]
    DeviceAlreadyExists(DeviceId),
    /// `If-Match` named another etag.
    #[error("etag {given:?} does not match the current etag {current:?}")]
    EtagMismatch {
        /// The etag the client sent.
        given: String,
        /// The current etag.
        current: String,
    },
    /// A query continuation token this hub did not issue.
    #[error("invalid continuation token {0:?}")]
    BadContinuation(String),
    /// A device body field is invalid (bad key, id mismatch, ...).
    #[error("{0}")]
    InvalidDevice(String),
    /// A twin operation was refused (invalid or oversize patch, etag or `$version` mismatch).
    #[error("{0}")]
    Twin(#[from] TwinError),
    /// The store failed; the change may not be durable.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// The IoT Hub error code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            RegistryError::DeviceNotFound(_) => ErrorCode::DeviceNotFound,
            RegistryError::DeviceAlreadyExists(_) => ErrorCode::DeviceAlreadyExists,
            RegistryError::EtagMismatch { .. } => ErrorCode::PreconditionFailed,
            RegistryError::InvalidDevice(_) | RegistryError::BadContinuation(_) => {
                ErrorCode::ArgumentInvalid
            }
            RegistryError::Twin(err) => err.error_code(),
            RegistryError::Store(_) => ErrorCode::ServerError,
        }
    }
}

impl IfMatch {
    /// Reads an `If-Match` header value; `None` (no header) is [`IfMatch::Absent`].
    pub fn from_header(value: Option<&str>) -> IfMatch {
        let Some(raw) = value else { return IfMatch::Absent };
        let trimmed = raw.trim();
        let unquoted =
            trimmed.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(trimmed);
        match unquoted {
            "" => IfMatch::Absent,
            "*" => IfMatch::Any,
            etag => IfMatch::Etag(etag.to_owned()),
        }
    }

    /// Checks the precondition against `current` (unquoted).
    fn check(&self, current: &str) -> Result<(), RegistryError> {
        match self {
            IfMatch::Etag(given) if given != current => Err(RegistryError::EtagMismatch {
                given: given.clone(),
                current: current.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

impl Registry {
    /// Opens the registry on `store`: creates the `devices` table and loads every device.
    ///
    /// # Errors
    /// [`RegistryError::Store`] when the table cannot be created or read.
    pub async fn open(store: Store) -> Result<Registry, RegistryError> {
        let loaded = persist::load(&store).await?;
        let mut tags = index::TagIndex::default();
        let mut devices = BTreeMap::new();
        for record in loaded.records {
            tags.insert(&record.identity.device_id, record.twin.tags());
            devices.insert(record.identity.device_id.clone(), Arc::new(Mutex::new(record)));
        }
        tracing::debug!(n_devices = devices.len(), "registry loaded");
        Ok(Registry {
            inner: Arc::new(Inner {
                devices: RwLock::new(devices),
                tags: Mutex::new(tags),
                store,
                seq: AtomicU64::new(loaded.next_seq),
                dirty_activity: Mutex::new(HashSet::new()),
                events: std::sync::OnceLock::new(),
                rows: Arc::default(),
            }),
        })
    }

    /// Publishes this registry's changes (identity lifecycle, twin changes, connection state)
    /// on `events` from now on; only the first call has an effect.
    pub fn set_events(&self, events: Events) {
        let _ = self.inner.events.set(events);
    }

    fn events(&self) -> &Events {
        self.inner.events.get().unwrap_or(Events::disabled_ref())
    }

    /// The store this registry persists to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Number of registered devices.
    pub fn device_count(&self) -> usize {
        self.inner.devices.read().len()
    }

    /// Keys and status for CONNECT; `None` when the device does not exist. Sync, in-memory, hot path.
    pub fn credentials(&self, device: &DeviceId) -> Option<DeviceCredentials> {
        let record = self.record(device).ok()?;
        let guard = record.lock();
        Some(guard.credentials())
    }

    /// The device view for an MQTT twin GET: `{"desired":{..,"$version":n},"reported":{..,"$version":m}}`.
    ///
    /// # Errors
    /// [`RegistryError::DeviceNotFound`].
    pub fn device_twin_view(&self, device: &DeviceId) -> Result<Value, RegistryError> {
        let record = self.record(device)?;
        let guard = record.lock();
        Ok(guard.twin.device_view())
    }

    /// Applies a reported-properties patch (validated); returns the new reported `$version`.
    /// `expected_version` is the optional `$version` of the request topic (412 on mismatch).
    /// Durable when it returns.
    ///
    /// # Errors
    /// Not found, version mismatch, an invalid or oversize patch, or a store failure.
    pub async fn patch_reported(
        &self,
        device: &DeviceId,
        patch: Value,
        expected_version: Option<u64>,
    ) -> Result<u64, RegistryError> {
        let now = Utc::now();
        let Value::Object(patch) = patch else {
            return Err(TwinError::NotAnObject { what: "patch".to_owned() }.into());
        };
        let (update, write) = self.mutate(device, |record| {
            Ok(record.twin.apply_reported(&patch, expected_version, now)?)
        })?;
        if let Some(write) = write {
            write.commit(self).await?;
        }
        self.events().publish(update.written.then(|| {
            HubEvent::reported_patched(device, &patch, update.reported_version, update.twin_version)
        }));
        Ok(update.reported_version)
    }

    /// Records a connect or disconnect (connectionState, connectionStateUpdatedTime). In memory;
    /// persisted with the next write of the device or the next activity flush.
    pub fn record_connection(
        &self,
        device: &DeviceId,
        change: ConnectionChange,
        at: DateTime<Utc>,
    ) {
        let Ok(record) = self.record(device) else { return };
        let mut guard = record.lock();
        guard.identity.connection_state = match change {
            ConnectionChange::Connected => ConnectionState::Connected,
            ConnectionChange::Disconnected => ConnectionState::Disconnected,
        };
        guard.identity.connection_state_updated_time = Some(at);
        drop(guard);
        self.events()
            .publish(HubEvent::connection_state(device, change == ConnectionChange::Connected));
        self.inner.dirty_activity.lock().insert(device.clone());
    }

    /// Records device activity (lastActivityTime). Hot path: one map lookup and two short locks.
    pub fn record_activity(&self, device: &DeviceId, at: DateTime<Utc>) {
        let Ok(record) = self.record(device) else { return };
        record.lock().identity.last_activity_time = Some(at);
        let mut dirty = self.inner.dirty_activity.lock();
        if !dirty.contains(device) {
            dirty.insert(device.clone());
        }
    }

    /// Persists the activity and connection times recorded since the last call (one batch).
    ///
    /// # Errors
    /// [`RegistryError::Store`] when the batch does not commit.
    pub async fn flush_activity(&self) -> Result<(), RegistryError> {
        let dirty: Vec<DeviceId> =
            std::mem::take(&mut *self.inner.dirty_activity.lock()).into_iter().collect();
        let mut rows = Vec::with_capacity(dirty.len());
        for device in dirty {
            let Ok(record) = self.record(&device) else { continue };
            let guard = record.lock();
            if !guard.deleted {
                rows.push(persist::Row::of(&guard, self.next_seq()));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        persist::write_rows(self, rows).await?;
        Ok(())
    }

    fn record(&self, device: &DeviceId) -> Result<Arc<Mutex<Record>>, RegistryError> {
        self.inner
            .devices
            .read()
            .get(device)
            .cloned()
            .ok_or_else(|| RegistryError::DeviceNotFound(device.clone()))
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `change` on the device's record under its lock; when it changed the record (either etag
    /// moved), snapshots it for persistence (sequence number taken under the same lock) and refreshes
    /// the tag index.
    fn mutate<T>(
        &self,
        device: &DeviceId,
        change: impl FnOnce(&mut Record) -> Result<T, RegistryError>,
    ) -> Result<(T, Option<persist::PendingWrite>), RegistryError> {
        let record = self.record(device)?;
        let mut guard = record.lock();
        if guard.deleted {
            return Err(RegistryError::DeviceNotFound(device.clone()));
        }
        let before = (guard.identity.etag, guard.twin.etag(), guard.twin.version());
        let out = change(&mut guard)?;
        let after = (guard.identity.etag, guard.twin.etag(), guard.twin.version());
        if after.2 != before.2 {
            let mut tags = self.inner.tags.lock();
            tags.remove(device);
            tags.insert(device, guard.twin.tags());
        }
        let write = (after != before)
            .then(|| persist::PendingWrite(persist::Row::of(&guard, self.next_seq())));
        Ok((out, write))
    }
}

impl Registry {
    /// Device counts by status (`GET /statistics/devices`).
    pub fn statistics(&self) -> RegistryStatistics {
        let records: Vec<Arc<Mutex<Record>>> =
            self.inner.devices.read().values().cloned().collect();
        let enabled = records
            .iter()
            .filter(|record| record.lock().identity.status == DeviceStatus::Enabled)
            .count();
        let total = records.len();
        RegistryStatistics {
            total_device_count: total as u64,
            enabled_device_count: enabled as u64,
            disabled_device_count: (total - enabled) as u64,
        }
    }
}

#[cfg(test)]
mod tests;
