//! Deep Security Manager / Cloud One Workload Security simulator: Application Control global
//! (block) rules of contract §3.2, both auth styles of §3.1, and the rate limit of §3.3.
//!
//! Routes live under `/api`, so a client's base URL is `<lab url>/api` as with a real DSM
//! (`https://dsm:4119/api`). It must never answer without a valid key and `api-version: v1`,
//! and never count a call it rejected with 429 against the limit (DSM does not).
//!
//! Choices where the contract is silent (documented so clients and tests can rely on them):
//! - sha256 is stored and listed upper-case; comparisons ignore case;
//! - creating a rule whose sha256 already exists (or appears twice in one request) rejects the
//!   whole request with 400 `{"message": "... already exists (ID n)"}` and creates nothing;
//! - a create answers with the rules it created only (a real DSM may list others too);
//! - DELETE answers 204 with no body; unknown IDs are 404 `{"message": ...}`;
//! - auth failures are 401 and a missing or wrong `api-version` is 400, neither counted
//!   against the rate limit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which product the simulator plays, i.e. which auth header it expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DsMode {
    /// DSM on-prem: `api-secret-key: <secret>`.
    #[default]
    OnPrem,
    /// Cloud One Workload Security: `Authorization: ApiKey <key>` (legacy `api-secret-key`
    /// accepted too).
    C1ws,
}

/// Settings of the simulated manager.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepSecurityConfig {
    pub mode: DsMode,
    pub api_key: String,
    /// Accepted calls allowed per window (DSM default per key: 500/min); 0 = no limit.
    pub requests_per_minute: u32,
    /// Length of the sliding window in seconds (60 on a real DSM; tests may shorten it).
    pub window_secs: u64,
}

impl Default for DeepSecurityConfig {
    fn default() -> Self {
        DeepSecurityConfig {
            mode: DsMode::OnPrem,
            api_key: "lab-ds-api-key-0123456789".into(),
            requests_per_minute: 500,
            window_secs: 60,
        }
    }
}

/// One Application Control global rule as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalRule {
    #[serde(rename = "ID")]
    pub id: u64,
    pub sha256: String,
    pub description: String,
    pub action: String,
    /// Epoch milliseconds.
    #[serde(rename = "lastUpdated")]
    pub last_updated: i64,
    #[serde(rename = "lastUpdatedAdministrator")]
    pub last_updated_administrator: u64,
}

#[derive(Debug)]
struct Inner {
    config: DeepSecurityConfig,
    rules: BTreeMap<u64, GlobalRule>,
    next_id: u64,
    accepted: VecDeque<Instant>,
    requests: u64,
    rate_limited: u64,
}

/// Shared state of the Deep Security simulator.
#[derive(Debug)]
pub struct DeepSecurityState {
    inner: Mutex<Inner>,
}

fn now_ms() -> i64 {
    let t = time::OffsetDateTime::now_utc();
    t.unix_timestamp() * 1000 + i64::from(t.millisecond())
}

