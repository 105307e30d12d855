//! The `Sink` trait: somewhere indicators are enforced.
//!
//! Sinks are told exactly what to add and what to remove; the engine owns the ledger and
//! writes it after each confirmed batch.

use async_trait::async_trait;
use tibridge_core::plan::LedgerEntry;
use tibridge_core::policy::DesiredEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStyle {
    /// Entries are added and removed in batches of at most `max_batch` (vendor APIs).
    Incremental { max_batch: usize },
    /// The whole content is rewritten at once (files); `write_snapshot` is called instead.
    Snapshot,
}

/// The sink's answer for one item of a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Done; `remote_id` is the sink's own id for the entry, if it has one.
    Done { remote_id: Option<String> },
    /// Not done; `retryable` says whether the next run should try again.
    Failed { reason: String, retryable: bool },
    /// The sink's list is full: the engine lowers its capacity and warns.
    CapacityFull { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The whole batch failed and nothing in it is known to be done.
    #[error("sink {sink_id}: {reason}")]
    Failed { sink_id: String, reason: String },
    #[error("sink {sink_id} does not support {operation}")]
    Unsupported { sink_id: String, operation: &'static str },
}

#[async_trait]
pub trait Sink: Send + Sync {
    fn id(&self) -> &str;
    fn style(&self) -> SinkStyle;
    /// One line for `tibridge check`: where this sink writes.
    fn describe(&self) -> String;

    async fn add(&self, batch: &[DesiredEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let _ = batch;
        Err(SinkError::Unsupported { sink_id: self.id().to_string(), operation: "add" })
    }

    async fn remove(&self, batch: &[LedgerEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let _ = batch;
        Err(SinkError::Unsupported { sink_id: self.id().to_string(), operation: "remove" })
    }

    /// Replaces the sink's whole content with `entries` atomically (Snapshot sinks).
    async fn write_snapshot(&self, entries: &[DesiredEntry]) -> Result<(), SinkError> {
        let _ = entries;
        Err(SinkError::Unsupported { sink_id: self.id().to_string(), operation: "snapshot" })
    }
}
