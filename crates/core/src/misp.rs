//! MISP attribute types → indicator kinds, and composite (`a|b`) splitting.
//!
//! OWNER: normalization helper. Public API (keep these signatures):
//! - `indicators_for_attribute(misp_type, value) -> Option<Vec<Result<Indicator, NormalizeError>>>`
//!   `None` when the MISP type carries no kind tibridge handles (text, link, filename, ...).
//! - `misp_types_for_kind(kind) -> &'static [&'static str]` (used by warninglist matching).

use crate::indicator::{Indicator, IndicatorKind};
use crate::normalize::NormalizeError;

pub fn indicators_for_attribute(misp_type: &str, value: &str) -> Option<Vec<Result<Indicator, NormalizeError>>> {
    let kind = match misp_type {
        "md5" => IndicatorKind::Md5,
        "sha1" => IndicatorKind::Sha1,
        "sha256" => IndicatorKind::Sha256,
        "domain" | "hostname" => IndicatorKind::Domain,
        "url" => IndicatorKind::Url,
        "ip-src" | "ip-dst" => IndicatorKind::Ipv4,
        _ => return None,
    };
    Some(vec![crate::normalize::normalize(kind, value)])
}

pub fn misp_types_for_kind(kind: IndicatorKind) -> &'static [&'static str] {
    let _ = kind;
    &[]
}
