//! Parsing whole statements: `SELECT ... FROM ... [WHERE ...] [GROUP BY ...]` and job conditions.
//!
//! Besides syntax this module enforces what IoT Hub enforces on the statement as a whole:
//! the 8,192-character limit, `devices.jobs` allowing only `SELECT *` without `GROUP BY`,
//! aggregate queries projecting only aggregates and grouped paths, distinct result keys,
//! and job conditions being a WHERE body (a full `SELECT` is refused).

use crate::ast::{
    Aggregate, AggregateFunction, Collection, Condition, Path, Projection, Query, Select,
    SelectItem,
};
use crate::error::ParseError;
use crate::lexer::TokenKind;
use crate::names::{canonical_path, canonicalize_expr};
use crate::parser::Parser;
use crate::MAX_QUERY_LENGTH;

/// Parses a full query. See [`crate::parse_query`].
pub(crate) fn parse_query(source: &str) -> Result<Query, ParseError> {
    check_length(source)?;
    let mut parser = Parser::new(source)?;
    parser.expect_keyword("SELECT", "SELECT at the start of the query")?;
    let top = parse_top(&mut parser)?;
    let select_start = parser.peek().clone();
    let (select, item_spans) = parse_select_list(&mut parser)?;
    parser.expect_keyword("FROM", "',' or FROM after the select list")?;
    let from = parse_collection(&mut parser)?;
    let has_where = parser.at_keyword("WHERE");
    let filter = if parser.eat_keyword("WHERE") {
        let (mut filter, _) = parser.expression("a condition after WHERE")?;
        canonicalize_expr(&mut filter, from);
        Some(filter)
    } else {
        None
    };
    let group_start = parser.peek().clone();
    let group_by = parse_group_by(&mut parser, from)?;
    if parser.peek().kind != TokenKind::Eof {
        let expected = if has_where {
            "AND, OR, GROUP BY or the end of the query"
        } else {
            "WHERE, GROUP BY or the end of the query"
        };
        return Err(parser.error_here(expected));
    }
    let select = canonicalize_select(select, from);
    let query = Query { top, select, from, filter, group_by };
    if from == Collection::DevicesJobs
        && (query.select != Select::All || !query.group_by.is_empty())
    {
        let at = if query.select == Select::All { &group_start } else { &select_start };
        return Err(parser.error_at(
            at,
            "SELECT * without GROUP BY (devices.jobs supports no projections or aggregates)",
        ));
    }
    let select_span = (select_start.start, select_start.end);
    validate_select(&parser, &query, select_span, &item_spans)?;
    Ok(query)
}

/// Parses a job `queryCondition`. See [`crate::parse_condition`].
pub(crate) fn parse_condition(source: &str) -> Result<Condition, ParseError> {
    check_length(source)?;
    if source.trim() == "*" {
        return Ok(Condition { filter: None });
    }
    let mut parser = Parser::new(source)?;
    if parser.at_keyword("SELECT") {
        return Err(
            parser.error_here("a condition (the body of a WHERE clause, or '*'), not a full query")
        );
    }
    let (mut filter, _) = parser.expression("a condition (the body of a WHERE clause, or '*')")?;
    if parser.peek().kind != TokenKind::Eof {
        return Err(parser.error_here("AND, OR or the end of the condition"));
    }
    canonicalize_expr(&mut filter, Collection::Devices);
    Ok(Condition { filter: Some(filter) })
}

fn check_length(source: &str) -> Result<(), ParseError> {
    let n_chars = source.chars().count();
    if n_chars <= MAX_QUERY_LENGTH {
        return Ok(());
    }
    let cut =
        source.char_indices().nth(MAX_QUERY_LENGTH).map_or(source.len(), |(offset, _)| offset);
    Err(ParseError::at(
        source,
        cut,
        source.len(),
        format!("a query of at most {MAX_QUERY_LENGTH} characters"),
        format!("{n_chars} characters"),
    ))
}

fn parse_top(parser: &mut Parser<'_>) -> Result<Option<u64>, ParseError> {
    if !parser.eat_keyword("TOP") {
        return Ok(None);
    }
    match &parser.peek().kind {
        TokenKind::Number(number) if number.is_u64() => {
            let top = number.as_u64();
            parser.advance();
            Ok(top)
        }
        _ => Err(parser.error_here("a whole number of rows after TOP")),
    }
}

/// The select list and, per item, the byte range it came from (for later diagnostics).
fn parse_select_list(parser: &mut Parser<'_>) -> Result<(Select, Vec<(usize, usize)>), ParseError> {
    if parser.eat(&TokenKind::Star) {
        return Ok((Select::All, Vec::new()));
    }
    let mut items = Vec::new();
    let mut spans = Vec::new();
    loop {
        let start = parser.peek().start;
        items.push(parse_select_item(parser)?);
        spans.push((start, parser.peek().start));
        if !parser.eat(&TokenKind::Comma) {
            return Ok((Select::Items(items), spans));
        }
    }
}

