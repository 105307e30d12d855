//! Intezer Analyze (API v2-0) simulator: access tokens that expire, URL analyses that stay
//! pending before they finish, the offline-URL refusal, hash analyses with their verdicts,
//! and the submission quota.
//!
//! It follows `shared/contracts/enrichment.md` §B and §C: the token endpoint answers
//! `{"result","expire_at"}`, every other call needs a live Bearer token (401 otherwise, so the
//! SDK's refresh-and-retry path is exercised), GETs may carry a JSON body, the original
//! script's double slash (`/api/v2-0//url/<id>`) is served, and an offline URL is refused at
//! submission with the exact 400 body and `result.is_url_offline`.
//!
//! It must never call out or fetch the URLs it is asked to analyse: verdicts are seeded.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The API key the simulator accepts when the config names none.
pub const DEFAULT_API_KEY: &str = "lab-intezer-api-key";

/// The exact offline message of enrichment.md §B.3 (clients must key on `is_url_offline`).
pub const OFFLINE_MESSAGE: &str =
    "The URL you entered seems to be offline. Analysis of offline URLs is currently unsupported.";

/// How the simulator behaves. `Default` gives a lab with one-hour tokens, two pending polls per
/// URL analysis, one per hash analysis, and no quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntezerConfig {
    /// The API key `get-access-token` accepts; any other is a 401.
    pub api_key: String,
    /// Lifetime of an access token in seconds (`expire_at` = issue time + this).
    pub token_ttl_secs: u64,
    /// Polls of `GET /url/<id>` answered 202 (first `queued`, then `in_progress`) before 200.
    pub url_pending_polls: u32,
    /// Seconds a URL analysis also stays pending after submission, however often it is polled
    /// (e.g. 30 makes the original script's single poll after a fixed 20 s sleep miss).
    pub url_pending_secs: u64,
    /// Polls of `GET /analyses/<id>` answered 202 before 200.
    pub hash_pending_polls: u32,
    /// Submissions (URL and hash analyses) allowed before 403 insufficient quota; `None` = no cap.
    pub analysis_quota: Option<u32>,
    /// URL verdicts present from the start, e.g. `"http://c2.example/" = "malicious"`.
    pub url_verdicts: BTreeMap<String, UrlVerdict>,
    /// Hash verdicts present from the start, keyed by MD5, SHA-1 or SHA-256.
    pub hash_verdicts: BTreeMap<String, HashVerdict>,
}

impl Default for IntezerConfig {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.to_string(),
            token_ttl_secs: 3600,
            url_pending_polls: 2,
            url_pending_secs: 0,
            hash_pending_polls: 1,
            analysis_quota: None,
            url_verdicts: BTreeMap::new(),
            hash_verdicts: BTreeMap::new(),
        }
    }
}

/// The outcome a test wants for a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlVerdict {
    Malicious,
    Suspicious,
    NoThreats,
    /// Refused at submission with the offline 400.
    Offline,
    /// The analysis ends with 200 `{"status":"failed"}`.
    Failed,
}

/// The outcome a test wants for a file hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashVerdict {
    /// One of `malicious | suspicious | trusted | neutral | no_threats | unknown | not_supported`.
    pub verdict: String,
    #[serde(default)]
    pub sub_verdict: String,
    #[serde(default)]
    pub family_name: Option<String>,
}

impl HashVerdict {
    pub fn new(verdict: &str, sub_verdict: &str, family_name: Option<&str>) -> Self {
        Self {
            verdict: verdict.to_string(),
            sub_verdict: sub_verdict.to_string(),
            family_name: family_name.map(str::to_string),
        }
    }
}

#[derive(Clone, Debug)]
struct UrlAnalysis {
    url: String,
    verdict: UrlVerdict,
    polls: u32,
    time: OffsetDateTime,
}

#[derive(Clone, Debug)]
struct FileAnalysis {
    hash: String,
    verdict: HashVerdict,
    polls: u32,
    time: OffsetDateTime,
}

#[derive(Default)]
struct Inner {
    /// token → expiry (Unix seconds).
    tokens: HashMap<String, f64>,
    url_verdicts: HashMap<String, UrlVerdict>,
    hash_verdicts: HashMap<String, HashVerdict>,
    url_analyses: HashMap<String, UrlAnalysis>,
    file_analyses: HashMap<String, FileAnalysis>,
    submissions: u32,
    /// Analyses deleted or expired: answered 410 Gone.
    gone: std::collections::HashSet<String>,
}

/// Shared state of one simulated Intezer Analyze.
pub struct IntezerState {
    config: IntezerConfig,
    inner: Mutex<Inner>,
    served: AtomicU64,
}

