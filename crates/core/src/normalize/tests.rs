//! End-to-end tests of `normalize` and `detect` on real-world defanged values, and property
//! tests: every successful result is a fixed point, defanging never changes the result, and
//! no input panics.
//!
//! The defanged spellings below are the forms seen in vendor reports and CERT advisories
//! (hxxp schemes, bracketed dots and at-signs, spelled-out separators); the values are
//! made up under example domains and documentation address ranges.

use super::*;
use proptest::prelude::*;

fn norm(kind: IndicatorKind, raw: &str) -> String {
    match normalize(kind, raw) {
        Ok(indicator) => indicator.value,
        Err(e) => panic!("normalize({kind}, {raw:?}) refused: {e}"),
    }
}

fn detected(raw: &str) -> (IndicatorKind, String) {
    match detect(raw) {
        Ok(indicator) => (indicator.kind, indicator.value),
        Err(e) => panic!("detect({raw:?}) refused: {e}"),
    }
}

#[test]
fn real_world_defanged_values() {
    use IndicatorKind::*;
    assert_eq!(norm(Url, "hxxps://evil[.]example[.]com/path#frag"), "https://evil.example.com/path");
    assert_eq!(norm(Url, "http://Example.COM:80/a?b=1#x"), "http://example.com/a?b=1");
    assert_eq!(norm(Url, " hXXp[:]//203.0.113[.]7:8080/gate.php "), "http://203.0.113.7:8080/gate.php");
    assert_eq!(norm(Ipv4, "1.2.3[.]4"), "1.2.3.4");
    assert_eq!(norm(Ipv4, "198.51.100(.)23"), "198.51.100.23");
    assert_eq!(norm(Email, "user[@]Example[.]COM"), "user@example.com");
    assert_eq!(norm(Email, "billing (at) evil-invoices [dot] example"), "billing@evil-invoices.example");
    assert_eq!(norm(Domain, "EVIL.example.com."), "evil.example.com");
    assert_eq!(norm(Domain, "bücher.de"), "xn--bcher-kva.de");
    assert_eq!(norm(Domain, "\"evil[.]example[.]co[.]uk\""), "evil.example.co.uk");
    assert_eq!(norm(Ipv6, "2001:DB8[:]:1"), "2001:db8::1");
    assert_eq!(norm(Ipv4Cidr, "203.0.113[.]0/24"), "203.0.113.0/24");
    assert_eq!(
        norm(Sha1, " DA39A3EE5E6B4B0D3255BFEF95601890AFD80709\u{200B}"),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
}

#[test]
fn refusals_say_why() {
    use IndicatorKind::*;
    let err = |kind, raw: &str| normalize(kind, raw).unwrap_err().to_string();
    assert_eq!(err(Ipv4Cidr, "10.0.0.1/8"), "10.0.0.1/8 has host bits set: the network is 10.0.0.0/8");
    assert_eq!(err(Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd8070"), "sha1 must be 40 hex digits, got 39");
    assert!(err(Domain, "co.uk").contains("public suffix"));
    assert!(err(Ipv4, "010.1.1.1").contains("leading zero"));
    assert_eq!(normalize(Domain, "  [ ] "), Err(NormalizeError::Empty));
    assert_eq!(normalize(Domain, " \u{200B} "), Err(NormalizeError::Empty));
    let huge = "a".repeat(MAX_RAW_LEN + 1);
    assert_eq!(normalize(Url, &huge), Err(NormalizeError::TooLong { len: MAX_RAW_LEN + 1, max: MAX_RAW_LEN }));
    assert_eq!(detect(&huge), Err(NormalizeError::TooLong { len: MAX_RAW_LEN + 1, max: MAX_RAW_LEN }));
}

#[test]
fn detect_reads_the_shape() {
    use IndicatorKind::*;
    assert_eq!(detected("hxxp://evil[.]example.com"), (Url, "http://evil.example.com/".into()));
    assert_eq!(detected("evil.example.com/login.php"), (Url, "http://evil.example.com/login.php".into()));
    assert_eq!(detected("Bad.Guy[@]example[.]com"), (Email, "Bad.Guy@example.com".into()));
    assert_eq!(detected("10.0.0.0/8"), (Ipv4Cidr, "10.0.0.0/8".into()));
    assert_eq!(detected("1.2.3.4/32"), (Ipv4, "1.2.3.4".into()));
    assert_eq!(detected("2001:db8::/32"), (Ipv6Cidr, "2001:db8::/32".into()));
    assert_eq!(detected("2001:db8::1/128"), (Ipv6, "2001:db8::1".into()));
    assert_eq!(detected("D41D8CD98F00B204E9800998ECF8427E"), (Md5, "d41d8cd98f00b204e9800998ecf8427e".into()));
    assert_eq!(
        detected("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        (Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709".into())
    );
    assert_eq!(detected(&"e3".repeat(32)), (Sha256, "e3".repeat(32)));
    assert_eq!(detected("1.2.3[.]4"), (Ipv4, "1.2.3.4".into()));
    assert_eq!(detected("1.2.3.4:8080"), (Ipv4, "1.2.3.4".into()));
    assert_eq!(detected("[2001:db8::1]:443"), (Ipv6, "2001:db8::1".into()));
    assert_eq!(detected("2001:DB8::1"), (Ipv6, "2001:db8::1".into()));
    assert_eq!(detected("::ffff:1.2.3.4"), (Ipv6, "::ffff:1.2.3.4".into()));
    assert_eq!(detected("evil.example.com:8080"), (Domain, "evil.example.com".into()));
    assert_eq!(detected("EVIL[.]example[.]com"), (Domain, "evil.example.com".into()));
    assert_eq!(detected("deadbeef.example"), (Domain, "deadbeef.example".into()));
    assert_eq!(
        detect("da39a3ee5e6b4b0d3255bfef95601890afd8070").unwrap_err().to_string(),
        "sha1 must be 40 hex digits, got 39"
    );
    assert!(detect("010.1.1.1").unwrap_err().to_string().contains("leading zero"));
    assert!(matches!(detect("10.0.0.1/8"), Err(NormalizeError::CidrHostBits { .. })));
}

/// Every kind's canonical value maps to itself, including through detect.
fn assert_fixed_point(kind: IndicatorKind, raw: &str) -> Result<(), TestCaseError> {
    if let Ok(first) = normalize(kind, raw) {
        let again = normalize(kind, &first.value);
        prop_assert_eq!(again, Ok(first), "normalize({}, {:?}) not stable", kind, raw);
    }
    if let Ok(found) = detect(raw) {
        let again = normalize(found.kind, &found.value);
        prop_assert_eq!(again, Ok(found.clone()), "detect({:?}) not stable", raw);
        prop_assert_eq!(detect(&found.value), Ok(found), "detect({:?}) changes kind on its output", raw);
    }
    Ok(())
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?",
        "[a-z_]{1,5}",
        "xn--[a-z0-9]{2,8}",
        "[a-zà-ÿ]{1,6}",
        Just("bücher".to_string()),
    ]
}

fn domain() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), 1..4),
        prop_oneof!["[a-zA-Z]{2,6}", Just("co.uk".to_string()), Just("github.io".to_string()), Just("рф".to_string())],
        prop::bool::ANY,
    )
        .prop_map(|(labels, tld, root)| format!("{}.{tld}{}", labels.join("."), if root { "." } else { "" }))
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]))
}

