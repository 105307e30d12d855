//! The shared outside-call machinery every HTTP connector uses: secrets, a TLS-verifying client,
//! retries with backoff and `Retry-After`, and a per-target rate limit.
//!
//! Retries, rate limits and timeouts live here once instead of in every connector (Vector's
//! `sinks/util` idea). This module must never log or put in an error a secret, an
//! `Authorization` header or a URL query string (query strings carry API keys for some
//! vendors): errors name the target and the operation the caller described, never the URL.

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Secrets

/// Where a secret comes from, as written in the config: `{ env = "NAME" }` or
/// `{ file = "PATH" }`. The secret itself is never written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env { env: String },
    /// Read from a file (surrounding whitespace and the final newline are ignored).
    File { file: PathBuf },
}

/// Why a secret could not be resolved. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {name} is not set")]
    EnvMissing { name: String },
    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode { name: String },
    #[error("cannot read secret file {path}: {source}")]
    FileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {path} is not valid UTF-8")]
    FileNotUnicode { path: PathBuf },
    #[error("secret from {from} is empty")]
    Empty { from: String },
}

impl SecretRef {
    /// Reads the secret now (at startup), so a missing one fails `tibridge check`, not a sync.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let (value, from) = match self {
            SecretRef::Env { env } => {
                let value = std::env::var(env).map_err(|e| match e {
                    std::env::VarError::NotPresent => SecretError::EnvMissing { name: env.clone() },
                    std::env::VarError::NotUnicode(_) => SecretError::EnvNotUnicode { name: env.clone() },
                })?;
                (value, format!("environment variable {env}"))
            }
            SecretRef::File { file } => {
                let bytes =
                    std::fs::read(file).map_err(|source| SecretError::FileRead { path: file.clone(), source })?;
                let value = String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode { path: file.clone() })?;
                (value, format!("file {}", file.display()))
            }
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(SecretError::Empty { from });
        }
        Ok(Secret(trimmed.to_string()))
    }
}

impl fmt::Display for SecretRef {
    /// Says where the secret comes from, never what it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env { env } => write!(f, "env {env}"),
            SecretRef::File { file } => write!(f, "file {}", file.display()),
        }
    }
}

/// A resolved secret. `Debug` and `Display` print `***` so it cannot leak through a log line or
/// a `{:?}` of a config; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// For tests and for values that arrive already resolved (never from a config file).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that puts it on the wire or signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why an outside call failed. Messages name the target and the operation, never a URL, a
/// header or a secret.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{target}: cannot build the HTTP client: {reason}")]
    Build { target: String, reason: String },
    #[error("{target}: {what}: cannot build the request: {reason}")]
    Request { target: String, what: String, reason: String },
    #[error("{target}: {what}: {reason} (gave up after {attempts} attempt(s))")]
    Transport { target: String, what: String, reason: String, attempts: u32 },
    #[error("{target}: {what}: HTTP {status} (gave up after {attempts} attempt(s)){}", excerpt_suffix(.body_excerpt))]
    Status { target: String, what: String, status: u16, attempts: u32, body_excerpt: String },
    #[error("{target}: {what}: the reply is larger than the {limit} bytes accepted")]
    TooLarge { target: String, what: String, limit: usize },
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

impl HttpError {
    /// Whether trying again later (next run) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Transport { .. } => true,
            HttpError::Status { status, .. } => is_retryable_status(*status),
            HttpError::Build { .. } | HttpError::Request { .. } | HttpError::TooLarge { .. } => false,
        }
    }
}

/// Describes a transport error without its URL (which may hold a key in its query string).
fn describe_reqwest(error: reqwest::Error) -> String {
    let error = error.without_url();
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "the reply body was cut off"
    } else if error.is_request() {
        "the request failed"
    } else {
        "HTTP error"
    };
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    if chain.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", chain.join(": "))
    }
}

/// 429 and the 5xx statuses that mean "the server is struggling, try again".
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

// ---------------------------------------------------------------------------------------------
// Retry policy and rate limit

