//! Id and payload templates: `b{building}-f{floor}-{n:04}` and JSON payloads whose strings hold placeholders.
//!
//! A [`Template`] is text with `{name}` placeholders (`{name:04}` zero-pads to width 4) and two random
//! functions, `{uniform:LO:HI}` (a float with two decimals) and `{int:LO:HI}` (an integer, inclusive);
//! `{{` and `}}` are literal braces. A [`PayloadTemplate`] is a JSON tree whose strings are templates;
//! a string that is exactly one placeholder keeps the variable's JSON type (`"{floor}"` renders as `3`).
//! Variables are looked up through [`Vars`]; this module knows no variable names itself, the profile
//! validator decides which names a template may use.

use std::fmt::Write as _;

use rand::{Rng, RngCore};
use serde_json::{Map, Value};

/// A parse error in a template string, or a use of an unknown variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`, or a lone `}`.
    #[error(
        "unbalanced brace at byte {at} of {template:?} (write {{{{ or }}}} for a literal brace)"
    )]
    Unbalanced {
        /// The template text.
        template: String,
        /// Byte offset of the brace.
        at: usize,
    },
    /// A placeholder that cannot be parsed.
    #[error("bad placeholder {{{placeholder}}}: {why}")]
    BadPlaceholder {
        /// The text between the braces.
        placeholder: String,
        /// What is wrong.
        why: String,
    },
    /// A variable that the template may not use here.
    #[error("unknown variable {{{name}}} (known here: {known})")]
    UnknownVariable {
        /// The variable name.
        name: String,
        /// Comma-separated names that are allowed.
        known: String,
    },
}

/// Variable lookup for rendering.
pub trait Vars {
    /// The value of `name`, or `None` when it is not set (renders as an empty string / `null`).
    fn var(&self, name: &str) -> Option<Value>;
}

impl<F: Fn(&str) -> Option<Value>> Vars for F {
    fn var(&self, name: &str) -> Option<Value> {
        self(name)
    }
}

/// A parsed text template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// A JSON tree whose strings are [`Template`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadTemplate {
    /// A non-string JSON value, used as is.
    Literal(Value),
    /// A string template.
    Text(Template),
    /// An array of templates.
    Array(Vec<PayloadTemplate>),
    /// An object whose values are templates (keys are literal, order kept).
    Object(Vec<(String, PayloadTemplate)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var { name: String, width: usize },
    Uniform { low: f64, high: f64 },
    Int { low: i64, high: i64 },
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`TemplateError`] for unbalanced braces or a malformed placeholder.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, ch)) = chars.next() {
            match ch {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest.find('}').ok_or_else(|| unbalanced(text, at))?;
                    let inner = &rest[..end];
                    if inner.contains('{') {
                        return Err(unbalanced(text, at));
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(parse_placeholder(inner)?);
                    for _ in 0..inner.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => return Err(unbalanced(text, at)),
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Text(literal));
        }
        Ok(Template { segments })
    }

    /// The variable names the template refers to (random functions excluded).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the template draws random numbers (and so needs an RNG stream of its own).
    pub fn is_random(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Uniform { .. } | Segment::Int { .. }))
    }

    /// Checks every variable against `known`.
    ///
    /// # Errors
    /// [`TemplateError::UnknownVariable`] for the first name not in `known`.
    pub fn check_variables(&self, known: &[&str]) -> Result<(), TemplateError> {
        check_names(self.variables(), known)
    }

    /// Renders to a string; unset variables render as the empty string.
    pub fn render(&self, vars: &dyn Vars, rng: &mut dyn RngCore) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Var { name, width } => {
                    let text = vars.var(name).map(|v| value_text(&v)).unwrap_or_default();
                    let _ = write!(out, "{text:0>width$}");
                }
                Segment::Uniform { low, high } => {
                    let _ = write!(out, "{:.2}", rng.gen_range(*low..=*high));
                }
                Segment::Int { low, high } => {
                    let _ = write!(out, "{}", rng.gen_range(*low..=*high));
                }
            }
        }
        out
    }

    /// Renders to a JSON value: a lone placeholder keeps its type, anything else becomes a string.
    pub fn render_value(&self, vars: &dyn Vars, rng: &mut dyn RngCore) -> Value {
        match self.segments.as_slice() {
            [Segment::Var { name, width: 0 }] => vars.var(name).unwrap_or(Value::Null),
            [Segment::Uniform { low, high }] => {
                let x: f64 = rng.gen_range(*low..=*high);
                serde_json::Number::from_f64((x * 100.0).round() / 100.0)
                    .map_or(Value::Null, Value::Number)
            }
            [Segment::Int { low, high }] => Value::from(rng.gen_range(*low..=*high)),
            _ => Value::String(self.render(vars, rng)),
        }
    }
}

