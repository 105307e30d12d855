//! Apex Central simulator: the User-Defined Suspicious Object (UDSO) API of contract §2, behind
//! the JWT check of §2.2.
//!
//! Every request must carry `Authorization: Bearer <JWT>` signed HS256/384/512 with the API key,
//! for this app id, version `V1`, an `iat` within the configured time-out, and a `checksum`
//! over exactly what arrived (method, lower-cased path and query, `api*` headers, body bytes).
//! A failure is answered 401 with the Data/Meta envelope and the contract's error code. This
//! simulator must never accept a token whose checksum was computed over anything but the bytes
//! on the wire: that is the bug it exists to catch.
//!
//! Choices where the contract is silent (documented so clients and tests can rely on them):
//! - a re-PUT of an existing (type, content) — content compared case-insensitively — updates
//!   its notes, scan action and expiry and does not count against capacity;
//! - list full (the configured capacity) is HTTP 200 with `Meta.Result` 0 and `ErrorCode`
//!   −1101, which is why clients must read `Meta.Result` even on 200;
//! - DELETE of an absent object is HTTP 200 with `Meta.Result` 0 and `ErrorCode` −21;
//! - invalid parameters are HTTP 400 with `ErrorCode` −21, naming the parameter;
//! - canonical headers (UNCONFIRMED format) are `lowercase(name):trimmed value` of every
//!   header whose name starts with `api`, concatenated in arrival order; clients send none.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Result codes of the Automation API (contract §2.4).
pub mod codes {
    pub const OK: i32 = 1;
    pub const NO_TOKEN: i32 = -2;
    pub const MALFORMED: i32 = -3;
    pub const BAD_VERSION: i32 = -4;
    pub const BAD_APP_ID: i32 = -5;
    pub const EXPIRED: i32 = -6;
    pub const BAD_SIGNATURE: i32 = -7;
    pub const BAD_CHECKSUM: i32 = -8;
    pub const INVALID_INPUT: i32 = -21;
    pub const UNSUPPORTED_METHOD: i32 = -50;
    pub const SO_MAXIMUM_EXCEEDED: i32 = -1101;
}

/// Settings of the simulated Apex Central.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApexConfig {
    /// Application ID clients must put in `appid`.
    pub app_id: String,
    /// API key: the HMAC secret of the JWT.
    pub api_key: String,
    /// How many UDSOs the list holds before −1101.
    pub capacity: usize,
    /// The app's communication time-out: tokens whose `iat` is further from now are expired.
    pub token_timeout_secs: u64,
}

impl Default for ApexConfig {
    fn default() -> Self {
        ApexConfig {
            app_id: "2D7A3E7B-1F2C-4C3A-9E43-5A1D4C6B7E80".into(),
            api_key: "lab-apex-api-key-0123456789".into(),
            capacity: 10_000,
            token_timeout_secs: 300,
        }
    }
}

/// One User-Defined Suspicious Object as listed by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Udso {
    #[serde(rename = "type")]
    pub udso_type: String,
    pub content: String,
    pub notes: String,
    pub scan_action: String,
    /// Zone-less `YYYY-MM-DDTHH:MM:SS`, as Apex lists it; `None` = never expires.
    pub expiration_utc_date: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    config: ApexConfig,
    udso: Vec<Udso>,
    /// Error codes answered, in order (auth and validation failures and −1101).
    errors: Vec<i32>,
    requests: u64,
}

/// Shared state of the Apex Central simulator.
#[derive(Debug, Default)]
pub struct ApexState {
    inner: RwLock<Inner>,
}

