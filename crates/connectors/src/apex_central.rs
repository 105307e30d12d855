//! Apex Central sink: indicators as User-Defined Suspicious Objects (UDSO), contract
//! `trendmicro.md` §2.
//!
//! Every request carries a fresh HS256 JWT whose checksum covers the exact bytes sent (§2.2);
//! every answer's `Meta.Result` is checked, because Apex says "failed" inside HTTP 200 (§2.4).
//! Expiry dates are UTC (the old script labelled local time `Z`, §4.1). This module must never
//! send the API key itself, never add a kind the UDSO API does not take (SHA-256 is not a UDSO
//! type), and never remove anything but the exact (type, content) pair the engine names.

use crate::http::{HttpClient, HttpError, HttpOptions, Secret, SecretError, SecretRef};
use crate::sink::{ItemOutcome, Sink, SinkError, SinkStyle};
use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use futures::stream::{self, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tibridge_core::plan::LedgerEntry;
use tibridge_core::policy::DesiredEntry;
use tibridge_core::{Indicator, IndicatorKind};
use url::Url;

/// The UDSO endpoint (the "latest" path of §2.3).
pub const UDSO_PATH: &str = "/WebApp/api/SuspiciousObjects/UserDefinedSO/";
/// Longest `notes` Apex accepts (§2.3).
pub const NOTES_MAX_CHARS: usize = 256;
/// Longest URL Apex accepts as a UDSO (§2.3).
pub const URL_MAX_CHARS: usize = 2047;
/// Result code for "suspicious object list full" (§2.4).
pub const RESULT_CAPACITY_FULL: i64 = -1101;
/// The kinds Apex Central takes, in the order of [`udso_type`].
pub const KINDS: [IndicatorKind; 4] =
    [IndicatorKind::Sha1, IndicatorKind::Ipv4, IndicatorKind::Url, IndicatorKind::Domain];
/// Items per engine batch; each item is its own request (the API takes one object per call).
pub const MAX_BATCH: usize = 100;

/// What Apex does when a UDSO matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanAction {
    #[default]
    Log,
    Block,
}

impl ScanAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanAction::Log => "log",
            ScanAction::Block => "block",
        }
    }
}

/// `kind = "apex_central"` sink settings (policy keys such as kinds and capacity are the
/// engine's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApexCentralConfig {
    /// `https://<host>` (on-prem) or `https://<tenant>.manage.trendmicro.com` (SaaS).
    pub base_url: String,
    /// Application ID from Automation API Access Settings.
    pub application_id: String,
    /// The API key that signs the JWTs: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub api_key: SecretRef,
    /// `log` (default) or `block`.
    #[serde(default)]
    pub scan_action: ScanAction,
    /// Days until an object expires when the entry has no expiry of its own (default 30).
    #[serde(default = "default_expiry_days")]
    pub expiry_days: u32,
    /// Requests in flight at once within a batch (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub http: HttpOptions,
}

fn default_expiry_days() -> u32 {
    30
}
fn default_concurrency() -> usize {
    4
}

