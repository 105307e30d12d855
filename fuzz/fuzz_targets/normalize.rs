//! Fuzzes refang, detect, normalize for every kind and the MISP type mapping on arbitrary
//! UTF-8. Beyond "never panics", it checks the properties the catalog relies on: refang and
//! every successful normalization are fixed points, and detect's answer is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tibridge_core::misp::indicators_for_attribute;
use tibridge_core::normalize::detect;
use tibridge_core::{normalize, refang, IndicatorKind};

/// MISP types the mapping handles, plus one it does not; the first input byte picks one.
const MISP_TYPES: [&str; 17] = [
    "md5",
    "sha1",
    "sha256",
    "filename|md5",
    "filename|sha1",
    "filename|sha256",
    "malware-sample",
    "ip-src",
    "ip-dst|port",
    "domain",
    "hostname|port",
    "domain|ip",
    "url",
    "uri",
    "email-src",
    "email",
    "link",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };

    let once = refang(text).into_owned();
    assert_eq!(refang(&once), once.as_str(), "refang is not a fixed point on {text:?}");

    for kind in IndicatorKind::ALL {
        if let Ok(first) = normalize(kind, text) {
            assert_eq!(normalize(kind, &first.value), Ok(first.clone()), "normalize({kind}) not stable on {text:?}");
        }
    }

    if let Ok(found) = detect(text) {
        assert_eq!(normalize(found.kind, &found.value), Ok(found.clone()), "detect not stable on {text:?}");
        assert_eq!(detect(&found.value), Ok(found), "detect changes its mind on its own output for {text:?}");
    }

    let misp_type = MISP_TYPES[usize::from(selector) % MISP_TYPES.len()];
    if let Some(results) = indicators_for_attribute(misp_type, text) {
        for indicator in results.into_iter().flatten() {
            assert_eq!(
                normalize(indicator.kind, &indicator.value),
                Ok(indicator.clone()),
                "{misp_type} gave a non-canonical value"
            );
        }
    }
});
