//! `misp`: a MISP instance read over its REST API, incrementally (`POST /attributes/restSearch`,
//! contract A.2), with a periodic full reconciliation.
//!
//! Each poll asks for every attribute, live and soft-deleted, changed since the cursor, with the
//! event tags, and filters client-side (see [`super::filter`]) so retractions are seen. Hard
//! deletes leave no trace in restSearch, so every `full_read_every` the source reads everything
//! and says the read was complete; only then may the engine retire what was not seen.
//!
//! Paging is ordered by `Attribute.id`, not by timestamp: an attribute edited while we page
//! keeps its id (so its position), whereas in timestamp order it would jump to the end and
//! shift an unread attribute into a page already read. A page shortened by
//! `enforceWarninglist` is not the end: we stop only when `X-Result-Count +
//! X-Skipped-Elements-Count < limit` (A.2).
//!
//! This module must never report a read as complete unless every page was read, and never
//! turn a MISP outage into an empty read: any failure is `SourceError::Unavailable`.

use super::collect::{Collector, Unmatched};
use super::filter::AttributeFilter;
use super::model::parse_document;
use crate::http::{HttpClient, HttpError, HttpOptions, HttpReply, Secret, SecretError, SecretRef};
use crate::source::{ObservationBatches, ReadSummary, Source, SourceError};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use url::Url;

/// Default attributes per page.
pub const DEFAULT_PAGE_SIZE: u32 = 5000;
/// Default time between full reconciliations (seconds): a day.
pub const DEFAULT_FULL_READ_EVERY: i64 = 86_400;
/// Pages read in one poll at most, so a server that never ends a listing cannot hold a read
/// forever.
pub const MAX_PAGES: u32 = 100_000;

/// `kind = "misp"` source settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MispRestConfig {
    /// The instance root, e.g. `https://misp.example.org` (a sub-path install keeps its path).
    pub url: String,
    /// The MISP auth key: `{ env = "NAME" }` or `{ file = "PATH" }`.
    pub api_key: SecretRef,
    /// Only attributes of published events (a server-side filter on the event).
    #[serde(default)]
    pub published_only: bool,
    /// Only events created by these organisations (names or ids; server-side).
    #[serde(default)]
    pub orgs: Vec<String>,
    /// Only these events (ids or UUIDs; server-side).
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// Client-side attribute filters.
    #[serde(default)]
    pub filter: AttributeFilter,
    /// Attributes per page (default 5000).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Time between full reads, e.g. `24h` (default a day).
    #[serde(default)]
    pub full_read_every: Option<String>,
    #[serde(default)]
    pub http: HttpOptions,
}

/// Why a MISP source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MispConfigError {
    #[error("source {source_id}: url {url:?} is not an http(s) URL: {reason}")]
    Url { source_id: String, url: String, reason: String },
    #[error("source {source_id}: api_key: {error}")]
    Secret { source_id: String, error: SecretError },
    #[error("source {source_id}: full_read_every {value:?} is not a duration like 24h or 7d")]
    Duration { source_id: String, value: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Where the next read resumes: the newest attribute timestamp seen and when the last full
/// read started. Written as `v1:<timestamp>:<full read time>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MispCursor {
    pub timestamp: i64,
    pub full_read_at: i64,
}

impl MispCursor {
    pub fn parse(text: &str) -> Option<MispCursor> {
        let mut parts = text.trim().split(':');
        if parts.next()? != "v1" {
            return None;
        }
        let timestamp = parts.next()?.parse().ok()?;
        let full_read_at = parts.next()?.parse().ok()?;
        Some(MispCursor { timestamp, full_read_at })
    }

    pub fn render(&self) -> String {
        format!("v1:{}:{}", self.timestamp, self.full_read_at)
    }
}

