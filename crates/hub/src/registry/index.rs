//! A secondary index over twin tags: (tag path, scalar value) → device ids.
//!
//! Lets `WHERE tags.building = '43'` (and job conditions like it) visit only the matching twins instead
//! of scanning every device. Only scalar leaves (strings, numbers, booleans, null) are indexed; arrays
//! and objects are not, and a query on them falls back to a scan. The index is a candidate filter:
//! callers still evaluate the full condition on each candidate.

use std::collections::{BTreeSet, HashMap};

use protocol::ids::DeviceId;
use serde_json::{Map, Value};

/// The tag index. Kept under the registry's short mutex; updated whenever a device's tags change.
#[derive(Debug, Default)]
pub(super) struct TagIndex {
    by_entry: HashMap<(String, String), BTreeSet<DeviceId>>,
    by_device: HashMap<DeviceId, Vec<(String, String)>>,
}

impl TagIndex {
    /// Indexes `tags` for `device` (call [`TagIndex::remove`] first when replacing).
    pub(super) fn insert(&mut self, device: &DeviceId, tags: &Map<String, Value>) {
        let mut entries = Vec::new();
        collect_leaves(tags, &mut String::new(), &mut entries);
        if entries.is_empty() {
            return;
        }
        for entry in &entries {
            self.by_entry.entry(entry.clone()).or_default().insert(device.clone());
        }
        self.by_device.insert(device.clone(), entries);
    }

    /// Drops every entry of `device`.
    pub(super) fn remove(&mut self, device: &DeviceId) {
        let Some(entries) = self.by_device.remove(device) else { return };
        for entry in entries {
            if let Some(set) = self.by_entry.get_mut(&entry) {
                set.remove(device);
                if set.is_empty() {
                    self.by_entry.remove(&entry);
                }
            }
        }
    }

    /// Devices whose tag at `path` (segments below `tags`) equals the scalar `value`, in id order.
    pub(super) fn lookup(&self, path: &[String], value: &Value) -> BTreeSet<DeviceId> {
        let Some(key) = scalar_key(value) else { return BTreeSet::new() };
        self.by_entry.get(&(path.join("."), key)).cloned().unwrap_or_default()
    }
}

fn collect_leaves(map: &Map<String, Value>, prefix: &mut String, out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let restore = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(key);
        match value {
            Value::Object(child) => collect_leaves(child, prefix, out),
            scalar => {
                if let Some(key) = scalar_key(scalar) {
                    out.push((prefix.clone(), key));
                }
            }
        }
        prefix.truncate(restore);
    }
}

/// The index text of a scalar: the query crate's key, so the index agrees with the evaluator's equality.
fn scalar_key(value: &Value) -> Option<String> {
    query::index_key(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_owned).collect()
    }

    fn ids(set: BTreeSet<DeviceId>) -> Vec<String> {
        set.into_iter().map(DeviceId::into_string).collect()
    }

    #[test]
    fn finds_scalar_leaves_and_forgets_removed_devices() {
        let mut index = TagIndex::default();
        let tags = |value: Value| value.as_object().cloned().unwrap();
        let d1 = DeviceId::new("d1").unwrap();
        let d2 = DeviceId::new("d2").unwrap();
        index.insert(&d1, &tags(json!({"building": "43", "loc": {"floor": 2}, "list": [1]})));
        index.insert(&d2, &tags(json!({"building": "43", "loc": {"floor": 2.0}})));
        assert_eq!(ids(index.lookup(&path("building"), &json!("43"))), ["d1", "d2"]);
        assert_eq!(ids(index.lookup(&path("loc.floor"), &json!(2))), ["d1", "d2"]);
        assert!(index.lookup(&path("building"), &json!(43)).is_empty());
        assert!(index.lookup(&path("list"), &json!([1])).is_empty());
        index.remove(&d1);
        assert_eq!(ids(index.lookup(&path("building"), &json!("43"))), ["d2"]);
        index.remove(&d2);
        assert!(index.by_entry.is_empty());
    }
}