impl ApexState {
    pub fn new(config: ApexConfig) -> Arc<ApexState> {
        Arc::new(ApexState { inner: RwLock::new(Inner { config, ..Inner::default() }) })
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> ApexConfig {
        self.read().config.clone()
    }

    pub fn app_id(&self) -> String {
        self.read().config.app_id.clone()
    }

    pub fn api_key(&self) -> String {
        self.read().config.api_key.clone()
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.write().config.capacity = capacity;
    }

    pub fn set_token_timeout(&self, timeout: Duration) {
        self.write().config.token_timeout_secs = timeout.as_secs();
    }

    /// Every UDSO in the list, in insertion order.
    pub fn udso(&self) -> Vec<Udso> {
        self.read().udso.clone()
    }

    /// Put objects in the list directly (bypassing capacity), e.g. ones tibridge did not add.
    pub fn seed_udso(&self, items: impl IntoIterator<Item = Udso>) {
        self.write().udso.extend(items);
    }

    /// Error codes answered so far, oldest first.
    pub fn errors(&self) -> Vec<i32> {
        self.read().errors.clone()
    }

    /// Requests received (accepted or not).
    pub fn request_count(&self) -> u64 {
        self.read().requests
    }
}

/// The UDSO routes (any case of `/WebApp/api/`, with or without `v1/`). Wrap with
/// [`crate::serve`] for fault injection.
pub fn router(state: Arc<ApexState>) -> Router {
    Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let state = state.clone();
        async move { handle(&state, &method, &uri, &headers, &body) }
    })
}

/// `base64(sha256(METHOD|lowercase(path?query)|canonical_headers|body))`, contract §2.2.
pub fn checksum(method: &str, raw_url: &str, canonical_headers: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.to_ascii_uppercase().as_bytes());
    h.update(b"|");
    h.update(raw_url.to_lowercase().as_bytes());
    h.update(b"|");
    h.update(canonical_headers.as_bytes());
    h.update(b"|");
    h.update(body);
    STANDARD.encode(h.finalize())
}

/// A token as a correct client makes it (HS256, `iat` given), for tests and demos.
pub fn make_token(app_id: &str, api_key: &str, iat: f64, method: &str, raw_url: &str, body: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        json!({"appid": app_id, "iat": iat, "version": "V1", "checksum": checksum(method, raw_url, "", body)});
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = match Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signing_input}.{sig}")
}

fn envelope(data: Value, result: i32, code: i32, msg: &str) -> Value {
    json!({
        "Data": data,
        "Meta": {"Result": result, "ErrorCode": code, "ErrorMsg": msg},
        "PermissionCtrl": {"permission": "255", "elements": null},
        "FeatureCtrl": {"mode": "1"},
        "SystemCtrl": {"TmcmSoDist_Role": "none"},
    })
}

fn fail(state: &ApexState, status: StatusCode, code: i32, msg: String) -> Response {
    state.write().errors.push(code);
    (status, axum::Json(envelope(Value::Null, 0, code, &msg))).into_response()
}

fn ok(data: Value) -> Response {
    (StatusCode::OK, axum::Json(envelope(data, codes::OK, 0, ""))).into_response()
}

/// Why a token was refused: (code, message).
type Rejection = (i32, String);

fn b64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

fn verify_signature(alg: &str, key: &[u8], input: &[u8], sig: &[u8]) -> Result<(), Rejection> {
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
        match <M as Mac>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(input);
                mac.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    let good = match alg {
        "HS256" => check::<Hmac<Sha256>>(key, input, sig),
        "HS384" => check::<Hmac<Sha384>>(key, input, sig),
        "HS512" => check::<Hmac<Sha512>>(key, input, sig),
        other => return Err((codes::MALFORMED, format!("unsupported JWT alg {other:?} (HS256, HS384 or HS512)"))),
    };
    if good {
        Ok(())
    } else {
        Err((codes::BAD_SIGNATURE, "the token signature does not match the API key".into()))
    }
}

fn canonical_headers(headers: &HeaderMap) -> String {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("api"))
        .map(|(name, value)| format!("{}:{}", name.as_str(), value.to_str().unwrap_or("").trim()))
        .collect()
}

