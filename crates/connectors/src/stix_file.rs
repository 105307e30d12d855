//! `stix_file` source and sink: a STIX 2.1 bundle on disk.
//!
//! The source reads every indicator whose pattern tibridge can represent and reports the
//! rest with their reason; the sink rewrites one bundle atomically (temporary file + rename)
//! so a reader never sees half a file.

use crate::sink::{Sink, SinkError, SinkStyle};
use crate::source::{ObservationBatches, ReadSummary, Source, SourceError};
use crate::text_file::send_in_batches;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tibridge_core::policy::DesiredEntry;
use tibridge_core::stix::{read_bundle, write_bundle, BundleEntry, BundleOptions};

pub struct StixFileSource {
    id: String,
    path: PathBuf,
}

impl StixFileSource {
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        StixFileSource { id: id.into(), path: path.into() }
    }
}

#[async_trait]
impl Source for StixFileSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!("STIX 2.1 bundle {}", self.path.display())
    }

    async fn read(&self, _cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| SourceError::Unavailable {
            source_id: self.id.clone(),
            reason: format!("cannot read {}: {e}", self.path.display()),
        })?;
        let read = read_bundle(&bytes, &self.id);
        let items_read = (read.observations.len() + read.skipped.len()) as u64;
        send_in_batches(&self.id, read.observations, &out).await?;
        Ok(ReadSummary { complete: true, items_read, skipped: read.skipped, next_cursor: None })
    }
}

pub struct StixFileSink {
    id: String,
    path: PathBuf,
}

impl StixFileSink {
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        StixFileSink { id: id.into(), path: path.into() }
    }
}

/// The STIX form of a desired entry, shared with every sink that writes STIX.
pub fn bundle_entry(entry: &DesiredEntry, now: i64) -> BundleEntry {
    BundleEntry {
        indicator: entry.indicator.clone(),
        name: Some(format!("{} {}", entry.indicator.kind, entry.indicator.value)),
        description: Some(if entry.provenance.is_empty() {
            "shared by tibridge".to_string()
        } else {
            entry.provenance.clone()
        }),
        confidence: entry.confidence,
        tlp: entry.tlp,
        valid_from: entry.last_seen.unwrap_or(now).min(now),
        valid_until: entry.expires_at,
        labels: entry.tags.clone(),
    }
}

#[async_trait]
impl Sink for StixFileSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn style(&self) -> SinkStyle {
        SinkStyle::Snapshot
    }

    fn describe(&self) -> String {
        format!("STIX 2.1 bundle file {}", self.path.display())
    }

    async fn write_snapshot(&self, entries: &[DesiredEntry]) -> Result<(), SinkError> {
        let now = tibridge_core::timestamp::now();
        let entries: Vec<BundleEntry> = entries.iter().map(|e| bundle_entry(e, now)).collect();
        let bundle = write_bundle(&entries, &BundleOptions { created: now, report_name: None, fresh_ids: false });
        let bytes = serde_json::to_vec_pretty(&bundle)
            .map_err(|e| SinkError::Failed { sink_id: self.id.clone(), reason: e.to_string() })?;
        write_atomically(&self.path, &bytes).map_err(|reason| SinkError::Failed { sink_id: self.id.clone(), reason })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// the file is either the old one or the new one, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.persist(path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(())
}
