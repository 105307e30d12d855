//! VirusTotal API v3 simulator: domain, IP address, URL and file reports, URL submission and
//! the analysis lifecycle, `x-apikey` authentication and the public-tier quota.
//!
//! It follows `shared/contracts/enrichment.md` §A: errors are always
//! `{"error":{"code","message"}}`, every success is a 200 (vt-py treats anything else as an
//! error), `*_date` attributes are integer Unix seconds, file stats carry the hyphenated extra
//! keys, and both URL identifier forms are accepted while the reply's `data.id` is always the
//! SHA-256 form. Verdicts are whatever the test seeded; an object nobody seeded is a 404.
//!
//! It must never call out: it only answers on the listener the caller bound (loopback).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tibridge_core::IndicatorKind;

/// The key the simulator accepts when the config names none (64 hex digits like a real key).
pub const DEFAULT_API_KEY: &str = "7e577e577e577e577e577e577e577e577e577e577e577e577e577e577e577e57";

/// How many engines every seeded report lists; the stats always add up to this.
const ENGINE_COUNT: u32 = 70;

/// How the simulator behaves. `Default` gives a lab that answers at once with no quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirusTotalConfig {
    /// API keys accepted in `x-apikey`; any other key is a 401 `WrongCredentialsError`.
    pub api_keys: Vec<String>,
    /// Requests per minute per key before 429 `QuotaExceededError` (the public tier is 4);
    /// `None` means unlimited.
    pub quota_per_minute: Option<u32>,
    /// Requests per UTC day per key before 429 `QuotaExceededError` (the public tier is 500).
    pub quota_per_day: Option<u32>,
    /// Polls of `GET /analyses/{id}` answered `queued` before it moves on.
    pub analysis_queued_polls: u32,
    /// Polls answered `in-progress` after the queued ones, before `completed`.
    pub analysis_in_progress_polls: u32,
    /// Reports present from the start (a demo lab; tests usually call
    /// [`VirusTotalState::set_verdict`]).
    pub seed: Vec<VtSeed>,
}

/// One report present from the start, e.g. in TOML
/// `seed = [{ kind = "domain", value = "c2.example", malicious = 12 }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtSeed {
    pub kind: IndicatorKind,
    pub value: String,
    pub malicious: u32,
    #[serde(default)]
    pub suspicious: u32,
}

impl Default for VirusTotalConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_string()],
            quota_per_minute: None,
            quota_per_day: None,
            analysis_queued_polls: 1,
            analysis_in_progress_polls: 1,
            seed: Vec::new(),
        }
    }
}

/// Why a seed was refused: the simulator only holds values VirusTotal itself would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtSeedError {
    #[error("VirusTotal has no object type for indicator kind {0} (value {1:?})")]
    UnsupportedKind(IndicatorKind, String),
    #[error("{value:?} is not a valid {kind} for a VirusTotal {what}")]
    InvalidValue { kind: IndicatorKind, value: String, what: &'static str },
}

/// The engine counts a test chose for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtVerdict {
    pub malicious: u32,
    pub suspicious: u32,
    /// Community score; negative for objects voted malicious.
    pub reputation: i64,
    /// Unix seconds of the last analysis.
    pub last_analysis_date: i64,
}

/// One seeded file: all three hashes resolve to it and its id is the SHA-256.
#[derive(Clone, Debug)]
struct FileEntry {
    md5: String,
    sha1: String,
    sha256: String,
    verdict: VtVerdict,
}

/// A URL submission and how far along its analysis is.
#[derive(Clone, Debug)]
struct Analysis {
    url: String,
    url_sha256: String,
    date: i64,
    polls: u32,
}

#[derive(Default)]
struct Inner {
    domains: HashMap<String, VtVerdict>,
    ips: HashMap<String, VtVerdict>,
    files: Vec<FileEntry>,
    /// SHA-256 of the URL → (URL, verdict).
    urls: HashMap<String, (String, VtVerdict)>,
    /// Verdicts seeded for URLs nobody has analysed yet: applied when an analysis completes.
    pending_url_verdicts: HashMap<String, VtVerdict>,
    analyses: HashMap<String, Analysis>,
    /// Per key: instants of requests in the last minute, and (UTC day, count).
    minute_window: HashMap<String, VecDeque<Instant>>,
    day_count: HashMap<String, (i64, u32)>,
}

