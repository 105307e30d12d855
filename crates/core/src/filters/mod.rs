//! False-positive protection: MISP warninglists and the user's allowlist.
//!
//! Both answer one question for the policy: is this indicator known to be benign, and if so
//! by which list or entry. They must never do I/O (the engine reads the files) and never
//! scan their entries per indicator: matching is hash lookups and prefix tables, so the
//! cost per indicator does not grow with the lists.
//!
//! - [`warninglist::Warninglist::from_json`] reads one misp-warninglists `list.json`;
//!   [`warninglist::WarninglistSet::matching`] names the first list an indicator is on.
//! - [`allowlist::Allowlist::parse`] reads the user's text file;
//!   [`allowlist::Allowlist::matching`] names the entry (and line) that covers an indicator.

pub mod allowlist;
mod ipset;
pub mod warninglist;

#[cfg(test)]
mod tests {
    use super::warninglist::{Warninglist, WarninglistSet};
    use crate::indicator::{Indicator, IndicatorKind};

    /// Loads every list under `data/warninglists/` as the engine does.
    pub(crate) fn shipped_lists() -> WarninglistSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/warninglists");
        let mut folders: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("list.json"))
            .filter(|path| path.is_file())
            .collect();
        folders.sort();
        let lists: Vec<Warninglist> = folders
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let list = Warninglist::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(list.rejected.is_empty(), "{}: {:?}", path.display(), list.rejected);
                assert!(!list.is_empty(), "{}", path.display());
                list
            })
            .collect();
        assert!(lists.len() >= 10, "only {} lists shipped", lists.len());
        WarninglistSet::new(lists)
    }

    #[test]
    fn shipped_lists_load_and_hit_what_they_should() {
        let set = shipped_lists();
        let check = |kind, value: &str| set.matching(&Indicator::from_canonical(kind, value)).map(str::to_string);
        assert_eq!(check(IndicatorKind::Ipv4, "8.8.8.8").as_deref(), Some("List of known IPv4 public DNS resolvers"));
        assert_eq!(check(IndicatorKind::Ipv4, "10.1.2.3").as_deref(), Some("List of RFC 1918 CIDR blocks"));
        assert!(check(IndicatorKind::Domain, "google.com").is_some());
        assert!(check(IndicatorKind::Domain, "www.google.com").is_some());
        assert!(check(IndicatorKind::Url, "https://www.google.com/search?q=tibridge").is_some());
        assert!(check(IndicatorKind::Ipv6, "2001:4860:4860::8888").is_some());
        assert!(check(IndicatorKind::Ipv6, "fd00::1").is_some());
        assert!(check(IndicatorKind::Ipv4, "100.64.1.1").is_some());
        assert!(check(IndicatorKind::Ipv4, "239.1.2.3").is_some());
        assert!(check(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e").is_some());
        assert!(check(IndicatorKind::Email, "abuse@some-isp.example").is_some());
        assert_eq!(check(IndicatorKind::Domain, "evil-example-c2.xyz"), None);
        assert_eq!(check(IndicatorKind::Ipv4, "203.0.114.7"), None);
        assert_eq!(
            check(IndicatorKind::Sha256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
            None
        );
    }
}
