//! The decision for one highlighted object: a pure function of what VirusTotal and the
//! sandbox said, the validated [`TriagePolicy`] and the shared [`Filters`].
//!
//! This module never blocks on an error, never blocks what the allowlist or a warninglist
//! covers, and never performs I/O. Every outcome names the rule that decided it, so a case
//! can answer "why was this blocked?" and the behaviour table can pin each branch.
//!
//! # Rules, in order
//!
//! | rule | when | decision |
//! |---|---|---|
//! | `enrichment_error` | VirusTotal answered with an error (down, quota, unsupported) | review |
//! | `vt_not_found` | VirusTotal does not know the object: unknown is not benign | review |
//! | `vt_benign` | count in the benign band (default 0) | benign (close) |
//! | `vt_review_band` | count in the review band (default 1..=3) | review |
//! | `vt_malicious_direct_block` | malicious band, kind in `direct_block_kinds` | block the object |
//! | `vt_malicious_not_sandboxed` | malicious band, kind neither sandboxed nor direct-blocked (domains, IPs by default) | review |
//! | `sandbox_missing` | malicious band and sandboxed kind, but no sandbox answer given | review |
//! | `sandbox_timed_out` | the sandbox did not finish in time | review |
//! | `sandbox_error` | any other sandbox error | review |
//! | `sandbox_malicious` | sandbox says malicious | block URL, its domain (or IP host) and the IP it resolved to |
//! | `sandbox_offline` | the URL could not be reached: short-lived URLs are suspicious by themselves | block URL, its domain, and the alert's own public IPs (the sandbox gave none) |
//! | `sandbox_suspicious` | sandbox says suspicious | review |
//! | `sandbox_clean` | sandbox says clean: VirusTotal and the sandbox disagree | review |
//! | `sandbox_inconclusive` | sandbox finished without a verdict | review |
//! | `allowlisted` | a block whose object itself is on the allowlist or a warninglist | review |
//! | `nothing_blockable` | a block none of whose targets may be blocked (e.g. md5 on Vision One) | review |
//!
//! A block target other than the object (its domain, an IP) that the allowlist, a
//! warninglist or the address's scope (private, loopback, ...) excludes is left out and
//! listed in [`Decided::withheld`] with why; the rest of the block goes ahead, so a CDN or
//! resolver IP is never blocked while the malicious URL still is.

use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tibridge_connectors::enrich::{EnrichError, Reputation, SandboxReport, SandboxVerdict};
use tibridge_core::policy::Filters;
use tibridge_core::{normalize, Indicator, IndicatorKind};

use super::config::{Band, TriagePolicy};

/// The kinds the Vision One Suspicious Object list takes (contract trendmicro §4.2).
pub const BLOCKABLE_KINDS: [IndicatorKind; 6] = [
    IndicatorKind::Domain,
    IndicatorKind::Url,
    IndicatorKind::Ipv4,
    IndicatorKind::Ipv6,
    IndicatorKind::Sha1,
    IndicatorKind::Sha256,
];

/// The rule that decided, named as in the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    EnrichmentError,
    VtNotFound,
    VtBenign,
    VtReviewBand,
    VtMaliciousDirectBlock,
    VtMaliciousNotSandboxed,
    SandboxMissing,
    SandboxTimedOut,
    SandboxError,
    SandboxMalicious,
    SandboxOffline,
    SandboxSuspicious,
    SandboxClean,
    SandboxInconclusive,
    Allowlisted,
    NothingBlockable,
}

