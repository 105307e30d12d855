//! Writing indicators as a STIX 2.1 bundle that stix2-validator 3.3.2 accepts.
//!
//! Ids are stable by default (UUIDv5 of `kind:value` under [`TIBRIDGE_NAMESPACE`]), so a
//! file written on every sync names the same indicator the same way and consumers see new
//! versions rather than new objects. This module must never use the STIX SCO namespace for
//! these ids (contract B.2: that namespace is reserved for SCO identity), and must never
//! write a pattern that does not parse back to the same indicator.

use super::pattern::escape_string;
use super::{BundleEntry, BundleOptions, TLP_MARKINGS};
use crate::indicator::{Indicator, IndicatorKind, Tlp};
use crate::timestamp::stix_millis;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use uuid::Uuid;

/// Namespace for tibridge's deterministic object ids (a UUIDv4 drawn once for tibridge).
pub const TIBRIDGE_NAMESPACE: Uuid = Uuid::from_u128(0x9f18b265_eaf3_42ad_84de_0408d1ee0e48);

/// tibridge's own `identity`, the `created_by_ref` of everything it writes. A fixed UUIDv4,
/// so consumers see one producer across files.
pub const IDENTITY_ID: &str = "identity--0ab24ecb-3310-460a-a779-42b6d3b0436d";

/// TLP 1.0 has no AMBER+STRICT; tibridge writes it as the AMBER marking plus this statement
/// marking (fixed UUIDv4), which its reader (and a person) recognises by its name.
const AMBER_STRICT_MARKING_ID: &str = "marking-definition--10477949-b67a-4217-9917-82f46f38423d";

/// When tibridge's identity and its statement marking were first written; they never change,
/// so their `created`/`modified` stay fixed.
const FIXED_CREATED: &str = "2026-01-01T00:00:00.000Z";

/// The stable `indicator--<uuid5>` id of an indicator.
pub fn indicator_id(indicator: &Indicator) -> String {
    let name = format!("{}:{}", indicator.kind.as_str(), indicator.value);
    format!("indicator--{}", Uuid::new_v5(&TIBRIDGE_NAMESPACE, name.as_bytes()))
}

/// The STIX pattern for one indicator, with the value escaped (`'` and `\`) and hash keys in
/// the hash-algorithm vocabulary spelling.
///
/// A network indicator with a full-length prefix (`1.2.3.4/32`) is written as such and reads
/// back as the address `1.2.3.4`, the same block, as MISP `ip-dst` values are read.
pub fn pattern_for(indicator: &Indicator) -> String {
    let path = match indicator.kind {
        IndicatorKind::Md5 => "file:hashes.MD5",
        IndicatorKind::Sha1 => "file:hashes.'SHA-1'",
        IndicatorKind::Sha256 => "file:hashes.'SHA-256'",
        IndicatorKind::Domain => "domain-name:value",
        IndicatorKind::Url => "url:value",
        IndicatorKind::Ipv4 | IndicatorKind::Ipv4Cidr => "ipv4-addr:value",
        IndicatorKind::Ipv6 | IndicatorKind::Ipv6Cidr => "ipv6-addr:value",
        IndicatorKind::Email => "email-addr:value",
    };
    format!("[{path} = '{}']", escape_string(&indicator.value))
}

fn tlp_marking_refs(tlp: Tlp) -> Vec<&'static str> {
    let base = match tlp {
        Tlp::AmberStrict => Tlp::Amber,
        other => other,
    };
    let mut refs: Vec<&'static str> =
        TLP_MARKINGS.iter().filter(|(t, _, _)| *t == base).map(|(_, id, _)| *id).collect();
    if tlp == Tlp::AmberStrict {
        refs.push(AMBER_STRICT_MARKING_ID);
    }
    refs
}

