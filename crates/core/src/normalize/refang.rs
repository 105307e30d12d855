//! Undoing the ways analysts "defang" indicators so nobody clicks them in a report.
//!
//! What is undone, case-insensitively:
//! - a defanged scheme at the start: `hxxp`, `hxxps`, `hXXp`, `hxtp`, `htxp`, `h**p`,
//!   `h[tt]p`, `meow` (the last two from PyMISP's refang table), `fxp`, `fxps`, only when
//!   followed by `:` (so a domain `hxxp.com` is left alone);
//! - a bracketed token, with `[]`, `()` or `{}` and optional spaces inside and around:
//!   `.` and `dot` → `.`, `@` and `at` → `@`, `:`, `://`, `/`, `//` → themselves;
//! - `\.` → `.` (regex-escaped dots);
//! - spelled-out separators between words when the value has no `/` or `:` (so it cannot be
//!   a URL or an IPv6 address): `user at example dot com` → `user@example.com`, and only
//!   when every other word is `dot`/`at`/`.`/`@`, so `foo bar` is not glued into `foobar`;
//! - invisible characters anywhere (zero-width space, BOM, word joiner, soft hyphen,
//!   Mongolian vowel separator) and whitespace at both ends;
//! - one or more wrapping pairs around the whole value: quotes (straight, curly, backtick,
//!   guillemets), `<>`, `()`, `[]`, `{}`, only when the inside is balanced, so
//!   `[.]example[.]com[.]` is not mistaken for a wrapped value.
//!
//! What it must never do: change a value that carries none of these marks. The price of the
//! bracketed tokens being read everywhere is that a URL whose path really contains `(at)`
//! or `[.]` loses the brackets; no feed we know of relies on that, and every defang tool
//! writes those tokens. Zero-width joiner and non-joiner are kept: they are meaningful in
//! some scripts and UTS-46 checks where they may appear.
//!
//! The result is a fixed point: `refang(refang(x)) == refang(x)`.

use std::borrow::Cow;

/// Undoes defanging and strips wrapping; see the module documentation for the exact list.
/// Borrows when nothing but outer whitespace or wrapping had to go.
pub fn refang(input: &str) -> Cow<'_, str> {
    let trimmed = trim_outer(input);
    if !needs_work(trimmed) {
        return Cow::Borrowed(trimmed);
    }
    let mut current = pass(trimmed);
    // Each pass that changes something shrinks the text, except a scheme rewrite, which
    // cannot happen twice in a row; so this ends well within the bound.
    for _ in 0..2 * input.len() + 2 {
        let next = pass(&current);
        if next == current {
            break;
        }
        current = next;
    }
    Cow::Owned(current)
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2060}' | '\u{00AD}' | '\u{180E}')
}

/// Spaces that can sit inside a defanged value (`example [.] com`).
fn is_inline_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{A0}')
}

fn is_outer_junk(c: char) -> bool {
    c.is_whitespace() || is_invisible(c)
}

/// Wrapping pairs and whether they nest (then the inside must be balanced) or not (then
/// the inside must not contain the quote at all).
const PAIRS: [(char, char, bool); 10] = [
    ('"', '"', false),
    ('\'', '\'', false),
    ('`', '`', false),
    ('<', '>', true),
    ('(', ')', true),
    ('[', ']', true),
    ('{', '}', true),
    ('\u{201C}', '\u{201D}', true),
    ('\u{2018}', '\u{2019}', true),
    ('\u{AB}', '\u{BB}', true),
];

fn trim_outer(input: &str) -> &str {
    let mut s = input.trim_matches(is_outer_junk);
    loop {
        let mut chars = s.chars();
        let (Some(first), Some(last)) = (chars.next(), chars.next_back()) else {
            return s;
        };
        let Some(&(open, close, nests)) = PAIRS.iter().find(|(o, c, _)| *o == first && *c == last) else {
            return s;
        };
        let inner = chars.as_str();
        let wraps = if nests { balanced(inner, open, close) } else { !inner.contains(open) };
        if !wraps {
            return s;
        }
        s = inner.trim_matches(is_outer_junk);
    }
}

fn balanced(inner: &str, open: char, close: char) -> bool {
    let mut depth: usize = 0;
    for c in inner.chars() {
        if c == open {
            depth += 1;
        } else if c == close {
            match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            }
        }
    }
    depth == 0
}

