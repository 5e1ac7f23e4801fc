//! JSON merge patch (RFC 7386) as IoT Hub applies it to twin sections.
//!
//! `null` deletes a key (deleting a missing key is a no-op), nested objects merge, anything else
//! (including arrays) replaces the old value whole. An object patched onto a non-object starts from an
//! empty object, so `null`s inside it vanish. Key order is kept: new keys go last, deletions do not
//! reorder the rest. This module knows nothing of versions or metadata; see [`super::document`].

use serde_json::{Map, Value};

/// Applies `patch` to `target` (any JSON values), RFC 7386 style.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch_map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_map) = target {
                merge_object(target_map, patch_map);
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies an object patch to an object; returns whether anything was written
/// (a value set, even to its current value, or an existing key deleted).
pub fn merge_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut written = false;
    for (key, patch_value) in patch {
        match patch_value {
            Value::Null => written |= target.shift_remove(key).is_some(),
            Value::Object(patch_child) => match target.get_mut(key) {
                Some(Value::Object(existing)) => written |= merge_object(existing, patch_child),
                _ => {
                    let mut fresh = Map::new();
                    merge_object(&mut fresh, patch_child);
                    target.insert(key.clone(), Value::Object(fresh));
                    written = true;
                }
            },
            other => {
                target.insert(key.clone(), other.clone());
                written = true;
            }
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn check(target: Value, patch: Value, expect: Expect) {
        let mut merged = target;
        merge_patch(&mut merged, &patch);
        expect.assert_eq(&merged.to_string());
    }

    #[test]
    fn rfc_7386_vectors() {
        check(json!({"a": "b"}), json!({"a": "c"}), expect![[r#"{"a":"c"}"#]]);
        check(json!({"a": "b"}), json!({"b": "c"}), expect![[r#"{"a":"b","b":"c"}"#]]);
        check(json!({"a": "b"}), json!({"a": null}), expect!["{}"]);
        check(json!({"a": "b", "b": "c"}), json!({"a": null}), expect![[r#"{"b":"c"}"#]]);
        check(json!({"a": ["b"]}), json!({"a": "c"}), expect![[r#"{"a":"c"}"#]]);
        check(json!({"a": "c"}), json!({"a": ["b"]}), expect![[r#"{"a":["b"]}"#]]);
        check(
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            expect![[r#"{"a":{"b":"d"}}"#]],
        );
        check(json!({"a": [{"b": "c"}]}), json!({"a": [1]}), expect![[r#"{"a":[1]}"#]]);
        check(json!(["a", "b"]), json!(["c", "d"]), expect![[r#"["c","d"]"#]]);
        check(json!({"a": "b"}), json!(["c"]), expect![[r#"["c"]"#]]);
        check(json!({"a": "foo"}), json!(null), expect!["null"]);
        check(json!({"e": null}), json!({"a": 1}), expect![[r#"{"e":null,"a":1}"#]]);
        check(json!([1, 2]), json!({"a": "b", "c": null}), expect![[r#"{"a":"b"}"#]]);
        check(json!({}), json!({"a": {"bb": {"ccc": null}}}), expect![[r#"{"a":{"bb":{}}}"#]]);
        check(
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"a": null, "missing": null}),
            expect![[r#"{"b":2,"c":3}"#]],
        );
    }

    /// Twin-like JSON: objects of small keys, scalars, arrays without nulls.
    fn twin_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::from),
            (-1000_i64..1000).prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn object_of(
        values: impl Strategy<Value = Value>,
    ) -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-e]", values, 0..5).prop_map(|map| map.into_iter().collect())
    }

    /// A patch: like a document, but any value may be `null`.
    fn patch_value() -> impl Strategy<Value = Value> {
        prop_oneof![1 => Just(Value::Null), 4 => twin_value()]
    }

    proptest! {
        #[test]
        fn applying_twice_is_idempotent(doc in object_of(twin_value()), patch in object_of(patch_value())) {
            let mut once = doc;
            merge_object(&mut once, &patch);
            let mut twice = once.clone();
            merge_object(&mut twice, &patch);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn null_removes_keys(doc in object_of(twin_value()), keys in prop::collection::vec("[a-e]", 0..5)) {
            let patch: Map<String, Value> = keys.iter().map(|key| (key.clone(), Value::Null)).collect();
            let mut merged = doc.clone();
            merge_object(&mut merged, &patch);
            for key in &keys {
                prop_assert!(!merged.contains_key(key));
            }
            for (key, value) in &doc {
                if !keys.contains(key) {
                    prop_assert_eq!(merged.get(key), Some(value));
                }
            }
        }

        #[test]
        fn disjoint_patches_commute(
            doc in object_of(twin_value()),
            first in prop::collection::btree_map("[a-c]", patch_value(), 0..3),
            second in prop::collection::btree_map("[d-f]", patch_value(), 0..3),
        ) {
            let first: Map<String, Value> = first.into_iter().collect();
            let second: Map<String, Value> = second.into_iter().collect();
            let mut one_way = doc.clone();
            merge_object(&mut one_way, &first);
            merge_object(&mut one_way, &second);
            let mut other_way = doc;
            merge_object(&mut other_way, &second);
            merge_object(&mut other_way, &first);
            // Map equality ignores key order (indexmap semantics); only the contents must agree.
            prop_assert_eq!(one_way, other_way);
        }

        #[test]
        fn own_values_are_a_no_op(doc in object_of(twin_value())) {
            let mut merged = doc.clone();
            merge_object(&mut merged, &doc);
            prop_assert_eq!(merged, doc);
        }
    }
}
