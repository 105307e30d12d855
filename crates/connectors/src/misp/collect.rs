//! Turns parsed MISP items into observation batches on the engine's channel.
//!
//! Runs on a blocking thread (parsing is CPU work) and hands batches of
//! [`crate::source::BATCH_SIZE`] to the engine as soon as they are full, so memory stays flat
//! whatever the size of the source. It must never be called from an async task: it blocks on
//! the channel.

use super::convert::{attribute_observations, EventContext};
use super::filter::AttributeFilter;
use super::model::{Attribute, Event, Item};
use crate::source::{ObservationBatches, BATCH_SIZE};
use std::sync::Arc;
use tibridge_core::stix::SkippedItem;
use tibridge_core::Observation;

/// At most this many skipped items are kept with their reasons; the rest are counted, so a
/// feed of a million broken values cannot exhaust memory through its error list.
pub const MAX_SKIPPED: usize = 1000;

/// What to do with an attribute the source's filter does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Leave it out (a complete read: not seeing it retires it anyway).
    Drop,
    /// Report it as withdrawn (an incremental read: it may have matched before).
    Retract,
}

pub(crate) struct Collector {
    source_id: Arc<str>,
    filter: Option<(Arc<AttributeFilter>, Unmatched)>,
    out: ObservationBatches,
    batch: Vec<Observation>,
    skipped: Vec<SkippedItem>,
    skipped_beyond_cap: u64,
    /// Attributes looked at, indicators or not.
    pub items_read: u64,
    /// Newest attribute timestamp seen, for cursors.
    pub max_timestamp: Option<i64>,
    /// Set when the engine stopped listening; everything after is ignored.
    pub cancelled: bool,
}

impl Collector {
    pub fn new(source_id: &str, out: ObservationBatches) -> Self {
        Collector {
            source_id: Arc::from(source_id),
            filter: None,
            out,
            batch: Vec::with_capacity(BATCH_SIZE),
            skipped: Vec::new(),
            skipped_beyond_cap: 0,
            items_read: 0,
            max_timestamp: None,
            cancelled: false,
        }
    }

    /// Applies `filter` to every attribute from now on.
    pub fn set_filter(&mut self, filter: Option<Arc<AttributeFilter>>, unmatched: Unmatched) {
        self.filter = filter.filter(|f| !f.is_empty()).map(|f| (f, unmatched));
    }

    pub fn item(&mut self, item: Item<'_>) {
        match item {
            Item::Event(event) => self.event(&event),
            Item::Attribute(attribute) => self.attribute(&attribute),
        }
    }

    /// Every attribute of an event, including those inside its objects.
    pub fn event(&mut self, event: &Event<'_>) {
        if self.cancelled {
            return;
        }
        let source_id = Arc::clone(&self.source_id);
        let ctx = EventContext {
            source_id: &source_id,
            event_uuid: event.uuid.as_deref(),
            event_info: event.info.as_deref(),
            event_tags: &event.tags,
        };
        for attribute in &event.attributes {
            self.one(&ctx, attribute, false);
        }
        for object in &event.objects {
            for attribute in &object.attributes {
                self.one(&ctx, attribute, object.deleted);
            }
        }
    }

    /// A flattened attribute from an attributes restSearch reply, with its own event context.
    pub fn attribute(&mut self, attribute: &Attribute<'_>) {
        if self.cancelled {
            return;
        }
        let event = attribute.event.as_ref();
        let source_id = Arc::clone(&self.source_id);
        let ctx = EventContext {
            source_id: &source_id,
            event_uuid: event.and_then(|e| e.uuid.as_deref()).or(attribute.event_uuid.as_deref()),
            event_info: event.and_then(|e| e.info.as_deref()),
            event_tags: event.map(|e| e.tags.as_slice()).unwrap_or(&[]),
        };
        let object_deleted = attribute.object.as_ref().is_some_and(|o| o.deleted);
        self.one(&ctx, attribute, object_deleted);
    }

    /// Records a problem with a whole file or request.
    pub fn skip(&mut self, item: String, reason: String) {
        self.skipped.push(SkippedItem { item, reason });
        self.cap_skipped();
    }

    fn one(&mut self, ctx: &EventContext<'_, '_>, attribute: &Attribute<'_>, object_deleted: bool) {
        self.items_read += 1;
        if let Some(ts) = attribute.timestamp {
            self.max_timestamp = Some(self.max_timestamp.map_or(ts, |m| m.max(ts)));
        }
        let deleted = attribute.deleted || object_deleted;
        let verdict = match &self.filter {
            Some((filter, unmatched)) if !deleted && !filter.keeps(attribute, ctx.event_tags) => Some(*unmatched),
            _ => None,
        };
        match verdict {
            Some(Unmatched::Drop) => {}
            Some(Unmatched::Retract) => {
                let start = self.batch.len();
                attribute_observations(ctx, attribute, object_deleted, &mut self.batch, &mut self.skipped);
                for observation in self.batch.get_mut(start..).into_iter().flatten() {
                    observation.deleted = true;
                }
            }
            None => attribute_observations(ctx, attribute, object_deleted, &mut self.batch, &mut self.skipped),
        }
        self.cap_skipped();
        if self.batch.len() >= BATCH_SIZE {
            self.flush();
        }
    }

    fn cap_skipped(&mut self) {
        while self.skipped.len() > MAX_SKIPPED {
            self.skipped.pop();
            self.skipped_beyond_cap += 1;
        }
    }

    /// Sends what is pending. Blocks while the engine is behind (back-pressure).
    pub fn flush(&mut self) {
        if self.batch.is_empty() || self.cancelled {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_SIZE));
        if self.out.blocking_send(batch).is_err() {
            self.cancelled = true;
        }
    }

    /// Sends the last batch and returns the skipped items (with a count of any beyond the cap).
    pub fn finish(mut self) -> (Vec<SkippedItem>, bool) {
        self.flush();
        let mut skipped = std::mem::take(&mut self.skipped);
        if self.skipped_beyond_cap > 0 {
            skipped.push(SkippedItem {
                item: format!("{}:*", self.source_id),
                reason: format!(
                    "{} more items skipped (only the first {MAX_SKIPPED} are listed)",
                    self.skipped_beyond_cap
                ),
            });
        }
        (skipped, self.cancelled)
    }
}
