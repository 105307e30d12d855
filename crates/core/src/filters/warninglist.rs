//! MISP warninglists: known-benign values (top sites, public resolvers, reserved ranges)
//! that must not reach a block list.
//!
//! Reads the misp-warninglists `list.json` format and matches indicators the way MISP core
//! does (contract A.8): `string` exact, `substring` contained, `hostname` by label suffix,
//! `cidr` by network, `regex` as PCRE with delimiters and flags. Lookups are hash-set or
//! prefix-table based so tens of thousands of entries cost the same as ten.
//!
//! Matching is conservative: when in doubt a value is reported as a hit, because a false
//! hit only holds an indicator back for review, while a miss can block a CDN for everyone.
//! This module does no I/O: the engine reads the files and calls [`Warninglist::from_json`].

use super::ipset::{label_suffixes, parse_net, url_host, url_ip_host, RangeSet};
use crate::indicator::{Indicator, IndicatorKind};
use crate::misp::misp_types_for_kind;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use serde_json::Value;
use std::collections::HashSet;

/// Why a warninglist file could not be used at all. Single bad entries are not errors;
/// they are listed in [`Warninglist::rejected`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarninglistError {
    #[error("not a valid warninglist JSON document: {0}")]
    Json(String),
    #[error("warninglist {list:?}: field {field:?} {reason}")]
    Field { list: String, field: &'static str, reason: String },
    #[error("warninglist {list:?}: unknown type {found:?} (expected string, substring, hostname, cidr or regex)")]
    Type { list: String, found: String },
}

/// The five list types of the misp-warninglists schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    String,
    Substring,
    Hostname,
    Cidr,
    Regex,
}

