//! Refanging and canonical forms for every indicator kind.
//!
//! OWNER: normalization helper. Public API (keep these signatures):
//! - `refang(&str) -> Cow<str>`
//! - `normalize(kind, raw) -> Result<Indicator, NormalizeError>`
//! - `detect(raw) -> Result<Indicator, NormalizeError>` (guess the kind from the shape)

use crate::indicator::{Indicator, IndicatorKind};
use std::borrow::Cow;

/// Longest raw value accepted before any parsing, so a 10 MB "indicator" costs nothing.
pub const MAX_RAW_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("empty value")]
    Empty,
    #[error("value is {len} bytes long, more than the {max} accepted")]
    TooLong { len: usize, max: usize },
    #[error("{0}")]
    Invalid(String),
}

pub fn refang(input: &str) -> Cow<'_, str> {
    Cow::Borrowed(input)
}

pub fn normalize(kind: IndicatorKind, raw: &str) -> Result<Indicator, NormalizeError> {
    let value = refang(raw.trim()).into_owned();
    if value.is_empty() {
        return Err(NormalizeError::Empty);
    }
    Ok(Indicator::from_canonical(kind, value.to_ascii_lowercase()))
}

pub fn detect(raw: &str) -> Result<Indicator, NormalizeError> {
    let _ = raw;
    Err(NormalizeError::Invalid("kind detection not written yet".into()))
}
