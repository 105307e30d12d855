//! Enrichment traits: reputation lookups (VirusTotal), sandbox analysis (Intezer) and the
//! hunt action (a STIX report uploaded and swept on Vision One).
//!
//! An enrichment failure is always an error value, never a verdict: the playbook sends an
//! object it could not enrich to review and never blocks because of an error.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tibridge_core::Indicator;

/// What a reputation service says about one indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    pub provider: String,
    /// False when the service does not know the object (VirusTotal 404).
    pub found: bool,
    /// Engines that call it malicious.
    pub malicious: u32,
    /// Engines that call it suspicious (kept visible to the policy).
    pub suspicious: u32,
    pub harmless: u32,
    pub undetected: u32,
    /// A link a person can open, if any.
    pub link: Option<String>,
}

/// The sandbox's final word on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxVerdict {
    Malicious,
    Suspicious,
    /// Nothing found (Intezer `no_threats`, `trusted`, `neutral`).
    Clean,
    /// The URL could not be reached (Intezer `is_url_offline`), decided at submission.
    Offline,
    /// The sandbox finished but gave no usable verdict (`unknown`, `not_supported`, failed).
    Inconclusive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub provider: String,
    pub verdict: SandboxVerdict,
    /// The analysis link for people.
    pub link: Option<String>,
    /// The sandbox's own title (`Malicious URL`, `No Threats`).
    pub title: Option<String>,
    /// The IP the URL resolved to during analysis, if reported.
    pub resolved_ip: Option<String>,
    /// The final URL after redirects, if reported.
    pub scanned_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum EnrichError {
    /// The key's quota is spent (VirusTotal 429 QuotaExceededError, Intezer 403).
    #[error("{provider}: quota exceeded: {detail}")]
    QuotaExceeded { provider: String, detail: String },
    /// The service failed or could not be reached after retries.
    #[error("{provider}: unavailable: {detail}")]
    Unavailable { provider: String, detail: String },
    /// The service cannot look at this kind of object.
    #[error("{provider}: cannot analyze {what}")]
    Unsupported { provider: String, what: String },
    /// The analysis did not finish in the allowed time.
    #[error("{provider}: analysis still pending after {waited_seconds} s")]
    TimedOut { provider: String, waited_seconds: u64 },
}

#[async_trait]
pub trait Enricher: Send + Sync {
    fn provider(&self) -> &str;
    async fn reputation(&self, indicator: &Indicator) -> Result<Reputation, EnrichError>;
}

#[async_trait]
pub trait Sandbox: Send + Sync {
    fn provider(&self) -> &str;
    /// Submits and waits for the final verdict (bounded wait).
    async fn analyze(&self, indicator: &Indicator) -> Result<SandboxReport, EnrichError>;
}

/// The outcome of a hunt: the report id the vendor assigned and the sweep task's end state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HuntOutcome {
    pub report_id: String,
    pub task_id: Option<String>,
    /// `succeeded`, `failed`, or the last status seen when polling stopped.
    pub status: String,
    pub is_hit: Option<bool>,
}

#[async_trait]
pub trait Hunter: Send + Sync {
    /// Uploads `bundle` (STIX 2.1 JSON bytes) as a custom intelligence report named `name`,
    /// starts a sweep with the id the vendor returned, and polls the task to its end.
    async fn hunt(&self, name: &str, bundle: Vec<u8>) -> Result<HuntOutcome, EnrichError>;
}
