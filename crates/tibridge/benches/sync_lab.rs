//! Sync benchmark: 100,000 MISP attributes from the lab MISP to the lab Apex Central and Deep
//! Security, by the real release binary. Reports wall time, outside calls per changed item, and
//! checks that a second sync with no change makes zero calls to either sink.
//!
//! Run: `cargo bench -p tibridge --bench sync_lab` (size: `SYNC_EVENTS` x `SYNC_ATTRIBUTES_PER_EVENT`).

use std::time::Instant;
use tibridge_lab::tibridge_config::{write_sync_config, LabConfigOptions};
use tibridge_lab::{GeneratedDataset, Lab, LabConfig};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"sync_lab".contains(a.as_str())) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let events = env_usize("SYNC_EVENTS", 100);
    let per_event = env_usize("SYNC_ATTRIBUTES_PER_EVENT", 1000);
    let mut config = LabConfig::default();
    config.misp.settings.generate = GeneratedDataset { events, attrs_per_event: per_event, seed: 5 };
    // The bench measures tibridge, not the simulated vendor's documented rate limit.
    config.deep_security.settings.requests_per_minute = 0;
    let lab = Lab::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = LabConfigOptions {
        // Apex Central's list holds 10,000 objects (the lab's default): a configured sink says so,
        // and tibridge keeps the best 10,000 instead of knocking on a full list every run.
        apex_extra: "capacity = 10000".into(),
        // Rate limits lifted on our side too, so the figure is tibridge's own cost.
        deep_security_extra: "[sink.http]\nrate_limit_per_minute = 1000000".into(),
        ..LabConfigOptions::default()
    };
    let path = write_sync_config(&lab, &config, dir.path(), &options).unwrap();
    let attributes = lab.misp.as_ref().unwrap().state.attribute_count();
    let apex = &lab.apex_central.as_ref().unwrap().state;
    let ds = &lab.deep_security.as_ref().unwrap().state;

    let started = Instant::now();
    let report = sync(&path).await;
    let seconds = started.elapsed().as_secs_f64();
    let changed = changed_items(&report);
    let calls = apex.request_count() + ds.request_count();
    println!("first sync of {attributes} MISP attributes: {seconds:.1} s wall, {changed} entries added");
    println!(
        "  outside calls: Apex Central {} ({} UDSO), Deep Security {} ({} rules): {:.3} calls per changed item",
        apex.request_count(),
        apex.udso().len(),
        ds.request_count(),
        ds.rules().len(),
        calls as f64 / changed.max(1) as f64
    );

    let (apex_before, ds_before) = (apex.request_count(), ds.request_count());
    let started = Instant::now();
    let report = sync(&path).await;
    let seconds = started.elapsed().as_secs_f64();
    let changed = changed_items(&report);
    let writes = (apex.request_count() - apex_before) + (ds.request_count() - ds_before);
    println!("second sync, nothing changed: {seconds:.1} s wall, {changed} changes, {writes} calls to the sinks");
    assert_eq!(writes, 0, "a sync with no change must make no call to the sinks");
    lab.shutdown().await;
}

/// Entries added and removed over every sink.
fn changed_items(report: &serde_json::Value) -> u64 {
    report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["added"].as_u64().unwrap() + a["removed"].as_u64().unwrap())
        .sum()
}

async fn sync(config: &std::path::Path) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tibridge"))
        .arg("--config")
        .arg(config)
        .arg("--json")
        .arg("sync")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}
