//! The C2 triage playbook (DESIGN.md, second job): Vision One detections in, every
//! highlighted object checked on VirusTotal and, when malicious, in the Intezer sandbox;
//! then closed, queued for an analyst, or blocked on the Suspicious Object list and hunted.
//!
//! - [`config`]: the `[triage]` TOML section, validated into a [`TriagePolicy`];
//! - [`policy`]: the pure decision for one object, with the rule that made it;
//! - [`playbook`]: the run (claim once, enrich with a cache, decide, block, hunt, record the
//!   case) and the review queue's approve and reject.
//!
//! Nothing here ever blocks because an enrichment failed, nor blocks what the allowlist or a
//! warninglist covers.

pub mod config;
pub mod playbook;
pub mod policy;

pub use config::{RawTriage, TriageConfigError, TriagePolicy};
pub use playbook::{Playbook, TriageError, TriageReport};
pub use policy::{decide, Decided, Decision, Rule};
