//! Queries over twins: `SELECT ... FROM devices` pages for `POST /devices/query`, and the device set
//! of a job's `queryCondition`.
//!
//! Twins are visited in `deviceId` order, so a page's continuation token is simply "rows served so
//! far + last device id seen"; it stays valid while devices are created, patched or deleted.
//! Candidates come from the query crate's index hint: a deviceId equality/IN list is looked up
//! directly, a tag equality goes through the tag index, anything else scans (in chunks, so the map's
//! read lock is never held for long). Every candidate is still checked with the full condition.
//! Aggregate queries read every match and page over the finished rows.
//! `devices.jobs` is not here (the jobs engine owns those rows); `devices.modules` has no rows
//! because hubsim has no module identities.

use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use protocol::ids::DeviceId;
use protocol::query::QueryItemType;
use query::{Collection, Condition, IndexHint, Query, Select};
use serde_json::Value;

use super::record::Record;
use super::{Registry, RegistryError};

/// How many records a scan takes from the map per read-lock acquisition.
const SCAN_CHUNK: usize = 256;

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The rows (twins, projections, aggregates or job records).
    pub items: Vec<Value>,
    /// What the rows are (`x-ms-item-type`).
    pub item_type: QueryItemType,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// Where a page starts: rows already served and the last device id seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    served: u64,
    after: Option<DeviceId>,
}

impl Registry {
    /// The devices matching a job condition (`*` = all), in id order. Evaluated once, at call time.
    pub fn matching_device_ids(&self, condition: &Condition) -> Vec<DeviceId> {
        let hint = condition.index_hint();
        let mut ids = Vec::new();
        self.for_each_candidate(&hint, None, |record| {
            let matched =
                condition.is_match_all() || condition.matches(&record.service_twin().to_value());
            if matched {
                ids.push(record.identity.device_id.clone());
            }
            true
        });
        ids
    }

    /// One page of a `FROM devices` or `FROM devices.modules` query.
    ///
    /// # Errors
    /// [`RegistryError::BadContinuation`] when the token is not one this hub issued.
    pub fn query_page(
        &self,
        query: &Query,
        continuation: Option<&str>,
        page_size: usize,
    ) -> Result<QueryPage, RegistryError> {
        let cursor = Cursor::parse(continuation)?;
        let item_type =
            if query.select == Select::All { QueryItemType::Twin } else { QueryItemType::Raw };
        if query.from != Collection::Devices {
            // No module identities: the collection exists and is empty.
            return Ok(QueryPage { items: Vec::new(), item_type, continuation: None });
        }
        if query.is_aggregate() {
            return Ok(self.aggregate_page(query, &cursor, page_size));
        }
        let remaining = query.top.map_or(u64::MAX, |top| top.saturating_sub(cursor.served));
        let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(page_size.max(1));
        let hint = query.index_hint();
        let mut projector = query.projector();
        let mut rows = 0usize;
        let mut last = None;
        let mut more = false;
        self.for_each_candidate(&hint, cursor.after.as_ref(), |record| {
            let twin = record.service_twin().to_value();
            if !query.matches(&twin) {
                return true;
            }
            if rows == want {
                more = true;
                return false;
            }
            projector.push(&twin);
            rows += 1;
            last = Some(record.identity.device_id.clone());
            true
        });
        let served = cursor.served + rows as u64;
        let more = more && query.top.is_none_or(|top| served < top);
        let continuation = more.then(|| Cursor { served, after: last }.encode());
        Ok(QueryPage { items: projector.finish(), item_type, continuation })
    }

    fn aggregate_page(&self, query: &Query, cursor: &Cursor, page_size: usize) -> QueryPage {
        let hint = query.index_hint();
        let mut projector = query.projector();
        self.for_each_candidate(&hint, None, |record| {
            let twin = record.service_twin().to_value();
            if query.matches(&twin) {
                projector.push(&twin);
            }
            true
        });
        let rows = projector.finish();
        let start = usize::try_from(cursor.served).unwrap_or(usize::MAX).min(rows.len());
        let end = start.saturating_add(page_size.max(1)).min(rows.len());
        let continuation =
            (end < rows.len()).then(|| Cursor { served: end as u64, after: None }.encode());
        QueryPage { items: rows[start..end].to_vec(), item_type: QueryItemType::Raw, continuation }
    }

    /// Calls `visit` on each candidate record with id > `after`, in id order, until it returns false.
    fn for_each_candidate(
        &self,
        hint: &IndexHint,
        after: Option<&DeviceId>,
        mut visit: impl FnMut(&Record) -> bool,
    ) {
        let after_ok = |id: &DeviceId| after.is_none_or(|after| id > after);
        let listed: Option<Vec<Arc<Mutex<Record>>>> = match hint {
            IndexHint::DeviceIds(ids) => {
                let devices = self.inner.devices.read();
                Some(
                    ids.iter()
                        .filter_map(|id| DeviceId::new(id.as_str()).ok())
                        .filter(|id| after_ok(id))
                        .filter_map(|id| devices.get(&id).cloned())
                        .collect(),
                )
            }
            IndexHint::TagEquals { path, value } => {
                let ids = self.inner.tags.lock().lookup(path, value);
                let devices = self.inner.devices.read();
                Some(
                    ids.iter()
                        .filter(|id| after_ok(id))
                        .filter_map(|id| devices.get(id).cloned())
                        .collect(),
                )
            }
            _ => None,
        };
        if let Some(records) = listed {
            for record in records {
                let guard = record.lock();
                if !guard.deleted && !visit(&guard) {
                    return;
                }
            }
            return;
        }
        self.scan(after, visit);
    }

    fn scan(&self, after: Option<&DeviceId>, mut visit: impl FnMut(&Record) -> bool) {
        let mut resume = after.cloned();
        loop {
            let chunk: Vec<(DeviceId, Arc<Mutex<Record>>)> = {
                let devices = self.inner.devices.read();
                let lower = resume.clone().map_or(Bound::Unbounded, Bound::Excluded);
                devices
                    .range((lower, Bound::Unbounded))
                    .take(SCAN_CHUNK)
                    .map(|(id, record)| (id.clone(), record.clone()))
                    .collect()
            };
            let Some((last_id, _)) = chunk.last() else { return };
            resume = Some(last_id.clone());
            for (_, record) in chunk {
                let guard = record.lock();
                if !guard.deleted && !visit(&guard) {
                    return;
                }
            }
        }
    }
}

impl Cursor {
    fn parse(token: Option<&str>) -> Result<Cursor, RegistryError> {
        let Some(token) = token.map(str::trim).filter(|token| !token.is_empty()) else {
            return Ok(Cursor::default());
        };
        let bad = || RegistryError::BadContinuation(token.to_owned());
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (served, after) = text.split_once('|').ok_or_else(bad)?;
        let served = served.parse().map_err(|_| bad())?;
        let after = match after {
            "" => None,
            id => Some(DeviceId::new(id).map_err(|_| bad())?),
        };
        Ok(Cursor { served, after })
    }

    fn encode(&self) -> String {
        let after = self.after.as_ref().map_or("", DeviceId::as_str);
        let text = format!("{}|{after}", self.served);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }
}
