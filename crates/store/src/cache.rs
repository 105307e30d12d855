//! The enrichment cache: an outside provider's answer about an indicator, reused until it
//! expires so triage does not spend a rate-limited quota twice on the same question.
//!
//! Never returns an expired answer; the body is stored as given (the provider's JSON).

use tibridge_core::Indicator;

use crate::{Result, Store};

/// A cached provider answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEnrichment {
    /// The provider's answer, usually its JSON.
    pub body: String,
    pub fetched_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// The answer `provider` gave about `indicator`, if one is cached and not expired at `now`.
    pub async fn cache_get(&self, provider: &str, indicator: &Indicator, now: i64) -> Result<Option<CachedEnrichment>> {
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT body, fetched_at, expires_at FROM enrichment_cache \
             WHERE provider = ? AND kind = ? AND value = ? AND expires_at > ?",
        )
        .bind(provider)
        .bind(indicator.kind.as_str())
        .bind(indicator.value.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(body, fetched_at, expires_at)| CachedEnrichment { body, fetched_at, expires_at }))
    }

    /// Stores (or replaces) `provider`'s answer about `indicator`.
    pub async fn cache_put(
        &self,
        provider: &str,
        indicator: &Indicator,
        body: &str,
        fetched_at: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO enrichment_cache (provider, kind, value, body, fetched_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (provider, kind, value) DO UPDATE SET body = excluded.body, \
             fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
        )
        .bind(provider)
        .bind(indicator.kind.as_str())
        .bind(indicator.value.as_str())
        .bind(body)
        .bind(fetched_at)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Drops answers expired at `now`; returns how many.
    pub async fn cache_purge_expired(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM enrichment_cache WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_store;
    use tibridge_core::IndicatorKind;

    #[tokio::test]
    async fn answers_are_reused_until_they_expire() {
        let (_dir, store) = temp_store().await;
        let ind = Indicator::from_canonical(IndicatorKind::Sha256, "e".repeat(64));
        assert_eq!(store.cache_get("virustotal", &ind, 100).await.unwrap(), None);
        store.cache_put("virustotal", &ind, r#"{"malicious":3}"#, 100, 200).await.unwrap();
        let hit = store.cache_get("virustotal", &ind, 150).await.unwrap().unwrap();
        assert_eq!(hit, CachedEnrichment { body: r#"{"malicious":3}"#.into(), fetched_at: 100, expires_at: 200 });
        assert_eq!(store.cache_get("intezer", &ind, 150).await.unwrap(), None);
        assert_eq!(store.cache_get("virustotal", &ind, 200).await.unwrap(), None);
        store.cache_put("virustotal", &ind, r#"{"malicious":9}"#, 300, 400).await.unwrap();
        assert_eq!(store.cache_get("virustotal", &ind, 350).await.unwrap().unwrap().body, r#"{"malicious":9}"#);
        assert_eq!(store.cache_purge_expired(500).await.unwrap(), 1);
        assert_eq!(store.cache_get("virustotal", &ind, 350).await.unwrap(), None);
    }
}