impl ListType {
    pub fn as_str(self) -> &'static str {
        match self {
            ListType::String => "string",
            ListType::Substring => "substring",
            ListType::Hostname => "hostname",
            ListType::Cidr => "cidr",
            ListType::Regex => "regex",
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Lower-cased entries (exact for `string`, label suffixes for `hostname`).
    Set(HashSet<String>),
    Substring(Vec<String>),
    Cidr(RangeSet),
    Regex(Vec<Regex>),
}

/// One warninglist, ready to match.
#[derive(Debug, Clone)]
pub struct Warninglist {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub list_type: ListType,
    /// The MISP attribute types the list applies to; empty or containing `ALL` = every type.
    pub matching_attributes: Vec<String>,
    /// Entries that could not be used (a malformed network, a regex the `regex` crate cannot
    /// compile), each with why; the rest of the list still works.
    pub rejected: Vec<String>,
    matcher: Matcher,
}

impl Warninglist {
    /// Parses a misp-warninglists `list.json`. Fails only when the document as a whole is
    /// unusable (not JSON, a required field missing, an unknown type).
    pub fn from_json(bytes: &[u8]) -> Result<Warninglist, WarninglistError> {
        let root: Value = serde_json::from_slice(bytes).map_err(|e| WarninglistError::Json(e.to_string()))?;
        let map = root.as_object().ok_or_else(|| WarninglistError::Json("the document is not a JSON object".into()))?;
        let name = match map.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_string(),
            _ => {
                return Err(WarninglistError::Field {
                    list: "<unnamed>".into(),
                    field: "name",
                    reason: "is missing or not a non-empty string".into(),
                })
            }
        };
        let field = |field: &'static str, reason: &str| WarninglistError::Field {
            list: name.clone(),
            field,
            reason: reason.into(),
        };
        let version = match map.get("version") {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| field("version", "is not a non-negative integer"))?,
            Some(Value::String(s)) => {
                s.trim().parse().map_err(|_| field("version", "is not a non-negative integer"))?
            }
            _ => return Err(field("version", "is missing or not an integer")),
        };
        let description = match map.get("description") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(field("description", "is missing or not a string")),
        };
        let list_type = match map.get("type").and_then(Value::as_str) {
            Some("string") => ListType::String,
            Some("substring") => ListType::Substring,
            Some("hostname") => ListType::Hostname,
            Some("cidr") => ListType::Cidr,
            Some("regex") => ListType::Regex,
            Some(other) => return Err(WarninglistError::Type { list: name.clone(), found: other.to_string() }),
            None => return Err(field("type", "is missing or not a string")),
        };
        let matching_attributes = match map.get("matching_attributes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(|s| s.trim().to_string()).collect(),
            Some(_) => return Err(field("matching_attributes", "is not a list")),
        };
        let entries = match map.get("list") {
            Some(Value::Array(items)) => items,
            _ => return Err(field("list", "is missing or not a list")),
        };

        let mut rejected = Vec::new();
        let texts = entries.iter().enumerate().filter_map(|(i, item)| match item.as_str().map(str::trim) {
            Some(text) if !text.is_empty() => Some(text),
            Some(_) => None,
            None => {
                rejected.push(format!("entry {i} is not a string"));
                None
            }
        });
        let texts: Vec<&str> = texts.collect();
        let matcher = match list_type {
            ListType::String => Matcher::Set(texts.iter().map(|t| t.to_lowercase()).collect()),
            ListType::Hostname => Matcher::Set(
                texts.iter().map(|t| t.trim_matches('.').to_lowercase()).filter(|t| !t.is_empty()).collect(),
            ),
            ListType::Substring => {
                let mut subs: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
                subs.sort();
                subs.dedup();
                Matcher::Substring(subs)
            }
            ListType::Cidr => {
                let mut nets = Vec::with_capacity(texts.len());
                for text in &texts {
                    match parse_net(text) {
                        Some(net) => nets.push(net),
                        None => rejected.push(format!("{text:?} is not an IP address or CIDR network")),
                    }
                }
                Matcher::Cidr(RangeSet::from_nets(nets))
            }
            ListType::Regex => {
                let mut regexes = Vec::new();
                for text in &texts {
                    match pcre_to_regex(text) {
                        Ok(regex) => regexes.push(regex),
                        Err(reason) => rejected.push(format!("regex {text:?} skipped: {reason}")),
                    }
                }
                Matcher::Regex(regexes)
            }
        };
        Ok(Warninglist { name, version, description, list_type, matching_attributes, rejected, matcher })
    }

    /// How many usable entries the list holds.
    pub fn len(&self) -> usize {
        match &self.matcher {
            Matcher::Set(set) => set.len(),
            Matcher::Substring(subs) => subs.len(),
            Matcher::Cidr(set) => set.len(),
            Matcher::Regex(regexes) => regexes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the list's `matching_attributes` cover this kind. A list with none (or `ALL`)
    /// covers every kind. Composite types (`domain|ip`) cover the kinds of either half, and a
    /// kind the MISP type table knows nothing about is covered (conservative).
    pub fn applies_to(&self, kind: IndicatorKind) -> bool {
        if self.matching_attributes.is_empty() || self.matching_attributes.iter().any(|a| a.eq_ignore_ascii_case("ALL"))
        {
            return true;
        }
        let types = misp_types_for_kind(kind);
        if types.is_empty() {
            return true;
        }
        self.matching_attributes.iter().any(|attribute| {
            types.iter().any(|t| attribute.eq_ignore_ascii_case(t))
                || (attribute.contains('|')
                    && attribute.split('|').any(|half| {
                        types.iter().any(|t| half.eq_ignore_ascii_case(t) || (half == "ip" && t.starts_with("ip-")))
                    }))
        })
    }

    /// Whether the indicator's value is on the list (ignoring `matching_attributes`; see
    /// [`Warninglist::applies_to`]).
    pub fn contains(&self, indicator: &Indicator) -> bool {
        self.contains_probe(&Probe::new(indicator))
    }

    fn contains_probe(&self, probe: &Probe<'_>) -> bool {
        match &self.matcher {
            Matcher::Set(set) => match self.list_type {
                ListType::Hostname => {
                    probe.host.as_ref().is_some_and(|host| label_suffixes(host).any(|suffix| set.contains(suffix)))
                }
                _ => set.contains(probe.lower.as_ref()),
            },
            Matcher::Substring(subs) => subs.iter().any(|s| probe.lower.contains(s.as_str())),
            Matcher::Cidr(set) => probe.net.is_some_and(|net| set.overlaps(net)),
            Matcher::Regex(regexes) => regexes.iter().any(|r| r.is_match(probe.value)),
        }
    }
}

/// What the lists look at, worked out once per indicator rather than once per list.
struct Probe<'a> {
    value: &'a str,
    lower: std::borrow::Cow<'a, str>,
    host: Option<std::borrow::Cow<'a, str>>,
    net: Option<IpNet>,
}

impl<'a> Probe<'a> {
    fn new(indicator: &'a Indicator) -> Self {
        Probe {
            value: &indicator.value,
            lower: lower(&indicator.value),
            host: hostname_of(indicator).map(lower),
            net: network_of(indicator),
        }
    }
}

