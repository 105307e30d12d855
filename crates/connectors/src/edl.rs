//! `edl` sink: external dynamic lists, the plain text block lists firewalls pull over HTTP.
//!
//! One file per family, one entry per line, sorted, no comments (several firewalls reject
//! them): `ip.txt` (IPv4 addresses and networks), `ipv6.txt`, `domain.txt`, `url.txt`
//! (without the scheme, the form PAN-OS and FortiGate expect), `sha1.txt`, `sha256.txt`,
//! `md5.txt`, `email.txt`. Each file is replaced atomically so a firewall polling mid-write
//! never reads a truncated list; a family with no entries gets an empty file, so a list that
//! shrank to nothing is really emptied on the firewall.

use crate::sink::{Sink, SinkError, SinkStyle};
use crate::stix_file::write_atomically;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tibridge_core::policy::DesiredEntry;
use tibridge_core::IndicatorKind;

pub struct EdlSink {
    id: String,
    dir: PathBuf,
    kinds: Vec<IndicatorKind>,
}

impl EdlSink {
    pub fn new(id: impl Into<String>, dir: impl Into<PathBuf>, kinds: Vec<IndicatorKind>) -> Self {
        EdlSink { id: id.into(), dir: dir.into(), kinds }
    }
}

/// The file an indicator kind is listed in.
pub fn file_name(kind: IndicatorKind) -> &'static str {
    match kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv4Cidr => "ip.txt",
        IndicatorKind::Ipv6 | IndicatorKind::Ipv6Cidr => "ipv6.txt",
        IndicatorKind::Domain => "domain.txt",
        IndicatorKind::Url => "url.txt",
        IndicatorKind::Md5 => "md5.txt",
        IndicatorKind::Sha1 => "sha1.txt",
        IndicatorKind::Sha256 => "sha256.txt",
        IndicatorKind::Email => "email.txt",
    }
}

/// The line a firewall reads for an entry.
pub fn line(kind: IndicatorKind, value: &str) -> &str {
    match kind {
        IndicatorKind::Url => value.split_once("://").map_or(value, |(_, rest)| rest),
        _ => value,
    }
}

/// Renders every file's content; pure, so tests need no disk.
pub fn render(kinds: &[IndicatorKind], entries: &[DesiredEntry]) -> BTreeMap<&'static str, String> {
    let mut files: BTreeMap<&'static str, Vec<&str>> = kinds.iter().map(|k| (file_name(*k), Vec::new())).collect();
    for entry in entries {
        let kind = entry.indicator.kind;
        files.entry(file_name(kind)).or_default().push(line(kind, &entry.indicator.value));
    }
    files
        .into_iter()
        .map(|(name, mut lines)| {
            lines.sort_unstable();
            lines.dedup();
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            (name, text)
        })
        .collect()
}

#[async_trait]
impl Sink for EdlSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn style(&self) -> SinkStyle {
        SinkStyle::Snapshot
    }

    fn describe(&self) -> String {
        let names: std::collections::BTreeSet<&str> = self.kinds.iter().map(|k| file_name(*k)).collect();
        let names: Vec<&str> = names.into_iter().collect();
        format!("external dynamic lists in {} ({})", self.dir.display(), names.join(", "))
    }

    async fn write_snapshot(&self, entries: &[DesiredEntry]) -> Result<(), SinkError> {
        for (name, text) in render(&self.kinds, entries) {
            write_atomically(&self.dir.join(name), text.as_bytes())
                .map_err(|reason| SinkError::Failed { sink_id: self.id.clone(), reason })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibridge_core::Indicator;

    fn entry(kind: IndicatorKind, value: &str) -> DesiredEntry {
        DesiredEntry {
            indicator: Indicator::from_canonical(kind, value),
            confidence: None,
            tlp: None,
            expires_at: None,
            last_seen: None,
            provenance: String::new(),
            tags: vec![],
        }
    }

    #[test]
    fn files_per_family_sorted_and_urls_without_scheme() {
        let kinds = [IndicatorKind::Domain, IndicatorKind::Url, IndicatorKind::Ipv4, IndicatorKind::Ipv4Cidr];
        let files = render(
            &kinds,
            &[
                entry(IndicatorKind::Domain, "b.example"),
                entry(IndicatorKind::Domain, "a.example"),
                entry(IndicatorKind::Url, "https://c.example/x?y=1"),
                entry(IndicatorKind::Ipv4Cidr, "198.51.100.0/28"),
                entry(IndicatorKind::Ipv4, "203.0.113.9"),
            ],
        );
        assert_eq!(files["domain.txt"], "a.example\nb.example\n");
        assert_eq!(files["url.txt"], "c.example/x?y=1\n");
        assert_eq!(files["ip.txt"], "198.51.100.0/28\n203.0.113.9\n");
    }

    #[test]
    fn an_empty_family_still_gets_its_file() {
        let files = render(&[IndicatorKind::Domain], &[]);
        assert_eq!(files["domain.txt"], "");
    }
}