impl IntezerState {
    /// Builds the state with the verdicts the config seeds.
    pub fn new(config: IntezerConfig) -> Self {
        let inner = Inner {
            url_verdicts: config.url_verdicts.clone().into_iter().collect(),
            hash_verdicts: config.hash_verdicts.iter().map(|(h, v)| (h.to_ascii_lowercase(), v.clone())).collect(),
            ..Inner::default()
        };
        Self { config, inner: Mutex::new(inner), served: AtomicU64::new(0) }
    }

    pub fn config(&self) -> &IntezerConfig {
        &self.config
    }

    /// A poisoned lock only means another handler panicked mid-update; the maps stay usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seeds the verdict of a URL, matched on the exact string submitted. Unseeded URLs end
    /// `no_threats`.
    pub fn set_url_verdict(&self, url: &str, verdict: UrlVerdict) {
        self.lock().url_verdicts.insert(url.to_string(), verdict);
    }

    /// Seeds the verdict of a file; any of its hashes (case-insensitive) finds it. Unseeded
    /// hashes are 404 "File not found".
    pub fn set_hash_verdict(&self, hash: &str, verdict: HashVerdict) {
        self.lock().hash_verdicts.insert(hash.to_ascii_lowercase(), verdict);
    }

    /// Every request the router received, including rejected ones.
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// URL and hash analyses submitted and accepted so far (what the quota counts).
    pub fn submissions(&self) -> u32 {
        self.lock().submissions
    }

    /// URLs submitted for analysis, in no particular order.
    pub fn submitted_urls(&self) -> Vec<String> {
        self.lock().url_analyses.values().map(|a| a.url.clone()).collect()
    }

    /// Deletes every analysis so far, as Intezer does with expired ones: polls answer 410 Gone.
    pub fn expire_analyses(&self) {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.url_analyses.keys().chain(inner.file_analyses.keys()).cloned().collect();
        for id in ids {
            inner.url_analyses.remove(&id);
            inner.file_analyses.remove(&id);
            inner.gone.insert(id);
        }
    }

    /// Makes every issued token expired, so the next call gets a 401 and must renew.
    pub fn expire_all_tokens(&self) {
        for exp in self.lock().tokens.values_mut() {
            *exp = 0.0;
        }
    }
}

/// The Intezer routes under `/api/v2-0` (and `/api/is-available`), with token checks applied.
pub fn router(state: Arc<IntezerState>) -> Router {
    let authed = Router::new()
        .route("/api/v2-0/url", post(post_url))
        .route("/api/v2-0/url/{id}", get(get_url_analysis))
        .route("/api/v2-0//url/{id}", get(get_url_analysis))
        .route("/api/v2-0/analyze-by-hash", post(post_hash))
        .route("/api/v2-0/analyses/{id}", get(get_file_analysis))
        .route("/api/v2-0/files/{hash}", get(get_latest_for_hash))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/api/v2-0/get-access-token", post(get_access_token))
        .route("/api/v2-0/is-available", get(is_available))
        .route("/api/is-available", get(is_available))
        .merge(authed)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not found") })
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Largest request body read (the real API takes files elsewhere; JSON here is small).
const MAX_BODY: usize = 1024 * 1024;

/// Counts the request and reads its whole body before anything answers. intezer-sdk sends a
/// JSON body on every GET (contract B.6); a handler or the token check answering without
/// reading it makes hyper close the connection, and the SDK's next pooled request then fails
/// with "Remote end closed connection without response".
async fn count(State(state): State<Arc<IntezerState>>, req: Request, next: Next) -> Response {
    state.served.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "Request too large"),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn now_secs() -> f64 {
    let now = OffsetDateTime::now_utc();
    now.unix_timestamp() as f64 + f64::from(now.millisecond()) / 1000.0
}

async fn require_token(State(state): State<Arc<IntezerState>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let Some(token) = token else {
        return error(StatusCode::UNAUTHORIZED, "Missing access token");
    };
    let expiry = state.lock().tokens.get(&token).copied();
    match expiry {
        Some(exp) if exp > now_secs() => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "Access token expired"),
        None => error(StatusCode::UNAUTHORIZED, "Invalid access token"),
    }
}

async fn is_available() -> Response {
    Json(json!({"is_available": true})).into_response()
}

async fn get_access_token(
    State(state): State<Arc<IntezerState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Body must be JSON with an api_key");
    };
    match body.get("api_key").and_then(Value::as_str) {
        Some(k) if k == state.config.api_key => {
            let token = new_token();
            let expire_at = now_secs() + state.config.token_ttl_secs as f64;
            state.lock().tokens.insert(token.clone(), expire_at);
            Json(json!({"result": token, "expire_at": expire_at})).into_response()
        }
        Some(_) => error(StatusCode::UNAUTHORIZED, "Invalid api key"),
        None => error(StatusCode::BAD_REQUEST, "Missing api_key"),
    }
}

