//! The desired state of a sink: a pure function of the catalog, the sink's routing and
//! policy, the filters (warninglists, allowlist, CIDR width), expiry and capacity.
//!
//! Every indicator a sink does not get is recorded with the rule that filtered it, so
//! `tibridge indicators` can answer "why is this not blocked?". This module never looks at
//! what a sink holds today: that is the plan's job.

use crate::filters::allowlist::Allowlist;
use crate::filters::warninglist::WarninglistSet;
use crate::indicator::{Indicator, IndicatorKind, Observation, Tlp};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

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

/// What a sink accepts. Built from the sink's config section.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkPolicy {
    /// Routing: the kinds this sink takes.
    pub kinds: BTreeSet<IndicatorKind>,
    pub min_confidence: Option<u8>,
    /// The most restricted TLP this sink may receive. `None` accepts every level.
    pub max_tlp: Option<Tlp>,
    /// Only observations the source flagged for detection (MISP `to_ids`).
    pub require_to_ids: bool,
    /// When not empty, an observation needs at least one of these tags.
    pub include_tags: Vec<String>,
    /// An observation with any of these tags is not used.
    pub exclude_tags: Vec<String>,
    /// Hard limit of the control: keep the best N by confidence, then recency.
    pub capacity: Option<usize>,
}

impl SinkPolicy {
    /// A policy that takes the given kinds with the safe defaults: to_ids only, at most
    /// TLP:AMBER, no confidence floor, no capacity.
    pub fn for_kinds(kinds: impl IntoIterator<Item = IndicatorKind>) -> Self {
        SinkPolicy {
            kinds: kinds.into_iter().collect(),
            min_confidence: None,
            max_tlp: Some(Tlp::Amber),
            require_to_ids: true,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            capacity: None,
        }
    }
}

/// The filters shared by every sink.
#[derive(Debug, Clone)]
pub struct Filters {
    pub warninglists: WarninglistSet,
    pub allowlist: Allowlist,
    /// The widest IPv4 network that may be blocked, as a prefix length (default /24).
    pub max_cidr_prefix_v4: u8,
    /// The widest IPv6 network that may be blocked (default /48).
    pub max_cidr_prefix_v6: u8,
    /// Per source: observations older than this many seconds are not used.
    pub max_age_by_source: HashMap<String, i64>,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            warninglists: WarninglistSet::default(),
            allowlist: Allowlist::default(),
            max_cidr_prefix_v4: 24,
            max_cidr_prefix_v6: 48,
            max_age_by_source: HashMap::new(),
        }
    }
}

/// Why an indicator is not in a sink's desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum FilterReason {
    /// The sink does not take this kind.
    NotRouted {
        kind: IndicatorKind,
    },
    /// Every source withdrew it (MISP soft delete, STIX revoked).
    Deleted,
    /// No source flagged it for detection.
    NotToIds,
    TlpTooHigh {
        tlp: Tlp,
        max: Tlp,
    },
    /// `valid_until` has passed.
    Expired {
        at: i64,
    },
    /// Older than the source's `max_age`.
    TooOld {
        source_id: String,
        max_age_seconds: i64,
    },
    TagExcluded {
        tag: String,
    },
    MissingRequiredTag,
    BelowConfidence {
        confidence: Option<u8>,
        min: u8,
    },
    Warninglist {
        list: String,
    },
    Allowlist {
        entry: String,
    },
    CidrTooWide {
        prefix: u8,
        max: u8,
    },
    /// The sink is full; better indicators took the places.
    OverCapacity {
        capacity: usize,
    },
}

impl fmt::Display for FilterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterReason::NotRouted { kind } => write!(f, "not routed: sink does not take {kind}"),
            FilterReason::Deleted => write!(f, "deleted or revoked by every source"),
            FilterReason::NotToIds => write!(f, "no source flagged it for detection (to_ids)"),
            FilterReason::TlpTooHigh { tlp, max } => write!(f, "{tlp} is above the sink's {max}"),
            FilterReason::Expired { at } => write!(f, "expired at {}", crate::timestamp::iso_seconds(*at)),
            FilterReason::TooOld { source_id, max_age_seconds } => {
                write!(f, "older than max_age {}d of source {source_id}", max_age_seconds / 86_400)
            }
            FilterReason::TagExcluded { tag } => write!(f, "tag {tag:?} is excluded"),
            FilterReason::MissingRequiredTag => write!(f, "has none of the sink's required tags"),
            FilterReason::BelowConfidence { confidence, min } => match confidence {
                Some(c) => write!(f, "confidence {c} below the sink's minimum {min}"),
                None => write!(f, "no confidence given, sink requires at least {min}"),
            },
            FilterReason::Warninglist { list } => write!(f, "on warninglist {list:?}"),
            FilterReason::Allowlist { entry } => write!(f, "allowlisted by {entry}"),
            FilterReason::CidrTooWide { prefix, max } => {
                write!(f, "network /{prefix} is wider than the allowed /{max}")
            }
            FilterReason::OverCapacity { capacity } => write!(f, "over the sink's capacity of {capacity}"),
        }
    }
}