/// Why an Apex Central sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApexConfigError {
    #[error("sink {sink_id}: base_url {url:?} is not an http(s) URL: {reason}")]
    BaseUrl { sink_id: String, url: String, reason: String },
    #[error("sink {sink_id}: api_key: {source}")]
    Secret {
        sink_id: String,
        #[source]
        source: SecretError,
    },
    #[error("sink {sink_id}: application_id is empty")]
    ApplicationId { sink_id: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Writes indicators to Apex Central's UDSO list.
#[derive(Debug, Clone)]
pub struct ApexCentralSink {
    id: String,
    base_url: Url,
    application_id: String,
    api_key: Secret,
    scan_action: ScanAction,
    expiry_days: u32,
    concurrency: usize,
    client: HttpClient,
}

impl ApexCentralSink {
    /// Resolves the secret and builds the client.
    pub fn from_config(id: String, config: &ApexCentralConfig) -> Result<Self, ApexConfigError> {
        let api_key =
            config.api_key.resolve().map_err(|source| ApexConfigError::Secret { sink_id: id.clone(), source })?;
        let client = config.http.builder(id.clone(), None).build()?;
        Self::new(id, &config.base_url, config.application_id.clone(), api_key, client).map(|s| {
            s.with_scan_action(config.scan_action)
                .with_expiry_days(config.expiry_days)
                .with_concurrency(config.concurrency)
        })
    }

    pub fn new(
        id: String,
        base_url: &str,
        application_id: String,
        api_key: Secret,
        client: HttpClient,
    ) -> Result<Self, ApexConfigError> {
        let base_url = parse_base_url(&id, base_url)?;
        if application_id.trim().is_empty() {
            return Err(ApexConfigError::ApplicationId { sink_id: id });
        }
        Ok(ApexCentralSink {
            id,
            base_url,
            application_id,
            api_key,
            scan_action: ScanAction::Log,
            expiry_days: default_expiry_days(),
            concurrency: default_concurrency(),
            client,
        })
    }

    pub fn with_scan_action(mut self, scan_action: ScanAction) -> Self {
        self.scan_action = scan_action;
        self
    }

    pub fn with_expiry_days(mut self, days: u32) -> Self {
        self.expiry_days = days.max(1);
        self
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, 32);
        self
    }

    fn udso_url(&self, query: &[(&str, &str)]) -> Result<Url, String> {
        let mut url = self
            .base_url
            .join(UDSO_PATH.trim_start_matches('/'))
            .map_err(|e| format!("cannot build the UDSO URL: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// One signed request: the JWT is made for exactly this method, URL and body.
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<ApexAnswer, HttpError> {
        let reply = self
            .client
            .send(what, |http| {
                let token = jwt(&self.application_id, &self.api_key, method.as_str(), &url, &body, unix_now_f64())?;
                let mut request = http
                    .request(method.clone(), url.clone())
                    .bearer_auth(token)
                    .header(reqwest::header::ACCEPT, "application/json");
                if !body.is_empty() {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json;charset=utf-8")
                        .body(body.clone());
                }
                Ok(request)
            })
            .await?;
        Ok(ApexAnswer::read(reply.status.as_u16(), &reply.body))
    }

    async fn add_one(&self, entry: &DesiredEntry) -> Result<ItemOutcome, HttpError> {
        let Some(udso_type) = udso_type(entry.indicator.kind) else {
            return Ok(ItemOutcome::Failed {
                reason: format!(
                    "Apex Central UDSO has no type for {} (it takes sha1, ipv4, url, domain)",
                    entry.indicator.kind
                ),
                retryable: false,
            });
        };
        if let Err(reason) = check_content(&entry.indicator) {
            return Ok(ItemOutcome::Failed { reason, retryable: false });
        }
        let expires =
            entry.expires_at.unwrap_or_else(|| tibridge_core::timestamp::now() + i64::from(self.expiry_days) * 86_400);
        let body = UdsoPut {
            param: UdsoParam {
                kind: udso_type,
                content: &entry.indicator.value,
                notes: truncate_chars(&entry.provenance, NOTES_MAX_CHARS),
                scan_action: self.scan_action.as_str(),
                expiration_utc_date: tibridge_core::timestamp::iso_seconds(expires),
            },
        };
        let body = serde_json::to_vec(&body).map_err(|e| HttpError::Request {
            target: self.id.clone(),
            what: "add UDSO".into(),
            reason: format!("cannot encode the body: {e}"),
        })?;
        let url = self.udso_url(&[]).map_err(|reason| HttpError::Request {
            target: self.id.clone(),
            what: "add UDSO".into(),
            reason,
        })?;
        let answer = self.call(&format!("add UDSO {udso_type}"), reqwest::Method::PUT, url, body).await?;
        Ok(answer.outcome(&entry.indicator, "add"))
    }

    async fn remove_one(&self, entry: &LedgerEntry) -> Result<ItemOutcome, HttpError> {
        let Some(udso_type) = udso_type(entry.indicator.kind) else {
            return Ok(ItemOutcome::Failed {
                reason: format!("Apex Central UDSO has no type for {}", entry.indicator.kind),
                retryable: false,
            });
        };
        let value = entry.indicator.value.as_str();
        let what = format!("remove UDSO {udso_type}");
        let url = self.udso_url(&[("type", udso_type), ("content", value)]).map_err(|reason| HttpError::Request {
            target: self.id.clone(),
            what: what.clone(),
            reason,
        })?;
        let answer = self.call(&what, reqwest::Method::DELETE, url, Vec::new()).await?;
        let outcome = answer.outcome(&entry.indicator, "remove");
        if matches!(outcome, ItemOutcome::Done { .. }) {
            return Ok(outcome);
        }
        // The delete failed: if the object is not there any more (expired, removed by hand)
        // the removal is done; otherwise report the failure.
        match self.is_present(udso_type, value).await {
            Ok(false) => Ok(ItemOutcome::Done { remote_id: None }),
            Ok(true) | Err(_) => Ok(outcome),
        }
    }

    /// Whether an object of exactly this type and content is on the list.
    async fn is_present(&self, udso_type: &str, value: &str) -> Result<bool, HttpError> {
        let what = format!("look up UDSO {udso_type}");
        let url = self
            .udso_url(&[("type", udso_type), ("contentFilter", value)])
            .map_err(|reason| HttpError::Request { target: self.id.clone(), what: what.clone(), reason })?;
        let answer = self.call(&what, reqwest::Method::GET, url, Vec::new()).await?;
        if answer.result != Some(1) {
            return Err(HttpError::Status {
                target: self.id.clone(),
                what,
                status: answer.status,
                attempts: 1,
                body_excerpt: answer.describe(),
            });
        }
        Ok(answer.data.iter().any(|o| {
            o.content.as_deref().is_some_and(|c| c.trim().eq_ignore_ascii_case(value))
                && !matches!(o.kind.as_deref(), Some(t) if !t.eq_ignore_ascii_case(udso_type))
        }))
    }
}

fn parse_base_url(sink_id: &str, raw: &str) -> Result<Url, ApexConfigError> {
    let err = |reason: String| ApexConfigError::BaseUrl { sink_id: sink_id.to_string(), url: raw.to_string(), reason };
    let mut url = Url::parse(raw.trim()).map_err(|e| err(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err("scheme must be http or https with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("must not have a query or fragment".into()));
    }
    // A sub-path install keeps its path: make sure joins append to it.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The UDSO `type` for a kind, `None` when Apex has no such type.
pub fn udso_type(kind: IndicatorKind) -> Option<&'static str> {
    match kind {
        IndicatorKind::Sha1 => Some("file_sha1"),
        IndicatorKind::Ipv4 => Some("ip"),
        IndicatorKind::Url => Some("url"),
        IndicatorKind::Domain => Some("domain"),
        _ => None,
    }
}

/// Apex's own limits on content (§2.3), checked before a call is spent on them.
fn check_content(indicator: &Indicator) -> Result<(), String> {
    if indicator.kind == IndicatorKind::Url {
        let v = indicator.value.as_str();
        let scheme_ok = v.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://"))
            || v.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://"));
        if !scheme_ok {
            return Err(format!(
                "Apex Central takes only http:// or https:// URLs, not {}",
                crate::misp::convert::quote(v)
            ));
        }
        if v.chars().count() > URL_MAX_CHARS {
            return Err(format!("URL is longer than the {URL_MAX_CHARS} characters Apex Central accepts"));
        }
    }
    Ok(())
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

#[derive(Serialize)]
struct UdsoPut<'a> {
    param: UdsoParam<'a>,
}

#[derive(Serialize)]
struct UdsoParam<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a str,
    notes: String,
    scan_action: &'a str,
    expiration_utc_date: String,
}

/// The parts of an Apex answer that matter: HTTP status, `Meta.Result`, `Meta.ErrorCode`,
/// `Meta.ErrorMsg`, and `Data` for listings.
#[derive(Debug, Default)]
struct ApexAnswer {
    status: u16,
    result: Option<i64>,
    error_code: Option<i64>,
    error_msg: String,
    data: Vec<UdsoListed>,
}

#[derive(Debug, Default, Deserialize)]
struct UdsoListed {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Meta", default)]
    meta: Option<Meta>,
    #[serde(rename = "Data", default)]
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Result", default)]
    result: Option<serde_json::Value>,
    #[serde(rename = "ErrorCode", default)]
    error_code: Option<serde_json::Value>,
    #[serde(rename = "ErrorMsg", default)]
    error_msg: Option<serde_json::Value>,
}

fn json_int(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ApexAnswer {
    fn read(status: u16, body: &[u8]) -> Self {
        let mut answer = ApexAnswer { status, ..ApexAnswer::default() };
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            answer.error_msg = format!("not an Apex JSON answer: {}", crate::http::excerpt(body));
            return answer;
        };
        if let Some(meta) = envelope.meta {
            answer.result = meta.result.as_ref().and_then(json_int);
            answer.error_code = meta.error_code.as_ref().and_then(json_int);
            answer.error_msg = match meta.error_msg {
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
        }
        if let Some(serde_json::Value::Array(items)) = envelope.data {
            answer.data = items.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
        }
        answer
    }

    fn describe(&self) -> String {
        let code = self.error_code.or(self.result.filter(|r| *r != 1));
        let meaning = code.map(result_code_meaning).unwrap_or("no Meta in the reply");
        match code {
            Some(code) => format!("HTTP {}, Apex code {code} ({meaning}){}", self.status, suffix(&self.error_msg)),
            None => format!("HTTP {}, {meaning}{}", self.status, suffix(&self.error_msg)),
        }
    }

    fn outcome(&self, indicator: &Indicator, op: &str) -> ItemOutcome {
        if (200..300).contains(&self.status) && self.result == Some(1) {
            return ItemOutcome::Done { remote_id: None };
        }
        let reason = format!("{op} {indicator}: {}", self.describe());
        let code = self.error_code.or(self.result);
        if code == Some(RESULT_CAPACITY_FULL) {
            return ItemOutcome::CapacityFull { reason };
        }
        // Invalid input or an unsupported action will fail the same way next time; auth, clock
        // and server trouble may not.
        let retryable = !matches!(code, Some(-9) | Some(-21) | Some(-22) | Some(-50)) && self.status != 400;
        ItemOutcome::Failed { reason, retryable }
    }
}

fn suffix(msg: &str) -> String {
    if msg.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", truncate_chars(msg.trim(), 200))
    }
}

/// What an Apex result code means (§2.4), for error messages.
pub fn result_code_meaning(code: i64) -> &'static str {
    match code {
        1 => "ok",
        0 => "failed",
        -2 => "no token",
        -3 => "malformed token",
        -4 => "unsupported token version",
        -5 => "unknown application ID",
        -6 => "token expired: check the clock and the communication time-out",
        -7 => "bad signature: check the API key",
        -8 => "bad checksum",
        -9 => "unsupported hash algorithm",
        -21 => "invalid input",
        -22 => "invalid action",
        -50 => "unsupported method",
        -99 => "internal error",
        -1101 => "suspicious object list is full",
        -1102 => "scan prefilter error",
        _ => "unknown result code",
    }
}

// ---------------------------------------------------------------------------------------------
// JWT (§2.2)

/// `Base64(SHA-256(METHOD|lowercase(path[?query])|canonical_headers|body))`, canonical headers
/// empty (no `API*` headers are sent).
pub fn checksum(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.to_ascii_uppercase().as_bytes());
    hasher.update(b"|");
    hasher.update(path_and_query.to_lowercase().as_bytes());
    hasher.update(b"||");
    hasher.update(body);
    STANDARD.encode(hasher.finalize())
}

/// The path and query of `url` exactly as they go on the wire.
fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// A JWT for one request (HS256, `version` V1, `iat` in seconds with a fraction as the official
/// sample sends it).
pub fn jwt(
    application_id: &str,
    api_key: &Secret,
    method: &str,
    url: &Url,
    body: &[u8],
    iat: f64,
) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = serde_json::json!({
        "appid": application_id,
        "iat": iat,
        "version": "V1",
        "checksum": checksum(method, &path_and_query(url), body),
    });
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).map_err(|e| format!("cannot encode the token: {e}"))?);
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(api_key.expose().as_bytes())
        .map_err(|_| "the API key cannot be used as an HMAC key".to_string())?;
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Sink

