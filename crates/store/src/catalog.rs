//! Catalog writes (source reads, observation upserts, retirement) and catalog reads.
//!
//! Never retires anything on a read that was incomplete or failed, and never deletes an
//! observation row: retired rows are kept so a reappearing item is revived in place.
//!
//! # How a read is written
//!
//! A million-row ingest committed batch by batch was I/O bound: the key indexes are in
//! random order (MISP attribute UUIDs), so every batch's commit touched most of their leaf
//! pages and wrote them to the WAL again, gigabytes for one ingest. So a read is applied in
//! two steps:
//!
//! 1. `write_observations` classifies each observation against the committed catalog with
//!    one indexed lookup per batch (so the batch's `WriteStats` are exact at once) and
//!    appends only the new and changed ones to a connection-local staging table (a temp
//!    table: plain appends to a temp file, no WAL, no index). Unchanged observations cost
//!    the lookup and nothing else. A source with no stored observations skips the lookup.
//! 2. `finish_read` merges the staged rows in key order with one upsert in one transaction,
//!    retires the unseen (on a complete read) and records the outcome, all atomically. Each
//!    index page is then dirtied once per read, not once per batch.
//!
//! The catalog therefore shows a read's changes when the read finishes, all at once. A read
//! dropped without `finish_read` (a crash, a cancelled task) leaves the catalog as it was;
//! its staged rows are discarded by the next read of the same source.

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tibridge_core::{Indicator, IndicatorKind, Observation, Tlp};

use crate::hash::content_hash;
use crate::{
    count, to_i64, unix_now, CatalogIndicator, ReadOutcome, Result, SourceRead, SourceStatus, Store, StoreError,
    WriteStats, MAX_BIND_PARAMS,
};

/// Bound parameters per staged observation row.
const STAGE_BINDS: usize = 18;
const STAGE_ROWS_PER_STATEMENT: usize = MAX_BIND_PARAMS / STAGE_BINDS;
/// Observations per comparison statement (five parameters each, plus the source id).
const COMPARE_ROWS_PER_STATEMENT: usize = (MAX_BIND_PARAMS - 1) / 5;
/// Retirement updates name this many keys per statement (two parameters each).
const RETIRE_KEYS_PER_STATEMENT: usize = (MAX_BIND_PARAMS - 3) / 2;
/// How many skipped items a read keeps as a sample for `status`.
const SKIPPED_SAMPLE: usize = 100;

/// The staging table lives in the writer connection's temp schema: it never reaches the
/// WAL and disappears with the connection.
const CREATE_STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS staged_observations (\
     seq INTEGER PRIMARY KEY, read_id BIGINT NOT NULL, source_id TEXT NOT NULL, \
     source_ref TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, event_ref TEXT, \
     event_info TEXT, tags TEXT NOT NULL, tlp TEXT, confidence INTEGER, to_ids BOOLEAN NOT NULL, \
     first_seen BIGINT, last_seen BIGINT, valid_until BIGINT, modified BIGINT, \
     deleted BOOLEAN NOT NULL, content_hash BIGINT NOT NULL, sort_key BIGINT NOT NULL)";

const STAGE_INSERT_HEAD: &str = "INSERT INTO temp.staged_observations (read_id, source_id, \
     source_ref, kind, value, event_ref, event_info, tags, tlp, confidence, to_ids, first_seen, \
     last_seen, valid_until, modified, deleted, content_hash, sort_key) ";

/// The merge: staged rows in key order (and arrival order within a key, so a key repeated
/// in one read ends with its last version). The order leads with `sort_key` (the first
/// eight bytes of `source_ref` as a number, see [`sort_key`]): the sort then settles almost
/// every comparison with one integer instead of decoding the text columns, and ties fall
/// through to the exact key. Rows of several sources interleave by `source_ref`, which keeps
/// each source's rows in its key order and a repeated key's versions in arrival order. An unchanged row (same hash, and not a retired
/// row coming back) matches no `WHERE`, so SQLite writes nothing for it.
/// SQLITE: a PostgreSQL upsert refuses to touch one row twice in a statement; its merge
/// must keep only the last staged row per key first (`DISTINCT ON`).
const MERGE: &str = "INSERT INTO observations (source_id, source_ref, kind, value, event_ref, \
     event_info, tags, tlp, confidence, to_ids, first_seen, last_seen, valid_until, modified, \
     deleted, content_hash, revision, created_at, updated_at, retired_at) \
     SELECT source_id, source_ref, kind, value, event_ref, event_info, tags, tlp, confidence, \
     to_ids, first_seen, last_seen, valid_until, modified, deleted, content_hash, 0, ?1, ?1, \
     CASE WHEN deleted THEN ?1 ELSE NULL END \
     FROM temp.staged_observations WHERE read_id = ?2 ORDER BY sort_key, source_ref, kind, source_id, seq \
     ON CONFLICT (source_id, source_ref, kind) DO UPDATE SET \
     value = excluded.value, event_ref = excluded.event_ref, event_info = excluded.event_info, \
     tags = excluded.tags, tlp = excluded.tlp, confidence = excluded.confidence, \
     to_ids = excluded.to_ids, first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
     valid_until = excluded.valid_until, modified = excluded.modified, deleted = excluded.deleted, \
     content_hash = excluded.content_hash, revision = observations.revision + 1, \
     updated_at = excluded.updated_at, \
     retired_at = CASE WHEN excluded.deleted THEN COALESCE(observations.retired_at, excluded.retired_at) ELSE NULL END \
     WHERE observations.content_hash <> excluded.content_hash \
        OR (observations.retired_at IS NOT NULL AND NOT excluded.deleted)";

