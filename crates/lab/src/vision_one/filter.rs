//! The OData-like filter grammar of Vision One's `TMV1-Filter` header (and `filter` query):
//! `field eq 'value'`, `ne`, `contains(field,'x')`, `startswith(field,'x')`, `and`, `or`, `not`,
//! parentheses, single-quoted values with `''` as an escaped quote.
//!
//! Precedence, lowest first: `or`, `and`, `not`. Keywords and value comparisons are
//! ASCII case-insensitive (the vendor's exact rule is UNCONFIRMED; lenient matching never hides
//! a record a client asked for). Field names are checked against the endpoint's list, so a
//! client typo is a 400, not a silently empty page. The parser never panics and limits nesting,
//! because the header comes straight from the client.

/// How deep parentheses and `not` may nest before the filter is refused.
const MAX_DEPTH: usize = 64;

/// A parsed filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Eq(String, String),
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// Why a filter was refused, with the byte offset where the problem starts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at offset {offset}: {message}")]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
}

fn err(offset: usize, message: impl Into<String>) -> FilterError {
    FilterError { offset, message: message.into() }
}

fn tokenize(input: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push((i, Tok::LParen));
            }
            ')' => {
                chars.next();
                out.push((i, Tok::RParen));
            }
            ',' => {
                chars.next();
                out.push((i, Tok::Comma));
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    if c == '\'' {
                        if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                            chars.next();
                            s.push('\'');
                        } else {
                            closed = true;
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                if !closed {
                    return Err(err(i, "unterminated quoted value"));
                }
                out.push((i, Tok::Str(s)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((i, Tok::Ident(s)));
            }
            other => return Err(err(i, format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    fields: &'a [&'a str],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), FilterError> {
        let at = self.offset();
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(err(at, format!("expected {what}"))),
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(err(self.offset(), format!("nested deeper than {MAX_DEPTH} levels")));
        }
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let at = self.offset();
        match self.next() {
            Some(Tok::Ident(name)) => {
                if self.fields.contains(&name.as_str()) {
                    Ok(name)
                } else {
                    Err(err(at, format!("unknown field '{name}' (supported: {})", self.fields.join(", "))))
                }
            }
            _ => Err(err(at, "expected a field name")),
        }
    }

    fn value(&mut self) -> Result<String, FilterError> {
        let at = self.offset();
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => Err(err(at, "expected a value in single quotes")),
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(inner);
        }
        for func in ["contains", "startswith"] {
            if self.keyword(func) && self.toks.get(self.pos + 1).map(|(_, t)| t) == Some(&Tok::LParen) {
                self.pos += 2;
                let f = self.field()?;
                self.expect(Tok::Comma, "','")?;
                let v = self.value()?;
                self.expect(Tok::RParen, "')'")?;
                return Ok(if func == "contains" { Filter::Contains(f, v) } else { Filter::StartsWith(f, v) });
            }
        }
        let f = self.field()?;
        let at = self.offset();
        let op = match self.next() {
            Some(Tok::Ident(op)) if op.eq_ignore_ascii_case("eq") => true,
            Some(Tok::Ident(op)) if op.eq_ignore_ascii_case("ne") => false,
            _ => return Err(err(at, format!("expected 'eq' or 'ne' after field '{f}'"))),
        };
        let v = self.value()?;
        Ok(if op { Filter::Eq(f, v) } else { Filter::Ne(f, v) })
    }
}

/// Parses `input`, accepting only the field names in `fields`.
pub fn parse(input: &str, fields: &[&str]) -> Result<Filter, FilterError> {
    let toks = tokenize(input)?;
    if toks.is_empty() {
        return Err(err(0, "empty filter"));
    }
    let mut p = Parser { toks, pos: 0, end: input.len(), fields };
    let f = p.or(0)?;
    if p.pos < p.toks.len() {
        return Err(err(p.offset(), "unexpected text after the end of the expression"));
    }
    Ok(f)
}

