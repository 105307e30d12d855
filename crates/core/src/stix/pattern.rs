//! STIX 2.1 patterning: a parser for the whole language and the narrow mapping from a
//! pattern to the indicators tibridge can enforce.
//!
//! The parser is a hand-written recursive descent over the grammar of the STIX 2.1
//! specification (§9). It accepts every construct (observation operators, qualifiers, all
//! comparison operators, every literal form), so a pattern tibridge cannot enforce is told
//! apart from a pattern that is broken. It must never panic and never recurse without a
//! bound: nesting deeper than [`MAX_DEPTH`] is an error, not a stack overflow.
//!
//! The mapping ([`Pattern::indicators`]) must never guess: a pattern becomes indicators only
//! when blocking those indicators is what the pattern says (see its documentation for the
//! exact rule); anything else is an [`UnsupportedPattern`] saying why.

use crate::indicator::{Indicator, IndicatorKind};
use crate::normalize::{ip_by_shape, normalize};
use std::fmt;

/// Deepest nesting of brackets and parentheses accepted. Real patterns nest two or three
/// levels; the bound keeps hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// Longest pattern accepted, in bytes. A pattern of this size is already far past anything
/// a producer writes; the bound keeps a single object from costing unbounded work.
pub const MAX_PATTERN_LEN: usize = 1 << 20;

/// A parse failure: where it happened (byte offset into the pattern) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("STIX pattern error at offset {position}: {message}")]
pub struct PatternError {
    pub position: usize,
    pub message: String,
}

impl PatternError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        PatternError { position, message: message.into() }
    }
}

/// A whole pattern: one observation expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub expression: ObservationExpr,
}

/// Operators joining observation expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservationOp {
    And,
    Or,
    FollowedBy,
}

impl ObservationOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationOp::And => "AND",
            ObservationOp::Or => "OR",
            ObservationOp::FollowedBy => "FOLLOWEDBY",
        }
    }
}

/// An observation expression: `[...]`, a combination of them, or a qualified one.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservationExpr {
    /// One `[comparison expression]`.
    Observation(ComparisonExpr),
    /// Two or more operands joined by one operator (left-associative chains are flattened).
    Combined { op: ObservationOp, operands: Vec<ObservationExpr> },
    /// `expr WITHIN ..`, `expr REPEATS ..`, `expr START .. STOP ..`.
    Qualified { expr: Box<ObservationExpr>, qualifier: Qualifier },
    /// A parenthesised group, kept so a written pattern keeps its grouping.
    Group(Box<ObservationExpr>),
}

/// A qualifier on an observation expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Qualifier {
    /// `WITHIN n SECONDS` (n may be a float).
    Within(f64),
    /// `REPEATS n TIMES`.
    Repeats(u64),
    /// `START t'..' STOP t'..'`, the timestamps as written.
    StartStop { start: String, stop: String },
}

/// Boolean operators inside one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComparisonJoin {
    And,
    Or,
}

/// A comparison expression inside `[...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ComparisonExpr {
    Comparison(Comparison),
    Combined { op: ComparisonJoin, operands: Vec<ComparisonExpr> },
    Group(Box<ComparisonExpr>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
    Matches,
    IsSubset,
    IsSuperset,
    Exists,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Neq => "!=",
            Operator::Lt => "<",
            Operator::Gt => ">",
            Operator::Le => "<=",
            Operator::Ge => ">=",
            Operator::In => "IN",
            Operator::Like => "LIKE",
            Operator::Matches => "MATCHES",
            Operator::IsSubset => "ISSUBSET",
            Operator::IsSuperset => "ISSUPERSET",
            Operator::Exists => "EXISTS",
        }
    }
}

/// `object-type:path op value`. `value` is `None` only for `EXISTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub path: ObjectPath,
    pub negated: bool,
    pub op: Operator,
    pub value: Option<Value>,
}

/// The right-hand side of a comparison: one literal or a set (`IN (..)`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Literal(Literal),
    Set(Vec<Literal>),
}

/// A literal as the pattern wrote it (strings unescaped).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `t'..'`, kept as written (already checked to be an RFC 3339 UTC timestamp).
    Timestamp(String),
    /// `b'..'`, base64 as written.
    Binary(String),
    /// `h'..'`, hex as written.
    Hex(String),
}

/// `file:hashes.'SHA-256'` = object type `file` plus components `hashes`, `SHA-256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub object_type: String,
    pub components: Vec<PathComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathComponent {
    /// A property name, quoted or not (`hashes`, `'SHA-256'`).
    Property(String),
    /// `[3]`, `[-1]`.
    Index(i64),
    /// `[*]`.
    AnyIndex,
}

impl ObjectPath {
    /// The property names after the object type, joined with dots, indexes dropped
    /// (`dst_ref.value`); used to recognise the shapes tibridge maps.
    fn property_path(&self) -> String {
        let mut out = String::new();
        for component in &self.components {
            if let PathComponent::Property(name) = component {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
        }
        out
    }

    fn has_index(&self) -> bool {
        self.components.iter().any(|c| !matches!(c, PathComponent::Property(_)))
    }
}

// ---------------------------------------------------------------------------------------
// Display: writes a pattern back in canonical STIX syntax (strings escaped, keys quoted
// when they are not plain identifiers), so `parse(p.to_string()) == p`.

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expression)
    }
}

impl fmt::Display for ObservationExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObservationExpr::Observation(c) => write!(f, "[{c}]"),
            ObservationExpr::Combined { op, operands } => {
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {} ", op.as_str())?;
                    }
                    write!(f, "{operand}")?;
                }
                Ok(())
            }
            ObservationExpr::Qualified { expr, qualifier } => write!(f, "{expr} {qualifier}"),
            ObservationExpr::Group(inner) => write!(f, "({inner})"),
        }
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Within(seconds) => {
                if seconds.fract() == 0.0 && seconds.abs() < 1e15 {
                    write!(f, "WITHIN {} SECONDS", *seconds as i64)
                } else {
                    write!(f, "WITHIN {} SECONDS", float_text(*seconds))
                }
            }
            Qualifier::Repeats(n) => write!(f, "REPEATS {n} TIMES"),
            Qualifier::StartStop { start, stop } => write!(f, "START t'{start}' STOP t'{stop}'"),
        }
    }
}