/// Shared state of one simulated VirusTotal: seeded objects, analyses and counters.
pub struct VirusTotalState {
    config: VirusTotalConfig,
    inner: Mutex<Inner>,
    served: AtomicU64,
}

impl VirusTotalState {
    /// Builds the state and applies `config.seed`; a seed VirusTotal could not hold is
    /// logged and skipped (use [`Self::try_new`] to refuse it instead).
    pub fn new(config: VirusTotalConfig) -> Self {
        let state = Self::empty(config);
        for s in &state.config.seed {
            if let Err(e) = state.set_verdict(s.kind, &s.value, s.malicious, s.suspicious) {
                tracing::warn!(error = %e, "virustotal lab: seed skipped");
            }
        }
        state
    }

    /// Builds the state, refusing the first invalid seed with what is wrong with it.
    pub fn try_new(config: VirusTotalConfig) -> Result<Self, VtSeedError> {
        let state = Self::empty(config);
        for s in &state.config.seed {
            state.set_verdict(s.kind, &s.value, s.malicious, s.suspicious)?;
        }
        Ok(state)
    }

    fn empty(config: VirusTotalConfig) -> Self {
        Self { config, inner: Mutex::new(Inner::default()), served: AtomicU64::new(0) }
    }

    pub fn config(&self) -> &VirusTotalConfig {
        &self.config
    }

    /// A poisoned lock only means another handler panicked mid-update; the maps stay usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seeds the report for one indicator: `malicious` and `suspicious` engines out of 70.
    ///
    /// Domains and IPs become `domain`/`ip_address` objects, MD5/SHA-1/SHA-256 a `file` (the
    /// missing hashes are derived so all three resolve), URLs a `url` keyed by the SHA-256 of
    /// the exact string given.
    pub fn set_verdict(
        &self,
        kind: IndicatorKind,
        value: &str,
        malicious: u32,
        suspicious: u32,
    ) -> Result<(), VtSeedError> {
        let verdict = VtVerdict {
            malicious: malicious.min(ENGINE_COUNT),
            suspicious: suspicious.min(ENGINE_COUNT.saturating_sub(malicious)),
            reputation: if malicious > 0 { -(i64::from(malicious) * 3) } else { 0 },
            last_analysis_date: now_unix(),
        };
        self.set_full_verdict(kind, value, verdict)
    }

    /// Like [`Self::set_verdict`] with every field chosen by the caller.
    pub fn set_full_verdict(&self, kind: IndicatorKind, value: &str, verdict: VtVerdict) -> Result<(), VtSeedError> {
        let invalid = |what| VtSeedError::InvalidValue { kind, value: value.to_string(), what };
        let mut inner = self.lock();
        match kind {
            IndicatorKind::Domain => {
                let d = value.trim().trim_end_matches('.').to_ascii_lowercase();
                if d.is_empty() || d.contains(char::is_whitespace) || d.contains('/') {
                    return Err(invalid("domain"));
                }
                inner.domains.insert(d, verdict);
            }
            IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => {
                let ip: IpAddr = value.trim().parse().map_err(|_| invalid("ip_address"))?;
                inner.ips.insert(ip.to_string(), verdict);
            }
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
                let want = match kind {
                    IndicatorKind::Md5 => 32,
                    IndicatorKind::Sha1 => 40,
                    _ => 64,
                };
                let h = value.trim().to_ascii_lowercase();
                if h.len() != want || !is_hex(&h) {
                    return Err(invalid("file"));
                }
                if let Some(f) = find_file_mut(&mut inner.files, &h) {
                    f.verdict = verdict;
                } else {
                    let derive = |tag: &str, n: usize| {
                        let mut s = hex(&Sha256::digest(format!("{tag}:{h}").as_bytes()));
                        s.truncate(n);
                        s
                    };
                    let entry = FileEntry {
                        md5: if want == 32 { h.clone() } else { derive("md5", 32) },
                        sha1: if want == 40 { h.clone() } else { derive("sha1", 40) },
                        sha256: if want == 64 { h.clone() } else { derive("sha256", 64) },
                        verdict,
                    };
                    inner.files.push(entry);
                }
            }
            IndicatorKind::Url => {
                if value.is_empty() {
                    return Err(invalid("url"));
                }
                let id = url_sha256(value);
                inner.urls.insert(id, (value.to_string(), verdict));
            }
            other => return Err(VtSeedError::UnsupportedKind(other, value.to_string())),
        }
        Ok(())
    }

    /// Seeds a file with all three of its real hashes, so each resolves to the same object.
    pub fn set_file(
        &self,
        md5: &str,
        sha1: &str,
        sha256: &str,
        malicious: u32,
        suspicious: u32,
    ) -> Result<(), VtSeedError> {
        let check = |kind, v: &str, n| {
            let v = v.trim().to_ascii_lowercase();
            if v.len() == n && is_hex(&v) {
                Ok(v)
            } else {
                Err(VtSeedError::InvalidValue { kind, value: v, what: "file" })
            }
        };
        let entry = FileEntry {
            md5: check(IndicatorKind::Md5, md5, 32)?,
            sha1: check(IndicatorKind::Sha1, sha1, 40)?,
            sha256: check(IndicatorKind::Sha256, sha256, 64)?,
            verdict: VtVerdict {
                malicious: malicious.min(ENGINE_COUNT),
                suspicious: suspicious.min(ENGINE_COUNT.saturating_sub(malicious)),
                reputation: -(i64::from(malicious) * 3),
                last_analysis_date: now_unix(),
            },
        };
        let mut inner = self.lock();
        inner.files.retain(|f| f.sha256 != entry.sha256);
        inner.files.push(entry);
        Ok(())
    }

    /// Seeds the verdict a URL will get when a submitted analysis of it completes, without
    /// making its report exist before that (VirusTotal only knows URLs it has analysed).
    pub fn set_verdict_after_analysis(&self, url: &str, malicious: u32, suspicious: u32) {
        let verdict = VtVerdict {
            malicious: malicious.min(ENGINE_COUNT),
            suspicious: suspicious.min(ENGINE_COUNT.saturating_sub(malicious)),
            reputation: 0,
            last_analysis_date: 0,
        };
        self.lock().pending_url_verdicts.insert(url_sha256(url), verdict);
    }

    /// Every request the router received, including rejected ones (tests prove caching with it).
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// URLs submitted with `POST /urls`, in no particular order.
    pub fn submitted_urls(&self) -> Vec<String> {
        self.lock().analyses.values().map(|a| a.url.clone()).collect()
    }

    /// Forgets the quota windows, as if a minute and a day had passed.
    pub fn reset_quota(&self) {
        let mut inner = self.lock();
        inner.minute_window.clear();
        inner.day_count.clear();
    }
}