/// A sink's desired state and everything left out of it, with why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DesiredState {
    /// What the sink should hold, best first.
    pub entries: Vec<DesiredEntry>,
    /// Indicators of a kind the sink takes that a rule kept out, with the rule.
    pub filtered: Vec<(Indicator, FilterReason)>,
    /// Indicators of kinds the sink does not take (counted only).
    pub not_routed: u64,
}

impl DesiredState {
    /// Indicators that passed every filter but did not fit the sink's capacity.
    pub fn left_out_by_capacity(&self) -> impl Iterator<Item = &Indicator> {
        self.filtered
            .iter()
            .filter(|(_, reason)| matches!(reason, FilterReason::OverCapacity { .. }))
            .map(|(indicator, _)| indicator)
    }
}

/// Evaluates one catalog indicator for one sink: the entry it should hold, or why not.
pub fn evaluate(
    indicator: &Indicator,
    observations: &[Observation],
    policy: &SinkPolicy,
    filters: &Filters,
    now: i64,
) -> Result<DesiredEntry, FilterReason> {
    if !policy.kinds.contains(&indicator.kind) {
        return Err(FilterReason::NotRouted { kind: indicator.kind });
    }
    // Each observation is judged on its own: a sink only gets what some source allowed it
    // to get, and the provenance it receives only cites those sources.
    let mut first_reason = None;
    let mut usable: Vec<&Observation> = Vec::with_capacity(observations.len());
    for observation in observations {
        match observation_reason(observation, policy, filters, now) {
            None => usable.push(observation),
            Some(reason) => {
                first_reason.get_or_insert(reason);
            }
        }
    }
    if usable.is_empty() {
        return Err(first_reason.unwrap_or(FilterReason::Deleted));
    }
    if let Some(entry) = filters.allowlist.matching(indicator) {
        return Err(FilterReason::Allowlist { entry });
    }
    if let Some(list) = filters.warninglists.matching(indicator) {
        return Err(FilterReason::Warninglist { list: list.to_string() });
    }
    if let Some(reason) = cidr_too_wide(indicator, filters) {
        return Err(reason);
    }
    let confidence = usable.iter().filter_map(|o| o.confidence).max();
    if let Some(min) = policy.min_confidence {
        if !matches!(confidence, Some(c) if c >= min) {
            return Err(FilterReason::BelowConfidence { confidence, min });
        }
    }
    Ok(merge(indicator, &usable, confidence, filters))
}

