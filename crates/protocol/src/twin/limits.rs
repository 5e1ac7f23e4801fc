//! Twin validation: key and value rules, depth, and section sizes (§3.3), reported as [`TwinError`].
//!
//! Checks run on patches before anything is applied, and the section size is checked on the result, so a
//! rejected operation leaves the twin untouched. The size is computed the documented way
//! ([`section_size`]); this module does not decide which sections a caller may write.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{ErrorCode, MqttErrorBody};

/// The longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest string value, in UTF-8 bytes.
pub const MAX_STRING_BYTES: usize = 4096;
/// The deepest nesting of objects inside a section (`tags.one. … .ten.property` is valid).
pub const MAX_DEPTH: usize = 10;
/// The smallest integer a twin may hold (-2^52).
pub const MIN_INTEGER: i64 = -4_503_599_627_370_496;
/// The largest integer a twin may hold (2^52 - 1).
pub const MAX_INTEGER: i64 = 4_503_599_627_370_495;
/// The size limit of `tags`.
pub const MAX_TAGS_SIZE: usize = 8 * 1024;
/// The size limit of `properties.desired` and of `properties.reported`.
pub const MAX_PROPERTIES_SIZE: usize = 32 * 1024;

/// One of the three writable parts of a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `tags` (service only).
    Tags,
    /// `properties.desired` (service only).
    Desired,
    /// `properties.reported` (device only).
    Reported,
}

/// Why a twin operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// The body is not JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// A patch, section or body that must be a JSON object is not one.
    #[error("{what} must be a json object")]
    NotAnObject {
        /// What was expected to be an object (`patch`, `tags`, `properties.desired` ...).
        what: String,
    },
    /// A key is empty.
    #[error("empty property name at {path}")]
    EmptyKey {
        /// Where (`desired.a`).
        path: String,
    },
    /// A key is longer than 1 KB.
    #[error("property name at {path} is {len} bytes long; the limit is 1024")]
    KeyTooLong {
        /// Where.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A key holds a control character, `.`, `$` or a space.
    #[error("property name {key:?} at {path} contains {ch:?}; control characters, '.', '$' and ' ' are not allowed")]
    BadKeyChar {
        /// Where.
        path: String,
        /// The key.
        key: String,
        /// The offending character.
        ch: char,
    },
    /// Objects are nested more than 10 deep.
    #[error("{path} is nested {depth} levels deep; the limit is 10")]
    TooDeep {
        /// Where.
        path: String,
        /// Its depth.
        depth: usize,
    },
    /// An integer outside [-2^52, 2^52 - 1].
    #[error("integer {value} at {path} is out of range [-4503599627370496, 4503599627370495]")]
    IntegerOutOfRange {
        /// Where.
        path: String,
        /// The value as written.
        value: String,
    },
    /// A string longer than 4 KB.
    #[error("string at {path} is {len} bytes long; the limit is 4096")]
    StringTooLong {
        /// Where.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A `null` inside an array (arrays are replaced whole and may not hold nulls).
    #[error("null inside an array at {path} is not allowed")]
    NullInArray {
        /// Where.
        path: String,
    },
    /// The section would exceed its size limit.
    #[error("{section} would be {size} bytes; the limit is {limit}")]
    SectionTooLarge {
        /// `tags`, `properties.desired` or `properties.reported`.
        section: &'static str,
        /// The computed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A service patch carried non-empty `properties.reported` and the caller refuses it.
    #[error("properties.reported cannot be written by the service")]
    ReportedNotWritable,
    /// The `$version` the device expected is not the current reported version.
    #[error("expected reported $version {expected}, but it is {actual}")]
    VersionMismatch {
        /// The version the request named.
        expected: u64,
        /// The current version.
        actual: u64,
    },
    /// `If-Match` names another etag.
    #[error("etag {given} does not match the twin's etag {actual}")]
    EtagMismatch {
        /// The etag the request named (quotes stripped).
        given: String,
        /// The twin's etag.
        actual: String,
    },
}

impl SectionKind {
    /// The section's name as in messages and the service JSON.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Tags => "tags",
            SectionKind::Desired => "properties.desired",
            SectionKind::Reported => "properties.reported",
        }
    }

    /// The section's size limit.
    pub fn size_limit(self) -> usize {
        match self {
            SectionKind::Tags => MAX_TAGS_SIZE,
            SectionKind::Desired | SectionKind::Reported => MAX_PROPERTIES_SIZE,
        }
    }
}

