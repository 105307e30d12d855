//! MISP: the JSON model, attribute → observation conversion, and the sources that read MISP
//! data (a local file or feed directory; later the REST API and HTTP feeds).
//!
//! A MISP source only says what MISP says: it never filters by policy (to_ids, TLP, age are
//! the engine's job) and never invents a deletion it did not read.

pub mod collect;
pub mod convert;
pub mod file;
pub mod model;

pub use convert::{
    attribute_observations, confidence_from_tags, EventContext, CONFIDENCE_PREDICATE,
};
pub use file::MispFileSource;
pub use model::{
    parse_document, Attribute, Event, EventWrapper, Item, ManifestEntry, MispObject, Tag,
};