impl Rule {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::EnrichmentError => "enrichment_error",
            Rule::VtNotFound => "vt_not_found",
            Rule::VtBenign => "vt_benign",
            Rule::VtReviewBand => "vt_review_band",
            Rule::VtMaliciousDirectBlock => "vt_malicious_direct_block",
            Rule::VtMaliciousNotSandboxed => "vt_malicious_not_sandboxed",
            Rule::SandboxMissing => "sandbox_missing",
            Rule::SandboxTimedOut => "sandbox_timed_out",
            Rule::SandboxError => "sandbox_error",
            Rule::SandboxMalicious => "sandbox_malicious",
            Rule::SandboxOffline => "sandbox_offline",
            Rule::SandboxSuspicious => "sandbox_suspicious",
            Rule::SandboxClean => "sandbox_clean",
            Rule::SandboxInconclusive => "sandbox_inconclusive",
            Rule::Allowlisted => "allowlisted",
            Rule::NothingBlockable => "nothing_blockable",
        }
    }
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing to do: the object is not malicious.
    Benign,
    /// An analyst must look.
    Review { reason: String },
    /// Put these on the Suspicious Object list.
    Block { targets: Vec<Indicator> },
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Benign => "benign",
            Decision::Review { .. } => "review",
            Decision::Block { .. } => "block",
        }
    }
}

/// A target left out of a block (or of a proposed block), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withheld {
    pub indicator: Indicator,
    pub reason: String,
}

/// A decision with the rule that made it and what it left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    pub decision: Decision,
    pub rule: Rule,
    /// Targets that may not be blocked, with why.
    pub withheld: Vec<Withheld>,
    /// For a review: what approving it would block (already screened).
    pub proposed: Vec<Indicator>,
}

/// After VirusTotal: either decided, or the object must go to the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Decided(Decided),
    Sandbox,
}

/// The VirusTotal count the bands apply to.
pub fn vt_count(reputation: &Reputation, policy: &TriagePolicy) -> u32 {
    if policy.thresholds.count_suspicious {
        reputation.malicious.saturating_add(reputation.suspicious)
    } else {
        reputation.malicious
    }
}

/// The first step: VirusTotal's answer alone. `alert_objects` are the alert's other
/// normalized objects (the IPs an offline URL's block may take).
pub fn after_reputation(
    object: &Indicator,
    reputation: &Result<Reputation, EnrichError>,
    policy: &TriagePolicy,
    filters: &Filters,
) -> Step {
    let review = |rule: Rule, reason: String| {
        let (proposed, withheld) = screen_all(candidate_targets(object, None), filters);
        Step::Decided(Decided { decision: Decision::Review { reason }, rule, withheld, proposed })
    };
    let reputation = match reputation {
        Err(error) => return review(Rule::EnrichmentError, format!("reputation lookup failed: {error}")),
        Ok(r) => r,
    };
    if !reputation.found {
        return review(
            Rule::VtNotFound,
            format!("{} does not know {object}: unknown is not benign", reputation.provider),
        );
    }
    let count = vt_count(reputation, policy);
    let figures = format!(
        "{}: {} malicious, {} suspicious, {} harmless, {} undetected",
        reputation.provider, reputation.malicious, reputation.suspicious, reputation.harmless, reputation.undetected
    );
    match policy.thresholds.band(count) {
        Band::Benign => Step::Decided(Decided {
            decision: Decision::Benign,
            rule: Rule::VtBenign,
            withheld: Vec::new(),
            proposed: Vec::new(),
        }),
        Band::Review => review(Rule::VtReviewBand, format!("maybe malicious ({figures})")),
        Band::Malicious if policy.sandbox_kinds.contains(&object.kind) => Step::Sandbox,
        Band::Malicious if policy.direct_block_kinds.contains(&object.kind) => {
            Step::Decided(block(Rule::VtMaliciousDirectBlock, object, vec![object.clone()], filters))
        }
        Band::Malicious => review(
            Rule::VtMaliciousNotSandboxed,
            format!(
                "malicious on VirusTotal ({figures}) but {} objects are not sandboxed nor blocked on VirusTotal alone",
                object.kind
            ),
        ),
    }
}

/// The whole decision. `sandbox` is the sandbox's answer when the object was sent there
/// (the playbook sends it only when [`after_reputation`] says [`Step::Sandbox`]).
pub fn decide(
    object: &Indicator,
    alert_objects: &[Indicator],
    reputation: &Result<Reputation, EnrichError>,
    sandbox: Option<&Result<SandboxReport, EnrichError>>,
    policy: &TriagePolicy,
    filters: &Filters,
) -> Decided {
    match after_reputation(object, reputation, policy, filters) {
        Step::Decided(decided) => decided,
        Step::Sandbox => after_sandbox(object, alert_objects, sandbox, filters),
    }
}

