//! Refanging and canonical forms for every indicator kind.
//!
//! This is the only door through which outside text becomes an [`Indicator`]: two sources
//! that write the same thing differently (`hxxps://EVIL[.]example.com.` and
//! `https://evil.example.com/`) must come out equal, or the catalog double-counts and the
//! planner adds and removes the same block. It must never panic on any input, never accept a
//! value a control would read differently from what we stored, and never "fix" a value by
//! guessing (a CIDR with host bits set is refused, not truncated).
//!
//! Decisions, each documented where it is enforced:
//! - [`refang`]: [`refang()`] undoes defanging and strips wrapping; see its module.
//! - domains: lowercase, UTS-46 to punycode, no trailing dot, LDH labels of 1–63 characters,
//!   at most 253 in all, at least two labels, an alphabetic (or `xn--`) top-level label, `_`
//!   only in labels left of the registrable domain, and never a bare public suffix.
//! - URLs: WHATWG parsing (url crate), any scheme with a host, host checked like a domain,
//!   fragment and default port dropped; a value without `scheme://` is read as `http://`.
//! - IPs: strict dotted quad (a leading zero is refused: `010` is 8 to inet_aton and 10 to
//!   most parsers), IPv6 in RFC 5952 text, no zone index; IPv4-mapped IPv6 stays IPv6.
//! - CIDRs: host bits set is an error naming the network; a bare address is its /32 or /128.
//! - emails: local part kept as written, domain checked like a domain.
//!
//! Every successful result is a fixed point: `normalize(k, &normalize(k, x)?.value)` returns
//! the same indicator (property-tested and fuzzed).

mod domain;
mod email;
mod hash;
mod ip;
mod refang;
mod web;

use crate::indicator::{Indicator, IndicatorKind};
use std::borrow::Cow;

pub use refang::refang;

/// Longest raw value accepted before any parsing, so a 10 MB "indicator" costs nothing.
pub const MAX_RAW_LEN: usize = 8192;

/// Why a value is not a usable indicator. Messages name the value (shortened) and the rule
/// it breaks, so a skipped line in a feed report can be fixed without reading code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("empty value")]
    Empty,
    #[error("value is {len} bytes long, more than the {max} accepted")]
    TooLong { len: usize, max: usize },
    #[error("{kind} must be {expected} hex digits, got {got}")]
    HashLength { kind: IndicatorKind, expected: usize, got: usize },
    #[error("{kind} must be hex digits only, found {found:?} at position {position}")]
    HashChar { kind: IndicatorKind, found: char, position: usize },
    #[error("{value:?} is not a domain name: {reason}")]
    BadDomain { value: String, reason: String },
    #[error(
        "{0:?} is a public suffix shared by unrelated owners (like com or co.uk), not a domain one party controls"
    )]
    PublicSuffix(String),
    #[error("{value:?} is not a usable URL: {reason}")]
    BadUrl { value: String, reason: String },
    #[error("{value:?} is not a valid {kind}: {reason}")]
    BadIp { kind: IndicatorKind, value: String, reason: String },
    #[error("{given} has host bits set: the network is {canonical}")]
    CidrHostBits { given: String, canonical: String },
    #[error("{value:?} is not an email address: {reason}")]
    BadEmail { value: String, reason: String },
    #[error("MISP {misp_type} value {value:?} must have two parts separated by '|'")]
    BadComposite { misp_type: String, value: String },
}

/// Longest piece of a rejected value quoted back in an error: enough to find it in a feed,
/// short enough that a hostile 8 KB value does not flood the log.
const SHOWN_CHARS: usize = 80;

/// The value as quoted in an error message, cut at [`SHOWN_CHARS`] characters.
pub(crate) fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Turns one raw value of a known kind into its canonical indicator.
///
/// The kind is trusted (it comes from a typed field such as a MISP attribute type); the
/// value is not. Refanging happens here, so callers pass values exactly as received.
pub fn normalize(kind: IndicatorKind, raw: &str) -> Result<Indicator, NormalizeError> {
    let value = prepare(raw)?;
    let canonical = match kind {
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => hash::normalize_hash(kind, &value)?,
        IndicatorKind::Domain => domain::normalize_domain(&value)?,
        IndicatorKind::Url => fixed_point(kind, &value, web::normalize_url)?,
        IndicatorKind::Ipv4 => ip::normalize_ipv4(&value)?,
        IndicatorKind::Ipv6 => ip::normalize_ipv6(&value)?,
        IndicatorKind::Ipv4Cidr => ip::normalize_ipv4_cidr(&value)?,
        IndicatorKind::Ipv6Cidr => ip::normalize_ipv6_cidr(&value)?,
        IndicatorKind::Email => fixed_point(kind, &value, email::normalize_email)?,
    };
    Ok(Indicator::from_canonical(kind, canonical))
}

