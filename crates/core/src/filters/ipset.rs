//! A set of IP networks answering "does this address or network overlap any of mine?" in
//! a handful of hash lookups and one binary search, whatever the set's size.
//!
//! Two prefixes either nest or are disjoint, so a query network overlaps a stored one
//! exactly when a stored prefix contains it (found by masking the query to each prefix
//! length present, most specific first) or a stored prefix starts inside it (found by binary
//! search over the sorted starts). It must never scan the whole set per query.

use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

trait Bits: Copy + Ord + Hash + Eq {
    const WIDTH: u8;
    fn mask(self, len: u8) -> Self;
    fn last_of(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len.min(32))))
        }
    }
    fn last_of(self, len: u8) -> Self {
        self.mask(len) | !(u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0))
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len.min(128))))
        }
    }
    fn last_of(self, len: u8) -> Self {
        self.mask(len) | !(u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0))
    }
}

#[derive(Debug, Clone)]
struct Family<A> {
    /// Prefix lengths present, longest first.
    lens: Vec<u8>,
    exact: HashMap<(u8, A), usize>,
    /// (first address, prefix length, value), sorted by first address.
    starts: Vec<(A, u8, usize)>,
}

impl<A: Bits> Default for Family<A> {
    fn default() -> Self {
        Family { lens: Vec::new(), exact: HashMap::new(), starts: Vec::new() }
    }
}

impl<A: Bits> Family<A> {
    fn insert(&mut self, addr: A, len: u8, value: usize) {
        let network = addr.mask(len);
        if self.exact.contains_key(&(len, network)) {
            return;
        }
        self.exact.insert((len, network), value);
        if !self.lens.contains(&len) {
            self.lens.push(len);
            self.lens.sort_unstable_by(|a, b| b.cmp(a));
        }
        self.starts.push((network, len, value));
    }

    fn finish(&mut self) {
        self.starts.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn overlapping(&self, addr: A, len: u8) -> Option<usize> {
        // A stored prefix that contains the query (most specific first).
        for &stored in self.lens.iter().filter(|l| **l <= len) {
            if let Some(value) = self.exact.get(&(stored, addr.mask(stored))) {
                return Some(*value);
            }
        }
        // A stored prefix inside the query network.
        if len < A::WIDTH {
            let first = addr.mask(len);
            let last = addr.last_of(len);
            let at = self.starts.partition_point(|(start, _, _)| *start < first);
            if let Some((start, _, value)) = self.starts.get(at) {
                if *start <= last {
                    return Some(*value);
                }
            }
        }
        None
    }
}

/// Networks (v4 and v6) each carrying a `usize` the owner uses to say which entry hit.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetSet {
    v4: Family<u32>,
    v6: Family<u128>,
}

impl NetSet {
    /// Adds a network; a duplicate keeps the first value. Call [`NetSet::finish`] after the
    /// last insert.
    pub(crate) fn insert(&mut self, net: IpNet, value: usize) {
        match net {
            IpNet::V4(n) => self.v4.insert(u32::from(n.network()), n.prefix_len(), value),
            IpNet::V6(n) => self.v6.insert(u128::from(n.network()), n.prefix_len(), value),
        }
    }

    pub(crate) fn finish(&mut self) {
        self.v4.finish();
        self.v6.finish();
    }

    /// The value of a stored network that contains or lies inside `net`.
    pub(crate) fn overlapping(&self, net: IpNet) -> Option<usize> {
        match net {
            IpNet::V4(n) => self.v4.overlapping(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self.v6.overlapping(u128::from(n.network()), n.prefix_len()),
        }
    }
}

/// Networks merged into disjoint sorted ranges: answers only "does anything overlap?",
/// with one binary search and no hashing (the warninglists' question; the allowlist, which
/// must say which entry hit, uses [`NetSet`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    count: usize,
}

impl RangeSet {
    pub(crate) fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> RangeSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut count = 0;
        for net in nets {
            count += 1;
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        RangeSet { v4: merge(v4), v6: merge(v6), count }
    }

    /// How many networks went in (before merging).
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn overlaps(&self, net: IpNet) -> bool {
        match net {
            IpNet::V4(n) => overlaps(&self.v4, u32::from(n.network()), u32::from(n.broadcast())),
            IpNet::V6(n) => overlaps(&self.v6, u128::from(n.network()), u128::from(n.broadcast())),
        }
    }
}