/// Cheap test that [`pass`] would change an already trimmed value, so clean values (nearly
/// all of them) are borrowed without allocating.
fn needs_work(s: &str) -> bool {
    scheme_defang(s).is_some()
        || s.bytes().any(|b| matches!(b, b'[' | b'(' | b'{' | b'\\' | b' ' | b'\t'))
        || (!s.is_ascii() && s.chars().any(|c| is_invisible(c) || c == '\u{A0}'))
}

fn pass(s: &str) -> String {
    let collapsed = collapse_tokens(s);
    let joined = join_spelled_words(&collapsed).unwrap_or(collapsed);
    let trimmed = trim_outer(&joined);
    match scheme_defang(trimmed) {
        Some((len, real)) => format!("{real}{}", trimmed.get(len..).unwrap_or_default()),
        None => trimmed.to_string(),
    }
}

/// Defanged schemes and what they stand for; longer spellings first.
const SCHEMES: [(&str, &str); 13] = [
    ("h[tt]ps", "https"),
    ("h[tt]p", "http"),
    ("hxxps", "https"),
    ("hxxp", "http"),
    ("hxtps", "https"),
    ("hxtp", "http"),
    ("htxps", "https"),
    ("htxp", "http"),
    ("h**ps", "https"),
    ("h**p", "http"),
    ("fxps", "ftps"),
    ("fxp", "ftp"),
    ("meow", "http"),
];

fn scheme_defang(s: &str) -> Option<(usize, &'static str)> {
    SCHEMES.iter().find_map(|&(defanged, real)| {
        let head = s.get(..defanged.len())?;
        let rest = s.get(defanged.len()..)?;
        (head.eq_ignore_ascii_case(defanged) && rest.starts_with(':')).then_some((defanged.len(), real))
    })
}

/// Bracketed tokens and their replacement; longer tokens first so `[://]` is not read as `[/]`.
const TOKENS: [(&str, &str); 8] =
    [("://", "://"), ("//", "//"), (":", ":"), ("/", "/"), (".", "."), ("dot", "."), ("@", "@"), ("at", "@")];

/// One left-to-right scan that rewrites a bracketed token as soon as its closing bracket
/// arrives, checking the output written so far, so nested defangs (`[[.]]`) and tokens
/// whose inside was itself defanged collapse in the same scan.
fn collapse_tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut skip_spaces = false;
    for c in s.chars() {
        if is_invisible(c) {
            continue;
        }
        if skip_spaces {
            if is_inline_space(c) {
                continue;
            }
            skip_spaces = false;
        }
        out.push(c);
        if matches!(c, ']' | ')' | '}') && collapse_last_token(&mut out) {
            skip_spaces = true;
        }
        while out.ends_with("\\.") {
            out.truncate(out.len() - 2);
            out.push('.');
        }
    }
    out
}

/// If `out` ends with a bracketed token, replaces it (and the spaces before it) and says so.
fn collapse_last_token(out: &mut String) -> bool {
    let open = match out.chars().next_back() {
        Some(']') => '[',
        Some(')') => '(',
        Some('}') => '{',
        _ => return false,
    };
    let body = out.get(..out.len() - 1).unwrap_or_default().trim_end_matches(is_inline_space);
    for (token, replacement) in TOKENS {
        let Some(split) = body.len().checked_sub(token.len()) else {
            continue;
        };
        let (Some(before), Some(tail)) = (body.get(..split), body.get(split..)) else {
            continue;
        };
        if !tail.eq_ignore_ascii_case(token) {
            continue;
        }
        let Some(before_open) = before.trim_end_matches(is_inline_space).strip_suffix(open) else {
            continue;
        };
        let keep = before_open.trim_end_matches(is_inline_space).len();
        out.truncate(keep);
        out.push_str(replacement);
        return true;
    }
    false
}

