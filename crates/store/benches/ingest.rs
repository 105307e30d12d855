//! Store write-path benchmark: writes N generated MISP-like observations (default 1,000,000)
//! in batches of 4096 into a fresh SQLite file, then writes them all again unchanged, then
//! reads the catalog. Prints rates, CPU time and peak RSS (VmHWM).
//!
//! Run: `CARGO_TARGET_DIR=/work/main/target-store cargo bench -p tibridge-store --bench ingest`
//! Env: `INGEST_N` (observations), `INGEST_BATCH` (batch size), `INGEST_DIR` (where the db goes).
//!
//! The data is generated here (deterministic, seeded per batch) rather than checked in:
//! 1000 events of 1000 attributes, uuid v4 source refs, a MISP-like mix of kinds, 2-4 tags
//! per event, event info text, times and some confidence/TLP values.

use std::time::Instant;

use tibridge_core::{Indicator, IndicatorKind, Observation, Tlp};
use tibridge_store::{ReadOutcome, Store};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(len);
        let mut bits = 0u64;
        for i in 0..len {
            if i % 16 == 0 {
                bits = self.next();
            }
            s.push(HEX[(bits & 15) as usize] as char);
            bits >>= 4;
        }
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
    fn word(&mut self) -> String {
        const SYL: [&str; 16] =
            ["ka", "lo", "mi", "ne", "zu", "tor", "van", "rex", "qui", "sol", "dar", "pen", "ix", "or", "el", "st"];
        let n = 2 + self.below(3);
        (0..n).map(|_| SYL[self.below(16) as usize]).collect()
    }
}

const EVENT_SIZE: u64 = 1000;
const TLDS: [&str; 6] = ["com", "net", "org", "ru", "info", "xyz"];

struct Event {
    uuid: String,
    info: String,
    tags: Vec<String>,
    tlp: Option<Tlp>,
}

fn event(n: u64) -> Event {
    let mut r = Rng(0xe7e7_0000 ^ n);
    let tlp = match r.below(4) {
        0 => None,
        1 => Some(Tlp::Clear),
        2 => Some(Tlp::Green),
        _ => Some(Tlp::Amber),
    };
    let mut tags: Vec<String> = Vec::new();
    if let Some(t) = tlp {
        tags.push(format!("tlp:{}", t.as_str()));
    }
    tags.push(format!("misp-galaxy:threat-actor=\"{}\"", r.word()));
    if r.below(2) == 0 {
        tags.push("type:OSINT".into());
    }
    if r.below(3) == 0 {
        tags.push(format!("malware_classification:malware-category=\"{}\"", r.word()));
    }
    Event {
        uuid: r.uuid(),
        info: format!("OSINT - {} campaign delivering {} via {} (event {n})", r.word(), r.word(), r.word()),
        tags,
        tlp,
    }
}

