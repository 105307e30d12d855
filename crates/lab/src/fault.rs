//! Fault injection for every simulator: a share of 5xx, 429 with `Retry-After`, added latency
//! and dropped connections, switchable at runtime.
//!
//! Clients are judged by how they behave when the vendor misbehaves, so every simulator is
//! wrapped in [`with_faults`] and tests flip faults on and off through a shared [`FaultHandle`].
//! A seeded configuration makes the sequence of faults reproducible run after run.
//!
//! This module must never change a request that it lets through: a request is either
//! answered by the simulator untouched (possibly later) or replaced by a fault, never altered.
//!
//! A dropped connection cannot be expressed as an HTTP response. The layer marks the response
//! with [`DropConnection`]; the server runner in [`crate::server`] sees the mark and closes the
//! socket without writing a byte, so the client sees a connection error. Used without that
//! runner (e.g. `tower::ServiceExt::oneshot` in unit tests) the marked response is a 502 with
//! an explanatory body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What faults to inject. The default injects none.
///
/// Ratios are shares of requests in `0.0..=1.0`; one random draw per request decides, in this
/// order, drop, then 5xx, then 429, so the ratios add up (0.2 drop + 0.3 5xx = half the
/// requests fail). Values outside the range are clamped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Share of requests answered with a 5xx status instead of reaching the simulator.
    pub error_5xx_ratio: f64,
    /// Which 5xx status to answer with (500, 502, 503 or 504 are the realistic ones).
    pub error_status: u16,
    /// Share of requests answered 429 with a `Retry-After` header.
    pub rate_limit_429_ratio: f64,
    /// Value of the `Retry-After` header on injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Delay added before every request is handled (faults included).
    #[serde(with = "humantime_serde_compat")]
    pub latency: Duration,
    /// Share of requests whose connection is closed without any reply.
    pub drop_ratio: f64,
    /// Seed of the random draws; `None` seeds from the OS so runs differ.
    pub seed: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            error_5xx_ratio: 0.0,
            error_status: 503,
            rate_limit_429_ratio: 0.0,
            retry_after_secs: 1,
            latency: Duration::ZERO,
            drop_ratio: 0.0,
            seed: None,
        }
    }
}

impl FaultConfig {
    /// True when this configuration never changes a request.
    pub fn is_quiet(&self) -> bool {
        self.error_5xx_ratio <= 0.0
            && self.rate_limit_429_ratio <= 0.0
            && self.drop_ratio <= 0.0
            && self.latency.is_zero()
    }
}

/// Durations in config files as `"250ms"` / `"2s"`, or a plain number of milliseconds.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {t:?}: {e}"))),
        }
    }
}

/// Marker put in a response's extensions: the server must close the connection instead of
/// sending this response.
#[derive(Clone, Copy, Debug)]
pub struct DropConnection;

/// The fault a single request received; counted in [`FaultStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Passed through to the simulator.
    None,
    /// Connection closed without a reply.
    Drop,
    /// Answered with the configured 5xx status.
    ServerError,
    /// Answered 429 with `Retry-After`.
    RateLimited,
}

/// How many requests got which fault since the handle was made (or last reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultStats {
    pub passed: u64,
    pub dropped: u64,
    pub server_errors: u64,
    pub rate_limited: u64,
}

#[derive(Debug)]
struct Inner {
    config: RwLock<FaultConfig>,
    rng: Mutex<StdRng>,
    passed: AtomicU64,
    dropped: AtomicU64,
    server_errors: AtomicU64,
    rate_limited: AtomicU64,
}

/// Shared, runtime-changeable fault settings of one simulator. Cheap to clone; every clone
/// sees the same settings and counters.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    inner: Arc<Inner>,
}

impl Default for FaultHandle {
    fn default() -> Self {
        FaultHandle::new(FaultConfig::default())
    }
}

fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_entropy(),
    }
}

impl FaultHandle {
    pub fn new(config: FaultConfig) -> Self {
        let rng = rng_for(config.seed);
        FaultHandle {
            inner: Arc::new(Inner {
                config: RwLock::new(config),
                rng: Mutex::new(rng),
                passed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                server_errors: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
            }),
        }
    }

    /// Replace the settings; a configured seed restarts the random sequence so a test that
    /// sets the same config twice sees the same faults twice.
    pub fn set(&self, config: FaultConfig) {
        let rng = rng_for(config.seed);
        *self.inner.rng.lock().unwrap_or_else(|e| e.into_inner()) = rng;
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Back to no faults.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    pub fn config(&self) -> FaultConfig {
        self.inner.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            passed: self.inner.passed.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            server_errors: self.inner.server_errors.load(Ordering::Relaxed),
            rate_limited: self.inner.rate_limited.load(Ordering::Relaxed),
        }
    }

    pub fn reset_stats(&self) {
        self.inner.passed.store(0, Ordering::Relaxed);
        self.inner.dropped.store(0, Ordering::Relaxed);
        self.inner.server_errors.store(0, Ordering::Relaxed);
        self.inner.rate_limited.store(0, Ordering::Relaxed);
    }

