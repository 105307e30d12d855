//! tibridge-store: the catalog (indicators and their observations), the per-sink ledger,
//! source reads and cursors, sync runs, the append-only audit log and the enrichment cache.
//!
//! This crate never decides anything: it records what the engine tells it and answers
//! queries. It must never rewrite or delete an audit record, never retire an observation
//! on the strength of an incomplete or failed read, and never remove a ledger entry it was
//! not told was confirmed removed.
//!
//! # Back end and layout
//!
//! SQLite through sqlx, migrations in `crates/store/migrations/` (plain SQL meant to be
//! shared with a later PostgreSQL back end; the SQLite-only spots are marked `SQLITE:`
//! there: rowid primary keys, `WITHOUT ROWID`, the audit triggers). Connections use WAL,
//! `synchronous=NORMAL` (a crash may lose the last transactions but never corrupts the
//! file), foreign keys, a bounded page cache, temp data on disk and a busy timeout. All
//! writes go through one dedicated connection (see [`Store`]).
//!
//! # The write path, and why it is shaped so
//!
//! In the fast Python version SQLite was the largest cost of an ingest, so the layout and
//! write path were chosen by measuring a million generated MISP attributes
//! (`benches/ingest.rs`). What was tried, in order:
//!
//! 1. Per-batch transactions of multi-row upserts (`RETURNING` to count), an indicators
//!    table, a by-indicator index, a pooled connection per batch: about 40k obs/CPU-s and
//!    I/O bound. Every batch's commit rewrote most leaf pages of three random-order text
//!    indexes into the WAL, and each batch started with a cold page cache because WAL
//!    drops a connection's cache when another connection committed.
//! 2. One writer connection, reads staged per batch in a temp table and merged once in key
//!    order at `finish_read`, no indicators table, no by-indicator index (the catalog sorts
//!    when read): about 85k obs/CPU-s.
//! 3. Comparison with the catalog done inside SQLite (only differing rows come back), the
//!    retire scan skipped when counts prove nothing is unseen, and observations stored
//!    `WITHOUT ROWID` in their key's b-tree (one structure to probe and to append to
//!    instead of a table plus a key index): about 110-130k obs/CPU-s for a first write,
//!    about 125k obs/CPU-s for an unchanged re-read (store only, bench generation excluded).
//!    A 128 MB cache with 16 KB pages gained under 5% for 130 MB more memory: not kept.
//! 4. The merge sorts by an integer prefix of `source_ref` first (most comparisons settle
//!    on one integer), a run of observations with the same tags encodes them once, and the
//!    read's `seen` map uses its keys (already keyed hashes) as they are: about 2-3% less
//!    CPU for a first write (four interleaved pairs, 8.09-9.03 against 8.34-9.15 CPU-s per
//!    million, one core), unchanged re-reads the same. Tried and not kept: staging each
//!    observation's context (event ref, event text, tags) once in a temp table joined back
//!    after the sort made the merge 2.3 times slower (9.9 against 4.2 CPU-s: the join's
//!    lookups are random reads of the temp file); 8 and 16 KB pages with the same cache
//!    were within the noise for a first write and slower for a re-read. A measuring-only
//!    build that stored no event text or tags wrote half the bytes (592 against 1238 MiB)
//!    and spent about 25% less CPU on a first write: the remaining lever is the stored
//!    row's size, a schema change (a contexts table beside `observations`, by a new
//!    migration) that must keep `observations.tags` readable as today.
//!
//! What remains is SQLite itself: b-tree probes of a 400 MB tree that does not fit the
//! bounded cache, the merge's sort and the WAL write and checkpoint of a read's pages.
//!
//! The pieces, in the order a read uses them:
//!
//! - each observation carries a stable 64-bit hash of its content ([`hash`]), so "same as
//!   stored" is one integer comparison, in SQLite for the catalog and in Rust within a read;
//! - `write_observations` compares a batch with the catalog in one statement per ~6500
//!   observations and stages only new and changed ones (multi-row `INSERT`s of as many rows
//!   as SQLite's 32766 bound parameters allow); re-reading unchanged data writes nothing;
//! - `finish_read` merges the staged rows with one upsert in key order, in one transaction
//!   with the retirements and the read's record, so a read appears whole or not at all;
//! - retirement after a complete read needs no per-row "seen" write: the read keeps the
//!   64-bit keyed hashes of the keys it saw in memory, each with its content hash (16 bytes
//!   a key plus the map's overhead, about 20-30 MB for a million). When the source's active
//!   count equals the keys the read saw active nothing is unseen; otherwise the source's
//!   keys are scanned. A hash collision can only make an unseen key look seen, so the
//!   failure mode is "not retired this time", never "wrongly retired".

mod cache;
pub mod cases;
mod catalog;
pub mod hash;
mod ledger;
mod runs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tibridge_core::{Indicator, Observation};

pub use cache::CachedEnrichment;

