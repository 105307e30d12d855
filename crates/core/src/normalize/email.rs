//! Email addresses (senders and recipients) as mail gateways match them.
//!
//! The local part is kept exactly as written: RFC 5321 lets a server treat it as
//! case-sensitive, and gateways compare it as given, so folding it could make a block miss.
//! The domain is normalized like a domain indicator (lowercase, punycode, not a bare public
//! suffix). Accepted local parts: a dot-atom (RFC 5322 atext, plus non-ASCII per RFC 6531)
//! or a quoted string of printable ASCII. Address literals (`user@[1.2.3.4]`) and comments
//! are refused: no feed uses them for senders worth blocking.
//!
//! It must never change the local part.

use super::{domain, shown, NormalizeError};

const MAX_LOCAL: usize = 64;
const MAX_ADDRESS: usize = 254;

fn bad(value: &str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::BadEmail { value: shown(value), reason: reason.into() }
}

pub(crate) fn normalize_email(value: &str) -> Result<String, NormalizeError> {
    let Some((local, host)) = value.rsplit_once('@') else {
        return Err(bad(value, "it has no '@'"));
    };
    check_local(value, local)?;
    if host.starts_with('[') {
        return Err(bad(value, "address literals like user@[1.2.3.4] are not accepted"));
    }
    let host = match domain::normalize_domain(host) {
        Ok(name) => name,
        Err(NormalizeError::BadDomain { reason, .. }) => {
            return Err(bad(value, format!("domain {:?}: {reason}", shown(host))))
        }
        Err(NormalizeError::PublicSuffix(name)) => {
            return Err(bad(value, format!("domain {name:?} is a public suffix, not a mail domain")))
        }
        Err(other) => return Err(bad(value, other.to_string())),
    };
    let address = format!("{local}@{host}");
    if address.len() > MAX_ADDRESS {
        return Err(bad(value, format!("it is {} bytes long, more than {MAX_ADDRESS}", address.len())));
    }
    Ok(address)
}

fn check_local(value: &str, local: &str) -> Result<(), NormalizeError> {
    if local.is_empty() {
        return Err(bad(value, "the part before '@' is empty"));
    }
    if local.len() > MAX_LOCAL {
        return Err(bad(value, format!("the part before '@' is {} bytes long, more than {MAX_LOCAL}", local.len())));
    }
    if let Some(quoted) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        return check_quoted(value, quoted);
    }
    if let Some(c) = local.chars().find(|c| !is_atext(*c) && *c != '.') {
        return Err(bad(value, format!("{c:?} is not allowed in an unquoted local part")));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad(value, "the local part has a dot at an end or two dots in a row"));
    }
    Ok(())
}

/// RFC 5322 atext, plus any non-ASCII character that is not a control or space (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn check_quoted(value: &str, inner: &str) -> Result<(), NormalizeError> {
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let escaped = if c == '\\' { chars.next() } else { None };
        let c = escaped.unwrap_or(c);
        let printable = c == ' ' || c.is_ascii_graphic();
        if !printable || (escaped.is_none() && (c == '"' || c == '\\')) {
            return Err(bad(value, format!("{c:?} is not allowed in a quoted local part")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_normalized_and_local_part_kept() {
        assert_eq!(normalize_email("John.Doe@Example.COM").unwrap(), "John.Doe@example.com");
        assert_eq!(normalize_email("user+tag@bücher.de").unwrap(), "user+tag@xn--bcher-kva.de");
        assert_eq!(normalize_email("\"john doe\"@example.com").unwrap(), "\"john doe\"@example.com");
        assert_eq!(normalize_email("jöhn@example.com").unwrap(), "jöhn@example.com");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "no-at.example.com",
            "@example.com",
            "user@",
            "user@com",
            "user@co.uk",
            "us er@example.com",
            ".user@example.com",
            "us..er@example.com",
            "user@[1.2.3.4]",
            "\"a\"b\"@example.com",
            "user@exa mple.com",
        ] {
            assert!(
                matches!(normalize_email(raw), Err(NormalizeError::BadEmail { .. })),
                "{raw:?}: {:?}",
                normalize_email(raw)
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&long).unwrap_err().to_string().contains("more than 64"));
    }
}