impl PayloadTemplate {
    /// Builds a payload template from a TOML value (strings are parsed as templates).
    ///
    /// # Errors
    /// [`TemplateError`] for the first bad string; TOML datetimes become strings.
    pub fn from_toml(value: &toml::Value) -> Result<PayloadTemplate, TemplateError> {
        Ok(match value {
            toml::Value::String(text) => PayloadTemplate::Text(Template::parse(text)?),
            toml::Value::Integer(i) => PayloadTemplate::Literal(Value::from(*i)),
            toml::Value::Float(f) => PayloadTemplate::Literal(Value::from(*f)),
            toml::Value::Boolean(b) => PayloadTemplate::Literal(Value::Bool(*b)),
            toml::Value::Datetime(dt) => PayloadTemplate::Literal(Value::String(dt.to_string())),
            toml::Value::Array(items) => PayloadTemplate::Array(
                items.iter().map(PayloadTemplate::from_toml).collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => PayloadTemplate::Object(
                table
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), PayloadTemplate::from_toml(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
        })
    }

    /// The JSON `null` payload.
    pub fn null() -> PayloadTemplate {
        PayloadTemplate::Literal(Value::Null)
    }

    /// Checks every variable in the tree against `known`.
    ///
    /// # Errors
    /// [`TemplateError::UnknownVariable`] for the first name not in `known`.
    pub fn check_variables(&self, known: &[&str]) -> Result<(), TemplateError> {
        match self {
            PayloadTemplate::Literal(_) => Ok(()),
            PayloadTemplate::Text(t) => t.check_variables(known),
            PayloadTemplate::Array(items) => {
                items.iter().try_for_each(|i| i.check_variables(known))
            }
            PayloadTemplate::Object(fields) => {
                fields.iter().try_for_each(|(_, v)| v.check_variables(known))
            }
        }
    }

    /// Renders the tree to JSON.
    pub fn render(&self, vars: &dyn Vars, rng: &mut dyn RngCore) -> Value {
        match self {
            PayloadTemplate::Literal(v) => v.clone(),
            PayloadTemplate::Text(t) => t.render_value(vars, rng),
            PayloadTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(vars, rng)).collect())
            }
            PayloadTemplate::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, value) in fields {
                    map.insert(key.clone(), value.render(vars, rng));
                }
                Value::Object(map)
            }
        }
    }
}

fn parse_placeholder(inner: &str) -> Result<Segment, TemplateError> {
    let bad = |why: &str| TemplateError::BadPlaceholder {
        placeholder: inner.to_owned(),
        why: why.to_owned(),
    };
    let parts: Vec<&str> = inner.split(':').collect();
    match parts.as_slice() {
        ["uniform", low, high] => {
            let low: f64 = low.trim().parse().map_err(|_| bad("LO is not a number"))?;
            let high: f64 = high.trim().parse().map_err(|_| bad("HI is not a number"))?;
            if !(low.is_finite() && high.is_finite() && low <= high) {
                return Err(bad("needs finite LO <= HI"));
            }
            Ok(Segment::Uniform { low, high })
        }
        ["int", low, high] => {
            let low: i64 = low.trim().parse().map_err(|_| bad("LO is not an integer"))?;
            let high: i64 = high.trim().parse().map_err(|_| bad("HI is not an integer"))?;
            if low > high {
                return Err(bad("needs LO <= HI"));
            }
            Ok(Segment::Int { low, high })
        }
        [name] => Ok(Segment::Var { name: check_ident(name).map_err(|w| bad(&w))?, width: 0 }),
        [name, format] => {
            let name = check_ident(name).map_err(|w| bad(&w))?;
            let digits = format
                .strip_prefix('0')
                .ok_or_else(|| bad("the only format is :0WIDTH, e.g. {n:04}"))?;
            let width: usize =
                digits.parse().map_err(|_| bad("the only format is :0WIDTH, e.g. {n:04}"))?;
            if width > 32 {
                return Err(bad("width is at most 32"));
            }
            Ok(Segment::Var { name, width })
        }
        _ => Err(bad("expected {name}, {name:0WIDTH}, {uniform:LO:HI} or {int:LO:HI}")),
    }
}

