//! Parse errors with source spans.
//!
//! Every diagnostic the lexer or parser produces is a [`ParseError`]: where it happened ([`Span`]),
//! what the parser expected there and what it found instead.
//! Evaluation never fails (type mismatches are "undefined", as in IoT Hub), so there is no eval error.

use std::fmt;

/// A position in the query text: 1-based line and column (in characters) plus the byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters (not bytes) from the start of the line.
    pub col: u32,
    /// Byte offset where the offending text starts.
    pub start: usize,
    /// Byte offset one past the end of the offending text (equal to `start` at end of input).
    pub end: usize,
}

impl Span {
    /// Builds the span of the byte range `start..end` of `source`, computing line and column.
    ///
    /// Offsets past the end or inside a character are clamped to the previous character boundary.
    #[must_use]
    pub fn from_range(source: &str, start: usize, end: usize) -> Self {
        let start = floor_char_boundary(source, start);
        let end = floor_char_boundary(source, end.max(start));
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline_idx| newline_idx + 1);
        let col = source[line_start..start].chars().count() + 1;
        Span { line: saturating_u32(line), col: saturating_u32(col), start, end }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, col {}", self.line, self.col)
    }
}

/// Why a query or job condition was rejected.
///
/// Displays as `line 1, col 27: expected a value after '=', found end of query`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{span}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Where the problem is.
    pub span: Span,
    /// What the parser wanted at that point, e.g. `a value after '='`.
    pub expected: String,
    /// What it saw instead, e.g. `'FROM'` or `end of query`.
    pub found: String,
}

impl ParseError {
    /// Builds an error for the byte range `start..end` of `source`.
    pub(crate) fn at(
        source: &str,
        start: usize,
        end: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        ParseError {
            span: Span::from_range(source, start, end),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The message IoT Hub puts in a failed job's `failureReason` when its query condition is bad.
    ///
    /// IoT Hub prefixes these with "SQL query parse failed"; the rest is hubsim's own diagnostic.
    #[must_use]
    pub fn sql_parse_failed_message(&self) -> String {
        format!("SQL query parse failed: {self}")
    }
}

fn floor_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
