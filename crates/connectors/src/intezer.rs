//! Intezer Analyze (API v2-0, contract `enrichment.md` §B): URL and file-hash sandbox verdicts.
//!
//! The old script pasted a token that expired, slept a fixed 20 s, built `//url/<id>` and
//! treated every exception as "URL offline → block" (§0). Here the token comes from
//! `/get-access-token`, is cached until shortly before its `expire_at` and renewed (and the
//! request repeated once) on a 401; the analysis is polled at an interval until it ends or the
//! configured wait runs out ([`EnrichError::TimedOut`]); result URLs are joined to the base
//! path segment by segment. An [`SandboxVerdict::Offline`] comes ONLY from a 400 whose body has
//! `result.is_url_offline == true` — never from an error, a timeout or any other 400.
//!
//! Decisions: a 400 that is not the offline flag (e.g. `Invalid url`) and a hash Intezer does
//! not know (404) are `Inconclusive` with a title saying why, because the sandbox answered but
//! gave no verdict; 403 is `QuotaExceeded` unless the body says the role lacks permission
//! (`Unavailable`). This module must never log or return the API key or the access token.

use crate::enrich::{EnrichError, Sandbox, SandboxReport, SandboxVerdict};
use crate::http::{HttpClient, HttpError, HttpOptions, HttpReply, Secret, SecretError, SecretRef};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tibridge_core::{Indicator, IndicatorKind};
use url::Url;

/// Intezer's public API base.
pub const DEFAULT_BASE_URL: &str = "https://analyze.intezer.com/api/v2-0";
/// A token is renewed this long before its `expire_at` (the SDK uses 20 s).
pub const TOKEN_MARGIN: Duration = Duration::from_secs(60);
const PROVIDER: &str = "intezer";

/// `[enrich.intezer]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntezerConfig {
    /// Default `https://analyze.intezer.com/api/v2-0`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The API key: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub api_key: SecretRef,
    /// Seconds between two polls of a pending analysis (default 5).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Seconds an analysis may stay pending before giving up with a timeout (default 300).
    #[serde(default = "default_max_wait")]
    pub max_wait_secs: u64,
    #[serde(default)]
    pub http: HttpOptions,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_poll() -> u64 {
    5
}
fn default_max_wait() -> u64 {
    300
}

/// Why an Intezer sandbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IntezerConfigError {
    #[error("intezer: base_url {url:?} is not an http(s) URL: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("intezer: api_key: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

#[derive(Clone)]
struct Token {
    value: Secret,
    /// When to stop using it (expire_at minus the margin).
    renew_at: Instant,
}

/// Submits URLs and hashes to Intezer and waits for the verdict.
pub struct IntezerSandbox {
    base: Url,
    api_key: Secret,
    client: HttpClient,
    poll_interval: Duration,
    max_wait: Duration,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for IntezerSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntezerSandbox").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// How a request is sent.
enum Body<'a> {
    Get,
    Post(&'a Value),
}

impl IntezerSandbox {
    /// Resolves the key and builds the client.
    pub fn from_config(config: &IntezerConfig) -> Result<Self, IntezerConfigError> {
        let api_key = config.api_key.resolve()?;
        let client = config.http.builder(PROVIDER, None).build()?;
        Ok(Self::new(&config.base_url, api_key, client)?
            .with_poll_interval(Duration::from_secs(config.poll_interval_secs))
            .with_max_wait(Duration::from_secs(config.max_wait_secs)))
    }

