//! The `AlertSource` trait: where detections to triage come from (Vision One OAT detections
//! or workbench alerts).
//!
//! An alert source only reads and translates; deciding what to do is the playbook's job.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tibridge_core::Indicator;

/// One detection or alert to triage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id from the vendor (OAT detection `uuid`, workbench `WB-...` id); the playbook
    /// handles each id exactly once.
    pub id: String,
    /// The configured alert source id.
    pub source_id: String,
    /// Unix seconds.
    pub detected_at: i64,
    /// `critical`, `high`, ... as the vendor says it.
    pub severity: String,
    /// Filter or model names, for people.
    pub title: String,
    pub tactic_ids: Vec<String>,
    pub technique_ids: Vec<String>,
    /// Host or account the alert is about, if known.
    pub entity: Option<String>,
    /// The highlighted objects, in the vendor's order, deduplicated.
    pub objects: Vec<AlertObject>,
    /// A link to the alert in the vendor console, if any.
    pub link: Option<String>,
}

/// One highlighted object of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertObject {
    /// The vendor's field name (`request`, `objectIp`, `url`, ...).
    pub field: String,
    /// The vendor's type name (`url`, `domain`, `ip`, `file_sha1`, ...).
    pub vendor_type: String,
    /// The raw value as sent.
    pub raw_value: String,
    /// The normalized indicator, or `None` with the reason the value is not one.
    pub indicator: Result<Indicator, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertSourceError {
    #[error("alert source {source_id}: {reason}")]
    Unavailable { source_id: String, reason: String },
}

#[async_trait]
pub trait AlertSource: Send + Sync {
    fn id(&self) -> &str;
    /// Alerts detected in `[since, until]` (Unix seconds) matching the source's configured
    /// filter (severities, tactic ids), every page followed.
    async fn poll(&self, since: i64, until: i64) -> Result<Vec<Alert>, AlertSourceError>;
}