/// Runs the per-item calls with bounded concurrency, keeping the batch order; if every item
/// failed on the transport (nothing known done) the whole batch is an error.
pub(crate) async fn run_batch<Fut>(
    sink_id: &str,
    calls: Vec<Fut>,
    concurrency: usize,
) -> Result<Vec<ItemOutcome>, SinkError>
where
    Fut: std::future::Future<Output = Result<ItemOutcome, HttpError>>,
{
    let results: Vec<Result<ItemOutcome, HttpError>> = stream::iter(calls).buffered(concurrency.max(1)).collect().await;
    if !results.is_empty() && results.iter().all(Result::is_err) {
        let reason = results.into_iter().find_map(Result::err).map(|e| e.to_string()).unwrap_or_default();
        return Err(SinkError::Failed { sink_id: sink_id.to_string(), reason });
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| ItemOutcome::Failed { retryable: e.is_retryable(), reason: e.to_string() }))
        .collect())
}

#[async_trait]
impl Sink for ApexCentralSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn style(&self) -> SinkStyle {
        SinkStyle::Incremental { max_batch: MAX_BATCH }
    }

    fn describe(&self) -> String {
        format!(
            "Apex Central UDSO list at {} (application {}, scan action {}, default expiry {} days)",
            self.base_url,
            self.application_id,
            self.scan_action.as_str(),
            self.expiry_days
        )
    }

    async fn add(&self, batch: &[DesiredEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let calls: Vec<_> = batch.iter().map(|entry| self.add_one(entry)).collect();
        run_batch(&self.id, calls, self.concurrency).await
    }

    async fn remove(&self, batch: &[LedgerEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let calls: Vec<_> = batch.iter().map(|entry| self.remove_one(entry)).collect();
        run_batch(&self.id, calls, self.concurrency).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_contract_test_vectors() {
        let put_body = br#"{"param":{"type":"file_sha1","content":"3395856CE81F2B7382DEE72602F798B642F14140","notes":"demo","scan_action":"log"}}"#;
        assert_eq!(
            checksum("PUT", "/WebApp/api/SuspiciousObjects/UserDefinedSO/", put_body),
            "u0mP1OPaox6kRaiWC+kIcvB1A3g+pFd/vMGNTGeWitg="
        );
        assert_eq!(
            checksum(
                "GET",
                "/WebApp/api/SuspiciousObjects/UserDefinedSO/?type=file_sha1&contentFilter=3395856ce81f",
                b""
            ),
            "eG6csQFDYMNPTUiQlWYyPSny7fiiQ+4DgWOd9L9jEMw="
        );
        assert_eq!(
            checksum("DELETE", "/WebApp/api/SuspiciousObjects/UserDefinedSO/?type=domain&content=evil.example", b""),
            "5OZgnVeHXXv39weB9Jpt51i6qFiG0OdZd94fKF+I1k8="
        );
    }

    #[test]
    fn the_jwt_signs_what_goes_on_the_wire() {
        let sink_url = parse_base_url("t", "https://apex.example").expect("url");
        let url = sink_url.join(UDSO_PATH.trim_start_matches('/')).expect("join");
        let mut url_q = url.clone();
        url_q.query_pairs_mut().extend_pairs([("type", "domain"), ("content", "evil.example")]);
        assert_eq!(
            path_and_query(&url_q),
            "/WebApp/api/SuspiciousObjects/UserDefinedSO/?type=domain&content=evil.example"
        );

        let key = Secret::new("secret-key");
        let token = jwt("app-1", &key, "DELETE", &url_q, b"", 1_495_187_266.621_543_2).expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(payload["appid"], "app-1");
        assert_eq!(payload["version"], "V1");
        assert_eq!(payload["checksum"], "5OZgnVeHXXv39weB9Jpt51i6qFiG0OdZd94fKF+I1k8=");
        assert!(payload["iat"].as_f64().is_some_and(|t| (t - 1_495_187_266.62).abs() < 0.01));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret-key").expect("mac");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()), parts[2]);
        assert!(!token.contains("secret-key"));
    }

    #[test]
    fn sub_path_installs_keep_their_path() {
        let base = parse_base_url("t", "https://host.example/apex").expect("url");
        assert_eq!(
            base.join(UDSO_PATH.trim_start_matches('/')).expect("join").path(),
            "/apex/WebApp/api/SuspiciousObjects/UserDefinedSO/"
        );
        assert!(parse_base_url("t", "ftp://host").is_err());
        assert!(parse_base_url("t", "https://host/?x=1").is_err());
    }

    #[test]
    fn answers_are_judged_by_meta_result() {
        let ind = Indicator::from_canonical(IndicatorKind::Domain, "evil.example");
        let ok = ApexAnswer::read(200, br#"{"Data":null,"Meta":{"Result":1,"ErrorCode":0,"ErrorMsg":""}}"#);
        assert_eq!(ok.outcome(&ind, "add"), ItemOutcome::Done { remote_id: None });
        let failed_on_200 = ApexAnswer::read(200, br#"{"Meta":{"Result":0,"ErrorCode":-99,"ErrorMsg":"boom"}}"#);
        assert!(matches!(failed_on_200.outcome(&ind, "add"), ItemOutcome::Failed { retryable: true, .. }));
        let full = ApexAnswer::read(200, br#"{"Meta":{"Result":-1101,"ErrorCode":-1101,"ErrorMsg":"max"}}"#);
        assert!(matches!(full.outcome(&ind, "add"), ItemOutcome::CapacityFull { .. }));
        let invalid = ApexAnswer::read(400, br#"{"Meta":{"Result":0,"ErrorCode":-21,"ErrorMsg":"bad"}}"#);
        let ItemOutcome::Failed { reason, retryable } = invalid.outcome(&ind, "add") else { panic!("failed expected") };
        assert!(!retryable && reason.contains("-21") && reason.contains("invalid input"), "{reason}");
        let garbage = ApexAnswer::read(200, b"<html>proxy error</html>");
        assert!(matches!(garbage.outcome(&ind, "add"), ItemOutcome::Failed { .. }));
    }

    #[test]
    fn only_udso_kinds_and_valid_urls_are_sent() {
        assert_eq!(KINDS.map(udso_type), [Some("file_sha1"), Some("ip"), Some("url"), Some("domain")]);
        assert_eq!(udso_type(IndicatorKind::Sha256), None);
        assert!(check_content(&Indicator::from_canonical(IndicatorKind::Url, "ftp://x.example/a")).is_err());
        assert!(check_content(&Indicator::from_canonical(IndicatorKind::Url, "https://x.example/a")).is_ok());
        assert_eq!(truncate_chars(&"é".repeat(300), NOTES_MAX_CHARS).chars().count(), 256);
    }

    // ---- against the lab simulator, which checks the JWT and checksum exactly as §2.2

    use crate::http::{HttpClientBuilder, RetryPolicy};
    use std::time::Duration;
    use tibridge_lab::apex_central::{ApexConfig, ApexState};
    use tibridge_lab::{FaultConfig, FaultHandle};

    fn entry(kind: IndicatorKind, value: &str, expires_at: Option<i64>) -> DesiredEntry {
        DesiredEntry {
            indicator: Indicator::from_canonical(kind, value),
            confidence: Some(90),
            tlp: None,
            expires_at,
            last_seen: None,
            provenance: format!("misp event 5a1c attribute 77 {}", "x".repeat(400)),
            tags: vec![],
        }
    }

    async fn lab(capacity: usize, faults: FaultConfig) -> (tibridge_lab::RunningServer, std::sync::Arc<ApexState>) {
        let state = ApexState::new(ApexConfig { capacity, ..ApexConfig::default() });
        let server = tibridge_lab::serve(
            tibridge_lab::apex_central::router(state.clone()),
            FaultHandle::new(faults),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("lab serves");
        (server, state)
    }

    fn sink(server: &tibridge_lab::RunningServer, state: &ApexState, key: &str) -> ApexCentralSink {
        let retry = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_total: Duration::from_secs(20),
        };
        let client = HttpClientBuilder::new("apex-test").retry(retry).build().expect("client");
        ApexCentralSink::new("apex-test".into(), &server.base_url(), state.app_id(), Secret::new(key), client)
            .expect("sink")
    }

    #[tokio::test]
    async fn adds_every_udso_kind_signed_and_reports_a_full_list() {
        let (server, state) = lab(4, FaultConfig::default()).await;
        let sink = sink(&server, &state, &state.api_key()).with_scan_action(ScanAction::Block).with_concurrency(1);
        let batch = [
            entry(IndicatorKind::Sha1, "3395856ce81f2b7382dee72602f798b642f14140", Some(1_900_000_000)),
            entry(IndicatorKind::Domain, "evil.example", None),
            entry(IndicatorKind::Url, "https://evil.example/a?b=c d", None),
            entry(IndicatorKind::Ipv4, "198.51.100.7", None),
            entry(IndicatorKind::Domain, "one-too-many.example", None),
            entry(IndicatorKind::Sha256, &"a".repeat(64), None),
        ];
        let out = sink.add(&batch).await.expect("add");
        assert!(out[..4].iter().all(|o| *o == ItemOutcome::Done { remote_id: None }), "{out:?}");
        assert!(matches!(&out[4], ItemOutcome::CapacityFull { .. }), "{:?}", out[4]);
        assert!(matches!(&out[5], ItemOutcome::Failed { retryable: false, .. }));
        assert!(state.errors().iter().all(|&code| code == -1101), "no auth or checksum error: {:?}", state.errors());

        let listed = state.udso();
        let sha1 = listed.iter().find(|u| u.udso_type == "file_sha1").expect("sha1 listed");
        assert_eq!(sha1.scan_action, "block");
        assert_eq!(sha1.notes.chars().count(), NOTES_MAX_CHARS);
        assert_eq!(sha1.expiration_utc_date.as_deref().map(|d| &d[..16]), Some("2030-03-17T17:46"));
        assert!(listed.iter().any(|u| u.udso_type == "url" && u.content == "https://evil.example/a?b=c d"));
    }

    #[tokio::test]
    async fn removes_by_type_and_content_and_absent_objects_count_as_removed() {
        let (server, state) =
            lab(100, FaultConfig { error_5xx_ratio: 0.3, seed: Some(3), ..FaultConfig::default() }).await;
        let sink = sink(&server, &state, &state.api_key());
        let added = sink
            .add(&[
                entry(IndicatorKind::Domain, "evil.example", None),
                entry(IndicatorKind::Url, "http://evil.example/x?y=1&z=%41", None),
            ])
            .await
            .expect("add");
        assert!(added.iter().all(|o| matches!(o, ItemOutcome::Done { .. })), "{added:?}");
        let ledger = |kind, value: &str| LedgerEntry {
            indicator: Indicator::from_canonical(kind, value),
            remote_id: None,
            added_at: 0,
            expires_at: None,
        };
        let out = sink
            .remove(&[
                ledger(IndicatorKind::Domain, "evil.example"),
                ledger(IndicatorKind::Url, "http://evil.example/x?y=1&z=%41"),
                ledger(IndicatorKind::Domain, "never-added.example"),
            ])
            .await
            .expect("remove");
        assert!(out.iter().all(|o| matches!(o, ItemOutcome::Done { .. })), "{out:?}");
        assert!(state.udso().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_key_fails_every_item_naming_the_cause_not_the_key() {
        let (server, state) = lab(100, FaultConfig::default()).await;
        let sink = sink(&server, &state, "not-the-key-42");
        let out = sink.add(&[entry(IndicatorKind::Domain, "evil.example", None)]).await.expect("answers");
        let ItemOutcome::Failed { reason, retryable } = &out[0] else { panic!("failed expected, got {out:?}") };
        assert!(*retryable);
        assert!(reason.contains("-7") && reason.contains("bad signature"), "{reason}");
        assert!(!reason.contains("not-the-key-42"));
    }

    #[test]
    fn config_reads_secret_references_and_refuses_inline_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("apex.key");
        std::fs::write(&key_file, "k3y\n").expect("write");
        let json = serde_json::json!({
            "base_url": "https://apex.example",
            "application_id": "app",
            "api_key": {"file": key_file},
            "scan_action": "block",
            "http": {"ca_bundle": null, "timeout_secs": 30, "rate_limit_per_minute": 120}
        });
        let config: ApexCentralConfig = serde_json::from_value(json).expect("config");
        let sink = ApexCentralSink::from_config("apex".into(), &config).expect("sink");
        assert_eq!(sink.api_key.expose(), "k3y");
        assert_eq!(sink.scan_action, ScanAction::Block);
        assert!(!format!("{sink:?}").contains("k3y"), "Debug never shows the key");
        let inline = serde_json::json!({"base_url": "https://a", "application_id": "x", "api_key": "k3y"});
        assert!(serde_json::from_value::<ApexCentralConfig>(inline).is_err());
        let typo = serde_json::json!({"base_url": "https://a", "application_id": "x", "api_key": {"env": "X"}, "scan_actoin": "block"});
        assert!(serde_json::from_value::<ApexCentralConfig>(typo).is_err());
        let quarantine = serde_json::json!({"base_url": "https://a", "application_id": "x", "api_key": {"env": "X"}, "scan_action": "quarantine"});
        assert!(serde_json::from_value::<ApexCentralConfig>(quarantine).is_err(), "the UDSO API takes log|block only");
    }
}
