//! Fuzzes the STIX pattern parser on arbitrary UTF-8. Beyond "never panics, never overflows
//! the stack", it checks that a parsed pattern written back out parses to the same tree, and
//! that every indicator the mapping yields is already canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tibridge_core::normalize;
use tibridge_core::stix::pattern::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(pattern) = parse(text) else { return };

    let written = pattern.to_string();
    match parse(&written) {
        Ok(again) => assert_eq!(again, pattern, "{text:?} written as {written:?} reads back differently"),
        Err(e) => panic!("{text:?} written as {written:?} does not parse: {e}"),
    }

    if let Ok(indicators) = pattern.indicators() {
        assert!(!indicators.is_empty(), "an Ok mapping of {text:?} is empty");
        for indicator in indicators {
            assert_eq!(
                normalize(indicator.kind, &indicator.value),
                Ok(indicator.clone()),
                "{text:?} gave a non-canonical value"
            );
        }
    }
});