/// A JWT-shaped opaque token: three base64url segments, unique per issue.
fn new_token() -> String {
    use base64::Engine as _;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let id = uuid::Uuid::new_v4();
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64(format!(r#"{{"sub":"lab","jti":"{id}"}}"#).as_bytes());
    let sig = b64(&Sha256::digest(id.as_bytes()));
    format!("{header}.{claims}.{sig}")
}

/// A URL Intezer would try to scan: http(s) (or no scheme), a host with a dot, no whitespace.
fn is_valid_url(url: &str) -> bool {
    let u = url.trim();
    if u.is_empty() || u.len() > 2048 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let lower = u.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if lower.contains("://") {
        return false;
    } else {
        &lower
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') { host } else { host.split(':').next().unwrap_or("") };
    host.starts_with('[')
        || (host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

fn quota_exhausted(state: &IntezerState, inner: &Inner) -> bool {
    state.config.analysis_quota.is_some_and(|q| inner.submissions >= q)
}

async fn post_url(State(state): State<Arc<IntezerState>>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Body must be JSON with a url");
    };
    let Some(url) = body.get("url").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "Invalid url");
    };
    if !is_valid_url(url) {
        return error(StatusCode::BAD_REQUEST, "Invalid url");
    }
    let mut inner = state.lock();
    if quota_exhausted(&state, &inner) {
        return error(StatusCode::FORBIDDEN, "Insufficient quota");
    }
    let verdict = inner.url_verdicts.get(url).copied().unwrap_or(UrlVerdict::NoThreats);
    if verdict == UrlVerdict::Offline {
        let body = json!({"error": OFFLINE_MESSAGE, "result": {"is_url_offline": true}});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    inner.submissions += 1;
    let id = uuid::Uuid::new_v4().to_string();
    let analysis = UrlAnalysis { url: url.to_string(), verdict, polls: 0, time: OffsetDateTime::now_utc() };
    inner.url_analyses.insert(id.clone(), analysis);
    (StatusCode::CREATED, Json(json!({"result_url": format!("/url/{id}")}))).into_response()
}

fn rfc1123(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&fmt).unwrap_or_default()
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    host.split(':').next().unwrap_or("").to_ascii_lowercase()
}

/// A documentation-range address (RFC 5737) derived from the host, so it is stable per URL.
fn lab_ip(host: &str) -> String {
    let d = Sha256::digest(host.as_bytes());
    format!("203.0.113.{}", d.first().copied().unwrap_or(1).max(1))
}

fn url_result(id: &str, a: &UrlAnalysis, headers: &HeaderMap) -> Value {
    let host = host_of(&a.url);
    let scanned = if a.url.contains("://") { a.url.clone() } else { format!("http://{}", a.url) };
    let (title, description, verdict_type, verdict_name, risk) = match a.verdict {
        UrlVerdict::Malicious => ("Malicious URL", "This URL was found to be malicious", "malicious", "malicious", 100),
        UrlVerdict::Suspicious => {
            ("Suspicious URL", "Suspicious activity was detected for this URL", "suspicious", "suspicious", 50)
        }
        _ => ("No Threats", "No suspicious activity was detected for this URL", "no_threats", "no_threats", 0),
    };
    let origin = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    json!({
        "analysis_id": id,
        "analysis_time": rfc1123(a.time),
        "analysis_url": format!("http://{origin}/url/{id}"),
        "submitted_url": a.url,
        "scanned_url": scanned,
        "ip": lab_ip(&host),
        "api_void_risk_score": risk,
        "redirect_chain": [{"response_status": 200, "url": scanned}],
        "indicators": [{"classification": "informative", "text": "Valid https"}],
        "domain_info": {"creation_date": "2020-01-01 00:00:00.000000", "domain_name": host, "registrar": "Lab Registrar"},
        "summary": {"title": title, "description": description, "verdict_type": verdict_type,
                    "verdict_name": verdict_name, "main_connection_gene_count": 0,
                    "main_connection_gene_percentage": 0.0},
    })
}

async fn get_url_analysis(
    State(state): State<Arc<IntezerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let pending = state.config.url_pending_polls;
    let min_age = time::Duration::seconds(i64::try_from(state.config.url_pending_secs).unwrap_or(i64::MAX));
    let mut inner = state.lock();
    if inner.gone.contains(&id) {
        return error(StatusCode::GONE, "Analysis expired");
    }
    let Some(a) = inner.url_analyses.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Analysis not found");
    };
    a.polls = a.polls.saturating_add(1);
    let result_url = format!("/url/{id}");
    let too_young = OffsetDateTime::now_utc() - a.time < min_age;
    if a.polls <= pending || too_young {
        let status = if a.polls == 1 { "queued" } else { "in_progress" };
        return (StatusCode::ACCEPTED, Json(json!({"status": status, "result_url": result_url}))).into_response();
    }
    if a.verdict == UrlVerdict::Failed {
        return Json(json!({"status": "failed", "result_url": result_url})).into_response();
    }
    let body = json!({"status": "succeeded", "result_url": result_url, "result": url_result(&id, a, &headers)});
    Json(body).into_response()
}

fn hash_kind_ok(h: &str) -> bool {
    matches!(h.len(), 32 | 40 | 64) && h.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn post_hash(State(state): State<Arc<IntezerState>>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "Body must be JSON with a hash");
    };
    let Some(hash) = body.get("hash").and_then(Value::as_str).map(str::to_ascii_lowercase) else {
        return error(StatusCode::BAD_REQUEST, "Missing hash");
    };
    if !hash_kind_ok(&hash) {
        return error(StatusCode::BAD_REQUEST, "Invalid hash");
    }
    let pending = state.config.hash_pending_polls;
    let mut inner = state.lock();
    let Some(verdict) = inner.hash_verdicts.get(&hash).cloned() else {
        return error(StatusCode::NOT_FOUND, "File not found");
    };
    // An analysis is running until a poll of it has answered 200 (polls > pending).
    let running = inner.file_analyses.iter().find(|(_, a)| a.hash == hash && a.polls <= pending);
    if let Some((rid, _)) = running {
        let body = json!({"result_url": format!("/analyses/{rid}"), "result": {"analysis_id": rid},
                          "error": "Analysis already running"});
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    if quota_exhausted(&state, &inner) {
        return error(StatusCode::FORBIDDEN, "Insufficient quota");
    }
    inner.submissions += 1;
    let id = uuid::Uuid::new_v4().to_string();
    inner.file_analyses.insert(id.clone(), FileAnalysis { hash, verdict, polls: 0, time: OffsetDateTime::now_utc() });
    (StatusCode::CREATED, Json(json!({"result_url": format!("/analyses/{id}")}))).into_response()
}

fn file_result(id: &str, a: &FileAnalysis, headers: &HeaderMap) -> Value {
    let origin = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let sha256 = if a.hash.len() == 64 {
        a.hash.clone()
    } else {
        Sha256::digest(a.hash.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    json!({
        "analysis_id": id,
        "analysis_time": rfc1123(a.time),
        "analysis_url": format!("http://{origin}/analyses/{id}"),
        "sha256": sha256,
        "verdict": a.verdict.verdict,
        "sub_verdict": a.verdict.sub_verdict,
        "family_name": a.verdict.family_name,
        "family_id": a.verdict.family_name.as_ref().map(|f| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, f.as_bytes()).to_string()),
        "is_private": false,
    })
}

async fn get_file_analysis(
    State(state): State<Arc<IntezerState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let pending = state.config.hash_pending_polls;
    let mut inner = state.lock();
    if inner.gone.contains(&id) {
        return error(StatusCode::GONE, "Analysis expired");
    }
    let Some(a) = inner.file_analyses.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Analysis not found");
    };
    a.polls = a.polls.saturating_add(1);
    let result_url = format!("/analyses/{id}");
    if a.polls <= pending {
        let status = if a.polls == 1 { "queued" } else { "in_progress" };
        return (StatusCode::ACCEPTED, Json(json!({"status": status, "result_url": result_url}))).into_response();
    }
    Json(json!({"status": "succeeded", "result_url": result_url, "result": file_result(&id, a, &headers)}))
        .into_response()
}

async fn get_latest_for_hash(
    State(state): State<Arc<IntezerState>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    let hash = hash.to_ascii_lowercase();
    let pending = state.config.hash_pending_polls;
    let inner = state.lock();
    let latest =
        inner.file_analyses.iter().filter(|(_, a)| a.hash == hash && a.polls > pending).max_by_key(|(_, a)| a.time);
    match latest {
        Some((id, a)) => Json(json!({"status": "succeeded", "result_url": format!("/analyses/{id}"),
                                     "result": file_result(id, a, &headers)}))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "Analysis not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_validity_matches_what_a_scanner_would_try() {
        assert!(is_valid_url("http://evil.example/path?q=1"));
        assert!(is_valid_url("https://user@evil.example:8443/"));
        assert!(is_valid_url("evil.example"));
        assert!(!is_valid_url("not a url"));
        assert!(!is_valid_url("ftp://evil.example"));
        assert!(!is_valid_url("http://nodot/"));
        assert!(!is_valid_url(""));
    }

    #[test]
    fn analysis_time_is_rfc1123_gmt() {
        let t = OffsetDateTime::from_unix_timestamp(1_564_911_496).unwrap();
        assert_eq!(rfc1123(t), "Sun, 04 Aug 2019 09:38:16 GMT");
    }

    #[test]
    fn tokens_look_like_jwts_and_are_unique() {
        let a = new_token();
        assert_eq!(a.split('.').count(), 3);
        assert_ne!(a, new_token());
    }
}