/// Parses a base URL so that joins append to its path.
pub(crate) fn base_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("scheme must be http or https with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Reads attributes from a MISP instance's REST API.
#[derive(Debug, Clone)]
pub struct MispSource {
    id: String,
    base_url: Url,
    api_key: Secret,
    client: HttpClient,
    filter: Arc<AttributeFilter>,
    published_only: bool,
    orgs: Vec<String>,
    event_ids: Vec<String>,
    page_size: u32,
    full_read_every: i64,
}

impl MispSource {
    pub fn from_config(id: String, config: &MispRestConfig) -> Result<Self, MispConfigError> {
        let api_key =
            config.api_key.resolve().map_err(|error| MispConfigError::Secret { source_id: id.clone(), error })?;
        let full_read_every = match &config.full_read_every {
            Some(text) => tibridge_core::timestamp::parse_duration(text)
                .ok_or_else(|| MispConfigError::Duration { source_id: id.clone(), value: text.clone() })?,
            None => DEFAULT_FULL_READ_EVERY,
        };
        let client = config.http.builder(id.clone(), None).build()?;
        let mut source = MispSource::new(id, &config.url, api_key, client)?;
        source.filter = Arc::new(config.filter.clone());
        source.published_only = config.published_only;
        source.orgs = config.orgs.clone();
        source.event_ids = config.event_ids.clone();
        source.page_size = config.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1);
        source.full_read_every = full_read_every.max(0);
        Ok(source)
    }

    pub fn new(id: String, url: &str, api_key: Secret, client: HttpClient) -> Result<Self, MispConfigError> {
        let base_url = base_url(url).map_err(|reason| MispConfigError::Url {
            source_id: id.clone(),
            url: url.to_string(),
            reason,
        })?;
        Ok(MispSource {
            id,
            base_url,
            api_key,
            client,
            filter: Arc::new(AttributeFilter::default()),
            published_only: false,
            orgs: Vec::new(),
            event_ids: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            full_read_every: DEFAULT_FULL_READ_EVERY,
        })
    }

    pub fn with_filter(mut self, filter: AttributeFilter) -> Self {
        self.filter = Arc::new(filter);
        self
    }

    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Seconds between full reads (0 = every read is full).
    pub fn with_full_read_every(mut self, seconds: i64) -> Self {
        self.full_read_every = seconds.max(0);
        self
    }

    pub fn with_published_only(mut self, published_only: bool) -> Self {
        self.published_only = published_only;
        self
    }

    /// The restSearch body for one page (A.2 recipe, without the filters that miss deletions).
    pub fn search_body(&self, page: u32, since: Option<i64>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "returnFormat": "json",
            "page": page,
            "limit": self.page_size,
            "deleted": [0, 1],
            "includeEventTags": 1,
            "includeEventUuid": 1,
            "order": "Attribute.id asc",
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(ts) = since {
                map.insert("attribute_timestamp".into(), ts.into());
            }
            if self.published_only {
                map.insert("published".into(), true.into());
            }
            if !self.orgs.is_empty() {
                map.insert("org".into(), self.orgs.clone().into());
            }
            if !self.event_ids.is_empty() {
                map.insert("eventid".into(), self.event_ids.clone().into());
            }
        }
        body
    }

    fn unavailable(&self, reason: impl Into<String>) -> SourceError {
        SourceError::Unavailable { source_id: self.id.clone(), reason: reason.into() }
    }

    async fn fetch_page(&self, page: u32, since: Option<i64>) -> Result<HttpReply, SourceError> {
        let url = self
            .base_url
            .join("attributes/restSearch")
            .map_err(|e| self.unavailable(format!("cannot build the URL: {e}")))?;
        let body = serde_json::to_vec(&self.search_body(page, since)).map_err(|e| self.unavailable(e.to_string()))?;
        let reply = self
            .client
            .send(&format!("attributes restSearch page {page}"), |http| {
                Ok(http
                    .post(url.clone())
                    .header(reqwest::header::AUTHORIZATION, self.api_key.expose())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone()))
            })
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        match reply.status.as_u16() {
            200..=299 => Ok(reply),
            401 | 403 => Err(self.unavailable(format!(
                "MISP refused the API key (HTTP {}): {}",
                reply.status.as_u16(),
                reply.excerpt()
            ))),
            status => {
                Err(self.unavailable(format!("attributes restSearch page {page}: HTTP {status}: {}", reply.excerpt())))
            }
        }
    }
}

