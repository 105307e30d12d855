//! Sync runs, sink status and the append-only audit log.
//!
//! The audit log has no update or delete path here, and the schema's triggers refuse one
//! from anywhere else: what tibridge did to an outside system stays on record.

use sqlx::{QueryBuilder, Sqlite};

use crate::{count, to_i64, AuditRecord, Result, SinkStatus, Store, SyncRunRecord, MAX_BIND_PARAMS};

/// sink_id, started_at, finished_at, dry_run, additions, removals, failures, outcome
type SyncRunRow = (String, i64, i64, bool, i64, i64, i64, String);

const AUDIT_BINDS: usize = 7;
const AUDIT_ROWS_PER_STATEMENT: usize = MAX_BIND_PARAMS / AUDIT_BINDS;

impl Store {
    pub async fn record_sync_run(&self, run: &SyncRunRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_runs (sink_id, started_at, finished_at, dry_run, additions, removals, failures, outcome) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&run.sink_id)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.dry_run)
        .bind(to_i64(run.additions))
        .bind(to_i64(run.removals))
        .bind(to_i64(run.failures))
        .bind(&run.outcome)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The most recent sync runs of `sink_id`, newest first.
    pub async fn sync_runs(&self, sink_id: &str, limit: usize) -> Result<Vec<SyncRunRecord>> {
        let rows: Vec<SyncRunRow> = sqlx::query_as(
            "SELECT sink_id, started_at, finished_at, dry_run, additions, removals, failures, outcome \
             FROM sync_runs WHERE sink_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(sink_id)
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(sink_id, started_at, finished_at, dry_run, additions, removals, failures, outcome)| {
                Ok(SyncRunRecord {
                    sink_id,
                    started_at,
                    finished_at,
                    dry_run,
                    additions: count("sync_runs", "additions", additions)?,
                    removals: count("sync_runs", "removals", removals)?,
                    failures: count("sync_runs", "failures", failures)?,
                    outcome,
                })
            })
            .collect()
    }

    /// Every sink that has a ledger entry or a recorded run, in sink id order.
    pub async fn sink_statuses(&self) -> Result<Vec<SinkStatus>> {
        let sinks: Vec<String> =
            sqlx::query_scalar("SELECT sink_id FROM ledger UNION SELECT sink_id FROM sync_runs ORDER BY sink_id")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(sinks.len());
        for sink_id in sinks {
            let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE sink_id = ?")
                .bind(&sink_id)
                .fetch_one(&self.pool)
                .await?;
            let last: Option<(i64, String)> =
                sqlx::query_as("SELECT finished_at, outcome FROM sync_runs WHERE sink_id = ? ORDER BY id DESC LIMIT 1")
                    .bind(&sink_id)
                    .fetch_optional(&self.pool)
                    .await?;
            let (last_sync_at, last_sync_outcome) = match last {
                Some((at, outcome)) => (Some(at), Some(outcome)),
                None => (None, None),
            };
            out.push(SinkStatus {
                entries: count("ledger", "entry count", entries)?,
                sink_id,
                last_sync_at,
                last_sync_outcome,
            });
        }
        Ok(out)
    }

    /// Appends records (one transaction): all of them are on record, or none.
    pub async fn audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for chunk in records.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO audit_log (at, actor, action, target, item, reason, response) ");
            qb.push_values(chunk, |mut row, r| {
                row.push_bind(r.at)
                    .push_bind(r.actor.as_str())
                    .push_bind(r.action.as_str())
                    .push_bind(r.target.as_str())
                    .push_bind(r.item.as_str())
                    .push_bind(r.reason.as_str())
                    .push_bind(r.response.as_str());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` records, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let rows: Vec<(i64, String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT at, actor, action, target, item, reason, response FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, actor, action, target, item, reason, response)| AuditRecord {
                at,
                actor,
                action,
                target,
                item,
                reason,
                response,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_store;

    fn record(i: i64) -> AuditRecord {
        AuditRecord {
            at: 1_700_000_000 + i,
            actor: "sync:apex".into(),
            action: "add".into(),
            target: "apex".into(),
            item: format!("sha1:{i:040}"),
            reason: "desired by policy default".into(),
            response: "200 OK".into(),
        }
    }

    #[tokio::test]
    async fn audit_records_read_back_newest_first() {
        let (_dir, store) = temp_store().await;
        let records: Vec<AuditRecord> = (0..5).map(record).collect();
        store.audit(&records[..3]).await.unwrap();
        store.audit(&records[3..]).await.unwrap();
        let log = store.audit_log(10).await.unwrap();
        let expected: Vec<AuditRecord> = records.iter().rev().cloned().collect();
        assert_eq!(log, expected);
        assert_eq!(store.audit_log(2).await.unwrap(), expected[..2].to_vec());
    }

    #[tokio::test]
    async fn the_audit_log_refuses_update_and_delete() {
        let (_dir, store) = temp_store().await;
        store.audit(&[record(1)]).await.unwrap();
        let update = sqlx::query("UPDATE audit_log SET response = 'forged'").execute(&store.pool).await;
        match update {
            Err(e) => assert!(e.to_string().contains("append-only"), "{e}"),
            Ok(_) => panic!("an UPDATE of the audit log went through"),
        }
        assert!(sqlx::query("DELETE FROM audit_log").execute(&store.pool).await.is_err());
        assert_eq!(store.audit_log(10).await.unwrap(), vec![record(1)]);
    }

    #[tokio::test]
    async fn sync_runs_feed_sink_statuses() {
        let (_dir, store) = temp_store().await;
        assert!(store.sink_statuses().await.unwrap().is_empty());
        let run = SyncRunRecord {
            sink_id: "v1".into(),
            started_at: 10,
            finished_at: 20,
            dry_run: false,
            additions: 3,
            removals: 1,
            failures: 0,
            outcome: "applied".into(),
        };
        store.record_sync_run(&run).await.unwrap();
        let refused =
            SyncRunRecord { started_at: 30, finished_at: 31, outcome: "refused: 80% removal".into(), ..run.clone() };
        store.record_sync_run(&refused).await.unwrap();
        let statuses = store.sink_statuses().await.unwrap();
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].entries, 0);
        assert_eq!(statuses[0].last_sync_at, Some(31));
        assert_eq!(statuses[0].last_sync_outcome.as_deref(), Some("refused: 80% removal"));
        assert_eq!(store.sync_runs("v1", 10).await.unwrap(), vec![refused, run]);
    }
}
