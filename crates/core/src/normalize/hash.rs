//! File hashes: exact length, hex only, lowercase.
//!
//! Never pads, truncates or strips a prefix: a hash one digit short is a different (and
//! useless) value, and blocking it would give a false sense of coverage.

use super::NormalizeError;
use crate::indicator::IndicatorKind;

pub(crate) fn hex_len(kind: IndicatorKind) -> usize {
    match kind {
        IndicatorKind::Md5 => 32,
        IndicatorKind::Sha1 => 40,
        _ => 64,
    }
}

pub(crate) fn normalize_hash(kind: IndicatorKind, value: &str) -> Result<String, NormalizeError> {
    let expected = hex_len(kind);
    let got = value.chars().count();
    if got != expected {
        return Err(NormalizeError::HashLength { kind, expected, got });
    }
    if let Some((position, found)) = value.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(NormalizeError::HashChar { kind, found, position });
    }
    Ok(value.to_ascii_lowercase())
}

/// The hash kind a bare value most likely is: exact lengths of hex digits, and for a run of
/// 24–72 hex digits of another length the nearest kind, so that its error says "sha1 must be
/// 40 hex digits, got 39" rather than "not a domain".
pub(crate) fn kind_by_shape(value: &str) -> Option<IndicatorKind> {
    let len = value.len();
    if !(24..=72).contains(&len) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    [IndicatorKind::Md5, IndicatorKind::Sha1, IndicatorKind::Sha256]
        .into_iter()
        .min_by_key(|kind| hex_len(*kind).abs_diff(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercased_and_checked() {
        assert_eq!(
            normalize_hash(IndicatorKind::Md5, "D41D8CD98F00B204E9800998ECF8427E").unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        let short = normalize_hash(IndicatorKind::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd8070").unwrap_err();
        assert_eq!(short.to_string(), "sha1 must be 40 hex digits, got 39");
        let bad = normalize_hash(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427g").unwrap_err();
        assert_eq!(bad.to_string(), "md5 must be hex digits only, found 'g' at position 31");
        let wide = normalize_hash(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427é").unwrap_err();
        assert!(matches!(wide, NormalizeError::HashChar { found: 'é', .. }), "{wide:?}");
    }

    #[test]
    fn shape_picks_the_nearest_kind() {
        assert_eq!(kind_by_shape(&"a".repeat(32)), Some(IndicatorKind::Md5));
        assert_eq!(kind_by_shape(&"a".repeat(39)), Some(IndicatorKind::Sha1));
        assert_eq!(kind_by_shape(&"A".repeat(64)), Some(IndicatorKind::Sha256));
        assert_eq!(kind_by_shape("deadbeef"), None);
        assert_eq!(kind_by_shape(&"g".repeat(40)), None);
    }
}
