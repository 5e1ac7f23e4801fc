//! Recursive-descent parser for conditions and expressions, plus the shared token cursor.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, comparisons and `IN`/`NIN` (which don't chain),
//! `+ -`, `* / %`, unary `-`. `AND`/`OR` chains become one n-ary node, so long lists of
//! alternatives stay shallow. Every node records its depth and the parser refuses trees deeper
//! than [`crate::MAX_DEPTH`], so neither parsing nor evaluation can exhaust the stack.
//! The `SELECT` statement itself is parsed in [`crate::statement`].

use serde_json::{Number, Value};

use crate::ast::{BinaryOp, Expr, Function, Path, UnaryOp};
use crate::error::ParseError;
use crate::lexer::{tokenize, Token, TokenKind};
use crate::{MAX_DEPTH, MAX_LIST_LEN};

/// Words that cannot start a property path or be an alias.
const RESERVED: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NIN",
    "TOP",
    "TRUE",
    "FALSE",
    "NULL",
    "UNDEFINED",
];

/// An expression and the depth of its tree (a leaf has depth 1).
pub(crate) type Node = (Expr, usize);

/// Token cursor over one query text.
pub(crate) struct Parser<'a> {
    pub(crate) source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// How many recursive parse calls are active (parentheses, `NOT`, unary minus, arrays).
    nesting: usize,
}

impl<'a> Parser<'a> {
    /// Tokenizes `source`.
    pub(crate) fn new(source: &'a str) -> Result<Self, ParseError> {
        Ok(Parser { source, tokens: tokenize(source)?, pos: 0, nesting: 0 })
    }

    pub(crate) fn peek(&self) -> &Token {
        // `tokenize` always ends with Eof and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    pub(crate) fn peek_kind_at(&self, offset: usize) -> &TokenKind {
        &self.tokens[(self.pos + offset).min(self.tokens.len() - 1)].kind
    }

