//! Domain names as the DNS and the controls see them: lowercase ASCII (punycode for IDNs).
//!
//! Rules, and why:
//! - UTS-46 mapping (idna crate, nontransitional) so `BÜCHER.de`, `bücher.de` and
//!   `xn--bcher-kva.de` are one indicator; invalid punycode is refused.
//! - one trailing dot (the DNS root) is dropped; an empty label anywhere else is refused.
//! - labels of 1–63 characters, names of at most 253, letters, digits and `-` (not at either
//!   end of a label).
//! - `_` is accepted only left of the registrable domain (`_dmarc.example.com`,
//!   `my_host.example.com` exist in DNS), never in the registrable label or the suffix,
//!   which no registry allows.
//! - at least two labels, and the last one letters only or `xn--` punycode: a name ending
//!   in a number reads as an IPv4 address to browsers and resolvers.
//! - never a bare public suffix from the Public Suffix List (`com`, `co.uk`, and private
//!   entries such as `github.io`): that is a namespace shared by unrelated owners, and
//!   blocking it blocks all of them. Unknown top-level labels (`.bit`, `.lan`) are accepted,
//!   since malware uses them.
//!
//! It must never return a name a resolver would read differently from what we store.

use super::{shown, NormalizeError};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use psl::Psl;

const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

fn bad(value: &str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::BadDomain { value: shown(value), reason: reason.into() }
}

/// Canonical form of a domain name, already refanged.
pub(crate) fn normalize_domain(value: &str) -> Result<String, NormalizeError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() {
        return Err(bad(value, "it is empty"));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(value, format!("it contains {c:?}")));
    }
    let ascii = to_ascii(value, name)?;
    // A trailing ideographic full stop only becomes a dot in the mapping above.
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    check_ascii_name(value, ascii)?;
    Ok(ascii.to_string())
}

/// Lowercase ASCII form: plain ASCII names skip the IDNA machinery (most names, and it is
/// the slow part); anything non-ASCII or already punycode goes through UTS-46.
fn to_ascii(value: &str, name: &str) -> Result<String, NormalizeError> {
    let has_punycode = name.split('.').any(|label| label.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    if name.is_ascii() && !has_punycode {
        return Ok(name.to_ascii_lowercase());
    }
    Uts46::new()
        .to_ascii(name.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow, DnsLength::Ignore)
        .map(|cow| cow.into_owned())
        .map_err(|_| bad(value, "it is not a valid internationalized name (UTS-46 / IDNA2008)"))
}

fn check_ascii_name(value: &str, name: &str) -> Result<(), NormalizeError> {
    if name.len() > MAX_NAME {
        return Err(bad(value, format!("it is {} characters long, more than {MAX_NAME}", name.len())));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        check_label(value, label)?;
    }
    let tld = labels.last().copied().unwrap_or_default();
    if labels.len() < 2 {
        return Err(bad(value, "it is a single label, not a name on the internet"));
    }
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(value, "it ends in a number, so it reads as an IPv4 address"));
    }
    if !(tld.bytes().all(|b| b.is_ascii_alphabetic()) || tld.starts_with("xn--")) {
        return Err(bad(value, format!("top-level label {tld:?} is not letters or xn-- punycode")));
    }
    if let Some(suffix) = psl::List.suffix(name.as_bytes()) {
        if suffix.is_known() && suffix.as_bytes().len() == name.len() {
            return Err(NormalizeError::PublicSuffix(name.to_string()));
        }
    }
    // Registrable domain: the suffix plus one label (or, for an unknown suffix, the last two).
    let registrable_labels = match psl::List.domain(name.as_bytes()) {
        Some(domain) => domain.as_bytes().iter().filter(|b| **b == b'.').count() + 1,
        None => 2,
    };
    let first_registrable = labels.len().saturating_sub(registrable_labels);
    if let Some(label) = labels.iter().skip(first_registrable).find(|l| l.contains('_')) {
        return Err(bad(value, format!("label {label:?} has '_', which no registry allows in a registered name")));
    }
    Ok(())
}

fn check_label(value: &str, label: &str) -> Result<(), NormalizeError> {
    if label.is_empty() {
        return Err(bad(value, "it has an empty label (a leading dot or two dots in a row)"));
    }
    if label.len() > MAX_LABEL {
        return Err(bad(
            value,
            format!("label {:?} is {} characters long, more than {MAX_LABEL}", shown(label), label.len()),
        ));
    }
    if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(bad(value, format!("{c:?} is not allowed in a domain name (letters, digits, '-' only)")));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(bad(value, format!("label {label:?} starts or ends with '-'")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize_domain(raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
    }

    fn reason(raw: &str) -> String {
        match normalize_domain(raw) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("{raw:?} accepted as {v:?}"),
        }
    }

    #[test]
    fn names_are_lowercased_and_lose_the_root_dot() {
        assert_eq!(ok("EVIL.example.com."), "evil.example.com");
        assert_eq!(ok("example.co.uk"), "example.co.uk");
        assert_eq!(ok("a-b.example"), "a-b.example");
        assert_eq!(ok("c2.evil.bit"), "c2.evil.bit");
    }

    #[test]
    fn idns_become_punycode() {
        assert_eq!(ok("bücher.de"), "xn--bcher-kva.de");
        assert_eq!(ok("BÜCHER.DE"), "xn--bcher-kva.de");
        assert_eq!(ok("XN--BCHER-KVA.de"), "xn--bcher-kva.de");
        assert_eq!(ok("пример.рф"), "xn--e1afmkfd.xn--p1ai");
        // Ideographic full stops are dots under UTS-46.
        assert_eq!(ok("example\u{3002}com"), "example.com");
        assert!(reason("xn--zz-zzzzzz.com").contains("internationalized"));
    }

    #[test]
    fn public_suffixes_and_single_labels_are_refused() {
        assert!(matches!(normalize_domain("com"), Err(NormalizeError::BadDomain { .. })));
        assert_eq!(normalize_domain("co.uk"), Err(NormalizeError::PublicSuffix("co.uk".into())));
        assert_eq!(normalize_domain("CO.UK."), Err(NormalizeError::PublicSuffix("co.uk".into())));
        assert_eq!(normalize_domain("github.io"), Err(NormalizeError::PublicSuffix("github.io".into())));
        assert_eq!(ok("evil.github.io"), "evil.github.io");
        assert!(reason("localhost").contains("single label"));
    }

    #[test]
    fn label_rules_are_enforced() {
        assert!(reason("-evil.example.com").contains("starts or ends with '-'"));
        assert!(reason("evil-.example.com").contains("starts or ends with '-'"));
        assert!(reason("evil..example.com").contains("empty label"));
        assert!(reason(".example.com").contains("empty label"));
        assert!(reason(&format!("{}.com", "a".repeat(64))).contains("more than 63"));
        assert_eq!(ok(&format!("{}.com", "a".repeat(63))).len(), 67);
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(reason(&long).contains("more than 253"));
        assert!(reason("evil example.com").contains("' '"));
        assert!(reason("evil!.example.com").contains("'!'"));
        assert!(reason("1.2.3.4").contains("IPv4"));
        assert!(reason("example.c0m").contains("not letters"));
    }

    #[test]
    fn underscores_only_below_the_registrable_domain() {
        assert_eq!(ok("_dmarc.example.com"), "_dmarc.example.com");
        assert_eq!(ok("my_host.evil.co.uk"), "my_host.evil.co.uk");
        assert!(reason("my_host.com").contains("'_'"));
        assert!(reason("evil.my_host.co.uk").contains("'_'"));
    }
}
