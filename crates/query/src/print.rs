//! Printing expressions as query text that parses back to the same tree.
//!
//! Parentheses are added exactly where precedence or nesting requires them, so
//! `parse(print(tree)) == tree` for every tree the parser can produce.
//! Object constants have no query syntax; they print as JSON and do not re-parse.

use std::fmt::{self, Write as _};

use serde_json::Value;

use crate::ast::{BinaryOp, Expr, UnaryOp};

/// Precedence levels, loosest first.
const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_NOT: u8 = 3;
const PREC_COMPARE: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
const PREC_NEG: u8 = 7;
const PREC_PRIMARY: u8 = 8;

/// Writes `expr` as query text.
pub(crate) fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Literal(value) => write_literal(f, value),
        Expr::Undefined => f.write_str("undefined"),
        Expr::Path(path) => write!(f, "{path}"),
        Expr::Unary { op: UnaryOp::Not, operand } => {
            f.write_str("NOT ")?;
            write_child(f, operand, PREC_NOT)
        }
        Expr::Unary { op: UnaryOp::Neg, operand } => {
            f.write_str("-")?;
            // `-3` would re-parse as the literal -3, and `--x` is not an operator: parenthesize.
            let needs_parens = matches!(
                **operand,
                Expr::Literal(Value::Number(_)) | Expr::Unary { op: UnaryOp::Neg, .. }
            );
            write_child(f, operand, if needs_parens { PREC_PRIMARY + 1 } else { PREC_NEG })
        }
        Expr::Binary { op, lhs, rhs } => write_binary(f, *op, lhs, rhs),
        Expr::And(operands) => write_list(f, operands, " AND ", PREC_AND + 1),
        Expr::Or(operands) => write_list(f, operands, " OR ", PREC_OR + 1),
        Expr::In { operand, list, negated } => {
            write_child(f, operand, PREC_ADD)?;
            f.write_str(if *negated { " NIN " } else { " IN " })?;
            write_array(f, list)
        }
        Expr::Call { function, args } => {
            write!(f, "{}(", function.name())?;
            for (arg_idx, arg) in args.iter().enumerate() {
                if arg_idx > 0 {
                    f.write_str(", ")?;
                }
                write_expr(f, arg)?;
            }
            f.write_str(")")
        }
    }
}

/// Writes a constant in query syntax: single-quoted strings, numbers, `true`, `false`, `null`, arrays.
pub(crate) fn write_literal(f: &mut impl fmt::Write, value: &Value) -> fmt::Result {
    match value {
        Value::Null => f.write_str("null"),
        Value::Bool(flag) => write!(f, "{flag}"),
        Value::Number(number) => write!(f, "{number}"),
        Value::String(text) => write_string(f, text),
        Value::Array(items) => write_array(f, items),
        Value::Object(_) => write!(f, "{value}"),
    }
}

fn write_array(f: &mut impl fmt::Write, items: &[Value]) -> fmt::Result {
    f.write_char('[')?;
    for (item_idx, item) in items.iter().enumerate() {
        if item_idx > 0 {
            f.write_str(", ")?;
        }
        write_literal(f, item)?;
    }
    f.write_char(']')
}

fn write_string(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    f.write_char('\'')?;
    for ch in text.chars() {
        match ch {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            ch if ch.is_control() => write!(f, "\\u{:04x}", u32::from(ch))?,
            ch => f.write_char(ch)?,
        }
    }
    f.write_char('\'')
}

fn write_binary(f: &mut fmt::Formatter<'_>, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> fmt::Result {
    // Comparisons don't chain, so both sides bind tighter; arithmetic is left-associative,
    // so only the right side needs the stricter level.
    let (lhs_min, rhs_min) = match precedence_of_op(op) {
        PREC_COMPARE => (PREC_ADD, PREC_ADD),
        level => (level, level + 1),
    };
    write_child(f, lhs, lhs_min)?;
    write!(f, " {} ", op.symbol())?;
    write_child(f, rhs, rhs_min)
}

fn write_list(
    f: &mut fmt::Formatter<'_>,
    operands: &[Expr],
    separator: &str,
    min_level: u8,
) -> fmt::Result {
    for (operand_idx, operand) in operands.iter().enumerate() {
        if operand_idx > 0 {
            f.write_str(separator)?;
        }
        write_child(f, operand, min_level)?;
    }
    Ok(())
}

fn write_child(f: &mut fmt::Formatter<'_>, child: &Expr, min_level: u8) -> fmt::Result {
    if precedence(child) < min_level {
        f.write_char('(')?;
        write_expr(f, child)?;
        f.write_char(')')
    } else {
        write_expr(f, child)
    }
}

fn precedence(expr: &Expr) -> u8 {
    match expr {
        Expr::Or(_) => PREC_OR,
        Expr::And(_) => PREC_AND,
        Expr::Unary { op: UnaryOp::Not, .. } => PREC_NOT,
        Expr::In { .. } => PREC_COMPARE,
        Expr::Binary { op, .. } => precedence_of_op(*op),
        Expr::Unary { op: UnaryOp::Neg, .. } => PREC_NEG,
        // A negative number literal prints with a leading minus, which binds like negation.
        Expr::Literal(Value::Number(number)) if number.to_string().starts_with('-') => PREC_NEG,
        Expr::Literal(_) | Expr::Undefined | Expr::Path(_) | Expr::Call { .. } => PREC_PRIMARY,
    }
}

fn precedence_of_op(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            PREC_COMPARE
        }
        BinaryOp::Add | BinaryOp::Sub => PREC_ADD,
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => PREC_MUL,
    }
}
