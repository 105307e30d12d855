//! Trend Vision One public API v3.0 simulator: OAT detections, workbench alerts, the
//! Suspicious Object list, custom intelligence reports with sweeps, and their task status.
//!
//! It follows `shared/contracts/trendmicro.md` §1: Bearer auth with the vendor's error body,
//! the `TMV1-Filter` header parsed for real ([`filter`]) with unknown fields refused, `top`
//! limited to 50|100|200, absolute `nextLink`s carrying a `skipToken` (and a page whose
//! `TMV1-Filter` was not re-sent is refused, so a client that forgets it fails loudly here
//! instead of silently reading unfiltered data in production), multi-status 207 answers with
//! one item per input item, the per-type Suspicious Object cap, 413 over 1 MB, and 429 when a
//! rate limit is configured. Shapes are those pytmv1 0.11.0 validates with pydantic.
//!
//! It must never call out: reports are stored, not fetched, and sweeps only look at values
//! the test marked as seen.

// `Response` is the error type on purpose: every early exit is already the vendor's answer.
#![allow(clippy::result_large_err)]
// `Option::is_none_or` is newer than the workspace's rust-version (1.80).
#![allow(clippy::unnecessary_map_or)]

pub mod filter;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use filter::Filter;

/// The token the simulator accepts when the config names none.
pub const DEFAULT_TOKEN: &str = "lab-vision-one-token";

/// Fields the OAT `TMV1-Filter` understands (trendmicro.md §1.5).
pub const OAT_FILTER_FIELDS: &[&str] = &[
    "uuid",
    "riskLevel",
    "filterName",
    "filterMitreTacticId",
    "filterMitreTechniqueId",
    "endpointName",
    "agentGuid",
    "endpointIp",
    "productCode",
    "containerName",
];

/// Fields the workbench `TMV1-Filter` understands (trendmicro.md §1.4; no MITRE field).
pub const ALERT_FILTER_FIELDS: &[&str] = &[
    "id",
    "investigationStatus",
    "status",
    "investigationResult",
    "alertProvider",
    "modelId",
    "model",
    "modelType",
    "severity",
    "impactScopeEntityValue",
    "indicatorValue",
    "incidentId",
];

/// Fields the Suspicious Object list `TMV1-Filter` understands.
pub const SO_FILTER_FIELDS: &[&str] =
    &["type", "riskLevel", "scanAction", "url", "domain", "ip", "fileSha1", "fileSha256", "senderMailAddress"];

/// How the simulator behaves. `Default` gives the documented limits and a sweep that finishes
/// on the third poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisionOneConfig {
    /// The API key accepted as `Authorization: Bearer <token>`.
    pub token: String,
    /// Suspicious Objects allowed per type before adds answer 400 (Vision One: 10,000).
    pub suspicious_object_cap_per_type: usize,
    /// Request bodies larger than this answer 413 (Vision One: 1 MB).
    pub max_body_bytes: usize,
    /// Requests per 60 s before 429 TooManyRequests; `None` = unlimited (the real numbers are
    /// unpublished).
    pub rate_limit_per_minute: Option<u32>,
    /// Polls of a sweep task answered `notstarted`.
    pub sweep_notstarted_polls: u32,
    /// Polls answered `running` after those, before `succeeded`.
    pub sweep_running_polls: u32,
    /// `daysToExpiration` used when an added object has none (the console default is UNCONFIRMED).
    pub default_days_to_expiration: u32,
    /// Page size of the workbench alert list when the client sends no `top`.
    pub alert_page_size: usize,
    /// C2 detections (and optionally alerts) present from the start, for a demo lab; tests
    /// usually call [`VisionOneState::seed_detection`] / [`VisionOneState::seed_alert`].
    pub seed_c2: Vec<SeedC2>,
}

/// One C2 connection seen on an endpoint five minutes before the lab started, e.g. in TOML
/// `seed_c2 = [{ endpoint = "ws-01", url = "http://c2.example/gate", alert_severity = "high" }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedC2 {
    pub endpoint: String,
    pub url: String,
    /// Risk level of the OAT detection (default `high`).
    #[serde(default = "default_risk")]
    pub risk_level: String,
    /// When set, a workbench alert of this severity highlights the URL and its host too.
    #[serde(default)]
    pub alert_severity: Option<String>,
}

fn default_risk() -> String {
    "high".into()
}

impl Default for VisionOneConfig {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_string(),
            suspicious_object_cap_per_type: 10_000,
            max_body_bytes: 1_048_576,
            rate_limit_per_minute: None,
            sweep_notstarted_polls: 1,
            sweep_running_polls: 1,
            default_days_to_expiration: 30,
            alert_page_size: 100,
            seed_c2: Vec::new(),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Data shapes (serialize exactly as §1.4/§1.5/§1.6 and as pytmv1's models require)
// ----------------------------------------------------------------------------------------

/// One object an OAT filter highlights (`value` may be a string, a number or a string array).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HighlightedObject {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<String>,
}

/// One matched OAT filter of a detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OatFilter {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub mitre_tactic_ids: Vec<String>,
    pub tactics: Vec<String>,
    pub mitre_technique_ids: Vec<String>,
    pub techniques: Vec<String>,
    pub highlighted_objects: Vec<HighlightedObject>,
    pub risk_level: String,
    /// `preset` or `custom`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The endpoint a detection happened on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OatEndpoint {
    pub endpoint_name: String,
    pub agent_guid: String,
    pub ips: Vec<String>,
}

/// An Observed Attack Technique detection (trendmicro.md §1.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OatDetection {
    pub source: String,
    pub uuid: String,
    pub filters: Vec<OatFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<OatEndpoint>,
    pub entity_type: String,
    pub entity_name: String,
    pub detected_date_time: String,
    pub ingested_date_time: String,
    /// Data-source dependent; endpoint data needs at least `endpointGuid` for pytmv1.
    pub detail: Value,
}

impl OatDetection {
    /// A "Malicious URL" C2 detection on one endpoint, the case the original triage script
    /// handles: tactic TA0011, technique T1071, highlighted `request` URL and `hostName`.
    pub fn c2_url(uuid: &str, detected: OffsetDateTime, risk_level: &str, endpoint: &str, url: &str) -> Self {
        let host = url_host(url);
        let guid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, endpoint.as_bytes()).to_string();
        let ip = "10.0.0.5".to_string();
        OatDetection {
            source: "endpointActivityData".into(),
            uuid: uuid.into(),
            filters: vec![OatFilter {
                id: "F2340".into(),
                unique_id: Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, url.as_bytes()).to_string()),
                name: "Malicious URL".into(),
                description: Some("A connection to a known malicious URL was observed".into()),
                mitre_tactic_ids: vec!["TA0011".into()],
                tactics: vec!["Command and Control".into()],
                mitre_technique_ids: vec!["T1071".into()],
                techniques: vec!["Application Layer Protocol".into()],
                highlighted_objects: vec![
                    HighlightedObject {
                        field: "request".into(),
                        kind: "url".into(),
                        value: json!(url),
                        master: Some(true),
                        risk_level: Some(risk_level.into()),
                    },
                    HighlightedObject {
                        field: "hostName".into(),
                        kind: "domain".into(),
                        value: json!(host),
                        master: Some(false),
                        risk_level: None,
                    },
                ],
                risk_level: risk_level.into(),
                kind: "preset".into(),
            }],
            endpoint: Some(OatEndpoint {
                endpoint_name: endpoint.into(),
                agent_guid: guid.clone(),
                ips: vec![ip.clone()],
            }),
            entity_type: "endpoint".into(),
            entity_name: format!("{endpoint}({ip})"),
            detected_date_time: iso(detected),
            ingested_date_time: iso(detected + time::Duration::minutes(2)),
            detail: json!({
                "endpointGuid": guid, "endpointHostName": endpoint, "endpointIp": [ip],
                "eventName": "INTERNET_ACCESS", "filterRiskLevel": risk_level,
                "hostName": host, "request": url, "ruleName": "Malicious URL",
                "productCode": "xes", "eventTime": detected.unix_timestamp() * 1000,
            }),
        }
    }

    fn filter_values(&self, field: &str) -> Vec<String> {
        let strs = |v: &[String]| v.to_vec();
        match field {
            "uuid" => vec![self.uuid.clone()],
            "riskLevel" => self.filters.iter().map(|f| f.risk_level.clone()).collect(),
            "filterName" => self.filters.iter().map(|f| f.name.clone()).collect(),
            "filterMitreTacticId" => self.filters.iter().flat_map(|f| strs(&f.mitre_tactic_ids)).collect(),
            "filterMitreTechniqueId" => self.filters.iter().flat_map(|f| strs(&f.mitre_technique_ids)).collect(),
            "endpointName" => self.endpoint.iter().map(|e| e.endpoint_name.clone()).collect(),
            "agentGuid" => self.endpoint.iter().map(|e| e.agent_guid.clone()).collect(),
            "endpointIp" => self.endpoint.iter().flat_map(|e| strs(&e.ips)).collect(),
            "productCode" => detail_strings(&self.detail, "productCode"),
            "containerName" => detail_strings(&self.detail, "containerName"),
            _ => Vec::new(),
        }
    }
}