impl DeepSecurityState {
    pub fn new(config: DeepSecurityConfig) -> Arc<DeepSecurityState> {
        Arc::new(DeepSecurityState {
            inner: Mutex::new(Inner {
                config,
                rules: BTreeMap::new(),
                next_id: 1,
                accepted: VecDeque::new(),
                requests: 0,
                rate_limited: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> DeepSecurityConfig {
        self.lock().config.clone()
    }

    pub fn set_requests_per_minute(&self, rpm: u32) {
        let mut g = self.lock();
        g.config.requests_per_minute = rpm;
        g.accepted.clear();
    }

    /// Every rule, by ID.
    pub fn rules(&self) -> Vec<GlobalRule> {
        self.lock().rules.values().cloned().collect()
    }

    /// Add a rule directly (e.g. one an administrator made, that tibridge must not remove).
    pub fn seed_rule(&self, sha256: &str, description: &str) -> GlobalRule {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        let rule = GlobalRule {
            id,
            sha256: sha256.to_ascii_uppercase(),
            description: description.to_owned(),
            action: "block".into(),
            last_updated: now_ms(),
            last_updated_administrator: 1,
        };
        g.rules.insert(id, rule.clone());
        rule
    }

    /// Calls received (accepted, refused or rate-limited).
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    /// Calls answered 429.
    pub fn rate_limited_count(&self) -> u64 {
        self.lock().rate_limited
    }
}

fn message(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": msg.into()}))).into_response()
}

/// The routes under `/api`. Wrap with [`crate::serve`] for fault injection.
pub fn router(state: Arc<DeepSecurityState>) -> Router {
    Router::new()
        .route("/api/applicationcontrolglobalrules", get(list).post(create))
        .route("/api/applicationcontrolglobalrules/search", post(search))
        .route("/api/applicationcontrolglobalrules/{id}", get(get_one).post(modify).delete(delete_one))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .fallback(|| async { message(StatusCode::NOT_FOUND, "No such API.") })
        .with_state(state)
}

/// Auth, `api-version`, then the sliding-window rate limit.
async fn gate(State(state): State<Arc<DeepSecurityState>>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let secret = h.get("api-secret-key").and_then(|v| v.to_str().ok()).map(str::trim);
    let api_key = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("ApiKey "))
        .map(str::trim);
    let version = h.get("api-version").and_then(|v| v.to_str().ok()).map(str::trim);
    {
        let mut g = state.lock();
        g.requests += 1;
        let key = g.config.api_key.as_str();
        let authed = match g.config.mode {
            DsMode::OnPrem => secret == Some(key),
            DsMode::C1ws => api_key == Some(key) || secret == Some(key),
        };
        if !authed {
            let how = match g.config.mode {
                DsMode::OnPrem => "an api-secret-key header",
                DsMode::C1ws => "an Authorization: ApiKey <key> header",
            };
            return message(StatusCode::UNAUTHORIZED, format!("Authentication failed: send a valid API key in {how}."));
        }
        if version != Some("v1") {
            return message(StatusCode::BAD_REQUEST, "The api-version header is required and must be v1.");
        }
        let window = Duration::from_secs(g.config.window_secs.max(1));
        let now = Instant::now();
        while g.accepted.front().is_some_and(|t| now.duration_since(*t) >= window) {
            g.accepted.pop_front();
        }
        let limit = g.config.requests_per_minute as usize;
        if limit > 0 && g.accepted.len() >= limit {
            g.rate_limited += 1;
            let wait = g.accepted.front().map(|t| window.saturating_sub(now.duration_since(*t))).unwrap_or(window);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = message(StatusCode::TOO_MANY_REQUESTS, "Too many API requests.");
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        g.accepted.push_back(now);
    }
    next.run(req).await
}

fn envelope(rules: Vec<GlobalRule>) -> Response {
    axum::Json(json!({"applicationControlGlobalRules": rules})).into_response()
}

// The error is the HTTP answer itself, built at most once per request.
#[allow(clippy::result_large_err)]
fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("The request body is not valid JSON: {e}")))
}

fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn list(State(state): State<Arc<DeepSecurityState>>) -> Response {
    envelope(state.rules())
}

async fn create(State(state): State<Arc<DeepSecurityState>>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(items) = body.get("applicationControlGlobalRules").and_then(Value::as_array) else {
        return message(StatusCode::BAD_REQUEST, "The body must be {\"applicationControlGlobalRules\": [rules]}.");
    };
    let mut wanted: Vec<(String, String)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(sha) = item.get("sha256").and_then(Value::as_str).map(str::trim) else {
            return message(StatusCode::BAD_REQUEST, format!("Rule #{i}: sha256 is required."));
        };
        if !valid_sha256(sha) {
            return message(StatusCode::BAD_REQUEST, format!("Rule #{i}: sha256 {sha:?} is not 64 hex digits."));
        }
        match item.get("action") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) if a == "block" => {}
            Some(other) => {
                return message(StatusCode::BAD_REQUEST, format!("Rule #{i}: action {other} is not \"block\"."))
            }
        }
        let description = match item.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(d)) if d.chars().count() <= 2000 => d.clone(),
            Some(Value::String(_)) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    format!("Rule #{i}: description is longer than 2000 characters."),
                )
            }
            Some(_) => return message(StatusCode::BAD_REQUEST, format!("Rule #{i}: description must be a string.")),
        };
        let upper = sha.to_ascii_uppercase();
        if wanted.iter().any(|(s, _)| *s == upper) {
            return message(
                StatusCode::BAD_REQUEST,
                format!("Rule #{i}: sha256 {upper} appears twice in this request."),
            );
        }
        wanted.push((upper, description));
    }
    let mut g = state.lock();
    for (sha, _) in &wanted {
        if let Some(existing) = g.rules.values().find(|r| r.sha256 == *sha) {
            return message(
                StatusCode::BAD_REQUEST,
                format!("A global rule for sha256 {sha} already exists (ID {}).", existing.id),
            );
        }
    }
    let mut created = Vec::with_capacity(wanted.len());
    for (sha256, description) in wanted {
        let id = g.next_id;
        g.next_id += 1;
        let rule = GlobalRule {
            id,
            sha256,
            description,
            action: "block".into(),
            last_updated: now_ms(),
            last_updated_administrator: 1,
        };
        g.rules.insert(id, rule.clone());
        created.push(rule);
    }
    drop(g);
    envelope(created)
}

