//! Deep Security Manager / Cloud One Workload Security sink: SHA-256 hashes as Application
//! Control global block rules, contract `trendmicro.md` §3.
//!
//! Rules are added many per call; their IDs are taken from the reply by matching the hash
//! case-insensitively (the reply may list pre-existing rules too, §3.2), and a rule that already
//! exists is adopted rather than duplicated. The rule ID is the ledger's remote id, so removal is
//! one DELETE per rule, and a 404 means the rule is already gone. This module must never delete
//! a rule by anything but the ID the ledger recorded (or, for an entry without one, the ID of
//! the rule whose hash equals the entry's), and never send anything but SHA-256 hashes.

use crate::apex_central::run_batch;
use crate::http::{HttpClient, HttpError, HttpOptions, HttpReply, Secret, SecretError, SecretRef};
use crate::sink::{ItemOutcome, Sink, SinkError, SinkStyle};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tibridge_core::plan::LedgerEntry;
use tibridge_core::policy::DesiredEntry;
use tibridge_core::IndicatorKind;
use url::Url;

/// Rules sent in one POST (the API's own cap is unpublished, §3.2; this keeps bodies small).
pub const MAX_BATCH: usize = 100;
/// Deep Security's default per-key rate limit (§3.3), used when the config sets none.
pub const DEFAULT_PER_MINUTE: u32 = 500;
/// Longest rule description sent (the API's limit is unpublished; this stays well inside).
pub const DESCRIPTION_MAX_CHARS: usize = 255;
const RULES_PATH: &str = "applicationcontrolglobalrules";

/// How the API key is presented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Deep Security Manager on-premises (and legacy keys): `api-secret-key: <key>`.
    #[default]
    OnPrem,
    /// Cloud One Workload Security: `Authorization: ApiKey <key>`.
    CloudOne,
}

/// `kind = "deep_security"` sink settings (policy keys are the engine's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepSecurityConfig {
    /// `https://<dsm>:4119/api` or `https://workload.<region>.cloudone.trendmicro.com/api`.
    pub base_url: String,
    /// `on-prem` (default, `api-secret-key`) or `cloud-one` (`Authorization: ApiKey`).
    #[serde(default)]
    pub auth: AuthMode,
    /// The API key: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub api_key: SecretRef,
    /// Requests in flight at once when deleting (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub http: HttpOptions,
}

fn default_concurrency() -> usize {
    4
}

/// Why a Deep Security sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeepSecurityConfigError {
    #[error("sink {sink_id}: base_url {url:?} is not an http(s) URL: {reason}")]
    BaseUrl { sink_id: String, url: String, reason: String },
    #[error("sink {sink_id}: api_key: {source}")]
    Secret {
        sink_id: String,
        #[source]
        source: SecretError,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Writes SHA-256 block rules to Deep Security / Cloud One Workload Security.
#[derive(Debug, Clone)]
pub struct DeepSecuritySink {
    id: String,
    base_url: Url,
    auth: AuthMode,
    api_key: Secret,
    concurrency: usize,
    client: HttpClient,
}

/// A rule as the API lists it (only what tibridge reads).
#[derive(Debug, Clone, Deserialize)]
struct RuleListed {
    #[serde(rename = "ID", default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RulesEnvelope {
    #[serde(rename = "applicationControlGlobalRules", default)]
    rules: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct NewRules<'a> {
    #[serde(rename = "applicationControlGlobalRules")]
    rules: Vec<NewRule<'a>>,
}

#[derive(Serialize)]
struct NewRule<'a> {
    sha256: &'a str,
    description: String,
}

impl DeepSecuritySink {
    pub fn from_config(id: String, config: &DeepSecurityConfig) -> Result<Self, DeepSecurityConfigError> {
        let api_key = config
            .api_key
            .resolve()
            .map_err(|source| DeepSecurityConfigError::Secret { sink_id: id.clone(), source })?;
        let client = config.http.builder(id.clone(), Some(DEFAULT_PER_MINUTE)).build()?;
        Ok(Self::new(id, &config.base_url, config.auth, api_key, client)?.with_concurrency(config.concurrency))
    }

