//! Turning matched documents into result rows: projections, aliases, aggregates, GROUP BY, TOP.
//!
//! A [`Projector`] takes the documents that matched the condition one at a time and produces the
//! rows at the end. Plain rows keep the order the documents arrived in (the hub feeds twins ordered
//! by `deviceId`), and `TOP n` keeps the first n. Aggregate rows do not depend on arrival order:
//! groups come out sorted by their key values. Paging is the caller's job.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::ast::{AggregateFunction, Projection, Query, Select, SelectItem};
use crate::eval::compare_values;
use crate::plan::index_key;

/// Accumulates the result rows of one query. Create with [`Query::projector`].
#[derive(Debug)]
pub struct Projector<'q> {
    query: &'q Query,
    /// Whether the query aggregates (cached from [`Query::is_aggregate`]).
    aggregate: bool,
    /// Result key of each select item.
    keys: Vec<String>,
    rows: Vec<Value>,
    /// Aggregate queries: one entry per distinct group key, in arrival order until `finish` sorts them.
    groups: Vec<Group>,
    /// Position in `groups` of each group, by [`group_text`] of its key.
    group_positions: HashMap<String, usize>,
}

#[derive(Debug)]
struct Group {
    /// Values of the GROUP BY paths (`None` = undefined).
    key: Vec<Option<Value>>,
    /// One state per select item (plain path items keep `Unused`).
    states: Vec<AggState>,
}

#[derive(Debug)]
enum AggState {
    Unused,
    Count(u64),
    Sum(NumberSum),
    Avg(NumberSum),
    Min(Option<Value>),
    Max(Option<Value>),
}

#[derive(Debug, Default)]
struct NumberSum {
    /// Exact integer sum; `None` once a float was added or the sum overflowed.
    exact: Option<i64>,
    float: f64,
    count: u64,
}

/// The key each select item gets in result rows: its alias, else a path's last segment,
/// else `$1`, `$2`, ... for unaliased aggregates in order.
#[must_use]
pub fn result_keys(items: &[SelectItem]) -> Vec<String> {
    let mut n_unnamed = 0;
    items
        .iter()
        .map(|item| match (&item.alias, &item.projection) {
            (Some(alias), _) => alias.clone(),
            (None, Projection::Path(path)) => path.default_key().to_owned(),
            (None, Projection::Aggregate(_)) => {
                n_unnamed += 1;
                format!("${n_unnamed}")
            }
        })
        .collect()
}

impl Query {
    /// Starts collecting result rows; feed it only documents that [`Query::matches`].
    #[must_use]
    pub fn projector(&self) -> Projector<'_> {
        let keys = match &self.select {
            Select::All => Vec::new(),
            Select::Items(items) => result_keys(items),
        };
        Projector {
            query: self,
            aggregate: self.is_aggregate(),
            keys,
            rows: Vec::new(),
            groups: Vec::new(),
            group_positions: HashMap::new(),
        }
    }

    /// Filters `documents` with the condition and returns the result rows.
    /// Stops reading early once `TOP n` plain rows are collected.
    pub fn run<'d>(&self, documents: impl IntoIterator<Item = &'d Value>) -> Vec<Value> {
        let mut projector = self.projector();
        for document in documents {
            if self.matches(document) && !projector.push(document) {
                break;
            }
        }
        projector.finish()
    }
}