/// Writes a bundle: tibridge's identity, any marking definitions used, one `indicator` per
/// distinct indicator (the first entry wins when two name the same one), and the optional
/// `report` (left out when there is no indicator, since a report must reference something).
pub fn write_bundle(entries: &[BundleEntry], options: &BundleOptions) -> Value {
    let created = stix_millis(options.created);
    let mut objects = vec![json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": IDENTITY_ID,
        "created": FIXED_CREATED,
        "modified": FIXED_CREATED,
        "name": "tibridge",
        "description": "tibridge, the engine that moved these indicators from their sources to enforcement points.",
        "identity_class": "system",
    })];

    let mut seen = HashSet::new();
    let mut indicator_ids = Vec::new();
    let mut highest_tlp: Option<Tlp> = None;
    let mut used_markings: HashSet<&'static str> = HashSet::new();
    let mut indicators = Vec::new();
    for entry in entries {
        if !seen.insert(&entry.indicator) {
            continue;
        }
        let id =
            if options.fresh_ids { format!("indicator--{}", Uuid::new_v4()) } else { indicator_id(&entry.indicator) };
        let kind = entry.indicator.kind;
        let mut object = Map::new();
        object.insert("type".into(), json!("indicator"));
        object.insert("spec_version".into(), json!("2.1"));
        object.insert("id".into(), json!(id));
        object.insert("created".into(), json!(created));
        object.insert("modified".into(), json!(created));
        object.insert("created_by_ref".into(), json!(IDENTITY_ID));
        let name = entry
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("{} {}", kind_label(kind), entry.indicator.value));
        object.insert("name".into(), json!(name));
        let description = entry
            .description
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| format!("Malicious {} exported by tibridge.", kind_label(kind)));
        object.insert("description".into(), json!(description));
        object.insert("indicator_types".into(), json!(["malicious-activity"]));
        object.insert("pattern".into(), json!(pattern_for(&entry.indicator)));
        object.insert("pattern_type".into(), json!("stix"));
        object.insert("pattern_version".into(), json!("2.1"));
        object.insert("valid_from".into(), json!(stix_millis(entry.valid_from)));
        if let Some(until) = entry.valid_until.filter(|until| *until > entry.valid_from) {
            object.insert("valid_until".into(), json!(stix_millis(until)));
        }
        if let Some(confidence) = entry.confidence {
            object.insert("confidence".into(), json!(confidence.min(100)));
        }
        let labels: Vec<&str> = entry.labels.iter().map(String::as_str).filter(|l| !l.is_empty()).collect();
        if !labels.is_empty() {
            object.insert("labels".into(), json!(labels));
        }
        if let Some(tlp) = entry.tlp {
            let refs = tlp_marking_refs(tlp);
            used_markings.extend(refs.iter().copied());
            object.insert("object_marking_refs".into(), json!(refs));
            highest_tlp = highest_tlp.max(Some(tlp));
        }
        indicator_ids.push(id);
        indicators.push(Value::Object(object));
    }

    // The predefined TLP markings need not be included (consumers know them by id), but
    // including them keeps the bundle self-describing; the validator accepts both.
    for (_, id, level) in TLP_MARKINGS {
        if used_markings.contains(id) {
            objects.push(json!({
                "type": "marking-definition",
                "spec_version": "2.1",
                "id": id,
                "created": "2017-01-20T00:00:00.000Z",
                "definition_type": "tlp",
                "name": format!("TLP:{}", level.to_ascii_uppercase()),
                "definition": {"tlp": level},
            }));
        }
    }
    if used_markings.contains(AMBER_STRICT_MARKING_ID) {
        objects.push(json!({
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": AMBER_STRICT_MARKING_ID,
            "created": FIXED_CREATED,
            "created_by_ref": IDENTITY_ID,
            "definition_type": "statement",
            "name": "TLP:AMBER+STRICT",
            "definition": {"statement": "TLP:AMBER+STRICT: limited disclosure, recipients may share only within their own organization."},
        }));
    }
    objects.extend(indicators);

    if let Some(report_name) = options.report_name.as_ref().filter(|_| !indicator_ids.is_empty()) {
        let id = if options.fresh_ids {
            format!("report--{}", Uuid::new_v4())
        } else {
            format!("report--{}", Uuid::new_v5(&TIBRIDGE_NAMESPACE, format!("report:{report_name}").as_bytes()))
        };
        let mut report = json!({
            "type": "report",
            "spec_version": "2.1",
            "id": id,
            "created": created,
            "modified": created,
            "created_by_ref": IDENTITY_ID,
            "name": report_name,
            "description": format!("{} indicators exported by tibridge.", indicator_ids.len()),
            "report_types": ["indicator"],
            "published": created,
            "object_refs": indicator_ids,
        });
        if let (Some(tlp), Some(map)) = (highest_tlp, report.as_object_mut()) {
            map.insert("object_marking_refs".into(), json!(tlp_marking_refs(tlp)));
        }
        objects.push(report);
    }

    json!({
        "type": "bundle",
        "id": format!("bundle--{}", Uuid::new_v4()),
        "objects": objects,
    })
}

