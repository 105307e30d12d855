//! IP addresses and networks in one canonical text each.
//!
//! - IPv4 is a strict dotted quad of decimal octets. A leading zero (`010.1.1.1`) is refused:
//!   inet_aton and many firewalls read `010` as octal 8, other tools as decimal 10, so the
//!   value has no single meaning. Short forms (`1.2.3`, `0x7f.1`) are refused for the same
//!   reason.
//! - IPv6 is written as RFC 5952 text (lowercase, longest zero run compressed) by std; an
//!   IPv4-mapped address (`::ffff:1.2.3.4`) stays IPv6, it is what the source said. A zone
//!   index (`fe80::1%eth0`) is refused: it names an interface on one machine.
//! - A CIDR whose address has host bits set is refused with the network it probably meant:
//!   silently truncating `10.0.0.1/8` would block 16 million addresses nobody asked for.
//!   A bare address given as a CIDR is its /32 or /128. How wide a network may be is policy,
//!   decided elsewhere.
//!
//! It must never accept text that two parsers would read as different addresses.

use super::{shown, NormalizeError};
use crate::indicator::IndicatorKind;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

fn bad(kind: IndicatorKind, value: &str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError::BadIp { kind, value: shown(value), reason: reason.into() }
}

/// True for text made only of digits and dots with at least one dot: the user meant an
/// IPv4 address, so its errors should be about IPv4, not about domain names.
pub(crate) fn looks_like_dotted_quad(value: &str) -> bool {
    value.contains('.') && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn parse_v4(kind: IndicatorKind, value: &str) -> Result<Ipv4Addr, NormalizeError> {
    if value.contains(':') && value.parse::<Ipv6Addr>().is_ok() {
        return Err(bad(kind, value, "it is an IPv6 address"));
    }
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() != 4 {
        return Err(bad(kind, value, format!("it has {} dot-separated parts, an IPv4 address has 4", parts.len())));
    }
    let mut octets = [0u8; 4];
    for (slot, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(kind, value, format!("octet {:?} is not a decimal number from 0 to 255", shown(part))));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(bad(
                kind,
                value,
                format!("octet {part:?} has a leading zero, which some tools read as octal and others as decimal"),
            ));
        }
        *slot = part.parse::<u8>().map_err(|_| bad(kind, value, format!("octet {part} is more than 255")))?;
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_v6(kind: IndicatorKind, value: &str) -> Result<Ipv6Addr, NormalizeError> {
    let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    if let Some((_, zone)) = inner.split_once('%') {
        return Err(bad(kind, value, format!("zone index %{} names an interface on one machine", shown(zone))));
    }
    if !inner.contains(':') {
        return Err(if parse_v4(kind, inner).is_ok() {
            bad(kind, value, "it is an IPv4 address")
        } else {
            bad(kind, value, "it has no ':'")
        });
    }
    // std refuses leading zeros in an embedded IPv4 part too, so the same ambiguity rule holds.
    inner.parse::<Ipv6Addr>().map_err(|_| bad(kind, value, "it is not IPv6 text (RFC 4291 section 2.2)"))
}

/// Splits `addr/len`, refusing prefix spellings that parsers disagree on (`/08`, `/+8`).
fn split_prefix(kind: IndicatorKind, value: &str, max: u8) -> Result<(&str, u8), NormalizeError> {
    let Some((addr, len)) = value.split_once('/') else {
        return Ok((value, max));
    };
    let well_formed = !len.is_empty()
        && len.len() <= 3
        && len.bytes().all(|b| b.is_ascii_digit())
        && !(len.len() > 1 && len.starts_with('0'));
    if !well_formed {
        return Err(bad(kind, value, format!("prefix length {:?} is not a plain decimal number", shown(len))));
    }
    match len.parse::<u8>() {
        Ok(n) if n <= max => Ok((addr, n)),
        _ => Err(bad(kind, value, format!("prefix length /{len} is more than {max}"))),
    }
}

/// An IPv4 address; `a.b.c.d/32` is accepted as the address it is.
pub(crate) fn normalize_ipv4(value: &str) -> Result<String, NormalizeError> {
    let kind = IndicatorKind::Ipv4;
    let (addr, len) = split_prefix(kind, value, 32)?;
    if len != 32 {
        return Err(bad(kind, value, format!("it is a /{len} network, not one address")));
    }
    Ok(parse_v4(kind, addr)?.to_string())
}

/// An IPv6 address; `addr/128` is accepted as the address it is.
pub(crate) fn normalize_ipv6(value: &str) -> Result<String, NormalizeError> {
    let kind = IndicatorKind::Ipv6;
    let (addr, len) = split_prefix(kind, value, 128)?;
    if len != 128 {
        return Err(bad(kind, value, format!("it is a /{len} network, not one address")));
    }
    Ok(parse_v6(kind, addr)?.to_string())
}

pub(crate) fn normalize_ipv4_cidr(value: &str) -> Result<String, NormalizeError> {
    let kind = IndicatorKind::Ipv4Cidr;
    let (addr, len) = split_prefix(kind, value, 32)?;
    let addr = parse_v4(kind, addr)?;
    let net = Ipv4Net::new(addr, len).map_err(|_| bad(kind, value, format!("prefix length /{len} is more than 32")))?;
    let network = net.trunc();
    if network.addr() != addr {
        return Err(NormalizeError::CidrHostBits { given: net.to_string(), canonical: network.to_string() });
    }
    Ok(network.to_string())
}

pub(crate) fn normalize_ipv6_cidr(value: &str) -> Result<String, NormalizeError> {
    let kind = IndicatorKind::Ipv6Cidr;
    let (addr, len) = split_prefix(kind, value, 128)?;
    let addr = parse_v6(kind, addr)?;
    let net =
        Ipv6Net::new(addr, len).map_err(|_| bad(kind, value, format!("prefix length /{len} is more than 128")))?;
    let network = net.trunc();
    if network.addr() != addr {
        return Err(NormalizeError::CidrHostBits { given: net.to_string(), canonical: network.to_string() });
    }
    Ok(network.to_string())
}

/// An address or a network, family by shape; a single-address network (/32, /128) is
/// returned as the address, so `1.2.3.4/32` and `1.2.3.4` are one indicator. Used by
/// [`super::detect`] and for MISP `ip-src`/`ip-dst`, whose values may be either.
pub(crate) fn ip_or_cidr(value: &str) -> Result<(IndicatorKind, String), NormalizeError> {
    let v6 = value.contains(':');
    let single = match value.split_once('/') {
        None => true,
        Some((_, len)) => len == if v6 { "128" } else { "32" },
    };
    Ok(match (v6, single) {
        (false, true) => (IndicatorKind::Ipv4, normalize_ipv4(value)?),
        (true, true) => (IndicatorKind::Ipv6, normalize_ipv6(value)?),
        (false, false) => (IndicatorKind::Ipv4Cidr, normalize_ipv4_cidr(value)?),
        (true, false) => (IndicatorKind::Ipv6Cidr, normalize_ipv6_cidr(value)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_a_strict_dotted_quad() {
        assert_eq!(normalize_ipv4("1.2.3.4").unwrap(), "1.2.3.4");
        assert_eq!(normalize_ipv4("1.2.3.4/32").unwrap(), "1.2.3.4");
        assert_eq!(normalize_ipv4("0.0.0.0").unwrap(), "0.0.0.0");
        let octal = normalize_ipv4("010.1.1.1").unwrap_err().to_string();
        assert!(octal.contains("leading zero"), "{octal}");
        assert!(normalize_ipv4("1.2.3").unwrap_err().to_string().contains("3 dot-separated parts"));
        assert!(normalize_ipv4("1.2.3.256").unwrap_err().to_string().contains("more than 255"));
        assert!(normalize_ipv4("0x7f.0.0.1").is_err());
        assert!(normalize_ipv4("1.2.3.4/24").unwrap_err().to_string().contains("/24 network"));
        assert!(normalize_ipv4("::1").unwrap_err().to_string().contains("IPv6"));
        assert!(normalize_ipv4("1.2.3.+4").is_err());
    }

    #[test]
    fn ipv6_is_rfc5952_text() {
        assert_eq!(normalize_ipv6("2001:0DB8:0000:0000:0000:0000:0000:0001").unwrap(), "2001:db8::1");
        assert_eq!(normalize_ipv6("[2001:db8::1]").unwrap(), "2001:db8::1");
        assert_eq!(normalize_ipv6("::FFFF:1.2.3.4").unwrap(), "::ffff:1.2.3.4");
        assert_eq!(normalize_ipv6("2001:db8:0:0:1:0:0:1").unwrap(), "2001:db8::1:0:0:1");
        assert!(normalize_ipv6("fe80::1%eth0").unwrap_err().to_string().contains("zone index"));
        assert!(normalize_ipv6("1.2.3.4").unwrap_err().to_string().contains("IPv4"));
        assert!(normalize_ipv6("2001:db8::1::2").is_err());
    }

    #[test]
    fn cidrs_with_host_bits_name_the_network() {
        assert_eq!(normalize_ipv4_cidr("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(normalize_ipv4_cidr("1.2.3.4").unwrap(), "1.2.3.4/32");
        assert_eq!(normalize_ipv4_cidr("1.2.3.4/32").unwrap(), "1.2.3.4/32");
        let err = normalize_ipv4_cidr("10.0.0.1/8").unwrap_err();
        assert_eq!(err, NormalizeError::CidrHostBits { given: "10.0.0.1/8".into(), canonical: "10.0.0.0/8".into() });
        assert_eq!(err.to_string(), "10.0.0.1/8 has host bits set: the network is 10.0.0.0/8");
        assert!(normalize_ipv4_cidr("10.0.0.0/08").is_err());
        assert!(normalize_ipv4_cidr("10.0.0.0/33").unwrap_err().to_string().contains("more than 32"));
        assert!(normalize_ipv4_cidr("10.0.0.0/").is_err());
        assert_eq!(normalize_ipv6_cidr("2001:DB8::/32").unwrap(), "2001:db8::/32");
        assert!(matches!(normalize_ipv6_cidr("2001:db8::1/64"), Err(NormalizeError::CidrHostBits { .. })));
        assert!(normalize_ipv6_cidr("2001:db8::/129").is_err());
    }

    #[test]
    fn single_address_networks_are_addresses() {
        assert_eq!(ip_or_cidr("1.2.3.4/32").unwrap(), (IndicatorKind::Ipv4, "1.2.3.4".into()));
        assert_eq!(ip_or_cidr("2001:db8::1/128").unwrap(), (IndicatorKind::Ipv6, "2001:db8::1".into()));
        assert_eq!(ip_or_cidr("10.0.0.0/8").unwrap(), (IndicatorKind::Ipv4Cidr, "10.0.0.0/8".into()));
        assert_eq!(ip_or_cidr("2001:db8::/48").unwrap(), (IndicatorKind::Ipv6Cidr, "2001:db8::/48".into()));
    }
}
