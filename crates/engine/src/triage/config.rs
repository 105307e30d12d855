//! The `[triage]` TOML section: raw keys as written, validated once into a [`TriagePolicy`].
//!
//! Everything the playbook and the decision rules need is checked here (durations, the
//! VirusTotal bands, kind lists); nothing downstream re-validates. This module must never
//! accept thresholds that leave a VirusTotal count without an outcome or with two.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tibridge_core::IndicatorKind;

/// A `[triage]` section that cannot be used, naming the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[triage] {key}: {reason}")]
pub struct TriageConfigError {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> TriageConfigError {
    TriageConfigError { key, reason: reason.into() }
}

/// The `[triage]` section exactly as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTriage {
    /// How far back each poll looks for detections, e.g. `"3d"` (default `3d`).
    pub lookback: Option<String>,
    /// Pause between polls of `tibridge triage` without `--once`, e.g. `"5m"` (default `5m`).
    pub interval: Option<String>,
    /// The VirusTotal bands.
    #[serde(default)]
    pub virustotal: RawThresholds,
    /// Kinds sent to the sandbox when VirusTotal says malicious (default `["url"]`; also
    /// `sha256`, `sha1`, `md5`).
    pub sandbox_kinds: Option<Vec<String>>,
    /// Kinds blocked on VirusTotal's word alone when malicious and not sandboxed (default
    /// none: a malicious domain or IP goes to review, since VirusTotal verdicts on shared
    /// infrastructure are often wrong and one bad block hurts more than one missed).
    pub direct_block_kinds: Option<Vec<String>>,
    /// Days a triage block stays on the Suspicious Object list (default 30; 0 = no expiry).
    pub block_expiry_days: Option<u32>,
    /// Vision One risk level of the blocks: `high`, `medium` or `low` (default `high`).
    pub risk_level: Option<String>,
    /// Vision One scan action of the blocks: `block` or `log` (default `block`).
    pub scan_action: Option<String>,
    /// Upload a STIX report of what was blocked and start a sweep (default true).
    pub hunt: Option<bool>,
    /// Objects examined per alert at most; the rest are listed in the case (default 20).
    pub max_objects_per_alert: Option<usize>,
    /// Decide and print only: no block, no hunt, no case (default false).
    pub dry_run: Option<bool>,
    /// How long a VirusTotal or sandbox answer is reused, e.g. `"1d"` (default `1d`).
    pub cache_ttl: Option<String>,
    /// The ledger id of triage blocks (default `vision-one-triage`), kept apart from the
    /// sync engine's sinks so a sync never removes a triage block it does not own.
    pub sink_id: Option<String>,
    /// The allowlist file a rejected review item is appended to (default: the
    /// `[filters] allowlist`, passed in by the engine).
    pub allowlist: Option<PathBuf>,
}

/// `[triage.virustotal]`: inclusive bands of the engine count. Every count from 0 up must
/// fall in exactly one band: `benign = [0, 0]`, `review = [1, 3]`, `malicious_from = 4`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    #[serde(default = "default_benign")]
    pub benign: [u32; 2],
    #[serde(default = "default_review")]
    pub review: [u32; 2],
    #[serde(default = "default_malicious_from")]
    pub malicious_from: u32,
    /// Add the engines that say "suspicious" to the count (default false: the original
    /// script read v2 `positives`, whose meaning for suspicious engines is unconfirmed).
    #[serde(default)]
    pub count_suspicious: bool,
}

impl Default for RawThresholds {
    fn default() -> Self {
        RawThresholds {
            benign: default_benign(),
            review: default_review(),
            malicious_from: default_malicious_from(),
            count_suspicious: false,
        }
    }
}

fn default_benign() -> [u32; 2] {
    [0, 0]
}
fn default_review() -> [u32; 2] {
    [1, 3]
}
fn default_malicious_from() -> u32 {
    4
}

/// Validated VirusTotal bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Counts `0..=benign_max` are benign.
    pub benign_max: u32,
    /// Counts `benign_max+1..=review_max` go to review.
    pub review_max: u32,
    /// Counts from `review_max + 1` are malicious.
    pub count_suspicious: bool,
}

/// Which band a count falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Benign,
    Review,
    Malicious,
}

