//! Property tests: printing any tree and parsing it back gives the same tree; the parser and
//! evaluator never panic on token soup; index hints never exclude a matching twin.

mod common;

use proptest::prelude::*;
use query::{
    Aggregate, AggregateFunction, BinaryOp, Collection, Condition, Expr, Function, IndexHint, Path,
    Projection, Query, Select, SelectItem, UnaryOp,
};
use serde_json::{Number, Value};

const BINARY_OPS: [BinaryOp; 11] = [
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::String),
        "[a-z0-9'\\\\\"\n]{0,6}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |float| Number::from_f64(float).map(Value::Number)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn constant() -> impl Strategy<Value = Value> {
    scalar()
        .prop_recursive(2, 8, 3, |inner| prop::collection::vec(inner, 0..3).prop_map(Value::Array))
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z_$][a-zA-Z0-9_$]{0,5}"
}

/// Paths already in canonical spelling for every collection.
fn path() -> impl Strategy<Value = Path> {
    prop_oneof![
        prop::sample::select(vec![
            "deviceId",
            "status",
            "connectionState",
            "version",
            "jobId",
            "jobType"
        ])
        .prop_map(|name| Path::new([name])),
        prop::collection::vec(segment(), 1..3)
            .prop_map(|rest| Path::new(["tags".to_owned()].into_iter().chain(rest))),
        (prop::sample::select(vec!["desired", "reported"]), segment())
            .prop_map(|(section, name)| Path::new(["properties", section, &name])),
        segment().prop_map(|name| Path::new([
            "properties",
            "reported",
            "$metadata",
            &name,
            "$lastUpdated"
        ])),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        constant().prop_map(Expr::Literal),
        Just(Expr::Undefined),
        path().prop_map(Expr::Path),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            (prop::sample::select(vec![UnaryOp::Not, UnaryOp::Neg]), inner.clone())
                .prop_map(|(op, operand)| Expr::Unary { op, operand: Box::new(operand) }),
            (prop::sample::select(BINARY_OPS.to_vec()), inner.clone(), inner.clone()).prop_map(
                |(op, lhs, rhs)| Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }
            ),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            (inner.clone(), prop::collection::vec(constant(), 0..4), any::<bool>()).prop_map(
                |(operand, list, negated)| Expr::In { operand: Box::new(operand), list, negated }
            ),
            (prop::sample::select(Function::ALL.to_vec()), prop::collection::vec(inner, 2))
                .prop_map(|(function, mut args)| {
                    args.truncate(function.arity());
                    Expr::Call { function, args }
                }),
        ]
    })
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop_oneof![
        Just(Aggregate { function: AggregateFunction::Count, argument: None }),
        (
            prop::sample::select(vec![
                AggregateFunction::Sum,
                AggregateFunction::Avg,
                AggregateFunction::Min,
                AggregateFunction::Max
            ]),
            path()
        )
            .prop_map(|(function, path)| Aggregate { function, argument: Some(path) }),
    ]
}

/// Queries that satisfy the statement rules: unique aliases, aggregates only with grouped paths,
/// `devices.jobs` only with `SELECT *`.
fn query() -> impl Strategy<Value = Query> {
    let collection = prop::sample::select(vec![
        Collection::Devices,
        Collection::DevicesModules,
        Collection::DevicesJobs,
    ]);
    let plain = prop::collection::vec(path(), 1..4).prop_map(|paths| {
        let items = paths.into_iter().enumerate().map(|(item_idx, path)| SelectItem {
            projection: Projection::Path(path),
            alias: Some(format!("a{item_idx}")),
        });
        (Select::Items(items.collect()), Vec::new())
    });
    let grouped = (prop::collection::vec(path(), 0..3), prop::collection::vec(aggregate(), 1..3))
        .prop_map(|(group_by, aggregates)| {
            let grouped_items = group_by.iter().enumerate().map(|(item_idx, path)| SelectItem {
                projection: Projection::Path(path.clone()),
                alias: Some(format!("g{item_idx}")),
            });
            let aggregate_items = aggregates.into_iter().map(|aggregate| SelectItem {
                projection: Projection::Aggregate(aggregate),
                alias: None,
            });
            (Select::Items(grouped_items.chain(aggregate_items).collect()), group_by)
        });
    let shape = prop_oneof![Just((Select::All, Vec::new())), plain, grouped];
    (prop::option::of(any::<u64>()), shape, collection, prop::option::of(expr())).prop_map(
        |(top, (select, group_by), from, filter)| {
            let (select, group_by) = if from == Collection::DevicesJobs {
                (Select::All, Vec::new())
            } else {
                (select, group_by)
            };
            Query { top, select, from, filter, group_by }
        },
    )
}

