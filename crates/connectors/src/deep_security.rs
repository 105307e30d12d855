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
    BaseUrl {
        sink_id: String,
        url: String,
        reason: String,
    },
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
    pub fn from_config(
        id: String,
        config: &DeepSecurityConfig,
    ) -> Result<Self, DeepSecurityConfigError> {
        let api_key =
            config
                .api_key
                .resolve()
                .map_err(|source| DeepSecurityConfigError::Secret {
                    sink_id: id.clone(),
                    source,
                })?;
        let client = config
            .http
            .builder(id.clone(), Some(DEFAULT_PER_MINUTE))
            .build()?;
        Ok(
            Self::new(id, &config.base_url, config.auth, api_key, client)?
                .with_concurrency(config.concurrency),
        )
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
        Ok(DeepSecuritySink {
            id,
            base_url: url,
            auth,
            api_key,
            concurrency: default_concurrency(),
            client,
        })
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, 32);
        self
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        self.base_url
            .join(path)
            .map_err(|e| format!("cannot build the URL: {e}"))
    }

    fn request_error(&self, what: &str, reason: String) -> HttpError {
        HttpError::Request {
            target: self.id.clone(),
            what: what.to_string(),
            reason,
        }
    }

    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpReply, HttpError> {
        let url = self
            .url(path)
            .map_err(|reason| self.request_error(what, reason))?;
        self.client
            .send(what, |http| {
                let mut request = http
                    .request(method.clone(), url.clone())
                    .header("api-version", "v1")
                    .header(reqwest::header::ACCEPT, "application/json");
                request = match self.auth {
                    AuthMode::OnPrem => request.header("api-secret-key", self.api_key.expose()),
                    AuthMode::CloudOne => request.header(
                        reqwest::header::AUTHORIZATION,
                        format!("ApiKey {}", self.api_key.expose()),
                    ),
                };
                if let Some(body) = &body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
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
        let body =
            serde_json::to_vec(&body).map_err(|e| self.request_error(what, e.to_string()))?;
        let reply = self
            .call(
                what,
                reqwest::Method::POST,
                &format!("{RULES_PATH}/search"),
                Some(body),
            )
            .await?;
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
                .map(|e| NewRule {
                    sha256: &e.indicator.value,
                    description: description(e),
                })
                .collect(),
        };
        let body =
            serde_json::to_vec(&body).map_err(|e| self.request_error(what, e.to_string()))?;
        let reply = self
            .call(what, reqwest::Method::POST, RULES_PATH, Some(body))
            .await?;
        if reply.status.is_success() {
            Ok(Ok(Self::rule_ids(&reply)))
        } else if reply.status.is_client_error() && !matches!(reply.status.as_u16(), 401 | 403) {
            Ok(Err(format!(
                "HTTP {}: {}",
                reply.status.as_u16(),
                reply.excerpt()
            )))
        } else {
            Err(status_error(&self.id, what, &reply))
        }
    }

    /// One entry on its own, after a batch POST was refused: adopt an existing rule or add it.
    async fn add_single(&self, entry: &DesiredEntry) -> Result<ItemOutcome, HttpError> {
        let sha = entry.indicator.value.to_ascii_lowercase();
        if let Some(id) = self.find_rule(&sha).await? {
            return Ok(ItemOutcome::Done {
                remote_id: Some(id),
            });
        }
        match self.post_rules(&[entry]).await? {
            Ok(ids) => match ids.get(&sha) {
                Some(id) => Ok(ItemOutcome::Done {
                    remote_id: Some(id.clone()),
                }),
                None => self.adopt_or_fail(&sha).await,
            },
            Err(reason) => {
                // A duplicate refused in a race still counts: look once more.
                if let Some(id) = self.find_rule(&sha).await? {
                    return Ok(ItemOutcome::Done {
                        remote_id: Some(id),
                    });
                }
                Ok(ItemOutcome::Failed {
                    reason: format!("add rule for sha256 {sha}: {reason}"),
                    retryable: false,
                })
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
        let reply = self
            .call(
                what,
                reqwest::Method::DELETE,
                &format!("{RULES_PATH}/{id}"),
                None,
            )
            .await?;
        if reply.status.is_success() || reply.status.as_u16() == 404 {
            Ok(ItemOutcome::Done {
                remote_id: Some(id),
            })
        } else {
            let retryable =
                !reply.status.is_client_error() || matches!(reply.status.as_u16(), 401 | 403);
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
        SinkStyle::Incremental {
            max_batch: MAX_BATCH,
        }
    }

    fn describe(&self) -> String {
        let auth = match self.auth {
            AuthMode::OnPrem => "api-secret-key",
            AuthMode::CloudOne => "Cloud One ApiKey",
        };
        format!(
            "Deep Security Application Control global rules at {} ({auth})",
            self.base_url
        )
    }

    async fn add(&self, batch: &[DesiredEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; batch.len()];
        let mut valid: Vec<(usize, &DesiredEntry)> = Vec::new();
        for (i, entry) in batch.iter().enumerate() {
            if entry.indicator.kind != IndicatorKind::Sha256 {
                outcomes[i] = Some(ItemOutcome::Failed {
                    reason: format!(
                        "Deep Security global rules take only sha256, not {}",
                        entry.indicator.kind
                    ),
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
            let entries: Vec<&DesiredEntry> = valid.iter().map(|(_, e)| *e).collect();
            let posted = self
                .post_rules(&entries)
                .await
                .map_err(|e| SinkError::Failed {
                    sink_id: self.id.clone(),
                    reason: e.to_string(),
                })?;
            match posted {
                Ok(ids) => {
                    let mut missing = Vec::new();
                    for (i, entry) in &valid {
                        match ids.get(&entry.indicator.value.to_ascii_lowercase()) {
                            Some(id) => {
                                outcomes[*i] = Some(ItemOutcome::Done {
                                    remote_id: Some(id.clone()),
                                })
                            }
                            None => missing.push(*i),
                        }
                    }
                    // Not in the reply: search, so a rule that exists is adopted, not duplicated.
                    let calls: Vec<_> = missing
                        .iter()
                        .map(|&i| self.adopt_or_fail_entry(&batch[i]))
                        .collect();
                    let found = run_batch(&self.id, calls, self.concurrency).await;
                    match found {
                        Ok(found) => {
                            for (i, outcome) in missing.into_iter().zip(found) {
                                outcomes[i] = Some(outcome);
                            }
                        }
                        Err(e) => {
                            for i in missing {
                                outcomes[i] = Some(ItemOutcome::Failed {
                                    reason: e.to_string(),
                                    retryable: true,
                                });
                            }
                        }
                    }
                }
                Err(reason) => {
                    tracing::info!(sink = %self.id, %reason, "batch of rules refused; adding them one by one");
                    let calls: Vec<_> = valid.iter().map(|(_, e)| self.add_single(e)).collect();
                    let singles = run_batch(&self.id, calls, self.concurrency).await?;
                    for ((i, _), outcome) in valid.iter().zip(singles) {
                        outcomes[*i] = Some(outcome);
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(ItemOutcome::Failed {
                    reason: "no outcome recorded".into(),
                    retryable: true,
                })
            })
            .collect())
    }

    async fn remove(&self, batch: &[LedgerEntry]) -> Result<Vec<ItemOutcome>, SinkError> {
        let calls: Vec<_> = batch.iter().map(|entry| self.remove_one(entry)).collect();
        run_batch(&self.id, calls, self.concurrency).await
    }
}

impl DeepSecuritySink {
    async fn adopt_or_fail_entry(&self, entry: &DesiredEntry) -> Result<ItemOutcome, HttpError> {
        self.adopt_or_fail(&entry.indicator.value.to_ascii_lowercase())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;
    use reqwest::StatusCode;

    fn reply(body: &str) -> HttpReply {
        HttpReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
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
            ids.get("7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069")
                .map(String::as_str),
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
        assert!(is_sha256(
            "7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"
        ));
        assert!(!is_sha256("7f83"));
    }

    #[test]
    fn descriptions_are_bounded() {
        let entry = DesiredEntry {
            indicator: tibridge_core::Indicator::from_canonical(
                IndicatorKind::Sha256,
                "a".repeat(64),
            ),
            confidence: None,
            tlp: None,
            expires_at: None,
            last_seen: None,
            provenance: "x".repeat(1000),
            tags: vec![],
        };
        assert_eq!(description(&entry).chars().count(), DESCRIPTION_MAX_CHARS);
    }
}