impl Thresholds {
    pub fn band(&self, count: u32) -> Band {
        if count <= self.benign_max {
            Band::Benign
        } else if count <= self.review_max {
            Band::Review
        } else {
            Band::Malicious
        }
    }

    pub fn malicious_from(&self) -> u32 {
        self.review_max.saturating_add(1)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { benign_max: 0, review_max: 3, count_suspicious: false }
    }
}

/// Vision One risk level of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    High,
    Medium,
    Low,
}

impl RiskLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskLevel::High => "high",
            RiskLevel::Medium => "medium",
            RiskLevel::Low => "low",
        }
    }
}

/// Vision One scan action of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanAction {
    Block,
    Log,
}

impl ScanAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            ScanAction::Block => "block",
            ScanAction::Log => "log",
        }
    }
}

/// The validated triage settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TriagePolicy {
    pub lookback_seconds: i64,
    pub interval_seconds: u64,
    pub thresholds: Thresholds,
    pub sandbox_kinds: BTreeSet<IndicatorKind>,
    pub direct_block_kinds: BTreeSet<IndicatorKind>,
    /// `None`: blocks do not expire.
    pub block_expiry_seconds: Option<i64>,
    pub risk_level: RiskLevel,
    pub scan_action: ScanAction,
    pub hunt: bool,
    pub max_objects_per_alert: usize,
    pub dry_run: bool,
    pub cache_ttl_seconds: i64,
    pub sink_id: String,
    pub allowlist: Option<PathBuf>,
    /// A claim older than this that never finished (a crash mid-alert) may be taken over.
    pub stale_claim_seconds: i64,
}

impl Default for TriagePolicy {
    fn default() -> Self {
        TriagePolicy {
            lookback_seconds: 3 * 86_400,
            interval_seconds: 300,
            thresholds: Thresholds::default(),
            sandbox_kinds: BTreeSet::from([IndicatorKind::Url]),
            direct_block_kinds: BTreeSet::new(),
            block_expiry_seconds: Some(30 * 86_400),
            risk_level: RiskLevel::High,
            scan_action: ScanAction::Block,
            hunt: true,
            max_objects_per_alert: 20,
            dry_run: false,
            cache_ttl_seconds: 86_400,
            sink_id: "vision-one-triage".to_string(),
            allowlist: None,
            stale_claim_seconds: 3_600,
        }
    }
}

/// Reads `"90d"`, `"12h"`, `"30m"`, `"45s"` as seconds; `None` for anything else.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit_at = text.len().checked_sub(1)?;
    let (number, unit) = (text.get(..unit_at)?, text.get(unit_at..)?);
    let n: i64 = number.parse().ok()?;
    if n < 0 {
        return None;
    }
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn duration(key: &'static str, text: Option<&str>, default: i64) -> Result<i64, TriageConfigError> {
    match text {
        None => Ok(default),
        Some(text) => match parse_duration(text) {
            Some(0) => Err(invalid(key, format!("{text:?} must be longer than zero"))),
            Some(seconds) => Ok(seconds),
            None => Err(invalid(key, format!("{text:?} is not a duration like \"3d\", \"12h\", \"30m\" or \"45s\""))),
        },
    }
}

fn kinds(
    key: &'static str,
    names: Option<&[String]>,
    default: &[IndicatorKind],
    allowed: &[IndicatorKind],
) -> Result<BTreeSet<IndicatorKind>, TriageConfigError> {
    let Some(names) = names else {
        return Ok(default.iter().copied().collect());
    };
    let mut out = BTreeSet::new();
    for name in names {
        let kind: IndicatorKind = name.parse().map_err(|e| invalid(key, format!("{e}")))?;
        if !allowed.contains(&kind) {
            let allowed: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
            return Err(invalid(key, format!("{kind} is not accepted here (accepted: {})", allowed.join(", "))));
        }
        out.insert(kind);
    }
    Ok(out)
}

