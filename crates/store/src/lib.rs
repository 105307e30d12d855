//! tibridge-store: the catalog (indicators and their observations), the per-sink ledger,
//! source reads and cursors, sync runs and the append-only audit log.
//!
//! OWNER: store helper. The engine codes against the API below; keep the signatures.
//! This crate never decides anything: it records what the engine tells it and answers queries.

use tibridge_core::plan::LedgerEntry;
use tibridge_core::{Indicator, IndicatorKind, Observation};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Counts from writing one batch of observations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// How a source read ended, recorded for `tibridge status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadOutcome {
    /// The read saw the whole source: observations it did not see are retired.
    pub complete: bool,
    /// The read failed: nothing is retired and the error is recorded.
    pub error: Option<String>,
    pub items_read: u64,
    /// Items skipped for bad input, each `item: reason`.
    pub skipped: Vec<String>,
    /// Where an incremental source resumes next time (MISP timestamp, feed manifest state).
    pub next_cursor: Option<String>,
}

/// An open read of one source; holds what it has seen so a complete read can retire the rest.
pub struct SourceRead {
    pub source_id: String,
    pub read_id: i64,
    pub stats: WriteStats,
    // implementation detail: seen observation keys
}

/// An active (not retired) observation as the catalog holds it.
pub type StoredObservation = Observation;

/// One catalog indicator with its active observations.
#[derive(Debug, Clone)]
pub struct CatalogIndicator {
    pub indicator: Indicator,
    pub observations: Vec<Observation>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub source_id: String,
    pub last_read_at: Option<i64>,
    pub last_complete_read_at: Option<i64>,
    pub last_error: Option<String>,
    pub active_observations: u64,
    pub retired_observations: u64,
    pub last_items_read: u64,
    pub last_skipped: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub sink_id: String,
    pub entries: u64,
    pub last_sync_at: Option<i64>,
    pub last_sync_outcome: Option<String>,
}

/// One change tibridge made (or tried to make) to an outside system.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    pub at: i64,
    /// Which rule or command acted: `sync:firewall`, `triage:c2`, `review:approve`.
    pub actor: String,
    /// `add`, `remove`, `block`, `sweep`, ...
    pub action: String,
    /// The outside system (sink id or vendor).
    pub target: String,
    /// What was changed, e.g. `sha1:da39...`.
    pub item: String,
    pub reason: String,
    /// The vendor's answer, summarized; never a secret.
    pub response: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncRunRecord {
    pub sink_id: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub dry_run: bool,
    pub additions: u64,
    pub removals: u64,
    pub failures: u64,
    /// `applied`, `refused: ...`, `failed: ...`, `dry-run`.
    pub outcome: String,
}

#[derive(Clone)]
pub struct Store {
    // pool: sqlx::SqlitePool
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and runs migrations.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> { todo!() }

    // ---- catalog writes ----
    pub async fn begin_read(&self, source_id: &str) -> Result<SourceRead> { todo!() }
    /// Upserts a batch in one transaction; re-writing an identical observation changes nothing.
    pub async fn write_observations(&self, read: &mut SourceRead, batch: &[Observation]) -> Result<WriteStats> { todo!() }
    /// Ends the read: on a complete, error-free read retires this source's observations the
    /// read did not see; records the outcome and cursor. Returns how many were retired.
    pub async fn finish_read(&self, read: SourceRead, outcome: &ReadOutcome) -> Result<u64> { todo!() }
    pub async fn cursor(&self, source_id: &str) -> Result<Option<String>> { todo!() }

    // ---- catalog reads ----
    /// Every indicator with at least one active observation, with those observations.
    pub async fn catalog(&self) -> Result<Vec<CatalogIndicator>> { todo!() }
    pub async fn search_indicators(&self, kind: Option<IndicatorKind>, text: Option<&str>, limit: usize) -> Result<Vec<CatalogIndicator>> { todo!() }
    pub async fn source_statuses(&self) -> Result<Vec<SourceStatus>> { todo!() }

    // ---- ledger ----
    pub async fn ledger(&self, sink_id: &str) -> Result<Vec<LedgerEntry>> { todo!() }
    /// Records confirmed additions (one transaction).
    pub async fn ledger_add(&self, sink_id: &str, entries: &[LedgerEntry]) -> Result<()> { todo!() }
    /// Records confirmed removals (one transaction).
    pub async fn ledger_remove(&self, sink_id: &str, indicators: &[Indicator]) -> Result<()> { todo!() }

    // ---- runs, status, audit ----
    pub async fn record_sync_run(&self, run: &SyncRunRecord) -> Result<()> { todo!() }
    pub async fn sink_statuses(&self) -> Result<Vec<SinkStatus>> { todo!() }
    pub async fn audit(&self, records: &[AuditRecord]) -> Result<()> { todo!() }
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> { todo!() }
}
