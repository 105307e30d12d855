//! The desired state of a sink: a pure function of the catalog, the sink's routing and
//! policy, the filters, expiry and capacity. (engine author fills this in)

use crate::indicator::{Indicator, Tlp};
use serde::Serialize;

/// One indicator a sink should hold, with what the sink needs to describe it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredEntry {
    pub indicator: Indicator,
    pub confidence: Option<u8>,
    pub tlp: Option<Tlp>,
    /// Unix seconds after which the entry should be gone, if known.
    pub expires_at: Option<i64>,
    /// Latest time any source changed or saw it (Unix seconds), used to rank by recency.
    pub last_seen: Option<i64>,
    /// Provenance for notes and descriptions: `misp event <uuid> attribute <uuid>`.
    pub provenance: String,
    pub tags: Vec<String>,
}
