//! `text_file` source: plain text and CSV block lists kept by people.
//!
//! One value a line, `#` starts a comment, blank lines are ignored. A line with commas is
//! CSV: the first column is the value and an optional second column names its kind
//! (`sha1`, `domain`, ...); a header row naming a `value` column is honoured, with optional
//! `kind`, `confidence`, `tlp` and `tags` columns. A line that is not UTF-8 or not a valid
//! indicator is reported with its line number and skipped; it never stops the rest.

use crate::source::{ObservationBatches, ReadSummary, Source, SourceError, BATCH_SIZE};
use async_trait::async_trait;
use std::path::PathBuf;
use tibridge_core::stix::SkippedItem;
use tibridge_core::{normalize, IndicatorKind, Observation, Tlp};

pub struct TextFileSource {
    id: String,
    path: PathBuf,
}

impl TextFileSource {
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        TextFileSource { id: id.into(), path: path.into() }
    }
}

/// Column positions, from a header row or the default `value[,kind]`.
#[derive(Debug, Clone, Copy)]
struct Columns {
    value: usize,
    kind: Option<usize>,
    confidence: Option<usize>,
    tlp: Option<usize>,
    tags: Option<usize>,
}

impl Default for Columns {
    fn default() -> Self {
        Columns { value: 0, kind: Some(1), confidence: None, tlp: None, tags: None }
    }
}

impl Columns {
    fn from_header(fields: &[&str]) -> Option<Columns> {
        let find = |names: &[&str]| fields.iter().position(|f| names.iter().any(|n| f.trim().eq_ignore_ascii_case(n)));
        let value = find(&["value", "indicator", "ioc"])?;
        Some(Columns {
            value,
            kind: find(&["kind", "type"]),
            confidence: find(&["confidence"]),
            tlp: find(&["tlp"]),
            tags: find(&["tags", "tag"]),
        })
    }
}

/// Parses the whole text into observations and skipped items. Pure, so it can be tested and
/// fuzzed without files.
pub fn parse_text(source_id: &str, file_name: &str, bytes: &[u8]) -> (Vec<Observation>, Vec<SkippedItem>) {
    let mut observations = Vec::new();
    let mut skipped = Vec::new();
    let mut columns: Option<Columns> = None;
    for (index, raw_line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_number = index + 1;
        let item = format!("{file_name}:{line_number}");
        let line = match std::str::from_utf8(raw_line) {
            Ok(line) => line.trim_end_matches('\r'),
            Err(e) => {
                skipped.push(SkippedItem { item, reason: format!("line is not UTF-8 ({e})") });
                continue;
            }
        };
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let fields = split_csv(line);
        if columns.is_none() {
            if let Some(header) = Columns::from_header(&fields.iter().map(String::as_str).collect::<Vec<_>>()) {
                columns = Some(header);
                continue;
            }
        }
        let cols = *columns.get_or_insert_with(Columns::default);
        match observation_from_fields(source_id, &item, &fields, cols) {
            Ok(observation) => observations.push(observation),
            Err(reason) => skipped.push(SkippedItem { item, reason }),
        }
    }
    (observations, skipped)
}

fn observation_from_fields(
    source_id: &str,
    item: &str,
    fields: &[String],
    cols: Columns,
) -> Result<Observation, String> {
    let field = |i: Option<usize>| i.and_then(|i| fields.get(i)).map(|s| s.trim()).filter(|s| !s.is_empty());
    let value = field(Some(cols.value)).ok_or("no value")?;
    let indicator = match field(cols.kind) {
        Some(kind) => {
            let kind: IndicatorKind = kind.parse().map_err(|e| format!("{e}"))?;
            normalize(kind, value)
        }
        None => normalize::detect(value),
    }
    .map_err(|e| format!("{value:?}: {e}"))?;
    let mut observation =
        Observation::new(indicator.clone(), source_id, format!("{}:{}", indicator.kind, indicator.value));
    observation.event_info = Some(item.to_string());
    if let Some(confidence) = field(cols.confidence) {
        let confidence: u8 = confidence
            .parse()
            .ok()
            .filter(|c| *c <= 100)
            .ok_or_else(|| format!("confidence {confidence:?} is not 0..100"))?;
        observation.confidence = Some(confidence);
    }
    if let Some(tlp) = field(cols.tlp) {
        observation.tlp = Some(
            Tlp::from_name(tlp.trim_start_matches("tlp:").trim_start_matches("TLP:"))
                .ok_or_else(|| format!("unknown TLP {tlp:?}"))?,
        );
    }
    if let Some(tags) = field(cols.tags) {
        observation.tags = tags.split(['|', ';']).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    }
    Ok(observation)
}