fn ipv6() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u16; 8]>().prop_map(|g| g.iter().map(|x| format!("{x:X}")).collect::<Vec<_>>().join(":")),
        any::<[u16; 8]>().prop_map(|g| std::net::Ipv6Addr::from(g).to_string()),
        (any::<[u8; 4]>()).prop_map(|o| format!("::ffff:{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{a:x}::{b:x}")),
    ]
}

fn url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("http"), Just("HTTPS"), Just("ftp"), Just("tcp"), Just("ws"), Just("")],
        prop_oneof![domain(), ipv4(), ipv6().prop_map(|v| format!("[{v}]"))],
        prop_oneof![Just(String::new()), (0u32..70000).prop_map(|p| format!(":{p}"))],
        "(/[a-zA-Z0-9._~%!$&'()*+,;=:@\\[\\]{}|^` -]{0,12}){0,3}",
        prop::option::of("[a-zA-Z0-9=&%?/\\[\\]{}' .-]{0,12}"),
        prop::option::of("[a-zA-Z0-9 #]{0,6}"),
    )
        .prop_map(|(scheme, host, port, path, query, fragment)| {
            let mut s = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
            s.push_str(&host);
            s.push_str(&port);
            s.push_str(&path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(&q);
            }
            if let Some(f) = fragment {
                s.push('#');
                s.push_str(&f);
            }
            s
        })
}

