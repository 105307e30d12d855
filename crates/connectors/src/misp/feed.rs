//! `misp_feed`: a MISP feed read over HTTP(S) — `manifest.json` plus one `<event uuid>.json` per
//! event (contract A.6), no API key.
//!
//! The manifest is fetched with `If-None-Match` so an unchanged feed costs one 304. An
//! incremental read fetches only the events whose manifest `timestamp` is newer than the newest
//! one already read; every `full_read_every` all events are fetched and the read is complete
//! (feeds drop deleted attributes and events, so only a full read can retire them). This module
//! must never report a read as complete when an event file could not be fetched or parsed, and
//! never use a manifest key as a path unless it looks like a UUID.

use super::collect::{Collector, Unmatched};
use super::filter::AttributeFilter;
use super::model::{parse_document, ManifestEntry};
use super::rest::base_url;
use crate::http::{HttpClient, HttpError, HttpOptions, HttpReply};
use crate::source::{ObservationBatches, ReadSummary, Source, SourceError};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// Event files fetched at once.
const FETCH_CONCURRENCY: usize = 4;

/// `kind = "misp_feed"` source settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MispFeedConfig {
    /// The feed's base URL (the folder holding `manifest.json`).
    pub url: String,
    /// Client-side attribute filters.
    #[serde(default)]
    pub filter: AttributeFilter,
    /// Time between full reads, e.g. `24h` (default a day).
    #[serde(default)]
    pub full_read_every: Option<String>,
    #[serde(default)]
    pub http: HttpOptions,
}

/// Why a feed source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MispFeedConfigError {
    #[error("source {source_id}: url {url:?} is not an http(s) URL: {reason}")]
    Url { source_id: String, url: String, reason: String },
    #[error("source {source_id}: full_read_every {value:?} is not a duration like 24h or 7d")]
    Duration { source_id: String, value: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Where the next feed read resumes: the newest manifest timestamp read, when the last full
/// read started, and the manifest's ETag. Written as `v1:<newest>:<full read>:<etag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    pub newest: i64,
    pub full_read_at: i64,
    pub etag: Option<String>,
}

impl FeedCursor {
    pub fn parse(text: &str) -> Option<FeedCursor> {
        let mut parts = text.splitn(4, ':');
        if parts.next()? != "v1" {
            return None;
        }
        let newest = parts.next()?.parse().ok()?;
        let full_read_at = parts.next()?.parse().ok()?;
        let etag = parts.next().filter(|e| !e.is_empty()).map(str::to_string);
        Some(FeedCursor { newest, full_read_at, etag })
    }

    pub fn render(&self) -> String {
        format!("v1:{}:{}:{}", self.newest, self.full_read_at, self.etag.as_deref().unwrap_or(""))
    }
}

/// Reads a MISP feed over HTTP.
#[derive(Debug, Clone)]
pub struct MispFeedSource {
    id: String,
    base_url: Url,
    client: HttpClient,
    filter: Arc<AttributeFilter>,
    full_read_every: i64,
}

impl MispFeedSource {
    pub fn from_config(id: String, config: &MispFeedConfig) -> Result<Self, MispFeedConfigError> {
        let full_read_every = match &config.full_read_every {
            Some(text) => tibridge_core::timestamp::parse_duration(text)
                .ok_or_else(|| MispFeedConfigError::Duration { source_id: id.clone(), value: text.clone() })?,
            None => super::rest::DEFAULT_FULL_READ_EVERY,
        };
        let client = config.http.builder(id.clone(), None).build()?;
        Ok(MispFeedSource::new(id, &config.url, client)?
            .with_filter(config.filter.clone())
            .with_full_read_every(full_read_every))
    }

    pub fn new(id: String, url: &str, client: HttpClient) -> Result<Self, MispFeedConfigError> {
        let base_url = base_url(url).map_err(|reason| MispFeedConfigError::Url {
            source_id: id.clone(),
            url: url.to_string(),
            reason,
        })?;
        Ok(MispFeedSource {
            id,
            base_url,
            client,
            filter: Arc::new(AttributeFilter::default()),
            full_read_every: super::rest::DEFAULT_FULL_READ_EVERY,
        })
    }

    pub fn with_filter(mut self, filter: AttributeFilter) -> Self {
        self.filter = Arc::new(filter);
        self
    }

    /// Seconds between full reads (0 = every read is full).
    pub fn with_full_read_every(mut self, seconds: i64) -> Self {
        self.full_read_every = seconds.max(0);
        self
    }

