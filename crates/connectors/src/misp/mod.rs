//! MISP: the JSON model, attribute → observation conversion, and the sources that read MISP
//! data: a local file or feed directory (`misp_file`), the REST API (`misp`) and a feed over
//! HTTP (`misp_feed`).
//!
//! A MISP source only says what MISP says: policy (minimum confidence, TLP, age) is the
//! engine's job. The only filters here are the ones a source is configured with, applied
//! client-side so an attribute that stops matching is reported as withdrawn; a source never
//! invents a deletion MISP did not state or imply.

pub mod collect;
pub mod convert;
pub mod feed;
pub mod file;
pub mod filter;
pub mod model;
pub mod rest;

pub use convert::{attribute_observations, confidence_from_tags, EventContext, CONFIDENCE_PREDICATE};
pub use feed::{FeedCursor, MispFeedConfig, MispFeedSource};
pub use file::MispFileSource;
pub use filter::AttributeFilter;
pub use model::{parse_document, Attribute, Event, EventWrapper, Item, ManifestEntry, MispObject, Tag};
pub use rest::{MispCursor, MispRestConfig, MispSource};

/// Whether an incremental source (REST or feed) is due a full read: it has no usable cursor,
/// or its last full read (Unix seconds) is at least `every` seconds old. Only a full read can
/// catch hard deletes, so both sources reconcile on the same rule.
pub(crate) fn full_read_due(last_full_read: Option<i64>, now: i64, every: i64) -> bool {
    !matches!(last_full_read, Some(at) if now.saturating_sub(at) < every)
}