/// How hard to try before giving up on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time, with jitter.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (a longer `Retry-After` is still honoured up to
    /// `max_total`).
    pub max_backoff: Duration,
    /// Longest time one call may take, all attempts and waits included.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_total: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): exponential with "equal jitter"
    /// (half fixed, half random), so many clients hit by the same outage do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 { 0 } else { rand::thread_rng().gen_range(0..=jitter_ms) };
        half + Duration::from_millis(extra)
    }
}

/// Reads `Retry-After`: delay seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = when - now;
    Some(if delta.is_negative() { Duration::ZERO } else { delta.unsigned_abs() })
}

/// A token bucket shared by every clone of a client: `per_minute` requests a minute, in bursts
/// of at most `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `per_minute` of 0 is taken as 1, so a limiter never blocks forever.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = f64::from(burst.max(1));
        RateLimiter { per_second: f64::from(per_minute) / 60.0, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Waits until a request may go.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(state.1).as_secs_f64() * self.per_second;
                state.0 = (state.0 + refill).min(self.burst);
                state.1 = now;
                if state.0 >= 1.0 {
                    state.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Config

/// The HTTP settings every HTTP connector accepts, as a `[sink.http]` / `[source.http]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// PEM file of CA certificates to trust for this target (a private PKI), besides the
    /// built-in roots.
    pub ca_bundle: Option<PathBuf>,
    /// Turns TLS certificate verification off. Logged loudly; prefer `ca_bundle`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Seconds one attempt may take, reply included (default 60).
    pub timeout_secs: Option<u64>,
    /// Seconds to establish a connection (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// Most requests a minute to this target; unset means the connector's own default.
    pub rate_limit_per_minute: Option<u32>,
    /// Attempts per call, the first included (default 5).
    pub max_attempts: Option<u32>,
}

impl HttpOptions {
    /// A builder with these options applied; `default_per_minute` is the connector's own
    /// rate limit when the config sets none (the vendor's documented limit, if any).
    pub fn builder(&self, target: impl Into<String>, default_per_minute: Option<u32>) -> HttpClientBuilder {
        let mut builder = HttpClientBuilder::new(target)
            .ca_bundle(self.ca_bundle.clone())
            .insecure_skip_verify(self.insecure_skip_verify);
        if let Some(secs) = self.timeout_secs {
            builder = builder.request_timeout(Duration::from_secs(secs.max(1)));
        }
        if let Some(secs) = self.connect_timeout_secs {
            builder = builder.connect_timeout(Duration::from_secs(secs.max(1)));
        }
        if let Some(attempts) = self.max_attempts {
            builder = builder.retry(RetryPolicy { max_attempts: attempts.max(1), ..RetryPolicy::default() });
        }
        let per_minute = self.rate_limit_per_minute.or(default_per_minute);
        builder.rate_limit(per_minute, per_minute.map_or(1, |n| (n / 12).max(1)))
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// Builds an [`HttpClient`] for one target (a configured sink or source).
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    target: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    ca_bundle: Option<PathBuf>,
    insecure_skip_verify: bool,
    retry: RetryPolicy,
    per_minute: Option<(u32, u32)>,
    max_body: usize,
    user_agent: String,
}

impl HttpClientBuilder {
    /// `target` names the configured connector in errors and logs (e.g. `apex-prod`).
    pub fn new(target: impl Into<String>) -> Self {
        HttpClientBuilder {
            target: target.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            ca_bundle: None,
            insecure_skip_verify: false,
            retry: RetryPolicy::default(),
            per_minute: None,
            max_body: 512 * 1024 * 1024,
            user_agent: format!("tibridge/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for one attempt, body included.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Trust the CA certificates in this PEM file (in addition to the built-in roots).
    pub fn ca_bundle(mut self, path: Option<PathBuf>) -> Self {
        self.ca_bundle = path;
        self
    }

    /// Turns certificate verification off. Logged loudly at construction.
    pub fn insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// At most `per_minute` requests a minute to this target, bursts of `burst`.
    pub fn rate_limit(mut self, per_minute: Option<u32>, burst: u32) -> Self {
        self.per_minute = per_minute.map(|n| (n, burst));
        self
    }

    /// Largest reply body read (bigger replies are an error, not an out-of-memory).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn build(self) -> Result<HttpClient, HttpError> {
        let build_error = |reason: String| HttpError::Build { target: self.target.clone(), reason };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent.clone());
        if let Some(path) = &self.ca_bundle {
            for cert in load_ca_bundle(path).map_err(build_error)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if self.insecure_skip_verify {
            tracing::warn!(
                target: "tibridge::security",
                connector = %self.target,
                "TLS CERTIFICATE VERIFICATION IS OFF for {}: anyone on the network path can read and change this traffic, secrets included. Use ca_bundle instead.",
                self.target
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        let inner = builder.build().map_err(|e| build_error(describe_reqwest(e)))?;
        Ok(HttpClient {
            inner,
            target: Arc::from(self.target.as_str()),
            retry: self.retry,
            limiter: self.per_minute.map(|(n, burst)| Arc::new(RateLimiter::new(n, burst))),
            max_body: self.max_body,
            hold: Arc::new(Mutex::new(None)),
        })
    }
}

fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("CA bundle {} is not PEM certificates: {}", path.display(), describe_reqwest(e)))?;
    if certs.is_empty() {
        return Err(format!("CA bundle {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// A reply read in full.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// A short, printable excerpt of the body for error messages.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

/// A short, printable, cut excerpt of a reply body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &text[..end];
    let cut: String = cut.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if end < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// An HTTP client for one target: TLS verified, timeouts, retries, rate limit. Clones share the
/// connection pool, the rate limiter and the `Retry-After` hold.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    target: Arc<str>,
    retry: RetryPolicy,
    limiter: Option<Arc<RateLimiter>>,
    max_body: usize,
    /// Set when the target answered `Retry-After`: no request of this client (or its clones)
    /// goes out before then, so concurrent requests do not keep hitting a server that asked
    /// everyone to wait.
    hold: Arc<Mutex<Option<Instant>>>,
}

impl HttpClient {
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The underlying client, for building requests.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Sends a request, retrying on 429, 408, 5xx, timeouts and connection errors.
    ///
    /// `build` is called once per attempt so every attempt can carry fresh credentials (Apex
    /// Central's JWT is only valid for one request). `what` describes the operation for errors
    /// and must not contain secrets. Returns the reply for any final status that is not a
    /// retryable one (2xx, 3xx, 4xx): the caller decides what a 404 means. Every request is
    /// retried, so callers send only idempotent requests or requests whose duplicates they
    /// recognise.
    pub async fn send<F>(&self, what: &str, mut build: F) -> Result<HttpReply, HttpError>
    where
        F: FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder, String>,
    {
        let started = Instant::now();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.wait_for_hold().await;
            if let Some(limiter) = &self.limiter {
                limiter.acquire().await;
            }
            let request = build(&self.inner).map_err(|reason| HttpError::Request {
                target: self.target.to_string(),
                what: what.to_string(),
                reason,
            })?;
            let outcome = self.attempt(request).await;
            let (retry_after, failure) = match outcome {
                Ok(reply) if !is_retryable_status(reply.status.as_u16()) => return Ok(reply),
                Ok(reply) => {
                    let retry_after = reply
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
                    let error = HttpError::Status {
                        target: self.target.to_string(),
                        what: what.to_string(),
                        status: reply.status.as_u16(),
                        attempts: attempt,
                        body_excerpt: reply.excerpt(),
                    };
                    (retry_after, error)
                }
                Err(AttemptError::TooLarge) => {
                    return Err(HttpError::TooLarge {
                        target: self.target.to_string(),
                        what: what.to_string(),
                        limit: self.max_body,
                    })
                }
                Err(AttemptError::Transport(reason)) => (
                    None,
                    HttpError::Transport {
                        target: self.target.to_string(),
                        what: what.to_string(),
                        reason,
                        attempts: attempt,
                    },
                ),
            };
            if attempt >= max_attempts {
                return Err(failure);
            }
            let wait = retry_after.unwrap_or_else(|| self.retry.backoff(attempt));
            if started.elapsed() + wait > self.retry.max_total {
                return Err(failure);
            }
            if let Some(delay) = retry_after {
                self.hold_for(delay);
            }
            tracing::debug!(connector = %self.target, what, attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request of this client for `delay` (the longest hold wins).
    fn hold_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        match *hold {
            Some(current) if current >= until => {}
            _ => *hold = Some(until),
        }
    }

    async fn wait_for_hold(&self) {
        let until = *self.hold.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tokio::time::sleep(until - now).await;
            }
        }
    }

    async fn attempt(&self, request: reqwest::RequestBuilder) -> Result<HttpReply, AttemptError> {
        let mut response = request.send().await.map_err(|e| AttemptError::Transport(describe_reqwest(e)))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        if response.content_length().is_some_and(|n| n > self.max_body as u64) {
            return Err(AttemptError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| AttemptError::Transport(describe_reqwest(e)))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(AttemptError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpReply { status, headers, body })
    }
}

enum AttemptError {
    Transport(String),
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server answering each connection with the next scripted raw reply; `None`
    /// closes the connection without a byte. Counts requests and keeps their heads.
    async fn scripted(replies: Vec<Option<String>>) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count2, heads2) = (count.clone(), heads.clone());
        tokio::spawn(async move {
            let mut replies = replies.into_iter();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                count2.fetch_add(1, Ordering::SeqCst);
                heads2.lock().unwrap_or_else(|e| e.into_inner()).push(String::from_utf8_lossy(&buf[..n]).to_string());
                match replies.next().flatten() {
                    Some(reply) => {
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    None => drop(stream),
                }
            }
        });
        (format!("http://{addr}"), count, heads)
    }

    fn reply(status: &str, extra_headers: &str, body: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        ))
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_total: Duration::from_secs(10),
        }
    }

    fn client() -> HttpClient {
        HttpClientBuilder::new("test-target").retry(fast_retry()).build().expect("client")
    }

    #[tokio::test]
    async fn retries_5xx_429_and_dropped_connections_then_succeeds() {
        let (base, count, _) = scripted(vec![
            reply("503 Service Unavailable", "", "busy"),
            None,
            reply("429 Too Many Requests", "Retry-After: 0\r\n", ""),
            reply("200 OK", "", "{\"ok\":true}"),
        ])
        .await;
        let c = client();
        let r = c.send("get thing", |http| Ok(http.get(format!("{base}/x")))).await.expect("eventually ok");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, b"{\"ok\":true}");
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn client_errors_are_returned_not_retried() {
        let (base, count, _) = scripted(vec![reply("404 Not Found", "", "{}")]).await;
        let r = client().send("get", |http| Ok(http.get(format!("{base}/x")))).await.expect("a reply");
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_without_leaking_the_query() {
        let (base, count, _) = scripted(vec![None, None, None, None, None]).await;
        let err = client()
            .send("list objects", |http| Ok(http.get(format!("{base}/x?apikey=SUPERSECRET"))))
            .await
            .expect_err("fails");
        assert_eq!(count.load(Ordering::SeqCst), 4);
        let text = err.to_string();
        assert!(text.starts_with("test-target: list objects:"), "{text}");
        assert!(!text.contains("SUPERSECRET") && !text.contains("apikey"), "{text}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_time_budget_gives_up_at_once() {
        let (base, count, _) =
            scripted(vec![reply("429 Too Many Requests", "Retry-After: 3600\r\n", "slow down")]).await;
        let started = Instant::now();
        let err = client().send("add", |http| Ok(http.get(format!("{base}/")))).await.expect_err("gives up");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(matches!(err, HttpError::Status { status: 429, .. }), "{err}");
        assert!(err.to_string().contains("slow down"));
    }

    #[tokio::test]
    async fn every_attempt_is_built_afresh() {
        let (base, _, heads) =
            scripted(vec![reply("500 Internal Server Error", "", ""), reply("200 OK", "", "")]).await;
        let mut n = 0;
        client()
            .send("signed", |http| {
                n += 1;
                Ok(http.get(format!("{base}/")).header("x-attempt", n.to_string()))
            })
            .await
            .expect("ok");
        let heads = heads.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(heads[0].contains("x-attempt: 1") && heads[1].contains("x-attempt: 2"));
    }

    #[tokio::test]
    async fn oversize_replies_are_refused() {
        let body = "x".repeat(2000);
        let (base, _, _) = scripted(vec![reply("200 OK", "", &body)]).await;
        let c = HttpClientBuilder::new("t").max_body(1000).build().expect("client");
        let err = c.send("big", |http| Ok(http.get(format!("{base}/")))).await.expect_err("too large");
        assert!(matches!(err, HttpError::TooLarge { limit: 1000, .. }));
    }

    #[tokio::test]
    async fn timeouts_are_retried_and_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // never answer
            }
        });
        let c = HttpClientBuilder::new("slow")
            .request_timeout(Duration::from_millis(100))
            .retry(RetryPolicy { max_attempts: 2, ..fast_retry() })
            .build()
            .expect("client");
        let err = c.send("wait", |http| Ok(http.get(format!("http://{addr}/")))).await.expect_err("times out");
        assert!(matches!(err, HttpError::Transport { attempts: 2, .. }), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn the_rate_limit_is_shared_by_clones() {
        let limiter_client = HttpClientBuilder::new("rl").rate_limit(Some(600), 2).build().expect("client");
        let other = limiter_client.clone();
        let limiter = limiter_client.limiter.clone().expect("limiter");
        let same = other.limiter.clone().expect("limiter");
        assert!(Arc::ptr_eq(&limiter, &same));
        // 600/min = 10/s with a burst of 2: 2 at once, then 100 ms apart.
        let started = Instant::now();
        for _ in 0..5 {
            same.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(280), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = time::macros::datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(p.backoff(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn secrets_never_print_and_resolve_from_env_and_file() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "  abc123\n").expect("write");
        let r: SecretRef =
            serde_json::from_str(&format!("{{\"file\": {:?}}}", path.display().to_string())).expect("file ref");
        assert_eq!(r.resolve().expect("resolves").expose(), "abc123");

        let r: SecretRef = serde_json::from_str(r#"{"env": "TIBRIDGE_TEST_SURELY_UNSET_VAR"}"#).expect("env ref");
        let err = r.resolve().expect_err("unset");
        assert!(err.to_string().contains("TIBRIDGE_TEST_SURELY_UNSET_VAR"));
        assert!(
            serde_json::from_str::<SecretRef>(r#"{"value": "inline-secret"}"#).is_err(),
            "inline secrets are refused"
        );

        std::fs::write(&path, "\n").expect("write");
        let r = SecretRef::File { file: path };
        assert!(matches!(r.resolve(), Err(SecretError::Empty { .. })));
    }

    #[test]
    fn insecure_and_ca_bundle_options_build_or_fail_clearly() {
        assert!(HttpClientBuilder::new("lab").insecure_skip_verify(true).build().is_ok());
        let err = HttpClientBuilder::new("lab")
            .ca_bundle(Some(PathBuf::from("/nonexistent/ca.pem")))
            .build()
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(HttpClientBuilder::new("lab").ca_bundle(Some(path)).build().is_err());
    }

    #[tokio::test]
    async fn a_retry_after_holds_the_clones_requests_too() {
        let (base, _, _) = scripted(vec![
            reply("429 Too Many Requests", "Retry-After: 1\r\n", ""),
            reply("200 OK", "", ""),
            reply("200 OK", "", ""),
        ])
        .await;
        let first = client();
        let second = first.clone();
        let started = Instant::now();
        let base2 = base.clone();
        let a =
            tokio::spawn(
                async move { first.send("a", |http| Ok(http.get(format!("{base}/a")))).await.map(|r| r.status) },
            );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = second.send("b", |http| Ok(http.get(format!("{base2}/b")))).await.expect("b ok");
        let b_done = started.elapsed();
        assert_eq!(b.status, StatusCode::OK);
        assert!(b_done >= Duration::from_millis(950), "the clone waited for the Retry-After: {b_done:?}");
        assert_eq!(a.await.expect("joined").expect("a ok"), StatusCode::OK);
    }
}
