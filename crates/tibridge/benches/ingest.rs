//! Ingest benchmark: a generated MISP feed of 1,000 events and 1,000,000 attributes read into
//! the catalog by the real release binary (`tibridge collect`), pinned to one core.
//!
//! Reports attributes per second and peak memory (the child's `ru_maxrss`), as a ratio
//! against a baseline measured in the same run: parsing the same event files into
//! `serde_json::Value` and nothing else, the least any reader must do.
//!
//! Run: `cargo bench -p tibridge --bench ingest` (sizes: `INGEST_EVENTS`, `INGEST_ATTRIBUTES_PER_EVENT`;
//! the generator writes only published events to a feed, about 79 %, so the default 1,270
//! events of 1,000 attributes give about 1,000,000 attributes in about 1,000 feed events).
//! The feed is generated once under `target/bench-data/` and reused.
//!
//! Linux copies a parent's peak RSS into a forked child, so everything large (generating,
//! counting, the baseline) happens in another process or after the measured runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips the run.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"ingest".contains(a.as_str())) {
        return;
    }
    let events = env_usize("INGEST_EVENTS", 1270);
    let per_event = env_usize("INGEST_ATTRIBUTES_PER_EVENT", 1000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    let feed = root.join(format!("misp-feed-{events}x{per_event}"));
    if std::env::var_os("INGEST_GENERATE_INTO").is_some() {
        generate(events, per_event, &root, &feed);
        return;
    }
    if !feed.join("manifest.json").exists() {
        let status =
            Command::new(std::env::current_exe().unwrap()).env("INGEST_GENERATE_INTO", &feed).status().unwrap();
        assert!(status.success(), "generating the feed failed");
    }

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\n\n[[source]]\nid = \"misp-feed\"\nkind = \"misp_file\"\npath = {:?}\n",
            work.path().join("bench.db").display().to_string(),
            feed.display().to_string()
        ),
    )
    .unwrap();
    let runs: Vec<(f64, i64)> = (0..2).map(|_| run_pinned(&config)).collect();

    let attributes = count_attributes(&feed);
    let bytes: u64 =
        std::fs::read_dir(&feed).unwrap().flatten().map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum();
    let event_count = event_files(&feed).len();
    println!("feed: {attributes} attributes in {event_count} events, {:.0} MB of JSON", bytes as f64 / 1e6);
    let baseline = baseline_parse(&feed);
    println!(
        "baseline (serde_json::Value parse of every event file, in process): {:.2} s, {:.0} attributes/s",
        baseline,
        attributes as f64 / baseline
    );
    for ((seconds, max_rss_kb), label) in
        runs.into_iter().zip(["first ingest (empty store)", "re-read, nothing changed"])
    {
        println!(
            "tibridge collect, {label}: {:.2} s, {:.0} attributes/s ({:.2}x the baseline's time), peak RSS {:.0} MB",
            seconds,
            attributes as f64 / seconds,
            seconds / baseline,
            max_rss_kb as f64 / 1024.0
        );
    }
}

fn generate(events: usize, per_event: usize, root: &Path, feed: &Path) {
    eprintln!("generating a MISP feed of {events} events x {per_event} attributes in {}", feed.display());
    let started = Instant::now();
    let dataset = tibridge_lab::misp::generate_dataset(events, per_event, 7);
    let tmp = root.join("misp-feed.partial");
    let _ = std::fs::remove_dir_all(&tmp);
    dataset.write_feed_dir(&tmp).expect("write the feed");
    drop(dataset);
    std::fs::rename(&tmp, feed).expect("move the feed in place");
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
}

fn count_attributes(feed: &Path) -> u64 {
    let mut total = 0;
    for path in event_files(feed) {
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let event = &value["Event"];
        total += event["Attribute"].as_array().map_or(0, |a| a.len()) as u64;
        for object in event["Object"].as_array().into_iter().flatten() {
            total += object["Attribute"].as_array().map_or(0, |a| a.len()) as u64;
        }
    }
    total
}

fn event_files(feed: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(feed)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.file_name().is_some_and(|n| n != "manifest.json"))
        .collect();
    files.sort();
    files
}

fn baseline_parse(feed: &Path) -> f64 {
    let started = Instant::now();
    let mut keep = 0usize;
    for path in event_files(feed) {
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        keep += value.as_object().map_or(0, |o| o.len());
    }
    assert!(keep > 0);
    started.elapsed().as_secs_f64()
}

/// Runs `tibridge collect` on one core and returns (wall seconds, peak RSS in KiB).
fn run_pinned(config: &Path) -> (f64, i64) {
    let binary = env!("CARGO_BIN_EXE_tibridge");
    let mut command = if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0", binary]);
        c
    } else {
        Command::new(binary)
    };
    command.arg("--config").arg(config).arg("--json").arg("collect").stdout(std::process::Stdio::null());
    let started = Instant::now();
    // Reaped below with wait4, which std does not know about.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("start tibridge");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid with valid out pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "tibridge collect failed (status {status})"
    );
    (seconds, usage.ru_maxrss)
}