/// The schema migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQLite's default (and, since 3.32, maximum by default) number of bound parameters in
/// one statement; multi-row statements are chunked to stay under it.
const MAX_BIND_PARAMS: usize = 32766;

/// Page cache of each reader connection, in KiB (negative `cache_size` means KiB in SQLite).
const CACHE_KIB: i64 = 16 * 1024;

/// Page cache of the writer connection, in KiB: large enough to keep the key indexes of a
/// million-observation catalog hot during an ingest, bounded so the whole ingest stays
/// inside its 300 MB memory goal.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Reader connections: a few reads (status, catalog, search) can run beside the writer.
const MAX_READERS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("cannot create the directory {path} for the database: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "read {read_id} of source {source_id} staged {staged} observations but {found} are left \
         (the database connection was replaced mid-read); nothing of the read was applied, read the source again"
    )]
    StagingLost { source_id: String, read_id: i64, staged: u64, found: u64 },
    #[error("cannot encode {what} for the store: {source}")]
    Encode { what: String, source: serde_json::Error },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Counts from writing one batch of observations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl WriteStats {
    fn add(&mut self, other: WriteStats) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
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
    /// Keyed hash of each observation key written during this read (see the crate docs),
    /// with the content hash it was last written with, whose lowest bit is replaced by the
    /// deleted flag (see `seen_value`).
    seen: HashMap<u64, i64, SeenHash>,
    /// Per-read random key for `seen`, so no input can be crafted to collide on purpose.
    seen_key: std::collections::hash_map::RandomState,
    /// The source had no stored observation when the read began: every key this read
    /// writes for the first time is new, so batches skip the catalog lookup.
    fresh_source: bool,
    /// Rows this read put in the staging table, checked before the merge.
    staged: u64,
    /// Distinct keys of the read's own source whose latest version here is not deleted:
    /// after the merge all of them are active, so when the source has exactly this many
    /// active observations there is nothing to retire and the key scan is skipped.
    active_seen: u64,
}

/// The keys of `SourceRead::seen` are already keyed SipHash values (see `key_hash`), so the
/// map uses them as they are instead of hashing every key a second time.
type SeenHash = std::hash::BuildHasherDefault<PrehashedKey>;

/// A `Hasher` for keys that are themselves uniformly spread 64-bit hashes.
#[derive(Default)]
struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    /// Only `u64` keys reach this map; any other input is folded in so it still hashes.
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}

impl SourceRead {
    /// What `seen` remembers of a version: its content hash with the deleted flag in the
    /// lowest bit (one hash bit less for telling versions apart, still 63).
    fn seen_value(content_hash: i64, deleted: bool) -> i64 {
        (content_hash & !1) | i64::from(deleted)
    }

    fn key_hash(&self, source_id: &str, source_ref: &str, kind: tibridge_core::IndicatorKind) -> u64 {
        use std::hash::BuildHasher;
        self.seen_key.hash_one((source_id, source_ref, kind.as_str()))
    }

    /// How many distinct observation keys this read has written so far.
    pub fn seen_keys(&self) -> usize {
        self.seen.len()
    }
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The store: a cheap-to-clone handle on its connections.
///
/// All writes go through one dedicated connection. SQLite serializes writers anyway, and
/// under WAL a connection drops its whole page cache whenever another connection has
/// committed since its last transaction: with writes spread over a pool, every batch
/// started cold and re-read the key indexes from the OS. Reads use a small pool beside it.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and runs migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StoreError::CreateDir { path: parent.to_path_buf(), source })?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .pragma("temp_store", "file")
            // Once a read's WAL has been checkpointed, give the disk space back.
            .pragma("journal_size_limit", (64 * 1024 * 1024).to_string());
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            // The writer's page cache is what keeps the key indexes hot between batches.
            .idle_timeout(None)
            .max_lifetime(None)
            // Writes queue behind the one writer: a large read's merge can hold it for a
            // while on a slow disk, and waiting is better than failing the other write.
            .acquire_timeout(Duration::from_secs(300))
            .connect_with(options.clone().pragma("cache_size", format!("-{WRITER_CACHE_KIB}")))
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new().max_connections(MAX_READERS).connect_with(options).await?;
        Ok(Store { pool, writer })
    }

    /// Closes every connection, checkpointing the WAL; further use of clones fails.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Now in Unix seconds; a clock before 1970 reads as 0 rather than failing a write.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counts come back from SQLite as i64; a negative one would be a corrupt row.
pub(crate) fn count(table: &'static str, what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt { table, reason: format!("negative {what}: {n}") })
}

/// Counts go into SQLite as i64; saturate rather than wrap for absurd values.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::Store;

    /// A store in a fresh temporary directory; keep the `TempDir` alive while using it.
    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temp dir for a test store: {e}"),
        };
        let store = match Store::open_sqlite(&dir.path().join("nested/tibridge.db")).await {
            Ok(s) => s,
            Err(e) => panic!("cannot open the test store: {e}"),
        };
        (dir, store)
    }
}
