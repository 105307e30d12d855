//! VirusTotal API v3 reputation lookups (contract `enrichment.md` §A).
//!
//! The old script used API v2 and crashed on unknown URLs (§0); this client uses v3 objects,
//! answers a 404 as "not found" (a value, not an error), and keeps suspicious engines visible.
//! A client-side limiter (default 4 requests a minute, the public tier) keeps a public key from
//! ever meeting a 429 in normal use.
//!
//! On 429 `QuotaExceededError` it never spins: a daily or monthly quota (or a 429 whose window
//! it cannot tell) is [`EnrichError::QuotaExceeded`] at once; a per-minute quota (another
//! client sharing the key) is waited out once, one window (`minute_window`, default 60 s), and
//! only if that fits in `max_total`; a second 429 is `QuotaExceeded`. Because the shared HTTP
//! client retries every 429, this client builds it with one attempt per call and retries 5xx
//! and network failures itself, with the shared backoff. This module must never put the API key
//! in an error or a log, and never turn a failure into a verdict.

use crate::enrich::{EnrichError, Enricher, Reputation};
use crate::http::{HttpClient, HttpError, HttpOptions, RetryPolicy, Secret, SecretError, SecretRef};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};
use tibridge_core::{Indicator, IndicatorKind};
use url::Url;

/// The public VirusTotal host.
pub const DEFAULT_BASE_URL: &str = "https://www.virustotal.com";
/// The public tier's rate (§A.6).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 4;
const PROVIDER: &str = "virustotal";

/// The URL identifier VirusTotal accepts without a submission: unpadded URL-safe base64 of the
/// URL's bytes (§A.3; vt-py's `url_id`).
pub fn url_id(url: &str) -> String {
    URL_SAFE_NO_PAD.encode(url.as_bytes())
}

/// The v3 collection and GUI section for a kind, `None` when VirusTotal has no object for it.
fn collection(kind: IndicatorKind) -> Option<(&'static str, &'static str)> {
    match kind {
        IndicatorKind::Domain => Some(("domains", "domain")),
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => Some(("ip_addresses", "ip-address")),
        IndicatorKind::Url => Some(("urls", "url")),
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => Some(("files", "file")),
        IndicatorKind::Email | IndicatorKind::Ipv4Cidr | IndicatorKind::Ipv6Cidr => None,
    }
}

/// `[enrich.virustotal]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirusTotalConfig {
    /// Default `https://www.virustotal.com`; paths `/api/v3/...` are added.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The API key: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub api_key: SecretRef,
    /// Requests a minute this client allows itself (default 4, the public tier).
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u32,
    /// Seconds to wait once after a per-minute 429 (default 60).
    #[serde(default = "default_window")]
    pub minute_window_secs: u64,
    #[serde(default)]
    pub http: HttpOptions,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_rpm() -> u32 {
    DEFAULT_REQUESTS_PER_MINUTE
}
fn default_window() -> u64 {
    60
}

/// Why a VirusTotal enricher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VirusTotalConfigError {
    #[error("virustotal: base_url {url:?} is not an http(s) URL: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("virustotal: api_key: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Looks indicators up on VirusTotal.
#[derive(Debug, Clone)]
pub struct VirusTotalEnricher {
    base: Url,
    api_key: Secret,
    client: HttpClient,
    retry: RetryPolicy,
    minute_window: Duration,
}

/// One lookup's failure before it is mapped to [`EnrichError`].
enum Failure {
    /// 429 with the vendor's code and message.
    Quota { per_minute: bool, detail: String },
    /// Worth another attempt (5xx, network).
    Transient(String),
    /// Not worth another attempt.
    Fatal(String),
}

impl VirusTotalEnricher {
    /// Resolves the key and builds a rate-limited client (one attempt per call, see the module
    /// docs for why).
    pub fn from_config(config: &VirusTotalConfig) -> Result<Self, VirusTotalConfigError> {
        let api_key = config.api_key.resolve()?;
        let client = Self::client(&config.http, config.requests_per_minute)?;
        let retries = config.http.max_attempts.unwrap_or(3);
        Ok(Self::new(&config.base_url, api_key, client)?
            .with_minute_window(Duration::from_secs(config.minute_window_secs))
            .with_retry(RetryPolicy { max_attempts: retries.max(1), ..RetryPolicy::default() }))
    }