/// The VirusTotal v3 routes under `/api/v3`, with auth, quota and counting applied.
pub fn router(state: Arc<VirusTotalState>) -> Router {
    Router::new()
        .route("/api/v3/domains/{domain}", get(get_domain))
        .route("/api/v3/ip_addresses/{ip}", get(get_ip))
        .route("/api/v3/files/{hash}", get(get_file))
        .route("/api/v3/urls/{id}", get(get_url))
        .route("/api/v3/urls", post(post_url))
        .route("/api/v3/analyses/{id}", get(get_analysis))
        .fallback(not_found_path)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// The SHA-256 form of a URL identifier, as VirusTotal returns it in `data.id`.
pub fn url_sha256(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))
}

/// The unpadded URL-safe base64 form of a URL identifier (what `vt.url_id()` produces).
pub fn url_base64_id(url: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url.as_bytes())
}

fn vt_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

async fn not_found_path(req: Request) -> Response {
    vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("Resource {:?} not found", req.uri().path()))
}

/// Counts, authenticates and applies the quota before any handler runs.
async fn gate(State(state): State<Arc<VirusTotalState>>, req: Request, next: Next) -> Response {
    state.served.fetch_add(1, Ordering::Relaxed);
    let key = match req.headers().get("x-apikey").map(|v| v.to_str()) {
        None => return vt_error(StatusCode::UNAUTHORIZED, "AuthenticationRequiredError", "X-Apikey header is missing"),
        Some(Ok(k)) if state.config.api_keys.iter().any(|a| a == k) => k.to_string(),
        Some(_) => return vt_error(StatusCode::UNAUTHORIZED, "WrongCredentialsError", "Wrong API key"),
    };
    if let Some(resp) = charge_quota(&state, &key) {
        return resp;
    }
    next.run(req).await
}

fn charge_quota(state: &VirusTotalState, key: &str) -> Option<Response> {
    let mut inner = state.lock();
    let now = Instant::now();
    if let Some(limit) = state.config.quota_per_minute {
        let window = inner.minute_window.entry(key.to_string()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return Some(vt_error(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceededError",
                format!("Quota exceeded: {limit} requests per minute allowed for this API key"),
            ));
        }
        window.push_back(now);
    }
    if let Some(limit) = state.config.quota_per_day {
        let day = now_unix().div_euclid(86_400);
        let entry = inner.day_count.entry(key.to_string()).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if entry.1 >= limit {
            return Some(vt_error(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceededError",
                format!("Quota exceeded: {limit} requests per day allowed for this API key"),
            ));
        }
        entry.1 += 1;
    }
    None
}

