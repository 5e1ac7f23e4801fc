//! IoT Hub's query language: lexer, parser, evaluator, projections and index hints.
//!
//! Jobs select devices with conditions such as `tags.building = '43' AND tags.floor = 3`, and
//! operators query twins and job records with `SELECT ... FROM devices | devices.modules |
//! devices.jobs [WHERE ...] [GROUP BY ...]`. This crate turns that text into a [`Query`] or
//! [`Condition`], evaluates conditions against `serde_json::Value` documents (service-view twins,
//! or per-device job records), suggests an [`IndexHint`] so selective queries need not scan every
//! twin, and projects matched documents into result rows with a [`Projector`].
//!
//! It is pure and deterministic: no I/O, no tokio, no clock, no paging (the hub pages the rows).
//! Inputs are bounded ([`MAX_QUERY_LENGTH`], [`MAX_DEPTH`], [`MAX_LIST_LEN`]); no input makes the
//! parser or evaluator panic or run without bound.
//!
//! ```
//! use serde_json::json;
//!
//! let query = query::parse_query("SELECT deviceId FROM devices WHERE tags.floor >= 3").unwrap();
//! let twins = [json!({"deviceId": "a", "tags": {"floor": 2}}), json!({"deviceId": "b", "tags": {"floor": 4}})];
//! assert_eq!(query.run(&twins), vec![json!({"deviceId": "b"})]);
//!
//! let condition = query::parse_condition("deviceId IN ['a', 'c']").unwrap();
//! assert!(condition.matches(&twins[0]));
//! assert_eq!(condition.index_hint(), query::IndexHint::DeviceIds(vec!["a".into(), "c".into()]));
//! ```

mod ast;
mod error;
mod eval;
mod lexer;
mod names;
mod parser;
mod plan;
mod print;
mod project;
mod statement;

use serde_json::Value;

pub use crate::ast::{
    Aggregate, AggregateFunction, BinaryOp, Collection, Condition, Expr, Function, Path,
    Projection, Query, Select, SelectItem, UnaryOp,
};
pub use crate::error::{ParseError, Span};
pub use crate::eval::compare_values;
pub use crate::plan::{index_key, IndexHint};
pub use crate::project::{result_keys, Projector};

/// Longest accepted query or condition, in characters (IoT Hub's limit).
pub const MAX_QUERY_LENGTH: usize = 8192;

/// Deepest accepted nesting of parentheses, `NOT`, operators and lists.
pub const MAX_DEPTH: usize = 64;

/// Most items accepted in one `IN`/`NIN` list or array constant.
pub const MAX_LIST_LEN: usize = 2048;

/// Parses a full query: `SELECT [TOP n] * | items FROM collection [WHERE cond] [GROUP BY paths]`.
///
/// Keywords, function names and top-level system property names are case-insensitive; paths are
/// stored in canonical spelling (`DeviceId` and `devices.deviceId` become `deviceId`).
///
/// # Errors
/// A [`ParseError`] with the position and what was expected: bad syntax, a query over
/// [`MAX_QUERY_LENGTH`] characters, nesting over [`MAX_DEPTH`], a list over [`MAX_LIST_LEN`],
/// projections or aggregates on `devices.jobs`, non-grouped paths in an aggregate query, or two
/// select items with the same result name.
pub fn parse_query(text: &str) -> Result<Query, ParseError> {
    statement::parse_query(text)
}

/// Parses a job's `queryCondition`: the body of a WHERE clause over device twins, or `*` for all.
///
/// # Errors
/// A [`ParseError`] for bad syntax or limits as in [`parse_query`]; a full `SELECT ...` is refused
/// the way IoT Hub refuses it (use [`ParseError::sql_parse_failed_message`] for the job's failure reason).
pub fn parse_condition(text: &str) -> Result<Condition, ParseError> {
    statement::parse_condition(text)
}

/// Fuzzing entry point: parses arbitrary bytes as a query and as a condition, and exercises
/// printing, re-parsing, hints and evaluation on whatever parses. Panics only on a bug.
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sample = serde_json::json!({"deviceId": "d1", "tags": {"a": 1, "b": "x"}, "properties": {"reported": {"t": 2.5}}});
    if let Ok(query) = parse_query(text) {
        let printed = query.to_string();
        let reparsed = parse_query(&printed);
        assert_eq!(reparsed.as_ref(), Ok(&query), "printed query {printed:?} did not parse back");
        let _ = query.index_hint();
        let _ = query.run(std::iter::once(&sample));
    }
    if let Ok(condition) = parse_condition(text) {
        let printed = condition.to_string();
        let reparsed = parse_condition(&printed);
        assert_eq!(
            reparsed.as_ref(),
            Ok(&condition),
            "printed condition {printed:?} did not parse back"
        );
        let _ = condition.index_hint();
        let _ = condition.matches(&sample);
    }
}

impl Query {
    /// True when `document` satisfies the WHERE condition (always true without one).
    #[must_use]
    pub fn matches(&self, document: &Value) -> bool {
        eval::matches(self.filter.as_ref(), document)
    }

    /// Which documents can match; a sound over-approximation to narrow the scan.
    #[must_use]
    pub fn index_hint(&self) -> IndexHint {
        plan::index_hint(self.filter.as_ref(), self.from)
    }
}

impl Condition {
    /// The condition `*`, which matches every device.
    #[must_use]
    pub fn match_all() -> Self {
        Condition { filter: None }
    }

    /// True for `*`.
    #[must_use]
    pub fn is_match_all(&self) -> bool {
        self.filter.is_none()
    }

    /// True when the twin `document` satisfies the condition.
    #[must_use]
    pub fn matches(&self, document: &Value) -> bool {
        eval::matches(self.filter.as_ref(), document)
    }

    /// Which twins can match; a sound over-approximation to narrow the scan.
    #[must_use]
    pub fn index_hint(&self) -> IndexHint {
        plan::index_hint(self.filter.as_ref(), Collection::Devices)
    }
}

impl Expr {
    /// Evaluates the expression on `document`; `None` means undefined.
    #[must_use]
    pub fn evaluate(&self, document: &Value) -> Option<Value> {
        eval::evaluate(self, document)
    }
}