/// Query-ish token soup, so the parser sees mostly near-valid input.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "SELECT",
        "TOP",
        "5",
        "*",
        "FROM",
        "devices",
        ".",
        "jobs",
        "WHERE",
        "GROUP",
        "BY",
        "AS",
        "AND",
        "OR",
        "NOT",
        "IN",
        "NIN",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "+",
        "-",
        "/",
        "%",
        "'x'",
        "\"y\"",
        "3.5",
        "0x1F",
        "1e3",
        "true",
        "null",
        "undefined",
        "deviceId",
        "tags",
        "floor",
        "IS_DEFINED",
        "STARTSWITH",
        "COUNT",
        "SUM",
        "'",
        "\\",
        "é",
        "$metadata",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_condition_parses_back(filter in expr()) {
        let condition = Condition { filter: Some(filter) };
        let printed = condition.to_string();
        let reparsed = query::parse_condition(&printed);
        prop_assert_eq!(reparsed, Ok(condition), "printed: {}", printed);
    }

    #[test]
    fn printed_query_parses_back(original in query()) {
        let printed = original.to_string();
        let reparsed = query::parse_query(&printed);
        prop_assert_eq!(reparsed, Ok(original), "printed: {}", printed);
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        query::fuzz_parse(text.as_bytes());
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        query::fuzz_parse(text.as_bytes());
    }

    #[test]
    fn evaluation_never_panics(filter in expr()) {
        for twin in common::twins() {
            let _ = filter.evaluate(&twin);
        }
    }

    #[test]
    fn index_hint_keeps_every_match(filter in selective_condition()) {
        let condition = Condition { filter: Some(filter) };
        let hint = condition.index_hint();
        for twin in common::twins() {
            if condition.matches(&twin) {
                prop_assert!(is_candidate(&hint, &twin), "{} matches {} but hint {:?} excludes it", condition, twin["deviceId"], hint);
            }
        }
    }
}

/// Conditions built from terms that hit the fixture fleet, mixed with AND/OR/NOT.
fn selective_condition() -> impl Strategy<Value = Expr> {
    let term = prop::sample::select(vec![
        "deviceId = 'd01'",
        "deviceId IN ['d02', 'd03', 'Sensor-1']",
        "'d10' = deviceId",
        "tags.building = '43'",
        "tags.building = 43",
        "tags.floor = 3",
        "tags.floor = 3.0",
        "tags.location.city = 'Oslo'",
        "status = 'enabled'",
        "tags.floor > 3",
        "deviceId IN []",
    ])
    .prop_map(|text| query::parse_condition(text).map(|condition| condition.filter).ok().flatten());
    let leaf = term.prop_filter_map("parses", |filter| filter);
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|operand| Expr::Unary { op: UnaryOp::Not, operand: Box::new(operand) }),
        ]
    })
}

/// Whether a hub index following `hint` would hand `twin` to the evaluator.
fn is_candidate(hint: &IndexHint, twin: &Value) -> bool {
    match hint {
        IndexHint::DeviceIds(ids) => {
            twin["deviceId"].as_str().is_some_and(|id| ids.iter().any(|candidate| candidate == id))
        }
        IndexHint::TagEquals { path, value } => {
            let tag =
                Path::new(["tags".to_owned()].into_iter().chain(path.iter().cloned())).lookup(twin);
            tag.and_then(query::index_key) == query::index_key(value)
        }
        _ => true,
    }
}
