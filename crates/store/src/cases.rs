//! Triage records: which alerts were claimed and handled, the case written for each, and
//! the review queue of objects an analyst must decide.
//!
//! This module only records. It must never let two runs claim the same alert (the claim is
//! one `INSERT ... ON CONFLICT DO NOTHING`), never write a case without marking its alert
//! handled in the same transaction, and never decide a review item twice.

use serde::{Deserialize, Serialize};
use tibridge_core::{Indicator, IndicatorKind};

use crate::{Result, Store, StoreError};

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Handled but nothing concluded (no object could be examined).
    Open,
    /// Every object was benign: nothing to do.
    Closed,
    /// At least one object waits for an analyst in the review queue.
    Review,
    /// Something was blocked.
    Blocked,
}

impl CaseStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Closed => "closed",
            CaseStatus::Review => "review",
            CaseStatus::Blocked => "blocked",
        }
    }

    fn parse(text: &str) -> Result<CaseStatus> {
        match text {
            "open" => Ok(CaseStatus::Open),
            "closed" => Ok(CaseStatus::Closed),
            "review" => Ok(CaseStatus::Review),
            "blocked" => Ok(CaseStatus::Blocked),
            other => Err(StoreError::Corrupt { table: "cases", reason: format!("unknown status {other:?}") }),
        }
    }
}

/// Where a review item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Rejected,
}

impl ReviewStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }

    fn parse(text: &str) -> Result<ReviewStatus> {
        match text {
            "pending" => Ok(ReviewStatus::Pending),
            "approved" => Ok(ReviewStatus::Approved),
            "rejected" => Ok(ReviewStatus::Rejected),
            other => Err(StoreError::Corrupt { table: "review_queue", reason: format!("unknown status {other:?}") }),
        }
    }
}

/// A review item to write with its case.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReview {
    pub object: Indicator,
    /// What approving it would do, as the playbook describes it (JSON).
    pub proposed_action: serde_json::Value,
    pub reason: String,
}

/// One stored case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    pub id: i64,
    pub alert_id: String,
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: CaseStatus,
    pub summary: serde_json::Value,
}

/// One stored review item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub case_id: i64,
    pub object: Indicator,
    pub proposed_action: serde_json::Value,
    pub reason: String,
    pub created_at: i64,
    pub status: ReviewStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
}

type CaseRow = (i64, String, String, i64, i64, String, String);
type ReviewRow = (i64, i64, String, String, String, String, i64, String, Option<String>, Option<i64>, Option<String>);

fn case_from_row(row: CaseRow) -> Result<Case> {
    let (id, alert_id, source, created_at, updated_at, status, summary) = row;
    let summary = serde_json::from_str(&summary)
        .map_err(|e| StoreError::Corrupt { table: "cases", reason: format!("case {id}: summary is not JSON: {e}") })?;
    Ok(Case { id, alert_id, source, created_at, updated_at, status: CaseStatus::parse(&status)?, summary })
}

fn review_from_row(row: ReviewRow) -> Result<ReviewItem> {
    let (id, case_id, kind, value, proposed, reason, created_at, status, decided_by, decided_at, decision_reason) = row;
    let kind: IndicatorKind =
        kind.parse().map_err(|e| StoreError::Corrupt { table: "review_queue", reason: format!("item {id}: {e}") })?;
    let proposed_action = serde_json::from_str(&proposed).map_err(|e| StoreError::Corrupt {
        table: "review_queue",
        reason: format!("item {id}: proposed action is not JSON: {e}"),
    })?;
    Ok(ReviewItem {
        id,
        case_id,
        object: Indicator::from_canonical(kind, value),
        proposed_action,
        reason,
        created_at,
        status: ReviewStatus::parse(&status)?,
        decided_by,
        decided_at,
        decision_reason,
    })
}

fn encode(what: &str, value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what: what.to_string(), source })
}

const REVIEW_COLUMNS: &str = "id, case_id, kind, value, proposed_action, reason, created_at, status, \
                              decided_by, decided_at, decision_reason";