fn observation(i: u64, ev: &Event) -> Observation {
    let mut r = Rng(i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
    let (kind, value) = match r.below(100) {
        0..=19 => (IndicatorKind::Sha256, r.hex(64)),
        20..=29 => (IndicatorKind::Md5, r.hex(32)),
        30..=44 => (IndicatorKind::Sha1, r.hex(40)),
        45..=64 => (IndicatorKind::Domain, format!("{}.{}.{}", r.word(), r.word(), TLDS[r.below(6) as usize])),
        65..=79 => (
            IndicatorKind::Url,
            format!(
                "http://{}.{}/{}/{}.php?id={}",
                r.word(),
                TLDS[r.below(6) as usize],
                r.word(),
                r.word(),
                r.below(100_000)
            ),
        ),
        80..=94 => (
            IndicatorKind::Ipv4,
            format!("{}.{}.{}.{}", 1 + r.below(223), r.below(256), r.below(256), 1 + r.below(254)),
        ),
        _ => (IndicatorKind::Email, format!("{}@{}.{}", r.word(), r.word(), TLDS[r.below(6) as usize])),
    };
    let mut o = Observation::new(Indicator::from_canonical(kind, value), "misp-main", r.uuid());
    o.event_ref = Some(ev.uuid.clone());
    o.event_info = Some(ev.info.clone());
    o.tags = ev.tags.clone();
    if r.below(5) == 0 {
        o.tags.push(format!("kill-chain:{}", r.word()));
    }
    o.tlp = ev.tlp;
    o.confidence = if r.below(3) == 0 { Some(r.below(101) as u8) } else { None };
    o.to_ids = r.below(10) != 0;
    let t = 1_600_000_000 + r.below(100_000_000) as i64;
    o.modified = Some(t);
    if r.below(4) == 0 {
        o.first_seen = Some(t - 86_400);
        o.last_seen = Some(t);
    }
    o
}

fn batch(start: u64, len: u64, events: &mut Option<(u64, Event)>) -> Vec<Observation> {
    (start..start + len)
        .map(|i| {
            let e = i / EVENT_SIZE;
            if events.as_ref().map(|(n, _)| *n) != Some(e) {
                *events = Some((e, event(e)));
            }
            match events {
                Some((_, ev)) => observation(i, ev),
                None => unreachable_event(),
            }
        })
        .collect()
}

fn unreachable_event() -> Observation {
    // `events` was just filled above; keep the bench free of panicking paths anyway.
    Observation::new(Indicator::from_canonical(IndicatorKind::Md5, "0".repeat(32)), "misp-main", "none")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process (all threads, including sqlx's SQLite worker).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the `)`: state is field 0, utime field 11, stime field 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes this process has caused to be written to storage so far (`/proc/self/io`).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("write_bytes:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn write_all(store: &Store, n: u64, batch_size: u64, label: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut read = store.begin_read("misp-main").await?;
    let mut events = None;
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let mut gen = std::time::Duration::ZERO;
    let mut start = 0;
    while start < n {
        let len = batch_size.min(n - start);
        let g = Instant::now();
        let b = batch(start, len, &mut events);
        gen += g.elapsed();
        store.write_observations(&mut read, &b).await?;
        start += len;
    }
    let write_time = t0.elapsed();
    let write_cpu = cpu_seconds() - c0;
    let stats = read.stats;
    let f0 = Instant::now();
    let fc0 = cpu_seconds();
    let io0 = write_bytes();
    let retired =
        store.finish_read(read, &ReadOutcome { complete: true, items_read: n, ..ReadOutcome::default() }).await?;
    let finish_time = f0.elapsed();
    let finish_cpu = cpu_seconds() - fc0;
    let finish_io = write_bytes().saturating_sub(io0);
    let total = t0.elapsed();
    let cpu = cpu_seconds() - c0;
    let store_time = write_time.saturating_sub(gen);
    println!(
        "{label}: {n} observations\n  write_observations: {:.2}s wall, {write_cpu:.2}s CPU = {:.0} obs/s \
         (generation {:.2}s excluded: {:.0} obs/s)\n  finish_read (merge, retire scan): {:.2}s wall, {finish_cpu:.2}s CPU, \
         {} MiB written, retired {retired}\n  whole read: {:.0} obs/s wall; {:.2}s CPU = {:.0} obs/CPU-s\n  \
         inserted {} updated {} unchanged {}; VmHWM {} MiB",
        write_time.as_secs_f64(),
        n as f64 / write_time.as_secs_f64(),
        gen.as_secs_f64(),
        n as f64 / store_time.as_secs_f64(),
        finish_time.as_secs_f64(),
        finish_io / (1024 * 1024),
        n as f64 / total.as_secs_f64(),
        cpu,
        n as f64 / cpu,
        stats.inserted,
        stats.updated,
        stats.unchanged,
        status_kib("VmHWM:") / 1024,
    );
    Ok(())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_u64("INGEST_N", 1_000_000);
    let batch_size = env_u64("INGEST_BATCH", 4096).max(1);
    let base = std::env::var("INGEST_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base)?;
    let path = dir.path().join("ingest.db");
    let store = Store::open_sqlite(&path).await?;
    println!("ingest bench: {n} observations, batches of {batch_size}, db {}", path.display());

    write_all(&store, n, batch_size, "first write").await?;
    write_all(&store, n, batch_size, "unchanged re-write").await?;
    if std::env::var_os("INGEST_SKIP_CATALOG").is_some() {
        return Ok(());
    }

    let t = Instant::now();
    let c = cpu_seconds();
    let mut indicators = 0u64;
    let mut observations = 0u64;
    store
        .catalog_each(|ci| {
            indicators += 1;
            observations += ci.observations.len() as u64;
        })
        .await?;
    println!(
        "catalog_each: {indicators} indicators, {observations} observations in {:.2}s wall, {:.2}s CPU; VmHWM {} MiB",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        status_kib("VmHWM:") / 1024
    );
    let t = Instant::now();
    let c = cpu_seconds();
    let catalog = store.catalog().await?;
    println!(
        "catalog(): {} indicators in {:.2}s wall, {:.2}s CPU; VmRSS {} MiB, VmHWM {} MiB",
        catalog.len(),
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        status_kib("VmRSS:") / 1024,
        status_kib("VmHWM:") / 1024
    );
    drop(catalog);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database file {} MiB", size / (1024 * 1024));
    store.close().await;
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("ingest bench failed: {e}");
        std::process::exit(1);
    }
}
