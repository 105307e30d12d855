//! tibridge-engine: the sync loop (collect, desired state, plan, apply with guardrails)
//! and, later, the triage playbook.
//!
//! The engine is the only place that decides: sources only read, sinks only write what
//! they are told, and the store only records.

pub mod config;
pub mod sync;
pub mod triage;

pub use config::{Config, ConfigError};
pub use sync::{Engine, EngineError};