impl fmt::Display for ComparisonExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComparisonExpr::Comparison(c) => write!(f, "{c}"),
            ComparisonExpr::Combined { op, operands } => {
                let word = match op {
                    ComparisonJoin::And => "AND",
                    ComparisonJoin::Or => "OR",
                };
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {word} ")?;
                    }
                    write!(f, "{operand}")?;
                }
                Ok(())
            }
            ComparisonExpr::Group(inner) => write!(f, "({inner})"),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::Exists {
            return write!(f, "EXISTS {}", self.path);
        }
        write!(f, "{} ", self.path)?;
        if self.negated {
            f.write_str("NOT ")?;
        }
        f.write_str(self.op.as_str())?;
        if let Some(value) = &self.value {
            write!(f, " {value}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Literal(l) => write!(f, "{l}"),
            Value::Set(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "'{}'", escape_string(s)),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => f.write_str(&float_text(*x)),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Timestamp(t) => write!(f, "t'{t}'"),
            Literal::Binary(b) => write!(f, "b'{b}'"),
            Literal::Hex(h) => write!(f, "h'{h}'"),
        }
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.object_type)?;
        for (i, component) in self.components.iter().enumerate() {
            match component {
                PathComponent::Property(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_plain_identifier(name) {
                        f.write_str(name)?;
                    } else {
                        write!(f, "'{}'", escape_string(name))?;
                    }
                }
                PathComponent::Index(n) => write!(f, "[{n}]")?,
                PathComponent::AnyIndex => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

/// A float as the grammar wants it: digits on both sides of the point, no exponent, and
/// the shortest text that reads back to the same value (Rust's `Display` for `f64`).
fn float_text(x: f64) -> String {
    let text = format!("{x}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Escapes a string for a STIX string literal: `\` and `'` get a backslash.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !is_keyword(s)
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "AND"
            | "OR"
            | "NOT"
            | "FOLLOWEDBY"
            | "LIKE"
            | "MATCHES"
            | "ISSUBSET"
            | "ISSUPERSET"
            | "IN"
            | "EXISTS"
            | "WITHIN"
            | "SECONDS"
            | "REPEATS"
            | "TIMES"
            | "START"
            | "STOP"
            | "true"
            | "false"
    )
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBracket,
    RBracket,
    LParen,
    RParen,
    Colon,
    Dot,
    Comma,
    Star,
    Eq,
    Neq,
    Lt,
    Le,
    Gt,
    Ge,
    /// An identifier or keyword; keywords are recognised by the parser by position.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Timestamp(String),
    Binary(String),
    Hex(String),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Colon => "':'".into(),
            Tok::Dot => "'.'".into(),
            Tok::Comma => "','".into(),
            Tok::Star => "'*'".into(),
            Tok::Eq => "'='".into(),
            Tok::Neq => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(_) => "an integer".into(),
            Tok::Float(_) => "a float".into(),
            Tok::Timestamp(_) => "a timestamp".into(),
            Tok::Binary(_) => "a binary literal".into(),
            Tok::Hex(_) => "a hex literal".into(),
            Tok::End => "the end of the pattern".into(),
        }
    }
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, PatternError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'[' => tokens.push((start, Tok::LBracket)),
            b']' => tokens.push((start, Tok::RBracket)),
            b'(' => tokens.push((start, Tok::LParen)),
            b')' => tokens.push((start, Tok::RParen)),
            b':' => tokens.push((start, Tok::Colon)),
            b',' => tokens.push((start, Tok::Comma)),
            b'*' => tokens.push((start, Tok::Star)),
            b'=' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 1;
                }
                tokens.push((start, Tok::Eq));
            }
            b'!' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 1;
                    tokens.push((start, Tok::Neq));
                } else {
                    return Err(PatternError::new(start, "expected '!=' after '!'"));
                }
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'=') => {
                    i += 1;
                    tokens.push((start, Tok::Le));
                }
                Some(b'>') => {
                    i += 1;
                    tokens.push((start, Tok::Neq));
                }
                _ => tokens.push((start, Tok::Lt)),
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 1;
                    tokens.push((start, Tok::Ge));
                } else {
                    tokens.push((start, Tok::Gt));
                }
            }
            b'\'' => {
                let (text, end) = lex_string(input, i + 1, start)?;
                tokens.push((start, Tok::Str(text)));
                i = end;
                continue;
            }
            b't' | b'b' | b'h' if bytes.get(i + 1) == Some(&b'\'') => {
                let (text, end) = lex_string(input, i + 2, start)?;
                let tok = match b {
                    b't' => {
                        if !is_stix_timestamp(&text) {
                            return Err(PatternError::new(
                                start,
                                format!("timestamp literal {text:?} is not YYYY-MM-DDTHH:MM:SS[.s]Z"),
                            ));
                        }
                        Tok::Timestamp(text)
                    }
                    b'b' => {
                        if !text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=') {
                            return Err(PatternError::new(start, "binary literal is not base64"));
                        }
                        Tok::Binary(text)
                    }
                    _ => {
                        if text.len() % 2 != 0 || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
                            return Err(PatternError::new(start, "hex literal must be an even number of hex digits"));
                        }
                        Tok::Hex(text)
                    }
                };
                tokens.push((start, tok));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let end = lex_number_end(bytes, i);
                let text = input.get(start..end).unwrap_or_default();
                let tok =
                    parse_number(text).ok_or_else(|| PatternError::new(start, format!("{text:?} is not a number")))?;
                tokens.push((start, tok));
                i = end;
                continue;
            }
            b'.' => {
                // A float may start with '.', but only where a literal is expected; a path
                // separator is always directly after an identifier, a quote or ']'.
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                    && !matches!(tokens.last(), Some((_, Tok::Ident(_) | Tok::Str(_) | Tok::RBracket)))
                {
                    let end = lex_number_end(bytes, i);
                    let text = input.get(start..end).unwrap_or_default();
                    let tok = parse_number(text)
                        .ok_or_else(|| PatternError::new(start, format!("{text:?} is not a number")))?;
                    tokens.push((start, tok));
                    i = end;
                    continue;
                }
                tokens.push((start, Tok::Dot));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = i + 1;
                while bytes.get(end).is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                    end += 1;
                }
                let text = input.get(start..end).unwrap_or_default().to_string();
                tokens.push((start, Tok::Ident(text)));
                i = end;
                continue;
            }
            _ => {
                let shown = input.get(start..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(PatternError::new(start, format!("unexpected character {shown:?}")));
            }
        }
        i += 1;
    }
    tokens.push((input.len(), Tok::End));
    Ok(tokens)
}

/// Reads a quoted string body starting at `from` (just after the opening quote); returns the
/// unescaped text and the offset after the closing quote. Only `\'` and `\\` are escapes.
fn lex_string(input: &str, from: usize, start: usize) -> Result<(String, usize), PatternError> {
    let rest = input.get(from..).ok_or_else(|| PatternError::new(start, "unterminated string"))?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\'' => return Ok((out, from + offset + 1)),
            '\\' => match chars.next() {
                Some((_, '\'')) => out.push('\''),
                Some((_, '\\')) => out.push('\\'),
                Some((at, other)) => {
                    return Err(PatternError::new(
                        from + at - 1,
                        format!("invalid escape \\{other} in string (only \\' and \\\\ are allowed)"),
                    ))
                }
                None => break,
            },
            _ => out.push(c),
        }
    }
    Err(PatternError::new(start, "unterminated string: expected a closing '"))
}

fn lex_number_end(bytes: &[u8], from: usize) -> usize {
    let mut end = from;
    if matches!(bytes.get(end), Some(b'-' | b'+')) {
        end += 1;
    }
    while bytes.get(end).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
        end += 1;
    }
    end
}

