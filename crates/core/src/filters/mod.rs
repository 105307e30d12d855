//! False-positive protection: MISP warninglists and the user's allowlist.
//!
//! OWNER: filters helper. Public API (keep these signatures):
//! - `warninglist::Warninglist::from_json(&[u8]) -> Result<Warninglist, WarninglistError>`
//! - `warninglist::WarninglistSet::new(Vec<Warninglist>)`, `.matching(&Indicator) -> Option<&str>` (list name)
//! - `allowlist::Allowlist::parse(&str) -> (Allowlist, Vec<AllowlistError>)`, `.matching(&Indicator) -> Option<String>`

pub mod allowlist;
pub mod warninglist;
