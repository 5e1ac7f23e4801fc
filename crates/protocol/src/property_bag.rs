//! Property bags: the `key=value&key2` strings MQTT topics carry after `.../messages/events/`,
//! `.../devicebound/` and `?` in `$iothub/...` topics.
//!
//! Encoding percent-encodes everything but RFC 3986 unreserved characters (so `/`, `&`, `=` and
//! spaces inside values never break a topic). Decoding is percent-decoding only: `+` is **not** a
//! space (the SDKs encode spaces as `%20`). A key without `=` has no value (`None`); `key=` has
//! an empty value. [`PropertyBag`] keeps insertion order and allows repeated keys, like the wire.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but unreserved characters (`A-Z a-z 0-9 - _ . ~`) is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Why a property bag did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyBagError {
    /// A key or value is not valid UTF-8 once percent-decoded.
    #[error("property {part:?} is not valid UTF-8 after percent-decoding")]
    NotUtf8 {
        /// The raw text that failed.
        part: String,
    },
    /// An entry has an empty key (`=value` or `&&`-style garbage is skipped, but `=v` is refused).
    #[error("property bag entry {entry:?} has an empty key")]
    EmptyKey {
        /// The raw entry.
        entry: String,
    },
}

/// An ordered list of properties, each with an optional value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyBag {
    entries: Vec<(String, Option<String>)>,
}

impl PropertyBag {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a property. `None` encodes as a bare key.
    pub fn push(&mut self, key: impl Into<String>, value: Option<String>) {
        self.entries.push((key.into(), value));
    }

    /// Builder form of [`PropertyBag::push`] with a value.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(key, Some(value.into()));
        self
    }

    /// The value of the first property named `key`: `None` when absent, `Some(None)` for a bare key.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_deref())
    }

    /// The properties in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bag has no properties.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encodes as `k1=v1&k2&k3=` with percent-encoded keys and values.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (idx, (key, value)) in self.entries.iter().enumerate() {
            if idx > 0 {
                out.push('&');
            }
            out.extend(utf8_percent_encode(key, COMPONENT));
            if let Some(value) = value {
                out.push('=');
                out.extend(utf8_percent_encode(value, COMPONENT));
            }
        }
        out
    }

    /// Decodes `k1=v1&k2`; empty entries (from `&&` or a trailing `&`) are skipped.
    ///
    /// # Errors
    /// [`PropertyBagError`] for an empty key or text that is not UTF-8 after decoding.
    pub fn parse(text: &str) -> Result<Self, PropertyBagError> {
        let mut bag = Self::new();
        for entry in text.split('&').filter(|entry| !entry.is_empty()) {
            let (raw_key, raw_value) = match entry.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (entry, None),
            };
            if raw_key.is_empty() {
                return Err(PropertyBagError::EmptyKey { entry: entry.to_owned() });
            }
            let key = decode(raw_key)?;
            let value = raw_value.map(decode).transpose()?;
            bag.entries.push((key, value));
        }
        Ok(bag)
    }
}

impl FromIterator<(String, Option<String>)> for PropertyBag {
    fn from_iter<I: IntoIterator<Item = (String, Option<String>)>>(iter: I) -> Self {
        Self { entries: iter.into_iter().collect() }
    }
}

/// Percent-decodes one key or value (no `+` → space).
pub(crate) fn decode(raw: &str) -> Result<String, PropertyBagError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| PropertyBagError::NotUtf8 { part: raw.to_owned() })
}

/// Percent-encodes one key or value.
pub(crate) fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use proptest::prelude::*;

    use super::*;

    fn check(input: &str, expect: Expect) {
        let actual = match PropertyBag::parse(input) {
            Ok(bag) => format!("{:?} -> {}", bag.iter().collect::<Vec<_>>(), bag.encode()),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parse_and_encode() {
        check(
            "%24.mid=abc&%24.ct=application%2Fjson&%24.ce=utf-8&temp=25",
            expect![[
                r#"[("$.mid", Some("abc")), ("$.ct", Some("application/json")), ("$.ce", Some("utf-8")), ("temp", Some("25"))] -> %24.mid=abc&%24.ct=application%2Fjson&%24.ce=utf-8&temp=25"#
            ]],
        );
        check(
            "prop1&prop2=&prop3=a%20string",
            expect![[
                r#"[("prop1", None), ("prop2", Some("")), ("prop3", Some("a string"))] -> prop1&prop2=&prop3=a%20string"#
            ]],
        );
        check("a+b=c+d", expect![[r#"[("a+b", Some("c+d"))] -> a%2Bb=c%2Bd"#]]);
        check("", expect![[r#"[] -> "#]]);
        check("x=1&&y=2&", expect![[r#"[("x", Some("1")), ("y", Some("2"))] -> x=1&y=2"#]]);
        check("=v", expect![[r#"error: property bag entry "=v" has an empty key"#]]);
        check(
            "k=%ff",
            expect![[r#"error: property "%ff" is not valid UTF-8 after percent-decoding"#]],
        );
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec(("[^\u{0}]{1,12}", proptest::option::of(".{0,12}")), 0..6)) {
            let bag: PropertyBag = entries.into_iter().collect();
            let encoded = bag.encode();
            prop_assert!(!encoded.contains('/') && !encoded.contains('?') && !encoded.contains('#'));
            prop_assert_eq!(PropertyBag::parse(&encoded).unwrap(), bag);
        }

        #[test]
        fn never_panics(text in ".{0,64}") {
            let _ = PropertyBag::parse(&text);
        }
    }
}
