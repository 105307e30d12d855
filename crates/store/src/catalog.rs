//! Catalog writes (source reads, observation upserts, retirement) and catalog reads.
//!
//! Never retires anything on a read that was incomplete or failed, and never deletes an
//! observation row: retired rows are kept so a reappearing item is revived in place.

use std::collections::HashSet;
use std::hash::BuildHasher;

use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tibridge_core::{Indicator, IndicatorKind, Observation, Tlp};

use crate::hash::content_hash;
use crate::{
    count, to_i64, unix_now, CatalogIndicator, ReadOutcome, Result, SourceRead, SourceStatus,
    Store, StoreError, WriteStats, MAX_BIND_PARAMS,
};

/// Bound parameters per observation row in the upsert (see `push_observation_row`).
const OBS_BINDS: usize = 19;
const OBS_ROWS_PER_STATEMENT: usize = MAX_BIND_PARAMS / OBS_BINDS;
/// Bound parameters per indicator row.
const IND_BINDS: usize = 3;
const IND_ROWS_PER_STATEMENT: usize = MAX_BIND_PARAMS / IND_BINDS;
/// Retirement updates name this many row ids per statement.
const RETIRE_IDS_PER_STATEMENT: usize = 10_000;
/// How many skipped items a read keeps as a sample for `status`.
const SKIPPED_SAMPLE: usize = 100;

const OBS_INSERT_HEAD: &str = "INSERT INTO observations (source_id, source_ref, kind, value, event_ref, \
     event_info, tags, tlp, confidence, to_ids, first_seen, last_seen, valid_until, modified, deleted, \
     content_hash, created_at, updated_at, retired_at, revision) ";

/// An unchanged row (same hash, and not a retired row coming back) matches no `WHERE`, so
/// SQLite writes nothing for it and returns no row for it.
const OBS_UPSERT_TAIL: &str = " ON CONFLICT (source_id, source_ref, kind) DO UPDATE SET \
     value = excluded.value, event_ref = excluded.event_ref, event_info = excluded.event_info, \
     tags = excluded.tags, tlp = excluded.tlp, confidence = excluded.confidence, \
     to_ids = excluded.to_ids, first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
     valid_until = excluded.valid_until, modified = excluded.modified, deleted = excluded.deleted, \
     content_hash = excluded.content_hash, revision = observations.revision + 1, \
     updated_at = excluded.updated_at, \
     retired_at = CASE WHEN excluded.deleted THEN COALESCE(observations.retired_at, excluded.retired_at) ELSE NULL END \
     WHERE observations.content_hash <> excluded.content_hash \
        OR (observations.retired_at IS NOT NULL AND NOT excluded.deleted) \
     RETURNING revision";

/// The observation columns every catalog read selects, in the order `observation_from_row` reads.
const OBS_COLUMNS: &str = "kind, value, source_id, source_ref, event_ref, event_info, tags, tlp, \
     confidence, to_ids, first_seen, last_seen, valid_until, modified, deleted";

/// What the write path computes once per observation before binding it.
struct Prepared {
    tags_json: String,
    hash: i64,
}

impl Store {
    /// Starts a read of `source_id`; the returned handle collects what the read writes.
    pub async fn begin_read(&self, source_id: &str) -> Result<SourceRead> {
        let read_id: i64 = sqlx::query_scalar(
            "INSERT INTO source_reads (source_id, started_at) VALUES (?, ?) RETURNING id",
        )
        .bind(source_id)
        .bind(unix_now())
        .fetch_one(&self.pool)
        .await?;
        Ok(SourceRead {
            source_id: source_id.to_string(),
            read_id,
            stats: WriteStats::default(),
            seen: HashSet::new(),
            seen_key: std::collections::hash_map::RandomState::new(),
        })
    }