fn email() -> impl Strategy<Value = String> {
    (prop_oneof!["[a-zA-Z0-9!#$%&'*+/=?^_`{|}~.-]{1,12}", "\"[a-zA-Z0-9 @.(),]{0,8}\"", "[a-zé]{1,5}"], domain())
        .prop_map(|(local, domain)| format!("{local}@{domain}"))
}

fn hash() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-fA-F]{32}", "[0-9a-fA-F]{40}", "[0-9a-fA-F]{64}", "[0-9a-gA-G]{30,66}"]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (ipv4(), 0u8..=34).prop_map(|(a, n)| format!("{a}/{n}")),
        (ipv6(), 0u8..=130).prop_map(|(a, n)| format!("{a}/{n}")),
        (any::<u32>(), 0u8..=32).prop_map(|(a, n)| format!(
            "{}/{n}",
            std::net::Ipv4Addr::from(a & !(u32::MAX.checked_shr(n as u32).unwrap_or(0)))
        )),
        (any::<u128>(), 0u8..=128).prop_map(|(a, n)| format!(
            "{}/{n}",
            std::net::Ipv6Addr::from(a & !(u128::MAX.checked_shr(n as u32).unwrap_or(0)))
        )),
    ]
}

/// The ways a value is defanged in reports, applied to a clean value.
fn defang(value: &str, style: u8) -> String {
    match style % 6 {
        0 => value.replace('.', "[.]"),
        1 => value.replacen("http", "hxxp", 1).replace('.', "(.)"),
        2 => value.replace('@', "[at]").replace('.', "[dot]"),
        3 => format!("  \"{}\"\u{200B} ", value.replace("://", "[://]")),
        4 => value.replace('.', "{.}").replace('@', "(@)"),
        _ => format!("<{}>", value.replace(':', "[:]")),
    }
}

