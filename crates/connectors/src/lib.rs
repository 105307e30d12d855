//! tibridge-connectors: one module per outside system, each implementing one small trait.
//!
//! A connector only translates between tibridge's model and a vendor's wire format; it never
//! decides what to add or remove (the engine's plan does) and never touches the store.

pub mod sink;
pub mod source;

pub use sink::{ItemOutcome, Sink, SinkError, SinkStyle};
pub use source::{ObservationBatches, ReadSummary, Source, SourceError};