impl RawThresholds {
    /// Checks the bands tile the counts: benign starts at 0, each band starts right after
    /// the previous one ends, and none is empty or reversed.
    pub fn validate(&self) -> Result<Thresholds, TriageConfigError> {
        let [benign_min, benign_max] = self.benign;
        let [review_min, review_max] = self.review;
        if benign_min != 0 {
            return Err(invalid(
                "virustotal.benign",
                format!("must start at 0, so counts 0..{benign_min} have an outcome"),
            ));
        }
        if benign_max < benign_min {
            return Err(invalid("virustotal.benign", format!("[{benign_min}, {benign_max}] is reversed")));
        }
        if review_max < review_min {
            return Err(invalid("virustotal.review", format!("[{review_min}, {review_max}] is reversed")));
        }
        let expected = benign_max.saturating_add(1);
        if review_min > expected {
            return Err(invalid(
                "virustotal.review",
                format!("starts at {review_min}: counts {expected}..={} fall in no band", review_min - 1),
            ));
        }
        if review_min < expected {
            return Err(invalid(
                "virustotal.review",
                format!("starts at {review_min}: counts {review_min}..={benign_max} are both benign and review"),
            ));
        }
        let expected = review_max.saturating_add(1);
        if self.malicious_from > expected {
            return Err(invalid(
                "virustotal.malicious_from",
                format!("is {}: counts {expected}..={} fall in no band", self.malicious_from, self.malicious_from - 1),
            ));
        }
        if self.malicious_from < expected {
            return Err(invalid(
                "virustotal.malicious_from",
                format!(
                    "is {}: counts {}..={review_max} are both review and malicious",
                    self.malicious_from, self.malicious_from
                ),
            ));
        }
        Ok(Thresholds { benign_max, review_max, count_suspicious: self.count_suspicious })
    }
}