/// Canonical values are already lower-case; only allocate for the rare one that is not.
fn lower(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(text.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The host a hostname list is walked with: the domain itself, a URL's host, an email
/// address's domain; addresses and hashes are walked as they are (harmless, never a hit on
/// a real hostname list).
fn hostname_of(indicator: &Indicator) -> Option<&str> {
    let value = indicator.value.as_str();
    match indicator.kind {
        IndicatorKind::Url => url_host(value),
        IndicatorKind::Email => value.rsplit_once('@').map(|(_, domain)| domain),
        IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => None,
        _ => Some(value),
    }
}

/// The network a CIDR list is checked with: an address as a host network, a CIDR as itself
/// (a hit when it contains or lies inside a listed network: blocking a network that holds a
/// public resolver blocks the resolver), a URL's IP-literal host.
fn network_of(indicator: &Indicator) -> Option<IpNet> {
    match indicator.kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 | IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => {
            parse_net(&indicator.value)
        }
        IndicatorKind::Url => url_ip_host(&indicator.value),
        _ => None,
    }
}

/// Translates a PCRE entry (`/body/flags`, any non-alphanumeric delimiter, bracket pairs)
/// into a `regex` crate pattern. `g` (which PCRE itself rejects but lists carry) is dropped;
/// `i m s x U` are translated; an undelimited entry is taken as the bare pattern.
fn pcre_to_regex(entry: &str) -> Result<Regex, String> {
    let (body, flags) = split_delimiters(entry);
    let mut builder = RegexBuilder::new(body);
    builder.size_limit(1 << 22);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            'U' => builder.swap_greed(true),
            'g' | 'u' | 'D' | 'S' => &mut builder,
            other => return Err(format!("PCRE flag {other:?} has no equivalent")),
        };
    }
    builder.build().map_err(|e| e.to_string().lines().last().unwrap_or("invalid regex").trim().to_string())
}

fn split_delimiters(entry: &str) -> (&str, &str) {
    let Some(open) = entry.chars().next() else {
        return (entry, "");
    };
    if open.is_alphanumeric() || open == '\\' || open.is_whitespace() || !open.is_ascii() {
        return (entry, "");
    }
    let close = match open {
        '(' => ')',
        '{' => '}',
        '[' => ']',
        '<' => '>',
        other => other,
    };
    match entry.rfind(close) {
        Some(end) if end > 0 => {
            let flags = entry.get(end + 1..).unwrap_or("");
            if flags.chars().all(|c| c.is_ascii_alphabetic()) {
                (entry.get(1..end).unwrap_or(""), flags)
            } else {
                (entry, "")
            }
        }
        _ => (entry, ""),
    }
}

/// Every loaded list, indexed by the kinds each applies to.
#[derive(Debug, Clone, Default)]
pub struct WarninglistSet {
    lists: Vec<Warninglist>,
    /// For each kind (in [`IndicatorKind::ALL`] order), the lists that apply to it.
    by_kind: Vec<Vec<usize>>,
}

