//! False-positive protection: MISP warninglists and the user's allowlist.
//!
//! Both answer one question for the policy: is this indicator known to be benign, and if so
//! by which list or entry. They must never do I/O (the engine reads the files) and never
//! scan their entries per indicator: matching is hash lookups and prefix tables, so the
//! cost per indicator does not grow with the lists.
//!
//! - [`warninglist::Warninglist::from_json`] reads one misp-warninglists `list.json`;
//!   [`warninglist::WarninglistSet::matching`] names the first list an indicator is on.
//! - [`allowlist::Allowlist::parse`] reads the user's text file;
//!   [`allowlist::Allowlist::matching`] names the entry (and line) that covers an indicator.

pub mod allowlist;
mod ipset;
pub mod warninglist;