fn any_kind() -> impl Strategy<Value = IndicatorKind> {
    prop::sample::select(IndicatorKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_values_are_fixed_points(
        value in prop_oneof![domain(), ipv4(), ipv6(), url(), email(), hash(), cidr()],
        kind in any_kind(),
    ) {
        assert_fixed_point(kind, &value)?;
    }

    #[test]
    fn defanging_does_not_change_the_result(
        value in prop_oneof![domain(), ipv4(), url(), email()],
        style in any::<u8>(),
    ) {
        let kind = detect(&value).map(|i| i.kind);
        if let Ok(kind) = kind {
            let clean = normalize(kind, &value);
            let defanged = defang(&value, style);
            // Only compare where the defang is unambiguous: a clean value that already held
            // a bracketed token is itself read as defanged.
            if refang(&value) == value.trim() && !value.contains(['[', '(', '{', '\\', ' ', '"']) {
                prop_assert_eq!(normalize(kind, &defanged), clean, "{:?} defanged as {:?}", value, defanged);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_results_are_stable(raw in "\\PC{0,40}", kind in any_kind()) {
        assert_fixed_point(kind, &raw)?;
        let once = refang(&raw).into_owned();
        prop_assert_eq!(refang(&once).into_owned(), once);
    }

    #[test]
    fn text_made_of_defang_pieces_is_stable(
        pieces in prop::collection::vec(
            prop_oneof![
                Just("["), Just("]"), Just("("), Just(")"), Just("{"), Just("}"), Just("."), Just("dot"),
                Just("at"), Just("@"), Just(":"), Just("/"), Just("\\"), Just(" "), Just("hxxp"),
                Just("\""), Just("<"), Just(">"), Just("a"), Just("1"), Just("x"), Just("\u{200B}"),
            ],
            0..24,
        ),
        kind in any_kind(),
    ) {
        let raw: String = pieces.concat();
        assert_fixed_point(kind, &raw)?;
        let once = refang(&raw).into_owned();
        prop_assert_eq!(refang(&once).into_owned(), once, "refang not stable on {:?}", raw);
    }
}

/// Throughput on a mixed list, for the report and to catch a slow path. Run in release:
/// `cargo test --release -p tibridge-core --lib normalize::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check; run in release"]
fn throughput() {
    // A small linear congruential generator keeps this free of extra dependencies.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let values: Vec<(IndicatorKind, String)> = (0..200_000)
        .map(|i| {
            let n = next();
            match i % 8 {
                0 => (IndicatorKind::Sha256, format!("{:064X}", u128::from(n) * 0x9e37_79b9_7f4a_7c15)),
                1 => (IndicatorKind::Md5, format!("{:032x}", u128::from(n) << 64 | u128::from(n))),
                2 => (IndicatorKind::Domain, format!("host{n}.evil-{}.example.com", n % 97)),
                3 => (IndicatorKind::Domain, format!("Host{n}[.]evil[.]co[.]uk")),
                4 => (IndicatorKind::Url, format!("hxxps://cdn{}.evil[.]example/p/{n}.php?id={n}#x", n % 13)),
                5 => {
                    (IndicatorKind::Ipv4, format!("{}.{}.{}.{}", n % 223 + 1, n % 256, (n >> 8) % 256, (n >> 16) % 256))
                }
                6 => (IndicatorKind::Ipv6, format!("2001:DB8:{:x}::{:x}", n % 65536, (n >> 16) % 65536)),
                _ => (IndicatorKind::Email, format!("user{n}[@]Mail{}.example", n % 7)),
            }
        })
        .collect();
    let start = std::time::Instant::now();
    let ok = values.iter().filter(|(kind, v)| normalize(*kind, v).is_ok()).count();
    let took = start.elapsed();
    println!(
        "normalize: {} values in {:?} = {:.0} values/s ({} ok)",
        values.len(),
        took,
        values.len() as f64 / took.as_secs_f64(),
        ok
    );
    assert_eq!(ok, values.len());
    let start = std::time::Instant::now();
    let ok = values.iter().filter(|(_, v)| detect(v).is_ok()).count();
    let took = start.elapsed();
    println!(
        "detect: {} values in {:?} = {:.0} values/s ({} ok)",
        values.len(),
        took,
        values.len() as f64 / took.as_secs_f64(),
        ok
    );
    for kind in
        [IndicatorKind::Sha256, IndicatorKind::Domain, IndicatorKind::Url, IndicatorKind::Ipv4, IndicatorKind::Email]
    {
        let some: Vec<&String> = values.iter().filter(|(k, _)| *k == kind).map(|(_, v)| v).collect();
        let start = std::time::Instant::now();
        for v in &some {
            let _ = std::hint::black_box(normalize(kind, v));
        }
        let took = start.elapsed();
        println!("  {kind}: {:.0} ns per value", took.as_nanos() as f64 / some.len() as f64);
    }
}
