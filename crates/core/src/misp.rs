//! MISP attribute types → indicator kinds, and composite (`a|b`) splitting.
//!
//! The mapping follows shared/contracts/misp-stix-taxii.md §A.4 (PyMISP describeTypes.json).
//! Composite values are split on the FIRST `|` only, as MISP core does
//! (`explode('|', $value, 2)`). Decisions:
//! - `filename|md5|sha1|sha256` and `malware-sample` (filename|md5 shaped) give the hash only;
//!   the file name is context, not something a control blocks.
//! - `ip-src`/`ip-dst` give IPv4, IPv6 or a CIDR by the value's shape (a /32 or /128 is the
//!   plain address); `ip-*|port` and `hostname|port` give the host part (the `host:port`
//!   spelling MISP rewrites on save is read too).
//! - `domain|ip` gives two indicators, domain then IP.
//! - `uri` gives a URL only when it is absolute (`scheme://…`); a bare path is not an
//!   indicator, so `None` is returned for it.
//! - `email-src`, `email-dst`, `email` give an email; `whois-registrant-email` and
//!   `dns-soa-email` do not: they describe who registered a domain, not a sender or
//!   recipient a mail gateway should block.
//! - `link` is a reference to a report, never an indicator; so are all other types
//!   (sha512, ssdeep, text, filename, regkey, …): `None`.
//!
//! This module must never guess a kind for a type it does not list: an unknown type is
//! `None`, so a new MISP type cannot slip into a block list unreviewed.

use crate::indicator::{Indicator, IndicatorKind};
use crate::normalize::{ip_by_shape, normalize, NormalizeError};

/// What one MISP attribute yields: `None` when its type carries no kind tibridge handles
/// (or, for `uri`, when the value is a relative path); otherwise one result per part, so a
/// `domain|ip` with a bad IP still yields its domain.
pub fn indicators_for_attribute(misp_type: &str, value: &str) -> Option<Vec<Result<Indicator, NormalizeError>>> {
    let misp_type = misp_type.trim().to_ascii_lowercase();
    let single = |kind| Some(vec![normalize(kind, value)]);
    match misp_type.as_str() {
        "md5" => single(IndicatorKind::Md5),
        "sha1" => single(IndicatorKind::Sha1),
        "sha256" => single(IndicatorKind::Sha256),
        "filename|md5" | "malware-sample" => {
            Some(vec![second_part(&misp_type, value).and_then(|h| normalize(IndicatorKind::Md5, h))])
        }
        "filename|sha1" => Some(vec![second_part(&misp_type, value).and_then(|h| normalize(IndicatorKind::Sha1, h))]),
        "filename|sha256" => {
            Some(vec![second_part(&misp_type, value).and_then(|h| normalize(IndicatorKind::Sha256, h))])
        }
        "ip-src" | "ip-dst" => Some(vec![ip_by_shape(value)]),
        "ip-src|port" | "ip-dst|port" => Some(vec![host_part(&misp_type, value).and_then(ip_by_shape)]),
        "domain" | "hostname" => single(IndicatorKind::Domain),
        "hostname|port" => Some(vec![host_part(&misp_type, value).and_then(|h| normalize(IndicatorKind::Domain, h))]),
        "domain|ip" => Some(match value.split_once('|') {
            Some((domain, ip)) => vec![normalize(IndicatorKind::Domain, domain), ip_by_shape(ip)],
            None => vec![Err(composite_error(&misp_type, value))],
        }),
        "url" => single(IndicatorKind::Url),
        "uri" => value.contains("://").then(|| vec![normalize(IndicatorKind::Url, value)]),
        "email-src" | "email-dst" | "email" => single(IndicatorKind::Email),
        _ => None,
    }
}

/// The MISP types whose values can hold `kind`: exactly the types for which
/// [`indicators_for_attribute`] can produce it. Warninglists name the attribute types they
/// apply to (`matching_attributes`); this says whether one applies to an indicator.
pub fn misp_types_for_kind(kind: IndicatorKind) -> &'static [&'static str] {
    match kind {
        IndicatorKind::Md5 => &["md5", "filename|md5", "malware-sample"],
        IndicatorKind::Sha1 => &["sha1", "filename|sha1"],
        IndicatorKind::Sha256 => &["sha256", "filename|sha256"],
        IndicatorKind::Domain => &["domain", "hostname", "domain|ip", "hostname|port"],
        IndicatorKind::Url => &["url", "uri"],
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => &["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"],
        IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => {
            &["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"]
        }
        IndicatorKind::Email => &["email-src", "email-dst", "email"],
    }
}