    pub(crate) fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.pos += 1;
        }
        token
    }

    /// An error at the current token saying what was expected.
    pub(crate) fn error_here(&self, expected: impl Into<String>) -> ParseError {
        self.error_at(self.peek(), expected)
    }

    pub(crate) fn error_at(&self, token: &Token, expected: impl Into<String>) -> ParseError {
        ParseError::at(self.source, token.start, token.end, expected, self.describe(token))
    }

    fn describe(&self, token: &Token) -> String {
        if token.kind == TokenKind::Eof {
            return "end of query".to_owned();
        }
        let text = &self.source[token.start..token.end];
        let shown: String = text.chars().take(40).collect();
        let ellipsis = if shown.len() < text.len() { "..." } else { "" };
        match token.kind {
            // A string literal shows with its own quotes.
            TokenKind::Str(_) => format!("{shown}{ellipsis}"),
            _ => format!("'{shown}{ellipsis}'"),
        }
    }

    /// True when the current token is the keyword `word` (any case).
    pub(crate) fn at_keyword(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(name) if name.eq_ignore_ascii_case(word))
    }

    pub(crate) fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.at_keyword(word);
        if found {
            self.advance();
        }
        found
    }

    pub(crate) fn expect_keyword(&mut self, word: &str, expected: &str) -> Result<(), ParseError> {
        if self.eat_keyword(word) {
            Ok(())
        } else {
            Err(self.error_here(expected))
        }
    }

    pub(crate) fn eat(&mut self, kind: &TokenKind) -> bool {
        let found = &self.peek().kind == kind;
        if found {
            self.advance();
        }
        found
    }

    pub(crate) fn expect(&mut self, kind: &TokenKind, expected: &str) -> Result<Token, ParseError> {
        if &self.peek().kind == kind {
            Ok(self.advance())
        } else {
            Err(self.error_here(expected))
        }
    }

    /// Consumes a non-reserved identifier (an alias or path segment start).
    pub(crate) fn identifier(&mut self, expected: &str) -> Result<String, ParseError> {
        match &self.peek().kind {
            TokenKind::Ident(name) if !is_reserved(name) => {
                let name = name.clone();
                self.advance();
                Ok(name)
            }
            _ => Err(self.error_here(expected)),
        }
    }

    /// Parses a full condition or value expression; `context` says what is expected here.
    pub(crate) fn expression(&mut self, context: &str) -> Result<Node, ParseError> {
        self.enter()?;
        let node = self.or_expr(context);
        self.nesting -= 1;
        node
    }

    /// Parses `ident ('.' ident)*`; the first segment must not be a reserved word.
    pub(crate) fn path(&mut self, expected: &str) -> Result<Path, ParseError> {
        let mut segments = vec![self.identifier(expected)?];
        while self.eat(&TokenKind::Dot) {
            match &self.peek().kind {
                TokenKind::Ident(name) => {
                    segments.push(name.clone());
                    self.advance();
                }
                _ => return Err(self.error_here("a property name after '.'")),
            }
        }
        Ok(Path { segments })
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            self.nesting -= 1;
            return Err(self.error_here(format!("at most {MAX_DEPTH} levels of nesting")));
        }
        Ok(())
    }

    /// Wraps a finished node, refusing trees deeper than [`MAX_DEPTH`].
    fn node(&self, expr: Expr, depth: usize, at: &Token) -> Result<Node, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error_at(at, format!("at most {MAX_DEPTH} levels of nesting")));
        }
        Ok((expr, depth))
    }

    fn or_expr(&mut self, context: &str) -> Result<Node, ParseError> {
        let first = self.and_expr(context)?;
        self.chain(first, "OR", Expr::Or, |parser| parser.and_expr("a condition after OR"))
    }

    fn and_expr(&mut self, context: &str) -> Result<Node, ParseError> {
        let first = self.not_expr(context)?;
        self.chain(first, "AND", Expr::And, |parser| parser.not_expr("a condition after AND"))
    }

    fn chain(
        &mut self,
        first: Node,
        keyword: &str,
        build: fn(Vec<Expr>) -> Expr,
        mut operand: impl FnMut(&mut Self) -> Result<Node, ParseError>,
    ) -> Result<Node, ParseError> {
        let start = self.peek().clone();
        if !self.at_keyword(keyword) {
            return Ok(first);
        }
        let (mut operands, mut depth) = (vec![first.0], first.1);
        while self.eat_keyword(keyword) {
            let (expr, expr_depth) = operand(self)?;
            operands.push(expr);
            depth = depth.max(expr_depth);
        }
        self.node(build(operands), depth + 1, &start)
    }

    fn not_expr(&mut self, context: &str) -> Result<Node, ParseError> {
        let not_token = self.peek().clone();
        if !self.eat_keyword("NOT") {
            return self.comparison(context);
        }
        self.enter()?;
        let operand = self.not_expr("a condition after NOT");
        self.nesting -= 1;
        let (operand, depth) = operand?;
        self.node(
            Expr::Unary { op: UnaryOp::Not, operand: Box::new(operand) },
            depth + 1,
            &not_token,
        )
    }

    fn comparison(&mut self, context: &str) -> Result<Node, ParseError> {
        let (lhs, lhs_depth) = self.additive(context)?;
        let op_token = self.peek().clone();
        let op = match op_token.kind {
            TokenKind::Eq => BinaryOp::Eq,
            TokenKind::Ne => BinaryOp::Ne,
            TokenKind::Lt => BinaryOp::Lt,
            TokenKind::Le => BinaryOp::Le,
            TokenKind::Gt => BinaryOp::Gt,
            TokenKind::Ge => BinaryOp::Ge,
            _ => return self.membership(lhs, lhs_depth),
        };
        self.advance();
        let (rhs, rhs_depth) = self
            .additive(&format!("a value after '{}'", &self.source[op_token.start..op_token.end]))?;
        let expr = Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        self.node(expr, lhs_depth.max(rhs_depth) + 1, &op_token)
    }

    /// `x IN [..]` / `x NIN [..]`, or just `x` when neither follows.
    fn membership(&mut self, operand: Expr, depth: usize) -> Result<Node, ParseError> {
        let keyword_token = self.peek().clone();
        let negated = if self.eat_keyword("IN") {
            false
        } else if self.eat_keyword("NIN") {
            true
        } else {
            return Ok((operand, depth));
        };
        let keyword = if negated { "NIN" } else { "IN" };
        if self.peek().kind != TokenKind::LBracket {
            return Err(
                self.error_here(format!("a list of constants like ['a', 'b'] after {keyword}"))
            );
        }
        let list = self.constant_array()?;
        self.node(Expr::In { operand: Box::new(operand), list, negated }, depth + 1, &keyword_token)
    }

    fn additive(&mut self, context: &str) -> Result<Node, ParseError> {
        let first = self.multiplicative(context)?;
        let ops = [(TokenKind::Plus, BinaryOp::Add), (TokenKind::Minus, BinaryOp::Sub)];
        self.left_assoc(first, &ops, Self::multiplicative)
    }

    fn multiplicative(&mut self, context: &str) -> Result<Node, ParseError> {
        let first = self.unary(context)?;
        let ops = [
            (TokenKind::Star, BinaryOp::Mul),
            (TokenKind::Slash, BinaryOp::Div),
            (TokenKind::Percent, BinaryOp::Rem),
        ];
        self.left_assoc(first, &ops, Self::unary)
    }

    fn left_assoc(
        &mut self,
        first: Node,
        ops: &[(TokenKind, BinaryOp)],
        operand: fn(&mut Self, &str) -> Result<Node, ParseError>,
    ) -> Result<Node, ParseError> {
        let (mut lhs, mut depth) = first;
        loop {
            let op_token = self.peek().clone();
            let Some((_, op)) = ops.iter().find(|(kind, _)| *kind == op_token.kind) else {
                return Ok((lhs, depth));
            };
            self.advance();
            let (rhs, rhs_depth) = operand(self, &format!("a value after '{}'", op.symbol()))?;
            let expr = Expr::Binary { op: *op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
            (lhs, depth) = self.node(expr, depth.max(rhs_depth) + 1, &op_token)?;
        }
    }

    fn unary(&mut self, context: &str) -> Result<Node, ParseError> {
        let minus_token = self.peek().clone();
        if !self.eat(&TokenKind::Minus) {
            return self.primary(context);
        }
        if let TokenKind::Number(number) = &self.peek().kind {
            let negative = negate(number);
            self.advance();
            return Ok((Expr::Literal(Value::Number(negative)), 1));
        }
        self.enter()?;
        let operand = self.unary("a value after '-'");
        self.nesting -= 1;
        let (operand, depth) = operand?;
        self.node(
            Expr::Unary { op: UnaryOp::Neg, operand: Box::new(operand) },
            depth + 1,
            &minus_token,
        )
    }

    fn primary(&mut self, context: &str) -> Result<Node, ParseError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Str(text) => {
                self.advance();
                Ok((Expr::Literal(Value::String(text.clone())), 1))
            }
            TokenKind::Number(number) => {
                self.advance();
                Ok((Expr::Literal(Value::Number(number.clone())), 1))
            }
            TokenKind::LBracket => Ok((Expr::Literal(Value::Array(self.constant_array()?)), 1)),
            TokenKind::LParen => {
                self.advance();
                let (inner, depth) = self.expression("a condition or value after '('")?;
                self.expect(&TokenKind::RParen, "')' to close the '('")?;
                self.node(inner, depth, &token)
            }
            TokenKind::Ident(name) => self.named(name.clone(), context),
            _ => Err(self.error_here(context)),
        }
    }

    /// A keyword constant, a function call or a property path.
    fn named(&mut self, name: String, context: &str) -> Result<Node, ParseError> {
        if let Some(value) = keyword_constant(&name) {
            self.advance();
            return Ok((value.map_or(Expr::Undefined, Expr::Literal), 1));
        }
        if *self.peek_kind_at(1) == TokenKind::LParen {
            return self.call(&name);
        }
        let path = self.path(context)?;
        Ok((Expr::Path(path), 1))
    }

    fn call(&mut self, name: &str) -> Result<Node, ParseError> {
        let name_token = self.peek().clone();
        let function = Function::from_name(name).ok_or_else(|| {
            self.error_here(
                "a function such as IS_DEFINED, IS_NULL, IS_STRING, STARTSWITH or ENDSWITH",
            )
        })?;
        self.advance();
        self.advance();
        let mut args = Vec::new();
        let mut depth = 0;
        if !self.eat(&TokenKind::RParen) {
            loop {
                let (arg, arg_depth) =
                    self.expression(&format!("an argument to {}", function.name()))?;
                args.push(arg);
                depth = depth.max(arg_depth);
                if self.eat(&TokenKind::RParen) {
                    break;
                }
                self.expect(&TokenKind::Comma, "',' or ')' in the argument list")?;
            }
        }
        if args.len() != function.arity() {
            let plural = if function.arity() == 1 { "" } else { "s" };
            let expected = format!("{} argument{plural} to {}", function.arity(), function.name());
            return Err(ParseError::at(
                self.source,
                name_token.start,
                name_token.end,
                expected,
                format!("{}", args.len()),
            ));
        }
        self.node(Expr::Call { function, args }, depth + 1, &name_token)
    }

    /// `[c1, c2, ...]` of constants (strings, numbers, booleans, null, nested arrays).
    fn constant_array(&mut self) -> Result<Vec<Value>, ParseError> {
        self.expect(&TokenKind::LBracket, "'['")?;
        self.enter()?;
        let items = self.constant_items();
        self.nesting -= 1;
        items
    }

    fn constant_items(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut items = Vec::new();
        if self.eat(&TokenKind::RBracket) {
            return Ok(items);
        }
        loop {
            if items.len() == MAX_LIST_LEN {
                return Err(self.error_here(format!("at most {MAX_LIST_LEN} items in a list")));
            }
            items.push(self.constant()?);
            if self.eat(&TokenKind::RBracket) {
                return Ok(items);
            }
            self.expect(&TokenKind::Comma, "',' or ']' in the list")?;
        }
    }

    fn constant(&mut self) -> Result<Value, ParseError> {
        const EXPECTED: &str = "a constant (string, number, true, false, null or list) in the list";
        let token = self.peek().clone();
        let value = match &token.kind {
            TokenKind::Str(text) => Value::String(text.clone()),
            TokenKind::Number(number) => Value::Number(number.clone()),
            TokenKind::Minus => match self.peek_kind_at(1) {
                TokenKind::Number(number) => {
                    let negative = negate(number);
                    self.advance();
                    Value::Number(negative)
                }
                _ => return Err(self.error_here(EXPECTED)),
            },
            TokenKind::LBracket => return self.constant_array().map(Value::Array),
            TokenKind::Ident(name) => match keyword_constant(name) {
                Some(Some(value)) => value,
                _ => return Err(self.error_here(EXPECTED)),
            },
            _ => return Err(self.error_here(EXPECTED)),
        };
        self.advance();
        Ok(value)
    }
}

/// True for words the grammar reserves.
pub(crate) fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|word| word.eq_ignore_ascii_case(name))
}

/// `true`/`false`/`null` as `Some(Some(value))`, `undefined` as `Some(None)`.
fn keyword_constant(name: &str) -> Option<Option<Value>> {
    match name.to_ascii_lowercase().as_str() {
        "true" => Some(Some(Value::Bool(true))),
        "false" => Some(Some(Value::Bool(false))),
        "null" => Some(Some(Value::Null)),
        "undefined" => Some(None),
        _ => None,
    }
}

/// The negation of a non-negative literal, as an integer when it fits.
fn negate(number: &Number) -> Number {
    if let Some(magnitude) = number.as_u64() {
        if let Ok(negative) = i64::try_from(-i128::from(magnitude)) {
            return Number::from(negative);
        }
    }
    let magnitude = number.as_f64().unwrap_or(0.0);
    // Negating a finite float is finite, so from_f64 cannot fail; fall back to the magnitude anyway.
    Number::from_f64(-magnitude).unwrap_or_else(|| number.clone())
}