    fn unavailable(&self, reason: impl Into<String>) -> SourceError {
        SourceError::Unavailable { source_id: self.id.clone(), reason: reason.into() }
    }

    /// One event file: its name and the reply.
    async fn fetch_event(&self, uuid: &str) -> (String, Result<HttpReply, HttpError>) {
        let file = format!("{uuid}.json");
        let reply = self.get(&format!("fetch {file}"), &file, None).await;
        (file, reply)
    }

    async fn get(&self, what: &str, file: &str, etag: Option<&str>) -> Result<HttpReply, HttpError> {
        let url = self.base_url.join(file).map_err(|e| HttpError::Request {
            target: self.id.clone(),
            what: what.to_string(),
            reason: format!("cannot build the URL: {e}"),
        })?;
        self.client
            .send(what, |http| {
                let mut request = http.get(url.clone()).header(reqwest::header::ACCEPT, "application/json");
                if let Some(tag) = etag {
                    request = request.header(reqwest::header::IF_NONE_MATCH, tag);
                }
                Ok(request)
            })
            .await
    }
}

/// The events a manifest lists: (uuid, timestamp) for keys that are safe file names, and the
/// keys refused.
type ManifestEvents = (Vec<(String, Option<i64>)>, Vec<String>);

fn manifest_events(body: &[u8]) -> Result<ManifestEvents, serde_json::Error> {
    let manifest: BTreeMap<String, ManifestEntry<'_>> = serde_json::from_slice(body)?;
    let mut events = Vec::with_capacity(manifest.len());
    let mut refused = Vec::new();
    for (uuid, entry) in manifest {
        if super::file::looks_like_uuid(&uuid) {
            events.push((uuid, entry.timestamp));
        } else {
            refused.push(uuid);
        }
    }
    Ok((events, refused))
}

