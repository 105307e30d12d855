//! Plan = desired state minus ledger (additions) and ledger minus desired (removals).
//!
//! Pure: given what a sink should hold and what tibridge has confirmed it holds, say what to
//! change. It never plans the removal of an entry the ledger does not own: the ledger only
//! lists what tibridge itself added, so whatever an administrator put on a control by hand is
//! out of reach.

use crate::indicator::Indicator;
use crate::policy::DesiredEntry;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

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

/// The changes that bring one sink to its desired state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub sink_id: String,
    pub additions: Vec<DesiredEntry>,
    pub removals: Vec<LedgerEntry>,
    /// Entries already present and still wanted.
    pub unchanged: usize,
    /// How many entries the ledger holds before the plan is applied.
    pub ledger_size: usize,
}

/// A plan refused because it would remove too much of a sink at once.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error(
    "plan for sink {sink_id} would remove {removals} of its {ledger_size} entries ({percent:.0}%), more than the allowed {max_percent:.0}%; \
     an empty answer from a broken source looks exactly like this. Check the sources, then run again with --force if it is right"
)]
pub struct GuardrailRefusal {
    pub sink_id: String,
    pub removals: usize,
    pub ledger_size: usize,
    pub percent: f64,
    pub max_percent: f64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.additions.is_empty() && self.removals.is_empty()
    }

    /// Share of the sink's current entries this plan removes (0 for an empty ledger).
    pub fn removal_ratio(&self) -> f64 {
        if self.ledger_size == 0 {
            0.0
        } else {
            self.removals.len() as f64 / self.ledger_size as f64
        }
    }

    /// Refuses a plan that removes more than `max_removal_ratio` of the sink's entries.
    pub fn check_removal_guardrail(&self, max_removal_ratio: f64) -> Result<(), GuardrailRefusal> {
        let ratio = self.removal_ratio();
        if ratio > max_removal_ratio {
            return Err(GuardrailRefusal {
                sink_id: self.sink_id.clone(),
                removals: self.removals.len(),
                ledger_size: self.ledger_size,
                percent: ratio * 100.0,
                max_percent: max_removal_ratio * 100.0,
            });
        }
        Ok(())
    }
}

/// Diffs a sink's desired entries against its ledger.
///
/// A ledger entry whose expiry has passed is treated as gone from the sink (the control
/// dropped it by itself): if it is still wanted it is added again, otherwise it is removed
/// (removing an entry that is already gone is harmless and keeps the ledger honest).
pub fn plan(sink_id: &str, desired: &[DesiredEntry], ledger: &[LedgerEntry], now: i64) -> Plan {
    let wanted: HashSet<&Indicator> = desired.iter().map(|e| &e.indicator).collect();
    let present: HashMap<&Indicator, &LedgerEntry> =
        ledger.iter().filter(|e| !matches!(e.expires_at, Some(at) if at <= now)).map(|e| (&e.indicator, e)).collect();
    let additions: Vec<DesiredEntry> =
        desired.iter().filter(|e| !present.contains_key(&e.indicator)).cloned().collect();
    let removals: Vec<LedgerEntry> = ledger.iter().filter(|e| !wanted.contains(&e.indicator)).cloned().collect();
    Plan {
        sink_id: sink_id.to_string(),
        unchanged: desired.len() - additions.len(),
        additions,
        removals,
        ledger_size: ledger.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::IndicatorKind;

    const NOW: i64 = 1_800_000_000;

    fn desired(value: &str) -> DesiredEntry {
        DesiredEntry {
            indicator: Indicator::from_canonical(IndicatorKind::Domain, value),
            confidence: None,
            tlp: None,
            expires_at: None,
            last_seen: None,
            provenance: String::new(),
            tags: Vec::new(),
        }
    }

    fn owned(value: &str, expires_at: Option<i64>) -> LedgerEntry {
        LedgerEntry {
            indicator: Indicator::from_canonical(IndicatorKind::Domain, value),
            remote_id: None,
            added_at: 0,
            expires_at,
        }
    }

    fn values<T>(items: &[T], f: impl Fn(&T) -> &Indicator) -> Vec<String> {
        items.iter().map(|i| f(i).value.clone()).collect()
    }

    #[test]
    fn adds_the_missing_and_removes_only_what_the_ledger_owns() {
        let p = plan("s", &[desired("a"), desired("b")], &[owned("b", None), owned("c", None)], NOW);
        assert_eq!(values(&p.additions, |e| &e.indicator), ["a"]);
        assert_eq!(values(&p.removals, |e| &e.indicator), ["c"]);
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn the_same_state_twice_plans_nothing() {
        let p = plan("s", &[desired("a")], &[owned("a", Some(NOW + 10))], NOW);
        assert!(p.is_empty());
    }

    #[test]
    fn an_expired_entry_still_wanted_is_added_again_and_not_removed() {
        let p = plan("s", &[desired("a")], &[owned("a", Some(NOW - 1)), owned("b", Some(NOW - 1))], NOW);
        assert_eq!(values(&p.additions, |e| &e.indicator), ["a"]);
        assert_eq!(values(&p.removals, |e| &e.indicator), ["b"]);
    }

    #[test]
    fn guardrail_refuses_mass_removal() {
        let ledger: Vec<LedgerEntry> = (0..10).map(|i| owned(&format!("d{i}"), None)).collect();
        let keep: Vec<DesiredEntry> = (0..8).map(|i| desired(&format!("d{i}"))).collect();
        assert!(plan("s", &keep, &ledger, NOW).check_removal_guardrail(0.2).is_ok());
        let refusal = plan("s", &keep[..7], &ledger, NOW).check_removal_guardrail(0.2).unwrap_err();
        assert_eq!((refusal.removals, refusal.ledger_size), (3, 10));
        assert!(plan("s", &[], &ledger, NOW).check_removal_guardrail(0.2).is_err());
        assert!(plan("s", &[], &[], NOW).check_removal_guardrail(0.2).is_ok());
    }
}