/// One `searchCriteria` entry.
fn criterion_matches(c: &Value, rule: &GlobalRule) -> Result<bool, String> {
    let field = c.get("fieldName").and_then(Value::as_str).ok_or("searchCriteria entries need a fieldName")?;
    match field {
        "sha256" | "description" => {
            let test = c.get("stringTest").and_then(Value::as_str).unwrap_or("equal");
            let value =
                c.get("stringValue").and_then(Value::as_str).ok_or("stringValue is required for string fields")?;
            let wildcards = c.get("stringWildcards").and_then(Value::as_bool).unwrap_or(false);
            let target = if field == "sha256" { &rule.sha256 } else { &rule.description };
            let equal = if wildcards { glob(value, target) } else { value.eq_ignore_ascii_case(target) };
            match test {
                "equal" => Ok(equal),
                "not-equal" => Ok(!equal),
                other => Err(format!("stringTest {other:?} is neither equal nor not-equal")),
            }
        }
        "ID" => {
            let test = c.get("idTest").and_then(Value::as_str).unwrap_or("equal");
            let value = c.get("idValue").and_then(Value::as_u64).ok_or("idValue must be a number")?;
            match test {
                "equal" => Ok(rule.id == value),
                "not-equal" => Ok(rule.id != value),
                "greater-than" => Ok(rule.id > value),
                "greater-than-or-equal" => Ok(rule.id >= value),
                "less-than" => Ok(rule.id < value),
                "less-than-or-equal" => Ok(rule.id <= value),
                other => Err(format!("idTest {other:?} is not supported")),
            }
        }
        other => Err(format!("fieldName {other:?} cannot be searched (sha256, description, ID)")),
    }
}

/// `*` any run, `?` one character, ignoring ASCII case.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

async fn search(State(state): State<Arc<DeepSecurityState>>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let criteria: Vec<Value> = match body.get("searchCriteria") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(c)) => c.clone(),
        Some(c @ Value::Object(_)) => vec![c.clone()],
        Some(_) => return message(StatusCode::BAD_REQUEST, "searchCriteria must be a list."),
    };
    let max = match body.get("maxItems") {
        None | Some(Value::Null) => 5000,
        Some(v) => match v.as_u64() {
            Some(n) => n.min(5000) as usize,
            None => return message(StatusCode::BAD_REQUEST, "maxItems must be a non-negative integer."),
        },
    };
    let rules = state.rules();
    let mut out = Vec::new();
    for rule in rules {
        let mut all = true;
        for c in &criteria {
            match criterion_matches(c, &rule) {
                Ok(true) => {}
                Ok(false) => {
                    all = false;
                    break;
                }
                Err(why) => return message(StatusCode::BAD_REQUEST, why),
            }
        }
        if all {
            out.push(rule);
            if out.len() >= max {
                break;
            }
        }
    }
    envelope(out)
}