/// `user at example dot com` → `user@example.com`; `None` unless the value is exactly
/// words separated by spelled-out separators.
fn join_spelled_words(s: &str) -> Option<String> {
    if s.contains('/') || s.contains(':') || !s.contains(is_inline_space) {
        return None;
    }
    let words: Vec<&str> = s.split(is_inline_space).filter(|w| !w.is_empty()).collect();
    if words.len() < 3 || words.len() % 2 != 1 {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for (i, word) in words.iter().enumerate() {
        let separator = spelled_separator(word);
        match (i % 2 == 1, separator) {
            (true, Some(sep)) => out.push(sep),
            (false, None) => out.push_str(word),
            _ => return None,
        }
    }
    Some(out)
}

fn spelled_separator(word: &str) -> Option<char> {
    if word == "." || word.eq_ignore_ascii_case("dot") {
        Some('.')
    } else if word == "@" || word.eq_ignore_ascii_case("at") {
        Some('@')
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_defangs_are_undone() {
        let cases = [
            ("hxxps://evil[.]example[.]com/path", "https://evil.example.com/path"),
            ("hXXp://evil(.)example{.}com", "http://evil.example.com"),
            ("h**p://a.example", "http://a.example"),
            ("fxp://files.example", "ftp://files.example"),
            ("h[tt]ps://a.example", "https://a.example"),
            ("meow://a.example", "http://a.example"),
            ("hxxp[://]evil.example", "http://evil.example"),
            ("http[:]//evil.example", "http://evil.example"),
            ("hxxps[:]//evil.example[/]x", "https://evil.example/x"),
            ("1.2.3[.]4", "1.2.3.4"),
            ("user[@]Example[.]COM", "user@Example.COM"),
            ("user[at]example[dot]com", "user@example.com"),
            ("user(at)example(dot)com", "user@example.com"),
            ("user (at) example (dot) com", "user@example.com"),
            ("evil [ . ] example [.] com", "evil.example.com"),
            ("evil[DOT]example[Dot]com", "evil.example.com"),
            ("evil\\.example\\.com", "evil.example.com"),
            ("user at example dot com", "user@example.com"),
            ("example dot com", "example.com"),
            ("evil[[.]]example.com", "evil.example.com"),
        ];
        for (raw, want) in cases {
            assert_eq!(refang(raw), want, "refang({raw:?})");
        }
    }

    #[test]
    fn wrapping_and_invisible_characters_go() {
        assert_eq!(refang("  \"evil.example.com\"\n"), "evil.example.com");
        assert_eq!(refang("<user@example.com>"), "user@example.com");
        assert_eq!(refang("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(refang("\u{201C}evil.example\u{201D}"), "evil.example");
        assert_eq!(refang("'\"(evil.example)\"'"), "evil.example");
        assert_eq!(refang("evil\u{200B}.example.com\u{FEFF}"), "evil.example.com");
        assert_eq!(refang("[hxxp://evil[.]example]"), "http://evil.example");
    }

    #[test]
    fn legitimate_values_are_left_alone() {
        for clean in [
            "hxxp.com",
            "hxxp.example.com",
            "sub.hxxps.example",
            "https://example.com/a?b=c&d=e",
            "https://example.com/format",
            "dot.example.com",
            "at.example",
            "2001:db8::1",
            "10.0.0.0/8",
            "d41d8cd98f00b204e9800998ecf8427e",
            "first.last+tag@example.com",
            "foo bar",
            "a dot",
        ] {
            assert_eq!(refang(clean), clean);
        }
        assert!(matches!(refang(" evil.example.com\n"), Cow::Borrowed("evil.example.com")));
        // Not wrapped: the brackets do not pair up with each other.
        assert_eq!(refang("[.]example[.]com[.]"), ".example.com.");
        assert_eq!(refang("(a)b(c)"), "(a)b(c)");
        // Words are only glued when every other one is a separator.
        assert_eq!(refang("evil example dot com"), "evil example dot com");
    }

    #[test]
    fn refang_is_a_fixed_point() {
        for raw in ["[[.]]", "[[[.]]]", "[\\.]", "\\\\.", "\"[hxxp[:]//x[.]y]\"", "[ [ . ] ]", "h[x]xp://a", "[.]]"] {
            let once = refang(raw).into_owned();
            assert_eq!(refang(&once), once, "refang not stable on {raw:?}");
        }
    }

    #[test]
    fn multibyte_text_next_to_tokens_does_not_panic() {
        for raw in ["é]", "[é]", "ét]", "(ät)", "\u{A0}[.]\u{A0}", "日本[.]jp", "ＡＴ]"] {
            let _ = refang(raw);
        }
        assert_eq!(refang("日本 [.] jp"), "日本.jp");
    }
}