fn detail_strings(detail: &Value, key: &str) -> Vec<String> {
    match detail.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// One highlighted object of a workbench alert (`indicators[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertIndicator {
    pub id: i64,
    /// `ip`, `domain`, `url`, `file_sha1`, `file_sha256`, `email_sender`, `command_line`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// SAE alerts only: the telemetry field the object came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub value: Value,
    pub related_entities: Vec<String>,
    /// SAE alerts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_ids: Option<Vec<String>>,
    pub provenance: Vec<String>,
    /// TI alerts: `fields`, `matchedIndicatorPatternIds`, `firstSeenDateTimes`, `lastSeenDateTimes`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A workbench alert (trendmicro.md §1.4). SAE-shaped by default; TI fields go in `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkbenchAlert {
    pub schema_version: String,
    pub id: String,
    pub status: String,
    pub investigation_status: String,
    pub investigation_result: String,
    pub workbench_link: String,
    pub alert_provider: String,
    pub model_id: String,
    pub model: String,
    pub model_type: String,
    pub score: i64,
    pub severity: String,
    pub created_date_time: String,
    pub updated_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_investigated_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    pub owner_ids: Vec<String>,
    pub impact_scope: Value,
    /// SAE alerts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SAE alerts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_rules: Option<Value>,
    pub indicators: Vec<AlertIndicator>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkbenchAlert {
    /// A rule-based (SAE) C2 alert on one host highlighting `objects` as (type, value) pairs,
    /// e.g. `("domain", "evil.example")`, `("url", "http://evil.example/x")`.
    pub fn sae(id: &str, severity: &str, created: OffsetDateTime, host: &str, objects: &[(&str, &str)]) -> Self {
        let created_s = iso(created);
        let host_guid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, host.as_bytes()).to_string();
        let field_of = |t: &str| match t {
            "url" => "request",
            "domain" => "hostName",
            "ip" => "dst",
            "file_sha1" => "objectFileHashSha1",
            "file_sha256" => "objectFileHashSha256",
            "email_sender" => "mailFromAddresses",
            _ => "objectCmd",
        };
        let indicators: Vec<AlertIndicator> = objects
            .iter()
            .enumerate()
            .map(|(i, (t, v))| AlertIndicator {
                id: i as i64 + 1,
                kind: (*t).to_string(),
                field: Some(field_of(t).to_string()),
                value: json!(v),
                related_entities: vec![host_guid.clone()],
                filter_ids: Some(vec!["F2340".into()]),
                provenance: vec!["Alert".into()],
                extra: Map::new(),
            })
            .collect();
        let indicator_ids: Vec<i64> = indicators.iter().map(|i| i.id).collect();
        let score = match severity {
            "critical" => 90,
            "high" => 70,
            "medium" => 50,
            _ => 20,
        };
        WorkbenchAlert {
            schema_version: "1.12".into(),
            id: id.into(),
            status: "Open".into(),
            investigation_status: "New".into(),
            investigation_result: "No Findings".into(),
            workbench_link: format!("https://portal.xdr.trendmicro.com/index.html#/workbench/alerts/{id}"),
            alert_provider: "SAE".into(),
            model_id: "b2a9c5e1-0000-4c2a-8a6e-000000000c2c".into(),
            model: "Possible C&C Connection".into(),
            model_type: "preset".into(),
            score,
            severity: severity.into(),
            created_date_time: created_s.clone(),
            updated_date_time: created_s.clone(),
            first_investigated_date_time: None,
            incident_id: None,
            case_id: None,
            owner_ids: Vec::new(),
            impact_scope: json!({
                "desktopCount": 1, "serverCount": 0, "accountCount": 0, "emailAddressCount": 0,
                "containerCount": 0, "cloudIdentityCount": 0,
                "entities": [{"entityType": "host", "entityValue": {"guid": host_guid, "name": host, "ips": ["10.0.0.5"]},
                              "entityId": host_guid, "relatedEntities": [], "relatedIndicatorIds": indicator_ids,
                              "provenance": ["Alert"]}]
            }),
            description: Some("A host connected to a known command-and-control server".into()),
            matched_rules: Some(json!([{"id": "R-C2-1", "name": "Possible C&C Connection", "matchedFilters": [{
                "id": "F2340", "name": "Malicious URL", "matchedDateTime": created_s,
                "mitreTechniqueIds": ["T1071"],
                "matchedEvents": [{"uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes()).to_string(),
                                   "matchedDateTime": created_s, "type": "TELEMETRY_INTERNET"}]}]}])),
            indicators,
            extra: Map::new(),
        }
    }

    /// An intelligence-sweep (TI) alert: the values of report `report_id` that were found,
    /// each as (value, endpoint), as Vision One raises when a sweep hits.
    pub fn ti(
        id: &str,
        created: OffsetDateTime,
        report_id: &str,
        report_link: &str,
        matches: &[(String, String)],
    ) -> Self {
        let created_s = iso(created);
        let kind_of = |v: &str| {
            if v.parse::<IpAddr>().is_ok() {
                ("ip", "ipv4-addr:value", "dst")
            } else if v.contains("://") {
                ("url", "url:value", "request")
            } else if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                ("file_sha256", "file:hashes.'SHA-256'", "objectFileHashSha256")
            } else if v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                ("file_sha1", "file:hashes.'SHA-1'", "objectFileHashSha1")
            } else {
                ("domain", "domain-name:value", "hostName")
            }
        };
        let mut patterns = Vec::new();
        let mut indicators = Vec::new();
        let mut entities = Vec::new();
        for (i, (value, endpoint)) in matches.iter().enumerate() {
            let (kind, path, field) = kind_of(value);
            let pattern_id = format!("indicator--{}", uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, value.as_bytes()));
            let guid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, endpoint.as_bytes()).to_string();
            patterns.push(json!({"id": pattern_id, "pattern": format!("[{path} = '{value}']"), "tags": [],
                                 "matchedLogs": []}));
            let mut extra = Map::new();
            extra.insert("fields".into(), json!([[field]]));
            extra.insert("matchedIndicatorPatternIds".into(), json!([pattern_id]));
            extra.insert("firstSeenDateTimes".into(), json!([created_s]));
            extra.insert("lastSeenDateTimes".into(), json!([created_s]));
            indicators.push(AlertIndicator {
                id: i as i64 + 1,
                kind: kind.into(),
                field: None,
                value: json!(value),
                related_entities: vec![guid.clone()],
                filter_ids: None,
                provenance: vec!["Intelligence Reports Sweeping".into()],
                extra,
            });
            entities.push(json!({"entityType": "host", "entityValue": {"guid": guid, "name": endpoint, "ips": []},
                                 "entityId": guid, "relatedEntities": [], "relatedIndicatorIds": [i as i64 + 1],
                                 "provenance": ["Intelligence Reports Sweeping"]}));
        }
        let mut extra = Map::new();
        extra.insert("createdBy".into(), json!("tibridge-lab"));
        extra.insert("totalIndicatorCount".into(), json!(matches.len()));
        extra.insert("matchedIndicatorCount".into(), json!(matches.len()));
        extra.insert("reportLink".into(), json!(report_link));
        extra.insert("matchedIndicatorPatterns".into(), json!(patterns));
        WorkbenchAlert {
            schema_version: "1.12".into(),
            id: id.into(),
            status: "Open".into(),
            investigation_status: "New".into(),
            investigation_result: "No Findings".into(),
            workbench_link: format!("https://portal.xdr.trendmicro.com/index.html#/workbench/alerts/{id}"),
            alert_provider: "TI".into(),
            model_id: report_id.into(),
            model: "Intelligence Reports Sweeping".into(),
            model_type: "custom".into(),
            score: 70,
            severity: "high".into(),
            created_date_time: created_s.clone(),
            updated_date_time: created_s,
            first_investigated_date_time: None,
            incident_id: None,
            case_id: None,
            owner_ids: Vec::new(),
            impact_scope: json!({"desktopCount": entities.len(), "serverCount": 0, "accountCount": 0,
                "emailAddressCount": 0, "containerCount": 0, "cloudIdentityCount": 0, "entities": entities}),
            description: None,
            matched_rules: None,
            indicators,
            extra,
        }
    }

    fn filter_values(&self, field: &str) -> Vec<String> {
        let one = |s: &str| vec![s.to_string()];
        match field {
            "id" => one(&self.id),
            "investigationStatus" => one(&self.investigation_status),
            "status" => one(&self.status),
            "investigationResult" => one(&self.investigation_result),
            "alertProvider" => one(&self.alert_provider),
            "modelId" => one(&self.model_id),
            "model" => one(&self.model),
            "modelType" => one(&self.model_type),
            "severity" => one(&self.severity),
            "incidentId" => self.incident_id.iter().cloned().collect(),
            "indicatorValue" => self.indicators.iter().flat_map(|i| value_strings(&i.value)).collect(),
            "impactScopeEntityValue" => self
                .impact_scope
                .get("entities")
                .and_then(Value::as_array)
                .map(|es| {
                    es.iter()
                        .filter_map(|e| e.get("entityValue"))
                        .flat_map(|v| match v {
                            Value::Object(o) => o.get("name").map(value_strings).unwrap_or_default(),
                            other => value_strings(other),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn value_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(a) => a.iter().flat_map(value_strings).collect(),
        _ => Vec::new(),
    }
}

/// The six Suspicious Object types (the JSON key that carries the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SoType {
    #[serde(rename = "url")]
    Url,
    #[serde(rename = "domain")]
    Domain,
    #[serde(rename = "ip")]
    Ip,
    #[serde(rename = "fileSha1")]
    FileSha1,
    #[serde(rename = "fileSha256")]
    FileSha256,
    #[serde(rename = "senderMailAddress")]
    SenderMailAddress,
}

impl SoType {
    pub const ALL: [SoType; 6] =
        [SoType::Url, SoType::Domain, SoType::Ip, SoType::FileSha1, SoType::FileSha256, SoType::SenderMailAddress];

    pub fn key(self) -> &'static str {
        match self {
            SoType::Url => "url",
            SoType::Domain => "domain",
            SoType::Ip => "ip",
            SoType::FileSha1 => "fileSha1",
            SoType::FileSha256 => "fileSha256",
            SoType::SenderMailAddress => "senderMailAddress",
        }
    }

    fn from_key(k: &str) -> Option<Self> {
        SoType::ALL.into_iter().find(|t| t.key() == k)
    }

    /// Why `value` is not acceptable for this type, if it is not.
    fn check(self, value: &str) -> Result<(), String> {
        let hex = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = match self {
            SoType::FileSha1 => hex(40),
            SoType::FileSha256 => hex(64),
            SoType::Ip => value.parse::<IpAddr>().is_ok(),
            SoType::SenderMailAddress => {
                value.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                    && !value.contains(char::is_whitespace)
            }
            SoType::Domain => {
                !value.is_empty() && value.len() <= 253 && !value.contains(|c: char| c.is_whitespace() || c == '/')
            }
            SoType::Url => !value.is_empty() && value.len() <= 2048 && !value.contains(char::is_whitespace),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("Invalid {} value '{}'", self.key(), value))
        }
    }
}

/// One entry of the Suspicious Object list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuspiciousObject {
    pub kind: SoType,
    pub value: String,
    pub description: String,
    pub scan_action: String,
    pub risk_level: String,
    pub in_exception_list: bool,
    pub last_modified: OffsetDateTime,
    /// `None` when added with `daysToExpiration: 0` (never expires).
    pub expires: Option<OffsetDateTime>,
}

