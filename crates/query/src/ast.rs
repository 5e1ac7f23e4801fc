//! Syntax tree of a query, and its printer.
//!
//! [`Query`] is a whole `SELECT ... FROM ... [WHERE ...] [GROUP BY ...]`; [`Condition`] is a job's
//! `queryCondition` (a WHERE body or `*`); [`Expr`] is a condition or value expression.
//! Every type's `Display` prints text that parses back to the same tree (paths print in their
//! canonical spelling, keywords and functions in upper case, strings single-quoted).
//! Validation (paths, aggregates, limits) happens in the parser, not here.

use std::fmt;

use serde_json::Value;

/// The collection a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `devices`: device twins.
    Devices,
    /// `devices.modules`: module twins.
    DevicesModules,
    /// `devices.jobs`: per-device job records.
    DevicesJobs,
}

/// A parsed `SELECT` query. Build one with [`crate::parse_query`].
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `TOP n`: at most this many result rows.
    pub top: Option<u64>,
    /// What each result row contains.
    pub select: Select,
    /// `FROM` collection.
    pub from: Collection,
    /// `WHERE` condition; `None` matches every document.
    pub filter: Option<Expr>,
    /// `GROUP BY` paths, empty when absent.
    pub group_by: Vec<Path>,
}

/// A job's `queryCondition`: a WHERE body over device twins. Build one with [`crate::parse_condition`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The expression; `None` is `*`, which matches every device.
    pub filter: Option<Expr>,
}

/// The select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT *`: whole documents.
    All,
    /// `SELECT a, b AS c, COUNT() AS n`.
    Items(Vec<SelectItem>),
}

/// One projection in the select list, with its optional alias.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    /// What is projected.
    pub projection: Projection,
    /// `AS alias`: the key of this item in result rows.
    pub alias: Option<String>,
}

/// A projected property or aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// A property path; keyed by its last segment unless aliased.
    Path(Path),
    /// An aggregate over the matched documents (or over each group).
    Aggregate(Aggregate),
}

/// An aggregate function applied to a path (`COUNT()` takes none).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Which aggregate.
    pub function: AggregateFunction,
    /// The aggregated path; `None` exactly for `COUNT()`.
    pub argument: Option<Path>,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `COUNT()`: number of documents.
    Count,
    /// `SUM(path)`: sum of the numeric values.
    Sum,
    /// `AVG(path)`: mean of the numeric values.
    Avg,
    /// `MIN(path)`: smallest primitive value.
    Min,
    /// `MAX(path)`: largest primitive value.
    Max,
}

/// A property path such as `tags.location.building`, stored in canonical spelling
/// (collection prefix removed, system property names in camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    /// The segments, outermost first.
    pub segments: Vec<String>,
}

/// An expression in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant: string, number, boolean, null or array of constants.
    Literal(Value),
    /// The `undefined` constant.
    Undefined,
    /// A property of the document.
    Path(Path),
    /// `NOT x` or `-x`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// Its operand.
        operand: Box<Expr>,
    },
    /// A comparison or arithmetic operation.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `a AND b AND ...` (two or more operands).
    And(Vec<Expr>),
    /// `a OR b OR ...` (two or more operands).
    Or(Vec<Expr>),
    /// `x IN [..]`, or `x NIN [..]` when `negated`.
    In {
        /// The tested value.
        operand: Box<Expr>,
        /// The constants it is compared with.
        list: Vec<Value>,
        /// True for `NIN`.
        negated: bool,
    },
    /// A built-in function call.
    Call {
        /// The function.
        function: Function,
        /// Its arguments (count checked by the parser).
        args: Vec<Expr>,
    },
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// Logical `NOT`.
    Not,
    /// Arithmetic negation `-`.
    Neg,
}

/// Binary comparison and arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// Built-in functions usable in conditions. Names match case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `IS_DEFINED(x)`: x is present (a `null` value counts as present).
    IsDefined,
    /// `IS_NULL(x)`: x is `null`.
    IsNull,
    /// `IS_STRING(x)`
    IsString,
    /// `IS_NUMBER(x)`
    IsNumber,
    /// `IS_BOOL(x)`
    IsBool,
    /// `IS_OBJECT(x)`
    IsObject,
    /// `IS_ARRAY(x)`
    IsArray,
    /// `IS_PRIMITIVE(x)`: string, number, boolean or null.
    IsPrimitive,
    /// `STARTSWITH(s, prefix)`
    StartsWith,
    /// `ENDSWITH(s, suffix)`
    EndsWith,
    /// `CONTAINS(s, part)`
    Contains,
    /// `LOWER(s)`
    Lower,
    /// `UPPER(s)`
    Upper,
    /// `LENGTH(s)`: number of characters.
    Length,
}