fn merge<A: Copy + Ord>(mut ranges: Vec<(A, A)>) -> Vec<(A, A)> {
    ranges.sort_unstable();
    let mut merged: Vec<(A, A)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn overlaps<A: Copy + Ord>(ranges: &[(A, A)], first: A, last: A) -> bool {
    // The last range starting at or before `last` is the only one that can overlap.
    let after = ranges.partition_point(|(start, _)| *start <= last);
    after.checked_sub(1).and_then(|i| ranges.get(i)).is_some_and(|(_, end)| *end >= first)
}

/// Reads `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32` (any case); host bits in a CIDR are
/// cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// The host of a URL (`scheme://host[:port]/...`) when it is an IP literal.
pub(crate) fn url_ip_host(url: &str) -> Option<IpNet> {
    let host = url_host(url)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse::<IpAddr>().ok().map(IpNet::from)
}

/// The host part of a URL as MISP takes it: after `//` if present, before the first `/`,
/// without userinfo or port.
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = match url.find("//") {
        Some(at) => url.get(at + 2..)?,
        None => url,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host_port = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(close) => host_port.get(..=close)?,
            None => host_port,
        }
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    (!host.is_empty()).then_some(host)
}

/// `a.b.example.com`, `b.example.com`, `example.com`, `com`: the label suffixes a hostname
/// list is checked against.
pub(crate) fn label_suffixes(host: &str) -> impl Iterator<Item = &str> {
    let host = host.trim_end_matches('.');
    std::iter::once(host)
        .chain(host.match_indices('.').filter_map(move |(at, _)| host.get(at + 1..)))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> NetSet {
        let mut set = NetSet::default();
        for (i, n) in nets.iter().enumerate() {
            set.insert(parse_net(n).unwrap_or_else(|| panic!("{n}")), i);
        }
        set.finish();
        set
    }

    fn hit(set: &NetSet, q: &str) -> Option<usize> {
        set.overlapping(parse_net(q).unwrap_or_else(|| panic!("{q}")))
    }

    #[test]
    fn contains_and_inside_both_hit() {
        let s = set(&["10.0.0.0/8", "192.168.1.7", "2001:DB8::/32", "0.0.0.0/32"]);
        assert_eq!(hit(&s, "10.1.2.3"), Some(0));
        assert_eq!(hit(&s, "10.9.0.0/16"), Some(0));
        assert_eq!(hit(&s, "8.0.0.0/6"), Some(0), "the query network contains 10/8");
        assert_eq!(hit(&s, "192.168.1.7"), Some(1));
        assert_eq!(hit(&s, "192.168.0.0/16"), Some(1));
        assert_eq!(hit(&s, "192.168.1.8"), None);
        assert_eq!(hit(&s, "11.0.0.0/8"), None);
        assert_eq!(hit(&s, "2001:db8:1::1"), Some(2));
        assert_eq!(hit(&s, "2001:db9::1"), None);
        assert_eq!(hit(&s, "0.0.0.0"), Some(3));
        assert_eq!(hit(&s, "0.0.0.0/0"), Some(3));
        assert_eq!(hit(&s, "255.255.255.255"), None);
    }

    #[test]
    fn range_set_agrees_with_net_set() {
        let nets = ["10.0.0.0/8", "10.128.0.0/9", "192.168.1.7", "2001:DB8::/32", "0.0.0.0/32", "11.0.0.0/8"];
        let ranges = RangeSet::from_nets(nets.iter().filter_map(|n| parse_net(n)));
        let table = set(&nets);
        for q in [
            "10.1.2.3",
            "9.255.255.255",
            "12.0.0.0",
            "11.255.255.255",
            "8.0.0.0/6",
            "192.168.1.0/24",
            "192.168.1.8",
            "0.0.0.0",
            "0.0.0.1",
            "0.0.0.0/0",
            "2001:db8::1",
            "2001:db9::/32",
            "::/0",
            "255.255.255.255",
        ] {
            assert_eq!(ranges.overlaps(parse_net(q).unwrap_or_else(|| panic!("{q}"))), hit(&table, q).is_some(), "{q}");
        }
        assert_eq!(ranges.len(), 6);
    }

    #[test]
    fn hosts_and_suffixes() {
        assert_eq!(url_host("http://user:pw@Example.com:8080/x?y"), Some("Example.com"));
        assert_eq!(url_host("https://[2001:db8::1]:443/"), Some("[2001:db8::1]"));
        assert_eq!(url_ip_host("https://[2001:db8::1]:443/"), parse_net("2001:db8::1"));
        assert_eq!(url_ip_host("http://8.8.8.8/dns"), parse_net("8.8.8.8"));
        assert_eq!(url_host("http:///"), None);
        let s: Vec<&str> = label_suffixes("a.b.example.com").collect();
        assert_eq!(s, vec!["a.b.example.com", "b.example.com", "example.com", "com"]);
        assert_eq!(label_suffixes("..").count(), 0);
        assert!(parse_net("10.1.2.3/8") == parse_net("10.0.0.0/8"));
        assert!(parse_net("10.0.0.0/33").is_none() && parse_net("x").is_none());
    }
}