impl SuspiciousObject {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind.key()));
        m.insert(self.kind.key().into(), json!(self.value));
        m.insert("description".into(), json!(self.description));
        m.insert("scanAction".into(), json!(self.scan_action));
        m.insert("riskLevel".into(), json!(self.risk_level));
        m.insert("inExceptionList".into(), json!(self.in_exception_list));
        m.insert("lastModifiedDateTime".into(), json!(iso(self.last_modified)));
        // "Never" has no documented representation; the far future keeps it a valid timestamp.
        let exp = self.expires.map_or_else(|| "9999-12-31T23:59:59Z".to_string(), iso);
        m.insert("expiredDateTime".into(), json!(exp));
        Value::Object(m)
    }

    fn filter_values(&self, field: &str) -> Vec<String> {
        match field {
            "type" => vec![self.kind.key().to_string()],
            "riskLevel" => vec![self.risk_level.clone()],
            "scanAction" => vec![self.scan_action.clone()],
            k if SoType::from_key(k) == Some(self.kind) => vec![self.value.clone()],
            _ => Vec::new(),
        }
    }
}

/// An uploaded custom intelligence report, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReport {
    /// `report--<uuid>`, the id in the `Location` answer.
    pub id: String,
    pub name: String,
    pub file_name: String,
    pub content_type: String,
    pub content: Vec<u8>,
    pub created: OffsetDateTime,
}

impl StoredReport {
    /// The uploaded STIX bundle, if the file was JSON.
    pub fn bundle(&self) -> Option<Value> {
        serde_json::from_slice(&self.content).ok()
    }
}

/// A sweep task and how far it has got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepTask {
    pub id: String,
    pub report_id: String,
    pub sweep_type: String,
    pub description: String,
    pub polls: u32,
    /// Decided when the sweep is created: whether the report mentions a value marked seen.
    pub is_hit: bool,
    pub created: OffsetDateTime,
    /// The TI workbench alert raised when the sweep finished with a hit.
    pub alert_id: Option<String>,
}

#[derive(Clone, Debug)]
struct AlertRecord {
    alert: WorkbenchAlert,
    version: u64,
    notes: Vec<String>,
}

/// The Suspicious Object list, indexed so that a 10,000-per-type list stays cheap to update.
#[derive(Default)]
struct SoList {
    by_key: BTreeMap<(SoType, String), SuspiciousObject>,
    per_type: HashMap<SoType, usize>,
}

impl SoList {
    fn get_mut(&mut self, kind: SoType, value: &str) -> Option<&mut SuspiciousObject> {
        self.by_key.get_mut(&(kind, value.to_string()))
    }

    fn count(&self, kind: SoType) -> usize {
        self.per_type.get(&kind).copied().unwrap_or(0)
    }