fn observation_reason(
    observation: &Observation,
    policy: &SinkPolicy,
    filters: &Filters,
    now: i64,
) -> Option<FilterReason> {
    if observation.deleted {
        return Some(FilterReason::Deleted);
    }
    if policy.require_to_ids && !observation.to_ids {
        return Some(FilterReason::NotToIds);
    }
    if let (Some(tlp), Some(max)) = (observation.tlp, policy.max_tlp) {
        if tlp > max {
            return Some(FilterReason::TlpTooHigh { tlp, max });
        }
    }
    if let Some(at) = observation.valid_until {
        if at <= now {
            return Some(FilterReason::Expired { at });
        }
    }
    if let Some(&max_age) = filters.max_age_by_source.get(&observation.source_id) {
        if let Some(seen) = recency(observation) {
            if seen + max_age <= now {
                return Some(FilterReason::TooOld {
                    source_id: observation.source_id.clone(),
                    max_age_seconds: max_age,
                });
            }
        }
    }
    if let Some(tag) = observation.tags.iter().find(|t| policy.exclude_tags.iter().any(|x| x.eq_ignore_ascii_case(t))) {
        return Some(FilterReason::TagExcluded { tag: tag.clone() });
    }
    if !policy.include_tags.is_empty()
        && !observation.tags.iter().any(|t| policy.include_tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
    {
        return Some(FilterReason::MissingRequiredTag);
    }
    None
}

/// The latest time a source said anything about the observation.
fn recency(observation: &Observation) -> Option<i64> {
    [observation.last_seen, observation.modified, observation.first_seen].into_iter().flatten().max()
}

fn cidr_too_wide(indicator: &Indicator, filters: &Filters) -> Option<FilterReason> {
    let max = match indicator.kind {
        IndicatorKind::Ipv4Cidr => filters.max_cidr_prefix_v4,
        IndicatorKind::Ipv6Cidr => filters.max_cidr_prefix_v6,
        _ => return None,
    };
    let prefix: u8 = indicator.value.rsplit_once('/')?.1.parse().ok()?;
    (prefix < max).then_some(FilterReason::CidrTooWide { prefix, max })
}

fn merge(indicator: &Indicator, usable: &[&Observation], confidence: Option<u8>, filters: &Filters) -> DesiredEntry {
    let last_seen = usable.iter().filter_map(|o| recency(o)).max();
    // The entry lives as long as its longest-lived source says it should.
    let expires_at = usable
        .iter()
        .map(|o| {
            let by_age =
                filters.max_age_by_source.get(&o.source_id).and_then(|max_age| recency(o).map(|seen| seen + max_age));
            match (o.valid_until, by_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
        .try_fold(i64::MIN, |latest, e| e.map(|e| latest.max(e)));
    let tlp = usable.iter().filter_map(|o| o.tlp).min();
    let mut tags: Vec<String> = usable.iter().flat_map(|o| o.tags.iter().cloned()).collect();
    tags.sort();
    tags.dedup();
    let provenance = usable
        .iter()
        .take(3)
        .map(|o| match (&o.event_ref, &o.event_info) {
            (Some(event), Some(info)) => format!("{} {} ({}) item {}", o.source_id, event, info, o.source_ref),
            (Some(event), None) => format!("{} {} item {}", o.source_id, event, o.source_ref),
            _ => format!("{} {}", o.source_id, o.source_ref),
        })
        .collect::<Vec<_>>()
        .join("; ");
    DesiredEntry { indicator: indicator.clone(), confidence, tlp, expires_at, last_seen, provenance, tags }
}

/// Computes a sink's desired state over the whole catalog, then applies its capacity.
pub fn desired_state<'a>(
    catalog: impl IntoIterator<Item = (&'a Indicator, &'a [Observation])>,
    policy: &SinkPolicy,
    filters: &Filters,
    now: i64,
) -> DesiredState {
    let mut builder = DesiredStateBuilder::new(policy, filters, now);
    for (indicator, observations) in catalog {
        builder.push(indicator, observations);
    }
    builder.finish()
}

/// Builds a desired state one catalog indicator at a time, so the engine can evaluate every
/// sink while the catalog streams past once instead of holding it all in memory.
///
/// Indicators of a kind the sink does not take are counted, not kept: at a million indicators
/// and several sinks, keeping a `NotRouted` reason for each would cost more than the catalog.
pub struct DesiredStateBuilder<'p> {
    policy: &'p SinkPolicy,
    filters: &'p Filters,
    now: i64,
    state: DesiredState,
    not_routed: u64,
}

impl<'p> DesiredStateBuilder<'p> {
    pub fn new(policy: &'p SinkPolicy, filters: &'p Filters, now: i64) -> Self {
        DesiredStateBuilder { policy, filters, now, state: DesiredState::default(), not_routed: 0 }
    }

    pub fn push(&mut self, indicator: &Indicator, observations: &[Observation]) {
        match evaluate(indicator, observations, self.policy, self.filters, self.now) {
            Ok(entry) => self.state.entries.push(entry),
            Err(FilterReason::NotRouted { .. }) => self.not_routed += 1,
            Err(reason) => self.state.filtered.push((indicator.clone(), reason)),
        }
    }

    /// Ranks the entries and applies the capacity.
    pub fn finish(mut self) -> DesiredState {
        rank(&mut self.state.entries);
        if let Some(capacity) = self.policy.capacity {
            if self.state.entries.len() > capacity {
                for entry in self.state.entries.drain(capacity..) {
                    self.state.filtered.push((entry.indicator, FilterReason::OverCapacity { capacity }));
                }
            }
        }
        self.state.not_routed = self.not_routed;
        self.state
    }
}

/// Best first: highest confidence, then most recent, then a stable order.
pub fn rank(entries: &mut [DesiredEntry]) {
    entries.sort_by(|a, b| {
        b.confidence
            .unwrap_or(0)
            .cmp(&a.confidence.unwrap_or(0))
            .then(b.last_seen.unwrap_or(i64::MIN).cmp(&a.last_seen.unwrap_or(i64::MIN)))
            .then_with(|| a.indicator.cmp(&b.indicator))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn observation(kind: IndicatorKind, value: &str) -> Observation {
        let mut o = Observation::new(Indicator::from_canonical(kind, value), "feed", format!("ref-{value}"));
        o.modified = Some(NOW - 100);
        o
    }

    fn policy() -> SinkPolicy {
        SinkPolicy::for_kinds([
            IndicatorKind::Domain,
            IndicatorKind::Ipv4,
            IndicatorKind::Ipv4Cidr,
            IndicatorKind::Sha1,
        ])
    }

    fn check(
        observations: &[Observation],
        policy: &SinkPolicy,
        filters: &Filters,
    ) -> Result<DesiredEntry, FilterReason> {
        evaluate(&observations[0].indicator, observations, policy, filters, NOW)
    }

    #[test]
    fn routing_decides_first() {
        let o = observation(IndicatorKind::Url, "http://evil.example/");
        assert_eq!(
            check(&[o], &policy(), &Filters::default()),
            Err(FilterReason::NotRouted { kind: IndicatorKind::Url })
        );
    }

    #[test]
    fn a_deleted_observation_does_not_hide_a_live_one() {
        let mut gone = observation(IndicatorKind::Domain, "evil.example");
        gone.deleted = true;
        let live = observation(IndicatorKind::Domain, "evil.example");
        assert_eq!(check(std::slice::from_ref(&gone), &policy(), &Filters::default()), Err(FilterReason::Deleted));
        assert!(check(&[gone, live], &policy(), &Filters::default()).is_ok());
    }

    #[test]
    fn tlp_above_the_sink_is_refused() {
        let mut red = observation(IndicatorKind::Domain, "evil.example");
        red.tlp = Some(Tlp::Red);
        assert_eq!(
            check(&[red], &policy(), &Filters::default()),
            Err(FilterReason::TlpTooHigh { tlp: Tlp::Red, max: Tlp::Amber })
        );
    }

    #[test]
    fn expiry_and_max_age() {
        let mut expired = observation(IndicatorKind::Domain, "evil.example");
        expired.valid_until = Some(NOW - 1);
        assert_eq!(check(&[expired], &policy(), &Filters::default()), Err(FilterReason::Expired { at: NOW - 1 }));

        let mut filters = Filters::default();
        filters.max_age_by_source.insert("feed".into(), 50);
        let old = observation(IndicatorKind::Domain, "evil.example");
        assert!(matches!(check(&[old], &policy(), &filters), Err(FilterReason::TooOld { .. })));

        filters.max_age_by_source.insert("feed".into(), 1000);
        let fresh = observation(IndicatorKind::Domain, "evil.example");
        assert_eq!(check(&[fresh], &policy(), &filters).unwrap().expires_at, Some(NOW - 100 + 1000));
    }

    #[test]
    fn wide_networks_are_refused() {
        let wide = observation(IndicatorKind::Ipv4Cidr, "10.0.0.0/8");
        assert_eq!(
            check(&[wide], &policy(), &Filters::default()),
            Err(FilterReason::CidrTooWide { prefix: 8, max: 24 })
        );
        let narrow = observation(IndicatorKind::Ipv4Cidr, "198.51.100.0/28");
        assert!(check(&[narrow], &policy(), &Filters::default()).is_ok());
    }

    #[test]
    fn confidence_floor_uses_the_best_source() {
        let mut p = policy();
        p.min_confidence = Some(60);
        let mut low = observation(IndicatorKind::Sha1, "a");
        low.confidence = Some(40);
        assert_eq!(
            check(std::slice::from_ref(&low), &p, &Filters::default()),
            Err(FilterReason::BelowConfidence { confidence: Some(40), min: 60 })
        );
        let mut high = observation(IndicatorKind::Sha1, "a");
        high.confidence = Some(80);
        assert_eq!(check(&[low, high], &p, &Filters::default()).unwrap().confidence, Some(80));
    }

    #[test]
    fn tags_include_and_exclude() {
        let mut p = policy();
        p.exclude_tags = vec!["false-positive".into()];
        let mut o = observation(IndicatorKind::Domain, "evil.example");
        o.tags = vec!["False-Positive".into()];
        assert!(matches!(
            check(std::slice::from_ref(&o), &p, &Filters::default()),
            Err(FilterReason::TagExcluded { .. })
        ));
        p.exclude_tags.clear();
        p.include_tags = vec!["c2".into()];
        assert_eq!(check(&[o], &p, &Filters::default()), Err(FilterReason::MissingRequiredTag));
    }

    #[test]
    fn capacity_keeps_the_best_and_says_what_was_left_out() {
        let mut p = policy();
        p.capacity = Some(2);
        let mut observations = Vec::new();
        for (value, confidence, modified) in [("a.example", 50, 10), ("b.example", 90, 5), ("c.example", 50, 20)] {
            let mut o = observation(IndicatorKind::Domain, value);
            o.confidence = Some(confidence);
            o.modified = Some(NOW - 1000 + modified);
            observations.push(o);
        }
        let catalog: Vec<(Indicator, Vec<Observation>)> =
            observations.into_iter().map(|o| (o.indicator.clone(), vec![o])).collect();
        let state = desired_state(catalog.iter().map(|(i, o)| (i, o.as_slice())), &p, &Filters::default(), NOW);
        let kept: Vec<&str> = state.entries.iter().map(|e| e.indicator.value.as_str()).collect();
        assert_eq!(kept, ["b.example", "c.example"]);
        let left: Vec<&str> = state.left_out_by_capacity().map(|i| i.value.as_str()).collect();
        assert_eq!(left, ["a.example"]);
    }
}