fn header_count(reply: &HttpReply, name: &str) -> Option<u64> {
    reply.headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Parses one reply body on a blocking thread, feeding the collector; returns the collector,
/// the number of attributes parsed, and the parse error if any.
async fn parse_on_blocking_thread(
    mut collector: Collector,
    body: Vec<u8>,
) -> Result<(Collector, u64, Option<String>), String> {
    tokio::task::spawn_blocking(move || {
        let before = collector.items_read;
        let result = parse_document(&body, &mut |item| collector.item(item));
        let parsed = collector.items_read - before;
        (collector, parsed, result.err().map(|e| e.to_string()))
    })
    .await
    .map_err(|e| format!("the parser stopped: {e}"))
}

#[async_trait]
impl Source for MispSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!(
            "MISP REST API at {} (attributes restSearch, {} per page, full read every {} s)",
            self.base_url, self.page_size, self.full_read_every
        )
    }

    async fn read(&self, cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
        let started = tibridge_core::timestamp::now();
        let previous = cursor.as_deref().and_then(MispCursor::parse);
        let full = super::full_read_due(previous.map(|c| c.full_read_at), started, self.full_read_every);
        let since = if full { None } else { previous.map(|c| c.timestamp) };

        let mut collector = Collector::new(&self.id, out);
        collector.set_filter(Some(self.filter.clone()), if full { Unmatched::Drop } else { Unmatched::Retract });
        let mut page = 1u32;
        loop {
            let reply = self.fetch_page(page, since).await?;
            let result_count = header_count(&reply, "x-result-count");
            let skipped_count = header_count(&reply, "x-skipped-elements-count").unwrap_or(0);
            let (back, parsed, error) =
                parse_on_blocking_thread(collector, reply.body).await.map_err(|e| self.unavailable(e))?;
            collector = back;
            if let Some(error) = error {
                return Err(self.unavailable(format!("attributes restSearch page {page} is not MISP JSON: {error}")));
            }
            if collector.cancelled {
                return Err(SourceError::Cancelled { source_id: self.id.clone() });
            }
            let count = result_count.unwrap_or(parsed);
            if count + skipped_count < u64::from(self.page_size) {
                break;
            }
            if page >= MAX_PAGES {
                return Err(self.unavailable(format!("gave up after {MAX_PAGES} pages without reaching the end")));
            }
            page += 1;
        }

        let max_seen = collector.max_timestamp;
        let items_read = collector.items_read;
        let (skipped, cancelled) = tokio::task::spawn_blocking(move || collector.finish())
            .await
            .map_err(|e| self.unavailable(format!("the parser stopped: {e}")))?;
        if cancelled {
            return Err(SourceError::Cancelled { source_id: self.id.clone() });
        }
        let timestamp = match (previous.map(|c| c.timestamp), max_seen) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(0),
        };
        let full_read_at = if full { started } else { previous.map_or(started, |c| c.full_read_at) };
        Ok(ReadSummary {
            complete: full,
            items_read,
            skipped,
            next_cursor: Some(MispCursor { timestamp, full_read_at }.render()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_means_full_read() {
        let c = MispCursor { timestamp: 1_700_000_000, full_read_at: 1_699_990_000 };
        assert_eq!(MispCursor::parse(&c.render()), Some(c));
        assert_eq!(MispCursor::parse("v2:1:2"), None);
        assert_eq!(MispCursor::parse("v1:x:2"), None);
        assert!(super::super::full_read_due(None, 10, 100));
        assert!(!super::super::full_read_due(Some(c.full_read_at), 1_699_990_050, 100));
        assert!(super::super::full_read_due(Some(c.full_read_at), 1_699_990_100, 100));
    }

    #[test]
    fn the_search_body_never_filters_what_would_hide_deletions() {
        let client = crate::http::HttpClientBuilder::new("m").build().expect("client");
        let source = MispSource::new("m".into(), "https://misp.example/sub", Secret::new("k"), client)
            .expect("source")
            .with_filter(AttributeFilter {
                to_ids_only: true,
                types: vec!["domain".into()],
                ..AttributeFilter::default()
            })
            .with_page_size(500);
        let body = source.search_body(3, Some(1_700_000_000));
        assert_eq!(body["page"], 3);
        assert_eq!(body["limit"], 500);
        assert_eq!(body["deleted"], serde_json::json!([0, 1]));
        assert_eq!(body["includeEventTags"], 1);
        assert_eq!(body["attribute_timestamp"], 1_700_000_000);
        assert!(body.get("to_ids").is_none() && body.get("type").is_none() && body.get("tags").is_none());
        assert_eq!(source.base_url.join("attributes/restSearch").expect("join").path(), "/sub/attributes/restSearch");
    }

    // ---- against the lab MISP (contract A.2 as `tibridge_lab::misp` plays it)

    use crate::http::{HttpClientBuilder, RetryPolicy};
    use std::time::Duration;
    use tibridge_core::Observation;
    use tibridge_lab::misp::{generate_dataset, MispState};
    use tibridge_lab::{FaultConfig, FaultHandle};

    const KEY: &str = "lab-misp-key-00000000000000000000000000";

    async fn lab(faults: FaultConfig) -> (tibridge_lab::RunningServer, Arc<MispState>) {
        let state = MispState::new(generate_dataset(4, 25, 42), KEY);
        let server = tibridge_lab::serve(
            tibridge_lab::misp::router(state.clone()),
            FaultHandle::new(faults),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("lab serves");
        (server, state)
    }

    fn source(server: &tibridge_lab::RunningServer, key: &str) -> MispSource {
        let retry = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            max_total: Duration::from_secs(20),
        };
        let client = HttpClientBuilder::new("misp-test").retry(retry).build().expect("client");
        MispSource::new("misp-test".into(), &server.base_url(), Secret::new(key), client)
            .expect("source")
            .with_page_size(7)
    }

    async fn read(source: &MispSource, cursor: Option<String>) -> (Result<ReadSummary, SourceError>, Vec<Observation>) {
        crate::source::read_to_end(source, cursor).await
    }

    #[tokio::test]
    async fn full_then_incremental_reads_see_new_and_soft_deleted_attributes() {
        let (server, state) =
            lab(FaultConfig { error_5xx_ratio: 0.2, drop_ratio: 0.1, seed: Some(11), ..FaultConfig::default() }).await;
        let source = source(&server, KEY);

        let (summary, _) = read(&source, None).await;
        let summary = summary.expect("full read");
        assert!(summary.complete);
        assert_eq!(summary.items_read, state.attribute_count() as u64, "every page read through the faults");
        let cursor = summary.next_cursor.expect("cursor");

        let event = state.add_event("fresh intel", &["tlp:green"], true);
        let fresh = state.add_attribute(event, "domain", "fresh.example", true, &[]).expect("add");
        let gone = state.add_attribute(event, "domain", "gone.example", true, &[]).expect("add");
        state.soft_delete_attribute(&gone.uuid).expect("soft delete");

        let (summary, obs) = read(&source, Some(cursor.clone())).await;
        let summary = summary.expect("incremental read");
        assert!(!summary.complete, "an incremental read never retires anything");
        assert!(summary.items_read < 10, "only what changed: {}", summary.items_read);
        let fresh_obs = obs.iter().find(|o| o.source_ref == fresh.uuid).expect("fresh seen");
        assert!(
            !fresh_obs.deleted && fresh_obs.tlp == Some(tibridge_core::Tlp::Green),
            "event tag inherited: {fresh_obs:?}"
        );
        assert!(obs.iter().any(|o| o.source_ref == gone.uuid && o.deleted), "soft delete seen");
        let next = MispCursor::parse(summary.next_cursor.as_deref().unwrap_or("")).expect("cursor");
        assert_eq!(next.full_read_at, MispCursor::parse(&cursor).expect("cursor").full_read_at);
        assert!(next.timestamp >= gone.timestamp);

        // A full read is due again once `full_read_every` has passed.
        let source = source.with_full_read_every(0);
        let (summary, _) = read(&source, summary.next_cursor).await;
        assert!(summary.expect("full").complete);
    }

    #[tokio::test]
    async fn an_attribute_that_stops_matching_the_filter_is_retracted() {
        let (server, state) = lab(FaultConfig::default()).await;
        let source =
            source(&server, KEY).with_filter(AttributeFilter { to_ids_only: true, ..AttributeFilter::default() });
        let event = state.add_event("e", &[], true);
        let a = state.add_attribute(event, "domain", "flip.example", true, &[]).expect("add");
        let (summary, obs) = read(&source, None).await;
        let cursor = summary.expect("full").next_cursor;
        assert!(obs.iter().any(|o| o.source_ref == a.uuid && !o.deleted));
        state.edit_attribute(&a.uuid, |x| x.to_ids = false).expect("edit");
        let (summary, obs) = read(&source, cursor).await;
        assert!(summary.is_ok());
        assert!(obs.iter().any(|o| o.source_ref == a.uuid && o.deleted), "to_ids switched off = retraction: {obs:?}");
    }

    #[tokio::test]
    async fn a_broken_or_refusing_misp_is_unavailable_never_empty() {
        let (server, state) = lab(FaultConfig::default()).await;
        let (summary, _) = read(&source(&server, "wrong-key"), None).await;
        let Err(SourceError::Unavailable { reason, .. }) = summary else { panic!("expected Unavailable") };
        assert!(reason.contains("refused") && !reason.contains("wrong-key"), "{reason}");
        state.set_down(true);
        let src = source(&server, KEY);
        let src = MispSource {
            client: HttpClientBuilder::new("m")
                .retry(RetryPolicy {
                    max_attempts: 2,
                    initial_backoff: Duration::from_millis(1),
                    ..RetryPolicy::default()
                })
                .build()
                .expect("client"),
            ..src
        };
        let (summary, _) = read(&src, None).await;
        assert!(matches!(summary, Err(SourceError::Unavailable { .. })));
    }
}
