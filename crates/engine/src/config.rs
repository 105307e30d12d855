//! The TOML configuration: raw file → validated [`Config`] in one place.
//!
//! Every path is resolved against the config file's folder, every kind list, duration and
//! ratio is checked here, and nothing downstream re-validates. An unknown key or a bad value
//! is an error naming the key and its line. Secrets are never written inline: only
//! `{ env = "NAME" }` or `{ file = "PATH" }` references are accepted.

use crate::triage::{RawTriage, TriageConnectors, TriagePolicy};
use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use tibridge_connectors::apex_central::ApexCentralConfig;
use tibridge_connectors::deep_security::DeepSecurityConfig;
use tibridge_connectors::http::{HttpOptions, SecretRef};
use tibridge_connectors::intezer::IntezerConfig;
use tibridge_connectors::misp::{MispFeedConfig, MispRestConfig};
use tibridge_connectors::virustotal::VirusTotalConfig;
use tibridge_connectors::vision_one::{VisionOneAlertConfig, VisionOneHunterConfig, VisionOneSinkConfig};
use tibridge_core::policy::SinkPolicy;
use tibridge_core::{IndicatorKind, Tlp};
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The raw file. Sources and sinks stay TOML tables here, with their position, so each is
/// handed to its own connector's config type (Vector's "one config type per component") and
/// an error still names the table's line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    filters: RawFilters,
    #[serde(default, rename = "source")]
    sources: Vec<Spanned<toml::Table>>,
    #[serde(default, rename = "sink")]
    sinks: Vec<Spanned<toml::Table>>,
    /// The C2 triage playbook; validated by the triage module.
    triage: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// SQLite file of the catalog, ledger and audit log.
    #[serde(default = "default_store_path")]
    path: PathBuf,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore { path: default_store_path() }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("tibridge.db")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    /// Directory of MISP warninglists (`<name>/list.json` or `*.json`).
    warninglists: Option<PathBuf>,
    /// Text file of values never to block, one a line.
    allowlist: Option<PathBuf>,
    #[serde(default = "default_v4_prefix")]
    max_cidr_prefix_v4: u8,
    #[serde(default = "default_v6_prefix")]
    max_cidr_prefix_v6: u8,
}

impl Default for RawFilters {
    fn default() -> Self {
        RawFilters { warninglists: None, allowlist: None, max_cidr_prefix_v4: 24, max_cidr_prefix_v6: 48 }
    }
}

fn default_v4_prefix() -> u8 {
    24
}
fn default_v6_prefix() -> u8 {
    48
}

/// A local file source: `path` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    path: PathBuf,
}

/// An EDL sink: the folder of its files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirSettings {
    dir: PathBuf,
}

/// Policy keys every sink accepts, besides its connector's own settings.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    kinds: Option<Vec<String>>,
    min_confidence: Option<u8>,
    max_tlp: Option<String>,
    require_to_ids: Option<bool>,
    #[serde(default)]
    include_tags: Vec<String>,
    #[serde(default)]
    exclude_tags: Vec<String>,
    capacity: Option<usize>,
    max_removal_ratio: Option<f64>,
}

const POLICY_KEYS: [&str; 8] = [
    "kinds",
    "min_confidence",
    "max_tlp",
    "require_to_ids",
    "include_tags",
    "exclude_tags",
    "capacity",
    "max_removal_ratio",
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub store_path: PathBuf,
    pub filters: FiltersConfig,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    /// The C2 triage playbook (`[triage]` and its `[triage.connectors.*]`), if configured.
    pub triage: Option<TriageConfig>,
}

/// The validated `[triage]` section: the decision policy and the connectors it uses.
#[derive(Debug, Clone)]
pub struct TriageConfig {
    pub policy: TriagePolicy,
    pub connectors: TriageConnectors,
}

/// `[triage.connectors]`: where detections come from, who is asked, where blocks and hunts go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriageConnectors {
    /// Vision One detections (`[triage.connectors.alerts]`).
    alerts: VisionOneAlertConfig,
    virustotal: VirusTotalConfig,
    intezer: IntezerConfig,
    /// The Suspicious Object list blocks go to.
    block: VisionOneSinkConfig,
    /// Custom intelligence report + sweep; without it the playbook blocks but does not hunt.
    hunt: Option<VisionOneHunterConfig>,
}