// The error is the HTTP answer itself, built at most once per request.
#[allow(clippy::result_large_err)]
fn parse_id(id: &str) -> Result<u64, Response> {
    id.parse::<u64>().map_err(|_| message(StatusCode::NOT_FOUND, format!("The global rule {id:?} does not exist.")))
}

async fn get_one(State(state): State<Arc<DeepSecurityState>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.lock().rules.get(&id) {
        Some(rule) => axum::Json(rule.clone()).into_response(),
        None => message(StatusCode::NOT_FOUND, format!("The global rule {id} does not exist.")),
    }
}

async fn modify(State(state): State<Arc<DeepSecurityState>>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let body = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= 2000 => Some(d.clone()),
        Some(_) => return message(StatusCode::BAD_REQUEST, "description must be a string of at most 2000 characters."),
    };
    let sha = match body.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_sha256(s.trim()) => Some(s.trim().to_ascii_uppercase()),
        Some(other) => return message(StatusCode::BAD_REQUEST, format!("sha256 {other} is not 64 hex digits.")),
    };
    let mut g = state.lock();
    if let Some(sha) = &sha {
        if let Some(other) = g.rules.values().find(|r| r.sha256 == *sha && r.id != id) {
            return message(
                StatusCode::BAD_REQUEST,
                format!("A global rule for sha256 {sha} already exists (ID {}).", other.id),
            );
        }
    }
    let Some(rule) = g.rules.get_mut(&id) else {
        return message(StatusCode::NOT_FOUND, format!("The global rule {id} does not exist."));
    };
    if let Some(d) = description {
        rule.description = d;
    }
    if let Some(s) = sha {
        rule.sha256 = s;
    }
    rule.last_updated = now_ms();
    axum::Json(rule.clone()).into_response()
}

