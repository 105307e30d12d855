//! Client-side attribute filters for MISP sources.
//!
//! Filtering by type, `to_ids` or tag on the server misses retractions: an attribute whose
//! `to_ids` was switched off, whose tag was removed, or that was soft-deleted and sanitised to
//! `type: comment` simply stops matching, so a filtered delta poll never sees it change
//! (contract A.2). These filters therefore run here, on unfiltered replies, and an incremental
//! read reports an attribute that no longer matches as a retraction. This module must never
//! drop a deletion: a soft-deleted attribute is always passed on, whatever the filters say.

use super::model::{Attribute, Tag};
use serde::Deserialize;

/// What a MISP source keeps. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeFilter {
    /// Keep only attributes flagged for detection (`to_ids`).
    #[serde(default)]
    pub to_ids_only: bool,
    /// MISP attribute types to keep (`ip-dst`, `domain`, `filename|sha256`...).
    #[serde(default)]
    pub types: Vec<String>,
    /// Keep attributes carrying at least one of these tags (attribute or event tags; exact,
    /// case-insensitive).
    #[serde(default)]
    pub tags_include: Vec<String>,
    /// Drop attributes carrying any of these tags.
    #[serde(default)]
    pub tags_exclude: Vec<String>,
}

impl AttributeFilter {
    pub fn is_empty(&self) -> bool {
        !self.to_ids_only && self.types.is_empty() && self.tags_include.is_empty() && self.tags_exclude.is_empty()
    }

    /// Whether the attribute, with the tags of its event, passes.
    pub fn keeps(&self, attribute: &Attribute<'_>, event_tags: &[Tag<'_>]) -> bool {
        if self.to_ids_only && attribute.to_ids != Some(true) {
            return false;
        }
        if !self.types.is_empty() {
            let kind = attribute.kind.as_deref().unwrap_or("");
            if !self.types.iter().any(|t| t.eq_ignore_ascii_case(kind)) {
                return false;
            }
        }
        if self.tags_include.is_empty() && self.tags_exclude.is_empty() {
            return true;
        }
        let carries = |wanted: &[String]| {
            attribute
                .tags
                .iter()
                .chain(event_tags.iter())
                .filter_map(|t| t.name.as_deref())
                .any(|n| wanted.iter().any(|w| w.trim().eq_ignore_ascii_case(n.trim())))
        };
        if carries(&self.tags_exclude) {
            return false;
        }
        self.tags_include.is_empty() || carries(&self.tags_include)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn tag(name: &'static str) -> Tag<'static> {
        Tag { name: Some(Cow::Borrowed(name)), ..Tag::default() }
    }

    fn attr(kind: &'static str, to_ids: Option<bool>, tags: Vec<Tag<'static>>) -> Attribute<'static> {
        Attribute { kind: Some(Cow::Borrowed(kind)), to_ids, tags, ..Attribute::default() }
    }

    #[test]
    fn filters_combine() {
        let f = AttributeFilter {
            to_ids_only: true,
            types: vec!["domain".into(), "ip-dst".into()],
            tags_include: vec!["TLP:GREEN".into()],
            tags_exclude: vec!["false-positive".into()],
        };
        let event_tags = [tag("tlp:green")];
        assert!(f.keeps(&attr("domain", Some(true), vec![]), &event_tags));
        assert!(!f.keeps(&attr("domain", Some(false), vec![]), &event_tags));
        assert!(!f.keeps(&attr("domain", None, vec![]), &event_tags));
        assert!(!f.keeps(&attr("url", Some(true), vec![]), &event_tags));
        assert!(!f.keeps(&attr("domain", Some(true), vec![]), &[]));
        assert!(!f.keeps(&attr("domain", Some(true), vec![tag("false-positive")]), &event_tags));
        assert!(AttributeFilter::default().keeps(&attr("text", None, vec![]), &[]));
        assert!(AttributeFilter::default().is_empty() && !f.is_empty());
    }
}
