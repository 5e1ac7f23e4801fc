//! Index hints: which documents could possibly match, so the hub need not scan every twin.
//!
//! [`index_hint`] looks at the shape of a condition and returns a sound over-approximation of the
//! matching set: every document that matches is among the hinted candidates. The hub still
//! evaluates the full condition on each candidate. Equality keys for a hub-side index come from
//! [`index_key`], which agrees with the evaluator's notion of equality (so `3` and `3.0` collide).

use serde_json::Value;

use crate::ast::{BinaryOp, Collection, Expr};

/// Where the matching documents can be found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IndexHint {
    /// Only documents whose `deviceId` is in this list (sorted, without duplicates) can match.
    DeviceIds(Vec<String>),
    /// Only job records (`devices.jobs`) whose `jobId` is in this list (sorted, without duplicates) can match.
    JobIds(Vec<String>),
    /// Only twins whose tag at `path` (segments below `tags`) equals `value` can match.
    /// Look candidates up by [`index_key`]`(value)`.
    TagEquals {
        /// Path below `tags`, e.g. `["location", "building"]` for `tags.location.building`.
        path: Vec<String>,
        /// The primitive constant the tag must equal.
        value: Value,
    },
    /// Any document may match: scan them all.
    FullScan,
}

/// A key that is equal for two primitives exactly when the evaluator calls them equal,
/// up to harmless collisions (integers above 2^53 may share a key); `None` for objects and arrays,
/// which never compare equal.
#[must_use]
pub fn index_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("n".to_owned()),
        Value::Bool(flag) => Some(format!("b{flag}")),
        // -0.0 equals 0 for the evaluator, so it must share 0's key.
        Value::Number(number) => {
            number.as_f64().map(|float| format!("f{:e}", if float == 0.0 { 0.0 } else { float }))
        }
        Value::String(text) => Some(format!("s{text}")),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The index hint for a condition over `collection`.
#[must_use]
pub(crate) fn index_hint(filter: Option<&Expr>, collection: Collection) -> IndexHint {
    filter.map_or(IndexHint::FullScan, |expr| hint(expr, collection))
}

fn hint(expr: &Expr, collection: Collection) -> IndexHint {
    match expr {
        Expr::Binary { op: BinaryOp::Eq, lhs, rhs } => match (&**lhs, &**rhs) {
            (Expr::Path(path), Expr::Literal(value)) | (Expr::Literal(value), Expr::Path(path)) => {
                equality_hint(&path.segments, std::slice::from_ref(value), collection)
            }
            _ => IndexHint::FullScan,
        },
        Expr::In { operand, list, negated: false } => match &**operand {
            Expr::Path(path) => equality_hint(&path.segments, list, collection),
            _ => IndexHint::FullScan,
        },
        Expr::And(operands) => operands
            .iter()
            .map(|operand| hint(operand, collection))
            .fold(IndexHint::FullScan, narrower),
        Expr::Or(operands) => {
            let mut hints = operands.iter().map(|operand| hint(operand, collection));
            let first = hints.next().unwrap_or(IndexHint::FullScan);
            hints.fold(first, union)
        }
        _ => IndexHint::FullScan,
    }
}

/// The hint for `path = one of values`.
fn equality_hint(segments: &[String], values: &[Value], collection: Collection) -> IndexHint {
    let strings = || {
        // A string id never equals a non-string constant, so those can be dropped.
        let mut ids: Vec<String> =
            values.iter().filter_map(|value| value.as_str().map(str::to_owned)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    match (segments, collection) {
        ([field], _) if field == "deviceId" => IndexHint::DeviceIds(strings()),
        ([field], Collection::DevicesJobs) if field == "jobId" => IndexHint::JobIds(strings()),
        ([tags, path @ ..], Collection::Devices | Collection::DevicesModules)
            if tags == "tags" && !path.is_empty() =>
        {
            match values {
                [value] if index_key(value).is_some() => {
                    IndexHint::TagEquals { path: path.to_vec(), value: value.clone() }
                }
                _ => IndexHint::FullScan,
            }
        }
        _ => IndexHint::FullScan,
    }
}

/// Both hints hold (AND): keep the more selective one, intersecting id lists.
fn narrower(lhs: IndexHint, rhs: IndexHint) -> IndexHint {
    match (lhs, rhs) {
        (IndexHint::DeviceIds(lhs), IndexHint::DeviceIds(rhs)) => {
            IndexHint::DeviceIds(intersect(&lhs, &rhs))
        }
        (IndexHint::JobIds(lhs), IndexHint::JobIds(rhs)) => {
            IndexHint::JobIds(intersect(&lhs, &rhs))
        }
        (ids @ (IndexHint::DeviceIds(_) | IndexHint::JobIds(_)), _)
        | (_, ids @ (IndexHint::DeviceIds(_) | IndexHint::JobIds(_))) => ids,
        (IndexHint::FullScan, other) => other,
        (first, _) => first,
    }
}

/// Either hint holds (OR): id lists of the same kind merge, anything else needs a full scan.
fn union(lhs: IndexHint, rhs: IndexHint) -> IndexHint {
    match (lhs, rhs) {
        (IndexHint::DeviceIds(mut lhs), IndexHint::DeviceIds(rhs)) => {
            lhs.extend(rhs);
            lhs.sort_unstable();
            lhs.dedup();
            IndexHint::DeviceIds(lhs)
        }
        (IndexHint::JobIds(mut lhs), IndexHint::JobIds(rhs)) => {
            lhs.extend(rhs);
            lhs.sort_unstable();
            lhs.dedup();
            IndexHint::JobIds(lhs)
        }
        _ => IndexHint::FullScan,
    }
}

fn intersect(lhs: &[String], rhs: &[String]) -> Vec<String> {
    lhs.iter().filter(|id| rhs.binary_search(id).is_ok()).cloned().collect()
}