fn after_sandbox(
    object: &Indicator,
    alert_objects: &[Indicator],
    sandbox: Option<&Result<SandboxReport, EnrichError>>,
    filters: &Filters,
) -> Decided {
    let review = |rule: Rule, reason: String, resolved: Option<&str>| {
        let (proposed, withheld) = screen_all(candidate_targets(object, resolved), filters);
        Decided { decision: Decision::Review { reason }, rule, withheld, proposed }
    };
    let report = match sandbox {
        None => {
            return review(Rule::SandboxMissing, "malicious on VirusTotal; the sandbox was not consulted".into(), None)
        }
        Some(Err(error @ EnrichError::TimedOut { .. })) => {
            return review(Rule::SandboxTimedOut, format!("malicious on VirusTotal; {error}"), None)
        }
        Some(Err(error)) => {
            return review(Rule::SandboxError, format!("malicious on VirusTotal; sandbox failed: {error}"), None)
        }
        Some(Ok(report)) => report,
    };
    let title = report.title.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
    let resolved = report.resolved_ip.as_deref();
    match report.verdict {
        SandboxVerdict::Malicious => {
            block(Rule::SandboxMalicious, object, candidate_targets(object, resolved), filters)
        }
        SandboxVerdict::Offline if object.kind == IndicatorKind::Url => {
            let mut targets = candidate_targets(object, None);
            targets.extend(
                alert_objects.iter().filter(|o| matches!(o.kind, IndicatorKind::Ipv4 | IndicatorKind::Ipv6)).cloned(),
            );
            block(Rule::SandboxOffline, object, targets, filters)
        }
        SandboxVerdict::Offline | SandboxVerdict::Inconclusive => review(
            Rule::SandboxInconclusive,
            format!("malicious on VirusTotal; {} gave no verdict{title}", report.provider),
            resolved,
        ),
        SandboxVerdict::Suspicious => review(
            Rule::SandboxSuspicious,
            format!("malicious on VirusTotal; {} says suspicious{title}", report.provider),
            resolved,
        ),
        SandboxVerdict::Clean => review(
            Rule::SandboxClean,
            format!(
                "VirusTotal and the sandbox disagree: malicious on VirusTotal, clean on {}{title}",
                report.provider
            ),
            resolved,
        ),
    }
}

/// A block of `targets` after screening; the object itself being excluded turns it into a
/// review, and so does having nothing left to block.
fn block(rule: Rule, object: &Indicator, targets: Vec<Indicator>, filters: &Filters) -> Decided {
    if let Some(reason) = excluded(object, filters) {
        let (_, withheld) = screen_all(targets, filters);
        return Decided {
            decision: Decision::Review { reason: format!("would block ({}) but {object} is {reason}", rule.as_str()) },
            rule: Rule::Allowlisted,
            withheld,
            proposed: Vec::new(),
        };
    }
    let (targets, withheld) = screen_all(targets, filters);
    if targets.is_empty() {
        return Decided {
            decision: Decision::Review {
                reason: format!("would block ({}) but no target of {object} may be blocked", rule.as_str()),
            },
            rule: Rule::NothingBlockable,
            withheld,
            proposed: Vec::new(),
        };
    }
    Decided { decision: Decision::Block { targets }, rule, withheld, proposed: Vec::new() }
}

/// What a block of `object` would cover: the object, and for a URL its host (domain or IP)
/// and, when known, the IP it resolved to.
pub fn candidate_targets(object: &Indicator, resolved_ip: Option<&str>) -> Vec<Indicator> {
    let mut out = vec![object.clone()];
    if object.kind == IndicatorKind::Url {
        if let Some(host) = url_host(&object.value) {
            out.push(host);
        }
    }
    if let Some(ip) = resolved_ip.and_then(ip_indicator) {
        out.push(ip);
    }
    out
}