impl Store {
    /// Claims `alert_id` for handling. True when this caller won the claim: the alert was
    /// never seen, or an earlier claim was never finished and is older than `stale_before`
    /// (a run that crashed mid-alert). False when it is handled or another run holds it.
    pub async fn claim_alert(&self, alert_id: &str, source: &str, now: i64, stale_before: i64) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO triage_alerts (alert_id, source, first_seen, claimed_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (alert_id) DO NOTHING",
        )
        .bind(alert_id)
        .bind(source)
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        // One statement, so of two runs taking over the same stale claim only one matches.
        let taken = sqlx::query(
            "UPDATE triage_alerts SET claimed_at = ? WHERE alert_id = ? AND handled_at IS NULL AND claimed_at < ?",
        )
        .bind(now)
        .bind(alert_id)
        .bind(stale_before)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// Gives a claim back without handling the alert (the run failed before deciding
    /// anything), so the next run takes it again.
    pub async fn release_alert(&self, alert_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM triage_alerts WHERE alert_id = ? AND handled_at IS NULL")
            .bind(alert_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Whether the alert has been handled (a case written for it).
    pub async fn alert_handled(&self, alert_id: &str) -> Result<bool> {
        let row: Option<(Option<i64>,)> = sqlx::query_as("SELECT handled_at FROM triage_alerts WHERE alert_id = ?")
            .bind(alert_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(matches!(row, Some((Some(_),))))
    }

    /// Writes the case of a claimed alert with its review items and marks the alert handled,
    /// all in one transaction. Returns the case id and the review item ids in order.
    pub async fn record_case(
        &self,
        alert_id: &str,
        source: &str,
        now: i64,
        status: CaseStatus,
        summary: &serde_json::Value,
        reviews: &[NewReview],
    ) -> Result<(i64, Vec<i64>)> {
        let summary = encode(&format!("case summary of alert {alert_id}"), summary)?;
        let mut tx = self.writer.begin().await?;
        let (case_id,): (i64,) = sqlx::query_as(
            "INSERT INTO cases (alert_id, source, created_at, updated_at, status, summary) VALUES (?, ?, ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(alert_id)
        .bind(source)
        .bind(now)
        .bind(now)
        .bind(status.as_str())
        .bind(summary)
        .fetch_one(&mut *tx)
        .await?;
        let mut review_ids = Vec::with_capacity(reviews.len());
        for review in reviews {
            let proposed = encode(&format!("proposed action for {}", review.object), &review.proposed_action)?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO review_queue (case_id, kind, value, proposed_action, reason, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(case_id)
            .bind(review.object.kind.as_str())
            .bind(review.object.value.as_str())
            .bind(proposed)
            .bind(review.reason.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            review_ids.push(id);
        }
        sqlx::query(
            "INSERT INTO triage_alerts (alert_id, source, first_seen, claimed_at, handled_at, case_id) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (alert_id) DO UPDATE SET handled_at = excluded.handled_at, case_id = excluded.case_id",
        )
        .bind(alert_id)
        .bind(source)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(case_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((case_id, review_ids))
    }

    /// One case by id.
    pub async fn case(&self, id: i64) -> Result<Option<Case>> {
        let row: Option<CaseRow> = sqlx::query_as(
            "SELECT id, alert_id, source, created_at, updated_at, status, summary FROM cases WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(case_from_row).transpose()
    }

    /// The newest `limit` cases, newest first.
    pub async fn cases(&self, limit: usize) -> Result<Vec<Case>> {
        let rows: Vec<CaseRow> = sqlx::query_as(
            "SELECT id, alert_id, source, created_at, updated_at, status, summary FROM cases ORDER BY id DESC LIMIT ?",
        )
        .bind(crate::to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(case_from_row).collect()
    }

    /// Changes a case's status and appends `note` (JSON) to its summary's `"history"` array,
    /// so what happened after the playbook (an approval, a rejection) stays with the case.
    pub async fn update_case(&self, id: i64, status: CaseStatus, note: serde_json::Value, now: i64) -> Result<bool> {
        let Some(mut case) = self.case(id).await? else {
            return Ok(false);
        };
        if let Some(map) = case.summary.as_object_mut() {
            let history = map.entry("history").or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let Some(list) = history.as_array_mut() {
                list.push(note);
            }
        }
        let summary = encode(&format!("summary of case {id}"), &case.summary)?;
        let changed = sqlx::query("UPDATE cases SET status = ?, summary = ?, updated_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(summary)
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(changed == 1)
    }

    /// One review item by id.
    pub async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>> {
        let row: Option<ReviewRow> = sqlx::query_as(&format!("SELECT {REVIEW_COLUMNS} FROM review_queue WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(review_from_row).transpose()
    }

    /// Review items, oldest first; only those with `status` when given.
    pub async fn review_items(&self, status: Option<ReviewStatus>, limit: usize) -> Result<Vec<ReviewItem>> {
        let limit = crate::to_i64(limit as u64);
        let rows: Vec<ReviewRow> = match status {
            Some(status) => {
                sqlx::query_as(&format!(
                    "SELECT {REVIEW_COLUMNS} FROM review_queue WHERE status = ? ORDER BY id LIMIT ?"
                ))
                .bind(status.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!("SELECT {REVIEW_COLUMNS} FROM review_queue ORDER BY id LIMIT ?"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter().map(review_from_row).collect()
    }

    /// Review items of one case, oldest first.
    pub async fn case_reviews(&self, case_id: i64) -> Result<Vec<ReviewItem>> {
        let rows: Vec<ReviewRow> =
            sqlx::query_as(&format!("SELECT {REVIEW_COLUMNS} FROM review_queue WHERE case_id = ? ORDER BY id"))
                .bind(case_id)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(review_from_row).collect()
    }

    /// Decides a pending review item. False when it is not pending any more (decided by
    /// someone else meanwhile) or does not exist: a decision is never overwritten.
    pub async fn decide_review(
        &self,
        id: i64,
        status: ReviewStatus,
        decided_by: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE review_queue SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(decided_by)
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_store;
    use serde_json::json;

    fn url(value: &str) -> Indicator {
        Indicator::from_canonical(IndicatorKind::Url, value)
    }

    #[tokio::test]
    async fn an_alert_is_claimed_once_and_a_stale_claim_can_be_taken_over() {
        let (_dir, store) = temp_store().await;
        assert!(store.claim_alert("WB-1", "v1", 100, 0).await.unwrap());
        assert!(!store.claim_alert("WB-1", "v1", 101, 0).await.unwrap());
        // Unfinished and older than the stale bound: taken over, once.
        assert!(store.claim_alert("WB-1", "v1", 5000, 200).await.unwrap());
        assert!(!store.claim_alert("WB-1", "v1", 5001, 200).await.unwrap());
        assert!(!store.alert_handled("WB-1").await.unwrap());
        store.record_case("WB-1", "v1", 5002, CaseStatus::Closed, &json!({}), &[]).await.unwrap();
        assert!(store.alert_handled("WB-1").await.unwrap());
        // Handled alerts are never stale.
        assert!(!store.claim_alert("WB-1", "v1", 99_999, 99_000).await.unwrap());
        store.release_alert("WB-1").await.unwrap();
        assert!(store.alert_handled("WB-1").await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_claims_have_one_winner() {
        let (_dir, store) = temp_store().await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.claim_alert("WB-2", "v1", 100, 0).await.unwrap() }));
        }
        let mut won = 0;
        for task in tasks {
            if task.await.unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn a_case_keeps_its_review_items_and_each_is_decided_once() {
        let (_dir, store) = temp_store().await;
        assert!(store.claim_alert("WB-3", "v1", 100, 0).await.unwrap());
        let reviews = vec![NewReview {
            object: url("http://bad.example/x"),
            proposed_action: json!({"action": "block"}),
            reason: "VirusTotal: 2 engines".into(),
        }];
        let (case_id, ids) = store
            .record_case("WB-3", "v1", 110, CaseStatus::Review, &json!({"alert": {"id": "WB-3"}}), &reviews)
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        let case = store.case(case_id).await.unwrap().unwrap();
        assert_eq!(case.status, CaseStatus::Review);
        assert_eq!(case.summary["alert"]["id"], "WB-3");
        assert_eq!(store.cases(10).await.unwrap().len(), 1);

        let pending = store.review_items(Some(ReviewStatus::Pending), 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].object, url("http://bad.example/x"));
        assert_eq!(pending[0].case_id, case_id);

        assert!(store.decide_review(ids[0], ReviewStatus::Rejected, "alice", "our CDN", 120).await.unwrap());
        assert!(!store.decide_review(ids[0], ReviewStatus::Approved, "bob", "no", 121).await.unwrap());
        let item = store.review_item(ids[0]).await.unwrap().unwrap();
        assert_eq!(item.status, ReviewStatus::Rejected);
        assert_eq!(item.decided_by.as_deref(), Some("alice"));
        assert_eq!(item.decision_reason.as_deref(), Some("our CDN"));
        assert!(store.review_items(Some(ReviewStatus::Pending), 10).await.unwrap().is_empty());
        assert_eq!(store.case_reviews(case_id).await.unwrap().len(), 1);

        assert!(store.update_case(case_id, CaseStatus::Closed, json!({"rejected": ids[0]}), 130).await.unwrap());
        let case = store.case(case_id).await.unwrap().unwrap();
        assert_eq!(case.status, CaseStatus::Closed);
        assert_eq!(case.summary["history"][0]["rejected"], ids[0]);
        assert!(!store.update_case(9999, CaseStatus::Closed, json!({}), 130).await.unwrap());
    }
}
