//! MISP attribute → tibridge observations.
//!
//! One attribute yields one observation per indicator it carries (a `domain|ip` gives two),
//! all keyed by the attribute UUID so an edit or a soft delete is recognised whatever its
//! value became. Values that do not normalize are reported as [`SkippedItem`]s naming the event
//! and attribute; they never fail the event. This module must never drop a soft deletion it
//! can express: a deleted attribute (or an attribute of a deleted object) still yields its
//! observations, flagged `deleted`.
//!
//! Confidence convention (MISP has no confidence field): the MISP taxonomy tag
//! `estimative-language:likelihood-probability="<level>"` (ICD 203 words of estimative
//! probability). Its `numerical_value`, when MISP sends one, is used as is; otherwise each level
//! maps to the middle of its ICD 203 range: almost-no-chance 3, very-unlikely 12, unlikely 32,
//! roughly-even-chance 50, likely 67, very-likely 87, almost-certain 97. Attribute tags win over
//! event tags; among several tags at the same level the lowest (most cautious) wins. No tag →
//! `None`.

use super::model::{Attribute, Tag};
use tibridge_core::misp::indicators_for_attribute;
use tibridge_core::stix::SkippedItem;
use tibridge_core::timestamp::parse_loose;
use tibridge_core::{Observation, Tlp};

/// The taxonomy predicate read for confidence (see the module doc).
pub const CONFIDENCE_PREDICATE: &str = "estimative-language:likelihood-probability=";

/// Longest excerpt of a value quoted in a skip reason, so a hostile 1 MB value stays readable.
const QUOTE_MAX: usize = 80;

/// What an attribute inherits from the event (or restSearch `Event` context) it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'e, 'a> {
    pub source_id: &'e str,
    pub event_uuid: Option<&'e str>,
    pub event_info: Option<&'e str>,
    pub event_tags: &'e [Tag<'a>],
}

/// Appends the observations of one attribute to `out` and what was skipped to `skipped`.
///
/// `object_deleted` is whether the MISP object holding the attribute was soft-deleted.
/// Attributes whose type carries no indicator tibridge handles (`text`, `link`, `filename`...)
/// produce nothing and no skip: they are not indicators.
pub fn attribute_observations(
    ctx: &EventContext<'_, '_>,
    attribute: &Attribute<'_>,
    object_deleted: bool,
    out: &mut Vec<Observation>,
    skipped: &mut Vec<SkippedItem>,
) {
    let misp_type = attribute.kind.as_deref().unwrap_or("");
    let value = attribute.value.as_deref().unwrap_or("");
    let Some(results) = indicators_for_attribute(misp_type, value) else {
        return;
    };
    let attribute_uuid = match attribute.uuid.as_deref().map(str::trim) {
        Some(uuid) if !uuid.is_empty() => uuid,
        _ => {
            skipped.push(SkippedItem {
                item: item_name(ctx, None),
                reason: format!("{misp_type} attribute {} has no uuid, so it has no stable key", quote(value)),
            });
            return;
        }
    };

    let mut tags: Vec<String> = Vec::with_capacity(attribute.tags.len() + ctx.event_tags.len());
    for name in attribute.tags.iter().chain(ctx.event_tags.iter()).filter_map(|t| t.name.as_deref()) {
        let name = name.trim();
        if !name.is_empty() && !tags.iter().any(|t| t == name) {
            tags.push(name.to_string());
        }
    }
    let tlp = tags.iter().filter_map(|t| Tlp::from_tag(t)).max();
    let confidence = confidence_from_tags(&attribute.tags).or_else(|| confidence_from_tags(ctx.event_tags));
    let to_ids = attribute.to_ids.unwrap_or_else(|| default_to_ids(misp_type));
    let first_seen = attribute.first_seen.as_deref().and_then(parse_loose);
    let last_seen = attribute.last_seen.as_deref().and_then(parse_loose);
    let deleted = attribute.deleted || object_deleted;

    for result in results {
        match result {
            Ok(indicator) => out.push(Observation {
                indicator,
                source_id: ctx.source_id.to_string(),
                source_ref: attribute_uuid.to_string(),
                event_ref: ctx.event_uuid.map(str::to_string),
                event_info: ctx.event_info.map(str::to_string),
                tags: tags.clone(),
                tlp,
                confidence,
                to_ids,
                first_seen,
                last_seen,
                valid_until: None,
                modified: attribute.timestamp,
                deleted,
            }),
            Err(error) => skipped.push(SkippedItem {
                item: item_name(ctx, Some(attribute_uuid)),
                reason: format!("{misp_type} value {}: {error}", quote(value)),
            }),
        }
    }
}

/// `<source>:<event uuid>/<attribute uuid>`, with `?` for what is unknown.
pub fn item_name(ctx: &EventContext<'_, '_>, attribute_uuid: Option<&str>) -> String {
    format!("{}:{}/{}", ctx.source_id, ctx.event_uuid.unwrap_or("?"), attribute_uuid.unwrap_or("?"))
}

/// MISP's own default for `to_ids` (describeTypes `sane_defaults`), used when a producer left
/// the flag out: on for every network, hash and mail type tibridge maps, off for the
/// attribution-only mail types.
fn default_to_ids(misp_type: &str) -> bool {
    !matches!(misp_type, "whois-registrant-email" | "dns-soa-email" | "email-subject" | "email-reply-to")
}

