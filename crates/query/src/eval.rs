//! Evaluating conditions and expressions against one JSON document.
//!
//! The document is a service-view twin for `devices`/`devices.modules` and a per-device job record
//! for `devices.jobs`. Semantics follow IoT Hub's: a missing property is *undefined*; comparisons
//! between different types, with objects or arrays, or with undefined are undefined (never an
//! error); logic is three-valued and a condition passes only when it is exactly `true`.
//! Evaluation allocates only for computed strings and never panics; its cost is linear in the
//! expression size (bounded by the parser) times the length of the values it touches.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::ast::{BinaryOp, Expr, Function, UnaryOp};

/// True when `filter` is absent (`*`) or evaluates to boolean `true` on `document`.
#[must_use]
pub(crate) fn matches(filter: Option<&Expr>, document: &Value) -> bool {
    filter.is_none_or(|expr| matches!(eval(expr, document).get(), Some(Value::Bool(true))))
}

/// Evaluates `expr` on `document`; `None` means undefined.
#[must_use]
pub(crate) fn evaluate(expr: &Expr, document: &Value) -> Option<Value> {
    eval(expr, document).into_value()
}

/// Orders two primitive values of the same type (numbers numerically, strings by code point,
/// `false < true`, `null = null`); `None` when the types differ or either is an object or array.
#[must_use]
pub fn compare_values(lhs: &Value, rhs: &Value) -> Option<Ordering> {
    match (lhs, rhs) {
        (Value::Number(lhs), Value::Number(rhs)) => compare_numbers(lhs, rhs),
        (Value::String(lhs), Value::String(rhs)) => Some(lhs.cmp(rhs)),
        (Value::Bool(lhs), Value::Bool(rhs)) => Some(lhs.cmp(rhs)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// An intermediate result: undefined, a value borrowed from the document or query, or a computed one.
enum Val<'a> {
    Undefined,
    Borrowed(&'a Value),
    Owned(Value),
}

impl Val<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Val::Undefined => None,
            Val::Borrowed(value) => Some(value),
            Val::Owned(value) => Some(value),
        }
    }

    fn into_value(self) -> Option<Value> {
        match self {
            Val::Undefined => None,
            Val::Borrowed(value) => Some(value.clone()),
            Val::Owned(value) => Some(value),
        }
    }

    fn truth(&self) -> Option<bool> {
        match self.get() {
            Some(Value::Bool(flag)) => Some(*flag),
            _ => None,
        }
    }
}

fn boolean<'a>(flag: Option<bool>) -> Val<'a> {
    flag.map_or(Val::Undefined, |flag| Val::Owned(Value::Bool(flag)))
}

fn eval<'a>(expr: &'a Expr, document: &'a Value) -> Val<'a> {
    match expr {
        Expr::Literal(value) => Val::Borrowed(value),
        Expr::Undefined => Val::Undefined,
        Expr::Path(path) => path.lookup(document).map_or(Val::Undefined, Val::Borrowed),
        Expr::Unary { op: UnaryOp::Not, operand } => {
            boolean(eval(operand, document).truth().map(|flag| !flag))
        }
        Expr::Unary { op: UnaryOp::Neg, operand } => match eval(operand, document).get() {
            Some(Value::Number(number)) => negate(number),
            _ => Val::Undefined,
        },
        Expr::Binary { op, lhs, rhs } => binary(*op, &eval(lhs, document), &eval(rhs, document)),
        Expr::And(operands) => boolean(all(operands, document)),
        Expr::Or(operands) => boolean(any(operands, document)),
        Expr::In { operand, list, negated } => {
            let found = membership(&eval(operand, document), list);
            boolean(found.map(|found| found != *negated))
        }
        Expr::Call { function, args } => call(*function, args, document),
    }
}

/// Three-valued AND: false if any operand is false, true if all are true, else undefined.
fn all(operands: &[Expr], document: &Value) -> Option<bool> {
    let mut result = Some(true);
    for operand in operands {
        match eval(operand, document).truth() {
            Some(false) => return Some(false),
            Some(true) => {}
            None => result = None,
        }
    }
    result
}

/// Three-valued OR: true if any operand is true, false if all are false, else undefined.
fn any(operands: &[Expr], document: &Value) -> Option<bool> {
    let mut result = Some(false);
    for operand in operands {
        match eval(operand, document).truth() {
            Some(true) => return Some(true),
            Some(false) => {}
            None => result = None,
        }
    }
    result
}

/// Whether a defined primitive equals one of the constants; undefined for undefined, objects and arrays.
fn membership(operand: &Val<'_>, list: &[Value]) -> Option<bool> {
    let value = operand.get()?;
    if value.is_object() || value.is_array() {
        return None;
    }
    Some(list.iter().any(|item| compare_values(value, item) == Some(Ordering::Equal)))
}

