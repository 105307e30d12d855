use crate::indicator::Indicator;

#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AllowlistError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<Indicator>,
}

impl Allowlist {
    pub fn parse(text: &str) -> (Allowlist, Vec<AllowlistError>) {
        let _ = text;
        (Allowlist::default(), Vec::new())
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn matching(&self, indicator: &Indicator) -> Option<String> {
        self.entries.iter().find(|e| *e == indicator).map(|e| e.to_string())
    }
}