/// A `#` starts a comment at the start of a line or after whitespace; a `#` inside a value
/// (a URL fragment) is kept.
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(at) => &line[..at],
        None => line,
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => record.iter().map(str::to_string).collect(),
        _ => vec![line.to_string()],
    }
}

#[async_trait]
impl Source for TextFileSource {
    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!("text/CSV list {}", self.path.display())
    }

    async fn read(&self, _cursor: Option<String>, out: ObservationBatches) -> Result<ReadSummary, SourceError> {
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| SourceError::Unavailable {
            source_id: self.id.clone(),
            reason: format!("cannot read {}: {e}", self.path.display()),
        })?;
        let file_name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (observations, skipped) = parse_text(&self.id, &file_name, &bytes);
        let items_read = (observations.len() + skipped.len()) as u64;
        send_in_batches(&self.id, observations, &out).await?;
        Ok(ReadSummary { complete: true, items_read, skipped, next_cursor: None })
    }
}

/// Sends observations in batches of [`BATCH_SIZE`].
pub(crate) async fn send_in_batches(
    source_id: &str,
    mut observations: Vec<Observation>,
    out: &ObservationBatches,
) -> Result<(), SourceError> {
    while !observations.is_empty() {
        let rest = observations.split_off(observations.len().min(BATCH_SIZE));
        out.send(observations).await.map_err(|_| SourceError::Cancelled { source_id: source_id.to_string() })?;
        observations = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_comments_and_defanged_values() {
        let text = b"# block list\n\nhxxp://evil[.]example/x\n1.2.3[.]4  # seen in phishing\nda39a3ee5e6b4b0d3255bfef95601890afd80709\n";
        let (observations, skipped) = parse_text("list", "list.txt", text);
        assert!(skipped.is_empty(), "{skipped:?}");
        let kinds: Vec<IndicatorKind> = observations.iter().map(|o| o.indicator.kind).collect();
        assert_eq!(kinds, [IndicatorKind::Url, IndicatorKind::Ipv4, IndicatorKind::Sha1]);
        assert_eq!(observations[1].event_info.as_deref(), Some("list.txt:4"));
    }

    #[test]
    fn csv_with_a_header_and_bad_lines_reported_by_line() {
        let text = b"value,kind,confidence,tlp\nevil.example,domain,80,green\nnot a hash,sha1,10,green\nb.example,domain,300,green\n\xff\xfe,domain\n";
        let (observations, skipped) = parse_text("csv", "feed.csv", text);
        assert_eq!(observations.len(), 1);
        assert_eq!(observations[0].confidence, Some(80));
        assert_eq!(observations[0].tlp, Some(Tlp::Green));
        let items: Vec<&str> = skipped.iter().map(|s| s.item.as_str()).collect();
        assert_eq!(items, ["feed.csv:3", "feed.csv:4", "feed.csv:5"]);
        assert!(skipped[2].reason.contains("UTF-8"));
    }

    #[test]
    fn a_kind_column_without_header() {
        let (observations, skipped) = parse_text("k", "k.csv", b"EVIL.example.,domain\n");
        assert!(skipped.is_empty());
        assert_eq!(observations[0].indicator.kind, IndicatorKind::Domain);
    }
}
