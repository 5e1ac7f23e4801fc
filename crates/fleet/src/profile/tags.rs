//! Tag values of a group: fixed, an integer range, a weighted choice, or a cycle over a list.
//!
//! Written in a profile as `building = 43`, `floor = { range = [1, 5] }`,
//! `deviceType = { choice = ["sensor", "valve"], weights = [3, 1] }` or `zone = { cycle = ["a", "b"] }`.
//! Random kinds draw from the device's tags stream; `cycle` uses the device's position in its group.
//! This module does not know about device ids or where tags end up (the twin's `tags`).

use rand::distributions::{Distribution as _, WeightedIndex};
use rand::{Rng, RngCore};
use serde_json::Value;

/// How one tag's value is chosen.
#[derive(Debug, Clone)]
pub enum TagSpec {
    /// The same value for every device.
    Fixed(Value),
    /// A uniform integer in `low..=high`.
    Range {
        /// Lower bound.
        low: i64,
        /// Upper bound.
        high: i64,
    },
    /// One of `values`, with the given weights.
    Choice {
        /// The candidates.
        values: Vec<Value>,
        /// The weights, already validated.
        weights: WeightedIndex<f64>,
    },
    /// `values[position_in_group % len]`.
    Cycle(Vec<Value>),
}

impl TagSpec {
    /// Parses a tag value from the profile.
    ///
    /// # Errors
    /// A lowercase sentence saying what is wrong.
    pub fn from_toml(value: &toml::Value) -> Result<TagSpec, String> {
        let table = match value {
            toml::Value::Table(table) => table,
            toml::Value::Array(_) => {
                return Err(
                    "a list is ambiguous here; write { choice = [...] } or { cycle = [...] }"
                        .to_owned(),
                )
            }
            scalar => return Ok(TagSpec::Fixed(scalar_json(scalar)?)),
        };
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        match keys.as_slice() {
            ["range"] => range(&table["range"]),
            ["choice"] => choice(&table["choice"], None),
            ["choice", "weights"] | ["weights", "choice"] => choice(&table["choice"], Some(&table["weights"])),
            ["cycle"] => Ok(TagSpec::Cycle(non_empty_list(&table["cycle"], "cycle")?)),
            _ => Err(format!(
                "a tag table must be {{ range = [LO, HI] }}, {{ choice = [...], weights = [...] }} or {{ cycle = [...] }}; got keys {keys:?}"
            )),
        }
    }

    /// The tag's value for the device at `position` (0-based) in its group.
    pub fn value(&self, position: u64, rng: &mut dyn RngCore) -> Value {
        match self {
            TagSpec::Fixed(value) => value.clone(),
            TagSpec::Range { low, high } => Value::from(rng.gen_range(*low..=*high)),
            TagSpec::Choice { values, weights } => values[weights.sample(rng)].clone(),
            TagSpec::Cycle(values) => values[(position % values.len() as u64) as usize].clone(),
        }
    }
}

fn range(value: &toml::Value) -> Result<TagSpec, String> {
    match value.as_array().map(Vec::as_slice) {
        Some([toml::Value::Integer(low), toml::Value::Integer(high)]) if low <= high => {
            Ok(TagSpec::Range { low: *low, high: *high })
        }
        _ => Err("range must be [LO, HI] with integers LO <= HI".to_owned()),
    }
}

fn choice(values: &toml::Value, weights: Option<&toml::Value>) -> Result<TagSpec, String> {
    let values = non_empty_list(values, "choice")?;
    let weights: Vec<f64> = match weights {
        None => vec![1.0; values.len()],
        Some(w) => w
            .as_array()
            .ok_or("weights must be a list of numbers")?
            .iter()
            .map(|x| {
                x.as_float()
                    .or_else(|| x.as_integer().map(|i| i as f64))
                    .ok_or("weights must be a list of numbers")
            })
            .collect::<Result<_, _>>()?,
    };
    if weights.len() != values.len() {
        return Err(format!(
            "choice has {} values but weights has {}",
            values.len(),
            weights.len()
        ));
    }
    let weights = WeightedIndex::new(weights).map_err(|e| format!("bad weights: {e}"))?;
    Ok(TagSpec::Choice { values, weights })
}

fn non_empty_list(value: &toml::Value, name: &str) -> Result<Vec<Value>, String> {
    let items = value.as_array().ok_or_else(|| format!("{name} must be a list"))?;
    if items.is_empty() {
        return Err(format!("{name} must not be empty"));
    }
    items.iter().map(scalar_json).collect()
}

fn scalar_json(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(dt) => Value::String(dt.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            return Err("tag values must be strings, numbers or booleans".to_owned())
        }
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn check(tag: &str, expect: Expect) {
        let doc: toml::Table = toml::from_str(&format!("t = {tag}")).unwrap();
        let out = match TagSpec::from_toml(&doc["t"]) {
            Err(err) => format!("error: {err}"),
            Ok(spec) => {
                let mut rng = ChaCha8Rng::seed_from_u64(11);
                (0..8)
                    .map(|pos| spec.value(pos, &mut rng).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn kinds() {
        check("43", expect!["43 43 43 43 43 43 43 43"]);
        check("{ range = [1, 5] }", expect!["1 2 5 2 1 5 1 1"]);
        check(
            r#"{ choice = ["a", "b"], weights = [9, 1] }"#,
            expect![[r#""a" "a" "a" "a" "a" "a" "a" "a""#]],
        );
        check(r#"{ cycle = ["x", "y", "z"] }"#, expect![[r#""x" "y" "z" "x" "y" "z" "x" "y""#]]);
    }

    #[test]
    fn errors() {
        check(
            "[1, 2]",
            expect![
                "error: a list is ambiguous here; write { choice = [...] } or { cycle = [...] }"
            ],
        );
        check(
            "{ range = [5, 1] }",
            expect!["error: range must be [LO, HI] with integers LO <= HI"],
        );
        check(
            r#"{ choice = ["a"], weights = [1, 2] }"#,
            expect!["error: choice has 1 values but weights has 2"],
        );
        check(
            r#"{ choice = ["a", "b"], weights = [0, 0] }"#,
            expect!["error: bad weights: All weights are zero in distribution"],
        );
        check("{ cycle = [] }", expect!["error: cycle must not be empty"]);
        check(
            "{ rnage = [1, 2] }",
            expect![[
                r#"error: a tag table must be { range = [LO, HI] }, { choice = [...], weights = [...] } or { cycle = [...] }; got keys ["rnage"]"#
            ]],
        );
    }
}