impl Projector<'_> {
    /// Adds one matching document. Returns false once further documents cannot change the result
    /// (a plain query has its `TOP n` rows); later pushes are then ignored.
    pub fn push(&mut self, document: &Value) -> bool {
        if self.aggregate {
            self.accumulate(document);
            return true;
        }
        if self.is_full() {
            return false;
        }
        let row = match &self.query.select {
            Select::All => document.clone(),
            Select::Items(items) => project_row(items, &self.keys, document),
        };
        self.rows.push(row);
        !self.is_full()
    }

    /// The result rows.
    #[must_use]
    pub fn finish(mut self) -> Vec<Value> {
        if !self.aggregate {
            return self.rows;
        }
        if self.groups.is_empty() && self.query.group_by.is_empty() {
            // An aggregate without GROUP BY always yields one row, e.g. COUNT() = 0.
            self.groups.push(self.new_group(Vec::new()));
        }
        self.groups.sort_by(|lhs, rhs| compare_keys(&lhs.key, &rhs.key));
        let limit = self.limit();
        let items = match &self.query.select {
            Select::Items(items) => items.as_slice(),
            Select::All => &[],
        };
        self.groups.iter().take(limit).map(|group| self.group_row(items, group)).collect()
    }

    fn limit(&self) -> usize {
        self.query.top.map_or(usize::MAX, |top| usize::try_from(top).unwrap_or(usize::MAX))
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= self.limit()
    }

    fn accumulate(&mut self, document: &Value) {
        let key: Vec<Option<Value>> =
            self.query.group_by.iter().map(|path| path.lookup(document).cloned()).collect();
        let text = group_text(&key);
        let group_idx = match self.group_positions.get(&text) {
            Some(group_idx) => *group_idx,
            None => {
                let group = self.new_group(key);
                self.groups.push(group);
                self.group_positions.insert(text, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let Select::Items(items) = &self.query.select else { return };
        for (item, state) in items.iter().zip(&mut self.groups[group_idx].states) {
            if let Projection::Aggregate(aggregate) = &item.projection {
                let value = aggregate.argument.as_ref().and_then(|path| path.lookup(document));
                state.add(value);
            }
        }
    }

    fn new_group(&self, key: Vec<Option<Value>>) -> Group {
        let states = match &self.query.select {
            Select::All => Vec::new(),
            Select::Items(items) => items.iter().map(AggState::for_item).collect(),
        };
        Group { key, states }
    }

    fn group_row(&self, items: &[SelectItem], group: &Group) -> Value {
        let mut row = Map::new();
        for ((item, key), state) in items.iter().zip(&self.keys).zip(&group.states) {
            let value = match &item.projection {
                Projection::Path(path) => {
                    let position = self.query.group_by.iter().position(|grouped| grouped == path);
                    position.and_then(|position| group.key.get(position).cloned().flatten())
                }
                Projection::Aggregate(_) => state.result(),
            };
            if let Some(value) = value {
                row.insert(key.clone(), value);
            }
        }
        Value::Object(row)
    }
}

impl AggState {
    fn for_item(item: &SelectItem) -> AggState {
        let Projection::Aggregate(aggregate) = &item.projection else { return AggState::Unused };
        match aggregate.function {
            AggregateFunction::Count => AggState::Count(0),
            AggregateFunction::Sum => {
                AggState::Sum(NumberSum { exact: Some(0), ..NumberSum::default() })
            }
            AggregateFunction::Avg => {
                AggState::Avg(NumberSum { exact: Some(0), ..NumberSum::default() })
            }
            AggregateFunction::Min => AggState::Min(None),
            AggregateFunction::Max => AggState::Max(None),
        }
    }

    fn add(&mut self, value: Option<&Value>) {
        match (self, value) {
            (AggState::Count(count), _) => *count += 1,
            (AggState::Sum(sum) | AggState::Avg(sum), Some(Value::Number(number))) => {
                sum.add(number)
            }
            (AggState::Min(best), Some(value)) => keep_best(best, value, Ordering::Less),
            (AggState::Max(best), Some(value)) => keep_best(best, value, Ordering::Greater),
            _ => {}
        }
    }

    fn result(&self) -> Option<Value> {
        match self {
            AggState::Unused => None,
            AggState::Count(count) => Some(Value::from(*count)),
            AggState::Sum(sum) => match sum.exact {
                Some(exact) => Some(Value::from(exact)),
                None => Number::from_f64(sum.float).map(Value::Number),
            },
            AggState::Avg(sum) => {
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "an average is a float; counts beyond 2^53 don't occur"
                )]
                let count = sum.count as f64;
                (sum.count > 0)
                    .then(|| Number::from_f64(sum.float / count).map(Value::Number))
                    .flatten()
            }
            AggState::Min(best) | AggState::Max(best) => best.clone(),
        }
    }
}

impl NumberSum {
    fn add(&mut self, number: &Number) {
        self.count += 1;
        self.float += number.as_f64().unwrap_or(0.0);
        self.exact = self
            .exact
            .and_then(|exact| number.as_i64().and_then(|integer| exact.checked_add(integer)));
    }
}

/// MIN/MAX consider primitives only, ordered false < true < numbers < strings.
fn keep_best(best: &mut Option<Value>, candidate: &Value, wanted: Ordering) {
    if candidate.is_null() || candidate.is_object() || candidate.is_array() {
        return;
    }
    let better =
        best.as_ref().is_none_or(|current| compare_total(Some(candidate), Some(current)) == wanted);
    if better {
        *best = Some(candidate.clone());
    }
}

fn project_row(items: &[SelectItem], keys: &[String], document: &Value) -> Value {
    let mut row = Map::new();
    for (item, key) in items.iter().zip(keys) {
        if let Projection::Path(path) = &item.projection {
            if let Some(value) = path.lookup(document) {
                row.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(row)
}

/// Text that is equal for two group keys exactly when their values are equal to the evaluator.
fn group_text(key: &[Option<Value>]) -> String {
    let mut text = String::new();
    for value in key {
        let part = match value {
            None => "u".to_owned(),
            Some(value) => index_key(value).unwrap_or_else(|| format!("j{value}")),
        };
        // Length-prefixed, so no part can run into the next.
        let _ = write!(text, "{}:{part}", part.len());
    }
    text
}

fn compare_keys(lhs: &[Option<Value>], rhs: &[Option<Value>]) -> Ordering {
    lhs.iter()
        .zip(rhs)
        .map(|(lhs, rhs)| compare_total(lhs.as_ref(), rhs.as_ref()))
        .find(|ordering| ordering.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// A total order over optional JSON values: undefined < null < booleans < numbers < strings <
/// arrays < objects; same-type primitives as the evaluator compares them, others by JSON text.
fn compare_total(lhs: Option<&Value>, rhs: Option<&Value>) -> Ordering {
    fn rank(value: Option<&Value>) -> u8 {
        match value {
            None => 0,
            Some(Value::Null) => 1,
            Some(Value::Bool(_)) => 2,
            Some(Value::Number(_)) => 3,
            Some(Value::String(_)) => 4,
            Some(Value::Array(_)) => 5,
            Some(Value::Object(_)) => 6,
        }
    }
    rank(lhs).cmp(&rank(rhs)).then_with(|| match (lhs, rhs) {
        (Some(lhs), Some(rhs)) => {
            compare_values(lhs, rhs).unwrap_or_else(|| lhs.to_string().cmp(&rhs.to_string()))
        }
        _ => Ordering::Equal,
    })
}