impl TwinError {
    /// The IoT Hub error code: 412001 for version/etag mismatches, 413001 for an oversized section,
    /// 400012 for unparsable JSON, 400004 for everything else.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            TwinError::Json(_) => ErrorCode::DeserializationError,
            TwinError::SectionTooLarge { .. } => ErrorCode::MessageTooLarge,
            TwinError::VersionMismatch { .. } | TwinError::EtagMismatch { .. } => {
                ErrorCode::PreconditionFailed
            }
            _ => ErrorCode::ArgumentInvalid,
        }
    }

    /// The MQTT status for `$iothub/twin/res/{status}/` (the code's HTTP status).
    pub fn mqtt_status(&self) -> u16 {
        self.error_code().http_status()
    }

    /// The MQTT twin error body, `{"errorCode":400004,"message":"..","timestampUtc":".."}`.
    pub fn mqtt_error_body(&self, now: DateTime<Utc>) -> Vec<u8> {
        MqttErrorBody::new(self.error_code(), &self.to_string(), now).to_bytes()
    }
}

/// Checks every key and value of a patch for `section` (nulls allowed: they delete).
///
/// # Errors
/// The first [`TwinError`] found, in document order.
pub fn validate_patch(section: SectionKind, patch: &Map<String, Value>) -> Result<(), TwinError> {
    validate_object(section.name(), patch, 0)
}

/// The documented size of a section: key lengths plus value lengths, where numbers count 8, booleans 4,
/// strings their characters except control characters, and objects and arrays the sum of their parts.
pub fn section_size(values: &Map<String, Value>) -> usize {
    values.iter().map(|(key, value)| key.chars().count() + value_size(value)).sum()
}

/// Checks `values` against the size limit of `section`.
///
/// # Errors
/// [`TwinError::SectionTooLarge`] when it is over the limit.
pub fn check_section_size(
    section: SectionKind,
    values: &Map<String, Value>,
) -> Result<(), TwinError> {
    let size = section_size(values);
    let limit = section.size_limit();
    if size > limit {
        return Err(TwinError::SectionTooLarge { section: section.name(), size, limit });
    }
    Ok(())
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(text) => text.chars().filter(|ch| !ch.is_control()).count(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(map) => section_size(map),
    }
}

fn validate_object(path: &str, object: &Map<String, Value>, depth: usize) -> Result<(), TwinError> {
    for (key, value) in object {
        let child_path = format!("{path}.{key}");
        validate_key(path, key)?;
        validate_value(&child_path, value, depth, false)?;
    }
    Ok(())
}

fn validate_key(path: &str, key: &str) -> Result<(), TwinError> {
    if key.is_empty() {
        return Err(TwinError::EmptyKey { path: path.to_owned() });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(TwinError::KeyTooLong { path: path.to_owned(), len: key.len() });
    }
    match key.chars().find(|ch| ch.is_control() || matches!(ch, '.' | '$' | ' ')) {
        Some(ch) => Err(TwinError::BadKeyChar { path: path.to_owned(), key: key.to_owned(), ch }),
        None => Ok(()),
    }
}