/// Check the bearer token of a request per contract §2.2.
fn authenticate(
    config: &ApexConfig,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: f64,
) -> Result<(), Rejection> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or((codes::NO_TOKEN, "no Authorization header with a bearer token".to_owned()))?;
    let auth = auth.to_str().map_err(|_| (codes::MALFORMED, "the Authorization header is not text".to_owned()))?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .ok_or((codes::NO_TOKEN, "the Authorization header is not \"Bearer <JWT>\"".to_owned()))?
        .trim();
    let malformed = |why: &str| (codes::MALFORMED, format!("malformed token: {why}"));
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let header: Value = b64url(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("the header is not base64url JSON"))?;
    let payload: Value = b64url(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("the payload is not base64url JSON"))?;
    let sig = b64url(s).ok_or_else(|| malformed("the signature is not base64url"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or_else(|| malformed("the header has no alg"))?;

    let appid = payload.get("appid").and_then(Value::as_str).unwrap_or("");
    if appid != config.app_id {
        return Err((codes::BAD_APP_ID, format!("unknown application id {appid:?}")));
    }
    verify_signature(alg, config.api_key.as_bytes(), format!("{h}.{p}").as_bytes(), &sig)?;
    match payload.get("version").and_then(Value::as_str) {
        Some("V1") => {}
        other => return Err((codes::BAD_VERSION, format!("unsupported token version {other:?} (only \"V1\")"))),
    }
    let iat = match payload.get("iat") {
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
    .ok_or_else(|| malformed("iat is missing or not a number"))?;
    if (now - iat).abs() > config.token_timeout_secs as f64 {
        return Err((
            codes::EXPIRED,
            format!(
                "the token was issued {:.0} s from now, beyond the {} s time-out",
                now - iat,
                config.token_timeout_secs
            ),
        ));
    }
    let claimed = payload.get("checksum").and_then(Value::as_str).ok_or_else(|| malformed("no checksum claim"))?;
    let raw_url = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or_else(|| uri.path());
    let actual = checksum(method.as_str(), raw_url, &canonical_headers(headers), body);
    if claimed != actual {
        return Err((
            codes::BAD_CHECKSUM,
            "the checksum does not match the request received (method, path and query, body)".into(),
        ));
    }
    Ok(())
}

fn now_f64() -> f64 {
    let t = time::OffsetDateTime::now_utc();
    t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9
}

fn is_udso_path(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    let p = p.trim_end_matches('/');
    p == "/webapp/api/suspiciousobjects/userdefinedso" || p == "/webapp/api/v1/suspiciousobjects/userdefinedso"
}

fn handle(state: &ApexState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
    let config = {
        let mut g = state.write();
        g.requests += 1;
        g.config.clone()
    };
    if let Err((code, msg)) = authenticate(&config, method, uri, headers, body, now_f64()) {
        return fail(state, StatusCode::UNAUTHORIZED, code, msg);
    }
    if !is_udso_path(uri.path()) {
        return fail(state, StatusCode::NOT_FOUND, codes::INVALID_INPUT, format!("no API at {}", uri.path()));
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match *method {
        Method::PUT => add(state, &config, headers, body),
        Method::GET => {
            let t = param("type").map(|t| t.to_ascii_lowercase());
            let filter = param("contentfilter").map(|f| f.to_lowercase());
            let g = state.read();
            let list: Vec<&Udso> = g
                .udso
                .iter()
                .filter(|u| !matches!(t.as_deref(), Some(t) if u.udso_type != t))
                .filter(|u| !matches!(filter.as_deref(), Some(f) if !u.content.to_lowercase().contains(f)))
                .collect();
            ok(serde_json::to_value(list).unwrap_or(Value::Null))
        }
        Method::DELETE => {
            let (Some(t), Some(content)) = (param("type"), param("content")) else {
                return fail(
                    state,
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_INPUT,
                    "DELETE needs the type and content query parameters".into(),
                );
            };
            let t = t.to_ascii_lowercase();
            let mut g = state.write();
            let before = g.udso.len();
            g.udso.retain(|u| !(u.udso_type == t && u.content.eq_ignore_ascii_case(&content)));
            let removed = before - g.udso.len();
            drop(g);
            if removed == 0 {
                let msg = format!("no UDSO of type {t:?} with content {content:?}");
                state.write().errors.push(codes::INVALID_INPUT);
                return (StatusCode::OK, axum::Json(envelope(Value::Null, 0, codes::INVALID_INPUT, &msg)))
                    .into_response();
            }
            ok(Value::Null)
        }
        _ => fail(
            state,
            StatusCode::METHOD_NOT_ALLOWED,
            codes::UNSUPPORTED_METHOD,
            format!("method {method} is not supported here"),
        ),
    }
}

/// Validate one UDSO of a PUT body, per the Apex Central 2019 "Add UDSO" rules.
fn validate(param: &Value) -> Result<Udso, String> {
    let obj = param.as_object().ok_or("param must be a JSON object")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim);
    let t = text("type").ok_or("param.type is required")?.to_ascii_lowercase();
    let content = text("content").filter(|c| !c.is_empty()).ok_or("param.content is required")?;
    match t.as_str() {
        "ip" => {
            content.parse::<std::net::Ipv4Addr>().map_err(|_| format!("content {content:?} is not an IPv4 address"))?;
        }
        "url" => {
            let lower = content.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(format!("url content {content:?} must start with http:// or https://"));
            }
            if content.chars().count() > 2047 {
                return Err("url content is longer than 2047 characters".into());
            }
        }
        "file_sha1" => {
            if content.len() != 40 || !content.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("file_sha1 content {content:?} is not 40 hex digits"));
            }
        }
        "domain" => {
            let ok = content.len() <= 253
                && content.contains('.')
                && content.split('.').all(|l| !l.is_empty() && l.len() <= 63)
                && content
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b'*');
            if !ok {
                return Err(format!("domain content {content:?} is not a domain name"));
            }
        }
        other => return Err(format!("param.type {other:?} is not one of ip, url, file_sha1, domain")),
    }
    let scan_action = text("scan_action").ok_or("param.scan_action is required (log or block)")?.to_ascii_lowercase();
    if scan_action != "log" && scan_action != "block" {
        return Err(format!("param.scan_action {scan_action:?} is neither log nor block"));
    }
    let notes = match obj.get("notes") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 256 => s.clone(),
        Some(Value::String(_)) => return Err("param.notes is longer than 256 characters".into()),
        Some(_) => return Err("param.notes must be a string".into()),
    };
    let expiration_utc_date = match obj.get("expiration_utc_date") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            parse_expiry(s.trim())
                .ok_or_else(|| format!("param.expiration_utc_date {s:?} is not YYYY-MM-DDTHH:MM[:SS[.fff]][Z]"))?,
        ),
        Some(_) => return Err("param.expiration_utc_date must be a string".into()),
    };
    Ok(Udso { udso_type: t, content: content.to_owned(), notes, scan_action, expiration_utc_date })
}