fn composite_error(misp_type: &str, value: &str) -> NormalizeError {
    NormalizeError::BadComposite { misp_type: misp_type.to_string(), value: crate::normalize::shown(value) }
}

/// The host of a `host|port` value. MISP itself rewrites `1.2.3.4:443`, `[2001:db8::1]:80`
/// and `host:8080` to the `|` form when an attribute is saved (PyMISP's
/// AttributeValidationTool does the same), but feeds written by other tools may still
/// carry the `:` form, so it is read too.
fn host_part<'a>(misp_type: &str, value: &'a str) -> Result<&'a str, NormalizeError> {
    if let Some((host, _)) = value.split_once('|') {
        return Ok(host);
    }
    let with_port = value.trim().rsplit_once(':').filter(|(host, port)| {
        let is_port = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        is_port && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
    });
    match with_port {
        Some((host, _)) => Ok(host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)),
        None => Err(composite_error(misp_type, value)),
    }
}

fn second_part<'a>(misp_type: &str, value: &'a str) -> Result<&'a str, NormalizeError> {
    value.split_once('|').map(|(_, second)| second).ok_or_else(|| composite_error(misp_type, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(misp_type: &str, value: &str) -> Vec<Result<(IndicatorKind, String), String>> {
        indicators_for_attribute(misp_type, value)
            .unwrap_or_else(|| panic!("{misp_type} gave None"))
            .into_iter()
            .map(|r| r.map(|i| (i.kind, i.value)).map_err(|e| e.to_string()))
            .collect()
    }

    fn one(kind: IndicatorKind, value: &str) -> Vec<Result<(IndicatorKind, String), String>> {
        vec![Ok((kind, value.to_string()))]
    }

    const SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    #[test]
    fn hash_types_and_file_composites_give_the_hash() {
        assert_eq!(values("md5", &MD5.to_uppercase()), one(IndicatorKind::Md5, MD5));
        assert_eq!(values("filename|sha1", &format!("bad.exe|{SHA1}")), one(IndicatorKind::Sha1, SHA1));
        assert_eq!(values("malware-sample", &format!("bad.zip|{MD5}")), one(IndicatorKind::Md5, MD5));
        let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(values("filename|sha256", &format!("a|b.exe|{sha256}")).len(), 1);
        assert!(values("filename|sha256", &format!("a|b.exe|{sha256}"))[0].is_err(), "split is on the first '|' only");
        assert_eq!(
            values("filename|md5", MD5),
            vec![Err(format!("MISP filename|md5 value {MD5:?} must have two parts separated by '|'"))]
        );
    }

    #[test]
    fn ip_types_pick_the_family_and_width_by_value() {
        assert_eq!(values("ip-dst", "1.2.3[.]4"), one(IndicatorKind::Ipv4, "1.2.3.4"));
        assert_eq!(values("ip-src", "2001:DB8::1"), one(IndicatorKind::Ipv6, "2001:db8::1"));
        assert_eq!(values("ip-src", "10.0.0.0/8"), one(IndicatorKind::Ipv4Cidr, "10.0.0.0/8"));
        assert_eq!(values("ip-src", "1.2.3.4/32"), one(IndicatorKind::Ipv4, "1.2.3.4"));
        assert_eq!(values("ip-dst", "2001:db8::/32"), one(IndicatorKind::Ipv6Cidr, "2001:db8::/32"));
        assert_eq!(values("ip-dst|port", "1.2.3.4|443"), one(IndicatorKind::Ipv4, "1.2.3.4"));
        assert_eq!(values("ip-src|port", "2001:db8::1|8080"), one(IndicatorKind::Ipv6, "2001:db8::1"));
        assert_eq!(values("ip-dst|port", "1.2.3.4:443"), one(IndicatorKind::Ipv4, "1.2.3.4"));
        assert_eq!(values("ip-dst|port", "[2001:db8::1]:80"), one(IndicatorKind::Ipv6, "2001:db8::1"));
        assert!(values("ip-dst|port", "2001:db8::1")[0].is_err(), "no port to strip");
        assert_eq!(values("hostname|port", "evil.example.com:8080"), one(IndicatorKind::Domain, "evil.example.com"));
        assert!(values("ip-dst", "10.0.0.1/8")[0].as_ref().is_err_and(|e| e.contains("10.0.0.0/8")));
    }

    #[test]
    fn network_types() {
        assert_eq!(values("hostname", "EVIL.example.com."), one(IndicatorKind::Domain, "evil.example.com"));
        assert_eq!(values("hostname|port", "evil.example.com|8080"), one(IndicatorKind::Domain, "evil.example.com"));
        assert_eq!(
            values("domain|ip", "evil.example.com|1.2.3.4"),
            vec![Ok((IndicatorKind::Domain, "evil.example.com".into())), Ok((IndicatorKind::Ipv4, "1.2.3.4".into()))]
        );
        let half = values("domain|ip", "evil.example.com|1.2.3.999");
        assert!(half[0].is_ok() && half[1].is_err(), "{half:?}");
        assert_eq!(
            values("url", "hxxp://evil[.]example.com/x#y"),
            one(IndicatorKind::Url, "http://evil.example.com/x")
        );
        assert_eq!(values("uri", "https://evil.example.com/a"), one(IndicatorKind::Url, "https://evil.example.com/a"));
        assert!(indicators_for_attribute("uri", "/wp-admin/x.php").is_none());
        assert_eq!(values("email-src", "Bad.Guy[@]Example[.]COM"), one(IndicatorKind::Email, "Bad.Guy@example.com"));
        assert_eq!(values("DOMAIN", "evil.example.com"), one(IndicatorKind::Domain, "evil.example.com"));
    }

    #[test]
    fn references_and_unhandled_types_are_none() {
        for t in [
            "link",
            "text",
            "comment",
            "sha512",
            "ssdeep",
            "filename",
            "regkey",
            "regkey|value",
            "whois-registrant-email",
            "AS",
            "",
        ] {
            assert!(indicators_for_attribute(t, "whatever").is_none(), "{t}");
        }
    }

    #[test]
    fn types_for_kind_agree_with_the_mapping() {
        let samples: [(IndicatorKind, &str); 10] = [
            (IndicatorKind::Md5, MD5),
            (IndicatorKind::Sha1, SHA1),
            (IndicatorKind::Sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (IndicatorKind::Domain, "evil.example.com"),
            (IndicatorKind::Url, "http://evil.example.com/"),
            (IndicatorKind::Ipv4, "1.2.3.4"),
            (IndicatorKind::Ipv6, "2001:db8::1"),
            (IndicatorKind::Ipv4Cidr, "10.0.0.0/8"),
            (IndicatorKind::Ipv6Cidr, "2001:db8::/32"),
            (IndicatorKind::Email, "a@example.com"),
        ];
        for (kind, value) in samples {
            for misp_type in misp_types_for_kind(kind) {
                let composite = match *misp_type {
                    "filename|md5" | "filename|sha1" | "filename|sha256" | "malware-sample" => {
                        format!("x.exe|{value}")
                    }
                    "ip-src|port" | "ip-dst|port" | "hostname|port" => format!("{value}|80"),
                    "domain|ip" if kind == IndicatorKind::Domain => format!("{value}|1.2.3.4"),
                    "domain|ip" => format!("evil.example.com|{value}"),
                    _ => value.to_string(),
                };
                let got = indicators_for_attribute(misp_type, &composite).unwrap_or_default();
                assert!(
                    got.iter().any(|r| r.as_ref().is_ok_and(|i| i.kind == kind)),
                    "{misp_type} {composite} gave {got:?}"
                );
            }
        }
    }

    /// PyMISP's attribute validation (pymisp/tools/attributevalidationtool.py) as an oracle:
    /// reads `type<TAB>value` lines from the file named by `TIBRIDGE_MISP_ORACLE` and prints
    /// one JSON line per case, `[type, value, "ok"|"refused"|"none", detail]`, for a script to
    /// compare with PyMISP's verdicts. Without the variable it does nothing.
    /// `TIBRIDGE_MISP_ORACLE=cases.tsv cargo test -p tibridge-core --lib misp::tests::oracle_dump -- --ignored --nocapture`
    #[test]
    #[ignore = "oracle comparison, needs an input file"]
    fn oracle_dump() {
        let Ok(path) = std::env::var("TIBRIDGE_MISP_ORACLE") else { return };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some((misp_type, value)) = line.split_once('\t') else { continue };
            let verdict = match indicators_for_attribute(misp_type, value) {
                None => ["none".to_string(), String::new()],
                Some(results) => match results.into_iter().collect::<Result<Vec<_>, _>>() {
                    Ok(found) => {
                        ["ok".to_string(), found.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join("|")]
                    }
                    Err(e) => ["refused".to_string(), e.to_string()],
                },
            };
            println!("ORACLE {}", serde_json::json!([misp_type, value, verdict[0], verdict[1]]));
        }
    }
}