/// The observation columns every catalog read selects, in the order `observation_from_row` reads.
const OBS_COLUMNS: &str = "kind, value, source_id, source_ref, event_ref, event_info, tags, tlp, \
     confidence, to_ids, first_seen, last_seen, valid_until, modified, deleted";

/// What the write path computes once per observation before binding it.
struct Prepared {
    /// Index of the observation's tags, as JSON, in the batch's list of distinct tag texts.
    tags: usize,
    hash: i64,
}

/// The first eight bytes of `source_ref` (zero-padded) read big-endian, with the sign bit
/// flipped so SQLite's signed order matches the bytes' unsigned order: sorting by it, then
/// by `source_ref`, is exactly sorting by `source_ref`.
fn sort_key(source_ref: &str) -> i64 {
    let mut word = [0u8; 8];
    for (slot, byte) in word.iter_mut().zip(source_ref.as_bytes()) {
        *slot = *byte;
    }
    (u64::from_be_bytes(word) ^ (1 << 63)) as i64
}

impl Store {
    /// Starts a read of `source_id`; the returned handle collects what the read writes.
    ///
    /// Discards what an earlier, never finished read of the same source staged: two reads
    /// of one source at once are not supported (the later one wins).
    pub async fn begin_read(&self, source_id: &str) -> Result<SourceRead> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(CREATE_STAGING).execute(&mut *tx).await?;
        sqlx::query(
            "DELETE FROM temp.staged_observations WHERE read_id IN \
             (SELECT id FROM source_reads WHERE source_id = ? AND finished_at IS NULL)",
        )
        .bind(source_id)
        .execute(&mut *tx)
        .await?;
        let read_id: i64 =
            sqlx::query_scalar("INSERT INTO source_reads (source_id, started_at) VALUES (?, ?) RETURNING id")
                .bind(source_id)
                .bind(unix_now())
                .fetch_one(&mut *tx)
                .await?;
        let fresh: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM observations WHERE source_id = ?)")
            .bind(source_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SourceRead {
            source_id: source_id.to_string(),
            read_id,
            stats: WriteStats::default(),
            seen: HashMap::default(),
            seen_key: std::collections::hash_map::RandomState::new(),
            fresh_source: fresh,
            staged: 0,
            active_seen: 0,
        })
    }

    /// Stages a batch for the read (one transaction) and returns how it compares with the
    /// catalog; the catalog itself changes when the read finishes (see the module docs).
    /// Re-writing an identical observation stages nothing.
    ///
    /// A key repeated within one read is compared with its previous version in the read.
    pub async fn write_observations(&self, read: &mut SourceRead, batch: &[Observation]) -> Result<WriteStats> {
        if batch.is_empty() {
            return Ok(WriteStats::default());
        }
        // The attributes of one event usually carry the event's tags: encode a run of
        // observations with the same tags once.
        let mut tag_texts: Vec<String> = Vec::new();
        let mut prepared = Vec::with_capacity(batch.len());
        let mut previous: Option<&Observation> = None;
        for obs in batch {
            let reuse = previous.is_some_and(|p| p.tags == obs.tags) && !tag_texts.is_empty();
            if !reuse {
                let tags_json = serde_json::to_string(&obs.tags).map_err(|source| StoreError::Encode {
                    what: format!("tags of {} observation {}", obs.source_id, obs.source_ref),
                    source,
                })?;
                tag_texts.push(tags_json);
            }
            let tags = tag_texts.len().saturating_sub(1);
            let hash = content_hash(obs, tag_texts.get(tags).map_or("[]", String::as_str));
            prepared.push(Prepared { tags, hash });
            previous = Some(obs);
        }

        // Which observations this read has not written before: only those are compared with
        // the catalog; a repeat is compared with its version earlier in this read (which is
        // staged, not merged). `earlier` holds that version's content hash.
        let mut first_time = Vec::with_capacity(batch.len());
        let mut earlier = Vec::with_capacity(batch.len());
        for (obs, prep) in batch.iter().zip(prepared.iter()) {
            let key = read.key_hash(&obs.source_id, &obs.source_ref, obs.indicator.kind);
            let value = SourceRead::seen_value(prep.hash, obs.deleted);
            let previous = read.seen.insert(key, value);
            if obs.source_id == read.source_id {
                let was_active = previous.map(|p| p & 1 == 0);
                match (was_active, obs.deleted) {
                    (None | Some(false), false) => read.active_seen += 1,
                    (Some(true), true) => read.active_seen = read.active_seen.saturating_sub(1),
                    _ => {}
                }
            }
            first_time.push(previous.is_none());
            earlier.push(previous);
        }

        let mut conn = self.writer.acquire().await?;
        let fresh = read.fresh_source && batch.iter().all(|o| o.source_id == read.source_id);
        let differs = if fresh {
            first_time.iter().map(|first| first.then_some(false)).collect()
        } else {
            compare_with_catalog(&mut conn, batch, &prepared, &first_time).await?
        };

        let mut stats = WriteStats::default();
        let mut to_stage: Vec<(&Observation, &Prepared)> = Vec::new();
        for (((obs, prep), earlier), differs) in
            batch.iter().zip(prepared.iter()).zip(earlier.iter()).zip(differs.iter())
        {
            match (earlier, differs) {
                // Repeated in this read: compare with the version written earlier in it.
                (Some(earlier), _) if *earlier == SourceRead::seen_value(prep.hash, obs.deleted) => {
                    stats.unchanged += 1
                }
                (Some(_), _) => {
                    stats.updated += 1;
                    to_stage.push((obs, prep));
                }
                (None, None) => stats.unchanged += 1,
                (None, Some(false)) => {
                    stats.inserted += 1;
                    to_stage.push((obs, prep));
                }
                (None, Some(true)) => {
                    stats.updated += 1;
                    to_stage.push((obs, prep));
                }
            }
        }

        if !to_stage.is_empty() {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::query(CREATE_STAGING).execute(&mut *tx).await?;
            for chunk in to_stage.chunks(STAGE_ROWS_PER_STATEMENT) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(STAGE_INSERT_HEAD);
                qb.push_values(chunk, |mut row, (obs, prep)| {
                    row.push_bind(read.read_id)
                        .push_bind(obs.source_id.as_str())
                        .push_bind(obs.source_ref.as_str())
                        .push_bind(obs.indicator.kind.as_str())
                        .push_bind(obs.indicator.value.as_str())
                        .push_bind(obs.event_ref.as_deref())
                        .push_bind(obs.event_info.as_deref())
                        .push_bind(tag_texts.get(prep.tags).map_or("[]", String::as_str))
                        .push_bind(obs.tlp.map(Tlp::as_str))
                        .push_bind(obs.confidence.map(i64::from))
                        .push_bind(obs.to_ids)
                        .push_bind(obs.first_seen)
                        .push_bind(obs.last_seen)
                        .push_bind(obs.valid_until)
                        .push_bind(obs.modified)
                        .push_bind(obs.deleted)
                        .push_bind(prep.hash)
                        .push_bind(sort_key(&obs.source_ref));
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            read.staged += to_stage.len() as u64;
        }
        read.stats.add(stats);
        Ok(stats)
    }

    /// Ends the read: on a complete, error-free read retires this source's observations the
    /// read did not see; records the outcome and cursor. Returns how many were retired.
    ///
    /// Everything happens in one transaction: the read's changes, its retirements and its
    /// record appear together or not at all. A failed or incomplete read still applies what
    /// it wrote (the source did say it); it only retires nothing and keeps the cursor.
    pub async fn finish_read(&self, read: SourceRead, outcome: &ReadOutcome) -> Result<u64> {
        let complete = outcome.complete && outcome.error.is_none();
        let now = unix_now();
        let sample: Vec<&String> = outcome.skipped.iter().take(SKIPPED_SAMPLE).collect();
        let sample_json = serde_json::to_string(&sample).map_err(|source| StoreError::Encode {
            what: format!("skipped items of read {} of {}", read.read_id, read.source_id),
            source,
        })?;

        let mut tx = self.writer.begin().await?;
        if read.staged > 0 {
            sqlx::query(CREATE_STAGING).execute(&mut *tx).await?;
            let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp.staged_observations WHERE read_id = ?")
                .bind(read.read_id)
                .fetch_one(&mut *tx)
                .await?;
            if found != to_i64(read.staged) {
                return Err(StoreError::StagingLost {
                    source_id: read.source_id.clone(),
                    read_id: read.read_id,
                    staged: read.staged,
                    found: found.max(0) as u64,
                });
            }
            sqlx::query(MERGE).bind(now).bind(read.read_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM temp.staged_observations WHERE read_id = ?")
                .bind(read.read_id)
                .execute(&mut *tx)
                .await?;
        }

        let retired = if complete { retire_unseen(&mut tx, &read, now).await? } else { 0 };

        sqlx::query(
            "UPDATE source_reads SET finished_at = ?, complete = ?, error = ?, items_read = ?, \
             skipped = ?, skipped_sample = ?, inserted = ?, updated = ?, unchanged = ?, \
             retired = ? WHERE id = ?",
        )
        .bind(now)
        .bind(complete)
        .bind(outcome.error.as_deref())
        .bind(to_i64(outcome.items_read))
        .bind(to_i64(outcome.skipped.len() as u64))
        .bind(sample_json)
        .bind(to_i64(read.stats.inserted))
        .bind(to_i64(read.stats.updated))
        .bind(to_i64(read.stats.unchanged))
        .bind(to_i64(retired))
        .bind(read.read_id)
        .execute(&mut *tx)
        .await?;
        // A failed read may have stopped anywhere: resuming from its cursor could skip items.
        if let (None, Some(cursor)) = (&outcome.error, &outcome.next_cursor) {
            sqlx::query(
                "INSERT INTO source_cursors (source_id, cursor, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, \
                 updated_at = excluded.updated_at",
            )
            .bind(&read.source_id)
            .bind(cursor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if retired > 0 {
            tracing::info!(source = %read.source_id, retired, "retired observations a complete read no longer contained");
        }
        Ok(retired)
    }

    /// Where `source_id`'s last error-free read said to resume.
    pub async fn cursor(&self, source_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT cursor FROM source_cursors WHERE source_id = ?")
            .bind(source_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every indicator with at least one active observation, with those observations.
    ///
    /// Holds the whole catalog in memory; for large catalogs prefer [`Store::catalog_each`].
    pub async fn catalog(&self) -> Result<Vec<CatalogIndicator>> {
        let mut out = Vec::new();
        self.catalog_each(|ci| out.push(ci)).await?;
        Ok(out)
    }

    /// Streams the catalog, one indicator at a time in [`Indicator`] order, without holding
    /// it all. Observations of an indicator come ordered by (source_id, source_ref).
    /// Returns how many indicators were passed to `f`.
    pub async fn catalog_each<F>(&self, f: F) -> Result<u64>
    where
        F: FnMut(CatalogIndicator),
    {
        let sql =
            format!("SELECT {OBS_COLUMNS} FROM observations WHERE retired_at IS NULL ORDER BY {}, value", kind_order());
        let rows = sqlx::query(&sql).fetch(&self.pool);
        group_rows(rows, usize::MAX, f).await
    }

    /// Indicators with an active observation, of `kind` if given, whose value contains `text`
    /// if given (ASCII case-insensitive), at most `limit`, in [`Indicator`] order.
    ///
    /// One pass over the observations (there is no value index, see the schema), sorted by
    /// SQLite; meant for people searching, not for bulk reads.
    pub async fn search_indicators(
        &self,
        kind: Option<IndicatorKind>,
        text: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CatalogIndicator>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pattern = text.map(|t| format!("%{}%", escape_like(t)));
        let sql = format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE retired_at IS NULL \
             AND (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR value LIKE ?2 ESCAPE '\\') \
             ORDER BY {}, value",
            kind_order()
        );
        let rows = sqlx::query(&sql).bind(kind.map(IndicatorKind::as_str)).bind(pattern.as_deref()).fetch(&self.pool);
        let mut out = Vec::new();
        group_rows(rows, limit, |ci| out.push(ci)).await?;
        Ok(out)
    }

    /// Per source: its last read, last complete read, last error and observation counts.
    pub async fn source_statuses(&self) -> Result<Vec<SourceStatus>> {
        let counts: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT source_id, SUM(CASE WHEN retired_at IS NULL THEN 1 ELSE 0 END), \
             SUM(CASE WHEN retired_at IS NULL THEN 0 ELSE 1 END) FROM observations GROUP BY source_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut sources: std::collections::BTreeMap<String, SourceStatus> = std::collections::BTreeMap::new();
        for (source_id, active, retired) in counts {
            let mut status = empty_status(&source_id);
            status.active_observations = count("observations", "active count", active)?;
            status.retired_observations = count("observations", "retired count", retired)?;
            sources.insert(source_id, status);
        }
        let read_sources: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT source_id FROM source_reads").fetch_all(&self.pool).await?;
        for source_id in read_sources {
            let last: Option<(i64, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT finished_at, error, items_read, skipped FROM source_reads \
                 WHERE source_id = ? AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .bind(&source_id)
            .fetch_optional(&self.pool)
            .await?;
            let last_complete: Option<i64> =
                sqlx::query_scalar("SELECT MAX(finished_at) FROM source_reads WHERE source_id = ? AND complete")
                    .bind(&source_id)
                    .fetch_one(&self.pool)
                    .await?;
            let status = sources.entry(source_id.clone()).or_insert_with(|| empty_status(&source_id));
            if let Some((finished_at, error, items_read, skipped)) = last {
                status.last_read_at = Some(finished_at);
                status.last_error = error;
                status.last_items_read = count("source_reads", "items_read", items_read)?;
                status.last_skipped = count("source_reads", "skipped", skipped)?;
            }
            status.last_complete_read_at = last_complete;
        }
        Ok(sources.into_values().collect())
    }
}

/// Compares the batch observations this read writes for the first time with the catalog,
/// inside SQLite: only the ones that differ come back, so re-reading unchanged data moves
/// almost nothing between SQLite and Rust. Returns, aligned with `batch`, `None` for an
/// unchanged (or not first-time) observation and `Some(exists)` for one to stage.
async fn compare_with_catalog(
    conn: &mut sqlx::SqliteConnection,
    batch: &[Observation],
    prepared: &[Prepared],
    first_time: &[bool],
) -> Result<Vec<Option<bool>>> {
    let mut by_source: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (obs, first)) in batch.iter().zip(first_time).enumerate() {
        if *first {
            by_source.entry(obs.source_id.as_str()).or_default().push(i);
        }
    }
    let mut differs = vec![None; batch.len()];
    for (source_id, positions) in by_source {
        for chunk in positions.chunks(COMPARE_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH b(i, source_ref, kind, hash, deleted) AS (");
            qb.push_values(chunk, |mut row, i| {
                // `positions` only holds indexes of `batch`, which `prepared` mirrors.
                if let (Some(obs), Some(prep)) = (batch.get(*i), prepared.get(*i)) {
                    row.push_bind(to_i64(*i as u64))
                        .push_bind(obs.source_ref.as_str())
                        .push_bind(obs.indicator.kind.as_str())
                        .push_bind(prep.hash)
                        .push_bind(obs.deleted);
                }
            });
            qb.push(
                ") SELECT b.i, o.kind IS NOT NULL FROM b LEFT JOIN observations o \
                 ON o.source_id = ",
            );
            qb.push_bind(source_id);
            qb.push(
                " AND o.source_ref = b.source_ref AND o.kind = b.kind \
                 WHERE o.kind IS NULL OR o.content_hash <> b.hash \
                 OR (o.retired_at IS NOT NULL AND NOT b.deleted)",
            );
            let mut rows = qb.build().fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                let i: i64 = row.try_get(0)?;
                let exists: bool = row.try_get(1)?;
                if let Some(slot) = usize::try_from(i).ok().and_then(|i| differs.get_mut(i)) {
                    *slot = Some(exists);
                }
            }
        }
    }
    Ok(differs)
}

/// Retires the source's active observations the read did not see, unless counting proves
/// there are none (the usual case): then no key is read back at all.
async fn retire_unseen(tx: &mut sqlx::Transaction<'_, Sqlite>, read: &SourceRead, now: i64) -> Result<u64> {
    // A source with nothing stored when the read began holds only what this read wrote.
    if read.fresh_source {
        return Ok(0);
    }
    // Every key the read saw as not deleted is active now; if that is all the source has
    // active, nothing is unseen (one in-order walk of the source's rows).
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM observations WHERE source_id = ? AND retired_at IS NULL")
            .bind(&read.source_id)
            .fetch_one(&mut **tx)
            .await?;
    if u64::try_from(active).ok() == Some(read.active_seen) {
        return Ok(0);
    }
    let mut unseen: Vec<(String, String)> = Vec::new();
    {
        let mut rows =
            sqlx::query("SELECT source_ref, kind FROM observations WHERE source_id = ? AND retired_at IS NULL")
                .bind(&read.source_id)
                .fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            let source_ref: &str = row.try_get(0)?;
            let kind_name: &str = row.try_get(1)?;
            let kind = parse_kind("observations", kind_name)?;
            if !read.seen.contains_key(&read.key_hash(&read.source_id, source_ref, kind)) {
                unseen.push((source_ref.to_string(), kind_name.to_string()));
            }
        }
    }
    let mut retired = 0;
    for chunk in unseen.chunks(RETIRE_KEYS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE observations SET retired_at = ");
        qb.push_bind(now).push(", updated_at = ").push_bind(now);
        qb.push(" WHERE source_id = ").push_bind(&read.source_id);
        qb.push(" AND retired_at IS NULL AND (source_ref, kind) IN (");
        qb.push_values(chunk, |mut row, (source_ref, kind)| {
            row.push_bind(source_ref.as_str()).push_bind(kind.as_str());
        });
        qb.push(")");
        retired += qb.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(retired)
}

/// The model's kind order as an SQL sort key, so listings match [`Indicator`]'s `Ord`
/// (an unknown kind sorts last and is reported as corrupt when read).
fn kind_order() -> String {
    let mut sql = String::from("CASE kind");
    for (i, kind) in IndicatorKind::ALL.iter().enumerate() {
        sql.push_str(&format!(" WHEN '{}' THEN {i}", kind.as_str()));
    }
    sql.push_str(" ELSE 99 END");
    sql
}

/// Groups rows ordered by indicator into catalog entries as they stream, passing at most
/// `limit` of them to `f`; returns how many were passed.
async fn group_rows<F>(
    mut rows: futures::stream::BoxStream<'_, std::result::Result<SqliteRow, sqlx::Error>>,
    limit: usize,
    mut f: F,
) -> Result<u64>
where
    F: FnMut(CatalogIndicator),
{
    let mut current: Option<CatalogIndicator> = None;
    let mut emitted = 0u64;
    while let Some(row) = rows.try_next().await? {
        let obs = observation_from_row(&row)?;
        match &mut current {
            Some(ci) if ci.indicator == obs.indicator => ci.observations.push(obs),
            _ => {
                if let Some(done) = current.take() {
                    f(finish_group(done));
                    emitted += 1;
                    if emitted as usize >= limit {
                        return Ok(emitted);
                    }
                }
                current = Some(CatalogIndicator { indicator: obs.indicator.clone(), observations: vec![obs] });
            }
        }
    }
    if let Some(done) = current.take() {
        f(finish_group(done));
        emitted += 1;
    }
    Ok(emitted)
}

fn empty_status(source_id: &str) -> SourceStatus {
    SourceStatus {
        source_id: source_id.to_string(),
        last_read_at: None,
        last_complete_read_at: None,
        last_error: None,
        active_observations: 0,
        retired_observations: 0,
        last_items_read: 0,
        last_skipped: 0,
    }
}

/// Sorting inside one indicator (a handful of rows) is cheaper than widening the catalog
/// index with the source columns on every write.
fn finish_group(mut ci: CatalogIndicator) -> CatalogIndicator {
    if ci.observations.len() > 1 {
        ci.observations.sort_by(|a, b| (&a.source_id, &a.source_ref).cmp(&(&b.source_id, &b.source_ref)));
    }
    ci
}

/// `%` and `_` in a search text match themselves, not any character.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn parse_kind(table: &'static str, s: &str) -> Result<IndicatorKind> {
    s.parse().map_err(|e| StoreError::Corrupt { table, reason: format!("{e}") })
}

fn parse_tlp(s: &str) -> Result<Tlp> {
    [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt { table: "observations", reason: format!("unknown TLP {s:?}") })
}

/// Reads the columns of [`OBS_COLUMNS`], in that order.
fn observation_from_row(row: &SqliteRow) -> Result<Observation> {
    let kind = parse_kind("observations", row.try_get::<&str, _>(0)?)?;
    let value: String = row.try_get(1)?;
    let source_id: String = row.try_get(2)?;
    let source_ref: String = row.try_get(3)?;
    let tags_json: &str = row.try_get(6)?;
    let tags: Vec<String> = serde_json::from_str(tags_json).map_err(|e| StoreError::Corrupt {
        table: "observations",
        reason: format!("tags of {source_id} observation {source_ref} are not a JSON string list: {e}"),
    })?;
    let tlp = match row.try_get::<Option<&str>, _>(7)? {
        Some(s) => Some(parse_tlp(s)?),
        None => None,
    };
    let confidence = match row.try_get::<Option<i64>, _>(8)? {
        Some(c) => Some(u8::try_from(c).map_err(|_| StoreError::Corrupt {
            table: "observations",
            reason: format!("confidence {c} of {source_id} observation {source_ref} is not 0..=255"),
        })?),
        None => None,
    };
    Ok(Observation {
        indicator: Indicator::from_canonical(kind, value),
        event_ref: row.try_get(4)?,
        event_info: row.try_get(5)?,
        tags,
        tlp,
        confidence,
        to_ids: row.try_get(9)?,
        first_seen: row.try_get(10)?,
        last_seen: row.try_get(11)?,
        valid_until: row.try_get(12)?,
        modified: row.try_get(13)?,
        deleted: row.try_get(14)?,
        source_id,
        source_ref,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_store;

    fn full_obs(source_ref: &str, value: &str) -> Observation {
        Observation {
            indicator: Indicator::from_canonical(IndicatorKind::Domain, value),
            source_id: "misp".into(),
            source_ref: source_ref.into(),
            event_ref: Some("5f1c0c1e-0000-4000-8000-000000000001".into()),
            event_info: Some("Phishing wave \"Q3\" – ünïcode".into()),
            tags: vec!["tlp:amber".into(), "misp-galaxy:threat-actor=\"APT 0\"".into()],
            tlp: Some(Tlp::AmberStrict),
            confidence: Some(75),
            to_ids: false,
            first_seen: Some(1_600_000_000),
            last_seen: Some(1_700_000_000),
            valid_until: Some(1_800_000_000),
            modified: Some(1_650_000_000),
            deleted: false,
        }
    }

    fn bare(source_ref: &str, kind: IndicatorKind, value: &str) -> Observation {
        Observation::new(Indicator::from_canonical(kind, value), "misp", source_ref)
    }

    async fn write(store: &Store, read: &mut SourceRead, batch: &[Observation]) -> WriteStats {
        match store.write_observations(read, batch).await {
            Ok(s) => s,
            Err(e) => panic!("write failed: {e}"),
        }
    }

    fn complete() -> ReadOutcome {
        ReadOutcome { complete: true, ..ReadOutcome::default() }
    }

    #[tokio::test]
    async fn every_observation_field_round_trips() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        let a = full_obs("a-1", "evil.example");
        let mut b = bare("b-1", IndicatorKind::Sha256, &"ab".repeat(32));
        b.confidence = Some(0);
        b.tlp = Some(Tlp::Clear);
        let stats = write(&store, &mut read, &[a.clone(), b.clone()]).await;
        assert_eq!(stats, WriteStats { inserted: 2, updated: 0, unchanged: 0 });
        store.finish_read(read, &complete()).await.unwrap();

        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 2);
        let got_a = catalog.iter().find(|c| c.indicator == a.indicator).unwrap();
        assert_eq!(got_a.observations, vec![a]);
        let got_b = catalog.iter().find(|c| c.indicator == b.indicator).unwrap();
        assert_eq!(got_b.observations, vec![b]);
    }

    #[tokio::test]
    async fn rewriting_an_identical_batch_changes_nothing_and_a_change_is_one_update() {
        let (_dir, store) = temp_store().await;
        let batch: Vec<Observation> =
            (0..10).map(|i| full_obs(&format!("ref-{i}"), &format!("d{i}.example"))).collect();
        let mut read = store.begin_read("misp").await.unwrap();
        assert_eq!(write(&store, &mut read, &batch).await.inserted, 10);
        let again = write(&store, &mut read, &batch).await;
        assert_eq!(again, WriteStats { inserted: 0, updated: 0, unchanged: 10 });

        let mut changed = batch.clone();
        changed[3].tags.push("new-tag".into());
        let stats = write(&store, &mut read, &changed).await;
        assert_eq!(stats, WriteStats { inserted: 0, updated: 1, unchanged: 9 });
        assert_eq!(read.stats, WriteStats { inserted: 10, updated: 1, unchanged: 19 });
        store.finish_read(read, &complete()).await.unwrap();

        let found = store.search_indicators(None, Some("d3.example"), 10).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].observations[0].tags.last().map(String::as_str), Some("new-tag"));
    }

    #[tokio::test]
    async fn an_edited_value_moves_the_observation_to_another_indicator() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("u1", IndicatorKind::Domain, "old.example")]).await;
        let stats = write(&store, &mut read, &[bare("u1", IndicatorKind::Domain, "new.example")]).await;
        assert_eq!(stats.updated, 1);
        store.finish_read(read, &complete()).await.unwrap();
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog[0].indicator.value, "new.example");
    }

    #[tokio::test]
    async fn a_complete_read_retires_the_unseen_and_a_reappearing_item_is_revived() {
        let (_dir, store) = temp_store().await;
        let all = vec![
            bare("u1", IndicatorKind::Domain, "a.example"),
            bare("u1", IndicatorKind::Ipv4, "192.0.2.1"),
            bare("u2", IndicatorKind::Domain, "b.example"),
        ];
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &all).await;
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 0);

        // Same source_ref, other kind gone: only that observation is retired.
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[all[0].clone(), all[2].clone()]).await;
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 1);
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 2);
        assert!(catalog.iter().all(|c| c.indicator.kind == IndicatorKind::Domain));

        // It comes back unchanged: revived, counted as an update.
        let mut read = store.begin_read("misp").await.unwrap();
        let stats = write(&store, &mut read, &all).await;
        assert_eq!(stats, WriteStats { inserted: 0, updated: 1, unchanged: 2 });
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 0);
        assert_eq!(store.catalog().await.unwrap().len(), 3);

        let statuses = store.source_statuses().await.unwrap();
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].active_observations, 3);
        assert_eq!(statuses[0].retired_observations, 0);
        assert!(statuses[0].last_complete_read_at.is_some());
    }

    #[tokio::test]
    async fn incomplete_or_failed_reads_retire_nothing() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(
            &store,
            &mut read,
            &[bare("u1", IndicatorKind::Domain, "a.example"), bare("u2", IndicatorKind::Domain, "b.example")],
        )
        .await;
        store.finish_read(read, &complete()).await.unwrap();

        let read = store.begin_read("misp").await.unwrap();
        let incomplete = ReadOutcome { complete: false, items_read: 0, ..ReadOutcome::default() };
        assert_eq!(store.finish_read(read, &incomplete).await.unwrap(), 0);

        let read = store.begin_read("misp").await.unwrap();
        let failed = ReadOutcome {
            complete: true,
            error: Some("HTTP 500 from misp".into()),
            next_cursor: Some("1700000000".into()),
            ..ReadOutcome::default()
        };
        assert_eq!(store.finish_read(read, &failed).await.unwrap(), 0);
        assert_eq!(store.catalog().await.unwrap().len(), 2);
        // The failed read neither advanced the cursor nor hid the error.
        assert_eq!(store.cursor("misp").await.unwrap(), None);
        let status = &store.source_statuses().await.unwrap()[0];
        assert_eq!(status.last_error.as_deref(), Some("HTTP 500 from misp"));
        assert_eq!(status.active_observations, 2);
    }

    #[tokio::test]
    async fn a_complete_read_of_one_source_leaves_other_sources_alone() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("u1", IndicatorKind::Domain, "a.example")]).await;
        store.finish_read(read, &complete()).await.unwrap();
        let mut feed = Observation::new(Indicator::from_canonical(IndicatorKind::Domain, "a.example"), "feed", "f:1");
        feed.confidence = Some(10);
        let mut read = store.begin_read("feed").await.unwrap();
        write(&store, &mut read, &[feed]).await;
        store.finish_read(read, &complete()).await.unwrap();

        let read = store.begin_read("feed").await.unwrap();
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 1);
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog[0].observations.len(), 1);
        assert_eq!(catalog[0].observations[0].source_id, "misp");
    }

    /// One read of `batch`, finished as complete; returns its stats.
    async fn read_once(store: &Store, batch: &[Observation]) -> WriteStats {
        let mut read = store.begin_read("misp").await.unwrap();
        let stats = write(store, &mut read, batch).await;
        store.finish_read(read, &complete()).await.unwrap();
        stats
    }

    #[tokio::test]
    async fn the_deleted_flag_retires_and_clearing_it_revives() {
        let (_dir, store) = temp_store().await;
        let mut o = bare("u1", IndicatorKind::Domain, "a.example");
        read_once(&store, &[o.clone()]).await;
        o.deleted = true;
        let mut gone = bare("u2", IndicatorKind::Domain, "b.example");
        gone.deleted = true;
        // A known item withdrawn, and a new item arriving already withdrawn (stored retired).
        let stats = read_once(&store, &[o.clone(), gone.clone()]).await;
        assert_eq!(stats, WriteStats { inserted: 1, updated: 1, unchanged: 0 });
        assert!(store.catalog().await.unwrap().is_empty());
        // Withdrawn again: nothing to write.
        let stats = read_once(&store, &[o.clone(), gone]).await;
        assert_eq!(stats.unchanged, 2);
        o.deleted = false;
        assert_eq!(read_once(&store, &[o]).await.updated, 1);
        assert_eq!(store.catalog().await.unwrap().len(), 1);
        let status = &store.source_statuses().await.unwrap()[0];
        assert_eq!((status.active_observations, status.retired_observations), (1, 1));
    }

    #[tokio::test]
    async fn a_read_applies_its_changes_when_it_finishes_and_an_abandoned_one_never() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("u1", IndicatorKind::Domain, "a.example")]).await;
        assert!(store.catalog().await.unwrap().is_empty());
        drop(read);
        // The next read of the source discards what the abandoned one staged.
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("u2", IndicatorKind::Domain, "b.example")]).await;
        store.finish_read(read, &ReadOutcome::default()).await.unwrap();
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog[0].indicator.value, "b.example");
    }

    #[tokio::test]
    async fn the_retire_count_shortcut_follows_deleted_flags_within_a_read() {
        let (_dir, store) = temp_store().await;
        let a = bare("u1", IndicatorKind::Domain, "a.example");
        let b = bare("u2", IndicatorKind::Domain, "b.example");
        let c = bare("u3", IndicatorKind::Domain, "c.example");
        read_once(&store, &[a.clone(), b.clone(), c.clone()]).await;
        // a withdrawn then restored, b withdrawn, c unseen: only c is retired as unseen.
        let mut read = store.begin_read("misp").await.unwrap();
        let mut a_gone = a.clone();
        a_gone.deleted = true;
        let mut b_gone = b.clone();
        b_gone.deleted = true;
        write(&store, &mut read, &[a_gone, b_gone]).await;
        write(&store, &mut read, std::slice::from_ref(&a)).await;
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 1);
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog[0].indicator, a.indicator);
        // Nothing unseen now: the count proves it and nothing more is retired.
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[a]).await;
        assert_eq!(store.finish_read(read, &complete()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_key_repeated_in_one_read_ends_with_its_last_version() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        let mut o = full_obs("u1", "a.example");
        assert_eq!(
            write(&store, &mut read, &[o.clone(), o.clone()]).await,
            WriteStats { inserted: 1, updated: 0, unchanged: 1 }
        );
        o.confidence = Some(5);
        assert_eq!(write(&store, &mut read, &[o.clone()]).await.updated, 1);
        store.finish_read(read, &complete()).await.unwrap();
        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog[0].observations, vec![o.clone()]);
        assert_eq!(read_once(&store, &[o]).await.unchanged, 1);
    }

    #[tokio::test]
    async fn cursors_advance_only_on_error_free_reads() {
        let (_dir, store) = temp_store().await;
        assert_eq!(store.cursor("misp").await.unwrap(), None);
        let read = store.begin_read("misp").await.unwrap();
        let outcome = ReadOutcome { next_cursor: Some("1700000000".into()), ..ReadOutcome::default() };
        store.finish_read(read, &outcome).await.unwrap();
        assert_eq!(store.cursor("misp").await.unwrap().as_deref(), Some("1700000000"));
        let read = store.begin_read("misp").await.unwrap();
        let outcome = ReadOutcome { next_cursor: Some("1700000500".into()), ..ReadOutcome::default() };
        store.finish_read(read, &outcome).await.unwrap();
        assert_eq!(store.cursor("misp").await.unwrap().as_deref(), Some("1700000500"));
        assert_eq!(store.cursor("other").await.unwrap(), None);
    }

    #[tokio::test]
    async fn statuses_record_items_and_skips() {
        let (_dir, store) = temp_store().await;
        let read = store.begin_read("csv").await.unwrap();
        let outcome = ReadOutcome {
            complete: true,
            items_read: 7,
            skipped: vec!["line 3: not a hash".into(), "line 5: empty".into()],
            ..ReadOutcome::default()
        };
        store.finish_read(read, &outcome).await.unwrap();
        let status = &store.source_statuses().await.unwrap()[0];
        assert_eq!(status.source_id, "csv");
        assert_eq!((status.last_items_read, status.last_skipped), (7, 2));
        assert!(status.last_read_at.is_some() && status.last_error.is_none());
    }

    #[tokio::test]
    async fn batches_larger_than_one_statement_are_chunked() {
        let (_dir, store) = temp_store().await;
        let n = (STAGE_ROWS_PER_STATEMENT * 2 + 17).max(COMPARE_ROWS_PER_STATEMENT + 500);
        let batch: Vec<Observation> =
            (0..n).map(|i| bare(&format!("r{i}"), IndicatorKind::Domain, &format!("h{}.example", i % 1000))).collect();
        let mut read = store.begin_read("misp").await.unwrap();
        assert_eq!(write(&store, &mut read, &batch).await.inserted, n as u64);
        assert_eq!(write(&store, &mut read, &batch).await.unchanged, n as u64);
        store.finish_read(read, &complete()).await.unwrap();
        let mut groups = 0;
        let mut observations = 0;
        store
            .catalog_each(|ci| {
                groups += 1;
                observations += ci.observations.len();
            })
            .await
            .unwrap();
        assert_eq!((groups, observations), (1000, n));

        // A second read compares with the catalog in statements of many rows; some changed,
        // some gone (retired by the complete read).
        let n2 = COMPARE_ROWS_PER_STATEMENT + 100;
        let mut next: Vec<Observation> = batch.iter().take(n2.min(n)).cloned().collect();
        for o in next.iter_mut().step_by(10) {
            o.confidence = Some(50);
        }
        let changed = next.iter().step_by(10).count() as u64;
        let mut read = store.begin_read("misp").await.unwrap();
        let stats = write(&store, &mut read, &next).await;
        assert_eq!(stats, WriteStats { inserted: 0, updated: changed, unchanged: next.len() as u64 - changed });
        let retired = store.finish_read(read, &complete()).await.unwrap();
        assert_eq!(retired, (n - next.len()) as u64);
    }

    #[tokio::test]
    async fn search_filters_by_kind_and_text_literally() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(
            &store,
            &mut read,
            &[
                bare("1", IndicatorKind::Domain, "evil.example"),
                bare("2", IndicatorKind::Url, "http://evil.example/a_b"),
                bare("3", IndicatorKind::Url, "http://evil.example/axb"),
                bare("4", IndicatorKind::Domain, "good.example"),
            ],
        )
        .await;
        store.finish_read(read, &complete()).await.unwrap();
        let by_kind = store.search_indicators(Some(IndicatorKind::Url), None, 10).await.unwrap();
        assert_eq!(by_kind.len(), 2);
        let underscore = store.search_indicators(None, Some("a_b"), 10).await.unwrap();
        assert_eq!(underscore.len(), 1);
        assert_eq!(underscore[0].indicator.value, "http://evil.example/a_b");
        assert_eq!(store.search_indicators(None, Some("evil"), 2).await.unwrap().len(), 2);
        assert!(store.search_indicators(None, None, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_row_is_an_error_not_a_panic() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("1", IndicatorKind::Domain, "a.example")]).await;
        store.finish_read(read, &complete()).await.unwrap();
        sqlx::query("UPDATE observations SET tags = 'not json'").execute(&store.pool).await.unwrap();
        match store.catalog().await {
            Err(StoreError::Corrupt { table: "observations", reason }) => assert!(reason.contains("tags"), "{reason}"),
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        sqlx::query("UPDATE observations SET tags = '[]', kind = 'sha-1'").execute(&store.pool).await.unwrap();
        assert!(matches!(store.catalog().await, Err(StoreError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_reruns_no_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mut read = store.begin_read("misp").await.unwrap();
        write(&store, &mut read, &[bare("1", IndicatorKind::Domain, "a.example")]).await;
        store.finish_read(read, &complete()).await.unwrap();
        store.close().await;
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.catalog().await.unwrap().len(), 1);
    }
}
