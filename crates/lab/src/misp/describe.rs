//! A reduced `describeTypes` table: the MISP types tibridge meets, with the default category
//! and to_ids of PyMISP's `pymisp/data/describeTypes.json` (contract A.4).
//!
//! PyMISP's constructor reads `types`, `categories`, `sane_defaults` and
//! `category_type_mappings` from it; the table must stay consistent (every type's default
//! category lists that type) or PyMISP refuses attributes.

use serde_json::{json, Map, Value};

/// (type, default category, default to_ids).
const TYPES: &[(&str, &str, u8)] = &[
    ("md5", "Payload delivery", 1),
    ("sha1", "Payload delivery", 1),
    ("sha224", "Payload delivery", 1),
    ("sha256", "Payload delivery", 1),
    ("sha384", "Payload delivery", 1),
    ("sha512", "Payload delivery", 1),
    ("ssdeep", "Payload delivery", 1),
    ("imphash", "Payload delivery", 1),
    ("tlsh", "Payload delivery", 1),
    ("filename", "Payload delivery", 1),
    ("filename|md5", "Payload delivery", 1),
    ("filename|sha1", "Payload delivery", 1),
    ("filename|sha256", "Payload delivery", 1),
    ("filename|sha512", "Payload delivery", 1),
    ("malware-sample", "Payload delivery", 1),
    ("ip-src", "Network activity", 1),
    ("ip-dst", "Network activity", 1),
    ("ip-src|port", "Network activity", 1),
    ("ip-dst|port", "Network activity", 1),
    ("domain", "Network activity", 1),
    ("domain|ip", "Network activity", 1),
    ("hostname", "Network activity", 1),
    ("hostname|port", "Network activity", 1),
    ("url", "Network activity", 1),
    ("uri", "Network activity", 1),
    ("user-agent", "Network activity", 0),
    ("AS", "Network activity", 0),
    ("email", "Social network", 1),
    ("email-src", "Payload delivery", 1),
    ("email-dst", "Network activity", 1),
    ("email-subject", "Payload delivery", 0),
    ("whois-registrant-email", "Attribution", 0),
    ("regkey", "Persistence mechanism", 1),
    ("regkey|value", "Persistence mechanism", 1),
    ("mutex", "Artifacts dropped", 1),
    ("vulnerability", "External analysis", 0),
    ("link", "External analysis", 0),
    ("comment", "Other", 0),
    ("text", "Other", 0),
    ("other", "Other", 0),
    ("yara", "Payload installation", 1),
    ("snort", "Network activity", 1),
    ("btc", "Financial fraud", 1),
];

const CATEGORIES: &[&str] = &[
    "Internal reference",
    "Targeting data",
    "Antivirus detection",
    "Payload delivery",
    "Artifacts dropped",
    "Payload installation",
    "Persistence mechanism",
    "Network activity",
    "Payload type",
    "Attribution",
    "External analysis",
    "Financial fraud",
    "Support Tool",
    "Social network",
    "Person",
    "Other",
];

/// Extra (category, type) pairs MISP allows besides each type's default category.
const EXTRA: &[(&str, &str)] = &[
    ("Artifacts dropped", "md5"),
    ("Artifacts dropped", "sha1"),
    ("Artifacts dropped", "sha256"),
    ("Artifacts dropped", "filename"),
    ("Payload installation", "md5"),
    ("Payload installation", "sha1"),
    ("Payload installation", "sha256"),
    ("Payload installation", "filename|sha1"),
    ("External analysis", "md5"),
    ("External analysis", "sha1"),
    ("External analysis", "sha256"),
    ("External analysis", "ip-dst"),
    ("External analysis", "domain"),
    ("External analysis", "url"),
    ("Payload delivery", "ip-dst"),
    ("Payload delivery", "domain"),
    ("Payload delivery", "url"),
    ("Payload delivery", "hostname"),
    ("Internal reference", "comment"),
    ("Internal reference", "text"),
    ("Internal reference", "link"),
];

/// Default (category, to_ids) of a type, if the lab knows it.
pub fn sane_default(attr_type: &str) -> Option<(&'static str, bool)> {
    TYPES.iter().find(|(t, _, _)| *t == attr_type).map(|(_, c, ids)| (*c, *ids == 1))
}

/// The `result` object of `GET /attributes/describeTypes.json`.
pub fn describe_types() -> Value {
    let mut sane = Map::new();
    for (t, c, ids) in TYPES {
        sane.insert((*t).to_owned(), json!({"default_category": c, "to_ids": ids}));
    }
    let mut mappings = Map::new();
    for cat in CATEGORIES {
        let mut types: Vec<&str> = TYPES.iter().filter(|(_, c, _)| c == cat).map(|(t, _, _)| *t).collect();
        types.extend(EXTRA.iter().filter(|(c, _)| c == cat).map(|(_, t)| *t));
        if *cat == "Other" {
            types.extend(["md5", "sha1", "sha256", "domain", "url", "ip-dst"]);
        }
        types.sort_unstable();
        types.dedup();
        mappings.insert((*cat).to_owned(), json!(types));
    }
    json!({
        "sane_defaults": sane,
        "types": TYPES.iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
        "categories": CATEGORIES,
        "category_type_mappings": mappings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_listed_under_its_default_category() {
        let d = describe_types();
        for (t, c, _) in TYPES {
            let list = d["category_type_mappings"][c].as_array().unwrap();
            assert!(list.iter().any(|x| x == t), "{t} missing under {c}");
        }
        assert_eq!(d["types"].as_array().unwrap().len(), TYPES.len());
        assert_eq!(sane_default("sha1"), Some(("Payload delivery", true)));
        assert_eq!(sane_default("nope"), None);
    }
}