impl WarninglistSet {
    pub fn new(lists: Vec<Warninglist>) -> Self {
        let by_kind = IndicatorKind::ALL
            .iter()
            .map(|kind| (0..lists.len()).filter(|i| lists.get(*i).is_some_and(|l| l.applies_to(*kind))).collect())
            .collect();
        WarninglistSet { lists, by_kind }
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    pub fn lists(&self) -> &[Warninglist] {
        &self.lists
    }

    /// The name of the first list (in load order) that the indicator is on.
    pub fn matching(&self, indicator: &Indicator) -> Option<&str> {
        let slot = IndicatorKind::ALL.iter().position(|k| *k == indicator.kind)?;
        let probe = Probe::new(indicator);
        self.by_kind
            .get(slot)?
            .iter()
            .filter_map(|i| self.lists.get(*i))
            .find(|list| list.contains_probe(&probe))
            .map(|list| list.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: serde_json::Value) -> Warninglist {
        Warninglist::from_json(json.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ind(kind: IndicatorKind, value: &str) -> Indicator {
        Indicator::from_canonical(kind, value)
    }

    #[test]
    fn each_type_matches_as_misp_does() {
        let hosts = list(
            serde_json::json!({"name": "top", "version": 1, "description": "d", "type": "hostname", "list": [".Google.COM.", "example.org"]}),
        );
        assert!(hosts.contains(&ind(IndicatorKind::Domain, "google.com")));
        assert!(hosts.contains(&ind(IndicatorKind::Domain, "mail.google.com")));
        assert!(hosts.contains(&ind(IndicatorKind::Url, "https://www.google.com/search?q=x")));
        assert!(hosts.contains(&ind(IndicatorKind::Email, "a@mail.example.org")));
        assert!(!hosts.contains(&ind(IndicatorKind::Domain, "notgoogle.com")));
        assert!(!hosts.contains(&ind(IndicatorKind::Domain, "google.com.evil.example")));

        let strings = list(
            serde_json::json!({"name": "empty", "version": 1, "description": "d", "type": "string", "list": ["D41D8CD98F00B204E9800998ECF8427E"]}),
        );
        assert!(strings.contains(&ind(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e")));
        assert!(!strings.contains(&ind(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427f")));

        let subs = list(
            serde_json::json!({"name": "s", "version": 1, "description": "d", "type": "substring", "list": ["sandbox"]}),
        );
        assert!(subs.contains(&ind(IndicatorKind::Domain, "my.sandbox.example")));
        assert!(!subs.contains(&ind(IndicatorKind::Domain, "box.example")));

        let cidr = list(
            serde_json::json!({"name": "rfc1918", "version": 1, "description": "d", "type": "cidr", "list": ["10.0.0.0/8", "fc00::/7", "bogus", 3]}),
        );
        assert_eq!(cidr.rejected.len(), 2, "{:?}", cidr.rejected);
        assert!(cidr.contains(&ind(IndicatorKind::Ipv4, "10.1.2.3")));
        assert!(cidr.contains(&ind(IndicatorKind::Ipv4Cidr, "10.1.0.0/16")));
        assert!(cidr.contains(&ind(IndicatorKind::Ipv4Cidr, "8.0.0.0/6")), "contains a listed network");
        assert!(cidr.contains(&ind(IndicatorKind::Ipv6, "fd12::1")));
        assert!(cidr.contains(&ind(IndicatorKind::Url, "http://10.0.0.1/x")));
        assert!(!cidr.contains(&ind(IndicatorKind::Ipv4, "11.0.0.1")));
        assert!(!cidr.contains(&ind(IndicatorKind::Domain, "10.example")));

        let regex = list(serde_json::json!({"name": "contacts", "version": 1, "description": "d", "type": "regex",
            "list": ["/^(security|noc|soc|abuse)\\@.*\\..*$/i", "/^x+$/g", "/(?<=a)b/", "#^ab#", "/a/q"]}));
        assert_eq!(regex.len(), 3);
        assert_eq!(regex.rejected.len(), 2, "{:?}", regex.rejected);
        assert!(regex.contains(&ind(IndicatorKind::Email, "abuse@example.com")));
        assert!(regex.contains(&ind(IndicatorKind::Email, "ABUSE@example.com")));
        assert!(regex.contains(&ind(IndicatorKind::Domain, "xxx")));
        assert!(regex.contains(&ind(IndicatorKind::Domain, "abc")));
        assert!(!regex.contains(&ind(IndicatorKind::Email, "ceo@example.com")));
    }

    #[test]
    fn bad_documents_name_the_list() {
        let err =
            Warninglist::from_json(br#"{"name": "x", "version": 1, "description": "d", "type": "glob", "list": []}"#)
                .unwrap_err();
        assert!(err.to_string().contains("\"x\"") && err.to_string().contains("glob"), "{err}");
        let err = Warninglist::from_json(br#"{"name": "y", "version": 1, "type": "string", "list": []}"#).unwrap_err();
        assert!(err.to_string().contains("\"y\"") && err.to_string().contains("description"), "{err}");
        assert!(matches!(Warninglist::from_json(b"{"), Err(WarninglistError::Json(_))));
        assert!(matches!(Warninglist::from_json(b"[]"), Err(WarninglistError::Json(_))));
        assert!(Warninglist::from_json(
            br#"{"name": "z", "version": "3", "description": "", "type": "string", "list": {}}"#
        )
        .is_err());
    }

    #[test]
    fn matching_attributes_restrict_kinds() {
        let all = list(
            serde_json::json!({"name": "a", "version": 1, "description": "d", "type": "string", "matching_attributes": ["ALL"], "list": ["x"]}),
        );
        assert!(IndicatorKind::ALL.iter().all(|k| all.applies_to(*k)));
        let md5_only = list(
            serde_json::json!({"name": "m", "version": 1, "description": "d", "type": "string", "matching_attributes": ["md5"], "list": ["x"]}),
        );
        assert!(md5_only.applies_to(IndicatorKind::Md5));
        // Only checkable once the MISP type table knows the kinds (until then: conservative).
        if !misp_types_for_kind(IndicatorKind::Domain).is_empty() {
            assert!(!md5_only.applies_to(IndicatorKind::Domain));
            let set = WarninglistSet::new(vec![md5_only]);
            assert_eq!(set.matching(&ind(IndicatorKind::Domain, "x")), None);
        }
    }
}