/// `depth` counts the objects enclosing `value` below the section root.
fn validate_value(
    path: &str,
    value: &Value,
    depth: usize,
    in_array: bool,
) -> Result<(), TwinError> {
    match value {
        Value::Null if in_array => Err(TwinError::NullInArray { path: path.to_owned() }),
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(number) => {
            let in_range = match (number.as_i64(), number.as_u64()) {
                (Some(signed), _) => (MIN_INTEGER..=MAX_INTEGER).contains(&signed),
                (None, Some(_)) => false,
                (None, None) => true,
            };
            if in_range {
                Ok(())
            } else {
                Err(TwinError::IntegerOutOfRange {
                    path: path.to_owned(),
                    value: number.to_string(),
                })
            }
        }
        Value::String(text) if text.len() > MAX_STRING_BYTES => {
            Err(TwinError::StringTooLong { path: path.to_owned(), len: text.len() })
        }
        Value::String(_) => Ok(()),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(idx, item)| {
            validate_value(&format!("{path}[{idx}]"), item, depth, true)
        }),
        Value::Object(object) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(TwinError::TooDeep { path: path.to_owned(), depth });
            }
            for (key, child) in object {
                validate_key(path, key)?;
                validate_value(&format!("{path}.{key}"), child, depth, in_array)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use serde_json::json;

    use super::*;

    fn check(section: SectionKind, patch: Value, expect: Expect) {
        let actual = match patch.as_object() {
            Some(map) => {
                match validate_patch(section, map).and_then(|()| check_section_size(section, map)) {
                    Ok(()) => format!("ok size={}", section_size(map)),
                    Err(err) => format!("{} {err}", err.error_code().code()),
                }
            }
            None => "not an object".to_owned(),
        };
        expect.assert_eq(&actual);
    }

    fn nested(levels: usize) -> Value {
        (0..levels)
            .fold(json!({"property": 1}), |inner, level| json!({ format!("l{level}"): inner }))
    }

    #[test]
    fn keys() {
        use SectionKind::*;
        check(Desired, json!({"a": 1, "b": null, "c": {"d": true}}), expect!["ok size=16"]);
        check(
            Desired,
            json!({"a.b": 1}),
            expect![[
                r#"400004 property name "a.b" at properties.desired contains '.'; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            Tags,
            json!({"x": {"$version": 1}}),
            expect![[
                r#"400004 property name "$version" at tags.x contains '$'; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            Tags,
            json!({"a b": 1}),
            expect![[
                r#"400004 property name "a b" at tags contains ' '; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            Tags,
            json!({"a\u{7}": 1}),
            expect![[
                r#"400004 property name "a\u{7}" at tags contains '\u{7}'; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(
            Tags,
            json!({"a\u{85}": 1}),
            expect![[
                r#"400004 property name "a\u{85}" at tags contains '\u{85}'; control characters, '.', '$' and ' ' are not allowed"#
            ]],
        );
        check(Tags, json!({"": 1}), expect![["400004 empty property name at tags"]]);
        check(
            Reported,
            json!({ "k".repeat(1025): 1 }),
            expect![[
                "400004 property name at properties.reported is 1025 bytes long; the limit is 1024"
            ]],
        );
        check(Reported, json!({"température": "ok"}), expect![["ok size=13"]]);
    }

    #[test]
    fn values() {
        use SectionKind::*;
        check(Tags, nested(9), expect!["ok size=34"]);
        check(Tags, nested(10), expect!["ok size=36"]);
        check(Tags, nested(11), expect!["400004 tags.l10.l9.l8.l7.l6.l5.l4.l3.l2.l1.l0 is nested 11 levels deep; the limit is 10"]);
        check(
            Desired,
            json!({"max": 4503599627370495_i64, "min": -4503599627370496_i64, "f": 1.5e300}),
            expect!["ok size=31"],
        );
        check(Desired, json!({"big": 4503599627370496_i64}), expect![["400004 integer 4503599627370496 at properties.desired.big is out of range [-4503599627370496, 4503599627370495]"]]);
        check(Desired, json!({"big": u64::MAX}), expect![["400004 integer 18446744073709551615 at properties.desired.big is out of range [-4503599627370496, 4503599627370495]"]]);
        check(
            Desired,
            json!({"s": "x".repeat(4097)}),
            expect![[
                "400004 string at properties.desired.s is 4097 bytes long; the limit is 4096"
            ]],
        );
        check(Desired, json!({"arr": [1, "two", {"three": [3]}]}), expect!["ok size=27"]);
        check(
            Desired,
            json!({"arr": [1, null]}),
            expect![["400004 null inside an array at properties.desired.arr[1] is not allowed"]],
        );
        check(
            Desired,
            json!({"arr": [{"k": null}]}),
            expect![["400004 null inside an array at properties.desired.arr[0].k is not allowed"]],
        );
    }

    #[test]
    fn sizes() {
        use SectionKind::*;
        let tags: Map<String, Value> =
            (0..3).map(|idx| (format!("k{idx}"), json!("v".repeat(4000)))).collect();
        check(
            Tags,
            Value::Object(tags),
            expect![["413001 tags would be 12006 bytes; the limit is 8192"]],
        );
        let desired: Map<String, Value> =
            (0..8).map(|idx| (format!("k{idx}"), json!("v".repeat(4000)))).collect();
        check(Desired, Value::Object(desired), expect![["ok size=32016"]]);
        check(Reported, json!({"ctl": "a\u{1}\u{2}b"}), expect![["ok size=5"]]);
    }
}