/// Accept `YYYY-MM-DDTHH:MM[:SS[.fff]][Z]` and give Apex's zone-less `YYYY-MM-DDTHH:MM:SS`.
fn parse_expiry(s: &str) -> Option<String> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')).unwrap_or(s);
    let (date, clock) = s.split_once('T').or_else(|| s.split_once(' '))?;
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return None;
    };
    let clock = clock.split('.').next()?;
    let c: Vec<&str> = clock.split(':').collect();
    let (h, mi, se) = match c.as_slice() {
        [h, m] => (*h, *m, "00"),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let n = |v: &str, len: usize| {
        (v.len() == len && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse::<u16>().ok()).flatten()
    };
    let (y, mo, da, h, mi, se) = (n(y, 4)?, n(mo, 2)?, n(da, 2)?, n(h, 2)?, n(mi, 2)?, n(se, 2)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    time::Date::from_calendar_date(i32::from(y), month, u8::try_from(da).ok()?).ok()?;
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{se:02}"))
}

fn add(state: &ApexState, config: &ApexConfig, headers: &HeaderMap, body: &Bytes) -> Response {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return fail(
            state,
            StatusCode::BAD_REQUEST,
            codes::INVALID_INPUT,
            "Content-Type must be application/json;charset=utf-8".into(),
        );
    }
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return fail(state, StatusCode::BAD_REQUEST, codes::INVALID_INPUT, format!("the body is not JSON: {e}"))
        }
    };
    let Some(param) = parsed.get("param") else {
        return fail(state, StatusCode::BAD_REQUEST, codes::INVALID_INPUT, "the body must be {\"param\":{...}}".into());
    };
    let udso = match validate(param) {
        Ok(u) => u,
        Err(why) => return fail(state, StatusCode::BAD_REQUEST, codes::INVALID_INPUT, why),
    };
    let mut g = state.write();
    if let Some(existing) =
        g.udso.iter_mut().find(|u| u.udso_type == udso.udso_type && u.content.eq_ignore_ascii_case(&udso.content))
    {
        *existing = udso;
        drop(g);
        return ok(Value::Null);
    }
    if g.udso.len() >= config.capacity {
        g.errors.push(codes::SO_MAXIMUM_EXCEEDED);
        let msg = format!("The number of suspicious objects exceeds the maximum limit ({})", config.capacity);
        return (StatusCode::OK, axum::Json(envelope(Value::Null, 0, codes::SO_MAXIMUM_EXCEEDED, &msg)))
            .into_response();
    }
    g.udso.push(udso);
    drop(g);
    ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn checksum_matches_the_three_contract_vectors() {
        // Contract trendmicro.md §2.2 test vectors.
        let put = r#"{"param":{"type":"file_sha1","content":"3395856CE81F2B7382DEE72602F798B642F14140","notes":"demo","scan_action":"log"}}"#;
        assert_eq!(
            checksum("PUT", "/WebApp/api/SuspiciousObjects/UserDefinedSO/", "", put.as_bytes()),
            "u0mP1OPaox6kRaiWC+kIcvB1A3g+pFd/vMGNTGeWitg="
        );
        assert_eq!(
            checksum(
                "GET",
                "/WebApp/api/SuspiciousObjects/UserDefinedSO/?type=file_sha1&contentFilter=3395856ce81f",
                "",
                b""
            ),
            "eG6csQFDYMNPTUiQlWYyPSny7fiiQ+4DgWOd9L9jEMw="
        );
        assert_eq!(
            checksum(
                "delete",
                "/WebApp/api/SuspiciousObjects/UserDefinedSO/?type=domain&content=evil.example",
                "",
                b""
            ),
            "5OZgnVeHXXv39weB9Jpt51i6qFiG0OdZd94fKF+I1k8="
        );
    }

    const PATH: &str = "/WebApp/api/SuspiciousObjects/UserDefinedSO/";

    async fn send(
        state: &Arc<ApexState>,
        method: &str,
        url: &str,
        body: &str,
        token: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req =
            Request::builder().method(method).uri(url).header("Content-Type", "application/json;charset=utf-8");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = router(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn token(state: &ApexState, method: &str, url: &str, body: &str) -> String {
        make_token(&state.app_id(), &state.api_key(), now_f64(), method, url, body.as_bytes())
    }

    #[tokio::test]
    async fn accepts_good_tokens_and_rejects_each_kind_of_bad_one() {
        let state = ApexState::new(ApexConfig::default());
        let body = r#"{"param":{"type":"domain","content":"evil.example","scan_action":"block","notes":"x"}}"#;
        let (s, v) = send(&state, "PUT", PATH, body, Some(token(&state, "PUT", PATH, body))).await;
        assert_eq!((s, &v["Meta"]["Result"]), (StatusCode::OK, &json!(1)), "{v}");
        assert_eq!(state.udso().len(), 1);

        let cases: Vec<(Option<String>, i32)> = vec![
            (None, codes::NO_TOKEN),
            (Some("a.b".into()), codes::MALFORMED),
            (
                Some(make_token("other-app", &state.api_key(), now_f64(), "PUT", PATH, body.as_bytes())),
                codes::BAD_APP_ID,
            ),
            (
                Some(make_token(&state.app_id(), "wrong-key", now_f64(), "PUT", PATH, body.as_bytes())),
                codes::BAD_SIGNATURE,
            ),
            (
                Some(make_token(&state.app_id(), &state.api_key(), now_f64() - 3600.0, "PUT", PATH, body.as_bytes())),
                codes::EXPIRED,
            ),
            // Signed over a re-serialised body: the bug this simulator exists to catch.
            (Some(token(&state, "PUT", PATH, &body.replace(':', ": "))), codes::BAD_CHECKSUM),
            (Some(token(&state, "PUT", "/WebApp/api/v1/SuspiciousObjects/UserDefinedSO/", body)), codes::BAD_CHECKSUM),
        ];
        for (tok, code) in cases {
            let (s, v) = send(&state, "PUT", PATH, body, tok).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
            assert_eq!(v["Meta"]["ErrorCode"], code, "{v}");
            assert_eq!(v["Meta"]["Result"], 0);
        }
    }

    #[tokio::test]
    async fn add_update_list_delete_and_capacity() {
        let state = ApexState::new(ApexConfig { capacity: 2, ..ApexConfig::default() });
        let put = |content: &str, action: &str| {
            format!(
                r#"{{"param":{{"type":"file_sha1","content":"{content}","scan_action":"{action}","expiration_utc_date":"2030-01-01T00:00Z"}}}}"#
            )
        };
        let a = "3395856CE81F2B7382DEE72602F798B642F14140";
        let b = "0000856CE81F2B7382DEE72602F798B642F14140";
        let c = "1111856CE81F2B7382DEE72602F798B642F14140";
        for (content, action) in [(a, "log"), (b, "log"), (a, "block")] {
            let body = put(content, action);
            let (s, v) = send(&state, "PUT", PATH, &body, Some(token(&state, "PUT", PATH, &body))).await;
            assert_eq!((s, &v["Meta"]["Result"]), (StatusCode::OK, &json!(1)), "{v}");
        }
        assert_eq!(state.udso().len(), 2);
        assert_eq!(state.udso()[0].scan_action, "block");
        assert_eq!(state.udso()[0].expiration_utc_date.as_deref(), Some("2030-01-01T00:00:00"));
        let body = put(c, "log");
        let (s, v) = send(&state, "PUT", PATH, &body, Some(token(&state, "PUT", PATH, &body))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((&v["Meta"]["Result"], &v["Meta"]["ErrorCode"]), (&json!(0), &json!(-1101)));

        let url = format!("{PATH}?type=file_sha1&contentFilter=3395856ce81f");
        let (_, v) = send(&state, "GET", &url, "", Some(token(&state, "GET", &url, ""))).await;
        assert_eq!(v["Data"].as_array().unwrap().len(), 1);
        assert_eq!(v["Data"][0]["content"], a);

        let url = format!("{PATH}?type=file_sha1&content={a}");
        let (_, v) = send(&state, "DELETE", &url, "", Some(token(&state, "DELETE", &url, ""))).await;
        assert_eq!(v["Meta"]["Result"], 1);
        let (_, v) = send(&state, "DELETE", &url, "", Some(token(&state, "DELETE", &url, ""))).await;
        assert_eq!((&v["Meta"]["Result"], &v["Meta"]["ErrorCode"]), (&json!(0), &json!(-21)));
        assert_eq!(state.udso().len(), 1);
    }

    #[tokio::test]
    async fn validates_every_field() {
        let state = ApexState::new(ApexConfig::default());
        for (param, why) in [
            (json!({"type":"sha256","content":"ab","scan_action":"log"}), "type"),
            (json!({"type":"ip","content":"999.1.1.1","scan_action":"log"}), "IPv4"),
            (json!({"type":"url","content":"evil.example/x","scan_action":"log"}), "http"),
            (json!({"type":"file_sha1","content":"abc","scan_action":"log"}), "40 hex"),
            (json!({"type":"domain","content":"evil.example","scan_action":"quarantine"}), "scan_action"),
            (json!({"type":"domain","content":"evil.example","scan_action":"log","notes":"n".repeat(257)}), "256"),
            (
                json!({"type":"domain","content":"evil.example","scan_action":"log","expiration_utc_date":"tomorrow"}),
                "expiration",
            ),
            (json!({"type":"domain","content":"","scan_action":"log"}), "content"),
        ] {
            let body = json!({"param": param}).to_string();
            let (s, v) = send(&state, "PUT", PATH, &body, Some(token(&state, "PUT", PATH, &body))).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(v["Meta"]["ErrorCode"], -21);
            assert!(v["Meta"]["ErrorMsg"].as_str().unwrap().contains(why), "{v}");
        }
        assert!(state.udso().is_empty());
    }

    #[test]
    fn expiry_formats() {
        assert_eq!(parse_expiry("2030-01-31T10:20Z").as_deref(), Some("2030-01-31T10:20:00"));
        assert_eq!(parse_expiry("2030-01-31T10:20:30.123").as_deref(), Some("2030-01-31T10:20:30"));
        assert_eq!(parse_expiry("2030-02-30T10:20"), None);
        assert_eq!(parse_expiry("2030-01-31"), None);
        assert_eq!(parse_expiry("2030-01-31T25:00"), None);
        assert_eq!(parse_expiry("２０３０-01-31T10:00"), None);
    }
}
