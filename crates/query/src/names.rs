//! Canonical spelling of property paths.
//!
//! IoT Hub matches top-level system property names case-insensitively (`DeviceId` is `deviceId`)
//! and accepts the collection prefix (`devices.deviceId`, `devices.jobs.jobId`); tag and property
//! names stay case-sensitive. The parser rewrites every path into the canonical form here once, so
//! evaluation is a plain case-sensitive lookup.

use crate::ast::{Collection, Expr, Path};

/// Top-level fields of a (device or module) twin, with the known nested system names below them.
const TWIN_FIELDS: &[(&str, &[&str])] = &[
    ("deviceId", &[]),
    ("moduleId", &[]),
    ("etag", &[]),
    ("deviceEtag", &[]),
    ("status", &[]),
    ("statusReason", &[]),
    ("statusUpdateTime", &[]),
    ("connectionState", &[]),
    ("lastActivityTime", &[]),
    ("cloudToDeviceMessageCount", &[]),
    ("authenticationType", &[]),
    ("x509Thumbprint", &["primaryThumbprint", "secondaryThumbprint"]),
    ("capabilities", &["iotEdge"]),
    ("modelId", &[]),
    ("version", &[]),
    ("tags", &[]),
    ("properties", &["desired", "reported"]),
    ("deviceScope", &[]),
    ("parentScopes", &[]),
];

/// Top-level fields of a per-device job record.
const JOB_FIELDS: &[(&str, &[&str])] = &[
    ("deviceId", &[]),
    ("moduleId", &[]),
    ("jobId", &[]),
    ("jobType", &[]),
    ("status", &[]),
    ("startTimeUtc", &[]),
    ("endTimeUtc", &[]),
    ("createdDateTimeUtc", &[]),
    ("lastUpdatedDateTimeUtc", &[]),
    ("outcome", &["deviceMethodResponse"]),
    ("error", &["code", "description"]),
];

/// Names the query-jobs doc uses in filters for fields that the record spells differently.
const JOB_ALIASES: &[(&str, &str)] =
    &[("createdTimeUtc", "createdDateTimeUtc"), ("lastUpdatedTimeUtc", "lastUpdatedDateTimeUtc")];

/// Rewrites a path as written into its canonical form for `collection`.
pub(crate) fn canonical_path(mut segments: Vec<String>, collection: Collection) -> Path {
    let prefix_len = collection_prefix_len(&segments, collection);
    segments.drain(..prefix_len);
    let fields = match collection {
        Collection::Devices | Collection::DevicesModules => TWIN_FIELDS,
        Collection::DevicesJobs => JOB_FIELDS,
    };
    if collection == Collection::DevicesJobs {
        if let Some(first) = segments.first_mut() {
            if let Some((_, target)) =
                JOB_ALIASES.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(first))
            {
                *first = (*target).to_owned();
            }
        }
    }
    canonicalize_system_names(&mut segments, fields);
    Path { segments }
}

/// Rewrites every path inside `expr` into canonical form.
pub(crate) fn canonicalize_expr(expr: &mut Expr, collection: Collection) {
    match expr {
        Expr::Path(path) => *path = canonical_path(std::mem::take(&mut path.segments), collection),
        Expr::Unary { operand, .. } | Expr::In { operand, .. } => {
            canonicalize_expr(operand, collection)
        }
        Expr::Binary { lhs, rhs, .. } => {
            canonicalize_expr(lhs, collection);
            canonicalize_expr(rhs, collection);
        }
        Expr::And(operands) | Expr::Or(operands) | Expr::Call { args: operands, .. } => {
            for operand in operands {
                canonicalize_expr(operand, collection);
            }
        }
        Expr::Literal(_) | Expr::Undefined => {}
    }
}

/// How many leading segments name the collection (`devices`, `devices.jobs`, `devices.modules`).
/// At least one segment always remains.
fn collection_prefix_len(segments: &[String], collection: Collection) -> usize {
    let starts_with = |prefix: &[&str]| {
        segments.len() > prefix.len()
            && prefix
                .iter()
                .zip(segments)
                .all(|(expected, segment)| segment.eq_ignore_ascii_case(expected))
    };
    match collection {
        Collection::DevicesJobs if starts_with(&["devices", "jobs"]) => 2,
        Collection::DevicesModules if starts_with(&["devices", "modules"]) => 2,
        Collection::Devices | Collection::DevicesModules if starts_with(&["devices"]) => 1,
        _ => 0,
    }
}

fn canonicalize_system_names(segments: &mut [String], fields: &[(&str, &[&str])]) {
    let Some(first) = segments.first_mut() else { return };
    let Some((name, children)) = fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(first))
    else {
        return;
    };
    *first = (*name).to_owned();
    if let Some(second) = segments.get_mut(1) {
        if let Some(child) = children.iter().find(|child| child.eq_ignore_ascii_case(second)) {
            *second = (*child).to_owned();
        }
    }
}