impl RawTriage {
    /// Validates the section. `base` resolves a relative allowlist path (the config file's
    /// folder); `default_allowlist` is the `[filters] allowlist`, used when none is given.
    pub fn validate(&self, base: &Path, default_allowlist: Option<&Path>) -> Result<TriagePolicy, TriageConfigError> {
        let defaults = TriagePolicy::default();
        const HASHES_AND_URL: [IndicatorKind; 4] =
            [IndicatorKind::Url, IndicatorKind::Sha256, IndicatorKind::Sha1, IndicatorKind::Md5];
        const BLOCKABLE: [IndicatorKind; 6] = [
            IndicatorKind::Domain,
            IndicatorKind::Url,
            IndicatorKind::Ipv4,
            IndicatorKind::Ipv6,
            IndicatorKind::Sha1,
            IndicatorKind::Sha256,
        ];
        let risk_level = match self.risk_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("high") => RiskLevel::High,
            Some("medium") => RiskLevel::Medium,
            Some("low") => RiskLevel::Low,
            Some(other) => return Err(invalid("risk_level", format!("{other:?} is not high, medium or low"))),
        };
        let scan_action = match self.scan_action.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("block") => ScanAction::Block,
            Some("log") => ScanAction::Log,
            Some(other) => return Err(invalid("scan_action", format!("{other:?} is not block or log"))),
        };
        let max_objects_per_alert = self.max_objects_per_alert.unwrap_or(defaults.max_objects_per_alert);
        if max_objects_per_alert == 0 {
            return Err(invalid("max_objects_per_alert", "must be at least 1"));
        }
        let sink_id = self.sink_id.clone().unwrap_or(defaults.sink_id);
        if sink_id.trim().is_empty() {
            return Err(invalid("sink_id", "must not be empty"));
        }
        let interval = duration("interval", self.interval.as_deref(), 300)?;
        let allowlist = match &self.allowlist {
            Some(path) if path.is_relative() => Some(base.join(path)),
            Some(path) => Some(path.clone()),
            None => default_allowlist.map(Path::to_path_buf),
        };
        Ok(TriagePolicy {
            lookback_seconds: duration("lookback", self.lookback.as_deref(), defaults.lookback_seconds)?,
            interval_seconds: u64::try_from(interval).unwrap_or(300),
            thresholds: self.virustotal.validate()?,
            sandbox_kinds: kinds(
                "sandbox_kinds",
                self.sandbox_kinds.as_deref(),
                &[IndicatorKind::Url],
                &HASHES_AND_URL,
            )?,
            direct_block_kinds: kinds("direct_block_kinds", self.direct_block_kinds.as_deref(), &[], &BLOCKABLE)?,
            block_expiry_seconds: match self.block_expiry_days {
                None => defaults.block_expiry_seconds,
                Some(0) => None,
                Some(days) => Some(i64::from(days) * 86_400),
            },
            risk_level,
            scan_action,
            hunt: self.hunt.unwrap_or(true),
            max_objects_per_alert,
            dry_run: self.dry_run.unwrap_or(false),
            cache_ttl_seconds: duration("cache_ttl", self.cache_ttl.as_deref(), defaults.cache_ttl_seconds)?,
            sink_id,
            allowlist,
            stale_claim_seconds: defaults.stale_claim_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TriagePolicy, String> {
        let raw: RawTriage = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate(Path::new("/etc/tibridge"), None).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_section_gives_the_scripts_defaults() {
        let policy = parse("").unwrap();
        assert_eq!(policy, TriagePolicy::default());
        let t = policy.thresholds;
        assert_eq!(
            [t.band(0), t.band(1), t.band(3), t.band(4), t.band(u32::MAX)],
            [Band::Benign, Band::Review, Band::Review, Band::Malicious, Band::Malicious]
        );
    }

    #[test]
    fn every_key_is_read() {
        let policy = parse(
            r#"
            lookback = "2d"
            interval = "90s"
            sandbox_kinds = ["url", "sha256"]
            direct_block_kinds = ["sha1"]
            block_expiry_days = 0
            risk_level = "Medium"
            scan_action = "log"
            hunt = false
            max_objects_per_alert = 5
            dry_run = true
            cache_ttl = "12h"
            sink_id = "v1-c2"
            allowlist = "allow.txt"
            [virustotal]
            benign = [0, 1]
            review = [2, 5]
            malicious_from = 6
            count_suspicious = true
            "#,
        )
        .unwrap();
        assert_eq!(policy.lookback_seconds, 2 * 86_400);
        assert_eq!(policy.interval_seconds, 90);
        assert_eq!(policy.sandbox_kinds, BTreeSet::from([IndicatorKind::Url, IndicatorKind::Sha256]));
        assert_eq!(policy.direct_block_kinds, BTreeSet::from([IndicatorKind::Sha1]));
        assert_eq!(policy.block_expiry_seconds, None);
        assert_eq!(policy.risk_level, RiskLevel::Medium);
        assert_eq!(policy.scan_action, ScanAction::Log);
        assert!(!policy.hunt && policy.dry_run);
        assert_eq!(policy.max_objects_per_alert, 5);
        assert_eq!(policy.cache_ttl_seconds, 43_200);
        assert_eq!(policy.sink_id, "v1-c2");
        assert_eq!(policy.allowlist, Some(PathBuf::from("/etc/tibridge/allow.txt")));
        assert_eq!(policy.thresholds, Thresholds { benign_max: 1, review_max: 5, count_suspicious: true });
    }

    #[test]
    fn bands_with_a_gap_or_an_overlap_are_refused() {
        let gap = parse("[virustotal]\nreview = [2, 3]").unwrap_err();
        assert!(gap.contains("counts 1..=1 fall in no band"), "{gap}");
        let overlap = parse("[virustotal]\nmalicious_from = 3").unwrap_err();
        assert!(overlap.contains("both review and malicious"), "{overlap}");
        let gap = parse("[virustotal]\nmalicious_from = 6").unwrap_err();
        assert!(gap.contains("counts 4..=5 fall in no band"), "{gap}");
        assert!(parse("[virustotal]\nbenign = [1, 1]").unwrap_err().contains("must start at 0"));
        assert!(parse("[virustotal]\nreview = [3, 1]").unwrap_err().contains("reversed"));
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(parse("lookback = \"3 days\"").unwrap_err().contains("lookback"));
        assert!(parse("lookback = \"0d\"").unwrap_err().contains("longer than zero"));
        assert!(parse("sandbox_kinds = [\"domain\"]").unwrap_err().contains("sandbox_kinds: domain is not accepted"));
        assert!(parse("risk_level = \"extreme\"").unwrap_err().contains("risk_level"));
        assert!(parse("max_objects_per_alert = 0").unwrap_err().contains("at least 1"));
        assert!(parse("lookbak = \"3d\"").unwrap_err().contains("unknown field"));
    }

    #[test]
    fn durations_never_overflow_or_panic() {
        assert_eq!(parse_duration("3d"), Some(259_200));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("-1d"), None);
        assert_eq!(parse_duration("9223372036854775807d"), None);
        assert_eq!(parse_duration("1é"), None);
    }
}