    pub fn new(
        id: String,
        base_url: &str,
        auth: AuthMode,
        api_key: Secret,
        client: HttpClient,
    ) -> Result<Self, DeepSecurityConfigError> {
        let err = |reason: String| DeepSecurityConfigError::BaseUrl {
            sink_id: id.clone(),
            url: base_url.to_string(),
            reason,
        };
        let mut url = Url::parse(base_url.trim()).map_err(|e| err(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(err("scheme must be http or https with a host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("must not have a query or fragment".into()));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(DeepSecuritySink { id, base_url: url, auth, api_key, concurrency: default_concurrency(), client })
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, 32);
        self
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        self.base_url.join(path).map_err(|e| format!("cannot build the URL: {e}"))
    }

    fn request_error(&self, what: &str, reason: String) -> HttpError {
        HttpError::Request { target: self.id.clone(), what: what.to_string(), reason }
    }

    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpReply, HttpError> {
        let url = self.url(path).map_err(|reason| self.request_error(what, reason))?;
        self.client
            .send(what, |http| {
                let mut request = http
                    .request(method.clone(), url.clone())
                    .header("api-version", "v1")
                    .header(reqwest::header::ACCEPT, "application/json");
                request = match self.auth {
                    AuthMode::OnPrem => request.header("api-secret-key", self.api_key.expose()),
                    AuthMode::CloudOne => {
                        request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {}", self.api_key.expose()))
                    }
                };
                if let Some(body) = &body {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                }
                Ok(request)
            })
            .await
    }

    /// Rules in a reply, keyed by lower-case SHA-256 → rule ID.
    fn rule_ids(reply: &HttpReply) -> HashMap<String, String> {
        let envelope: RulesEnvelope = serde_json::from_slice(&reply.body).unwrap_or_default();
        envelope
            .rules
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RuleListed>(v).ok())
            .filter_map(|r| {
                let id = match r.id? {
                    serde_json::Value::Number(n) => n.as_u64()?.to_string(),
                    serde_json::Value::String(s) if is_rule_id(&s) => s,
                    _ => return None,
                };
                Some((r.sha256?.trim().to_ascii_lowercase(), id))
            })
            .collect()
    }

    /// The ID of the rule blocking `sha256`, if there is one.
    async fn find_rule(&self, sha256: &str) -> Result<Option<String>, HttpError> {
        let what = "search global rule";
        let body = serde_json::json!({
            "maxItems": 10,
            "searchCriteria": [{"fieldName": "sha256", "stringTest": "equal", "stringValue": sha256, "stringWildcards": false}],
            "sortByObjectID": true,
        });
        let body = serde_json::to_vec(&body).map_err(|e| self.request_error(what, e.to_string()))?;
        let reply = self.call(what, reqwest::Method::POST, &format!("{RULES_PATH}/search"), Some(body)).await?;
        if !reply.status.is_success() {
            return Err(status_error(&self.id, what, &reply));
        }
        Ok(Self::rule_ids(&reply).remove(&sha256.to_ascii_lowercase()))
    }

    /// POSTs rules; `Ok(Some(map))` on success, `Ok(None)` when the API refused the request
    /// as such (4xx), `Err` when the API could not be reached.
    async fn post_rules(
        &self,
        entries: &[&DesiredEntry],
    ) -> Result<Result<HashMap<String, String>, String>, HttpError> {
        let what = "add global rules";
        let body = NewRules {
            rules: entries
                .iter()
                .map(|e| NewRule { sha256: &e.indicator.value, description: description(e) })
                .collect(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| self.request_error(what, e.to_string()))?;
        let reply = self.call(what, reqwest::Method::POST, RULES_PATH, Some(body)).await?;
        if reply.status.is_success() {
            Ok(Ok(Self::rule_ids(&reply)))
        } else if reply.status.is_client_error() && !matches!(reply.status.as_u16(), 401 | 403) {
            Ok(Err(format!("HTTP {}: {}", reply.status.as_u16(), reply.excerpt())))
        } else {
            Err(status_error(&self.id, what, &reply))
        }
    }

    /// One entry on its own, after a batch POST was refused: adopt an existing rule or add it.
    async fn add_single(&self, entry: &DesiredEntry) -> Result<ItemOutcome, HttpError> {
        let sha = entry.indicator.value.to_ascii_lowercase();
        if let Some(id) = self.find_rule(&sha).await? {
            return Ok(ItemOutcome::Done { remote_id: Some(id) });
        }
        match self.post_rules(&[entry]).await? {
            Ok(ids) => match ids.get(&sha) {
                Some(id) => Ok(ItemOutcome::Done { remote_id: Some(id.clone()) }),
                None => self.adopt_or_fail(&sha).await,
            },
            Err(reason) => {
                // A duplicate refused in a race still counts: look once more.
                if let Some(id) = self.find_rule(&sha).await? {
                    return Ok(ItemOutcome::Done { remote_id: Some(id) });
                }
                Ok(ItemOutcome::Failed { reason: format!("add rule for sha256 {sha}: {reason}"), retryable: false })
            }
        }
    }

    async fn adopt_or_fail(&self, sha: &str) -> Result<ItemOutcome, HttpError> {
        match self.find_rule(sha).await? {
            Some(id) => Ok(ItemOutcome::Done { remote_id: Some(id) }),
            None => Ok(ItemOutcome::Failed {
                reason: format!("add rule for sha256 {sha}: the reply did not list it and a search does not find it"),
                retryable: true,
            }),
        }
    }

    async fn remove_one(&self, entry: &LedgerEntry) -> Result<ItemOutcome, HttpError> {
        let id = match entry.remote_id.as_deref().map(str::trim) {
            Some(id) if is_rule_id(id) => id.to_string(),
            Some(other) => {
                return Ok(ItemOutcome::Failed {
                    reason: format!(
                        "ledger remote id {:?} for {} is not a Deep Security rule ID",
                        other, entry.indicator
                    ),
                    retryable: false,
                })
            }
            None => match self.find_rule(&entry.indicator.value).await? {
                Some(id) => id,
                None => return Ok(ItemOutcome::Done { remote_id: None }),
            },
        };
        let what = "delete global rule";
        let reply = self.call(what, reqwest::Method::DELETE, &format!("{RULES_PATH}/{id}"), None).await?;
        if reply.status.is_success() || reply.status.as_u16() == 404 {
            Ok(ItemOutcome::Done { remote_id: Some(id) })
        } else {
            let retryable = !reply.status.is_client_error() || matches!(reply.status.as_u16(), 401 | 403);
            Ok(ItemOutcome::Failed {
                reason: format!(
                    "delete rule {id} ({}): HTTP {}: {}",
                    entry.indicator,
                    reply.status.as_u16(),
                    reply.excerpt()
                ),
                retryable,
            })
        }
    }
}

fn status_error(target: &str, what: &str, reply: &HttpReply) -> HttpError {
    HttpError::Status {
        target: target.to_string(),
        what: what.to_string(),
        status: reply.status.as_u16(),
        attempts: 1,
        body_excerpt: reply.excerpt(),
    }
}

/// Rule IDs are integers; anything else never goes into a URL path.
fn is_rule_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

fn description(entry: &DesiredEntry) -> String {
    let text = format!("tibridge: {}", entry.provenance);
    match text.char_indices().nth(DESCRIPTION_MAX_CHARS) {
        Some((end, _)) => text[..end].to_string(),
        None => text,
    }
}

fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait]
impl Sink for DeepSecuritySink {
    fn id(&self) -> &str {
        &self.id
    }

    fn style(&self) -> SinkStyle {
        SinkStyle::Incremental { max_batch: MAX_BATCH }
    }

    fn describe(&self) -> String {
        let auth = match self.auth {
            AuthMode::OnPrem => "api-secret-key",
            AuthMode::CloudOne => "Cloud One ApiKey",
        };
        format!("Deep Security Application Control global rules at {} ({auth})", self.base_url)
    }

    async fn add(&self, batch: &[DesiredEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; batch.len()];
        let mut valid: Vec<(usize, &DesiredEntry)> = Vec::new();
        for (i, entry) in batch.iter().enumerate() {
            if entry.indicator.kind != IndicatorKind::Sha256 {
                outcomes[i] = Some(ItemOutcome::Failed {
                    reason: format!("Deep Security global rules take only sha256, not {}", entry.indicator.kind),
                    retryable: false,
                });
            } else if !is_sha256(&entry.indicator.value) {
                outcomes[i] = Some(ItemOutcome::Failed {
                    reason: format!("{} is not 64 hex digits", entry.indicator),
                    retryable: false,
                });
            } else {
                valid.push((i, entry));
            }
        }
        if !valid.is_empty() {
            self.add_valid(&valid, &mut outcomes).await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(ItemOutcome::Failed { reason: "no outcome recorded".into(), retryable: true }))
            .collect())
    }

    async fn remove(&self, batch: &[LedgerEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let calls: Vec<_> = batch.iter().map(|entry| self.remove_one(entry)).collect();
        run_batch(&self.id, calls, self.concurrency).await
    }
}

impl DeepSecuritySink {
    async fn adopt_or_fail_entry(&self, entry: &DesiredEntry) -> Result<ItemOutcome, HttpError> {
        self.adopt_or_fail(&entry.indicator.value.to_ascii_lowercase()).await
    }

    async fn find_entry(&self, entry: &DesiredEntry) -> Result<Option<String>, HttpError> {
        self.find_rule(&entry.indicator.value.to_ascii_lowercase()).await
    }

    /// Adds valid SHA-256 entries: one POST for all; if the API refuses it (a rule already
    /// exists), adopt the existing rules and POST the rest once more; if that is refused too,
    /// one by one.
    async fn add_valid(
        &self,
        valid: &[(usize, &DesiredEntry)],
        outcomes: &mut [Option<ItemOutcome>],
    ) -> Result<(), SinkError> {
        let batch_failed = |e: HttpError| SinkError::Failed { sink_id: self.id.clone(), reason: e.to_string() };
        let entries: Vec<&DesiredEntry> = valid.iter().map(|(_, e)| *e).collect();
        let reason = match self.post_rules(&entries).await.map_err(batch_failed)? {
            Ok(ids) => {
                self.take_ids(valid, &ids, outcomes).await;
                return Ok(());
            }
            Err(reason) => reason,
        };
        tracing::info!(sink = %self.id, %reason, "batch of rules refused; adopting existing rules first");
        let searches: Vec<_> = valid.iter().map(|(_, e)| self.find_entry(e)).collect();
        let found: Vec<Result<Option<String>, HttpError>> =
            stream::iter(searches).buffered(self.concurrency).collect().await;
        let mut remaining = Vec::new();
        for (&(i, entry), found) in valid.iter().zip(found) {
            match found {
                Ok(Some(id)) => outcomes[i] = Some(ItemOutcome::Done { remote_id: Some(id) }),
                Ok(None) => remaining.push((i, entry)),
                Err(e) => {
                    outcomes[i] = Some(ItemOutcome::Failed { retryable: e.is_retryable(), reason: e.to_string() })
                }
            }
        }
        if remaining.is_empty() {
            return Ok(());
        }
        let entries: Vec<&DesiredEntry> = remaining.iter().map(|(_, e)| *e).collect();
        match self.post_rules(&entries).await.map_err(batch_failed)? {
            Ok(ids) => self.take_ids(&remaining, &ids, outcomes).await,
            Err(reason) => {
                tracing::info!(sink = %self.id, %reason, "batch of new rules refused; adding them one by one");
                let calls: Vec<_> = remaining.iter().map(|(_, e)| self.add_single(e)).collect();
                let singles = run_batch(&self.id, calls, self.concurrency).await?;
                for (&(i, _), outcome) in remaining.iter().zip(singles) {
                    outcomes[i] = Some(outcome);
                }
            }
        }
        Ok(())
    }

    /// Records the rule IDs a create reply lists; entries it does not list are searched for.
    async fn take_ids(
        &self,
        entries: &[(usize, &DesiredEntry)],
        ids: &HashMap<String, String>,
        outcomes: &mut [Option<ItemOutcome>],
    ) {
        let mut missing = Vec::new();
        for &(i, entry) in entries {
            match ids.get(&entry.indicator.value.to_ascii_lowercase()) {
                Some(id) => outcomes[i] = Some(ItemOutcome::Done { remote_id: Some(id.clone()) }),
                None => missing.push((i, entry)),
            }
        }
        if missing.is_empty() {
            return;
        }
        let calls: Vec<_> = missing.iter().map(|(_, e)| self.adopt_or_fail_entry(e)).collect();
        match run_batch(&self.id, calls, self.concurrency).await {
            Ok(found) => {
                for (&(i, _), outcome) in missing.iter().zip(found) {
                    outcomes[i] = Some(outcome);
                }
            }
            Err(e) => {
                for &(i, _) in &missing {
                    outcomes[i] = Some(ItemOutcome::Failed { reason: e.to_string(), retryable: true });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;
    use reqwest::StatusCode;

    fn reply(body: &str) -> HttpReply {
        HttpReply { status: StatusCode::OK, headers: HeaderMap::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn rule_ids_are_matched_case_insensitively_and_sanitised() {
        let r = reply(
            r#"{"applicationControlGlobalRules":[
                {"ID":71,"sha256":"7F83B1657FF1FC53B92DC18148A1D65DFC2D4B1FA3D677284ADDD200126D9069","action":"block"},
                {"ID":"72","sha256":"aa"},
                {"ID":"../etc","sha256":"bb"},
                {"sha256":"cc"},
                "garbage"
            ]}"#,
        );
        let ids = DeepSecuritySink::rule_ids(&r);
        assert_eq!(
            ids.get("7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069").map(String::as_str),
            Some("71")
        );
        assert_eq!(ids.get("aa").map(String::as_str), Some("72"));
        assert!(!ids.contains_key("bb") && !ids.contains_key("cc"));
        assert!(DeepSecuritySink::rule_ids(&reply("not json")).is_empty());
    }

    #[test]
    fn only_numeric_ids_and_real_hashes_pass() {
        assert!(is_rule_id("71"));
        assert!(!is_rule_id("71/../1") && !is_rule_id("") && !is_rule_id("-1"));
        assert!(is_sha256("7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"));
        assert!(!is_sha256("7f83"));
    }

    #[test]
    fn descriptions_are_bounded() {
        let entry = DesiredEntry {
            indicator: tibridge_core::Indicator::from_canonical(IndicatorKind::Sha256, "a".repeat(64)),
            confidence: None,
            tlp: None,
            expires_at: None,
            last_seen: None,
            provenance: "x".repeat(1000),
            tags: vec![],
        };
        assert_eq!(description(&entry).chars().count(), DESCRIPTION_MAX_CHARS);
    }

    // ---- against the lab simulator (contract §3 as `tibridge_lab::deep_security` plays it)

    use crate::http::{HttpClientBuilder, RetryPolicy};
    use std::time::Duration;
    use tibridge_lab::deep_security::{DeepSecurityConfig as LabConfig, DeepSecurityState, DsMode};
    use tibridge_lab::{FaultConfig, FaultHandle};

    const KEY: &str = "lab-ds-api-key-0123456789";

    fn sha(n: u8) -> String {
        format!("{:064x}", u64::from(n) * 0x1_0000_0001 + 7)
    }

    fn entry(kind: IndicatorKind, value: &str) -> DesiredEntry {
        DesiredEntry {
            indicator: tibridge_core::Indicator::from_canonical(kind, value),
            confidence: Some(80),
            tlp: None,
            expires_at: None,
            last_seen: None,
            provenance: format!("misp event e-1 attribute for {value}"),
            tags: vec![],
        }
    }

    async fn lab(
        mode: DsMode,
        faults: FaultConfig,
    ) -> (tibridge_lab::RunningServer, std::sync::Arc<DeepSecurityState>) {
        let state = DeepSecurityState::new(LabConfig { mode, ..LabConfig::default() });
        let server = tibridge_lab::serve(
            tibridge_lab::deep_security::router(state.clone()),
            FaultHandle::new(faults),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("lab serves");
        (server, state)
    }

    fn sink(server: &tibridge_lab::RunningServer, auth: AuthMode) -> DeepSecuritySink {
        let retry = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_total: Duration::from_secs(20),
        };
        let client = HttpClientBuilder::new("ds-test").retry(retry).build().expect("client");
        DeepSecuritySink::new("ds-test".into(), &format!("{}/api", server.base_url()), auth, Secret::new(KEY), client)
            .expect("sink")
    }

    #[tokio::test]
    async fn adds_in_one_call_adopts_existing_rules_and_removes_by_id() {
        let (server, state) = lab(DsMode::OnPrem, FaultConfig::default()).await;
        let existing = state.seed_rule(&sha(1), "made by an administrator");
        let sink = sink(&server, AuthMode::OnPrem);

        // Fresh rules only: one POST.
        let before = state.request_count();
        let out = sink
            .add(&[entry(IndicatorKind::Sha256, &sha(2)), entry(IndicatorKind::Sha256, &sha(3))])
            .await
            .expect("add");
        assert_eq!(state.request_count() - before, 1, "many rules per call");
        let ids: Vec<String> = out
            .iter()
            .map(|o| match o {
                ItemOutcome::Done { remote_id: Some(id) } => id.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();

        // A batch holding an existing rule (lower-case here, upper-case there) and a new one.
        let out = sink
            .add(&[
                entry(IndicatorKind::Sha256, &sha(1)),
                entry(IndicatorKind::Sha256, &sha(4)),
                entry(IndicatorKind::Sha1, "3395856ce81f2b7382dee72602f798b642f14140"),
            ])
            .await
            .expect("add");
        assert_eq!(out[0], ItemOutcome::Done { remote_id: Some(existing.id.to_string()) }, "adopted, not duplicated");
        assert!(matches!(&out[1], ItemOutcome::Done { remote_id: Some(_) }));
        assert!(matches!(&out[2], ItemOutcome::Failed { retryable: false, .. }));
        assert_eq!(state.rules().len(), 4);
        let rule = state.rules().into_iter().find(|r| r.sha256.eq_ignore_ascii_case(&sha(2))).expect("rule");
        assert!(rule.description.starts_with("tibridge: misp event e-1"));

        // Remove by ID; again (404 = gone = done); and an entry without a recorded ID.
        let ledger = |value: String, remote_id: Option<String>| LedgerEntry {
            indicator: tibridge_core::Indicator::from_canonical(IndicatorKind::Sha256, value),
            remote_id,
            added_at: 0,
            expires_at: None,
        };
        let removals =
            [ledger(sha(2), Some(ids[0].clone())), ledger(sha(2), Some(ids[0].clone())), ledger(sha(3), None)];
        let out = sink.remove(&removals).await.expect("remove");
        assert!(out.iter().all(|o| matches!(o, ItemOutcome::Done { .. })), "{out:?}");
        let left: Vec<String> = state.rules().into_iter().map(|r| r.sha256.to_ascii_lowercase()).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&sha(1)) && left.contains(&sha(4)));

        // A remote id that is not a rule ID never reaches a URL.
        let out = sink.remove(&[ledger(sha(4), Some("1/../../x".into()))]).await.expect("remove");
        assert!(matches!(&out[0], ItemOutcome::Failed { retryable: false, .. }));
    }

    #[tokio::test]
    async fn cloud_one_keys_and_a_flaky_rate_limited_manager_still_converge() {
        let faults = FaultConfig {
            error_5xx_ratio: 0.2,
            rate_limit_429_ratio: 0.2,
            retry_after_secs: 0,
            seed: Some(7),
            ..FaultConfig::default()
        };
        let (server, state) = lab(DsMode::C1ws, faults).await;
        let sink = sink(&server, AuthMode::CloudOne);
        let batch: Vec<DesiredEntry> = (10..40).map(|n| entry(IndicatorKind::Sha256, &sha(n))).collect();
        let out = sink.add(&batch).await.expect("add");
        assert!(out.iter().all(|o| matches!(o, ItemOutcome::Done { remote_id: Some(_) })), "{out:?}");
        assert_eq!(state.rules().len(), 30);
        // Re-adding the same batch (a crash before the ledger was written) duplicates nothing.
        let again = sink.add(&batch).await.expect("add again");
        assert_eq!(again, out);
        assert_eq!(state.rules().len(), 30);
    }

    #[tokio::test]
    async fn a_wrong_key_fails_the_batch_without_printing_the_key() {
        let (server, _state) = lab(DsMode::OnPrem, FaultConfig::default()).await;
        let client = HttpClientBuilder::new("ds-test").build().expect("client");
        let sink = DeepSecuritySink::new(
            "ds-test".into(),
            &format!("{}/api", server.base_url()),
            AuthMode::OnPrem,
            Secret::new("wrong-key-123"),
            client,
        )
        .expect("sink");
        let err = sink.add(&[entry(IndicatorKind::Sha256, &sha(1))]).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("401"), "{text}");
        assert!(!text.contains("wrong-key-123"), "{text}");
    }
}
