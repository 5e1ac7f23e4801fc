//! Lexer: query text to tokens.
//!
//! Produces identifiers (keywords are identifiers that the parser recognises case-insensitively),
//! string literals (single or double quoted, with `\'` `\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t` `\uXXXX`),
//! numbers (decimal with optional fraction and exponent, or `0x` hexadecimal) and punctuation.
//! It does not know the grammar; the main type is [`Token`].

use serde_json::Number;

use crate::error::ParseError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A name: a keyword, function, collection or property path segment.
    Ident(String),
    /// A string literal, escapes already decoded.
    Str(String),
    /// A non-negative number literal (the parser applies unary minus).
    Number(Number),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    Eq,
    /// `!=` or `<>`.
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

/// A token and its byte range in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Splits `source` into tokens, ending with one [`TokenKind::Eof`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { source, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

/// True for characters that may start an identifier.
pub(crate) fn is_ident_start(ch: char) -> bool {
    ch.is_alphabetic() || ch == '_' || ch == '$'
}

/// True for characters that may continue an identifier.
pub(crate) fn is_ident_continue(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_' || ch == '$'
}

struct Lexer<'a> {
    source: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.source[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn error(&self, start: usize, expected: &str) -> ParseError {
        let found = match self.source[start..].chars().next() {
            Some(ch) if ch.is_control() => format!("{ch:?}"),
            Some(ch) => format!("'{ch}'"),
            None => "end of query".to_owned(),
        };
        let end = self.source[start..].chars().next().map_or(start, |ch| start + ch.len_utf8());
        ParseError::at(self.source, start, end, expected, found)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.pos;
        let Some(ch) = self.peek() else {
            return Ok(Token { kind: TokenKind::Eof, start, end: start });
        };
        let kind = if is_ident_start(ch) {
            self.identifier()
        } else if ch.is_ascii_digit() {
            self.number()?
        } else if ch == '\'' || ch == '"' {
            self.string()?
        } else {
            self.punctuation()?
        };
        Ok(Token { kind, start, end: self.pos })
    }

    fn identifier(&mut self) -> TokenKind {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_continue) {
            self.bump();
        }
        TokenKind::Ident(self.source[start..self.pos].to_owned())
    }

    fn punctuation(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.pos;
        let ch = self.bump().ok_or_else(|| self.error(start, "a token"))?;
        let next = self.peek();
        let (kind, two_chars) = match (ch, next) {
            ('(', _) => (TokenKind::LParen, false),
            (')', _) => (TokenKind::RParen, false),
            ('[', _) => (TokenKind::LBracket, false),
            (']', _) => (TokenKind::RBracket, false),
            (',', _) => (TokenKind::Comma, false),
            ('.', _) => (TokenKind::Dot, false),
            ('*', _) => (TokenKind::Star, false),
            ('+', _) => (TokenKind::Plus, false),
            ('-', _) => (TokenKind::Minus, false),
            ('/', _) => (TokenKind::Slash, false),
            ('%', _) => (TokenKind::Percent, false),
            ('=', _) => (TokenKind::Eq, false),
            ('!', Some('=')) | ('<', Some('>')) => (TokenKind::Ne, true),
            ('<', Some('=')) => (TokenKind::Le, true),
            ('>', Some('=')) => (TokenKind::Ge, true),
            ('<', _) => (TokenKind::Lt, false),
            ('>', _) => (TokenKind::Gt, false),
            _ => return Err(self.error(start, "a name, literal, operator or punctuation")),
        };
        if two_chars {
            self.bump();
        }
        Ok(kind)
    }

    fn number(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.pos;
        if self.peek() == Some('0') && matches!(self.peek_second(), Some('x' | 'X')) {
            return self.hex_number(start);
        }
        self.eat_digits();
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_second().is_some_and(|ch| ch.is_ascii_digit()) {
            is_float = true;
            self.bump();
            self.eat_digits();
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            is_float = true;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|ch| ch.is_ascii_digit()) {
                return Err(self.error(self.pos, "digits in the number's exponent"));
            }
            self.eat_digits();
        }
        if self.peek().is_some_and(is_ident_start) {
            return Err(self.error(self.pos, "a separator after the number"));
        }
        let text = &self.source[start..self.pos];
        if !is_float {
            if let Ok(integer) = text.parse::<u64>() {
                return Ok(TokenKind::Number(Number::from(integer)));
            }
        }
        text.parse::<f64>().ok().and_then(Number::from_f64).map(TokenKind::Number).ok_or_else(
            || ParseError::at(self.source, start, self.pos, "a finite number", format!("'{text}'")),
        )
    }

    fn hex_number(&mut self, start: usize) -> Result<TokenKind, ParseError> {
        self.bump();
        self.bump();
        let digits_start = self.pos;
        while self.peek().is_some_and(|ch| ch.is_ascii_hexdigit()) {
            self.bump();
        }
        let digits = &self.source[digits_start..self.pos];
        if digits.is_empty() {
            return Err(self.error(self.pos, "hexadecimal digits after '0x'"));
        }
        if self.peek().is_some_and(is_ident_continue) {
            return Err(self.error(self.pos, "a separator after the number"));
        }
        u64::from_str_radix(digits, 16).map(|value| TokenKind::Number(Number::from(value))).map_err(
            |_| {
                let text = &self.source[start..self.pos];
                ParseError::at(
                    self.source,
                    start,
                    self.pos,
                    "a hexadecimal number that fits in 64 bits",
                    format!("'{text}'"),
                )
            },
        )
    }

    fn eat_digits(&mut self) {
        while self.peek().is_some_and(|ch| ch.is_ascii_digit()) {
            self.bump();
        }
    }

    fn string(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.pos;
        let quote = self.bump().ok_or_else(|| self.error(start, "a string"))?;
        let mut value = String::new();
        loop {
            let ch_start = self.pos;
            match self.bump() {
                None => {
                    let opening = crate::error::Span::from_range(self.source, start, start);
                    let expected =
                        format!("a closing {quote} for the string that starts at {opening}");
                    return Err(ParseError::at(
                        self.source,
                        self.pos,
                        self.pos,
                        expected,
                        "end of query",
                    ));
                }
                Some(ch) if ch == quote => return Ok(TokenKind::Str(value)),
                Some('\\') => value.push(self.escape(ch_start)?),
                Some(ch) => value.push(ch),
            }
        }
    }

    fn escape(&mut self, escape_start: usize) -> Result<char, ParseError> {
        let decoded = match self.bump() {
            Some('\'') => '\'',
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.unicode_escape(escape_start),
            _ => {
                return Err(self.error(
                    escape_start,
                    "a valid escape (\\' \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                ))
            }
        };
        Ok(decoded)
    }

    fn unicode_escape(&mut self, escape_start: usize) -> Result<char, ParseError> {
        let high = self.hex4(escape_start)?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !(self.bump() == Some('\\') && self.bump() == Some('u')) {
                return Err(
                    self.error(escape_start, "a low surrogate \\uXXXX after a high surrogate")
                );
            }
            let low = self.hex4(escape_start)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(
                    self.error(escape_start, "a low surrogate \\uXXXX after a high surrogate")
                );
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code)
            .ok_or_else(|| self.error(escape_start, "a \\uXXXX escape naming a valid character"))
    }

    fn hex4(&mut self, escape_start: usize) -> Result<u32, ParseError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self.bump().and_then(|ch| ch.to_digit(16));
            let digit = digit
                .ok_or_else(|| self.error(escape_start, "four hexadecimal digits after \\u"))?;
            code = code * 16 + digit;
        }
        Ok(code)
    }
}