/// Splits targets into those that may be blocked and those withheld (deduplicated, in order).
fn screen_all(targets: Vec<Indicator>, filters: &Filters) -> (Vec<Indicator>, Vec<Withheld>) {
    let mut keep: Vec<Indicator> = Vec::new();
    let mut withheld: Vec<Withheld> = Vec::new();
    for target in targets {
        if keep.contains(&target) || withheld.iter().any(|w| w.indicator == target) {
            continue;
        }
        let reason = if !BLOCKABLE_KINDS.contains(&target.kind) {
            Some(format!("{} cannot be put on the Suspicious Object list", target.kind))
        } else {
            excluded(&target, filters)
        };
        match reason {
            Some(reason) => withheld.push(Withheld { indicator: target, reason }),
            None => keep.push(target),
        }
    }
    (keep, withheld)
}

/// Why `indicator` must never be blocked, if it must not.
pub fn excluded(indicator: &Indicator, filters: &Filters) -> Option<String> {
    if let Some(entry) = filters.allowlist.matching(indicator) {
        return Some(format!("allowlisted by {entry}"));
    }
    if let Some(list) = filters.warninglists.matching(indicator) {
        return Some(format!("on warninglist {list:?}"));
    }
    if matches!(indicator.kind, IndicatorKind::Ipv4 | IndicatorKind::Ipv6) {
        match indicator.value.parse::<IpAddr>() {
            Ok(ip) if !is_public(ip) => return Some("a private or reserved address".to_string()),
            Ok(_) => {}
            Err(_) => return Some("not an IP address".to_string()),
        }
    }
    None
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments().first().copied().unwrap_or(0);
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

fn ip_indicator(text: &str) -> Option<Indicator> {
    let kind = match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => IndicatorKind::Ipv4,
        IpAddr::V6(_) => IndicatorKind::Ipv6,
    };
    normalize(kind, text).ok()
}