fn binary<'a>(op: BinaryOp, lhs: &Val<'_>, rhs: &Val<'_>) -> Val<'a> {
    let (Some(lhs), Some(rhs)) = (lhs.get(), rhs.get()) else { return Val::Undefined };
    if op.is_comparison() {
        let Some(ordering) = compare_values(lhs, rhs) else { return Val::Undefined };
        let flag = match op {
            BinaryOp::Eq => ordering.is_eq(),
            BinaryOp::Ne => ordering.is_ne(),
            BinaryOp::Lt => ordering.is_lt(),
            BinaryOp::Le => ordering.is_le(),
            BinaryOp::Gt => ordering.is_gt(),
            _ => ordering.is_ge(),
        };
        return Val::Owned(Value::Bool(flag));
    }
    match (lhs, rhs) {
        (Value::Number(lhs), Value::Number(rhs)) => {
            arithmetic(op, lhs, rhs).map_or(Val::Undefined, Val::Owned)
        }
        _ => Val::Undefined,
    }
}

/// Integer arithmetic when exact and in range, float otherwise; undefined for non-finite results.
fn arithmetic(op: BinaryOp, lhs: &Number, rhs: &Number) -> Option<Value> {
    if let (Some(lhs), Some(rhs)) = (lhs.as_i64(), rhs.as_i64()) {
        let exact = match op {
            BinaryOp::Add => lhs.checked_add(rhs),
            BinaryOp::Sub => lhs.checked_sub(rhs),
            BinaryOp::Mul => lhs.checked_mul(rhs),
            BinaryOp::Div if lhs.checked_rem(rhs) == Some(0) => lhs.checked_div(rhs),
            BinaryOp::Rem => lhs.checked_rem(rhs),
            _ => None,
        };
        if let Some(result) = exact {
            return Some(Value::from(result));
        }
    }
    let (lhs, rhs) = (lhs.as_f64()?, rhs.as_f64()?);
    let result = match op {
        BinaryOp::Add => lhs + rhs,
        BinaryOp::Sub => lhs - rhs,
        BinaryOp::Mul => lhs * rhs,
        BinaryOp::Div => lhs / rhs,
        _ => lhs % rhs,
    };
    Number::from_f64(result).map(Value::Number)
}

fn negate<'a>(number: &Number) -> Val<'a> {
    if let Some(negative) = number.as_i64().and_then(i64::checked_neg) {
        return Val::Owned(Value::from(negative));
    }
    number
        .as_f64()
        .and_then(|value| Number::from_f64(-value))
        .map_or(Val::Undefined, |n| Val::Owned(Value::Number(n)))
}

fn compare_numbers(lhs: &Number, rhs: &Number) -> Option<Ordering> {
    match (as_i128(lhs), as_i128(rhs)) {
        (Some(lhs), Some(rhs)) => Some(lhs.cmp(&rhs)),
        _ => lhs.as_f64()?.partial_cmp(&rhs.as_f64()?),
    }
}

fn as_i128(number: &Number) -> Option<i128> {
    number.as_i64().map(i128::from).or_else(|| number.as_u64().map(i128::from))
}

fn call<'a>(function: Function, args: &'a [Expr], document: &'a Value) -> Val<'a> {
    let first = args.first().map_or(Val::Undefined, |arg| eval(arg, document));
    let value = first.get();
    let flag = match function {
        Function::IsDefined => value.is_some(),
        Function::IsNull => value.is_some_and(Value::is_null),
        Function::IsString => value.is_some_and(Value::is_string),
        Function::IsNumber => value.is_some_and(Value::is_number),
        Function::IsBool => value.is_some_and(Value::is_boolean),
        Function::IsObject => value.is_some_and(Value::is_object),
        Function::IsArray => value.is_some_and(Value::is_array),
        Function::IsPrimitive => value.is_some_and(|value| !value.is_object() && !value.is_array()),
        Function::StartsWith | Function::EndsWith | Function::Contains => {
            let second = args.get(1).map_or(Val::Undefined, |arg| eval(arg, document));
            return boolean(string_test(function, value, second.get()));
        }
        Function::Lower | Function::Upper | Function::Length => {
            return string_function(function, value)
        }
    };
    Val::Owned(Value::Bool(flag))
}

fn string_test(function: Function, text: Option<&Value>, part: Option<&Value>) -> Option<bool> {
    let (Some(Value::String(text)), Some(Value::String(part))) = (text, part) else { return None };
    Some(match function {
        Function::StartsWith => text.starts_with(part.as_str()),
        Function::EndsWith => text.ends_with(part.as_str()),
        _ => text.contains(part.as_str()),
    })
}

fn string_function<'a>(function: Function, value: Option<&Value>) -> Val<'a> {
    let Some(Value::String(text)) = value else { return Val::Undefined };
    Val::Owned(match function {
        Function::Lower => Value::String(text.to_lowercase()),
        Function::Upper => Value::String(text.to_uppercase()),
        _ => Value::from(text.chars().count()),
    })
}