#[async_trait]
impl Source for MispFeedSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!(
            "MISP feed at {} (manifest.json + event files, full read every {} s)",
            self.base_url, self.full_read_every
        )
    }

    async fn read(&self, cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
        let started = tibridge_core::timestamp::now();
        let previous = cursor.as_deref().and_then(FeedCursor::parse);
        let full = super::full_read_due(previous.as_ref().map(|c| c.full_read_at), started, self.full_read_every);
        let etag = if full { None } else { previous.as_ref().and_then(|c| c.etag.clone()) };

        let manifest = self
            .get("fetch manifest.json", "manifest.json", etag.as_deref())
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        if manifest.status.as_u16() == 304 {
            return Ok(ReadSummary { complete: false, items_read: 0, skipped: Vec::new(), next_cursor: cursor });
        }
        if !manifest.status.is_success() {
            return Err(self.unavailable(format!(
                "manifest.json: HTTP {}: {}",
                manifest.status.as_u16(),
                manifest.excerpt()
            )));
        }
        let new_etag = manifest.headers.get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (events, refused) = manifest_events(&manifest.body)
            .map_err(|e| self.unavailable(format!("manifest.json is not a MISP feed manifest: {e}")))?;

        let newest_before = previous.as_ref().map(|c| c.newest);
        let wanted: Vec<(String, Option<i64>)> = events
            .into_iter()
            .filter(|(_, ts)| {
                full || match (ts, newest_before) {
                    (Some(ts), Some(newest)) => *ts > newest,
                    _ => true,
                }
            })
            .collect();
        let newest_listed = wanted.iter().filter_map(|(_, ts)| *ts).max();

        let mut collector = Collector::new(&self.id, out);
        collector.set_filter(Some(self.filter.clone()), if full { Unmatched::Drop } else { Unmatched::Retract });
        for key in refused {
            collector.skip(
                format!("{}:manifest.json", self.id),
                format!("manifest key {} is not an event UUID; not fetched", super::convert::quote(&key)),
            );
        }
        let mut failures = 0usize;
        let fetches: Vec<_> = wanted.iter().map(|(uuid, _)| self.fetch_event(uuid)).collect();
        let mut fetched = stream::iter(fetches).buffered(FETCH_CONCURRENCY);
        while let Some((file, reply)) = fetched.next().await {
            let item = format!("{}:{file}", self.id);
            let body = match reply {
                Ok(reply) if reply.status.is_success() => reply.body,
                Ok(reply) => {
                    failures += 1;
                    collector.skip(item, format!("HTTP {}: {}", reply.status.as_u16(), reply.excerpt()));
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    collector.skip(item, e.to_string());
                    continue;
                }
            };
            let (back, error) = tokio::task::spawn_blocking(move || {
                let result = parse_document(&body, &mut |i| collector.item(i));
                (collector, result.err().map(|e| e.to_string()))
            })
            .await
            .map_err(|e| self.unavailable(format!("the parser stopped: {e}")))?;
            collector = back;
            if let Some(error) = error {
                failures += 1;
                collector.skip(item, format!("not valid MISP JSON: {error}"));
            }
            if collector.cancelled {
                return Err(SourceError::Cancelled { source_id: self.id.clone() });
            }
        }
        drop(fetched);

        let items_read = collector.items_read;
        let (skipped, cancelled) = tokio::task::spawn_blocking(move || collector.finish())
            .await
            .map_err(|e| self.unavailable(format!("the parser stopped: {e}")))?;
        if cancelled {
            return Err(SourceError::Cancelled { source_id: self.id.clone() });
        }
        let all_fetched = failures == 0;
        let next = FeedCursor {
            // After a failure the same events are fetched again next time.
            newest: if all_fetched {
                newest_before.max(newest_listed).unwrap_or(0)
            } else {
                newest_before.unwrap_or(0)
            },
            full_read_at: if full && all_fetched { started } else { previous.as_ref().map_or(0, |c| c.full_read_at) },
            etag: if all_fetched { new_etag } else { None },
        };
        Ok(ReadSummary { complete: full && all_fetched, items_read, skipped, next_cursor: Some(next.render()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpClientBuilder, RetryPolicy};
    use std::time::Duration;
    use tibridge_core::Observation;
    use tibridge_lab::misp::{generate_dataset, MispState};
    use tibridge_lab::{FaultConfig, FaultHandle};

    #[test]
    fn cursors_keep_etags_with_colons() {
        let c = FeedCursor { newest: 5, full_read_at: 9, etag: Some("W/\"a:b\"".into()) };
        assert_eq!(FeedCursor::parse(&c.render()), Some(c));
        let none = FeedCursor { newest: 5, full_read_at: 9, etag: None };
        assert_eq!(FeedCursor::parse(&none.render()), Some(none));
        assert_eq!(FeedCursor::parse("v0:1:2:"), None);
    }

    async fn read(
        source: &MispFeedSource,
        cursor: Option<String>,
    ) -> (Result<ReadSummary, SourceError>, Vec<Observation>) {
        crate::source::read_to_end(source, cursor).await
    }

    #[tokio::test]
    async fn full_read_then_304_then_only_changed_events() {
        let state = MispState::new(generate_dataset(5, 10, 9), "k");
        for id in 1..=5 {
            let _ = state.set_published(id, true);
        }
        let faults = FaultHandle::new(FaultConfig { error_5xx_ratio: 0.2, seed: Some(5), ..FaultConfig::default() });
        let server = tibridge_lab::serve(
            tibridge_lab::misp::router(state.clone()),
            faults,
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("lab");
        let retry = RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            max_total: Duration::from_secs(20),
        };
        let client = HttpClientBuilder::new("feed").retry(retry).build().expect("client");
        let source =
            MispFeedSource::new("feed".into(), &format!("{}/feed", server.base_url()), client).expect("source");

        let (summary, obs) = read(&source, None).await;
        let summary = summary.expect("full read");
        assert!(summary.complete, "{:?}", summary.skipped);
        assert!(summary.items_read > 0 && !obs.is_empty());
        let cursor = summary.next_cursor.expect("cursor");
        assert!(FeedCursor::parse(&cursor).is_some_and(|c| c.etag.is_some()));

        let (summary, obs) = read(&source, Some(cursor.clone())).await;
        let summary = summary.expect("unchanged");
        assert!(!summary.complete && summary.items_read == 0 && obs.is_empty());
        assert_eq!(summary.next_cursor.as_deref(), Some(cursor.as_str()));

        let event = state.add_event("new feed event", &[], true);
        let a = state.add_attribute(event, "domain", "new-in-feed.example", true, &[]).expect("add");
        let _ = state.set_published(event, true);
        let (summary, obs) = read(&source, Some(cursor)).await;
        let summary = summary.expect("incremental");
        assert!(!summary.complete);
        assert_eq!(summary.items_read, 1, "only the new event was fetched");
        assert!(obs.iter().any(|o| o.source_ref == a.uuid));
    }
}