    /// Decide the fault for one request and count it.
    pub fn draw(&self) -> (Fault, FaultConfig) {
        let config = self.config();
        let fault = if config.drop_ratio <= 0.0 && config.error_5xx_ratio <= 0.0 && config.rate_limit_429_ratio <= 0.0 {
            Fault::None
        } else {
            let roll: f64 = self.inner.rng.lock().unwrap_or_else(|e| e.into_inner()).gen();
            let drop = config.drop_ratio.clamp(0.0, 1.0);
            let err = drop + config.error_5xx_ratio.clamp(0.0, 1.0);
            let limit = err + config.rate_limit_429_ratio.clamp(0.0, 1.0);
            if roll < drop {
                Fault::Drop
            } else if roll < err {
                Fault::ServerError
            } else if roll < limit {
                Fault::RateLimited
            } else {
                Fault::None
            }
        };
        let counter = match fault {
            Fault::None => &self.inner.passed,
            Fault::Drop => &self.inner.dropped,
            Fault::ServerError => &self.inner.server_errors,
            Fault::RateLimited => &self.inner.rate_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (fault, config)
    }
}

/// Wrap `router` so every request first goes through the faults of `handle`.
pub fn with_faults(router: Router, handle: FaultHandle) -> Router {
    router.layer(axum::middleware::from_fn_with_state(handle, fault_middleware))
}

/// The middleware itself, public so a simulator can place it at a specific layer.
pub async fn fault_middleware(State(handle): State<FaultHandle>, req: Request, next: Next) -> Response {
    let (fault, config) = handle.draw();
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    match fault {
        Fault::None => next.run(req).await,
        Fault::Drop => {
            let mut resp = (
                StatusCode::BAD_GATEWAY,
                "fault injection: this connection should have been dropped (run behind tibridge_lab::serve)",
            )
                .into_response();
            resp.extensions_mut().insert(DropConnection);
            resp
        }
        Fault::ServerError => {
            let status = StatusCode::from_u16(config.error_status)
                .ok()
                .filter(|s| s.is_server_error())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let body = serde_json::json!({
                "message": format!("fault injection: simulated {}", status.as_u16()),
            });
            (status, axum::Json(body)).into_response()
        }
        Fault::RateLimited => {
            let body = serde_json::json!({"message": "Too many API requests."});
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&config.retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app(handle: FaultHandle) -> Router {
        with_faults(Router::new().route("/", get(|| async { "ok" })), handle)
    }

    async fn status_of(router: &Router) -> (StatusCode, bool, Option<String>) {
        let resp = router
            .clone()
            .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap_or_default())
            .await
            .unwrap_or_else(|e| match e {});
        let dropped = resp.extensions().get::<DropConnection>().is_some();
        let retry = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (resp.status(), dropped, retry)
    }

    #[tokio::test]
    async fn default_config_passes_everything() {
        let handle = FaultHandle::default();
        let router = app(handle.clone());
        for _ in 0..20 {
            assert_eq!(status_of(&router).await.0, StatusCode::OK);
        }
        assert_eq!(handle.stats().passed, 20);
    }

    #[tokio::test]
    async fn full_ratios_always_fault() {
        let handle =
            FaultHandle::new(FaultConfig { rate_limit_429_ratio: 1.0, retry_after_secs: 7, ..Default::default() });
        let router = app(handle.clone());
        let (status, dropped, retry) = status_of(&router).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(!dropped);
        assert_eq!(retry.as_deref(), Some("7"));

        handle.set(FaultConfig { drop_ratio: 1.0, ..Default::default() });
        assert!(status_of(&router).await.1);

        handle.set(FaultConfig { error_5xx_ratio: 1.0, error_status: 500, ..Default::default() });
        assert_eq!(status_of(&router).await.0, StatusCode::INTERNAL_SERVER_ERROR);

        handle.clear();
        assert_eq!(status_of(&router).await.0, StatusCode::OK);
        assert_eq!(handle.stats(), FaultStats { passed: 1, dropped: 1, server_errors: 1, rate_limited: 1 });
    }

    #[tokio::test]
    async fn seeded_sequences_repeat() {
        let config = FaultConfig { error_5xx_ratio: 0.5, seed: Some(42), ..Default::default() };
        let handle = FaultHandle::new(config.clone());
        let first: Vec<Fault> = (0..64).map(|_| handle.draw().0).collect();
        handle.set(config);
        let second: Vec<Fault> = (0..64).map(|_| handle.draw().0).collect();
        assert_eq!(first, second);
        let errors = first.iter().filter(|f| **f == Fault::ServerError).count();
        assert!((16..=48).contains(&errors), "{errors} of 64 at ratio 0.5");
    }

    #[test]
    fn config_reads_durations_from_toml_friendly_values() {
        let c: FaultConfig = serde_json::from_str(r#"{"latency":"250ms","drop_ratio":0.1}"#).unwrap_or_default();
        assert_eq!(c.latency, Duration::from_millis(250));
        assert_eq!(c.drop_ratio, 0.1);
        let c: FaultConfig = serde_json::from_str(r#"{"latency":40}"#).unwrap_or_default();
        assert_eq!(c.latency, Duration::from_millis(40));
        assert!(serde_json::from_str::<FaultConfig>(r#"{"latency":"soon"}"#).is_err());
        assert!(FaultConfig::default().is_quiet());
    }
}