    fn upsert(&mut self, o: SuspiciousObject) {
        if self.by_key.insert((o.kind, o.value.clone()), o.clone()).is_none() {
            *self.per_type.entry(o.kind).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, kind: SoType, value: &str) -> bool {
        let gone = self.by_key.remove(&(kind, value.to_string())).is_some();
        if gone {
            if let Some(n) = self.per_type.get_mut(&kind) {
                *n = n.saturating_sub(1);
            }
        }
        gone
    }

    fn iter(&self) -> impl Iterator<Item = &SuspiciousObject> {
        self.by_key.values()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[derive(Default)]
struct Inner {
    detections: Vec<OatDetection>,
    alerts: Vec<AlertRecord>,
    objects: SoList,
    reports: Vec<StoredReport>,
    sweeps: Vec<SweepTask>,
    /// Values present in the environment → the endpoint they were seen on.
    seen: HashMap<String, String>,
    /// The exception list: (type, value) → (description, last modified).
    exceptions: BTreeMap<(SoType, String), (String, OffsetDateTime)>,
    window: VecDeque<Instant>,
}

/// Shared state of one simulated Vision One tenant.
pub struct VisionOneState {
    config: VisionOneConfig,
    inner: Mutex<Inner>,
    served: AtomicU64,
}

impl VisionOneState {
    /// Builds the state with the detections and alerts `config.seed_c2` describes.
    pub fn new(config: VisionOneConfig) -> Self {
        let at = OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let mut inner = Inner::default();
        for (i, s) in config.seed_c2.iter().enumerate() {
            let key = format!("{}|{}|{i}", s.endpoint, s.url);
            let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).to_string();
            inner.detections.push(OatDetection::c2_url(&uuid, at, &s.risk_level, &s.endpoint, &s.url));
            if let Some(sev) = &s.alert_severity {
                let host = url_host(&s.url);
                let id = format!("WB-LAB-{:05}", i + 1);
                let objects = [("url", s.url.as_str()), ("domain", host.as_str())];
                let alert = WorkbenchAlert::sae(&id, sev, at, &s.endpoint, &objects);
                inner.alerts.push(AlertRecord { alert, version: 1, notes: Vec::new() });
            }
        }
        Self { config, inner: Mutex::new(inner), served: AtomicU64::new(0) }
    }

    pub fn config(&self) -> &VisionOneConfig {
        &self.config
    }

    /// A poisoned lock only means another handler panicked mid-update; the data stays usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn seed_detection(&self, d: OatDetection) {
        self.lock().detections.push(d);
    }

    pub fn seed_detections(&self, ds: impl IntoIterator<Item = OatDetection>) {
        self.lock().detections.extend(ds);
    }

    /// Adds an alert, replacing one with the same id.
    pub fn seed_alert(&self, a: WorkbenchAlert) {
        let mut inner = self.lock();
        inner.alerts.retain(|r| r.alert.id != a.id);
        inner.alerts.push(AlertRecord { alert: a, version: 1, notes: Vec::new() });
    }

    pub fn alert(&self, id: &str) -> Option<WorkbenchAlert> {
        self.lock().alerts.iter().find(|r| r.alert.id == id).map(|r| r.alert.clone())
    }

    /// Contents of the notes added to an alert, oldest first.
    pub fn alert_notes(&self, id: &str) -> Vec<String> {
        self.lock().alerts.iter().find(|r| r.alert.id == id).map(|r| r.notes.clone()).unwrap_or_default()
    }

    /// Puts an object on the list directly (e.g. to fill a type up to its cap).
    pub fn seed_suspicious_object(&self, kind: SoType, value: &str) {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.lock();
        inner.objects.upsert(SuspiciousObject {
            kind,
            value: value.to_string(),
            description: String::new(),
            scan_action: "block".into(),
            risk_level: "high".into(),
            in_exception_list: false,
            last_modified: now,
            expires: Some(now + time::Duration::days(i64::from(self.config.default_days_to_expiration))),
        });
    }

    /// The Suspicious Object list as it stands.
    pub fn suspicious_objects(&self) -> Vec<SuspiciousObject> {
        let inner = self.lock();
        inner.objects.iter().map(|o| with_exception_flag(o, &inner.exceptions)).collect()
    }

    /// The Suspicious Object exception list as it stands.
    pub fn suspicious_object_exceptions(&self) -> Vec<(SoType, String)> {
        self.lock().exceptions.keys().cloned().collect()
    }

    pub fn reports(&self) -> Vec<StoredReport> {
        self.lock().reports.clone()
    }

    pub fn report(&self, id: &str) -> Option<StoredReport> {
        self.lock().reports.iter().find(|r| r.id == id).cloned()
    }

    pub fn sweeps(&self) -> Vec<SweepTask> {
        self.lock().sweeps.clone()
    }

    /// Marks an indicator value as present in the environment: a sweep of a report that
    /// mentions it will answer `isHit: true`.
    pub fn mark_seen(&self, value: &str) {
        self.mark_seen_on(value, "ws-lab-01");
    }

    /// Like [`Self::mark_seen`], naming the endpoint the TI alert of a hit will point at.
    pub fn mark_seen_on(&self, value: &str, endpoint: &str) {
        self.lock().seen.insert(value.to_string(), endpoint.to_string());
    }

    /// Every request the router received, including rejected ones.
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// The Vision One v3.0 routes, with auth, rate limit and body cap applied.
pub fn router(state: Arc<VisionOneState>) -> Router {
    Router::new()
        .route("/v3.0/healthcheck/connectivity", get(healthcheck))
        .route("/v3.0/oat/detections", get(list_detections))
        .route("/v3.0/workbench/alerts", get(list_alerts))
        .route("/v3.0/workbench/alerts/{id}", get(get_alert).patch(patch_alert))
        .route("/v3.0/workbench/alerts/{id}/notes", post(add_note))
        .route("/v3.0/threatintel/suspiciousObjects", get(list_objects).post(add_objects))
        .route("/v3.0/threatintel/suspiciousObjects/delete", post(delete_objects))
        .route("/v3.0/threatintel/suspiciousObjectExceptions", get(list_exceptions).post(add_exceptions))
        .route("/v3.0/threatintel/suspiciousObjectExceptions/delete", post(delete_exceptions))
        .route("/v3.0/threatintel/intelligenceReports", get(list_reports).post(upload_report))
        .route("/v3.0/threatintel/intelligenceReports/delete", post(delete_reports))
        .route("/v3.0/threatintel/intelligenceReports/sweep", post(sweep_reports))
        .route("/v3.0/threatintel/intelligenceReports/{id}", get(get_report))
        .route("/v3.0/threatintel/tasks", get(list_tasks))
        .route("/v3.0/threatintel/tasks/{id}", get(get_task))
        .route("/v3.0/threatintel/sweepResults/{id}", get(sweep_results))
        .fallback(|req: Request| async move {
            v1_error(StatusCode::NOT_FOUND, "NotFound", &format!("No API at {} {}", req.method(), req.uri().path()))
        })
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

// ----------------------------------------------------------------------------------------
// Cross-cutting: errors, gate (auth, rate, size), time, paging
// ----------------------------------------------------------------------------------------

fn error_json(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn v1_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(error_json(code, message))).into_response()
}

fn bad_request(message: &str) -> Response {
    v1_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn gate(State(state): State<Arc<VisionOneState>>, req: Request, next: Next) -> Response {
    state.served.fetch_add(1, Ordering::Relaxed);
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let token_ok = auth.and_then(|a| a.strip_prefix("Bearer ")).is_some_and(|t| t.trim() == state.config.token);
    let unauthenticated_path = req.uri().path().starts_with(SWEEP_RESULTS_PREFIX);
    if !token_ok && !unauthenticated_path {
        let body = json!({"error": {"code": "InvalidCredentials", "message": "Invalid Credentials",
                                    "innererror": {"code": "InvalidToken", "service": "svp"}}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    if let Some(limit) = state.config.rate_limit_per_minute {
        let mut inner = state.lock();
        let now = Instant::now();
        while inner.window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            inner.window.pop_front();
        }
        if inner.window.len() >= limit as usize {
            drop(inner);
            return v1_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many API requests");
        }
        inner.window.push_back(now);
    }
    let max = state.config.max_body_bytes;
    let too_large = || {
        v1_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("The request body exceeds the maximum size of {max} bytes"),
        )
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // Past this, stop reading and answer at once; below it, read the whole oversized body
    // first so the client has finished sending and reliably sees the 413.
    let drain_limit = max.saturating_mul(16);
    if declared.is_some_and(|n| n > drain_limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total: usize = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return bad_request("The request body could not be read");
        };
        total = total.saturating_add(chunk.len());
        if total > drain_limit {
            break;
        }
        if total <= max {
            bytes.extend_from_slice(&chunk);
        }
    }
    if total > max {
        return too_large();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn iso(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<OffsetDateTime>, Response> {
    match q.get(name) {
        None => Ok(None),
        Some(s) => parse_time(s)
            .map(Some)
            .ok_or_else(|| bad_request(&format!("Invalid {name} '{s}': expected yyyy-MM-ddThh:mm:ssZ"))),
    }
}

fn top_param(q: &HashMap<String, String>, default: usize) -> Result<usize, Response> {
    match q.get("top").map(String::as_str) {
        None => Ok(default),
        Some(t @ ("50" | "100" | "200")) => Ok(t.parse().unwrap_or(default)),
        Some(other) => Err(bad_request(&format!("Invalid top '{other}': allowed values are 50, 100, 200"))),
    }
}

fn origin(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The first page's query state, carried in `skipToken` so `nextLink` is all a client sends.
#[derive(Serialize, Deserialize)]
struct PageToken {
    offset: usize,
    top: usize,
    params: HashMap<String, String>,
    filter: String,
}

fn filter_digest(header: Option<&str>) -> String {
    header.map_or_else(String::new, |h| {
        Sha256::digest(h.trim().as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    })
}

/// The page request after `skipToken` is unpacked: query params, offset, page size, filter.
struct PageRequest {
    params: HashMap<String, String>,
    offset: usize,
    top: usize,
    filter: Option<Filter>,
    digest: String,
}

fn page_request(
    headers: &HeaderMap,
    query: HashMap<String, String>,
    fields: &[&str],
    max_filter_len: usize,
    default_top: usize,
) -> Result<PageRequest, Response> {
    let header = match headers.get("TMV1-Filter").map(|v| v.to_str()) {
        None => None,
        Some(Ok(s)) if s.trim().is_empty() => None,
        Some(Ok(s)) => Some(s.to_string()),
        Some(Err(_)) => return Err(bad_request("TMV1-Filter must be visible ASCII")),
    };
    if header.as_ref().is_some_and(|h| h.len() > max_filter_len) {
        return Err(bad_request(&format!("TMV1-Filter is longer than {max_filter_len} characters")));
    }
    let filter = match &header {
        None => None,
        Some(h) => Some(filter::parse(h, fields).map_err(|e| bad_request(&format!("Invalid TMV1-Filter: {e}")))?),
    };
    let digest = filter_digest(header.as_deref());
    if let Some(token) = query.get("skipToken") {
        let tok: Option<PageToken> = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(tok) = tok else {
            return Err(bad_request("Invalid skipToken"));
        };
        if tok.filter != digest {
            return Err(bad_request(
                "TMV1-Filter must be sent again, unchanged, with every page of a paginated request",
            ));
        }
        return Ok(PageRequest { params: tok.params, offset: tok.offset, top: tok.top, filter, digest });
    }
    let top = top_param(&query, default_top)?;
    let mut params = query;
    params.remove("top");
    Ok(PageRequest { params, offset: 0, top, filter, digest })
}

/// Slices one page and builds the `nextLink` for the rest.
fn paginate<T: Clone>(items: &[T], page: &PageRequest, headers: &HeaderMap, path: &str) -> (Vec<T>, Option<String>) {
    let start = page.offset.min(items.len());
    let end = start.saturating_add(page.top).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = (end < items.len()).then(|| {
        let tok = PageToken { offset: end, top: page.top, params: page.params.clone(), filter: page.digest.clone() };
        let raw = serde_json::to_vec(&tok).unwrap_or_default();
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        format!("{}{path}?skipToken={enc}", origin(headers))
    });
    (slice, next)
}

type Q = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn query_map(q: Q) -> Result<HashMap<String, String>, Response> {
    q.map(|Query(m)| m).map_err(|e| bad_request(&format!("Invalid query string: {e}")))
}

fn multi_status(items: Vec<Value>) -> Response {
    (StatusCode::MULTI_STATUS, Json(Value::Array(items))).into_response()
}

fn item_error(status: u16, code: &str, message: &str) -> Value {
    json!({"status": status, "body": error_json(code, message)})
}

/// The JSON array body of a batch POST, or the whole-request 400.
fn json_array(body: &Bytes) -> Result<Vec<Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if !items.is_empty() => Ok(items),
        Ok(Value::Array(_)) => Err(bad_request("The request body must contain at least one item")),
        Ok(_) => Err(bad_request("The request body must be a JSON array")),
        Err(e) => Err(bad_request(&format!("The request body is not valid JSON: {e}"))),
    }
}

// ----------------------------------------------------------------------------------------
// Handlers
// ----------------------------------------------------------------------------------------

async fn healthcheck() -> Response {
    Json(json!({"status": "available"})).into_response()
}

async fn list_detections(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, q: Q) -> Response {
    let run = || -> Result<Response, Response> {
        let page = page_request(&headers, query_map(q)?, OAT_FILTER_FIELDS, 4000, 50)?;
        let now = OffsetDateTime::now_utc();
        let p = &page.params;
        let d_start = time_param(p, "detectedStartDateTime")?.unwrap_or(now - time::Duration::hours(1));
        let d_end = time_param(p, "detectedEndDateTime")?.unwrap_or(now);
        let i_start = time_param(p, "ingestedStartDateTime")?;
        let i_end = time_param(p, "ingestedEndDateTime")?;
        if d_start > d_end {
            return Err(bad_request("detectedStartDateTime is after detectedEndDateTime"));
        }
        let inner = state.lock();
        let mut matched: Vec<(OffsetDateTime, &OatDetection)> = inner
            .detections
            .iter()
            .filter_map(|d| {
                let detected = parse_time(&d.detected_date_time)?;
                let ingested = parse_time(&d.ingested_date_time).unwrap_or(detected);
                let in_range = detected >= d_start
                    && detected <= d_end
                    && i_start.map_or(true, |s| ingested >= s)
                    && i_end.map_or(true, |e| ingested <= e);
                let pass = page.filter.as_ref().map_or(true, |f| f.matches(&|field| d.filter_values(field)));
                (in_range && pass).then_some((detected, d))
            })
            .collect();
        matched.sort_by_key(|m| std::cmp::Reverse(m.0));
        let all: Vec<&OatDetection> = matched.into_iter().map(|(_, d)| d).collect();
        let (items, next) = paginate(&all, &page, &headers, "/v3.0/oat/detections");
        let mut body = json!({"totalCount": all.len(), "count": items.len(), "items": items});
        if let (Some(n), Some(m)) = (next, body.as_object_mut()) {
            m.insert("nextLink".into(), json!(n));
        }
        Ok(Json(body).into_response())
    };
    run().unwrap_or_else(|e| e)
}

fn etag(id: &str, version: u64) -> String {
    let d = Sha256::digest(format!("{id}:{version}").as_bytes());
    let short: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("\"{short}\"")
}

async fn list_alerts(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, q: Q) -> Response {
    let run = || -> Result<Response, Response> {
        let page = page_request(&headers, query_map(q)?, ALERT_FILTER_FIELDS, 5000, state.config.alert_page_size)?;
        let p = &page.params;
        let now = OffsetDateTime::now_utc();
        let start = time_param(p, "startDateTime")?.unwrap_or(now - time::Duration::hours(24));
        let end = time_param(p, "endDateTime")?.unwrap_or(now);
        let target = p.get("dateTimeTarget").map_or("createdDateTime", String::as_str);
        if !matches!(target, "createdDateTime" | "updatedDateTime" | "firstInvestigatedDateTime") {
            return Err(bad_request(&format!("Invalid dateTimeTarget '{target}'")));
        }
        let order = p.get("orderBy").map_or("createdDateTime desc", String::as_str);
        if order.len() > 200 {
            return Err(bad_request("orderBy is longer than 200 characters"));
        }
        let mut keys: Vec<(String, bool)> = Vec::new();
        for part in order.split(',') {
            let mut words = part.split_whitespace();
            let field = words.next().unwrap_or("");
            let desc = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(o) => return Err(bad_request(&format!("Invalid orderBy direction '{o}'"))),
            };
            if !matches!(field, "createdDateTime" | "updatedDateTime" | "score" | "severity" | "id") {
                return Err(bad_request(&format!("Invalid orderBy field '{field}'")));
            }
            keys.push((field.to_string(), desc));
        }
        let inner = state.lock();
        let mut matched: Vec<WorkbenchAlert> = inner
            .alerts
            .iter()
            .map(|r| &r.alert)
            .filter(|a| {
                let t = match target {
                    "updatedDateTime" => Some(a.updated_date_time.as_str()),
                    "firstInvestigatedDateTime" => a.first_investigated_date_time.as_deref(),
                    _ => Some(a.created_date_time.as_str()),
                };
                t.and_then(parse_time).is_some_and(|t| t >= start && t <= end)
                    && page.filter.as_ref().map_or(true, |f| f.matches(&|field| a.filter_values(field)))
            })
            .cloned()
            .collect();
        drop(inner);
        let sev_rank = |s: &str| match s {
            "critical" => 4,
            "high" => 3,
            "medium" => 2,
            "low" => 1,
            _ => 0,
        };
        matched.sort_by(|a, b| {
            for (field, desc) in &keys {
                let ord = match field.as_str() {
                    "score" => a.score.cmp(&b.score),
                    "severity" => sev_rank(&a.severity).cmp(&sev_rank(&b.severity)),
                    "id" => a.id.cmp(&b.id),
                    "updatedDateTime" => parse_time(&a.updated_date_time).cmp(&parse_time(&b.updated_date_time)),
                    _ => parse_time(&a.created_date_time).cmp(&parse_time(&b.created_date_time)),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
        let (items, next) = paginate(&matched, &page, &headers, "/v3.0/workbench/alerts");
        let mut body = json!({"totalCount": matched.len(), "count": items.len(), "items": items});
        if let (Some(n), Some(m)) = (next, body.as_object_mut()) {
            m.insert("nextLink".into(), json!(n));
        }
        Ok(Json(body).into_response())
    };
    run().unwrap_or_else(|e| e)
}

fn alert_not_found(id: &str) -> Response {
    v1_error(StatusCode::NOT_FOUND, "NotFound", &format!("Alert {id} not found"))
}

async fn get_alert(State(state): State<Arc<VisionOneState>>, Path(id): Path<String>) -> Response {
    let found = state.lock().alerts.iter().find(|r| r.alert.id == id).cloned();
    match found {
        Some(r) => {
            let mut resp = Json(&r.alert).into_response();
            if let Ok(v) = HeaderValue::from_str(&etag(&id, r.version)) {
                resp.headers_mut().insert(ETAG, v);
            }
            resp
        }
        None => alert_not_found(&id),
    }
}

const ALERT_STATUSES: &[&str] = &["Open", "In Progress", "Closed"];
const INVESTIGATION_RESULTS: &[&str] =
    &["No Findings", "Noteworthy", "True Positive", "False Positive", "Benign True Positive"];
const INVESTIGATION_STATUSES: &[&str] =
    &["New", "In Progress", "True Positive", "False Positive", "Benign True Positive", "Closed"];

async fn patch_alert(
    State(state): State<Arc<VisionOneState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(if_match) = headers.get("if-match").and_then(|v| v.to_str().ok()).map(str::trim) else {
        return bad_request("The If-Match header with the alert's ETag is required");
    };
    let patch: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        _ => return bad_request("The request body must be a JSON object"),
    };
    let field = |k: &str, allowed: &[&str]| -> Result<Option<String>, Response> {
        match patch.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
            Some(other) => Err(bad_request(&format!("Invalid {k} {other}: allowed values are {}", allowed.join(", ")))),
        }
    };
    let (status, result, inv_status) = match (
        field("status", ALERT_STATUSES),
        field("investigationResult", INVESTIGATION_RESULTS),
        field("investigationStatus", INVESTIGATION_STATUSES),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    if status.is_none() && result.is_none() && inv_status.is_none() {
        return bad_request("Nothing to update: send status, investigationResult or investigationStatus");
    }
    let mut inner = state.lock();
    let Some(rec) = inner.alerts.iter_mut().find(|r| r.alert.id == id) else {
        return alert_not_found(&id);
    };
    if if_match != "*" && if_match != etag(&id, rec.version) {
        return v1_error(
            StatusCode::PRECONDITION_FAILED,
            "ConditionNotMet",
            "The alert was changed: ETag does not match",
        );
    }
    let now = iso(OffsetDateTime::now_utc());
    if let Some(s) = status {
        rec.alert.status = s;
    }
    if let Some(r) = result {
        rec.alert.investigation_result = r;
    }
    if let Some(s) = inv_status {
        rec.alert.investigation_status = s;
    }
    if rec.alert.first_investigated_date_time.is_none() {
        rec.alert.first_investigated_date_time = Some(now.clone());
    }
    rec.alert.updated_date_time = now;
    rec.version += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn add_note(
    State(state): State<Arc<VisionOneState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let content = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => match v.get("content").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => c.to_string(),
            _ => return bad_request("The note needs a non-empty content"),
        },
        Err(e) => return bad_request(&format!("The request body is not valid JSON: {e}")),
    };
    let mut inner = state.lock();
    let Some(rec) = inner.alerts.iter_mut().find(|r| r.alert.id == id) else {
        return alert_not_found(&id);
    };
    rec.notes.push(content);
    let n = rec.notes.len();
    let loc = format!("{}/v3.0/workbench/alerts/{id}/notes/{n}", origin(&headers));
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&loc) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

async fn list_objects(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, q: Q) -> Response {
    let run = || -> Result<Response, Response> {
        let page = page_request(&headers, query_map(q)?, SO_FILTER_FIELDS, 5000, 100)?;
        let p = &page.params;
        let start = time_param(p, "startDateTime")?;
        let end = time_param(p, "endDateTime")?;
        let order = p.get("orderBy").map_or("lastModifiedDateTime desc", String::as_str);
        let mut words = order.split_whitespace();
        let field = words.next().unwrap_or("");
        let desc = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(o) => return Err(bad_request(&format!("Invalid orderBy direction '{o}'"))),
        };
        if !matches!(field, "riskLevel" | "lastModifiedDateTime" | "expiredDateTime") {
            return Err(bad_request(&format!("Invalid orderBy field '{field}'")));
        }
        let inner = state.lock();
        // References while sorting; only the page is cloned (a full list is 10,000 per type).
        let mut matched: Vec<&SuspiciousObject> = inner
            .objects
            .iter()
            .filter(|o| {
                start.map_or(true, |s| o.last_modified >= s)
                    && end.map_or(true, |e| o.last_modified <= e)
                    && page.filter.as_ref().map_or(true, |f| f.matches(&|field| o.filter_values(field)))
            })
            .collect();
        let risk = |r: &str| match r {
            "high" => 3,
            "medium" => 2,
            _ => 1,
        };
        matched.sort_by(|a, b| {
            let ord = match field {
                "riskLevel" => risk(&a.risk_level).cmp(&risk(&b.risk_level)),
                "expiredDateTime" => a.expires.cmp(&b.expires),
                _ => a.last_modified.cmp(&b.last_modified),
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
        let (items, next) = paginate(&matched, &page, &headers, "/v3.0/threatintel/suspiciousObjects");
        let items: Vec<Value> = items.iter().map(|o| with_exception_flag(o, &inner.exceptions).to_json()).collect();
        drop(inner);
        let mut body = json!({"items": items});
        if let (Some(n), Some(m)) = (next, body.as_object_mut()) {
            m.insert("nextLink".into(), json!(n));
        }
        Ok(Json(body).into_response())
    };
    run().unwrap_or_else(|e| e)
}

/// The single type key of an item, or why there is not exactly one.
fn item_type(item: &Map<String, Value>) -> Result<(SoType, String), String> {
    let present: Vec<SoType> = SoType::ALL.into_iter().filter(|t| item.contains_key(t.key())).collect();
    match present.as_slice() {
        [t] => match item.get(t.key()) {
            Some(Value::String(v)) if !v.trim().is_empty() => Ok((*t, v.trim().to_string())),
            _ => Err(format!("{} must be a non-empty string", t.key())),
        },
        [] => Err("Each item needs exactly one of url, domain, ip, fileSha1, fileSha256, senderMailAddress".into()),
        _ => Err("Each item may carry only one of url, domain, ip, fileSha1, fileSha256, senderMailAddress".into()),
    }
}

async fn add_objects(State(state): State<Arc<VisionOneState>>, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let cap = state.config.suspicious_object_cap_per_type;
    let now = OffsetDateTime::now_utc();
    let mut inner = state.lock();
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(match add_one(&mut inner, item, cap, now, state.config.default_days_to_expiration) {
            Ok(()) => json!({"status": 201}),
            Err(msg) => item_error(400, "BadRequest", &msg),
        });
    }
    multi_status(out)
}

fn add_one(inner: &mut Inner, item: &Value, cap: usize, now: OffsetDateTime, default_days: u32) -> Result<(), String> {
    let Some(obj) = item.as_object() else {
        return Err("Each item must be a JSON object".into());
    };
    let (kind, value) = item_type(obj)?;
    kind.check(&value)?;
    let pick = |k: &str, allowed: &[&str], default: &str| -> Result<String, String> {
        match obj.get(k) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
            Some(other) => Err(format!("Invalid {k} {other}: allowed values are {}", allowed.join(", "))),
        }
    };
    let scan_action = pick("scanAction", &["block", "log"], "block")?;
    let risk_level = pick("riskLevel", &["high", "medium", "low"], "high")?;
    let days = match obj.get("daysToExpiration") {
        None => i64::from(default_days),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(d) if (0..=36_500).contains(&d) => d,
            _ => return Err(format!("daysToExpiration must be an integer from 0 to 36500, got {n}")),
        },
        Some(other) => return Err(format!("daysToExpiration must be an integer, got {other}")),
    };
    let description = match obj.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("description must be a string, got {other}")),
    };
    let expires = (days > 0).then(|| now + time::Duration::days(days));
    if let Some(existing) = inner.objects.get_mut(kind, &value) {
        existing.description = description;
        existing.scan_action = scan_action;
        existing.risk_level = risk_level;
        existing.last_modified = now;
        existing.expires = expires;
        return Ok(());
    }
    if inner.objects.count(kind) >= cap {
        return Err("The number of objects exceeds the maximum limit".into());
    }
    inner.objects.upsert(SuspiciousObject {
        kind,
        value,
        description,
        scan_action,
        risk_level,
        in_exception_list: false,
        last_modified: now,
        expires,
    });
    Ok(())
}

async fn delete_objects(State(state): State<Arc<VisionOneState>>, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut inner = state.lock();
    let out = items
        .iter()
        .map(|item| {
            let parsed =
                item.as_object().ok_or_else(|| "Each item must be a JSON object".to_string()).and_then(item_type);
            match parsed {
                Err(msg) => item_error(400, "BadRequest", &msg),
                Ok((kind, value)) => {
                    if inner.objects.remove(kind, &value) {
                        json!({"status": 204})
                    } else {
                        item_error(
                            404,
                            "NotFound",
                            &format!("{} '{}' is not in the suspicious object list", kind.key(), value),
                        )
                    }
                }
            }
        })
        .collect();
    multi_status(out)
}

fn with_exception_flag(
    o: &SuspiciousObject,
    exceptions: &BTreeMap<(SoType, String), (String, OffsetDateTime)>,
) -> SuspiciousObject {
    let mut o = o.clone();
    o.in_exception_list = exceptions.contains_key(&(o.kind, o.value.clone()));
    o
}

async fn list_exceptions(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, q: Q) -> Response {
    let run = || -> Result<Response, Response> {
        let page = page_request(&headers, query_map(q)?, SO_FILTER_FIELDS, 5000, 100)?;
        let inner = state.lock();
        let mut matched: Vec<Value> = inner
            .exceptions
            .iter()
            .filter(|((kind, value), _)| {
                page.filter.as_ref().map_or(true, |f| {
                    f.matches(&|field| match field {
                        "type" => vec![kind.key().to_string()],
                        k if SoType::from_key(k) == Some(*kind) => vec![value.clone()],
                        _ => Vec::new(),
                    })
                })
            })
            .map(|((kind, value), (description, modified))| {
                let mut m = Map::new();
                m.insert("type".into(), json!(kind.key()));
                m.insert(kind.key().into(), json!(value));
                m.insert("description".into(), json!(description));
                m.insert("lastModifiedDateTime".into(), json!(iso(*modified)));
                Value::Object(m)
            })
            .collect();
        drop(inner);
        matched.sort_by(|a, b| b["lastModifiedDateTime"].as_str().cmp(&a["lastModifiedDateTime"].as_str()));
        let (items, next) = paginate(&matched, &page, &headers, "/v3.0/threatintel/suspiciousObjectExceptions");
        let mut body = json!({"items": items});
        if let (Some(n), Some(m)) = (next, body.as_object_mut()) {
            m.insert("nextLink".into(), json!(n));
        }
        Ok(Json(body).into_response())
    };
    run().unwrap_or_else(|e| e)
}

async fn add_exceptions(State(state): State<Arc<VisionOneState>>, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let now = OffsetDateTime::now_utc();
    let mut inner = state.lock();
    let out = items
        .iter()
        .map(|item| {
            let parsed = item.as_object().ok_or_else(|| "Each item must be a JSON object".to_string()).and_then(|o| {
                let (kind, value) = item_type(o)?;
                kind.check(&value)?;
                let description = match o.get("description") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => return Err(format!("description must be a string, got {other}")),
                };
                Ok((kind, value, description))
            });
            match parsed {
                Ok((kind, value, description)) => {
                    inner.exceptions.insert((kind, value), (description, now));
                    json!({"status": 201})
                }
                Err(msg) => item_error(400, "BadRequest", &msg),
            }
        })
        .collect();
    multi_status(out)
}

async fn delete_exceptions(State(state): State<Arc<VisionOneState>>, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut inner = state.lock();
    let out = items
        .iter()
        .map(|item| {
            match item.as_object().ok_or_else(|| "Each item must be a JSON object".to_string()).and_then(item_type) {
                Err(msg) => item_error(400, "BadRequest", &msg),
                Ok((kind, value)) => {
                    if inner.exceptions.remove(&(kind, value.clone())).is_some() {
                        json!({"status": 204})
                    } else {
                        let msg = format!("{} '{}' is not in the exception list", kind.key(), value);
                        item_error(404, "NotFound", &msg)
                    }
                }
            }
        })
        .collect();
    multi_status(out)
}

async fn upload_report(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, req: Request) -> Response {
    let mut multipart = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(e) => return bad_request(&format!("Expected multipart/form-data with a file part: {e}")),
    };
    let mut file: Option<(String, String, Vec<u8>)> = None;
    let mut name = String::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let field_name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().unwrap_or("").to_string();
                let ctype = field.content_type().unwrap_or("").to_string();
                let data = match field.bytes().await {
                    Ok(d) => d,
                    Err(e) => return bad_request(&format!("Unreadable multipart part '{field_name}': {e}")),
                };
                match field_name.as_str() {
                    "file" => file = Some((file_name, ctype, data.to_vec())),
                    "reportName" => name = String::from_utf8_lossy(&data).trim().to_string(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return bad_request(&format!("Malformed multipart body: {e}")),
        }
    }
    let Some((file_name, ctype, content)) = file else {
        return bad_request("The multipart body needs a 'file' part");
    };
    let is_csv = ctype.contains("csv") || file_name.to_ascii_lowercase().ends_with(".csv");
    let item = if is_csv {
        if name.is_empty() {
            item_error(400, "BadRequest", "reportName is required for a CSV report")
        } else {
            store_report(&state, &headers, name, file_name, "text/csv".into(), content)
        }
    } else {
        match serde_json::from_slice::<Value>(&content) {
            Ok(v)
                if v.get("type").and_then(Value::as_str) == Some("bundle")
                    && v.get("objects").is_some_and(Value::is_array) =>
            {
                if name.is_empty() {
                    name = report_name_from_bundle(&v).unwrap_or_else(|| file_name.clone());
                }
                store_report(&state, &headers, name, file_name, "application/stix+json".into(), content)
            }
            Ok(_) => item_error(400, "BadRequest", &format!("{file_name}: the file is not a STIX 2.x bundle")),
            Err(e) => item_error(400, "BadRequest", &format!("{file_name}: the file is not valid JSON: {e}")),
        }
    };
    multi_status(vec![item])
}

fn report_name_from_bundle(v: &Value) -> Option<String> {
    v.get("objects")?
        .as_array()?
        .iter()
        .find(|o| o.get("type").and_then(Value::as_str) == Some("report"))
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn store_report(
    state: &VisionOneState,
    headers: &HeaderMap,
    name: String,
    file_name: String,
    content_type: String,
    content: Vec<u8>,
) -> Value {
    let id = format!("report--{}", uuid::Uuid::new_v4());
    let location = format!("{}/v3.0/threatintel/intelligenceReports/{id}", origin(headers));
    let created = OffsetDateTime::now_utc();
    state.lock().reports.push(StoredReport { id, name, file_name, content_type, content, created });
    json!({"status": 201, "headers": [{"name": "Location", "value": location}]})
}

fn report_summary(r: &StoredReport) -> Value {
    json!({"id": r.id, "name": r.name, "createdDateTime": iso(r.created), "updatedDateTime": iso(r.created),
           "fileName": r.file_name, "contentType": r.content_type})
}

/// The `filter` query parameter of the threat-intel lists (same grammar as `TMV1-Filter`).
fn query_filter(q: Q, fields: &[&str]) -> Result<Option<Filter>, Response> {
    let q = query_map(q)?;
    match q.get("filter").map(|f| f.trim()).filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(f) => filter::parse(f, fields).map(Some).map_err(|e| bad_request(&format!("Invalid filter: {e}"))),
    }
}

async fn list_reports(State(state): State<Arc<VisionOneState>>, q: Q) -> Response {
    let filter = match query_filter(q, &["id", "name"]) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let inner = state.lock();
    let mut items: Vec<&StoredReport> = inner
        .reports
        .iter()
        .filter(|r| {
            filter.as_ref().map_or(true, |f| {
                f.matches(&|field| match field {
                    "id" => vec![r.id.clone()],
                    "name" => vec![r.name.clone()],
                    _ => Vec::new(),
                })
            })
        })
        .collect();
    items.sort_by_key(|r| std::cmp::Reverse(r.created));
    let items: Vec<Value> = items.into_iter().map(report_summary).collect();
    Json(json!({"items": items})).into_response()
}

async fn get_report(State(state): State<Arc<VisionOneState>>, Path(id): Path<String>) -> Response {
    match state.report(&id) {
        Some(r) => {
            let ctype = if r.content_type == "text/csv" { "text/csv" } else { "application/json" };
            ([(CONTENT_TYPE, ctype)], r.content).into_response()
        }
        None => v1_error(StatusCode::NOT_FOUND, "NotFound", &format!("Intelligence report {id} not found")),
    }
}

async fn delete_reports(State(state): State<Arc<VisionOneState>>, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut inner = state.lock();
    let out = items
        .iter()
        .map(|item| match item.get("id").and_then(Value::as_str) {
            None => item_error(400, "BadRequest", "Each item needs an id"),
            Some(id) => {
                let before = inner.reports.len();
                inner.reports.retain(|r| r.id != id);
                if inner.reports.len() < before {
                    json!({"status": 204})
                } else {
                    item_error(404, "NotFound", &format!("Intelligence report {id} not found"))
                }
            }
        })
        .collect();
    multi_status(out)
}

/// Whether the report mentions any value marked seen (in its patterns or anywhere in the file).
fn report_hits(report: &StoredReport, seen: &HashMap<String, String>) -> bool {
    !report_matches(report, seen).is_empty()
}

/// The seen (value, endpoint) pairs a report mentions, in a stable order.
fn report_matches(report: &StoredReport, seen: &HashMap<String, String>) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&report.content);
    let mut m: Vec<(String, String)> = seen
        .iter()
        .filter(|(v, _)| !v.is_empty() && text.contains(v.as_str()))
        .map(|(v, e)| (v.clone(), e.clone()))
        .collect();
    m.sort();
    m
}

async fn sweep_reports(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, body: Bytes) -> Response {
    let items = match json_array(&body) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let now = OffsetDateTime::now_utc();
    let mut inner = state.lock();
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            out.push(item_error(400, "BadRequest", "Each item needs the report id"));
            continue;
        };
        let sweep_type = match item.get("sweepType") {
            None => "manual".to_string(),
            Some(Value::String(s)) if s == "manual" || s == "stixShifter" => s.clone(),
            Some(other) => {
                out.push(item_error(
                    400,
                    "BadRequest",
                    &format!("Invalid sweepType {other}: use manual or stixShifter"),
                ));
                continue;
            }
        };
        let Some(report) = inner.reports.iter().find(|r| r.id == id) else {
            out.push(item_error(404, "NotFound", &format!("Intelligence report {id} not found")));
            continue;
        };
        let is_hit = report_hits(report, &inner.seen);
        let task_id = uuid::Uuid::new_v4().to_string();
        let description = item.get("description").and_then(Value::as_str).unwrap_or("").to_string();
        inner.sweeps.push(SweepTask {
            id: task_id.clone(),
            report_id: id.to_string(),
            sweep_type,
            description,
            polls: 0,
            is_hit,
            created: now,
            alert_id: None,
        });
        let loc = format!("{}/v3.0/threatintel/tasks/{task_id}", origin(&headers));
        out.push(json!({"status": 202, "headers": [{"name": "Operation-Location", "value": loc}]}));
    }
    multi_status(out)
}