/// The confidence the tags state, per the module-level convention.
pub fn confidence_from_tags(tags: &[Tag<'_>]) -> Option<u8> {
    tags.iter()
        .filter_map(|tag| {
            let name = tag.name.as_deref()?.trim();
            let head = name.get(..CONFIDENCE_PREDICATE.len())?;
            if !head.eq_ignore_ascii_case(CONFIDENCE_PREDICATE) {
                return None;
            }
            if let Some(n) = tag.numerical_value {
                return u8::try_from(n.clamp(0, 100)).ok();
            }
            let level = name.get(CONFIDENCE_PREDICATE.len()..)?.trim().trim_matches('"').to_ascii_lowercase();
            match level.as_str() {
                "almost-no-chance" => Some(3),
                "very-unlikely" => Some(12),
                "unlikely" => Some(32),
                "roughly-even-chance" => Some(50),
                "likely" => Some(67),
                "very-likely" => Some(87),
                "almost-certain" => Some(97),
                _ => None,
            }
        })
        .min()
}

/// A value for an error message: quoted, and cut on a character boundary when long.
pub(crate) fn quote(value: &str) -> String {
    if value.len() <= QUOTE_MAX {
        return format!("{value:?}");
    }
    let mut end = QUOTE_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn tag(name: &str) -> Tag<'static> {
        Tag { name: Some(Cow::Owned(name.to_string())), ..Tag::default() }
    }

    fn attr(kind: &str, value: &str) -> Attribute<'static> {
        Attribute {
            uuid: Some(Cow::Borrowed("a-1")),
            kind: Some(Cow::Owned(kind.to_string())),
            value: Some(Cow::Owned(value.to_string())),
            timestamp: Some(1_700_000_000),
            ..Attribute::default()
        }
    }

    #[test]
    fn context_tags_tlp_and_confidence_are_carried() {
        let event_tags = [tag("tlp:green"), tag("estimative-language:likelihood-probability=\"likely\""), tag("apt")];
        let ctx = EventContext {
            source_id: "misp",
            event_uuid: Some("e-1"),
            event_info: Some("Phish"),
            event_tags: &event_tags,
        };
        let mut a = attr("domain", "evil.example");
        a.tags = vec![tag("tlp:amber"), tag("apt")];
        a.to_ids = Some(false);
        a.first_seen = Some(Cow::Borrowed("2024-01-15T10:00:00.000000+00:00"));
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        attribute_observations(&ctx, &a, false, &mut out, &mut skipped);
        assert!(skipped.is_empty());
        let o = out.first().expect("one observation");
        assert_eq!(o.source_ref, "a-1");
        assert_eq!(o.event_ref.as_deref(), Some("e-1"));
        assert_eq!(o.event_info.as_deref(), Some("Phish"));
        assert_eq!(o.tags, ["tlp:amber", "apt", "tlp:green", "estimative-language:likelihood-probability=\"likely\""]);
        assert_eq!(o.tlp, Some(Tlp::Amber));
        assert_eq!(o.confidence, Some(67));
        assert!(!o.to_ids);
        assert_eq!(o.first_seen, Some(1_705_312_800));
        assert_eq!(o.modified, Some(1_700_000_000));
        assert!(!o.deleted);
    }

    #[test]
    fn attribute_confidence_wins_and_numerical_value_is_used() {
        let event_tags = [tag("estimative-language:likelihood-probability=\"almost-certain\"")];
        let ctx = EventContext { source_id: "s", event_uuid: None, event_info: None, event_tags: &event_tags };
        let mut a = attr("url", "http://evil.example/x");
        let mut t = tag("estimative-language:likelihood-probability=\"unlikely\"");
        t.numerical_value = Some(30);
        a.tags = vec![t];
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        attribute_observations(&ctx, &a, false, &mut out, &mut skipped);
        assert_eq!(out.first().and_then(|o| o.confidence), Some(30));
        assert_eq!(confidence_from_tags(&[tag("estimative-language:likelihood-probability=\"bogus\"")]), None);
        assert_eq!(confidence_from_tags(&[]), None);
    }

    #[test]
    fn object_deletion_marks_the_attribute_deleted() {
        let ctx = EventContext { source_id: "s", event_uuid: Some("e"), event_info: None, event_tags: &[] };
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        attribute_observations(
            &ctx,
            &attr("sha1", "3395856ce81f2b7382dee72602f798b642f14140"),
            true,
            &mut out,
            &mut skipped,
        );
        assert!(out.first().is_some_and(|o| o.deleted));
    }

    #[test]
    fn bad_values_and_missing_uuids_are_skipped_with_their_names() {
        let ctx = EventContext { source_id: "feed", event_uuid: Some("e-9"), event_info: None, event_tags: &[] };
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        attribute_observations(&ctx, &attr("domain", "   "), false, &mut out, &mut skipped);
        let mut no_uuid = attr("domain", "evil.example");
        no_uuid.uuid = None;
        attribute_observations(&ctx, &no_uuid, false, &mut out, &mut skipped);
        attribute_observations(&ctx, &attr("text", "not an indicator"), false, &mut out, &mut skipped);
        assert!(out.is_empty());
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].item, "feed:e-9/a-1");
        assert_eq!(skipped[1].item, "feed:e-9/?");
    }

    #[test]
    fn missing_to_ids_follows_misp_defaults() {
        assert!(default_to_ids("ip-dst"));
        assert!(!default_to_ids("whois-registrant-email"));
    }

    #[test]
    fn long_values_are_cut_on_char_boundaries() {
        let long = "é".repeat(100);
        let q = quote(&long);
        assert!(q.contains("200 bytes"));
        assert_eq!(quote("x"), "\"x\"");
    }
}