/// The scheme and authority clients used, so `links.self` points back at this listener.
fn base(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}/api/v3")
}

async fn get_domain(
    State(state): State<Arc<VirusTotalState>>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Response {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let verdict = state.lock().domains.get(&d).cloned();
    match verdict {
        Some(v) => {
            let mut attrs = common_attributes(&v, false);
            attrs.insert("last_dns_records".into(), json!([]));
            attrs.insert("whois".into(), json!(""));
            attrs.insert("tld".into(), json!(d.rsplit('.').next().unwrap_or("")));
            object_response(&headers, "domain", "domains", &d, attrs)
        }
        None => vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("Domain \"{domain}\" not found")),
    }
}

async fn get_ip(State(state): State<Arc<VirusTotalState>>, headers: HeaderMap, Path(ip): Path<String>) -> Response {
    let Ok(parsed) = ip.parse::<IpAddr>() else {
        return vt_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentError",
            format!("\"{ip}\" is not a valid IP address"),
        );
    };
    let id = parsed.to_string();
    let verdict = state.lock().ips.get(&id).cloned();
    match verdict {
        Some(v) => {
            let mut attrs = common_attributes(&v, false);
            attrs.insert("asn".into(), json!(64_512));
            attrs.insert("as_owner".into(), json!("Lab Private AS"));
            attrs.insert("country".into(), json!("ZZ"));
            attrs.insert("network".into(), json!(format!("{id}/32")));
            object_response(&headers, "ip_address", "ip_addresses", &id, attrs)
        }
        None => vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("IP address \"{ip}\" not found")),
    }
}

async fn get_file(State(state): State<Arc<VirusTotalState>>, headers: HeaderMap, Path(hash): Path<String>) -> Response {
    let h = hash.to_ascii_lowercase();
    if !matches!(h.len(), 32 | 40 | 64) || !is_hex(&h) {
        return vt_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentError",
            format!("\"{hash}\" is not a valid file hash (MD5, SHA-1 or SHA-256)"),
        );
    }
    let found = state.lock().files.iter().find(|f| f.md5 == h || f.sha1 == h || f.sha256 == h).cloned();
    match found {
        Some(f) => {
            let mut attrs = common_attributes(&f.verdict, true);
            attrs.insert("md5".into(), json!(f.md5));
            attrs.insert("sha1".into(), json!(f.sha1));
            attrs.insert("sha256".into(), json!(f.sha256));
            attrs.insert("size".into(), json!(4096));
            attrs.insert("type_description".into(), json!("Win32 EXE"));
            attrs.insert("first_submission_date".into(), json!(f.verdict.last_analysis_date));
            object_response(&headers, "file", "files", &f.sha256, attrs)
        }
        None => vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("File \"{hash}\" not found")),
    }
}

/// Turns either URL identifier form into the SHA-256 form, or `None` if it is neither.
fn resolve_url_id(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    if lower.len() == 64 && is_hex(&lower) {
        return Some(lower);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id.trim_end_matches('=')).ok()?;
    let url = String::from_utf8(bytes).ok()?;
    Some(url_sha256(&url))
}