fn task_json(t: &SweepTask, cfg: &VisionOneConfig, origin: &str) -> Value {
    let status = if t.polls <= cfg.sweep_notstarted_polls {
        "notstarted"
    } else if t.polls <= cfg.sweep_notstarted_polls.saturating_add(cfg.sweep_running_polls) {
        "running"
    } else {
        "succeeded"
    };
    let mut v = json!({"id": t.id, "action": "sweep", "status": status, "createdDateTime": iso(t.created),
        "lastActionDateTime": iso(OffsetDateTime::now_utc()), "sweepType": t.sweep_type,
        "description": t.description, "reportId": t.report_id});
    if status == "succeeded" {
        if let Some(m) = v.as_object_mut() {
            m.insert("isHit".into(), json!(t.is_hit));
            if t.is_hit {
                m.insert("resourceLocation".into(), json!(format!("{origin}{SWEEP_RESULTS_PREFIX}{}", t.id)));
            }
        }
    }
    v
}

/// Where matched sweep results are downloaded. The real URL's form is UNCONFIRMED; what the
/// contract does say is that it is fetched without `Authorization`, so this path skips the
/// token check and refuses a request that carries one (as presigned storage URLs do).
const SWEEP_RESULTS_PREFIX: &str = "/v3.0/threatintel/sweepResults/";

