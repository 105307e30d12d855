//! `misp_file`: MISP JSON read from local disk — one file (an event, a list of events, a saved
//! restSearch reply) or a MISP feed directory (`manifest.json` + `<event uuid>.json`).
//!
//! Memory: a feed directory is parsed one event file at a time and observations leave in
//! batches as they are made, so a 1M-attribute feed reads in ~12 MB; a single file is read
//! into memory whole first (a 300 MB restSearch dump costs 300 MB while it is parsed).
//!
//! Every read is a full read. A file that cannot be parsed is reported as a skipped item and
//! makes the read incomplete, so the indicators it held before are not retired because of a
//! broken download. This module must never read outside the configured path: manifest keys are
//! only used as file names when they look like UUIDs.

use super::collect::Collector;
use super::model::parse_document;
use crate::source::{ObservationBatches, ReadSummary, Source, SourceError};
use async_trait::async_trait;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Reads MISP JSON from a file or a feed directory on local disk.
#[derive(Debug, Clone)]
pub struct MispFileSource {
    id: String,
    path: PathBuf,
}

impl MispFileSource {
    pub fn new(id: String, path: PathBuf) -> Self {
        MispFileSource { id, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Source for MispFileSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!("MISP JSON from {} (a file, or a feed directory with manifest.json)", self.path.display())
    }

    async fn read(&self, _cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
        let id = self.id.clone();
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || read_path(&id, &path, out)).await {
            Ok(result) => result,
            Err(error) => Err(SourceError::Unavailable {
                source_id: self.id.clone(),
                reason: format!("the reader of {} stopped: {error}", self.path.display()),
            }),
        }
    }
}

fn unavailable(source_id: &str, reason: String) -> SourceError {
    SourceError::Unavailable { source_id: source_id.to_string(), reason }
}

/// The blocking body of a read: decides between a file and a feed directory.
fn read_path(source_id: &str, path: &Path, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
    let metadata =
        std::fs::metadata(path).map_err(|e| unavailable(source_id, format!("cannot read {}: {e}", path.display())))?;
    let mut collector = Collector::new(source_id, out);
    let mut complete = true;
    if metadata.is_dir() {
        for file in feed_files(source_id, path)? {
            if collector.cancelled {
                break;
            }
            match file {
                Ok(file) => {
                    if let Err(reason) = read_one_file(&file, &mut collector) {
                        collector.skip(format!("{source_id}:{}", file.display()), reason);
                        complete = false;
                    }
                }
                Err((item, reason)) => {
                    collector.skip(item, reason);
                    complete = false;
                }
            }
        }
    } else {
        read_one_file(path, &mut collector).map_err(|reason| unavailable(source_id, reason))?;
    }
    let items_read = collector.items_read;
    let (skipped, cancelled) = collector.finish();
    if cancelled {
        return Err(SourceError::Cancelled { source_id: source_id.to_string() });
    }
    Ok(ReadSummary { complete, items_read, skipped, next_cursor: None })
}

/// Parses one file, feeding the collector as it goes; `Err` says why the file is unusable.
fn read_one_file(path: &Path, collector: &mut Collector) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_document(&bytes, &mut |item| collector.item(item))
        .map_err(|e| format!("{} is not valid MISP JSON: {e}", path.display()))
}

type FeedEntry = Result<PathBuf, (String, String)>;