impl Function {
    /// Every function, for lookups and tests.
    pub const ALL: [Function; 14] = [
        Function::IsDefined,
        Function::IsNull,
        Function::IsString,
        Function::IsNumber,
        Function::IsBool,
        Function::IsObject,
        Function::IsArray,
        Function::IsPrimitive,
        Function::StartsWith,
        Function::EndsWith,
        Function::Contains,
        Function::Lower,
        Function::Upper,
        Function::Length,
    ];

    /// The canonical (upper-case) name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Function::IsDefined => "IS_DEFINED",
            Function::IsNull => "IS_NULL",
            Function::IsString => "IS_STRING",
            Function::IsNumber => "IS_NUMBER",
            Function::IsBool => "IS_BOOL",
            Function::IsObject => "IS_OBJECT",
            Function::IsArray => "IS_ARRAY",
            Function::IsPrimitive => "IS_PRIMITIVE",
            Function::StartsWith => "STARTSWITH",
            Function::EndsWith => "ENDSWITH",
            Function::Contains => "CONTAINS",
            Function::Lower => "LOWER",
            Function::Upper => "UPPER",
            Function::Length => "LENGTH",
        }
    }

    /// How many arguments the function takes.
    #[must_use]
    pub fn arity(self) -> usize {
        match self {
            Function::StartsWith | Function::EndsWith | Function::Contains => 2,
            _ => 1,
        }
    }

    /// Looks a function up by name, ignoring case.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|function| function.name().eq_ignore_ascii_case(name))
    }
}

impl AggregateFunction {
    /// The canonical (upper-case) name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "COUNT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
        }
    }

    /// Looks an aggregate up by name, ignoring case.
    #[must_use]
    pub fn from_name(name: &str) -> Option<AggregateFunction> {
        [
            AggregateFunction::Count,
            AggregateFunction::Sum,
            AggregateFunction::Avg,
            AggregateFunction::Min,
            AggregateFunction::Max,
        ]
        .into_iter()
        .find(|function| function.name().eq_ignore_ascii_case(name))
    }
}

impl BinaryOp {
    /// The operator's text.
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// True for `= != < <= > >=`.
    #[must_use]
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}

impl Collection {
    /// The collection's name as written after `FROM`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Collection::Devices => "devices",
            Collection::DevicesModules => "devices.modules",
            Collection::DevicesJobs => "devices.jobs",
        }
    }
}

impl Path {
    /// Builds a path from its segments.
    #[must_use]
    pub fn new<S: Into<String>>(segments: impl IntoIterator<Item = S>) -> Self {
        Path { segments: segments.into_iter().map(Into::into).collect() }
    }

    /// Looks the path up in a JSON document; `None` when any segment is missing.
    #[must_use]
    pub fn lookup<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(document, |value, segment| value.get(segment.as_str()))
    }

    /// The key a projection of this path gets in result rows: its last segment.
    #[must_use]
    pub fn default_key(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }
}

impl Query {
    /// True when the select list has an aggregate or the query has `GROUP BY`.
    #[must_use]
    pub fn is_aggregate(&self) -> bool {
        !self.group_by.is_empty()
            || matches!(&self.select, Select::Items(items)
                if items.iter().any(|item| matches!(item.projection, Projection::Aggregate(_))))
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if let Some(top) = self.top {
            write!(f, "TOP {top} ")?;
        }
        write!(f, "{} FROM {}", self.select, self.from)?;
        if let Some(filter) = &self.filter {
            write!(f, " WHERE {filter}")?;
        }
        for (group_idx, path) in self.group_by.iter().enumerate() {
            f.write_str(if group_idx == 0 { " GROUP BY " } else { ", " })?;
            write!(f, "{path}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Some(filter) => write!(f, "{filter}"),
            None => f.write_str("*"),
        }
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Select::Items(items) = self else { return f.write_str("*") };
        for (item_idx, item) in items.iter().enumerate() {
            if item_idx > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SelectItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.projection {
            Projection::Path(path) => write!(f, "{path}")?,
            Projection::Aggregate(aggregate) => {
                let argument = aggregate.argument.as_ref().map(Path::to_string).unwrap_or_default();
                write!(f, "{}({argument})", aggregate.function.name())?;
            }
        }
        match &self.alias {
            Some(alias) => write!(f, " AS {alias}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::print::write_expr(f, self)
    }
}
