//! The indicator model: kinds, normalized indicators, TLP, and observations.
//!
//! An [`Indicator`] can only be built through [`crate::normalize`], so holding one
//! means its value is already in canonical form: two sources that say the same thing
//! in different spellings produce equal indicators.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an indicator is. The order is the order used in listings and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    Md5,
    Sha1,
    Sha256,
    Domain,
    Url,
    Ipv4,
    Ipv6,
    Ipv4Cidr,
    Ipv6Cidr,
    Email,
}

impl IndicatorKind {
    pub const ALL: [IndicatorKind; 10] = [
        IndicatorKind::Md5,
        IndicatorKind::Sha1,
        IndicatorKind::Sha256,
        IndicatorKind::Domain,
        IndicatorKind::Url,
        IndicatorKind::Ipv4,
        IndicatorKind::Ipv6,
        IndicatorKind::Ipv4Cidr,
        IndicatorKind::Ipv6Cidr,
        IndicatorKind::Email,
    ];

    /// The stable name used in config files, the store and outputs.
    pub const fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Md5 => "md5",
            IndicatorKind::Sha1 => "sha1",
            IndicatorKind::Sha256 => "sha256",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Ipv4 => "ipv4",
            IndicatorKind::Ipv6 => "ipv6",
            IndicatorKind::Ipv4Cidr => "ipv4_cidr",
            IndicatorKind::Ipv6Cidr => "ipv6_cidr",
            IndicatorKind::Email => "email",
        }
    }

    pub fn is_hash(self) -> bool {
        matches!(self, IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256)
    }
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown kind name, listing the accepted ones so a config error is actionable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown indicator kind {0:?} (expected one of md5, sha1, sha256, domain, url, ipv4, ipv6, ipv4_cidr, ipv6_cidr, email)")]
pub struct UnknownKind(pub String);

impl FromStr for IndicatorKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndicatorKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// One normalized indicator: the catalog key is `(kind, value)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Indicator {
    pub kind: IndicatorKind,
    pub value: String,
}

impl Indicator {
    /// Builds an indicator from a value that is already canonical (read back from the
    /// store or the ledger). Anything from outside goes through [`crate::normalize`].
    pub fn from_canonical(kind: IndicatorKind, value: impl Into<String>) -> Self {
        Indicator { kind, value: value.into() }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Traffic Light Protocol level, ordered from least to most restricted so that
/// "highest TLP a sink accepts" is a simple comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tlp {
    /// TLP:CLEAR (TLP 2.0), formerly TLP:WHITE.
    Clear,
    Green,
    Amber,
    AmberStrict,
    Red,
}

impl Tlp {
    pub const fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Red => "red",
        }
    }

    /// Reads a MISP-style tag (`tlp:amber`, `tlp:amber+strict`, `tlp:white`); `None`
    /// for any tag that is not a TLP tag.
    pub fn from_tag(tag: &str) -> Option<Tlp> {
        let rest = tag.trim().strip_prefix_ci("tlp:")?;
        Tlp::from_name(rest)
    }

    /// Reads a bare level name as written in configs (`green`, `amber+strict`, `white`).
    pub fn from_name(name: &str) -> Option<Tlp> {
        match name.trim().to_ascii_lowercase().as_str() {
            "clear" | "white" => Some(Tlp::Clear),
            "green" => Some(Tlp::Green),
            "amber" => Some(Tlp::Amber),
            "amber+strict" | "amber-strict" | "amber_strict" => Some(Tlp::AmberStrict),
            "red" => Some(Tlp::Red),
            _ => None,
        }
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLP:{}", self.as_str().to_ascii_uppercase())
    }
}

trait StripPrefixCi {
    fn strip_prefix_ci<'a>(&'a self, prefix: &str) -> Option<&'a str>;
}

impl StripPrefixCi for str {
    fn strip_prefix_ci<'a>(&'a self, prefix: &str) -> Option<&'a str> {
        if self.len() >= prefix.len()
            && self.is_char_boundary(prefix.len())
            && self[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            Some(&self[prefix.len()..])
        } else {
            None
        }
    }
}

/// One source saying one thing about one indicator.
///
/// The observation key is `(source_id, source_ref, indicator.kind)`: a MISP `domain|ip`
/// attribute yields two observations with the same `source_ref` and different kinds, and an
/// edited attribute keeps its key while its value moves to another indicator.
/// Times are Unix seconds (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub indicator: Indicator,
    /// The configured id of the source that said it.
    pub source_id: String,
    /// Where in the source: a MISP attribute UUID, a STIX object id, `file:line`.
    pub source_ref: String,
    /// The MISP event UUID or STIX report id this came with, if any.
    pub event_ref: Option<String>,
    /// Human text about the context: MISP event info, STIX indicator name.
    pub event_info: Option<String>,
    pub tags: Vec<String>,
    pub tlp: Option<Tlp>,
    /// 0..=100, higher is more certain.
    pub confidence: Option<u8>,
    /// Whether the source says this is meant for detection/blocking (MISP `to_ids`).
    pub to_ids: bool,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub valid_until: Option<i64>,
    /// When the source last changed this item (MISP attribute timestamp, STIX `modified`).
    pub modified: Option<i64>,
    /// The source says this item was withdrawn (MISP soft delete, STIX `revoked`).
    pub deleted: bool,
}

impl Observation {
    /// A bare observation with no context; sources fill in what they know.
    pub fn new(indicator: Indicator, source_id: impl Into<String>, source_ref: impl Into<String>) -> Self {
        Observation {
            indicator,
            source_id: source_id.into(),
            source_ref: source_ref.into(),
            event_ref: None,
            event_info: None,
            tags: Vec::new(),
            tlp: None,
            confidence: None,
            to_ids: true,
            first_seen: None,
            last_seen: None,
            valid_until: None,
            modified: None,
            deleted: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in IndicatorKind::ALL {
            assert_eq!(kind.as_str().parse::<IndicatorKind>().unwrap(), kind);
        }
        assert!("sha-1".parse::<IndicatorKind>().is_err());
    }

    #[test]
    fn tlp_tags_are_read_case_insensitively() {
        assert_eq!(Tlp::from_tag("TLP:AMBER+STRICT"), Some(Tlp::AmberStrict));
        assert_eq!(Tlp::from_tag("tlp:white"), Some(Tlp::Clear));
        assert_eq!(Tlp::from_tag("misp:tlp"), None);
        assert!(Tlp::Red > Tlp::Amber && Tlp::Green > Tlp::Clear);
    }
}
