//! Matching 100,000 indicators against the shipped warninglists (data/warninglists) and a
//! 1,000-entry allowlist: the per-indicator cost the policy pays on every sync.
//!
//! Run: `cargo bench -p tibridge-core --bench filters`. The indicators are a fixed
//! pseudo-random mix (domains, some of them top sites, URLs, IPv4/IPv6, CIDRs, hashes,
//! emails), so runs compare.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tibridge_core::filters::allowlist::Allowlist;
use tibridge_core::filters::warninglist::{Warninglist, WarninglistSet};
use tibridge_core::{Indicator, IndicatorKind};

fn shipped_lists() -> WarninglistSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/warninglists");
    let mut lists = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("data/warninglists exists").flatten() {
        let path = entry.path().join("list.json");
        if let Ok(bytes) = std::fs::read(&path) {
            lists.push(Warninglist::from_json(&bytes).expect("shipped lists parse"));
        }
    }
    WarninglistSet::new(lists)
}

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn indicators(n: usize) -> Vec<Indicator> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let top = ["google.com", "www.google.com", "microsoft.com", "cdn.cloudflare.com", "github.com", "example.org"];
    (0..n)
        .map(|i| {
            let r = rng.next();
            let (kind, value) = match i % 10 {
                0 => (IndicatorKind::Domain, format!("c2-{:x}.evil-{}.xyz", r, r % 97)),
                1 => (IndicatorKind::Domain, format!("mail.{}", top[(r % top.len() as u64) as usize])),
                2 => (
                    IndicatorKind::Url,
                    format!("http://dl-{:x}.example-bad.net/payload/{}.exe", r % 100_000, r % 1000),
                ),
                3 => (
                    IndicatorKind::Ipv4,
                    format!("{}.{}.{}.{}", r % 224, (r >> 8) % 256, (r >> 16) % 256, (r >> 24) % 256),
                ),
                4 => (
                    IndicatorKind::Ipv4,
                    if r & 3 == 0 {
                        "8.8.8.8".to_string()
                    } else {
                        format!("10.{}.{}.{}", r % 256, (r >> 8) % 256, (r >> 16) % 256)
                    },
                ),
                5 => (
                    IndicatorKind::Ipv6,
                    format!("2001:{:x}:{:x}::{:x}", r % 65536, (r >> 16) % 65536, (r >> 32) % 65536),
                ),
                6 => (IndicatorKind::Ipv4Cidr, format!("{}.{}.0.0/16", r % 224, (r >> 8) % 256)),
                7 => (
                    IndicatorKind::Sha256,
                    format!("{:016x}{:016x}{:016x}{:016x}", r, r.rotate_left(7), r.rotate_left(19), r.rotate_left(31)),
                ),
                8 => (IndicatorKind::Sha1, format!("{:016x}{:016x}{:08x}", r, r.rotate_left(11), r as u32)),
                _ => (IndicatorKind::Email, format!("user{}@phish-{}.example", r % 1000, r % 50)),
            };
            Indicator::from_canonical(kind, value)
        })
        .collect()
}

fn allowlist() -> Allowlist {
    let mut text = String::from("# 1,000 entries, mixed\n");
    for i in 0..250 {
        text.push_str(&format!("partner-{i}.example.com  # partner\n"));
        text.push_str(&format!("172.{}.{}.0/24\n", 16 + i % 16, i));
        text.push_str(&format!("{:064x}\n", i as u64 * 0x1234_5678_9abc));
        text.push_str(&format!("ops{i}@corp.example\n"));
    }
    Allowlist::parse(&text).0
}

fn bench(c: &mut Criterion) {
    let lists = shipped_lists();
    let allow = allowlist();
    let input = indicators(100_000);
    let hits = input.iter().filter(|i| lists.matching(i).is_some()).count();
    eprintln!("{} lists, {} of {} indicators hit a warninglist", lists.len(), hits, input.len());

    let mut group = c.benchmark_group("filters");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.sample_size(20);
    group.bench_function("warninglists_100k", |b| {
        b.iter(|| input.iter().filter(|i| lists.matching(black_box(i)).is_some()).count())
    });
    group.bench_function("allowlist_1k_entries_100k", |b| {
        b.iter(|| input.iter().filter(|i| allow.matching(black_box(i)).is_some()).count())
    });
    group.finish();

    c.bench_function("warninglists_load_shipped", |b| b.iter(shipped_lists));
}

criterion_group!(benches, bench);
criterion_main!(benches);