/// The host of a canonical URL as an indicator: a domain, or an IP for an IP-literal host.
pub fn url_host(url: &str) -> Option<Indicator> {
    let rest = url.split_once("://").map(|(_, rest)| rest)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split_once(']').map(|(h, _)| h)?
    } else {
        host_port.split(':').next()?
    };
    if host.is_empty() {
        return None;
    }
    ip_indicator(host).or_else(|| normalize(IndicatorKind::Domain, host).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibridge_core::filters::allowlist::Allowlist;

    fn ind(kind: IndicatorKind, value: &str) -> Indicator {
        Indicator::from_canonical(kind, value)
    }

    fn rep(malicious: u32) -> Result<Reputation, EnrichError> {
        Ok(Reputation {
            provider: "virustotal".into(),
            found: true,
            malicious,
            suspicious: 2,
            harmless: 50,
            undetected: 10,
            link: None,
        })
    }

    fn report(verdict: SandboxVerdict, ip: Option<&str>) -> Result<SandboxReport, EnrichError> {
        Ok(SandboxReport {
            provider: "intezer".into(),
            verdict,
            link: None,
            title: None,
            resolved_ip: ip.map(str::to_string),
            scanned_url: None,
        })
    }

    fn filters(allow: &str) -> Filters {
        Filters { allowlist: Allowlist::parse(allow).0, ..Filters::default() }
    }

    #[test]
    fn url_hosts_are_domains_or_ips() {
        assert_eq!(url_host("http://user@evil.example:8080/a?b#c"), Some(ind(IndicatorKind::Domain, "evil.example")));
        assert_eq!(url_host("http://203.0.113.9/x"), Some(ind(IndicatorKind::Ipv4, "203.0.113.9")));
        assert_eq!(url_host("http://[2001:db8::1]:80/"), Some(ind(IndicatorKind::Ipv6, "2001:db8::1")));
        assert_eq!(url_host("no scheme"), None);
        assert_eq!(url_host("http:///path"), None);
        assert_eq!(url_host("http://[unclosed/"), None);
    }

    #[test]
    fn a_malicious_url_blocks_url_domain_and_public_resolved_ip() {
        let url = ind(IndicatorKind::Url, "http://evil.example/gate.php");
        let d = decide(
            &url,
            &[],
            &rep(9),
            Some(&report(SandboxVerdict::Malicious, Some("198.51.100.7"))),
            &TriagePolicy::default(),
            &Filters::default(),
        );
        assert_eq!(d.rule, Rule::SandboxMalicious);
        assert_eq!(
            d.decision,
            Decision::Block {
                targets: vec![
                    url.clone(),
                    ind(IndicatorKind::Domain, "evil.example"),
                    ind(IndicatorKind::Ipv4, "198.51.100.7")
                ]
            }
        );
    }

    #[test]
    fn an_allowlisted_resolver_ip_is_withheld_but_the_rest_blocked() {
        let url = ind(IndicatorKind::Url, "http://evil.example/gate.php");
        let d = decide(
            &url,
            &[],
            &rep(9),
            Some(&report(SandboxVerdict::Malicious, Some("8.8.8.8"))),
            &TriagePolicy::default(),
            &filters("8.8.8.8 # google resolver"),
        );
        assert_eq!(d.rule, Rule::SandboxMalicious);
        assert_eq!(d.decision, Decision::Block { targets: vec![url, ind(IndicatorKind::Domain, "evil.example")] });
        assert_eq!(d.withheld.len(), 1);
        assert!(d.withheld[0].reason.contains("google resolver"), "{:?}", d.withheld);
    }

    #[test]
    fn an_allowlisted_object_is_never_blocked() {
        let url = ind(IndicatorKind::Url, "http://cdn.example/x");
        let d = decide(
            &url,
            &[],
            &rep(9),
            Some(&report(SandboxVerdict::Malicious, None)),
            &TriagePolicy::default(),
            &filters("cdn.example"),
        );
        assert_eq!(d.rule, Rule::Allowlisted);
        assert!(matches!(d.decision, Decision::Review { ref reason } if reason.contains("allowlisted")));
    }

    #[test]
    fn offline_urls_take_the_alerts_public_ips_only() {
        let url = ind(IndicatorKind::Url, "http://gone.example/p");
        let alert = [ind(IndicatorKind::Ipv4, "10.1.2.3"), ind(IndicatorKind::Ipv4, "203.0.113.5")];
        let d = decide(
            &url,
            &alert,
            &rep(5),
            Some(&report(SandboxVerdict::Offline, None)),
            &TriagePolicy::default(),
            &Filters::default(),
        );
        assert_eq!(d.rule, Rule::SandboxOffline);
        assert_eq!(
            d.decision,
            Decision::Block {
                targets: vec![url, ind(IndicatorKind::Domain, "gone.example"), ind(IndicatorKind::Ipv4, "203.0.113.5")]
            }
        );
        assert_eq!(d.withheld[0].indicator, ind(IndicatorKind::Ipv4, "10.1.2.3"));
    }

    #[test]
    fn md5_cannot_be_blocked_so_it_goes_to_review() {
        let mut policy = TriagePolicy::default();
        policy.sandbox_kinds.insert(IndicatorKind::Md5);
        let md5 = ind(IndicatorKind::Md5, &"a".repeat(32));
        let d =
            decide(&md5, &[], &rep(9), Some(&report(SandboxVerdict::Malicious, None)), &policy, &Filters::default());
        assert_eq!(d.rule, Rule::NothingBlockable);
    }

    #[test]
    fn suspicious_engines_count_only_when_asked() {
        let mut policy = TriagePolicy::default();
        let domain = ind(IndicatorKind::Domain, "x.example");
        assert_eq!(decide(&domain, &[], &rep(0), None, &policy, &Filters::default()).rule, Rule::VtBenign);
        policy.thresholds.count_suspicious = true;
        assert_eq!(decide(&domain, &[], &rep(0), None, &policy, &Filters::default()).rule, Rule::VtReviewBand);
    }
}
