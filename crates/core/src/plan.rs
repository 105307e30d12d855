//! Plan = desired state minus ledger (additions) and ledger minus desired (removals).
//!
//! Pure: given what a sink should hold and what tibridge has confirmed it holds, say what to
//! change. Never plans the removal of an entry the ledger does not own: the ledger only ever
//! lists what tibridge itself added.

use crate::indicator::Indicator;
use crate::policy::DesiredEntry;
use serde::Serialize;

/// What tibridge has confirmed is present on a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub indicator: Indicator,
    /// The sink's own id for the entry (Deep Security rule ID, STIX id), when it has one.
    pub remote_id: Option<String>,
    /// Unix seconds when the add was confirmed.
    pub added_at: i64,
    /// The expiry sent with the entry, if any (Unix seconds).
    pub expires_at: Option<i64>,
}