async fn sweep_results(
    State(state): State<Arc<VisionOneState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if headers.contains_key("authorization") {
        return bad_request("Sweep results are fetched without an Authorization header");
    }
    let inner = state.lock();
    let Some(t) = inner.sweeps.iter().find(|t| t.id == id && t.is_hit && t.alert_id.is_some()) else {
        return v1_error(StatusCode::NOT_FOUND, "NotFound", &format!("No matched results for task {id}"));
    };
    let matches = match inner.reports.iter().find(|r| r.id == t.report_id) {
        Some(r) => report_matches(r, &inner.seen),
        None => Vec::new(),
    };
    let items: Vec<Value> = matches.iter().map(|(v, e)| json!({"value": v, "endpointName": e})).collect();
    Json(json!({"taskId": t.id, "reportId": t.report_id, "items": items})).into_response()
}

async fn get_task(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut guard = state.lock();
    let inner = &mut *guard;
    let Some(t) = inner.sweeps.iter_mut().find(|t| t.id == id) else {
        return v1_error(StatusCode::NOT_FOUND, "NotFound", &format!("Task {id} not found"));
    };
    t.polls = t.polls.saturating_add(1);
    let body = task_json(t, &state.config, &origin(&headers));
    // A finished sweep with a hit raises a TI workbench alert once, as Vision One does.
    if body["status"] == "succeeded" && t.is_hit && t.alert_id.is_none() {
        let report_id = t.report_id.clone();
        let alert_id = format!("WB-TI-{}", inner.alerts.len() + 1);
        t.alert_id = Some(alert_id.clone());
        let matches = match inner.reports.iter().find(|r| r.id == report_id) {
            Some(r) => report_matches(r, &inner.seen),
            None => Vec::new(),
        };
        if !matches.is_empty() {
            let link = format!("{}/v3.0/threatintel/intelligenceReports/{report_id}", origin(&headers));
            let alert = WorkbenchAlert::ti(&alert_id, OffsetDateTime::now_utc(), &report_id, &link, &matches);
            inner.alerts.push(AlertRecord { alert, version: 1, notes: Vec::new() });
        }
    }
    Json(body).into_response()
}