async fn delete_one(State(state): State<Arc<DeepSecurityState>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match state.lock().rules.remove(&id) {
        Some(_) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        None => message(StatusCode::NOT_FOUND, format!("The global rule {id} does not exist.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    const SHA: &str = "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069";

    async fn call(
        state: &Arc<DeepSecurityState>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let mut req = HttpRequest::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = resp.status();
        let retry = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn onprem() -> (Arc<DeepSecurityState>, Vec<(&'static str, &'static str)>) {
        let state = DeepSecurityState::new(DeepSecurityConfig { api_key: "k".into(), ..Default::default() });
        (state, vec![("api-secret-key", "k"), ("api-version", "v1")])
    }

    #[tokio::test]
    async fn both_auth_styles_and_the_version_header() {
        let (state, h) = onprem();
        assert_eq!(call(&state, "GET", "/api/applicationcontrolglobalrules", &h, "").await.0, StatusCode::OK);
        assert_eq!(
            call(&state, "GET", "/api/applicationcontrolglobalrules", &[("api-version", "v1")], "").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&state, "GET", "/api/applicationcontrolglobalrules", &[("api-secret-key", "k")], "").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(
                &state,
                "GET",
                "/api/applicationcontrolglobalrules",
                &[("Authorization", "ApiKey k"), ("api-version", "v1")],
                ""
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );

        let c1 = DeepSecurityState::new(DeepSecurityConfig {
            mode: DsMode::C1ws,
            api_key: "k".into(),
            ..Default::default()
        });
        assert_eq!(
            call(
                &c1,
                "GET",
                "/api/applicationcontrolglobalrules",
                &[("Authorization", "ApiKey k"), ("api-version", "v1")],
                ""
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(call(&c1, "GET", "/api/applicationcontrolglobalrules", &h, "").await.0, StatusCode::OK);
        assert_eq!(
            call(
                &c1,
                "GET",
                "/api/applicationcontrolglobalrules",
                &[("Authorization", "ApiKey nope"), ("api-version", "v1")],
                ""
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn create_search_get_modify_delete() {
        let (state, h) = onprem();
        let body = json!({"applicationControlGlobalRules": [{"sha256": SHA, "description": "demo"}, {"sha256": SHA.replace('7', "8")}]}).to_string();
        let (s, _, v) = call(&state, "POST", "/api/applicationcontrolglobalrules", &h, &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let created = v["applicationControlGlobalRules"].as_array().unwrap();
        assert_eq!(created[0]["ID"], 1);
        assert_eq!(created[1]["ID"], 2);
        assert_eq!(created[0]["sha256"], SHA.to_ascii_uppercase());
        assert_eq!(created[0]["action"], "block");
        assert!(created[0]["lastUpdated"].as_i64().unwrap() > 1_600_000_000_000);

        let (s, _, v) = call(
            &state,
            "POST",
            "/api/applicationcontrolglobalrules",
            &h,
            &json!({"applicationControlGlobalRules": [{"sha256": SHA}]}).to_string(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().contains("already exists (ID 1)"));
        assert_eq!(state.rules().len(), 2);

        let search = json!({"maxItems": 10, "searchCriteria": [{"fieldName": "sha256", "stringTest": "equal", "stringValue": SHA, "stringWildcards": false}], "sortByObjectID": true});
        let (_, _, v) =
            call(&state, "POST", "/api/applicationcontrolglobalrules/search", &h, &search.to_string()).await;
        assert_eq!(v["applicationControlGlobalRules"].as_array().unwrap().len(), 1);
        let not = json!({"searchCriteria": [{"fieldName": "sha256", "stringTest": "not-equal", "stringValue": SHA}]});
        let (_, _, v) = call(&state, "POST", "/api/applicationcontrolglobalrules/search", &h, &not.to_string()).await;
        assert_eq!(v["applicationControlGlobalRules"][0]["ID"], 2);
        let bad = json!({"searchCriteria": [{"fieldName": "owner", "stringValue": "x"}]});
        assert_eq!(
            call(&state, "POST", "/api/applicationcontrolglobalrules/search", &h, &bad.to_string()).await.0,
            StatusCode::BAD_REQUEST
        );

        let (s, _, v) =
            call(&state, "POST", "/api/applicationcontrolglobalrules/1", &h, r#"{"description":"changed"}"#).await;
        assert_eq!((s, &v["description"]), (StatusCode::OK, &json!("changed")));
        assert_eq!(call(&state, "GET", "/api/applicationcontrolglobalrules/1", &h, "").await.2["ID"], 1);
        assert_eq!(
            call(&state, "DELETE", "/api/applicationcontrolglobalrules/1", &h, "").await.0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&state, "DELETE", "/api/applicationcontrolglobalrules/1", &h, "").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&state, "GET", "/api/applicationcontrolglobalrules/abc", &h, "").await.0,
            StatusCode::NOT_FOUND
        );
        let bad = json!({"applicationControlGlobalRules": [{"sha256": "abc"}]}).to_string();
        assert_eq!(
            call(&state, "POST", "/api/applicationcontrolglobalrules", &h, &bad).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(&state, "POST", "/api/applicationcontrolglobalrules", &h, "{oops").await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn rate_limit_counts_only_accepted_calls_and_slides() {
        let state = DeepSecurityState::new(DeepSecurityConfig {
            api_key: "k".into(),
            requests_per_minute: 3,
            window_secs: 1,
            ..Default::default()
        });
        let h = [("api-secret-key", "k"), ("api-version", "v1")];
        for _ in 0..3 {
            assert_eq!(call(&state, "GET", "/api/applicationcontrolglobalrules", &h, "").await.0, StatusCode::OK);
        }
        for _ in 0..3 {
            let (s, retry, v) = call(&state, "GET", "/api/applicationcontrolglobalrules", &h, "").await;
            assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(retry.as_deref(), Some("1"));
            assert_eq!(v["message"], "Too many API requests.");
        }
        assert_eq!(state.rate_limited_count(), 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The rejected calls did not extend the window.
        assert_eq!(call(&state, "GET", "/api/applicationcontrolglobalrules", &h, "").await.0, StatusCode::OK);
    }

    #[test]
    fn glob_matches() {
        assert!(glob("7F83*", SHA));
        assert!(glob("*9069", SHA));
        assert!(glob("7f8?b*", SHA));
        assert!(!glob("7F84*", SHA));
        assert!(glob("*", ""));
    }
}
