//! The `Source` trait: something that says things about indicators.

use async_trait::async_trait;
use tibridge_core::stix::SkippedItem;
use tibridge_core::Observation;
use tokio::sync::mpsc;

/// Observations flow to the engine in batches so the store can write them as they arrive and
/// memory stays flat however large the source is.
pub type ObservationBatches = mpsc::Sender<Vec<Observation>>;

/// How many observations a source should put in one batch.
pub const BATCH_SIZE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be read at all (missing file, server down, 5xx). Nothing it said
    /// before is retired because of this.
    #[error("source {source_id}: {reason}")]
    Unavailable { source_id: String, reason: String },
    /// The engine stopped listening (it is shutting down).
    #[error("source {source_id}: the reader was cancelled")]
    Cancelled { source_id: String },
}

/// What one read produced besides the observations themselves.
#[derive(Debug, Default)]
pub struct ReadSummary {
    /// True when the read saw the whole source, so what it did not see is gone.
    pub complete: bool,
    pub items_read: u64,
    pub skipped: Vec<SkippedItem>,
    /// Where the next incremental read resumes.
    pub next_cursor: Option<String>,
}

#[async_trait]
pub trait Source: Send + Sync {
    fn id(&self) -> &str;
    /// One line for `tibridge check`: what this source will read.
    fn describe(&self) -> String;
    /// Reads the source, sending observations in batches of about [`BATCH_SIZE`].
    /// `cursor` is what the previous read returned as `next_cursor`.
    async fn read(&self, cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError>;
}

/// Reads a source completely into memory: for tests and small sources. The engine streams
/// instead, so a large source never has to fit in memory.
pub async fn read_to_end(
    source: &dyn Source,
    cursor: Option<String>,
) -> (Result<ReadSummary, SourceError>, Vec<Observation>) {
    let (sender, mut receiver) = mpsc::channel::<Vec<Observation>>(4);
    let collect = async {
        let mut all = Vec::new();
        while let Some(batch) = receiver.recv().await {
            all.extend(batch);
        }
        all
    };
    let (summary, observations) = tokio::join!(source.read(cursor, sender), collect);
    (summary, observations)
}
