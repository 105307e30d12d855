//! STIX 2.1: the pattern language subset tibridge maps to indicators, and bundles.
//!
//! - [`pattern`] parses STIX patterning and maps the patterns that are plain lists of
//!   indicators to [`Indicator`]s (refusing, with a reason, the ones that are not).
//! - [`read_bundle`] turns the `indicator` objects of a bundle into [`Observation`]s.
//! - [`write_bundle`] writes indicators as a bundle stix2-validator 3.3.2 accepts.
//!
//! Nothing here performs I/O or panics on input: a broken object is a [`SkippedItem`] and
//! the rest of the bundle still lands.

pub mod pattern;
mod read;
mod write;

pub use read::read_bundle;
pub use write::{indicator_id, pattern_for, write_bundle, IDENTITY_ID, TIBRIDGE_NAMESPACE};

use crate::indicator::{Indicator, Observation, Tlp};

/// What reading one bundle produced: observations and the items skipped, with why.
#[derive(Debug, Default)]
pub struct BundleRead {
    pub observations: Vec<Observation>,
    pub skipped: Vec<SkippedItem>,
}

/// An item a reader skipped: `item` names it (a STIX id, `file:line`), `reason` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedItem {
    pub item: String,
    pub reason: String,
}

/// One indicator to write as a STIX 2.1 `indicator` SDO.
#[derive(Debug, Clone)]
pub struct BundleEntry {
    pub indicator: Indicator,
    pub name: Option<String>,
    pub description: Option<String>,
    pub confidence: Option<u8>,
    pub tlp: Option<Tlp>,
    /// Unix seconds.
    pub valid_from: i64,
    pub valid_until: Option<i64>,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Unix seconds used as `created`/`modified`.
    pub created: i64,
    /// When set, a `report` SDO with this name referencing every indicator is added.
    pub report_name: Option<String>,
    /// Fresh random ids (a report for a sweep) instead of stable ones (a synced file).
    pub fresh_ids: bool,
}

/// The predefined TLP 1.0 marking definitions of STIX 2.1 §7.2.1.4 (contract B.6), with the
/// level each stands for. TLP 2.0 has no predefined ids in the STIX 2.1 specification; a
/// bundle that carries its own TLP marking-definition objects is read by their content.
pub const TLP_MARKINGS: [(Tlp, &str, &str); 4] = [
    (Tlp::Clear, "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9", "white"),
    (Tlp::Green, "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", "green"),
    (Tlp::Amber, "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82", "amber"),
    (Tlp::Red, "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "red"),
];