/// The event files of a feed directory: those named by `manifest.json`, or every `*.json`
/// file when there is no manifest (a folder of exported events).
fn feed_files(source_id: &str, dir: &Path) -> Result<Vec<FeedEntry>, SourceError> {
    let manifest_path = dir.join("manifest.json");
    if manifest_path.is_file() {
        let bytes = std::fs::read(&manifest_path)
            .map_err(|e| unavailable(source_id, format!("cannot read {}: {e}", manifest_path.display())))?;
        let manifest: BTreeMap<String, IgnoredAny> = serde_json::from_slice(&bytes).map_err(|e| {
            unavailable(
                source_id,
                format!("{} is not a MISP feed manifest (an object keyed by event UUID): {e}", manifest_path.display()),
            )
        })?;
        return Ok(manifest
            .into_keys()
            .map(|uuid| {
                if looks_like_uuid(&uuid) {
                    Ok(dir.join(format!("{uuid}.json")))
                } else {
                    Err((
                        format!("{source_id}:{}", manifest_path.display()),
                        format!(
                            "manifest key {} is not an event UUID; not used as a file name",
                            super::convert::quote(&uuid)
                        ),
                    ))
                }
            })
            .collect());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| unavailable(source_id, format!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json")))
        .collect();
    files.sort();
    Ok(files.into_iter().map(Ok).collect())
}

/// Hex digits and dashes only, 32 hex digits: safe to use as a file name.
pub(crate) fn looks_like_uuid(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && text.bytes().filter(u8::is_ascii_hexdigit).count() == 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibridge_core::{Observation, Tlp};
    use tokio::sync::mpsc;

    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/misp").join(name)
    }

    async fn read_all(path: PathBuf) -> (Result<ReadSummary, SourceError>, Vec<Observation>) {
        let source = MispFileSource::new("misp-test".into(), path);
        crate::source::read_to_end(&source, None).await
    }

    fn by_ref<'a>(obs: &'a [Observation], source_ref: &str) -> Vec<&'a Observation> {
        obs.iter().filter(|o| o.source_ref == source_ref).collect()
    }

    #[tokio::test]
    async fn single_event_file_gives_context_tags_and_deletions() {
        let (summary, obs) = read_all(testdata("event.json")).await;
        let summary = summary.expect("readable");
        assert!(summary.complete);
        assert_eq!(summary.items_read, 11);

        let domain = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000001");
        let domain = domain.first().expect("domain attribute");
        assert_eq!(domain.indicator.value, "evil.example.com");
        assert_eq!(domain.event_ref.as_deref(), Some("5a1c1d1e-0000-4000-8000-0000000000e1"));
        assert_eq!(domain.event_info.as_deref(), Some("Phishing campaign against finance"));
        assert_eq!(domain.tlp, Some(Tlp::Red), "attribute tlp:red beats event tlp:amber");
        assert!(domain.tags.iter().any(|t| t == "tlp:amber") && domain.tags.iter().any(|t| t == "tlp:red"));
        assert_eq!(domain.confidence, Some(87));
        assert_eq!(domain.modified, Some(1_705_312_800));
        assert_eq!(domain.first_seen, Some(1_705_276_800));
        assert!(domain.to_ids && !domain.deleted);

        let soft_deleted = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000003");
        assert!(!soft_deleted.is_empty() && soft_deleted.iter().all(|o| o.deleted));

        let not_ids = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000004");
        assert!(not_ids.first().is_some_and(|o| !o.to_ids), "to_ids \"0\" is false");

        // Attributes inside objects are read; those of a deleted object are deletions.
        let in_object = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000010");
        assert!(in_object.first().is_some_and(|o| !o.deleted && o.indicator.value.len() == 64));
        let in_deleted_object = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000020");
        assert!(in_deleted_object.first().is_some_and(|o| o.deleted));

        // Non-indicator types are not observations and not skips; an empty value is a skip.
        assert!(by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000005").is_empty());
        assert_eq!(summary.skipped.len(), 1);
        assert_eq!(
            summary.skipped[0].item,
            "misp-test:5a1c1d1e-0000-4000-8000-0000000000e1/5a1c1d1e-0000-4000-8000-000000000006"
        );
    }

    #[tokio::test]
    async fn composite_attributes_share_their_attribute_uuid() {
        let (summary, obs) = read_all(testdata("event.json")).await;
        assert!(summary.is_ok());
        let composite = by_ref(&obs, "5a1c1d1e-0000-4000-8000-000000000002");
        let expected = tibridge_core::misp::indicators_for_attribute("domain|ip", "bad.example.net|198.51.100.7")
            .unwrap_or_default()
            .into_iter()
            .filter_map(Result::ok)
            .collect::<Vec<_>>();
        assert_eq!(composite.iter().map(|o| o.indicator.clone()).collect::<Vec<_>>(), expected);
    }

    #[tokio::test]
    async fn rest_search_replies_with_string_and_number_fields_are_read() {
        let (summary, obs) = read_all(testdata("attributes_restsearch.json")).await;
        let summary = summary.expect("readable");
        assert!(summary.complete);
        assert_eq!(summary.items_read, 3);
        let a = by_ref(&obs, "7a5d0000-0000-4000-8000-000000000001");
        let a = a.first().expect("ip attribute");
        assert_eq!(a.event_ref.as_deref(), Some("8cca0000-0000-4000-8000-000000000030"));
        assert_eq!(a.event_info.as_deref(), Some("Correlation 1"));
        assert_eq!(a.tlp, Some(Tlp::Green), "inherited event tag");
        assert_eq!(a.modified, Some(1_617_056_037));
        let b = by_ref(&obs, "7a5d0000-0000-4000-8000-000000000002");
        assert!(b.first().is_some_and(|o| o.deleted && o.modified == Some(1_617_056_099)));
        let c = by_ref(&obs, "7a5d0000-0000-4000-8000-000000000003");
        assert!(c.first().is_some_and(|o| o.deleted), "attribute of a deleted object");

        let (summary, obs) = read_all(testdata("events_restsearch.json")).await;
        assert!(summary.expect("readable").complete);
        assert_eq!(
            obs.iter().filter(|o| o.event_ref.as_deref() == Some("9d000000-0000-4000-8000-0000000000e2")).count(),
            1
        );
        assert_eq!(
            obs.iter().filter(|o| o.event_ref.as_deref() == Some("9d000000-0000-4000-8000-0000000000e1")).count(),
            1
        );
    }

    #[tokio::test]
    async fn feed_directory_skips_a_broken_event_file_and_reads_the_others() {
        let (summary, obs) = read_all(testdata("feed")).await;
        let summary = summary.expect("readable");
        assert!(!summary.complete, "a broken file makes the read incomplete so nothing is retired");
        assert_eq!(obs.iter().filter(|o| o.indicator.value == "feed-one.example").count(), 1);
        assert_eq!(obs.iter().filter(|o| o.indicator.value == "203.0.113.9").count(), 1);
        let items: Vec<&str> = summary.skipped.iter().map(|s| s.item.as_str()).collect();
        assert!(items.iter().any(|i| i.ends_with("b0000000-0000-4000-8000-000000000002.json")), "{items:?}");
        assert!(items.iter().any(|i| i.ends_with("manifest.json")), "traversal key reported: {items:?}");
        assert!(summary.skipped.iter().any(|s| s.reason.contains("not an event UUID")));
    }

    #[tokio::test]
    async fn missing_path_is_unavailable_and_a_broken_single_file_too() {
        let (summary, obs) = read_all(testdata("does-not-exist.json")).await;
        assert!(matches!(summary, Err(SourceError::Unavailable { .. })));
        assert!(obs.is_empty());
        let (summary, _) = read_all(testdata("feed/b0000000-0000-4000-8000-000000000002.json")).await;
        let Err(SourceError::Unavailable { reason, .. }) = summary else { panic!("expected Unavailable") };
        assert!(reason.contains("line"), "{reason}");
    }

    #[tokio::test]
    async fn many_attributes_are_sent_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut attributes = Vec::new();
        for i in 0..10_000u32 {
            attributes.push(serde_json::json!({"uuid": format!("u-{i}"), "type": "ip-dst", "value": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), "timestamp": "1700000000"}));
        }
        let path = dir.path().join("big.json");
        let doc = serde_json::json!({"Event": {"uuid": "e", "info": "big", "Attribute": attributes}});
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap_or_default()).expect("write");
        let source = MispFileSource::new("big".into(), path);
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::spawn(async move { source.read(None, tx).await });
        let mut sizes = Vec::new();
        while let Some(batch) = rx.recv().await {
            sizes.push(batch.len());
        }
        let summary = reader.await.expect("joined").expect("read");
        assert_eq!(summary.items_read, 10_000);
        assert_eq!(sizes.iter().sum::<usize>(), 10_000);
        assert!(sizes.iter().all(|&n| n <= crate::source::BATCH_SIZE));
        assert_eq!(sizes.first().copied(), Some(crate::source::BATCH_SIZE));
    }

    #[test]
    fn only_uuid_shaped_manifest_keys_become_file_names() {
        assert!(looks_like_uuid("5a1c1d1e-0000-4000-8000-0000000000e1"));
        assert!(!looks_like_uuid("../../etc/passwd"));
        assert!(!looks_like_uuid("5a1c1d1e-0000-4000-8000-0000000000e1/../x"));
        assert!(!looks_like_uuid(""));
    }

    /// Throughput of a full `misp_file` read of a generated feed directory (parse, convert,
    /// normalize, batch). Run with
    /// `cargo test --release -p tibridge-connectors misp_file_throughput -- --ignored --nocapture`;
    /// `TIBRIDGE_BENCH_EVENTS` × `TIBRIDGE_BENCH_ATTRS` sets the size (default 1000 × 1000).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "benchmark: run explicitly in release mode"]
    async fn misp_file_throughput() {
        use std::fmt::Write as _;
        let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        let (events, per_event) = (env("TIBRIDGE_BENCH_EVENTS", 1000), env("TIBRIDGE_BENCH_ATTRS", 1000));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut manifest = String::from("{");
        let mut bytes = 0usize;
        let gen_started = std::time::Instant::now();
        for e in 0..events {
            let event_uuid = format!("{:08x}-0000-4000-8000-{:012x}", e, e);
            let _ = write!(
                manifest,
                "{}\"{event_uuid}\":{{\"info\":\"event {e}\",\"timestamp\":1705312800}}",
                if e == 0 { "" } else { "," }
            );
            let mut doc = format!(
                "{{\"Event\":{{\"uuid\":\"{event_uuid}\",\"info\":\"Generated event {e}\",\"timestamp\":\"1705312800\",\"published\":true,\"Tag\":[{{\"name\":\"tlp:green\",\"colour\":\"#339900\"}}],\"Attribute\":["
            );
            for a in 0..per_event {
                let n = e * per_event + a;
                let (kind, value) = match n % 6 {
                    0 => ("ip-dst", format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)),
                    1 => ("domain", format!("host{n}.example.com")),
                    2 => ("url", format!("http://host{n}.example.net/path/{n}?q=1")),
                    3 => ("sha256", format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15)),
                    4 => ("md5", format!("{:032x}", n as u128 * 0x9e37_79b9)),
                    _ => ("filename|sha1", format!("file{n}.exe|{:040x}", n as u128 * 0x9e37_79b9_7f4a)),
                };
                let _ = write!(
                    doc,
                    "{}{{\"id\":\"{n}\",\"event_id\":\"{e}\",\"object_id\":\"0\",\"uuid\":\"{:08x}-1111-4000-8000-{:012x}\",\"type\":\"{kind}\",\"category\":\"Network activity\",\"to_ids\":{},\"deleted\":false,\"timestamp\":\"1705312800\",\"distribution\":\"5\",\"comment\":\"\",\"value\":\"{value}\",\"first_seen\":null,\"last_seen\":null}}",
                    if a == 0 { "" } else { "," },
                    e,
                    n,
                    n % 10 != 0
                );
            }
            doc.push_str("]}}");
            bytes += doc.len();
            std::fs::write(dir.path().join(format!("{event_uuid}.json")), doc).expect("write event");
        }
        manifest.push('}');
        std::fs::write(dir.path().join("manifest.json"), manifest).expect("write manifest");
        eprintln!(
            "generated {} events x {} attributes, {:.1} MB, in {:.1?}",
            events,
            per_event,
            bytes as f64 / 1e6,
            gen_started.elapsed()
        );

        let source = MispFileSource::new("bench".into(), dir.path().to_path_buf());
        let (tx, mut rx) = mpsc::channel::<Vec<Observation>>(8);
        let drain = tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(batch) = rx.recv().await {
                n += batch.len();
            }
            n
        });
        let started = std::time::Instant::now();
        let summary = source.read(None, tx).await.expect("read");
        let observations = drain.await.unwrap_or(0);
        let elapsed = started.elapsed();
        eprintln!(
            "misp_file: {} attributes -> {} observations ({} skipped) in {:.2?}: {:.0} attributes/s, {:.0} MB/s",
            summary.items_read,
            observations,
            summary.skipped.len(),
            elapsed,
            summary.items_read as f64 / elapsed.as_secs_f64(),
            bytes as f64 / 1e6 / elapsed.as_secs_f64()
        );
        assert!(summary.complete);
        assert_eq!(summary.items_read, (events * per_event) as u64);
        let peak_kb = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        });
        eprintln!("peak resident memory of the test process so far: {}", peak_kb.as_deref().unwrap_or("unknown"));

        // Where the time goes: parsing alone, then parsing + normalizing without building
        // observations.
        let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.ends_with("manifest.json"))
            .collect();
        let started = std::time::Instant::now();
        let mut parsed = 0usize;
        for file in &files {
            let bytes = std::fs::read(file).expect("read");
            let _ = parse_document(&bytes, &mut |item| {
                if let super::super::model::Item::Event(e) = item {
                    parsed += e.attributes.len();
                }
            });
        }
        let parse_only = started.elapsed();
        let started = std::time::Instant::now();
        let mut normalized = 0usize;
        for file in &files {
            let bytes = std::fs::read(file).expect("read");
            let _ = parse_document(&bytes, &mut |item| {
                if let super::super::model::Item::Event(e) = item {
                    for a in &e.attributes {
                        let r = tibridge_core::misp::indicators_for_attribute(
                            a.kind.as_deref().unwrap_or(""),
                            a.value.as_deref().unwrap_or(""),
                        );
                        normalized += r.map_or(0, |v| v.len());
                    }
                }
            });
        }
        let with_normalize = started.elapsed();
        eprintln!(
            "breakdown: read+parse {parse_only:.2?} ({parsed} attributes, {:.0}/s); read+parse+normalize {with_normalize:.2?} ({normalized} indicators, {:.0}/s)",
            parsed as f64 / parse_only.as_secs_f64(),
            parsed as f64 / with_normalize.as_secs_f64()
        );
    }
}