async fn get_url(State(state): State<Arc<VirusTotalState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let not_found = || vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("URL \"{id}\" not found"));
    let Some(sha) = resolve_url_id(&id) else {
        return not_found();
    };
    let found = state.lock().urls.get(&sha).cloned();
    match found {
        Some((url, v)) => {
            let mut attrs = common_attributes(&v, false);
            attrs.insert("url".into(), json!(url));
            attrs.insert("last_final_url".into(), json!(url));
            attrs.insert("title".into(), json!(""));
            attrs.insert("first_submission_date".into(), json!(v.last_analysis_date));
            object_response(&headers, "url", "urls", &sha, attrs)
        }
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct UrlForm {
    url: Option<String>,
}

async fn post_url(
    State(state): State<Arc<VirusTotalState>>,
    headers: HeaderMap,
    form: Result<Form<UrlForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let url = match form {
        Ok(Form(UrlForm { url: Some(u) })) if !u.trim().is_empty() => u,
        Ok(_) => return vt_error(StatusCode::BAD_REQUEST, "BadRequestError", "Missing required field \"url\""),
        Err(e) => return vt_error(StatusCode::BAD_REQUEST, "BadRequestError", format!("Invalid form body: {e}")),
    };
    let sha = url_sha256(&url);
    let date = now_unix();
    let id = format!("u-{sha}-{date}");
    let mut inner = state.lock();
    // A resubmission within the same second reuses the analysis, like VirusTotal's own ids.
    inner.analyses.entry(id.clone()).or_insert(Analysis { url, url_sha256: sha, date, polls: 0 });
    drop(inner);
    let link = format!("{}/analyses/{id}", base(&headers));
    (StatusCode::OK, Json(json!({"data": {"type": "analysis", "id": id, "links": {"self": link}}}))).into_response()
}

async fn get_analysis(
    State(state): State<Arc<VirusTotalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let cfg = &state.config;
    let mut inner = state.lock();
    let Some(a) = inner.analyses.get_mut(&id) else {
        drop(inner);
        return vt_error(StatusCode::NOT_FOUND, "NotFoundError", format!("Analysis \"{id}\" not found"));
    };
    a.polls = a.polls.saturating_add(1);
    let a = a.clone();
    let status = if a.polls <= cfg.analysis_queued_polls {
        "queued"
    } else if a.polls <= cfg.analysis_queued_polls.saturating_add(cfg.analysis_in_progress_polls) {
        "in-progress"
    } else {
        "completed"
    };
    let mut stats = json!({});
    let mut results = json!({});
    if status == "completed" {
        let pending = inner.pending_url_verdicts.remove(&a.url_sha256);
        let entry = inner.urls.entry(a.url_sha256.clone()).or_insert_with(|| {
            let v = VtVerdict { malicious: 0, suspicious: 0, reputation: 0, last_analysis_date: a.date };
            (a.url.clone(), v)
        });
        if let Some(mut p) = pending {
            p.last_analysis_date = a.date;
            entry.1 = p;
        }
        entry.1.last_analysis_date = entry.1.last_analysis_date.max(a.date);
        stats = stats_json(&entry.1, false);
        results = results_json(&entry.1, false);
    }
    drop(inner);
    let link = format!("{}/analyses/{id}", base(&headers));
    let body = json!({"data": {"type": "analysis", "id": id, "links": {"self": link},
        "attributes": {"date": a.date, "status": status, "stats": stats, "results": results},
        "meta": {"url_info": {"id": a.url_sha256, "url": a.url}}}});
    (StatusCode::OK, Json(body)).into_response()
}

fn object_response(headers: &HeaderMap, kind: &str, collection: &str, id: &str, attrs: Map<String, Value>) -> Response {
    let link = format!("{}/{collection}/{id}", base(headers));
    let body = json!({"data": {"id": id, "type": kind, "links": {"self": link}, "attributes": attrs}});
    (StatusCode::OK, Json(body)).into_response()
}

/// The spread of the engines that did not flag the object: mostly harmless, some undetected.
fn split_rest(v: &VtVerdict) -> (u32, u32) {
    let rest = ENGINE_COUNT.saturating_sub(v.malicious).saturating_sub(v.suspicious);
    let undetected = rest.min(10);
    (rest - undetected, undetected)
}

/// The verdict with its counts clamped so that they never exceed the engines listed.
fn clamped(v: &VtVerdict) -> VtVerdict {
    let malicious = v.malicious.min(ENGINE_COUNT);
    VtVerdict { malicious, suspicious: v.suspicious.min(ENGINE_COUNT - malicious), ..v.clone() }
}

fn stats_json(v: &VtVerdict, file: bool) -> Value {
    let v = &clamped(v);
    let (harmless, undetected) = split_rest(v);
    let mut s = json!({"harmless": harmless, "malicious": v.malicious, "suspicious": v.suspicious,
        "undetected": undetected, "timeout": 0});
    if file {
        if let Some(m) = s.as_object_mut() {
            m.insert("confirmed-timeout".into(), json!(0));
            m.insert("failure".into(), json!(0));
            m.insert("type-unsupported".into(), json!(0));
        }
    }
    s
}

fn results_json(v: &VtVerdict, file: bool) -> Value {
    let v = &clamped(v);
    let (harmless, _) = split_rest(v);
    let mut out = Map::new();
    for i in 0..ENGINE_COUNT {
        let (category, result) = if i < v.malicious {
            ("malicious", json!("malware"))
        } else if i < v.malicious + v.suspicious {
            ("suspicious", json!("suspicious"))
        } else if i < v.malicious + v.suspicious + harmless {
            ("harmless", json!("clean"))
        } else {
            ("undetected", Value::Null)
        };
        let name = format!("LabEngine{:02}", i + 1);
        let mut e = json!({"category": category, "engine_name": name, "method": "blacklist", "result": result});
        if file {
            if let Some(m) = e.as_object_mut() {
                m.insert("engine_version".into(), json!("1.0.0"));
                m.insert("engine_update".into(), json!("20260101"));
            }
        }
        out.insert(name, e);
    }
    Value::Object(out)
}

fn common_attributes(v: &VtVerdict, file: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("last_analysis_stats".into(), stats_json(v, file));
    m.insert("last_analysis_results".into(), results_json(v, file));
    m.insert("last_analysis_date".into(), json!(v.last_analysis_date));
    m.insert("last_modification_date".into(), json!(v.last_analysis_date));
    m.insert("reputation".into(), json!(v.reputation));
    let category = if v.malicious > 0 { "malicious web sites" } else { "uncategorized" };
    m.insert("categories".into(), json!({"Lab ThreatSeeker": category}));
    m.insert("total_votes".into(), json!({"harmless": 0, "malicious": v.malicious.min(3)}));
    m.insert("tags".into(), json!([]));
    m
}

fn find_file_mut<'a>(files: &'a mut [FileEntry], h: &str) -> Option<&'a mut FileEntry> {
    files.iter_mut().find(|f| f.md5 == h || f.sha1 == h || f.sha256 == h)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_id_forms_resolve_to_the_sha256_form() {
        // Examples from the VirusTotal docs "URL identifiers", quoted in enrichment.md §A.3.
        assert_eq!(url_base64_id("http://example.com/"), "aHR0cDovL2V4YW1wbGUuY29tLw");
        assert_eq!(url_base64_id("https://example.com/?a=~~~"), "aHR0cHM6Ly9leGFtcGxlLmNvbS8_YT1-fn4");
        let sha = url_sha256("http://example.com/");
        assert_eq!(resolve_url_id("aHR0cDovL2V4YW1wbGUuY29tLw").as_deref(), Some(sha.as_str()));
        assert_eq!(resolve_url_id(&sha.to_uppercase()).as_deref(), Some(sha.as_str()));
        assert_eq!(resolve_url_id("aHR0cDovL2V4YW1wbGUuY29tLw==").as_deref(), Some(sha.as_str()));
        assert_eq!(resolve_url_id("!!not base64!!"), None);
    }

    #[test]
    fn seeding_a_hash_makes_all_three_hashes_resolve() {
        let s = VirusTotalState::new(VirusTotalConfig::default());
        let md5 = "44d88612fea8a8f36de82e1278abb02f";
        s.set_verdict(IndicatorKind::Md5, md5, 60, 2).unwrap();
        let inner = s.lock();
        let f = inner.files.iter().find(|f| f.md5 == md5).unwrap();
        assert_eq!(f.sha256.len(), 64);
        assert_eq!(f.sha1.len(), 40);
        assert_eq!(f.verdict.malicious, 60);
    }

    #[test]
    fn bad_seeds_are_refused_with_the_value() {
        let s = VirusTotalState::new(VirusTotalConfig::default());
        let e = s.set_verdict(IndicatorKind::Sha1, "xyz", 1, 0).unwrap_err();
        assert!(e.to_string().contains("xyz"));
        assert!(s.set_verdict(IndicatorKind::Email, "a@b.example", 1, 0).is_err());
        assert!(s.set_verdict(IndicatorKind::Ipv4, "300.1.1.1", 1, 0).is_err());
    }

    #[test]
    fn stats_always_add_up_to_the_engine_count_and_files_get_hyphenated_keys() {
        let v = VtVerdict { malicious: 65, suspicious: 20, reputation: 0, last_analysis_date: 1 };
        let s = stats_json(&v, true);
        let total: u64 = ["harmless", "malicious", "suspicious", "undetected"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_u64))
            .sum();
        assert!(total <= u64::from(ENGINE_COUNT));
        assert!(s.get("confirmed-timeout").is_some());
        assert!(s.get("type-unsupported").is_some());
        assert_eq!(results_json(&v, false).as_object().map(|m| m.len()), Some(ENGINE_COUNT as usize));
    }
}