    /// The HTTP client this enricher needs: `requests_per_minute` with a burst of one, and a
    /// single attempt per call (retries are decided here, not on every 429).
    pub fn client(http: &HttpOptions, requests_per_minute: u32) -> Result<HttpClient, HttpError> {
        let per_minute = http.rate_limit_per_minute.unwrap_or(requests_per_minute).max(1);
        http.builder(PROVIDER, None)
            .rate_limit(Some(per_minute), 1)
            .retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
            .build()
    }

    pub fn new(base_url: &str, api_key: Secret, client: HttpClient) -> Result<Self, VirusTotalConfigError> {
        let err = |reason: &str| VirusTotalConfigError::BaseUrl { url: base_url.to_string(), reason: reason.into() };
        let mut base = Url::parse(base_url.trim()).map_err(|e| err(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(err("scheme must be http or https with a host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(err("must not have a query or fragment"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(VirusTotalEnricher {
            base,
            api_key,
            client,
            retry: RetryPolicy { max_attempts: 3, ..RetryPolicy::default() },
            minute_window: Duration::from_secs(default_window()),
        })
    }

    /// Attempts for 5xx and network failures, and the time budget of one lookup.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long to wait after a per-minute 429 before the one retry.
    pub fn with_minute_window(mut self, window: Duration) -> Self {
        self.minute_window = window;
        self
    }

    /// The API URL for an indicator.
    pub fn object_url(&self, indicator: &Indicator) -> Option<Url> {
        let (collection, _) = collection(indicator.kind)?;
        let id = match indicator.kind {
            IndicatorKind::Url => url_id(&indicator.value),
            _ => indicator.value.clone(),
        };
        let mut url = self.base.clone();
        url.path_segments_mut().ok()?.pop_if_empty().extend(["api", "v3", collection, id.as_str()]);
        Some(url)
    }

    async fn once(&self, url: &Url) -> Result<Option<Value>, Failure> {
        let reply = self
            .client
            .send("look up an object", |http| {
                Ok(http.get(url.clone()).header("x-apikey", self.api_key.expose()).header("accept", "application/json"))
            })
            .await;
        let (status, body) = match reply {
            Ok(reply) => (reply.status.as_u16(), String::from_utf8_lossy(&reply.body).into_owned()),
            Err(HttpError::Status { status, body_excerpt, .. }) => (status, body_excerpt),
            Err(e @ HttpError::Transport { .. }) => return Err(Failure::Transient(e.to_string())),
            Err(e) => return Err(Failure::Fatal(e.to_string())),
        };
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let code = json.pointer("/error/code").and_then(Value::as_str).unwrap_or("");
        let message = json.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
        let detail = if code.is_empty() {
            format!("HTTP {status}: {}", crate::http::excerpt(body.as_bytes()))
        } else {
            format!("HTTP {status} {code}: {message}")
        };
        match status {
            200 => Ok(Some(json)),
            404 => Ok(None),
            429 => {
                let text = format!("{code} {message} {body}").to_ascii_lowercase();
                let per_minute = code == "TooManyRequestsError"
                    || (text.contains("minute") && !text.contains("day") && !text.contains("month"));
                Err(Failure::Quota { per_minute, detail })
            }
            s if s >= 500 || s == 408 => Err(Failure::Transient(detail)),
            _ => Err(Failure::Fatal(detail)),
        }
    }
}

fn stat(stats: &Value, key: &str) -> u32 {
    stats.get(key).and_then(Value::as_u64).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

#[async_trait]
impl Enricher for VirusTotalEnricher {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn reputation(&self, indicator: &Indicator) -> Result<Reputation, EnrichError> {
        let Some(url) = self.object_url(indicator) else {
            return Err(EnrichError::Unsupported {
                provider: PROVIDER.into(),
                what: format!("{} indicators", indicator.kind),
            });
        };
        let unavailable = |detail: String| EnrichError::Unavailable {
            provider: PROVIDER.into(),
            detail: format!("{indicator}: {detail}"),
        };
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut waited_window = false;
        let found = loop {
            attempt += 1;
            match self.once(&url).await {
                Ok(found) => break found,
                Err(Failure::Quota { per_minute, detail }) => {
                    let fits = started.elapsed() + self.minute_window <= self.retry.max_total;
                    if per_minute && !waited_window && fits {
                        tracing::info!(
                            provider = PROVIDER,
                            wait_s = self.minute_window.as_secs(),
                            "per-minute quota hit; waiting one window"
                        );
                        waited_window = true;
                        tokio::time::sleep(self.minute_window).await;
                        continue;
                    }
                    return Err(EnrichError::QuotaExceeded { provider: PROVIDER.into(), detail });
                }
                Err(Failure::Transient(detail)) => {
                    let wait = self.retry.backoff(attempt);
                    if attempt >= self.retry.max_attempts || started.elapsed() + wait > self.retry.max_total {
                        return Err(unavailable(format!("{detail} (gave up after {attempt} attempt(s))")));
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Fatal(detail)) => return Err(unavailable(detail)),
            }
        };
        let Some(json) = found else {
            return Ok(Reputation {
                provider: PROVIDER.into(),
                found: false,
                malicious: 0,
                suspicious: 0,
                harmless: 0,
                undetected: 0,
                link: None,
            });
        };
        let data = json.get("data").ok_or_else(|| unavailable("the reply has no `data` object".into()))?;
        let stats = data.pointer("/attributes/last_analysis_stats").unwrap_or(&Value::Null);
        let link = match (collection(indicator.kind), data.get("id").and_then(Value::as_str)) {
            (Some((_, gui)), Some(id)) if !id.is_empty() => {
                let mut link = Url::parse("https://www.virustotal.com/gui/").ok();
                if let Some(l) = link.as_mut() {
                    if let Ok(mut segments) = l.path_segments_mut() {
                        segments.pop_if_empty().extend([gui, id]);
                    }
                }
                link.map(String::from)
            }
            _ => None,
        };
        Ok(Reputation {
            provider: PROVIDER.into(),
            found: true,
            malicious: stat(stats, "malicious"),
            suspicious: stat(stats, "suspicious"),
            harmless: stat(stats, "harmless"),
            undetected: stat(stats, "undetected"),
            link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ids_match_the_documented_examples() {
        // enrichment.md §A.3.
        assert_eq!(url_id("http://example.com/"), "aHR0cDovL2V4YW1wbGUuY29tLw");
        assert_eq!(url_id("https://example.com/?a=~~~"), "aHR0cHM6Ly9leGFtcGxlLmNvbS8_YT1-fn4");
    }

    #[test]
    fn object_urls_per_kind() {
        let client = VirusTotalEnricher::client(&HttpOptions::default(), 4).expect("client");
        let vt = VirusTotalEnricher::new("https://vt.test/base", Secret::new("k"), client).expect("vt");
        let url = |kind, value: &str| vt.object_url(&Indicator::from_canonical(kind, value)).map(String::from);
        assert_eq!(
            url(IndicatorKind::Domain, "a.example").as_deref(),
            Some("https://vt.test/base/api/v3/domains/a.example")
        );
        assert_eq!(
            url(IndicatorKind::Ipv6, "2001:db8::1").as_deref(),
            Some("https://vt.test/base/api/v3/ip_addresses/2001:db8::1")
        );
        assert_eq!(
            url(IndicatorKind::Url, "http://example.com/").as_deref(),
            Some("https://vt.test/base/api/v3/urls/aHR0cDovL2V4YW1wbGUuY29tLw")
        );
        assert_eq!(
            url(IndicatorKind::Md5, "44d88612fea8a8f36de82e1278abb02f").as_deref(),
            Some("https://vt.test/base/api/v3/files/44d88612fea8a8f36de82e1278abb02f")
        );
        assert_eq!(url(IndicatorKind::Email, "a@b.example"), None);
        assert_eq!(url(IndicatorKind::Ipv4Cidr, "10.0.0.0/8"), None);
    }

    #[test]
    fn config_defaults_to_the_public_host_and_tier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("vt.key");
        std::fs::write(&key, "abc\n").expect("write");
        let config: VirusTotalConfig =
            serde_json::from_value(serde_json::json!({"api_key": {"file": key}})).expect("config");
        assert_eq!((config.base_url.as_str(), config.requests_per_minute), (DEFAULT_BASE_URL, 4));
        let vt = VirusTotalEnricher::from_config(&config).expect("enricher");
        assert_eq!(vt.minute_window, Duration::from_secs(60));
        assert!(format!("{vt:?}").contains("***") && !format!("{vt:?}").contains("abc"));
    }

    #[test]
    fn base_urls_are_checked() {
        let client = || VirusTotalEnricher::client(&HttpOptions::default(), 4).expect("client");
        assert!(VirusTotalEnricher::new("ftp://x", Secret::new("k"), client()).is_err());
        assert!(VirusTotalEnricher::new("https://x/?k=v", Secret::new("k"), client()).is_err());
        assert!(VirusTotalEnricher::new("not a url", Secret::new("k"), client()).is_err());
    }
}