fn parse_number(text: &str) -> Option<Tok> {
    let digits = text.trim_start_matches(['-', '+']);
    if digits.is_empty() || digits.starts_with(['-', '+']) {
        return None;
    }
    if text.contains('.') {
        let (whole, fraction) = digits.split_once('.')?;
        if fraction.is_empty() || fraction.contains('.') || !whole.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let value: f64 = text.parse().ok()?;
        value.is_finite().then_some(Tok::Float(value))
    } else {
        text.parse::<i64>().ok().map(Tok::Int)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.s+]Z`, with plausible field ranges.
fn is_stix_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let num = |range: std::ops::Range<usize>| -> u32 { text.get(range).and_then(|s| s.parse().ok()).unwrap_or(99) };
    if b.len() < 20
        || !digits(0..4)
        || b.get(4) != Some(&b'-')
        || !digits(5..7)
        || b.get(7) != Some(&b'-')
        || !digits(8..10)
    {
        return false;
    }
    if !matches!(b.get(10), Some(b'T' | b't'))
        || !digits(11..13)
        || b.get(13) != Some(&b':')
        || !digits(14..16)
        || b.get(16) != Some(&b':')
        || !digits(17..19)
    {
        return false;
    }
    let month = num(5..7);
    let day = num(8..10);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let tail = text.get(19..).unwrap_or("");
    let tail = match tail.strip_prefix('.') {
        Some(fraction) => {
            let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            fraction.get(n..).unwrap_or("")
        }
        None => tail,
    };
    matches!(tail, "Z" | "z")
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
}

/// Parses a STIX 2.1 pattern. Errors name the byte offset and what was expected.
pub fn parse(input: &str) -> Result<Pattern, PatternError> {
    if input.len() > MAX_PATTERN_LEN {
        return Err(PatternError::new(
            0,
            format!("pattern is {} bytes long, more than the {MAX_PATTERN_LEN} accepted", input.len()),
        ));
    }
    let tokens = lex(input)?;
    let mut parser = Parser { tokens, pos: 0, depth: 0 };
    let expression = parser.observation_expressions()?;
    match parser.peek() {
        Tok::End => Ok(Pattern { expression }),
        other => Err(parser.error(format!(
            "expected AND, OR, FOLLOWEDBY, a qualifier or the end of the pattern, found {}",
            other.describe()
        ))),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).map(|(_, t)| t).unwrap_or(&Tok::End)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).or_else(|| self.tokens.last()).map(|(o, _)| *o).unwrap_or(0)
    }

    fn advance(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn error(&self, message: impl Into<String>) -> PatternError {
        PatternError::new(self.offset(), message)
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == word)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), PatternError> {
        if *self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.peek().describe())))
        }
    }

    fn enter(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("pattern nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // FOLLOWEDBY binds loosest, then OR, then AND (STIX 2.1 §9.4, grammar order).
    fn observation_expressions(&mut self) -> Result<ObservationExpr, PatternError> {
        self.observation_chain(ObservationOp::FollowedBy)
    }

    fn observation_chain(&mut self, op: ObservationOp) -> Result<ObservationExpr, PatternError> {
        let next = |p: &mut Parser| match op {
            ObservationOp::FollowedBy => p.observation_chain(ObservationOp::Or),
            ObservationOp::Or => p.observation_chain(ObservationOp::And),
            ObservationOp::And => p.qualified_observation(),
        };
        let first = next(self)?;
        let mut operands = vec![first];
        while self.is_keyword(op.as_str()) {
            self.advance();
            operands.push(next(self)?);
        }
        Ok(if operands.len() == 1 {
            operands.pop().unwrap_or_else(unreachable_empty)
        } else {
            ObservationExpr::Combined { op, operands }
        })
    }

    fn qualified_observation(&mut self) -> Result<ObservationExpr, PatternError> {
        let mut expr = self.observation_primary()?;
        loop {
            let qualifier = if self.is_keyword("WITHIN") {
                self.advance();
                let seconds = match self.advance() {
                    Tok::Int(n) if n > 0 => n as f64,
                    Tok::Float(x) if x > 0.0 => x,
                    other => {
                        return Err(self.error_at_previous(format!(
                            "expected a positive number of seconds after WITHIN, found {}",
                            other.describe()
                        )))
                    }
                };
                if !self.is_keyword("SECONDS") {
                    return Err(self.error(format!("expected SECONDS, found {}", self.peek().describe())));
                }
                self.advance();
                Qualifier::Within(seconds)
            } else if self.is_keyword("REPEATS") {
                self.advance();
                let times = match self.advance() {
                    Tok::Int(n) if n > 0 => n as u64,
                    other => {
                        return Err(self.error_at_previous(format!(
                            "expected a positive integer after REPEATS, found {}",
                            other.describe()
                        )))
                    }
                };
                if !self.is_keyword("TIMES") {
                    return Err(self.error(format!("expected TIMES, found {}", self.peek().describe())));
                }
                self.advance();
                Qualifier::Repeats(times)
            } else if self.is_keyword("START") {
                self.advance();
                let start = match self.advance() {
                    Tok::Timestamp(t) => t,
                    other => {
                        return Err(self.error_at_previous(format!(
                            "expected a timestamp t'..' after START, found {}",
                            other.describe()
                        )))
                    }
                };
                if !self.is_keyword("STOP") {
                    return Err(self.error(format!("expected STOP, found {}", self.peek().describe())));
                }
                self.advance();
                let stop = match self.advance() {
                    Tok::Timestamp(t) => t,
                    other => {
                        return Err(self.error_at_previous(format!(
                            "expected a timestamp t'..' after STOP, found {}",
                            other.describe()
                        )))
                    }
                };
                Qualifier::StartStop { start, stop }
            } else {
                return Ok(expr);
            };
            expr = ObservationExpr::Qualified { expr: Box::new(expr), qualifier };
        }
    }

    fn error_at_previous(&self, message: String) -> PatternError {
        let offset = self.tokens.get(self.pos.saturating_sub(1)).map(|(o, _)| *o).unwrap_or(0);
        PatternError::new(offset, message)
    }

    fn observation_primary(&mut self) -> Result<ObservationExpr, PatternError> {
        match self.peek() {
            Tok::LBracket => {
                self.advance();
                self.enter()?;
                let inner = self.comparison_chain(ComparisonJoin::Or)?;
                self.leave();
                self.expect(Tok::RBracket, "']' or AND/OR to close the observation")?;
                Ok(ObservationExpr::Observation(inner))
            }
            Tok::LParen => {
                self.advance();
                self.enter()?;
                let inner = self.observation_expressions()?;
                self.leave();
                self.expect(Tok::RParen, "')' to close the group")?;
                Ok(ObservationExpr::Group(Box::new(inner)))
            }
            other => {
                Err(self.error(format!("expected '[' or '(' to start an observation, found {}", other.describe())))
            }
        }
    }

    // Inside brackets OR binds looser than AND.
    fn comparison_chain(&mut self, join: ComparisonJoin) -> Result<ComparisonExpr, PatternError> {
        let word = match join {
            ComparisonJoin::Or => "OR",
            ComparisonJoin::And => "AND",
        };
        let mut operands = vec![self.comparison_operand(join)?];
        while self.is_keyword(word) {
            self.advance();
            operands.push(self.comparison_operand(join)?);
        }
        Ok(if operands.len() == 1 {
            operands.pop().unwrap_or_else(unreachable_cmp)
        } else {
            ComparisonExpr::Combined { op: join, operands }
        })
    }

    fn comparison_operand(&mut self, join: ComparisonJoin) -> Result<ComparisonExpr, PatternError> {
        match join {
            ComparisonJoin::Or => self.comparison_chain(ComparisonJoin::And),
            ComparisonJoin::And => self.prop_test(),
        }
    }

    fn prop_test(&mut self) -> Result<ComparisonExpr, PatternError> {
        if *self.peek() == Tok::LParen {
            self.advance();
            self.enter()?;
            let inner = self.comparison_chain(ComparisonJoin::Or)?;
            self.leave();
            self.expect(Tok::RParen, "')' to close the group")?;
            return Ok(ComparisonExpr::Group(Box::new(inner)));
        }
        if self.is_keyword("EXISTS") {
            self.advance();
            let path = self.object_path()?;
            return Ok(ComparisonExpr::Comparison(Comparison {
                path,
                negated: false,
                op: Operator::Exists,
                value: None,
            }));
        }
        let path = self.object_path()?;
        let negated = if self.is_keyword("NOT") {
            self.advance();
            true
        } else {
            false
        };
        let op_offset = self.offset();
        let op = match self.advance() {
            Tok::Eq => Operator::Eq,
            Tok::Neq => Operator::Neq,
            Tok::Lt => Operator::Lt,
            Tok::Le => Operator::Le,
            Tok::Gt => Operator::Gt,
            Tok::Ge => Operator::Ge,
            Tok::Ident(word) => match word.as_str() {
                "IN" => Operator::In,
                "LIKE" => Operator::Like,
                "MATCHES" => Operator::Matches,
                "ISSUBSET" => Operator::IsSubset,
                "ISSUPERSET" => Operator::IsSuperset,
                _ => {
                    return Err(PatternError::new(op_offset, format!("expected a comparison operator, found {word:?}")))
                }
            },
            other => {
                return Err(PatternError::new(
                    op_offset,
                    format!(
                        "expected a comparison operator (= != < > <= >= IN LIKE MATCHES ISSUBSET ISSUPERSET), found {}",
                        other.describe()
                    ),
                ))
            }
        };
        let value_offset = self.offset();
        let value = match op {
            Operator::In => Value::Set(self.set_literal()?),
            _ => {
                let literal = self.literal()?;
                let fits = match op {
                    Operator::Eq | Operator::Neq => true,
                    Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => !matches!(literal, Literal::Bool(_)),
                    _ => matches!(literal, Literal::String(_)),
                };
                if !fits {
                    return Err(PatternError::new(
                        value_offset,
                        format!("operator {} does not take {}", op.as_str(), literal_kind(&literal)),
                    ));
                }
                Value::Literal(literal)
            }
        };
        Ok(ComparisonExpr::Comparison(Comparison { path, negated, op, value: Some(value) }))
    }

    fn set_literal(&mut self) -> Result<Vec<Literal>, PatternError> {
        self.expect(Tok::LParen, "'(' to start the IN set")?;
        let mut items = Vec::new();
        if *self.peek() == Tok::RParen {
            self.advance();
            return Ok(items);
        }
        loop {
            items.push(self.literal()?);
            match self.advance() {
                Tok::Comma => continue,
                Tok::RParen => return Ok(items),
                other => {
                    return Err(self
                        .error_at_previous(format!("expected ',' or ')' in the IN set, found {}", other.describe())))
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, PatternError> {
        let literal = match self.peek() {
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Int(n) => Literal::Int(*n),
            Tok::Float(x) => Literal::Float(*x),
            Tok::Timestamp(t) => Literal::Timestamp(t.clone()),
            Tok::Binary(b) => Literal::Binary(b.clone()),
            Tok::Hex(h) => Literal::Hex(h.clone()),
            Tok::Ident(word) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Ident(word) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            other => return Err(self.error(format!("expected a literal value, found {}", other.describe()))),
        };
        self.advance();
        Ok(literal)
    }

    fn object_path(&mut self) -> Result<ObjectPath, PatternError> {
        let object_type = match self.advance() {
            Tok::Ident(name) if !is_keyword(&name) => name,
            other => {
                return Err(self.error_at_previous(format!(
                    "expected an object type such as file or domain-name, found {}",
                    other.describe()
                )))
            }
        };
        if object_type.ends_with('-') || object_type.contains("--") {
            return Err(self.error_at_previous(format!("{object_type:?} is not a valid object type")));
        }
        self.expect(Tok::Colon, "':' after the object type")?;
        let mut components = vec![PathComponent::Property(self.property_name("a property name after ':'")?)];
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.advance();
                    components.push(PathComponent::Property(self.property_name("a property name after '.'")?));
                }
                Tok::LBracket => {
                    self.advance();
                    let component = match self.advance() {
                        Tok::Star => PathComponent::AnyIndex,
                        Tok::Int(n) => PathComponent::Index(n),
                        other => {
                            return Err(self.error_at_previous(format!(
                                "expected an index or '*' in a list path, found {}",
                                other.describe()
                            )))
                        }
                    };
                    self.expect(Tok::RBracket, "']' to close the list index")?;
                    components.push(component);
                }
                _ => return Ok(ObjectPath { object_type, components }),
            }
        }
    }

    fn property_name(&mut self, what: &str) -> Result<String, PatternError> {
        match self.advance() {
            Tok::Str(s) => Ok(s),
            Tok::Ident(name) if !name.contains('-') => Ok(name),
            Tok::Ident(name) => {
                Err(self
                    .error_at_previous(format!("property name {name:?} contains '-' and must be quoted ('{name}')")))
            }
            other => Err(self.error_at_previous(format!("expected {what}, found {}", other.describe()))),
        }
    }
}

// A chain always holds at least its first operand; these only satisfy the types without
// a panic path.
fn unreachable_empty() -> ObservationExpr {
    ObservationExpr::Combined { op: ObservationOp::Or, operands: Vec::new() }
}

fn unreachable_cmp() -> ComparisonExpr {
    ComparisonExpr::Combined { op: ComparisonJoin::Or, operands: Vec::new() }
}

fn literal_kind(literal: &Literal) -> &'static str {
    match literal {
        Literal::String(_) => "a string",
        Literal::Int(_) => "an integer",
        Literal::Float(_) => "a float",
        Literal::Bool(_) => "a boolean",
        Literal::Timestamp(_) => "a timestamp",
        Literal::Binary(_) => "a binary literal",
        Literal::Hex(_) => "a hex literal",
    }
}

// ---------------------------------------------------------------------------------------
// Mapping to indicators

/// Why a pattern (valid STIX) cannot be represented as a list of indicators to block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedPattern {
    #[error("observation operator {0} cannot be represented as a list of indicators")]
    ObservationOperator(&'static str),
    #[error("qualifier {0} cannot be represented as a list of indicators")]
    Qualifier(String),
    #[error("operator {op} on {path} cannot be represented as a list of indicators (only = is)")]
    Operator { op: String, path: String },
    #[error("NOT on {0} cannot be represented as a list of indicators")]
    Negated(String),
    #[error("{0} is not a property tibridge maps to an indicator")]
    Path(String),
    #[error("{0} only describes a file or connection further; alone it names no indicator")]
    Companion(String),
    #[error("hash algorithm {algorithm} of {path} is not one tibridge enforces (MD5, SHA-1, SHA-256)")]
    HashAlgorithm { path: String, algorithm: String },
    #[error("{path} is compared with a non-string value")]
    NonString { path: String },
    #[error("AND joins comparisons that do not describe one indicator ({0})")]
    Conjunction(String),
    #[error("value {value:?} of {path} is not a valid {kind}: {reason}")]
    InvalidValue { path: String, value: String, kind: IndicatorKind, reason: String },
    #[error("pattern yields no indicator")]
    Empty,
}

impl Pattern {
    /// The indicators this pattern is equivalent to blocking, or why there are none.
    ///
    /// The rule: the pattern must be a disjunction (OR between brackets or inside one) whose
    /// every branch names one indicator:
    /// - `x = 'v'` on `file:hashes.<MD5|SHA-1|SHA-256>` (any case, with or without `-`),
    ///   `domain-name:value`, `url:value`, `ipv4-addr:value` (address or CIDR),
    ///   `ipv6-addr:value`, `email-addr:value`, `email-message:from_ref.value`,
    ///   `network-traffic:dst_ref.value` / `src_ref.value` (IP, CIDR, or a domain when the
    ///   companion `*_ref.type = 'domain-name'` says so);
    /// - `x IN ('a', 'b')` on those paths, which is the same as an OR of equalities;
    /// - `ipv4-addr:value ISSUBSET '10.0.0.0/8'` (and v6), which is the CIDR itself;
    /// - an AND inside one bracket that describes one object: for `file`, one or more hash
    ///   equalities plus `file:name`, `file:size` or `file:mime_type` equalities (as
    ///   misp-stix writes `filename|sha1`): every supported hash is taken, because a hash
    ///   names the content whatever the file is called; for `network-traffic`, the `*_ref.type`
    ///   companion and `dst_port`/`src_port` (as misp-stix writes `ip-dst|port`): the address
    ///   is taken, as MISP's own `ip-dst|port` is.
    ///
    /// Everything else (FOLLOWEDBY, AND between brackets, qualifiers, NOT, `!=`, LIKE,
    /// MATCHES, AND across different objects, unknown paths) is refused with the reason.
    pub fn indicators(&self) -> Result<Vec<Indicator>, UnsupportedPattern> {
        let mut out = Vec::new();
        collect_observation(&self.expression, &mut out)?;
        if out.is_empty() {
            return Err(UnsupportedPattern::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|indicator| seen.insert(indicator.clone()));
        Ok(out)
    }
}

fn collect_observation(expr: &ObservationExpr, out: &mut Vec<Indicator>) -> Result<(), UnsupportedPattern> {
    match expr {
        ObservationExpr::Observation(comparison) => collect_disjunction(comparison, out),
        ObservationExpr::Group(inner) => collect_observation(inner, out),
        ObservationExpr::Combined { op: ObservationOp::Or, operands } => {
            operands.iter().try_for_each(|o| collect_observation(o, out))
        }
        ObservationExpr::Combined { op, .. } => Err(UnsupportedPattern::ObservationOperator(op.as_str())),
        ObservationExpr::Qualified { qualifier, .. } => Err(UnsupportedPattern::Qualifier(qualifier.to_string())),
    }
}

fn collect_disjunction(expr: &ComparisonExpr, out: &mut Vec<Indicator>) -> Result<(), UnsupportedPattern> {
    match expr {
        ComparisonExpr::Group(inner) => collect_disjunction(inner, out),
        ComparisonExpr::Combined { op: ComparisonJoin::Or, operands } => {
            operands.iter().try_for_each(|o| collect_disjunction(o, out))
        }
        ComparisonExpr::Combined { op: ComparisonJoin::And, operands } => {
            let mut flat = Vec::new();
            flatten_conjunction(operands, &mut flat)?;
            collect_conjunction(&flat, out)
        }
        ComparisonExpr::Comparison(comparison) => collect_single(comparison, out),
    }
}

fn flatten_conjunction<'a>(
    operands: &'a [ComparisonExpr],
    flat: &mut Vec<&'a Comparison>,
) -> Result<(), UnsupportedPattern> {
    for operand in operands {
        match operand {
            ComparisonExpr::Comparison(c) => flat.push(c),
            ComparisonExpr::Group(inner) => flatten_conjunction(std::slice::from_ref(inner.as_ref()), flat)?,
            ComparisonExpr::Combined { op: ComparisonJoin::And, operands } => flatten_conjunction(operands, flat)?,
            ComparisonExpr::Combined { op: ComparisonJoin::Or, .. } => {
                return Err(UnsupportedPattern::Conjunction("an OR nested inside an AND".into()));
            }
        }
    }
    Ok(())
}

/// What one comparison's path means to tibridge.
enum Target {
    Hash(IndicatorKind),
    /// A hash algorithm tibridge does not enforce (SHA-512...): fine as a companion only.
    OtherHash(String),
    Value(ValueTarget),
    /// `network-traffic:dst_ref.type` / `src_ref.type`.
    RefType(&'static str),
    /// Descriptive companions that narrow but do not name an indicator.
    FileDetail,
    Port,
}

#[derive(Clone, Copy)]
enum ValueTarget {
    Domain,
    Url,
    Ipv4,
    Ipv6,
    Email,
    /// `network-traffic:*_ref.value`: IP, CIDR or domain depending on the type companion.
    NetworkRef(&'static str),
}

fn classify(path: &ObjectPath) -> Option<Target> {
    if path.has_index() {
        return None;
    }
    let props = path.property_path();
    match (path.object_type.as_str(), props.as_str()) {
        ("file", p) if p.starts_with("hashes.") => {
            let algorithm = p.get("hashes.".len()..).unwrap_or("");
            let squashed: String =
                algorithm.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_uppercase();
            Some(match squashed.as_str() {
                "MD5" => Target::Hash(IndicatorKind::Md5),
                "SHA1" => Target::Hash(IndicatorKind::Sha1),
                "SHA256" => Target::Hash(IndicatorKind::Sha256),
                _ => Target::OtherHash(algorithm.to_string()),
            })
        }
        ("file", "name" | "size" | "mime_type") => Some(Target::FileDetail),
        ("domain-name", "value") => Some(Target::Value(ValueTarget::Domain)),
        ("url", "value") => Some(Target::Value(ValueTarget::Url)),
        ("ipv4-addr", "value") => Some(Target::Value(ValueTarget::Ipv4)),
        ("ipv6-addr", "value") => Some(Target::Value(ValueTarget::Ipv6)),
        ("email-addr", "value") | ("email-message", "from_ref.value") => Some(Target::Value(ValueTarget::Email)),
        ("network-traffic", "dst_ref.value") => Some(Target::Value(ValueTarget::NetworkRef("dst_ref"))),
        ("network-traffic", "src_ref.value") => Some(Target::Value(ValueTarget::NetworkRef("src_ref"))),
        ("network-traffic", "dst_ref.type") => Some(Target::RefType("dst_ref")),
        ("network-traffic", "src_ref.type") => Some(Target::RefType("src_ref")),
        ("network-traffic", "dst_port" | "src_port") => Some(Target::Port),
        _ => None,
    }
}

fn string_value(comparison: &Comparison) -> Result<&str, UnsupportedPattern> {
    match &comparison.value {
        Some(Value::Literal(Literal::String(s))) => Ok(s),
        _ => Err(UnsupportedPattern::NonString { path: comparison.path.to_string() }),
    }
}

fn check_plain(comparison: &Comparison) -> Result<(), UnsupportedPattern> {
    if comparison.negated {
        return Err(UnsupportedPattern::Negated(comparison.path.to_string()));
    }
    Ok(())
}

fn unsupported_op(comparison: &Comparison) -> UnsupportedPattern {
    UnsupportedPattern::Operator { op: comparison.op.as_str().to_string(), path: comparison.path.to_string() }
}

/// A single comparison standing alone as a branch of the disjunction.
fn collect_single(comparison: &Comparison, out: &mut Vec<Indicator>) -> Result<(), UnsupportedPattern> {
    check_plain(comparison)?;
    let target = classify(&comparison.path).ok_or_else(|| UnsupportedPattern::Path(comparison.path.to_string()))?;
    let path = comparison.path.to_string();
    match (target, comparison.op) {
        (Target::Hash(kind), Operator::Eq) => out.push(make(kind, string_value(comparison)?, &path)?),
        (Target::Hash(kind), Operator::In) => {
            for value in set_strings(comparison)? {
                out.push(make(kind, value, &path)?);
            }
        }
        (Target::Value(target), Operator::Eq) => {
            out.push(value_indicator(target, string_value(comparison)?, None, &path)?)
        }
        (Target::Value(target), Operator::In) => {
            for value in set_strings(comparison)? {
                out.push(value_indicator(target, value, None, &path)?);
            }
        }
        (
            Target::Value(target @ (ValueTarget::Ipv4 | ValueTarget::Ipv6 | ValueTarget::NetworkRef(_))),
            Operator::IsSubset,
        ) => {
            let value = string_value(comparison)?;
            if !value.contains('/') {
                return Err(UnsupportedPattern::InvalidValue {
                    path,
                    value: value.to_string(),
                    kind: IndicatorKind::Ipv4Cidr,
                    reason: "ISSUBSET needs a network in CIDR form".into(),
                });
            }
            out.push(value_indicator(target, value, None, &path)?);
        }
        (Target::Hash(_) | Target::Value(_), _) => return Err(unsupported_op(comparison)),
        (Target::OtherHash(algorithm), _) => return Err(UnsupportedPattern::HashAlgorithm { path, algorithm }),
        (Target::RefType(_) | Target::FileDetail | Target::Port, _) => return Err(UnsupportedPattern::Companion(path)),
    }
    Ok(())
}

fn set_strings(comparison: &Comparison) -> Result<Vec<&str>, UnsupportedPattern> {
    match &comparison.value {
        Some(Value::Set(items)) => items
            .iter()
            .map(|item| match item {
                Literal::String(s) => Ok(s.as_str()),
                _ => Err(UnsupportedPattern::NonString { path: comparison.path.to_string() }),
            })
            .collect(),
        _ => Err(UnsupportedPattern::NonString { path: comparison.path.to_string() }),
    }
}

/// An AND inside one bracket: only the one-object shapes documented on [`Pattern::indicators`].
fn collect_conjunction(parts: &[&Comparison], out: &mut Vec<Indicator>) -> Result<(), UnsupportedPattern> {
    let object_type = parts.first().map(|c| c.path.object_type.as_str()).unwrap_or("");
    if let Some(other) = parts.iter().find(|c| c.path.object_type != object_type) {
        return Err(UnsupportedPattern::Conjunction(format!(
            "AND across different objects {object_type} and {}",
            other.path.object_type
        )));
    }
    let mut hashes = Vec::new();
    let mut values = Vec::new();
    let mut ref_types: Vec<(&'static str, &str)> = Vec::new();
    for comparison in parts {
        check_plain(comparison)?;
        let target = classify(&comparison.path).ok_or_else(|| UnsupportedPattern::Path(comparison.path.to_string()))?;
        if comparison.op != Operator::Eq {
            return Err(unsupported_op(comparison));
        }
        match target {
            Target::Hash(kind) => hashes.push((kind, string_value(comparison)?, comparison.path.to_string())),
            Target::OtherHash(_) | Target::FileDetail | Target::Port => {}
            Target::RefType(side) => ref_types.push((side, string_value(comparison)?)),
            Target::Value(target) => values.push((target, string_value(comparison)?, comparison.path.to_string())),
        }
    }
    match object_type {
        "file" => {
            if hashes.is_empty() {
                return Err(UnsupportedPattern::Conjunction(
                    "a file conjunction without an MD5, SHA-1 or SHA-256 hash".into(),
                ));
            }
            for (kind, value, path) in hashes {
                out.push(make(kind, value, &path)?);
            }
            Ok(())
        }
        "network-traffic" => {
            if values.len() != 1 {
                return Err(UnsupportedPattern::Conjunction(format!(
                    "network-traffic with {} addresses; exactly one is needed",
                    values.len()
                )));
            }
            let mut result = Vec::new();
            for (target, value, path) in values {
                let side = match target {
                    ValueTarget::NetworkRef(side) => side,
                    _ => return Err(UnsupportedPattern::Conjunction(path)),
                };
                let mut declared = None;
                for (ref_side, ty) in &ref_types {
                    if *ref_side != side {
                        return Err(UnsupportedPattern::Conjunction(format!(
                            "{ref_side}.type does not describe {side}.value"
                        )));
                    }
                    if declared.is_some_and(|d| d != *ty) {
                        return Err(UnsupportedPattern::Conjunction(format!(
                            "{side}.type is given two different values"
                        )));
                    }
                    declared = Some(*ty);
                }
                result.push(value_indicator(target, value, declared, &path)?);
            }
            out.extend(result);
            Ok(())
        }
        _ => Err(UnsupportedPattern::Conjunction(format!("AND on {object_type} does not name one indicator"))),
    }
}

fn make(kind: IndicatorKind, value: &str, path: &str) -> Result<Indicator, UnsupportedPattern> {
    normalize(kind, value).map_err(|e| UnsupportedPattern::InvalidValue {
        path: path.to_string(),
        value: truncate(value),
        kind,
        reason: e.to_string(),
    })
}

fn truncate(value: &str) -> String {
    value.chars().take(200).collect()
}

fn value_indicator(
    target: ValueTarget,
    value: &str,
    ref_type: Option<&str>,
    path: &str,
) -> Result<Indicator, UnsupportedPattern> {
    let family = match target {
        ValueTarget::Domain => return make(IndicatorKind::Domain, value, path),
        ValueTarget::Url => return make(IndicatorKind::Url, value, path),
        ValueTarget::Email => return make(IndicatorKind::Email, value, path),
        ValueTarget::Ipv4 => Some(4),
        ValueTarget::Ipv6 => Some(6),
        ValueTarget::NetworkRef(side) => match ref_type {
            Some("ipv4-addr") => Some(4),
            Some("ipv6-addr") => Some(6),
            Some("domain-name") => return make(IndicatorKind::Domain, value, path),
            Some(other) => {
                return Err(UnsupportedPattern::Conjunction(format!(
                    "{side}.type {other:?} is not an address type tibridge maps"
                )))
            }
            // Without the type companion only an unambiguous IP literal is taken.
            None => None,
        },
    };
    ip_value(value, family, path, family.is_none())
}

/// An address or network by its shape, as MISP `ip-src`/`ip-dst` values are read (a /32 or
/// /128 is the address), checked against the family the path promises.
fn ip_value(value: &str, family: Option<u8>, path: &str, untyped: bool) -> Result<Indicator, UnsupportedPattern> {
    let expected = match family {
        Some(4) => IndicatorKind::Ipv4,
        Some(_) => IndicatorKind::Ipv6,
        None => IndicatorKind::Ipv4,
    };
    let indicator = match ip_by_shape(value) {
        Ok(indicator) => indicator,
        Err(_) if untyped => {
            return Err(UnsupportedPattern::Conjunction(format!(
                "{path} {:?} is not an IP address and no type companion says what it is",
                truncate(value)
            )))
        }
        Err(e) => {
            return Err(UnsupportedPattern::InvalidValue {
                path: path.to_string(),
                value: truncate(value),
                kind: expected,
                reason: e.to_string(),
            })
        }
    };
    let is_v4 = matches!(indicator.kind, IndicatorKind::Ipv4 | IndicatorKind::Ipv4Cidr);
    match family {
        Some(4) if !is_v4 => Err(UnsupportedPattern::InvalidValue {
            path: path.to_string(),
            value: truncate(value),
            kind: IndicatorKind::Ipv4,
            reason: "it is an IPv6 value on an IPv4 path".into(),
        }),
        Some(6) if is_v4 => Err(UnsupportedPattern::InvalidValue {
            path: path.to_string(),
            value: truncate(value),
            kind: IndicatorKind::Ipv6,
            reason: "it is an IPv4 value on an IPv6 path".into(),
        }),
        _ => Ok(indicator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Pattern {
        match parse(p) {
            Ok(pattern) => pattern,
            Err(e) => panic!("{p}: {e}"),
        }
    }

    fn kinds(p: &str) -> Vec<(IndicatorKind, String)> {
        match ok(p).indicators() {
            Ok(list) => list.into_iter().map(|i| (i.kind, i.value)).collect(),
            Err(e) => panic!("{p}: {e}"),
        }
    }

    const SHA256: &str = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f";

    #[test]
    fn parses_every_spec_example() {
        // stix2-patterns 2.1.2 stix2patterns/test/v21/spec_examples.txt (see testdata/README.md).
        let text = include_str!("../../testdata/stix/spec_examples.txt");
        let mut count = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let pattern = ok(line);
            let again = pattern.to_string();
            assert_eq!(parse(&again).as_ref(), Ok(&pattern), "re-parse of {again}");
            count += 1;
        }
        assert_eq!(count, 23);
    }

    #[test]
    fn string_escapes_and_quoted_keys() {
        let p = ok(r"[file:name = 'it\'s a \\ path' AND file:hashes.'SHA-256' = 'x']");
        let ObservationExpr::Observation(ComparisonExpr::Combined { operands, .. }) = &p.expression else {
            panic!("{p:?}")
        };
        let ComparisonExpr::Comparison(first) = &operands[0] else { panic!() };
        assert_eq!(first.value, Some(Value::Literal(Literal::String(r"it's a \ path".into()))));
        let ComparisonExpr::Comparison(second) = &operands[1] else { panic!() };
        assert_eq!(second.path.components[1], PathComponent::Property("SHA-256".into()));
        assert_eq!(p.to_string(), r"[file:name = 'it\'s a \\ path' AND file:hashes.'SHA-256' = 'x']");
    }

    #[test]
    fn qualifiers_literals_and_indexes() {
        let p = ok("[a:b[*].c[0] > 7.5 AND a:d <= -3 AND a:e = true AND a:f = b'AAEC' AND a:g = h'ff00' AND a:h IN ('x', 2)] REPEATS 3 TIMES WITHIN 60.5 SECONDS START t'2024-01-01T00:00:00Z' STOP t'2024-01-02T00:00:00.123Z'");
        let ObservationExpr::Qualified { qualifier, expr } = &p.expression else { panic!() };
        assert!(matches!(qualifier, Qualifier::StartStop { .. }));
        assert!(
            matches!(expr.as_ref(), ObservationExpr::Qualified { qualifier: Qualifier::Within(x), .. } if *x == 60.5)
        );
        assert_eq!(parse(&p.to_string()), Ok(p.clone()));
        ok("[x:y NOT LIKE 'a%'] AND [x:z NOT MATCHES '^a$'] FOLLOWEDBY [EXISTS x:w]");
        ok("[ipv4-addr:value ISSUBSET '10.0.0.0/8'] OR [x:y ISSUPERSET 'a']");
        ok("[x:y = 1] OR [x:y != 2] OR [x:y <> 3] OR [x:y == 4]");
    }

    #[test]
    fn errors_name_position_and_expectation() {
        let e = parse("[file:hashes.SHA-256 = 'x']").unwrap_err();
        assert!(e.message.contains("must be quoted"), "{e}");
        assert_eq!(e.position, 13);
        let e = parse("[domain-name:value = 'x'").unwrap_err();
        assert!(e.message.contains("']'"), "{e}");
        assert_eq!(e.position, 24);
        assert!(parse("[x:y = 'it''s']").is_err(), "SQL-style quote doubling is not STIX");
        assert!(parse("[x:y = 'a\\n']").unwrap_err().message.contains("invalid escape"));
        assert!(parse("[x:y LIKE 3]").unwrap_err().message.contains("LIKE"));
        assert!(parse("[x:y = t'2024-13-01T00:00:00Z']").is_err());
        assert!(parse("[x:y = 'a'] WITHIN 0 SECONDS").is_err());
        assert!(parse("").unwrap_err().message.contains("'['"));
        assert!(parse("[x:y = 'a'] junk").is_err());
        assert!(parse("[x:y = 99999999999999999999]").is_err());
        assert!(parse("[x:y = 'a' AND]").is_err());
        assert!(parse("[x:y = h'abc']").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}[x:y = 1]{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let deep = format!("[{}x:y = 1{}]", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let within = format!("[{}x:y = 1{}]", "(".repeat(MAX_DEPTH - 2), ")".repeat(MAX_DEPTH - 2));
        ok(&within);
    }

    #[test]
    fn maps_the_supported_shapes() {
        assert_eq!(
            kinds(&format!("[file:hashes.'SHA-256' = '{SHA256}']")),
            vec![(IndicatorKind::Sha256, SHA256.to_string())]
        );
        assert_eq!(kinds(&format!("[file:hashes.sha256 = '{SHA256}']"))[0].0, IndicatorKind::Sha256);
        assert_eq!(kinds(&format!("[file:hashes.SHA256 = '{SHA256}']"))[0].0, IndicatorKind::Sha256);
        assert_eq!(kinds("[file:hashes.md5 = '00dbb9e1c09dbdafb360f3163ba5a3de']")[0].0, IndicatorKind::Md5);
        assert_eq!(
            kinds("[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']")[0].0,
            IndicatorKind::Sha1
        );
        let got = kinds("[domain-name:value = 'a.example' OR ipv4-addr:value = '198.51.100.7'] OR [url:value = 'http://b.example/x']");
        assert_eq!(
            got.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![IndicatorKind::Domain, IndicatorKind::Ipv4, IndicatorKind::Url]
        );
        assert_eq!(kinds("[ipv4-addr:value = '198.51.100.0/24']")[0].0, IndicatorKind::Ipv4Cidr);
        assert_eq!(kinds("[ipv4-addr:value ISSUBSET '198.51.100.0/24']")[0].0, IndicatorKind::Ipv4Cidr);
        assert_eq!(kinds("[ipv6-addr:value = '2001:db8::1']")[0].0, IndicatorKind::Ipv6);
        assert_eq!(kinds("[email-addr:value = 'a@b.example']")[0].0, IndicatorKind::Email);
        assert_eq!(kinds("[email-message:from_ref.value = 'a@b.example']")[0].0, IndicatorKind::Email);
        assert_eq!(kinds("[domain-name:value IN ('a.example', 'b.example')]").len(), 2);
        assert_eq!(
            kinds("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.33']"),
            vec![(IndicatorKind::Ipv4, "203.0.113.33".to_string())]
        );
        assert_eq!(kinds("[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'c2.example' AND network-traffic:dst_port = 443]")[0].0, IndicatorKind::Domain);
        assert_eq!(kinds("[network-traffic:dst_ref.value = '2001:db8::/32']")[0].0, IndicatorKind::Ipv6Cidr);
        // A /32 is the address itself, as MISP ip-dst values are read.
        assert_eq!(
            kinds("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.33/32']"),
            vec![(IndicatorKind::Ipv4, "203.0.113.33".to_string())]
        );
        assert!(matches!(
            ok("[ipv4-addr:value = '2001:db8::1']").indicators(),
            Err(UnsupportedPattern::InvalidValue { .. })
        ));
        assert!(matches!(
            ok("[ipv4-addr:value = '10.1.2.3/8']").indicators(),
            Err(UnsupportedPattern::InvalidValue { .. })
        ));
        // misp-stix filename|sha1: the hash is taken.
        assert_eq!(
            kinds("[file:name = 'bad.exe' AND file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']")[0].0,
            IndicatorKind::Sha1
        );
        // Duplicates collapse.
        assert_eq!(kinds("[domain-name:value = 'a.example'] OR [domain-name:value = 'a.example']").len(), 1);
    }

    #[test]
    fn refuses_what_it_cannot_represent() {
        let refused = |p: &str| ok(p).indicators().unwrap_err();
        assert!(matches!(
            refused("[domain-name:value = 'a.example'] AND [url:value = 'http://b/']"),
            UnsupportedPattern::ObservationOperator("AND")
        ));
        assert!(matches!(
            refused("[domain-name:value = 'a'] FOLLOWEDBY [domain-name:value = 'b']"),
            UnsupportedPattern::ObservationOperator("FOLLOWEDBY")
        ));
        assert!(matches!(refused("[domain-name:value = 'a'] WITHIN 5 SECONDS"), UnsupportedPattern::Qualifier(_)));
        assert!(matches!(refused("[domain-name:value != 'a']"), UnsupportedPattern::Operator { .. }));
        assert!(matches!(refused("[domain-name:value LIKE 'a%']"), UnsupportedPattern::Operator { .. }));
        assert!(matches!(refused("[domain-name:value NOT = 'a']"), UnsupportedPattern::Negated(_)));
        assert!(matches!(refused("[file:name = 'a.exe']"), UnsupportedPattern::Companion(_)));
        assert!(matches!(refused("[file:hashes.'SHA-512' = 'aa']"), UnsupportedPattern::HashAlgorithm { .. }));
        assert!(matches!(
            refused("[domain-name:value = 'a' AND ipv4-addr:value = '1.2.3.4']"),
            UnsupportedPattern::Conjunction(_)
        ));
        assert!(matches!(
            refused("[domain-name:value = 'a' AND domain-name:resolves_to_refs[*].value = '1.2.3.4']"),
            UnsupportedPattern::Path(_)
        ));
        assert!(matches!(refused("[file:name = 'a' AND file:size = 3]"), UnsupportedPattern::Conjunction(_)));
        assert!(matches!(
            refused("[network-traffic:dst_ref.value = 'c2.example']"),
            UnsupportedPattern::Conjunction(_)
        ));
        assert!(matches!(refused("[ipv4-addr:value = 3]"), UnsupportedPattern::NonString { .. }));
        assert!(matches!(refused("[x-custom:value = 'a']"), UnsupportedPattern::Path(_)));
        assert!(matches!(
            refused("[(domain-name:value = 'a' OR domain-name:value = 'b') AND domain-name:value = 'c']"),
            UnsupportedPattern::Conjunction(_)
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// What the fuzz target checks, on stable: never a panic, and what parses writes back
        /// out to text that parses to the same tree.
        #[test]
        fn never_panics_and_round_trips(text in r"[\[\]()'a-zA-Z0-9:.\-_ =!<>*,\\]{0,80}|\[[a-z\-]{1,12}:[a-z_.]{1,12}(\[\*\])? (=|!=|<|>=|LIKE|MATCHES) ('[a-z\\'.]{0,10}'|-?[0-9]{1,5}(\.[0-9]{1,3})?|t'2024-01-01T00:00:00Z'|true)( (AND|OR) [a-z]{1,5}:[a-z]{1,5} = 'x'){0,3}\]( (AND|OR|FOLLOWEDBY) \[a:b = 1\]){0,2}( WITHIN [0-9]{1,3}(\.[0-9])? SECONDS| REPEATS [1-9] TIMES)?") {
            if let Ok(pattern) = parse(&text) {
                let written = pattern.to_string();
                proptest::prop_assert_eq!(parse(&written), Ok(pattern.clone()), "{} written as {}", text, written);
                let _ = pattern.indicators();
            }
        }
    }
}