fn check_ident(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty variable name".to_owned());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err("variable names use letters, digits, _ and -".to_owned());
    }
    Ok(name.to_owned())
}

fn check_names<'a>(
    mut names: impl Iterator<Item = &'a str>,
    known: &[&str],
) -> Result<(), TemplateError> {
    match names.find(|n| !known.contains(n)) {
        None => Ok(()),
        Some(name) => {
            Err(TemplateError::UnknownVariable { name: name.to_owned(), known: known.join(", ") })
        }
    }
}

fn unbalanced(template: &str, at: usize) -> TemplateError {
    TemplateError::Unbalanced { template: template.to_owned(), at }
}

/// How a JSON value appears inside text: strings bare, everything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    use super::*;

    fn vars(name: &str) -> Option<Value> {
        match name {
            "building" => Some(json!(43)),
            "floor" => Some(json!(3)),
            "n" => Some(json!(7)),
            "deviceType" => Some(json!("thermostat")),
            _ => None,
        }
    }

    fn check(template: &str, expect: Expect) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let out = match Template::parse(template) {
            Ok(t) => format!("{} | {}", t.render(&vars, &mut rng), t.render_value(&vars, &mut rng)),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn renders_ids() {
        check("b{building}-f{floor}-{n:04}", expect![[r#"b43-f3-0007 | "b43-f3-0007""#]]);
        check("{floor}", expect!["3 | 3"]);
        check("{deviceType}", expect![[r#"thermostat | "thermostat""#]]);
        check("{missing}", expect![" | null"]);
        check("{{literal}} {n}", expect![[r#"{literal} 7 | "{literal} 7""#]]);
    }

    #[test]
    fn renders_random_functions() {
        check("{uniform:18:26}", expect!["21.22 | 18.64"]);
        check("{int:1:6}", expect!["3 | 1"]);
    }

    #[test]
    fn rejects_bad_templates() {
        check(
            "b{building",
            expect![[
                r#"error: unbalanced brace at byte 1 of "b{building" (write {{ or }} for a literal brace)"#
            ]],
        );
        check(
            "a}b",
            expect![[
                r#"error: unbalanced brace at byte 1 of "a}b" (write {{ or }} for a literal brace)"#
            ]],
        );
        check(
            "{n:4}",
            expect!["error: bad placeholder {n:4}: the only format is :0WIDTH, e.g. {n:04}"],
        );
        check(
            "{uniform:5:1}",
            expect!["error: bad placeholder {uniform:5:1}: needs finite LO <= HI"],
        );
        check(
            "{a b}",
            expect!["error: bad placeholder {a b}: variable names use letters, digits, _ and -"],
        );
    }

    #[test]
    fn checks_variables() {
        let t = Template::parse("{building}-{oops}").unwrap();
        expect!["unknown variable {oops} (known here: building, n)"]
            .assert_eq(&t.check_variables(&["building", "n"]).unwrap_err().to_string());
    }

    #[test]
    fn payload_templates_keep_types() {
        let toml: toml::Value = toml::from_str(
            r#"p = { floor = "{floor}", label = "f{floor}", list = [1, "{n}"], ok = true }"#,
        )
        .unwrap();
        let t = PayloadTemplate::from_toml(&toml["p"]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        expect![[r#"{"floor":3,"label":"f3","list":[1,7],"ok":true}"#]]
            .assert_eq(&t.render(&vars, &mut rng).to_string());
    }
}