    /// Upserts a batch in one transaction; re-writing an identical observation changes nothing.
    ///
    /// Observations whose `source_id` differs from the read's are stored under their own
    /// source id (the key is the observation's), but only the read's own source is retired
    /// by `finish_read`.
    pub async fn write_observations(
        &self,
        read: &mut SourceRead,
        batch: &[Observation],
    ) -> Result<WriteStats> {
        if batch.is_empty() {
            return Ok(WriteStats::default());
        }
        let now = unix_now();
        let mut prepared = Vec::with_capacity(batch.len());
        for obs in batch {
            let tags_json =
                serde_json::to_string(&obs.tags).map_err(|source| StoreError::Encode {
                    what: format!("tags of {} observation {}", obs.source_id, obs.source_ref),
                    source,
                })?;
            let hash = content_hash(obs, &tags_json);
            prepared.push(Prepared { tags_json, hash });
        }

        let mut tx = self.pool.begin().await?;

        // Indicators first: each distinct (kind, value) of the batch once; existing ones cost
        // one index probe and no write.
        let mut distinct: HashSet<(&'static str, &str)> = HashSet::with_capacity(batch.len());
        let indicators: Vec<(&'static str, &str)> = batch
            .iter()
            .map(|o| (o.indicator.kind.as_str(), o.indicator.value.as_str()))
            .filter(|k| distinct.insert(*k))
            .collect();
        for chunk in indicators.chunks(IND_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO indicators (kind, value, first_seen_at) ");
            qb.push_values(chunk, |mut row, (kind, value)| {
                row.push_bind(*kind).push_bind(*value).push_bind(now);
            });
            qb.push(" ON CONFLICT (kind, value) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }

        let mut stats = WriteStats::default();
        let rows: Vec<(&Observation, &Prepared)> = batch.iter().zip(prepared.iter()).collect();
        for chunk in rows.chunks(OBS_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(OBS_INSERT_HEAD);
            qb.push_values(chunk, |mut row, (obs, prep)| {
                row.push_bind(obs.source_id.as_str())
                    .push_bind(obs.source_ref.as_str())
                    .push_bind(obs.indicator.kind.as_str())
                    .push_bind(obs.indicator.value.as_str())
                    .push_bind(obs.event_ref.as_deref())
                    .push_bind(obs.event_info.as_deref())
                    .push_bind(prep.tags_json.as_str())
                    .push_bind(obs.tlp.map(Tlp::as_str))
                    .push_bind(obs.confidence.map(i64::from))
                    .push_bind(obs.to_ids)
                    .push_bind(obs.first_seen)
                    .push_bind(obs.last_seen)
                    .push_bind(obs.valid_until)
                    .push_bind(obs.modified)
                    .push_bind(obs.deleted)
                    .push_bind(prep.hash)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(if obs.deleted { Some(now) } else { None })
                    .push("0");
            });
            qb.push(OBS_UPSERT_TAIL);
            let revisions: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            let inserted = revisions.iter().filter(|r| **r == 0).count() as u64;
            let updated = revisions.len() as u64 - inserted;
            stats.inserted += inserted;
            stats.updated += updated;
            stats.unchanged += (chunk.len() as u64).saturating_sub(inserted + updated);
        }
        tx.commit().await?;

        for obs in batch {
            if obs.source_id == read.source_id {
                let key = read
                    .seen_key
                    .hash_one((obs.source_ref.as_str(), obs.indicator.kind.as_str()));
                read.seen.insert(key);
            }
        }
        read.stats.add(stats);
        Ok(stats)
    }

    /// Ends the read: on a complete, error-free read retires this source's observations the
    /// read did not see; records the outcome and cursor. Returns how many were retired.
    pub async fn finish_read(&self, read: SourceRead, outcome: &ReadOutcome) -> Result<u64> {
        let complete = outcome.complete && outcome.error.is_none();
        let retired = if complete {
            self.retire_unseen(&read).await?
        } else {
            0
        };

        let now = unix_now();
        let sample: Vec<&String> = outcome.skipped.iter().take(SKIPPED_SAMPLE).collect();
        let sample_json = serde_json::to_string(&sample).map_err(|source| StoreError::Encode {
            what: format!(
                "skipped items of read {} of {}",
                read.read_id, read.source_id
            ),
            source,
        })?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE source_reads SET finished_at = ?, complete = ?, error = ?, items_read = ?, skipped = ?, \
             skipped_sample = ?, inserted = ?, updated = ?, unchanged = ?, retired = ? WHERE id = ?",
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
                 ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
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

    /// Scans the source's keys (from the covering unique index, without touching the table)
    /// and retires the active ones the read did not see.
    async fn retire_unseen(&self, read: &SourceRead) -> Result<u64> {
        let mut unseen: Vec<i64> = Vec::new();
        {
            let mut rows =
                sqlx::query("SELECT id, source_ref, kind FROM observations WHERE source_id = ?")
                    .bind(&read.source_id)
                    .fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                let id: i64 = row.try_get(0)?;
                let source_ref: &str = row.try_get(1)?;
                let kind: &str = row.try_get(2)?;
                if !read
                    .seen
                    .contains(&read.seen_key.hash_one((source_ref, kind)))
                {
                    unseen.push(id);
                }
            }
        }
        if unseen.is_empty() {
            return Ok(0);
        }
        let now = unix_now();
        let mut retired = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in unseen.chunks(RETIRE_IDS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("UPDATE observations SET retired_at = ");
            qb.push_bind(now).push(", updated_at = ").push_bind(now);
            qb.push(" WHERE retired_at IS NULL AND id IN (");
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            retired += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(retired)
    }

    /// Where `source_id`'s last error-free read said to resume.
    pub async fn cursor(&self, source_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT cursor FROM source_cursors WHERE source_id = ?")
                .bind(source_id)
                .fetch_optional(&self.pool)
                .await?,
        )
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
    pub async fn catalog_each<F>(&self, mut f: F) -> Result<u64>
    where
        F: FnMut(CatalogIndicator),
    {
        // The per-kind queries below would silently skip a row of an unknown kind: refuse it
        // up front instead (one pass over the partial index, which covers `kind`).
        let known: Vec<String> = IndicatorKind::ALL
            .iter()
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        let unknown_sql = format!(
            "SELECT kind FROM observations WHERE retired_at IS NULL AND kind NOT IN ({}) LIMIT 1",
            known.join(", ")
        );
        if let Some(kind) = sqlx::query_scalar::<_, String>(&unknown_sql)
            .fetch_optional(&self.pool)
            .await?
        {
            parse_kind("observations", &kind)?;
        }
        // One query per kind, in the model's kind order, each walking the partial index.
        let sql = format!("SELECT {OBS_COLUMNS} FROM observations WHERE retired_at IS NULL AND kind = ? ORDER BY value");
        let mut current: Option<CatalogIndicator> = None;
        let mut emitted = 0u64;
        for kind in IndicatorKind::ALL {
            let mut rows = sqlx::query(&sql).bind(kind.as_str()).fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                let obs = observation_from_row(&row)?;
                match &mut current {
                    Some(ci) if ci.indicator == obs.indicator => ci.observations.push(obs),
                    _ => {
                        if let Some(done) = current.take() {
                            f(finish_group(done));
                            emitted += 1;
                        }
                        current = Some(CatalogIndicator {
                            indicator: obs.indicator.clone(),
                            observations: vec![obs],
                        });
                    }
                }
            }
        }
        if let Some(done) = current.take() {
            f(finish_group(done));
            emitted += 1;
        }
        Ok(emitted)
    }

    /// Indicators with an active observation, of `kind` if given, whose value contains `text`
    /// if given (ASCII case-insensitive), at most `limit`, in [`Indicator`] order. With more
    /// matches than `limit`, which ones are returned follows the kinds' names.
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
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT kind, value FROM observations WHERE retired_at IS NULL \
             AND (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR value LIKE ?2 ESCAPE '\\') \
             ORDER BY kind, value LIMIT ?3",
        )
        .bind(kind.map(IndicatorKind::as_str))
        .bind(pattern.as_deref())
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {OBS_COLUMNS} FROM observations WHERE retired_at IS NULL AND kind = ? AND value = ? \
             ORDER BY source_id, source_ref"
        );
        let mut out = Vec::with_capacity(keys.len());
        for (kind, value) in keys {
            let rows = sqlx::query(&sql)
                .bind(&kind)
                .bind(&value)
                .fetch_all(&self.pool)
                .await?;
            let observations = rows
                .iter()
                .map(observation_from_row)
                .collect::<Result<Vec<_>>>()?;
            let Some(first) = observations.first() else {
                continue;
            };
            out.push(CatalogIndicator {
                indicator: first.indicator.clone(),
                observations,
            });
        }
        out.sort_by(|a, b| a.indicator.cmp(&b.indicator));
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
        let mut sources: std::collections::BTreeMap<String, SourceStatus> =
            std::collections::BTreeMap::new();
        for (source_id, active, retired) in counts {
            let mut status = empty_status(&source_id);
            status.active_observations = count("observations", "active count", active)?;
            status.retired_observations = count("observations", "retired count", retired)?;
            sources.insert(source_id, status);
        }
        let read_sources: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT source_id FROM source_reads")
                .fetch_all(&self.pool)
                .await?;
        for source_id in read_sources {
            let last: Option<(i64, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT finished_at, error, items_read, skipped FROM source_reads \
                 WHERE source_id = ? AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .bind(&source_id)
            .fetch_optional(&self.pool)
            .await?;
            let last_complete: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(finished_at) FROM source_reads WHERE source_id = ? AND complete",
            )
            .bind(&source_id)
            .fetch_one(&self.pool)
            .await?;
            let status = sources
                .entry(source_id.clone())
                .or_insert_with(|| empty_status(&source_id));
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
        ci.observations
            .sort_by(|a, b| (&a.source_id, &a.source_ref).cmp(&(&b.source_id, &b.source_ref)));
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
    s.parse().map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("{e}"),
    })
}

fn parse_tlp(s: &str) -> Result<Tlp> {
    [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ]
    .into_iter()
    .find(|t| t.as_str() == s)
    .ok_or_else(|| StoreError::Corrupt {
        table: "observations",
        reason: format!("unknown TLP {s:?}"),
    })
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
        reason: format!(
            "tags of {source_id} observation {source_ref} are not a JSON string list: {e}"
        ),
    })?;
    let tlp = match row.try_get::<Option<&str>, _>(7)? {
        Some(s) => Some(parse_tlp(s)?),
        None => None,
    };
    let confidence = match row.try_get::<Option<i64>, _>(8)? {
        Some(c) => Some(u8::try_from(c).map_err(|_| StoreError::Corrupt {
            table: "observations",
            reason: format!(
                "confidence {c} of {source_id} observation {source_ref} is not 0..=255"
            ),
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
            tags: vec![
                "tlp:amber".into(),
                "misp-galaxy:threat-actor=\"APT 0\"".into(),
            ],
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
        ReadOutcome {
            complete: true,
            ..ReadOutcome::default()
        }
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
        assert_eq!(
            stats,
            WriteStats {
                inserted: 2,
                updated: 0,
                unchanged: 0
            }
        );
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
        let batch: Vec<Observation> = (0..10)
            .map(|i| full_obs(&format!("ref-{i}"), &format!("d{i}.example")))
            .collect();
        let mut read = store.begin_read("misp").await.unwrap();
        assert_eq!(write(&store, &mut read, &batch).await.inserted, 10);
        let again = write(&store, &mut read, &batch).await;
        assert_eq!(
            again,
            WriteStats {
                inserted: 0,
                updated: 0,
                unchanged: 10
            }
        );

        let mut changed = batch.clone();
        changed[3].tags.push("new-tag".into());
        let stats = write(&store, &mut read, &changed).await;
        assert_eq!(
            stats,
            WriteStats {
                inserted: 0,
                updated: 1,
                unchanged: 9
            }
        );
        assert_eq!(
            read.stats,
            WriteStats {
                inserted: 10,
                updated: 1,
                unchanged: 19
            }
        );
        store.finish_read(read, &complete()).await.unwrap();

        let found = store
            .search_indicators(None, Some("d3.example"), 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].observations[0].tags.last().map(String::as_str),
            Some("new-tag")
        );
    }

    #[tokio::test]
    async fn an_edited_value_moves_the_observation_to_another_indicator() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(
            &store,
            &mut read,
            &[bare("u1", IndicatorKind::Domain, "old.example")],
        )
        .await;
        let stats = write(
            &store,
            &mut read,
            &[bare("u1", IndicatorKind::Domain, "new.example")],
        )
        .await;
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
        assert!(catalog
            .iter()
            .all(|c| c.indicator.kind == IndicatorKind::Domain));

        // It comes back unchanged: revived, counted as an update.
        let mut read = store.begin_read("misp").await.unwrap();
        let stats = write(&store, &mut read, &all).await;
        assert_eq!(
            stats,
            WriteStats {
                inserted: 0,
                updated: 1,
                unchanged: 2
            }
        );
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
            &[
                bare("u1", IndicatorKind::Domain, "a.example"),
                bare("u2", IndicatorKind::Domain, "b.example"),
            ],
        )
        .await;
        store.finish_read(read, &complete()).await.unwrap();

        let read = store.begin_read("misp").await.unwrap();
        let incomplete = ReadOutcome {
            complete: false,
            items_read: 0,
            ..ReadOutcome::default()
        };
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
        write(
            &store,
            &mut read,
            &[bare("u1", IndicatorKind::Domain, "a.example")],
        )
        .await;
        store.finish_read(read, &complete()).await.unwrap();
        let mut feed = Observation::new(
            Indicator::from_canonical(IndicatorKind::Domain, "a.example"),
            "feed",
            "f:1",
        );
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

    #[tokio::test]
    async fn the_deleted_flag_retires_and_clearing_it_revives() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        let mut o = bare("u1", IndicatorKind::Domain, "a.example");
        write(&store, &mut read, &[o.clone()]).await;
        o.deleted = true;
        assert_eq!(write(&store, &mut read, &[o.clone()]).await.updated, 1);
        assert!(store.catalog().await.unwrap().is_empty());
        // Deleted again: nothing to write.
        assert_eq!(write(&store, &mut read, &[o.clone()]).await.unchanged, 1);
        // A new item arriving already deleted is stored retired.
        let mut gone = bare("u2", IndicatorKind::Domain, "b.example");
        gone.deleted = true;
        assert_eq!(write(&store, &mut read, &[gone]).await.inserted, 1);
        assert!(store.catalog().await.unwrap().is_empty());
        o.deleted = false;
        assert_eq!(write(&store, &mut read, &[o]).await.updated, 1);
        store.finish_read(read, &complete()).await.unwrap();
        assert_eq!(store.catalog().await.unwrap().len(), 1);
        let status = &store.source_statuses().await.unwrap()[0];
        assert_eq!(
            (status.active_observations, status.retired_observations),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn cursors_advance_only_on_error_free_reads() {
        let (_dir, store) = temp_store().await;
        assert_eq!(store.cursor("misp").await.unwrap(), None);
        let read = store.begin_read("misp").await.unwrap();
        let outcome = ReadOutcome {
            next_cursor: Some("1700000000".into()),
            ..ReadOutcome::default()
        };
        store.finish_read(read, &outcome).await.unwrap();
        assert_eq!(
            store.cursor("misp").await.unwrap().as_deref(),
            Some("1700000000")
        );
        let read = store.begin_read("misp").await.unwrap();
        let outcome = ReadOutcome {
            next_cursor: Some("1700000500".into()),
            ..ReadOutcome::default()
        };
        store.finish_read(read, &outcome).await.unwrap();
        assert_eq!(
            store.cursor("misp").await.unwrap().as_deref(),
            Some("1700000500")
        );
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
        let n = OBS_ROWS_PER_STATEMENT * 2 + 17;
        let batch: Vec<Observation> = (0..n)
            .map(|i| {
                bare(
                    &format!("r{i}"),
                    IndicatorKind::Domain,
                    &format!("h{}.example", i % 1000),
                )
            })
            .collect();
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
        let by_kind = store
            .search_indicators(Some(IndicatorKind::Url), None, 10)
            .await
            .unwrap();
        assert_eq!(by_kind.len(), 2);
        let underscore = store
            .search_indicators(None, Some("a_b"), 10)
            .await
            .unwrap();
        assert_eq!(underscore.len(), 1);
        assert_eq!(underscore[0].indicator.value, "http://evil.example/a_b");
        assert_eq!(
            store
                .search_indicators(None, Some("evil"), 2)
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(store
            .search_indicators(None, None, 0)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_row_is_an_error_not_a_panic() {
        let (_dir, store) = temp_store().await;
        let mut read = store.begin_read("misp").await.unwrap();
        write(
            &store,
            &mut read,
            &[bare("1", IndicatorKind::Domain, "a.example")],
        )
        .await;
        sqlx::query("UPDATE observations SET tags = 'not json'")
            .execute(&store.pool)
            .await
            .unwrap();
        match store.catalog().await {
            Err(StoreError::Corrupt {
                table: "observations",
                reason,
            }) => assert!(reason.contains("tags"), "{reason}"),
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        sqlx::query("UPDATE observations SET tags = '[]', kind = 'sha-1'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(matches!(
            store.catalog().await,
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_reruns_no_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mut read = store.begin_read("misp").await.unwrap();
        write(
            &store,
            &mut read,
            &[bare("1", IndicatorKind::Domain, "a.example")],
        )
        .await;
        store.finish_read(read, &complete()).await.unwrap();
        store.close().await;
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.catalog().await.unwrap().len(), 1);
    }
}
