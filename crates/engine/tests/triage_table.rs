//! The triage decision table (`tests/data/triage_decisions.toml`): every branch of the
//! policy as data, read by this one test so a rule change shows up as a changed row.

use serde::Deserialize;
use tibridge_connectors::enrich::{EnrichError, Reputation, SandboxReport, SandboxVerdict};
use tibridge_core::filters::allowlist::Allowlist;
use tibridge_core::policy::Filters;
use tibridge_core::{normalize, IndicatorKind};
use tibridge_engine::triage::config::RawTriage;
use tibridge_engine::triage::{decide, Decision};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    row: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    name: String,
    kind: String,
    value: String,
    vt_malicious: Option<u32>,
    vt_suspicious: Option<u32>,
    vt_found: Option<bool>,
    vt_error: Option<String>,
    sandbox: Option<String>,
    resolved_ip: Option<String>,
    #[serde(default)]
    alert_ips: Vec<String>,
    allowlist: Option<String>,
    #[serde(default)]
    count_suspicious: bool,
    direct_block_kinds: Option<Vec<String>>,
    decision: String,
    rule: String,
    targets: Option<Vec<String>>,
}

fn reputation(row: &Row) -> Result<Reputation, EnrichError> {
    match row.vt_error.as_deref() {
        Some("quota") => Err(EnrichError::QuotaExceeded { provider: "virustotal".into(), detail: "daily".into() }),
        Some("unavailable") => Err(EnrichError::Unavailable { provider: "virustotal".into(), detail: "503".into() }),
        Some(other) => panic!("row {:?}: unknown vt_error {other:?}", row.name),
        None => Ok(Reputation {
            provider: "virustotal".into(),
            found: row.vt_found.unwrap_or(true),
            malicious: row.vt_malicious.unwrap_or(0),
            suspicious: row.vt_suspicious.unwrap_or(0),
            harmless: 50,
            undetected: 20,
            link: None,
        }),
    }
}

fn sandbox(row: &Row) -> Option<Result<SandboxReport, EnrichError>> {
    let verdict = match row.sandbox.as_deref()? {
        "malicious" => SandboxVerdict::Malicious,
        "suspicious" => SandboxVerdict::Suspicious,
        "clean" => SandboxVerdict::Clean,
        "offline" => SandboxVerdict::Offline,
        "inconclusive" => SandboxVerdict::Inconclusive,
        "timed_out" => return Some(Err(EnrichError::TimedOut { provider: "intezer".into(), waited_seconds: 120 })),
        "unavailable" => {
            return Some(Err(EnrichError::Unavailable { provider: "intezer".into(), detail: "502".into() }))
        }
        other => panic!("row {:?}: unknown sandbox {other:?}", row.name),
    };
    Some(Ok(SandboxReport {
        provider: "intezer".into(),
        verdict,
        link: None,
        title: None,
        resolved_ip: row.resolved_ip.clone(),
        scanned_url: None,
    }))
}

#[test]
fn every_row_of_the_decision_table_holds() {
    let text = include_str!("data/triage_decisions.toml");
    let table: Table = toml::from_str(text).expect("the decision table parses");
    assert!(table.row.len() >= 20, "the table covers every branch");
    let mut failures = Vec::new();
    for row in &table.row {
        let kind: IndicatorKind = row.kind.parse().expect("row kind");
        let object = normalize(kind, &row.value).expect("row value is an indicator");
        let alert_ips: Vec<_> =
            row.alert_ips.iter().map(|ip| normalize(IndicatorKind::Ipv4, ip).expect("alert ip")).collect();
        let raw = RawTriage {
            direct_block_kinds: row.direct_block_kinds.clone(),
            virustotal: tibridge_engine::triage::config::RawThresholds {
                count_suspicious: row.count_suspicious,
                ..Default::default()
            },
            ..RawTriage::default()
        };
        let policy = raw.validate(std::path::Path::new("."), None).expect("row policy");
        let filters =
            Filters { allowlist: Allowlist::parse(row.allowlist.as_deref().unwrap_or("")).0, ..Filters::default() };
        let sandbox = sandbox(row);
        let decided = decide(&object, &alert_ips, &reputation(row), sandbox.as_ref(), &policy, &filters);
        let targets: Option<Vec<String>> = match &decided.decision {
            Decision::Block { targets } => Some(targets.iter().map(|t| t.to_string()).collect()),
            _ => None,
        };
        let ok = decided.decision.name() == row.decision
            && decided.rule.as_str() == row.rule
            && (row.targets.is_none() || row.targets == targets);
        if !ok {
            failures.push(format!(
                "{}: expected {} by {} {:?}, got {} by {} {:?} ({:?})",
                row.name,
                row.decision,
                row.rule,
                row.targets,
                decided.decision.name(),
                decided.rule.as_str(),
                targets,
                decided.decision
            ));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}