/// Guesses the kind of a bare value from its shape, for plain-text lists where nothing else
/// says what a line is, and normalizes it.
///
/// Order: `scheme://` → URL; `@` without `/` → email; `/` after an IP → CIDR (a /32 or /128
/// is returned as the plain address); any other `/` → URL read as `http://`; 32/40/64 hex
/// digits → md5/sha1/sha256; a dotted quad or an IPv6 text → IP; else a domain. A port after
/// an IP or a domain (`1.2.3.4:8080`, `[2001:db8::1]:443`, `evil.com:8080`) is dropped, since
/// the controls we feed block hosts, not ports. A run of 24–72 hex digits of the wrong length
/// gets the error of the nearest hash kind, which is what it almost always is.
pub fn detect(raw: &str) -> Result<Indicator, NormalizeError> {
    let value = prepare(raw)?;
    let (kind, canonical) = detect_prepared(&value)?;
    Ok(Indicator::from_canonical(kind, canonical))
}

/// An address or a network, chosen by the value's shape (a /32 or /128 is the address):
/// for sources such as MISP `ip-src` whose type says "IP" but not which kind.
pub(crate) fn ip_by_shape(raw: &str) -> Result<Indicator, NormalizeError> {
    let value = prepare(raw)?;
    let (kind, canonical) = ip::ip_or_cidr(&value)?;
    Ok(Indicator::from_canonical(kind, canonical))
}

/// Length check then refang: the order matters, the limit is on what we were sent.
fn prepare(raw: &str) -> Result<Cow<'_, str>, NormalizeError> {
    if raw.len() > MAX_RAW_LEN {
        return Err(NormalizeError::TooLong { len: raw.len(), max: MAX_RAW_LEN });
    }
    let value = refang(raw);
    if value.is_empty() {
        return Err(NormalizeError::Empty);
    }
    Ok(value)
}

/// Applies `step` until its output, refanged, maps to itself: URL serialization and email
/// local parts are free text, so one pass can produce text that refangs differently (a path
/// `/a[/./]` resolves to `/a[/]`). Three rounds settle every case seen; a value that still
/// moves has no canonical form and is refused rather than stored in two spellings.
fn fixed_point(
    kind: IndicatorKind,
    value: &str,
    step: fn(&str) -> Result<String, NormalizeError>,
) -> Result<String, NormalizeError> {
    let mut current = step(value)?;
    for _ in 0..3 {
        if current.len() > MAX_RAW_LEN {
            return Err(NormalizeError::TooLong { len: current.len(), max: MAX_RAW_LEN });
        }
        let again = step(&refang(&current))?;
        if again == current {
            return Ok(current);
        }
        current = again;
    }
    let reason = "has no stable canonical form (it reads differently once written out)".to_string();
    Err(match kind {
        IndicatorKind::Email => NormalizeError::BadEmail { value: shown(value), reason },
        _ => NormalizeError::BadUrl { value: shown(value), reason },
    })
}

fn detect_prepared(value: &str) -> Result<(IndicatorKind, String), NormalizeError> {
    if value.contains("://") {
        return Ok((IndicatorKind::Url, fixed_point(IndicatorKind::Url, value, web::normalize_url)?));
    }
    if value.contains('@') && !value.contains('/') {
        return Ok((IndicatorKind::Email, fixed_point(IndicatorKind::Email, value, email::normalize_email)?));
    }
    if let Some((before, _)) = value.split_once('/') {
        if before.parse::<std::net::IpAddr>().is_ok() || ip::looks_like_dotted_quad(before) {
            return ip::ip_or_cidr(value);
        }
        return Ok((IndicatorKind::Url, fixed_point(IndicatorKind::Url, value, web::normalize_url)?));
    }
    if let Some(kind) = hash::kind_by_shape(value) {
        return Ok((kind, hash::normalize_hash(kind, value)?));
    }
    if ip::looks_like_dotted_quad(value) {
        return Ok((IndicatorKind::Ipv4, ip::normalize_ipv4(value)?));
    }
    if let Some((host, port)) = value.rsplit_once(':') {
        let is_port = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            if is_port {
                return Ok((IndicatorKind::Ipv6, ip::normalize_ipv6(v6)?));
            }
        }
        if is_port && !host.contains(':') {
            if ip::looks_like_dotted_quad(host) {
                return Ok((IndicatorKind::Ipv4, ip::normalize_ipv4(host)?));
            }
            return Ok((IndicatorKind::Domain, domain::normalize_domain(host)?));
        }
        return Ok((IndicatorKind::Ipv6, ip::normalize_ipv6(value)?));
    }
    Ok((IndicatorKind::Domain, domain::normalize_domain(value)?))
}

#[cfg(test)]
mod tests;