async fn list_tasks(State(state): State<Arc<VisionOneState>>, headers: HeaderMap, q: Q) -> Response {
    let filter = match query_filter(q, &["id", "sweepType", "isHit", "status"]) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let inner = state.lock();
    // Listing does not advance a task: only polling it by id does.
    let items: Vec<Value> = inner
        .sweeps
        .iter()
        .map(|t| task_json(t, &state.config, &origin(&headers)))
        .filter(|v| {
            filter.as_ref().map_or(true, |f| {
                f.matches(&|field| match v.get(field) {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Bool(b)) => vec![b.to_string()],
                    _ => Vec::new(),
                })
            })
        })
        .collect();
    Json(json!({"items": items})).into_response()
}

fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    host.split(':').next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn so_items_validate_type_keys_and_days_to_expiration() {
        let mut inner = Inner::default();
        let now = OffsetDateTime::now_utc();
        assert!(add_one(&mut inner, &json!({"domain": "evil.example", "daysToExpiration": 30}), 10, now, 30).is_ok());
        let e = add_one(&mut inner, &json!({"domain": "evil.example", "daysToExpiration": "90"}), 10, now, 30);
        assert!(e.unwrap_err().contains("daysToExpiration must be an integer"));
        assert!(add_one(&mut inner, &json!({"domain": "a.example", "url": "http://a.example/"}), 10, now, 30).is_err());
        assert!(add_one(&mut inner, &json!({"fileSha1": "xyz"}), 10, now, 30).is_err());
        assert!(add_one(&mut inner, &json!({"ip": "1.2.3.4", "scanAction": "quarantine"}), 10, now, 30).is_err());
        assert!(add_one(&mut inner, &json!("domain"), 10, now, 30).is_err());
        assert_eq!(inner.objects.len(), 1);
    }

    #[test]
    fn the_cap_counts_per_type_and_re_adding_is_an_update() {
        let mut inner = Inner::default();
        let now = OffsetDateTime::now_utc();
        assert!(add_one(&mut inner, &json!({"domain": "a.example"}), 1, now, 30).is_ok());
        assert!(add_one(&mut inner, &json!({"domain": "a.example", "riskLevel": "low"}), 1, now, 30).is_ok());
        let e = add_one(&mut inner, &json!({"domain": "b.example"}), 1, now, 30).unwrap_err();
        assert_eq!(e, "The number of objects exceeds the maximum limit");
        assert!(add_one(&mut inner, &json!({"ip": "192.0.2.1"}), 1, now, 30).is_ok());
        assert_eq!(inner.objects.iter().find(|o| o.value == "a.example").map(|o| o.risk_level.as_str()), Some("low"));
    }

    #[test]
    fn list_items_carry_the_value_under_the_type_key() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let o = SuspiciousObject {
            kind: SoType::FileSha256,
            value: "a".repeat(64),
            description: String::new(),
            scan_action: "log".into(),
            risk_level: "medium".into(),
            in_exception_list: false,
            last_modified: now,
            expires: None,
        };
        let j = o.to_json();
        assert_eq!(j["type"], "fileSha256");
        assert_eq!(j["fileSha256"], "a".repeat(64));
        assert_eq!(j["lastModifiedDateTime"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn detection_builder_has_the_fields_filters_use() {
        let d = OatDetection::c2_url("u1", OffsetDateTime::now_utc(), "high", "ws-01", "http://evil.example:8080/x");
        assert_eq!(d.filter_values("filterMitreTacticId"), vec!["TA0011"]);
        assert_eq!(d.filter_values("endpointName"), vec!["ws-01"]);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["filters"][0]["highlightedObjects"][1]["value"], "evil.example");
        assert_eq!(v["filters"][0]["type"], "preset");
        assert!(v["detail"]["endpointGuid"].is_string());
    }
}