fn kind_label(kind: IndicatorKind) -> &'static str {
    match kind {
        IndicatorKind::Md5 => "MD5 file hash",
        IndicatorKind::Sha1 => "SHA-1 file hash",
        IndicatorKind::Sha256 => "SHA-256 file hash",
        IndicatorKind::Domain => "domain",
        IndicatorKind::Url => "URL",
        IndicatorKind::Ipv4 => "IPv4 address",
        IndicatorKind::Ipv6 => "IPv6 address",
        IndicatorKind::Ipv4Cidr => "IPv4 network",
        IndicatorKind::Ipv6Cidr => "IPv6 network",
        IndicatorKind::Email => "email sender",
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_bundle;
    use super::*;
    use crate::stix::pattern::parse;
    use proptest::prelude::*;

    fn entry(kind: IndicatorKind, value: &str) -> BundleEntry {
        BundleEntry {
            indicator: Indicator::from_canonical(kind, value),
            name: None,
            description: None,
            confidence: Some(70),
            tlp: Some(Tlp::Green),
            valid_from: 1_705_312_800,
            valid_until: Some(1_705_312_800 + 86_400),
            labels: vec!["tibridge".into()],
        }
    }

    fn sample() -> Vec<BundleEntry> {
        let mut strict = entry(IndicatorKind::Domain, "c2.example");
        strict.tlp = Some(Tlp::AmberStrict);
        let mut red = entry(IndicatorKind::Url, "http://c2.example/it's");
        red.tlp = Some(Tlp::Red);
        red.valid_until = Some(0);
        let mut clear = entry(IndicatorKind::Ipv4, "198.51.100.7");
        clear.tlp = Some(Tlp::Clear);
        clear.labels.clear();
        let mut none = entry(IndicatorKind::Email, "phish@bad.example");
        none.tlp = None;
        none.confidence = None;
        vec![
            entry(IndicatorKind::Sha256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
            entry(IndicatorKind::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            entry(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            strict,
            red,
            clear,
            entry(IndicatorKind::Ipv4Cidr, "198.51.100.0/24"),
            entry(IndicatorKind::Ipv6, "2001:db8::1"),
            entry(IndicatorKind::Ipv6Cidr, "2001:db8::/32"),
            none,
        ]
    }

    /// Where tests leave the bundles they write, so CI can run stix2-validator over them.
    fn out_dir() -> std::path::PathBuf {
        match std::env::var_os("TIBRIDGE_STIX_OUT_DIR") {
            Some(dir) => dir.into(),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/stix-out"),
        }
    }

    #[test]
    fn writes_a_complete_bundle_and_leaves_it_for_the_validator() {
        let options =
            BundleOptions { created: 1_705_312_800, report_name: Some("tibridge sweep".into()), fresh_ids: false };
        let bundle = write_bundle(&sample(), &options);
        let objects = bundle["objects"].as_array().cloned().unwrap_or_default();
        let indicators: Vec<&Value> = objects.iter().filter(|o| o["type"] == "indicator").collect();
        assert_eq!(indicators.len(), 10);
        assert!(bundle["id"].as_str().is_some_and(|id| id.starts_with("bundle--")));
        let first = indicators[0];
        assert_eq!(
            first["pattern"],
            "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']"
        );
        assert_eq!(first["created"], "2024-01-15T10:00:00.000Z");
        assert_eq!(first["valid_until"], "2024-01-16T10:00:00.000Z");
        assert_eq!(first["id"].as_str(), Some(indicator_id(&sample()[0].indicator).as_str()));
        assert_eq!(indicators[4]["pattern"], r"[url:value = 'http://c2.example/it\'s']");
        assert_eq!(
            pattern_for(&Indicator::from_canonical(IndicatorKind::Url, r"http://a/\'")),
            r"[url:value = 'http://a/\\\'']"
        );
        assert!(indicators[4].get("valid_until").is_none(), "valid_until before valid_from is left out");
        let report = objects.iter().find(|o| o["type"] == "report").cloned().unwrap_or_default();
        assert_eq!(report["object_refs"].as_array().map(Vec::len), Some(10));
        assert_eq!(report["object_marking_refs"], json!(["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"]));
        // Every pattern parses back to its indicator.
        for (object, entry) in indicators.iter().zip(sample()) {
            let pattern = parse(object["pattern"].as_str().unwrap_or_default()).map_err(|e| e.to_string());
            let got = pattern.and_then(|p| p.indicators().map_err(|e| e.to_string()));
            assert_eq!(got, Ok(vec![entry.indicator.clone()]));
        }

        let dir = out_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let text = serde_json::to_string_pretty(&bundle).unwrap_or_default();
        std::fs::write(dir.join("core-sample.json"), &text).unwrap_or_else(|e| panic!("{e}"));
        let fresh = write_bundle(&sample(), &BundleOptions { fresh_ids: true, report_name: None, ..options.clone() });
        std::fs::write(dir.join("core-fresh-ids.json"), serde_json::to_string_pretty(&fresh).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join("core-empty.json"),
            write_bundle(&[], &BundleOptions { report_name: Some("empty".into()), ..Default::default() }).to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn stable_ids_are_stable_and_fresh_ids_are_not() {
        let options = BundleOptions { created: 1, report_name: None, fresh_ids: false };
        let indicator_ids = |bundle: &Value| -> Vec<String> {
            let objects = bundle["objects"].as_array().cloned().unwrap_or_default();
            objects
                .iter()
                .filter(|o| o["type"] == "indicator")
                .filter_map(|o| o["id"].as_str().map(str::to_string))
                .collect()
        };
        let a = write_bundle(&sample()[..1], &options);
        let b = write_bundle(&sample()[..1], &options);
        assert_eq!(indicator_ids(&a), indicator_ids(&b));
        assert_eq!(indicator_ids(&a).len(), 1);
        assert_ne!(a["id"], b["id"], "the bundle id is always fresh");
        let fresh = BundleOptions { fresh_ids: true, ..options.clone() };
        assert_ne!(indicator_ids(&write_bundle(&sample()[..1], &fresh)), indicator_ids(&a));
        // Duplicates are written once.
        let twice = [sample()[0].clone(), sample()[0].clone()];
        assert_eq!(indicator_ids(&write_bundle(&twice, &options)).len(), 1);
    }

    #[test]
    fn round_trips_through_the_reader() {
        let options = BundleOptions { created: 1_705_312_800, report_name: Some("r".into()), fresh_ids: false };
        let bundle = write_bundle(&sample(), &options);
        let read = read_bundle(bundle.to_string().as_bytes(), "self");
        assert!(read.skipped.is_empty(), "{:?}", read.skipped);
        let got: Vec<_> = read.observations.iter().map(|o| (o.indicator.clone(), o.tlp, o.confidence)).collect();
        let want: Vec<_> = sample().into_iter().map(|e| (e.indicator, e.tlp, e.confidence)).collect();
        assert_eq!(got, want);
    }

    fn arb_entry() -> impl Strategy<Value = BundleEntry> {
        let indicator = prop_oneof![
            "[0-9a-f]{64}".prop_map(|v| Indicator::from_canonical(IndicatorKind::Sha256, v)),
            "[0-9a-f]{40}".prop_map(|v| Indicator::from_canonical(IndicatorKind::Sha1, v)),
            "[0-9a-f]{32}".prop_map(|v| Indicator::from_canonical(IndicatorKind::Md5, v)),
            "[a-z0-9]{1,12}(\\.[a-z0-9]{1,8}){0,2}\\.(com|net|org|example)"
                .prop_map(|v| Indicator::from_canonical(IndicatorKind::Domain, v)),
            "[a-z]{1,10}\\.example/[a-z0-9']{0,12}"
                .prop_map(|v| Indicator::from_canonical(IndicatorKind::Url, format!("http://{v}"))),
            (any::<u8>(), any::<u8>(), any::<u8>())
                .prop_map(|(a, b, c)| Indicator::from_canonical(IndicatorKind::Ipv4, format!("{a}.{b}.{c}.1"))),
            "[a-z0-9]{1,10}@[a-z]{1,8}\\.example".prop_map(|v| Indicator::from_canonical(IndicatorKind::Email, v)),
        ];
        (indicator, proptest::option::of(0u8..=100), 0i64..4_000_000_000, proptest::option::of(0i64..4_000_000_000))
            .prop_map(|(indicator, confidence, valid_from, valid_until)| BundleEntry {
                indicator,
                name: None,
                description: None,
                confidence,
                tlp: None,
                valid_from,
                valid_until,
                labels: Vec::new(),
            })
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(entries in proptest::collection::vec(arb_entry(), 0..12)) {
            let bundle = write_bundle(&entries, &BundleOptions { created: 1_700_000_000, report_name: None, fresh_ids: false });
            let read = read_bundle(bundle.to_string().as_bytes(), "p");
            prop_assert!(read.skipped.is_empty(), "{:?}", read.skipped);
            let mut seen = HashSet::new();
            let want: Vec<_> = entries
                .iter()
                .filter(|e| seen.insert(e.indicator.clone()))
                .map(|e| (e.indicator.clone(), e.confidence, Some(e.valid_from), e.valid_until.filter(|u| *u > e.valid_from)))
                .collect();
            let got: Vec<_> = read.observations.iter().map(|o| (o.indicator.clone(), o.confidence, o.first_seen, o.valid_until)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