fn parse_select_item(parser: &mut Parser<'_>) -> Result<SelectItem, ParseError> {
    const EXPECTED: &str =
        "'*', a property path or an aggregate such as COUNT() in the select list";
    let aggregate = match &parser.peek().kind {
        TokenKind::Ident(name) => AggregateFunction::from_name(name),
        _ => return Err(parser.error_here(EXPECTED)),
    };
    let projection = match aggregate {
        Some(function) if *parser.peek_kind_at(1) == TokenKind::LParen => {
            Projection::Aggregate(parse_aggregate(parser, function)?)
        }
        _ => Projection::Path(parser.path(EXPECTED)?),
    };
    let alias = if parser.eat_keyword("AS") {
        Some(parser.identifier("an alias name after AS")?)
    } else {
        None
    };
    Ok(SelectItem { projection, alias })
}

fn parse_aggregate(
    parser: &mut Parser<'_>,
    function: AggregateFunction,
) -> Result<Aggregate, ParseError> {
    parser.advance();
    parser.advance();
    if function == AggregateFunction::Count {
        parser.expect(&TokenKind::RParen, "')' after COUNT(")?;
        return Ok(Aggregate { function, argument: None });
    }
    let argument = parser.path(&format!("a property path inside {}(", function.name()))?;
    parser.expect(&TokenKind::RParen, &format!("')' after the argument of {}", function.name()))?;
    Ok(Aggregate { function, argument: Some(argument) })
}

fn parse_collection(parser: &mut Parser<'_>) -> Result<Collection, ParseError> {
    const EXPECTED: &str = "a collection (devices, devices.modules or devices.jobs) after FROM";
    parser.expect_keyword("devices", EXPECTED)?;
    if !parser.eat(&TokenKind::Dot) {
        return Ok(Collection::Devices);
    }
    if parser.eat_keyword("jobs") {
        Ok(Collection::DevicesJobs)
    } else if parser.eat_keyword("modules") {
        Ok(Collection::DevicesModules)
    } else {
        Err(parser.error_here("jobs or modules after 'devices.'"))
    }
}

fn parse_group_by(parser: &mut Parser<'_>, from: Collection) -> Result<Vec<Path>, ParseError> {
    if !parser.eat_keyword("GROUP") {
        return Ok(Vec::new());
    }
    parser.expect_keyword("BY", "BY after GROUP")?;
    let mut paths = Vec::new();
    loop {
        let path = parser.path("a property path after GROUP BY")?;
        paths.push(canonical_path(path.segments, from));
        if !parser.eat(&TokenKind::Comma) {
            return Ok(paths);
        }
    }
}

fn canonicalize_select(select: Select, from: Collection) -> Select {
    let Select::Items(items) = select else { return Select::All };
    let canonical = |path: Path| canonical_path(path.segments, from);
    let items = items
        .into_iter()
        .map(|item| {
            let projection = match item.projection {
                Projection::Path(path) => Projection::Path(canonical(path)),
                Projection::Aggregate(Aggregate { function, argument }) => {
                    Projection::Aggregate(Aggregate { function, argument: argument.map(canonical) })
                }
            };
            SelectItem { projection, alias: item.alias }
        })
        .collect();
    Select::Items(items)
}

/// Checks aggregate/grouping rules and that result keys are distinct.
fn validate_select(
    parser: &Parser<'_>,
    query: &Query,
    select_span: (usize, usize),
    item_spans: &[(usize, usize)],
) -> Result<(), ParseError> {
    let error = |item_idx: usize, expected: String, found: String| {
        let (start, end) = item_spans.get(item_idx).copied().unwrap_or(select_span);
        ParseError::at(parser.source, start, end, expected, found)
    };
    let Select::Items(items) = &query.select else {
        if query.group_by.is_empty() {
            return Ok(());
        }
        return Err(error(
            0,
            "a select list of grouped paths and aggregates with GROUP BY".into(),
            "'*'".into(),
        ));
    };
    let aggregate = query.is_aggregate();
    let mut keys = Vec::new();
    for (item_idx, (item, key)) in items.iter().zip(crate::project::result_keys(items)).enumerate()
    {
        if let Projection::Path(path) = &item.projection {
            if aggregate && !query.group_by.contains(path) {
                let expected =
                    "only aggregates and GROUP BY paths in an aggregate query".to_owned();
                return Err(error(item_idx, expected, format!("'{path}'")));
            }
        }
        if keys.contains(&key) {
            return Err(error(
                item_idx,
                format!("a distinct result name (add AS to rename '{key}')"),
                format!("'{key}' again"),
            ));
        }
        keys.push(key);
    }
    Ok(())
}