    pub fn new(base_url: &str, api_key: Secret, client: HttpClient) -> Result<Self, IntezerConfigError> {
        let err = |reason: &str| IntezerConfigError::BaseUrl { url: base_url.to_string(), reason: reason.into() };
        let base = Url::parse(base_url.trim()).map_err(|e| err(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() || base.cannot_be_a_base() {
            return Err(err("scheme must be http or https with a host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(err("must not have a query or fragment"));
        }
        Ok(IntezerSandbox {
            base,
            api_key,
            client,
            poll_interval: Duration::from_secs(default_poll()),
            max_wait: Duration::from_secs(default_max_wait()),
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// `base` + the given path, segment by segment: a result URL `/url/<id>` becomes
    /// `<base>/url/<id>` (no double slash), and anything but plain segments is refused, so a
    /// hostile `result_url` cannot point the token at another host or path outside the API.
    pub fn api_url(&self, path: &str) -> Result<Url, String> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty()
            || segments.iter().any(|s| {
                matches!(*s, "." | "..")
                    || !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
        {
            return Err(format!("{:?} is not a plain API path", crate::http::excerpt(path.as_bytes())));
        }
        let mut url = self.base.clone();
        url.path_segments_mut().map_err(|_| "base_url cannot take a path".to_string())?.pop_if_empty().extend(segments);
        Ok(url)
    }

    fn unavailable(detail: impl Into<String>) -> EnrichError {
        EnrichError::Unavailable { provider: PROVIDER.into(), detail: detail.into() }
    }

    /// The cached token, or a new one when it is missing or close to expiry.
    async fn token(&self, force: bool) -> Result<Secret, EnrichError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if !force && Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        let url = self.api_url("get-access-token").map_err(Self::unavailable)?;
        let body = json!({"api_key": self.api_key.expose()});
        let reply = self
            .client
            .send("get an access token", |http| Ok(http.post(url.clone()).json(&body)))
            .await
            .map_err(|e| Self::unavailable(e.to_string()))?;
        if !reply.status.is_success() {
            let detail = if matches!(reply.status.as_u16(), 400 | 401) {
                "the API key was refused"
            } else {
                "unexpected answer"
            };
            return Err(Self::unavailable(format!("get an access token: HTTP {}: {detail}", reply.status.as_u16())));
        }
        let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let value = json
            .get("result")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Self::unavailable("get an access token: the reply has no token"))?;
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
            return Err(Self::unavailable("get an access token: the token holds characters a header cannot carry"));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        let lifetime = json.get("expire_at").and_then(Value::as_f64).map_or(0.0, |at| at - now);
        // Without a usable expire_at the token is used for one call and fetched again.
        let usable = if lifetime.is_finite() && lifetime > TOKEN_MARGIN.as_secs_f64() {
            Duration::from_secs_f64((lifetime - TOKEN_MARGIN.as_secs_f64()).min(86_400.0 * 365.0))
        } else {
            Duration::ZERO
        };
        let token = Token { value: Secret::new(value), renew_at: Instant::now() + usable };
        *cached = Some(token.clone());
        Ok(token.value)
    }

    /// One authenticated call; on 401 the token is renewed and the call repeated once.
    async fn call(&self, what: &str, url: &Url, body: Body<'_>) -> Result<HttpReply, EnrichError> {
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let reply = self
                .client
                .send(what, |http| {
                    let request = match &body {
                        Body::Get => http.get(url.clone()),
                        Body::Post(json) => http.post(url.clone()).json(json),
                    };
                    Ok(request.bearer_auth(token.expose()))
                })
                .await
                .map_err(|e| Self::unavailable(e.to_string()))?;
            if reply.status.as_u16() == 401 && !renewed {
                renewed = true;
                continue;
            }
            if reply.status.as_u16() == 401 {
                return Err(Self::unavailable(format!(
                    "{what}: HTTP 401 with a fresh token: the API key is not accepted"
                )));
            }
            return Ok(reply);
        }
    }

    fn error_text(reply: &HttpReply) -> String {
        let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        json.get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| crate::http::excerpt(&reply.body))
    }

    /// Maps a submission answer that is not 201 (and not a case the caller handles).
    fn submit_error(what: &str, reply: &HttpReply) -> EnrichError {
        let status = reply.status.as_u16();
        let text = Self::error_text(reply);
        if status == 403 && !text.to_ascii_lowercase().contains("permission") {
            return EnrichError::QuotaExceeded {
                provider: PROVIDER.into(),
                detail: format!("{what}: HTTP 403: {text}"),
            };
        }
        Self::unavailable(format!("{what}: HTTP {status}: {text}"))
    }

    fn result_url(json: &Value) -> Option<&str> {
        json.get("result_url").and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    fn report(verdict: SandboxVerdict, title: Option<String>) -> SandboxReport {
        SandboxReport { provider: PROVIDER.into(), verdict, link: None, title, resolved_ip: None, scanned_url: None }
    }

    /// Polls `result_url` until the analysis ends; returns its `result` (or `None` if failed).
    async fn wait(&self, what: &str, result_url: &str) -> Result<Option<Value>, EnrichError> {
        let url = self.api_url(result_url).map_err(|e| Self::unavailable(format!("{what}: result_url {e}")))?;
        let started = Instant::now();
        loop {
            let reply = self.call(what, &url, Body::Get).await?;
            match reply.status.as_u16() {
                202 => {}
                200 => {
                    let json: Value = serde_json::from_slice(&reply.body)
                        .map_err(|e| Self::unavailable(format!("{what}: the reply is not JSON: {e}")))?;
                    return match json.get("status").and_then(Value::as_str) {
                        Some("succeeded") => match json.get("result") {
                            Some(r @ Value::Object(_)) => Ok(Some(r.clone())),
                            _ => Err(Self::unavailable(format!("{what}: succeeded without a result"))),
                        },
                        Some("failed") => Ok(None),
                        // Some deployments answer 200 while still running.
                        Some("queued" | "in_progress") => {
                            if started.elapsed() + self.poll_interval > self.max_wait {
                                return Err(self.timed_out(started));
                            }
                            tokio::time::sleep(self.poll_interval).await;
                            continue;
                        }
                        other => Err(Self::unavailable(format!("{what}: unknown analysis status {other:?}"))),
                    };
                }
                404 | 410 => {
                    return Err(Self::unavailable(format!(
                        "{what}: the analysis is gone (HTTP {})",
                        reply.status.as_u16()
                    )))
                }
                s => return Err(Self::unavailable(format!("{what}: HTTP {s}: {}", Self::error_text(&reply)))),
            }
            if started.elapsed() + self.poll_interval > self.max_wait {
                return Err(self.timed_out(started));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn timed_out(&self, started: Instant) -> EnrichError {
        EnrichError::TimedOut { provider: PROVIDER.into(), waited_seconds: started.elapsed().as_secs() }
    }

    async fn analyze_url(&self, url_value: &str) -> Result<SandboxReport, EnrichError> {
        let what = "submit a URL";
        let url = self.api_url("url").map_err(Self::unavailable)?;
        let body = json!({"url": url_value});
        let reply = self.call(what, &url, Body::Post(&body)).await?;
        let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let result_url = match reply.status.as_u16() {
            200 | 201 => Self::result_url(&json)
                .ok_or_else(|| Self::unavailable(format!("{what}: the reply has no result_url")))?
                .to_string(),
            400 => {
                // Offline ONLY on the exact flag (§B.3).
                if json.pointer("/result/is_url_offline") == Some(&Value::Bool(true)) {
                    let mut report = Self::report(SandboxVerdict::Offline, Some("URL offline".into()));
                    report.scanned_url = Some(url_value.to_string());
                    return Ok(report);
                }
                let text = Self::error_text(&reply);
                return Ok(Self::report(SandboxVerdict::Inconclusive, Some(format!("refused by Intezer: {text}"))));
            }
            _ => return Err(Self::submit_error(what, &reply)),
        };
        let Some(result) = self.wait("poll a URL analysis", &result_url).await? else {
            return Ok(Self::report(SandboxVerdict::Inconclusive, Some("analysis failed".into())));
        };
        let verdict = match result.pointer("/summary/verdict_type").and_then(Value::as_str) {
            Some("malicious") => SandboxVerdict::Malicious,
            Some("suspicious") => SandboxVerdict::Suspicious,
            Some("no_threats") => SandboxVerdict::Clean,
            _ => SandboxVerdict::Inconclusive,
        };
        let text = |p: &str| result.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Ok(SandboxReport {
            provider: PROVIDER.into(),
            verdict,
            link: text("/analysis_url"),
            title: text("/summary/title"),
            resolved_ip: text("/ip"),
            scanned_url: text("/scanned_url"),
        })
    }

    async fn analyze_hash(&self, hash: &str) -> Result<SandboxReport, EnrichError> {
        let what = "submit a hash";
        let url = self.api_url("analyze-by-hash").map_err(Self::unavailable)?;
        let body = json!({"hash": hash});
        let reply = self.call(what, &url, Body::Post(&body)).await?;
        let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let result_url = match reply.status.as_u16() {
            200 | 201 => Self::result_url(&json)
                .ok_or_else(|| Self::unavailable(format!("{what}: the reply has no result_url")))?
                .to_string(),
            404 => return Ok(Self::report(SandboxVerdict::Inconclusive, Some("unknown to Intezer".into()))),
            409 => {
                if json.pointer("/result/is_skipped_by_rule") == Some(&Value::Bool(true)) {
                    return Ok(Self::report(SandboxVerdict::Inconclusive, Some("skipped by an account rule".into())));
                }
                match json.pointer("/result/analysis_id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    Some(id) => format!("analyses/{id}"),
                    None => Self::result_url(&json)
                        .ok_or_else(|| Self::unavailable(format!("{what}: 409 without the running analysis id")))?
                        .to_string(),
                }
            }
            413 => return Ok(Self::report(SandboxVerdict::Inconclusive, Some("file too large for Intezer".into()))),
            _ => return Err(Self::submit_error(what, &reply)),
        };
        let Some(result) = self.wait("poll a hash analysis", &result_url).await? else {
            return Ok(Self::report(SandboxVerdict::Inconclusive, Some("analysis failed".into())));
        };
        let verdict_name = result.get("verdict").and_then(Value::as_str).unwrap_or("");
        let verdict = match verdict_name {
            "malicious" => SandboxVerdict::Malicious,
            "suspicious" => SandboxVerdict::Suspicious,
            "trusted" | "neutral" | "no_threats" => SandboxVerdict::Clean,
            _ => SandboxVerdict::Inconclusive,
        };
        let text = |k: &str| result.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Ok(SandboxReport {
            provider: PROVIDER.into(),
            verdict,
            link: text("analysis_url"),
            title: text("family_name").or_else(|| text("sub_verdict")).or_else(|| text("verdict")),
            resolved_ip: None,
            scanned_url: None,
        })
    }
}

#[async_trait]
impl Sandbox for IntezerSandbox {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn analyze(&self, indicator: &Indicator) -> Result<SandboxReport, EnrichError> {
        match indicator.kind {
            IndicatorKind::Url => self.analyze_url(&indicator.value).await,
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
                self.analyze_hash(&indicator.value).await
            }
            other => Err(EnrichError::Unsupported { provider: PROVIDER.into(), what: format!("{other} indicators") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(base: &str) -> IntezerSandbox {
        let client = crate::http::HttpClientBuilder::new("t").build().expect("client");
        IntezerSandbox::new(base, Secret::new("k"), client).expect("sandbox")
    }

    #[test]
    fn result_urls_join_without_a_double_slash_and_hostile_ones_are_refused() {
        let s = sandbox("https://analyze.intezer.com/api/v2-0");
        assert_eq!(
            s.api_url("/url/abc-1").map(String::from).as_deref(),
            Ok("https://analyze.intezer.com/api/v2-0/url/abc-1")
        );
        let s = sandbox("https://analyze.intezer.com/api/v2-0/");
        assert_eq!(
            s.api_url("//analyses/x").map(String::from).as_deref(),
            Ok("https://analyze.intezer.com/api/v2-0/analyses/x")
        );
        for bad in ["", "/", "/../admin", "//evil.example/x?y", "/url/a b", "https://evil.example/url/1", "/url/%2e%2e"]
        {
            assert!(s.api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_defaults_to_the_public_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("iz.key");
        std::fs::write(&key, "abc\n").expect("write");
        let config: IntezerConfig =
            serde_json::from_value(serde_json::json!({"api_key": {"file": key}})).expect("config");
        assert_eq!(
            (config.base_url.as_str(), config.poll_interval_secs, config.max_wait_secs),
            (DEFAULT_BASE_URL, 5, 300)
        );
        let sandbox = IntezerSandbox::from_config(&config).expect("sandbox");
        assert_eq!(
            sandbox.api_url("/url/x").map(String::from).as_deref(),
            Ok("https://analyze.intezer.com/api/v2-0/url/x")
        );
    }

    #[test]
    fn base_urls_are_checked() {
        let client = || crate::http::HttpClientBuilder::new("t").build().expect("client");
        assert!(IntezerSandbox::new("mailto:x@y", Secret::new("k"), client()).is_err());
        assert!(IntezerSandbox::new("https://h/api?x=1", Secret::new("k"), client()).is_err());
        let debug = format!("{:?}", sandbox("https://h/api/v2-0"));
        assert!(!debug.contains("\"k\""), "{debug}");
    }
}
