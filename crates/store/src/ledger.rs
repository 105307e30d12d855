//! The per-sink ledger: what tibridge has confirmed is present on each sink.
//!
//! Only confirmed changes are written here; the store never infers a removal. An entry
//! missing from here is one tibridge will never remove from the sink.

use sqlx::{QueryBuilder, Sqlite};
use tibridge_core::plan::LedgerEntry;
use tibridge_core::{Indicator, IndicatorKind};

use crate::catalog::parse_kind;
use crate::{Result, Store, MAX_BIND_PARAMS};

/// kind, value, remote_id, added_at, expires_at
type LedgerRow = (String, String, Option<String>, i64, Option<i64>);

const LEDGER_BINDS: usize = 6;
const LEDGER_ROWS_PER_STATEMENT: usize = MAX_BIND_PARAMS / LEDGER_BINDS;

impl Store {
    /// Every entry of `sink_id`, in [`Indicator`] order (kind as declared, then value).
    pub async fn ledger(&self, sink_id: &str) -> Result<Vec<LedgerEntry>> {
        let rows: Vec<LedgerRow> = sqlx::query_as(
            "SELECT kind, value, remote_id, added_at, expires_at FROM ledger WHERE sink_id = ? ORDER BY kind, value",
        )
        .bind(sink_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (kind, value, remote_id, added_at, expires_at) in rows {
            let kind: IndicatorKind = parse_kind("ledger", &kind)?;
            out.push(LedgerEntry {
                indicator: Indicator::from_canonical(kind, value),
                remote_id,
                added_at,
                expires_at,
            });
        }
        // SQL orders kinds by name; listings use the model's kind order.
        out.sort_by(|a, b| a.indicator.cmp(&b.indicator));
        Ok(out)
    }

    /// Records confirmed additions (one transaction). Re-adding an entry replaces its
    /// remote id and times: the sink's latest answer is the truth.
    pub async fn ledger_add(&self, sink_id: &str, entries: &[LedgerEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for chunk in entries.chunks(LEDGER_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO ledger (sink_id, kind, value, remote_id, added_at, expires_at) ");
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(sink_id)
                    .push_bind(e.indicator.kind.as_str())
                    .push_bind(e.indicator.value.as_str())
                    .push_bind(e.remote_id.as_deref())
                    .push_bind(e.added_at)
                    .push_bind(e.expires_at);
            });
            qb.push(
                " ON CONFLICT (sink_id, kind, value) DO UPDATE SET remote_id = excluded.remote_id, \
                 added_at = excluded.added_at, expires_at = excluded.expires_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records confirmed removals (one transaction). Removing an entry that is not there
    /// is not an error: a retried apply may confirm the same removal twice.
    pub async fn ledger_remove(&self, sink_id: &str, indicators: &[Indicator]) -> Result<()> {
        if indicators.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for ind in indicators {
            sqlx::query("DELETE FROM ledger WHERE sink_id = ? AND kind = ? AND value = ?")
                .bind(sink_id)
                .bind(ind.kind.as_str())
                .bind(ind.value.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_store;

    fn entry(kind: IndicatorKind, value: &str, remote: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            indicator: Indicator::from_canonical(kind, value),
            remote_id: remote.map(str::to_string),
            added_at: 1_700_000_000,
            expires_at: Some(1_800_000_000),
        }
    }

    #[tokio::test]
    async fn entries_are_added_replaced_and_removed_per_sink() {
        let (_dir, store) = temp_store().await;
        let a = entry(IndicatorKind::Sha256, &"a".repeat(64), Some("rule-17"));
        let b = entry(IndicatorKind::Domain, "evil.example", None);
        store.ledger_add("dsm", &[a.clone(), b.clone()]).await.unwrap();
        store.ledger_add("apex", std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(store.ledger("dsm").await.unwrap(), vec![a.clone(), b.clone()]);

        let mut a2 = a.clone();
        a2.remote_id = Some("rule-18".into());
        a2.expires_at = None;
        store.ledger_add("dsm", &[a2.clone()]).await.unwrap();
        assert_eq!(store.ledger("dsm").await.unwrap(), vec![a2.clone(), b.clone()]);

        store.ledger_remove("dsm", &[b.indicator.clone(), b.indicator.clone()]).await.unwrap();
        assert_eq!(store.ledger("dsm").await.unwrap(), vec![a2]);
        assert_eq!(store.ledger("apex").await.unwrap(), vec![b]);
        assert!(store.ledger("none").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn many_entries_are_chunked_into_one_transaction() {
        let (_dir, store) = temp_store().await;
        let entries: Vec<LedgerEntry> = (0..(LEDGER_ROWS_PER_STATEMENT * 2 + 3))
            .map(|i| entry(IndicatorKind::Domain, &format!("d{i}.example"), None))
            .collect();
        store.ledger_add("edl", &entries).await.unwrap();
        assert_eq!(store.ledger("edl").await.unwrap().len(), entries.len());
        let statuses = store.sink_statuses().await.unwrap();
        assert_eq!(statuses[0].entries, entries.len() as u64);
    }
}