#[derive(Debug, Clone)]
pub struct FiltersConfig {
    pub warninglists: Option<PathBuf>,
    pub allowlist: Option<PathBuf>,
    pub max_cidr_prefix_v4: u8,
    pub max_cidr_prefix_v6: u8,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    /// Observations older than this (seconds) are not used.
    pub max_age: Option<i64>,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    StixFile { path: PathBuf },
    MispFile { path: PathBuf },
    TextFile { path: PathBuf },
    Misp(Box<MispRestConfig>),
    MispFeed(Box<MispFeedConfig>),
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::StixFile { .. } => "stix_file",
            SourceKind::MispFile { .. } => "misp_file",
            SourceKind::TextFile { .. } => "text_file",
            SourceKind::Misp(_) => "misp",
            SourceKind::MispFeed(_) => "misp_feed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub id: String,
    pub policy: SinkPolicy,
    /// Refuse a plan that removes more than this share of the sink's entries.
    pub max_removal_ratio: f64,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Edl { dir: PathBuf },
    StixFile { path: PathBuf },
    ApexCentral(Box<ApexCentralConfig>),
    DeepSecurity(Box<DeepSecurityConfig>),
    VisionOne(Box<VisionOneSinkConfig>),
}

impl SinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Edl { .. } => "edl",
            SinkKind::StixFile { .. } => "stix_file",
            SinkKind::ApexCentral(_) => "apex_central",
            SinkKind::DeepSecurity(_) => "deep_security",
            SinkKind::VisionOne(_) => "vision_one",
        }
    }

    /// The kinds a sink of this type can hold at all, used when `kinds` is not given.
    fn supported_kinds(&self) -> Vec<IndicatorKind> {
        match self {
            SinkKind::Edl { .. } => vec![
                IndicatorKind::Domain,
                IndicatorKind::Url,
                IndicatorKind::Ipv4,
                IndicatorKind::Ipv6,
                IndicatorKind::Ipv4Cidr,
                IndicatorKind::Ipv6Cidr,
            ],
            SinkKind::StixFile { .. } => IndicatorKind::ALL.to_vec(),
            SinkKind::ApexCentral(_) => tibridge_connectors::apex_central::KINDS.to_vec(),
            SinkKind::DeepSecurity(_) => vec![IndicatorKind::Sha256],
            SinkKind::VisionOne(_) => tibridge_connectors::vision_one::KINDS.to_vec(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` names it in messages and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let line_of = |span: std::ops::Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;

        let filters = FiltersConfig {
            warninglists: raw.filters.warninglists.as_deref().map(resolve),
            allowlist: raw.filters.allowlist.as_deref().map(resolve),
            max_cidr_prefix_v4: check_prefix("filters.max_cidr_prefix_v4", raw.filters.max_cidr_prefix_v4, 32)
                .map_err(invalid)?,
            max_cidr_prefix_v6: check_prefix("filters.max_cidr_prefix_v6", raw.filters.max_cidr_prefix_v6, 128)
                .map_err(invalid)?,
        };

        let mut ids = HashSet::new();
        let mut sources = Vec::new();
        for spanned in raw.sources {
            let line = line_of(spanned.span());
            let mut table = spanned.into_inner();
            let at = |message: String| invalid(format!("[[source]] at line {line}: {message}"));
            let id = take_string(&mut table, "id").map_err(at)?;
            let kind = take_string(&mut table, "kind").map_err(at)?;
            let at = |message: String| invalid(format!("source {id:?} (line {line}): {message}"));
            check_id("source", &id, &mut ids).map_err(at)?;
            let max_age = match table.remove("max_age") {
                None => None,
                Some(toml::Value::String(text)) => {
                    Some(tibridge_core::timestamp::parse_duration(&text).ok_or_else(|| {
                        at(format!("max_age {text:?} is not a duration like \"90d\", \"12h\" or \"30m\""))
                    })?)
                }
                Some(other) => return Err(at(format!("max_age must be a string like \"90d\", not {other}"))),
            };
            let kind = match kind.as_str() {
                "stix_file" => {
                    SourceKind::StixFile { path: resolve(&settings::<FileSettings>(table).map_err(at)?.path) }
                }
                "misp_file" => {
                    SourceKind::MispFile { path: resolve(&settings::<FileSettings>(table).map_err(at)?.path) }
                }
                "text_file" => {
                    SourceKind::TextFile { path: resolve(&settings::<FileSettings>(table).map_err(at)?.path) }
                }
                "misp" => {
                    let mut settings: MispRestConfig = settings(table).map_err(at)?;
                    anchor_secret(&mut settings.api_key, &resolve);
                    anchor_http(&mut settings.http, &resolve);
                    SourceKind::Misp(Box::new(settings))
                }
                "misp_feed" => {
                    let mut settings: MispFeedConfig = settings(table).map_err(at)?;
                    anchor_http(&mut settings.http, &resolve);
                    SourceKind::MispFeed(Box::new(settings))
                }
                other => {
                    return Err(at(format!(
                        "unknown source kind {other:?} (expected stix_file, misp_file, text_file, misp or misp_feed)"
                    )))
                }
            };
            sources.push(SourceConfig { id, max_age, kind });
        }

        let mut sink_ids = HashSet::new();
        let mut sinks = Vec::new();
        for spanned in raw.sinks {
            let line = line_of(spanned.span());
            let mut table = spanned.into_inner();
            let at = |message: String| invalid(format!("[[sink]] at line {line}: {message}"));
            let id = take_string(&mut table, "id").map_err(at)?;
            let kind = take_string(&mut table, "kind").map_err(at)?;
            let at = |message: String| invalid(format!("sink {id:?} (line {line}): {message}"));
            check_id("sink", &id, &mut sink_ids).map_err(at)?;
            let mut policy_table = toml::Table::new();
            for key in POLICY_KEYS {
                if let Some(value) = table.remove(key) {
                    policy_table.insert(key.to_string(), value);
                }
            }
            let raw_policy: RawPolicy = settings(policy_table).map_err(at)?;
            let kind = match kind.as_str() {
                "edl" => SinkKind::Edl { dir: resolve(&settings::<DirSettings>(table).map_err(at)?.dir) },
                "stix_file" => SinkKind::StixFile { path: resolve(&settings::<FileSettings>(table).map_err(at)?.path) },
                "apex_central" => {
                    let mut settings: ApexCentralConfig = settings(table).map_err(at)?;
                    anchor_secret(&mut settings.api_key, &resolve);
                    anchor_http(&mut settings.http, &resolve);
                    SinkKind::ApexCentral(Box::new(settings))
                }
                "deep_security" => {
                    let mut settings: DeepSecurityConfig = settings(table).map_err(at)?;
                    anchor_secret(&mut settings.api_key, &resolve);
                    anchor_http(&mut settings.http, &resolve);
                    SinkKind::DeepSecurity(Box::new(settings))
                }
                "vision_one" => {
                    let mut settings: VisionOneSinkConfig = settings(table).map_err(at)?;
                    anchor_secret(&mut settings.token, &resolve);
                    anchor_http(&mut settings.http, &resolve);
                    SinkKind::VisionOne(Box::new(settings))
                }
                other => {
                    return Err(at(format!(
                    "unknown sink kind {other:?} (expected edl, stix_file, apex_central, deep_security or vision_one)"
                )))
                }
            };
            let (policy, max_removal_ratio) = build_policy(&id, raw_policy, &kind).map_err(at)?;
            sinks.push(SinkConfig { id, policy, max_removal_ratio, kind });
        }

        let triage = match raw.triage {
            None => None,
            Some(spanned) => {
                let line = line_of(spanned.span());
                let at = |message: String| invalid(format!("[triage] (line {line}): {message}"));
                let mut table = spanned.into_inner();
                let connectors = match table.remove("connectors") {
                    Some(value) => value,
                    None => return Err(at("missing [triage.connectors] (alerts, virustotal, intezer, block)".into())),
                };
                let mut connectors: RawTriageConnectors = RawTriageConnectors::deserialize(connectors)
                    .map_err(|e| at(format!("connectors: {}", e.to_string().trim_end())))?;
                let raw_triage: RawTriage = settings(table).map_err(at)?;
                let policy = raw_triage.validate(&base, filters.allowlist.as_deref()).map_err(|e| at(e.to_string()))?;
                anchor_secret(&mut connectors.alerts.token, &resolve);
                anchor_secret(&mut connectors.virustotal.api_key, &resolve);
                anchor_secret(&mut connectors.intezer.api_key, &resolve);
                anchor_secret(&mut connectors.block.token, &resolve);
                for http in [
                    &mut connectors.alerts.http,
                    &mut connectors.virustotal.http,
                    &mut connectors.intezer.http,
                    &mut connectors.block.http,
                ] {
                    anchor_http(http, &resolve);
                }
                if let Some(hunt) = &mut connectors.hunt {
                    anchor_secret(&mut hunt.token, &resolve);
                    anchor_http(&mut hunt.http, &resolve);
                }
                Some(TriageConfig {
                    policy,
                    connectors: TriageConnectors {
                        alert_source_id: "vision-one".into(),
                        alerts: connectors.alerts,
                        virustotal: connectors.virustotal,
                        intezer: connectors.intezer,
                        block: connectors.block,
                        hunt: connectors.hunt,
                    },
                })
            }
        };
        Ok(Config { path: path.to_path_buf(), store_path: resolve(&raw.store.path), filters, sources, sinks, triage })
    }
}

/// Deserializes a connector's own settings from what is left of its table, so an unknown key
/// is refused with serde's list of the expected ones.
fn settings<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string().trim_end().to_string())
}

fn take_string(table: &mut toml::Table, key: &str) -> Result<String, String> {
    match table.remove(key) {
        Some(toml::Value::String(value)) => Ok(value),
        Some(other) => Err(format!("{key} must be a string, not {other}")),
        None => Err(format!("missing key {key:?}")),
    }
}

/// A secret file named relatively is relative to the config file, like every other path.
fn anchor_secret(secret: &mut SecretRef, resolve: &dyn Fn(&Path) -> PathBuf) {
    if let SecretRef::File { file } = secret {
        *file = resolve(file);
    }
}

fn anchor_http(http: &mut HttpOptions, resolve: &dyn Fn(&Path) -> PathBuf) {
    if let Some(ca) = &http.ca_bundle {
        http.ca_bundle = Some(resolve(ca));
    }
}

fn check_prefix(key: &str, value: u8, max: u8) -> Result<u8, String> {
    if value > max {
        return Err(format!("{key} = {value}: a prefix length must be 0..={max}"));
    }
    Ok(value)
}

fn check_id(what: &str, id: &str, seen: &mut HashSet<String>) -> Result<(), String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{what} id {id:?} must be letters, digits, '-', '_' or '.'"));
    }
    if !seen.insert(id.to_string()) {
        return Err(format!("{what} id {id:?} is used twice"));
    }
    Ok(())
}

fn build_policy(id: &str, raw: RawPolicy, kind: &SinkKind) -> Result<(SinkPolicy, f64), String> {
    let _ = id;
    let supported = kind.supported_kinds();
    let kinds: BTreeSet<IndicatorKind> = match raw.kinds {
        None => supported.iter().copied().collect(),
        Some(names) => {
            let mut kinds = BTreeSet::new();
            for name in names {
                let k: IndicatorKind = name.parse().map_err(|e| format!("kinds: {e}"))?;
                if !supported.contains(&k) {
                    return Err(format!("a {} sink cannot hold {k}", kind.name()));
                }
                kinds.insert(k);
                // A firewall list of IPs takes networks of the same family too.
                if matches!(kind, SinkKind::Edl { .. }) {
                    match k {
                        IndicatorKind::Ipv4 => {
                            kinds.insert(IndicatorKind::Ipv4Cidr);
                        }
                        IndicatorKind::Ipv6 => {
                            kinds.insert(IndicatorKind::Ipv6Cidr);
                        }
                        _ => {}
                    }
                }
            }
            kinds
        }
    };
    let max_tlp = match raw.max_tlp {
        None => Some(Tlp::Amber),
        Some(name) if name.eq_ignore_ascii_case("any") => None,
        Some(name) => Some(Tlp::from_name(&name).ok_or_else(|| {
            format!("max_tlp {name:?} is not one of clear, white, green, amber, amber+strict, red, any")
        })?),
    };
    if let Some(c) = raw.min_confidence {
        if c > 100 {
            return Err(format!("min_confidence {c} must be 0..=100"));
        }
    }
    let ratio = raw.max_removal_ratio.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("max_removal_ratio {ratio} must be between 0 and 1"));
    }
    if raw.capacity == Some(0) {
        return Err("capacity must be at least 1".to_string());
    }
    let policy = SinkPolicy {
        kinds,
        min_confidence: raw.min_confidence,
        max_tlp,
        require_to_ids: raw.require_to_ids.unwrap_or(true),
        include_tags: raw.include_tags,
        exclude_tags: raw.exclude_tags,
        capacity: raw.capacity,
    };
    Ok((policy, ratio))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[store]
path = "tibridge.db"

[filters]
warninglists = "warninglists"
allowlist = "allowlist.txt"

[[source]]
id = "report"
kind = "stix_file"
path = "feeds/report.json"

[[source]]
id = "misp-export"
kind = "misp_file"
path = "feeds/misp"
max_age = "90d"

[[sink]]
id = "firewall"
kind = "edl"
dir = "out/edl"
kinds = ["domain", "url", "ipv4", "ipv6"]
max_removal_ratio = 0.2

[[sink]]
id = "share"
kind = "stix_file"
path = "out/tibridge.stix.json"
max_tlp = "green"
"#;

    #[test]
    fn the_documented_example_loads_with_paths_resolved() {
        let config = Config::parse(EXAMPLE, Path::new("/etc/tibridge/tibridge.toml")).unwrap();
        assert_eq!(config.store_path, Path::new("/etc/tibridge/tibridge.db"));
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[1].max_age, Some(90 * 86_400));
        assert!(config.sinks[0].policy.kinds.contains(&IndicatorKind::Ipv4Cidr));
        assert_eq!(config.sinks[1].policy.max_tlp, Some(Tlp::Green));
    }

    #[test]
    fn an_unknown_key_names_the_key_and_line() {
        let text = EXAMPLE.replace("path = \"feeds/report.json\"", "pth = \"feeds/report.json\"");
        let message = Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(message.contains("pth"), "{message}");
        assert!(message.contains("line"), "{message}");
    }

    #[test]
    fn an_unknown_key_in_a_sink_is_refused_with_its_line() {
        let text = EXAMPLE.replace("dir = \"out/edl\"", "dir = \"out/edl\"\nformat = \"pan\"");
        let message = Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(message.contains("format") && message.contains("sink \"firewall\" (line 20)"), "{message}");
    }

    #[test]
    fn vendor_sinks_take_their_own_settings_and_secret_references_only() {
        let text = format!(
            "{EXAMPLE}\n[[sink]]\nid = \"apex\"\nkind = \"apex_central\"\nbase_url = \"https://apex.example\"\napplication_id = \"app\"\napi_key = {{ file = \"secrets/apex\" }}\ncapacity = 100\n"
        );
        let config = Config::parse(&text, Path::new("/etc/tibridge/t.toml")).unwrap();
        let apex = config.sinks.iter().find(|s| s.id == "apex").unwrap();
        assert_eq!(apex.policy.capacity, Some(100));
        assert!(apex.policy.kinds.contains(&IndicatorKind::Sha1));
        match &apex.kind {
            SinkKind::ApexCentral(settings) => {
                assert_eq!(settings.api_key, SecretRef::File { file: PathBuf::from("/etc/tibridge/secrets/apex") })
            }
            other => panic!("{other:?}"),
        }
        let inline = text.replace("api_key = { file = \"secrets/apex\" }", "api_key = \"hunter2\"");
        let message = Config::parse(&inline, Path::new("t.toml")).unwrap_err().to_string();
        assert!(message.contains("api_key") && !message.contains("hunter2"), "{message}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = EXAMPLE.replace("max_age = \"90d\"", "max_age = \"ninety\"");
        assert!(Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string().contains("max_age"));
        let text = EXAMPLE.replace("\"ipv6\"]", "\"sha1\"]");
        assert!(Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string().contains("cannot hold sha1"));
        let text = EXAMPLE.replace("max_removal_ratio = 0.2", "max_removal_ratio = 2.0");
        assert!(Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string().contains("max_removal_ratio"));
        let text = EXAMPLE.replace("id = \"share\"", "id = \"firewall\"");
        assert!(Config::parse(&text, Path::new("t.toml")).unwrap_err().to_string().contains("used twice"));
    }
}
