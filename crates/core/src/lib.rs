//! tibridge-core: what tibridge believes about indicators, with no I/O and no async.
//!
//! Everything here is a pure function of its inputs so it can be fuzzed, benchmarked
//! and property-tested on its own. This crate must never open a file, a socket or a
//! database: the store, connectors and engine do that and call in here.

pub mod filters;
pub mod indicator;
pub mod misp;
pub mod normalize;
pub mod plan;
pub mod policy;
pub mod stix;
pub mod timestamp;

pub use indicator::{Indicator, IndicatorKind, Observation, Tlp};
pub use normalize::{normalize, refang, NormalizeError};
