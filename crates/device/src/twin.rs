//! Twin views as the device sees them: [`TwinView`] (the GET response) and [`DesiredPatch`].
//!
//! The hub's GET body is `{"desired":{..,"$version":n},"reported":{..,"$version":m}}` with no
//! `properties` wrapper and no `$metadata`; a desired patch is the patch plus `"$version"`.
//! These types strip `$version` out of the documents and carry it as a number.
//! This module does no merging: the device reports patches and the hub merges them.

use serde_json::{Map, Value};

/// The device's view of its twin, from `get_twin()`.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinView {
    /// Desired properties without `$version`.
    pub desired: Map<String, Value>,
    /// Reported properties without `$version`.
    pub reported: Map<String, Value>,
    /// `desired.$version`.
    pub desired_version: u64,
    /// `reported.$version`.
    pub reported_version: u64,
}

/// A desired-property change pushed by the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPatch {
    /// The desired version after the patch.
    pub version: u64,
    /// The patch without `$version` (`null` values mean deletion), or the whole desired document when `full`.
    pub patch: Map<String, Value>,
    /// True when the client synthesised this from a twin GET after a reconnect because the version
    /// changed while it was offline (as the Python SDK does); `patch` is then the whole desired section.
    pub full: bool,
}

impl TwinView {
    /// Parses a twin GET response body.
    ///
    /// # Errors
    /// A description of what is missing when the body is not the expected shape.
    pub(crate) fn parse(body: &[u8]) -> Result<TwinView, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|err| format!("twin body is not json: {err}"))?;
        let Value::Object(mut root) = value else {
            return Err("twin body is not a json object".to_owned());
        };
        let (desired, desired_version) = split_section(root.remove("desired"), "desired")?;
        let (reported, reported_version) = split_section(root.remove("reported"), "reported")?;
        Ok(TwinView { desired, reported, desired_version, reported_version })
    }
}

impl DesiredPatch {
    /// Parses a desired-patch body; the version comes from `$version` in the body, else from the topic.
    ///
    /// # Errors
    /// A description when the body is not a JSON object or carries no version at all.
    pub(crate) fn parse(body: &[u8], topic_version: Option<u64>) -> Result<DesiredPatch, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| format!("desired patch is not json: {err}"))?;
        let Value::Object(mut patch) = value else {
            return Err("desired patch is not a json object".to_owned());
        };
        let body_version = patch.remove("$version").and_then(|v| v.as_u64());
        let version = body_version.or(topic_version).ok_or("desired patch carries no $version")?;
        Ok(DesiredPatch { version, patch, full: false })
    }
}

/// Splits `{..,"$version":n}` into the document and `n`.
fn split_section(section: Option<Value>, name: &str) -> Result<(Map<String, Value>, u64), String> {
    let Some(Value::Object(mut map)) = section else {
        return Err(format!("twin body has no `{name}` object"));
    };
    let version = map
        .remove("$version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| format!("`{name}` has no numeric $version"))?;
    Ok((map, version))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check_twin(body: &str, expect: Expect) {
        let actual = match TwinView::parse(body.as_bytes()) {
            Ok(view) => format!(
                "desired v{} {} / reported v{} {}",
                view.desired_version,
                Value::Object(view.desired),
                view.reported_version,
                Value::Object(view.reported)
            ),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    fn check_patch(body: &str, topic_version: Option<u64>, expect: Expect) {
        let actual = match DesiredPatch::parse(body.as_bytes(), topic_version) {
            Ok(patch) => format!("v{} {}", patch.version, Value::Object(patch.patch)),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn twin_bodies() {
        check_twin(
            r#"{"desired":{"$version":1},"reported":{"$version":1}}"#,
            expect![[r#"desired v1 {} / reported v1 {}"#]],
        );
        check_twin(
            r#"{"desired":{"a":{"b":1},"$version":7},"reported":{"x":null,"$version":3}}"#,
            expect![[r#"desired v7 {"a":{"b":1}} / reported v3 {"x":null}"#]],
        );
        check_twin(
            r#"{"desired":{},"reported":{"$version":1}}"#,
            expect!["error: `desired` has no numeric $version"],
        );
        check_twin(r#"{"properties":{}}"#, expect!["error: twin body has no `desired` object"]);
        check_twin("[1]", expect!["error: twin body is not a json object"]);
        check_twin(
            "",
            expect!["error: twin body is not json: EOF while parsing a value at line 1 column 0"],
        );
    }

    #[test]
    fn desired_bodies() {
        check_patch(
            r#"{"telemetrySendFrequency":"5m","route":null,"$version":8}"#,
            Some(8),
            expect![[r#"v8 {"telemetrySendFrequency":"5m","route":null}"#]],
        );
        check_patch(r#"{"a":1}"#, Some(4), expect![[r#"v4 {"a":1}"#]]);
        check_patch(r#"{"a":1}"#, None, expect!["error: desired patch carries no $version"]);
        check_patch("null", Some(1), expect!["error: desired patch is not a json object"]);
    }
}