impl Filter {
    /// Whether a record matches. `values(field)` gives every value the record has for that
    /// field (a detection has one tactic list per filter, so fields are multi-valued): `eq`
    /// holds if any value is equal, `ne` if none is.
    pub fn matches(&self, values: &dyn Fn(&str) -> Vec<String>) -> bool {
        match self {
            Filter::Eq(f, v) => values(f).iter().any(|x| x.eq_ignore_ascii_case(v)),
            Filter::Ne(f, v) => !values(f).iter().any(|x| x.eq_ignore_ascii_case(v)),
            Filter::Contains(f, v) => {
                let v = v.to_ascii_lowercase();
                values(f).iter().any(|x| x.to_ascii_lowercase().contains(&v))
            }
            Filter::StartsWith(f, v) => {
                let v = v.to_ascii_lowercase();
                values(f).iter().any(|x| x.to_ascii_lowercase().starts_with(&v))
            }
            Filter::And(a, b) => a.matches(values) && b.matches(values),
            Filter::Or(a, b) => a.matches(values) || b.matches(values),
            Filter::Not(a) => !a.matches(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OAT: &[&str] = &["riskLevel", "filterMitreTacticId", "uuid"];

    fn rec(field: &str) -> Vec<String> {
        match field {
            "riskLevel" => vec!["high".into()],
            "filterMitreTacticId" => vec!["TA0011".into(), "TA0002".into()],
            "uuid" => vec!["it's-1".into()],
            _ => vec![],
        }
    }

    #[test]
    fn parses_the_contract_example_with_precedence() {
        // Example from trendmicro.md §1.5.
        let f =
            parse("(riskLevel eq 'high' or riskLevel eq 'critical') and filterMitreTacticId eq 'TA0011'", OAT).unwrap();
        assert!(matches!(f, Filter::And(..)));
        assert!(f.matches(&rec));
        let g = parse("riskLevel eq 'low' or riskLevel eq 'high' and uuid eq 'x'", OAT).unwrap();
        // and binds tighter: low or (high and x) → false for our record
        assert!(!g.matches(&rec));
    }

    #[test]
    fn not_ne_contains_and_escaped_quotes() {
        assert!(parse("not riskLevel eq 'low'", OAT).unwrap().matches(&rec));
        assert!(parse("riskLevel ne 'low'", OAT).unwrap().matches(&rec));
        assert!(parse("contains(filterMitreTacticId,'0011')", OAT).unwrap().matches(&rec));
        assert!(parse("uuid eq 'it''s-1'", OAT).unwrap().matches(&rec));
        assert!(parse("RISKLEVEL eq 'HIGH'", &["RISKLEVEL"]).is_ok());
    }

    #[test]
    fn rejects_unknown_fields_and_garbage_with_an_offset() {
        let e = parse("colour eq 'red'", OAT).unwrap_err();
        assert!(e.message.contains("unknown field 'colour'"), "{e}");
        for bad in [
            "",
            "riskLevel",
            "riskLevel eq",
            "riskLevel eq 'x",
            "(riskLevel eq 'x'",
            "riskLevel eq 'x' )",
            "riskLevel gt 'x'",
            "riskLevel eq 'x' and",
            "§",
            "contains(riskLevel 'x')",
        ] {
            assert!(parse(bad, OAT).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn random_token_soup_never_panics() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "(",
            ")",
            ",",
            "'",
            "''",
            " ",
            "eq",
            "ne",
            "and",
            "or",
            "not",
            "contains",
            "startswith",
            "riskLevel",
            "uuid",
            "'high'",
            "'TA0011'",
            "x",
            "é",
            "\\",
            "'unterminated",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let n = rng.gen_range(0..16);
            let s: String = (0..n).map(|_| pieces[rng.gen_range(0..pieces.len())]).collect::<Vec<_>>().join(" ");
            if let Ok(f) = parse(&s, OAT) {
                let _ = f.matches(&rec);
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}riskLevel eq 'x'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep, OAT).is_err());
        let nots = format!("{}riskLevel eq 'x'", "not ".repeat(10_000));
        assert!(parse(&nots, OAT).is_err());
    }
}
