//! The user's allowlist: values tibridge must never send to a block list.
//!
//! A plain text file, one entry per line: `#` starts a comment line; after the entry, the
//! rest of the line is a reason (an optional leading `#` is dropped), e.g.
//! `cdn.example.com  # our CDN`. An entry is any indicator value, its kind detected:
//! - a domain covers itself, its subdomains, URLs on them and email addresses at them;
//! - an IP or CIDR covers the addresses and networks that overlap it (an indicator network
//!   holding an allowed address would block that address too, so it is covered);
//! - a URL, hash or email address covers exactly itself.
//!
//! Parsing never fails as a whole: a bad line is an [`AllowlistError`] and the others load.
//! Matching is hash and prefix-table lookups, never a scan of the entries.

use super::ipset::{label_suffixes, parse_net, url_host, url_ip_host, NetSet};
use crate::indicator::{Indicator, IndicatorKind};
use crate::normalize::detect;
use std::collections::HashMap;

/// A line of the allowlist that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AllowlistError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    indicator: Indicator,
    reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
    /// Exact entries (every kind), by indicator.
    exact: HashMap<Indicator, usize>,
    /// Domain entries, by domain, covering subdomains.
    domains: HashMap<String, usize>,
    /// IP and CIDR entries.
    networks: NetSet,
}

impl Allowlist {
    pub fn parse(text: &str) -> (Allowlist, Vec<AllowlistError>) {
        let mut list = Allowlist::default();
        let mut errors = Vec::new();
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw_line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (token, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
            // A '#' glued to a non-URL entry starts its comment; in a URL it is a fragment.
            let (token, glued) = match token.split_once('#') {
                Some((before, after)) if !token.contains("://") => (before, after),
                _ => (token, ""),
            };
            let reason = format!("{glued} {}", rest.trim().trim_start_matches('#')).trim().to_string();
            match read_entry(token) {
                Ok(indicator) => list.add(Entry { line, indicator, reason: (!reason.is_empty()).then_some(reason) }),
                Err(reason) => errors.push(AllowlistError { line, reason }),
            }
        }
        list.networks.finish();
        (list, errors)
    }

    fn add(&mut self, entry: Entry) {
        if self.exact.contains_key(&entry.indicator) {
            return;
        }
        let index = self.entries.len();
        self.exact.insert(entry.indicator.clone(), index);
        match entry.indicator.kind {
            IndicatorKind::Domain => {
                self.domains.entry(entry.indicator.value.clone()).or_insert(index);
            }
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 | IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => {
                if let Some(net) = parse_net(&entry.indicator.value) {
                    self.networks.insert(net, index);
                }
            }
            _ => {}
        }
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that covers this indicator, as `line N: value (reason)`.
    pub fn matching(&self, indicator: &Indicator) -> Option<String> {
        let index = self.find(indicator)?;
        let entry = self.entries.get(index)?;
        Some(match &entry.reason {
            Some(reason) => format!("line {}: {} ({reason})", entry.line, entry.indicator.value),
            None => format!("line {}: {}", entry.line, entry.indicator.value),
        })
    }

    fn find(&self, indicator: &Indicator) -> Option<usize> {
        if let Some(index) = self.exact.get(indicator) {
            return Some(*index);
        }
        let value = indicator.value.as_str();
        match indicator.kind {
            IndicatorKind::Domain => self.domain(value),
            IndicatorKind::Url => match url_ip_host(value) {
                Some(net) => self.networks.overlapping(net),
                None => url_host(value).and_then(|host| self.domain(&host.to_lowercase())),
            },
            IndicatorKind::Email => value.rsplit_once('@').and_then(|(_, domain)| self.domain(&domain.to_lowercase())),
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 | IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => {
                parse_net(value).and_then(|net| self.networks.overlapping(net))
            }
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => None,
        }
    }

    fn domain(&self, host: &str) -> Option<usize> {
        if self.domains.is_empty() {
            return None;
        }
        label_suffixes(host).find_map(|suffix| self.domains.get(suffix).copied())
    }
}

/// The entry's kind comes from `detect` (URL, email, IP/CIDR, hash, else domain), which
/// also puts it in canonical form.
fn read_entry(token: &str) -> Result<Indicator, String> {
    detect(token).map_err(|e| format!("{token:?} is not an indicator value: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# tibridge allowlist
cdn.example.com   # our CDN
10.0.0.0/8 internal networks
192.0.2.10
2001:db8::/32
d41d8cd98f00b204e9800998ecf8427e  empty file
https://intranet.example.net/login#top
ceo@corp.example
not an entry
partner.example#glued comment

";

    fn ind(kind: IndicatorKind, value: &str) -> Indicator {
        Indicator::from_canonical(kind, value)
    }

    #[test]
    fn parses_entries_reasons_and_errors() {
        let (list, errors) = Allowlist::parse(TEXT);
        assert_eq!(list.len(), 8, "{errors:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 9);
        assert_eq!(
            list.matching(&ind(IndicatorKind::Domain, "cdn.example.com")).as_deref(),
            Some("line 2: cdn.example.com (our CDN)")
        );
        assert_eq!(
            list.matching(&ind(IndicatorKind::Ipv4, "10.20.30.40")).as_deref(),
            Some("line 3: 10.0.0.0/8 (internal networks)")
        );
        assert_eq!(
            list.matching(&ind(IndicatorKind::Domain, "partner.example")).as_deref(),
            Some("line 10: partner.example (glued comment)")
        );
    }

    #[test]
    fn coverage_rules() {
        let (list, _) = Allowlist::parse(TEXT);
        let hit = |kind, value| list.matching(&ind(kind, value)).is_some();
        assert!(hit(IndicatorKind::Domain, "img.cdn.example.com"));
        assert!(hit(IndicatorKind::Url, "http://img.cdn.example.com/a.js"));
        assert!(hit(IndicatorKind::Email, "ops@cdn.example.com"));
        assert!(!hit(IndicatorKind::Domain, "example.com"), "a subdomain entry does not cover its parent");
        assert!(!hit(IndicatorKind::Domain, "evilcdn.example.com"));
        assert!(hit(IndicatorKind::Ipv4Cidr, "10.1.0.0/16"));
        assert!(hit(IndicatorKind::Ipv4Cidr, "192.0.2.0/24"), "the network holds an allowed address");
        assert!(!hit(IndicatorKind::Ipv4, "192.0.2.11"));
        assert!(hit(IndicatorKind::Url, "http://10.0.0.5/x"));
        assert!(hit(IndicatorKind::Ipv6, "2001:db8::5"));
        assert!(hit(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!hit(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427f"));
        assert!(hit(IndicatorKind::Email, "ceo@corp.example"));
        assert!(!hit(IndicatorKind::Email, "cfo@corp.example"));
        assert!(!hit(IndicatorKind::Url, "https://intranet.example.net/other"));
    }

    #[test]
    fn empty_and_garbage_input_never_fail() {
        let (list, errors) = Allowlist::parse("");
        assert!(list.is_empty() && errors.is_empty());
        let (list, errors) = Allowlist::parse("\u{0}\u{feff}\n### \n  \t\n%%%% ###\n");
        assert!(list.is_empty());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(list.matching(&ind(IndicatorKind::Domain, "a.example")), None);
    }
}
