//! tibridge-connectors: one module per outside system, each implementing one small trait.
//!
//! A connector only translates between tibridge's model and a vendor's wire format; it never
//! decides what to add or remove (the engine's plan does) and never touches the store.

pub mod alert;
pub mod enrich;
pub mod sink;
pub mod source;

/// Shared HTTP client: TLS, timeouts, retries with backoff, Retry-After, rate limits, secrets.
pub mod http;

// Sources
pub mod misp;
pub mod stix_file;
pub mod text_file;

// Sinks
pub mod apex_central;
pub mod deep_security;
pub mod edl;

// Triage: alert source, enrichers, Vision One sink and actions
pub mod intezer;
pub mod virustotal;
pub mod vision_one;

pub use sink::{ItemOutcome, Sink, SinkError, SinkStyle};
pub use source::{ObservationBatches, ReadSummary, Source, SourceError};
