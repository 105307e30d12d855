//! End to end: `tibridge triage` (the real binary) against the lab Vision One, VirusTotal and
//! Intezer, one seeded detection per playbook branch.

mod common;
use common::tibridge;

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use tibridge_lab::scenarios::seed_triage_branches;
use tibridge_lab::tibridge_config::{write_sync_config, LabConfigOptions};
use tibridge_lab::{FaultConfig, Lab, LabConfig};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Only the triage simulators: the sync side is covered elsewhere.
fn triage_lab() -> LabConfig {
    let mut config = LabConfig::default();
    config.misp.enabled = false;
    config.apex_central.enabled = false;
    config.deep_security.enabled = false;
    config.vision_one.settings.sweep_notstarted_polls = 1;
    config.vision_one.settings.sweep_running_polls = 1;
    config
}

fn status_of(report: &Value, alert: &str) -> String {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert_id"] == alert)
        .map(|a| a["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_branch_once_and_the_hunt_report_is_fresh_and_valid() {
    let config = triage_lab();
    let lab = Lab::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_sync_config(&lab, &config, dir.path(), &LabConfigOptions::default()).unwrap();
    let branches = seed_triage_branches(&lab, now() - 3600);
    assert_eq!(branches.len(), 5);

    let (code, report, stderr) = tibridge(&path, &["triage", "--once"]).await;
    assert_eq!(code, 0, "{stderr}");
    let expected = [
        ("benign", "closed"),
        ("review", "review"),
        ("malicious and blocked", "blocked"),
        ("sandbox clean", "review"),
        ("URL offline", "blocked"),
    ];
    for (branch, status) in expected {
        let seeded = branches.iter().find(|b| b.branch == branch).unwrap();
        assert_eq!(status_of(&report, &seeded.detection_id), status, "branch {branch}: {report}");
    }
    let v1 = &lab.vision_one.as_ref().unwrap().state;
    let listed: HashSet<String> = v1.suspicious_objects().iter().map(|o| o.value.clone()).collect();
    assert!(listed.contains("gate.c2-example.com") && listed.contains("short.lived-example.info"), "{listed:?}");
    assert!(
        !listed
            .iter()
            .any(|v| v.contains("benign-example") || v.contains("maybe-example") || v.contains("disputed-example")),
        "{listed:?}"
    );

    // Each hunt uploaded a STIX report with fresh ids that the OASIS validator must accept.
    let reports = v1.reports();
    assert_eq!(reports.len(), 2);
    let mut ids = HashSet::new();
    for (i, stored) in reports.iter().enumerate() {
        let bundle = stored.bundle().unwrap();
        for object in bundle["objects"].as_array().unwrap() {
            assert!(
                ids.insert(object["id"].as_str().unwrap().to_string()) || object["type"] == "identity",
                "id reused: {}",
                object["id"]
            );
        }
        if let Ok(out) = std::env::var("TIBRIDGE_STIX_OUT_DIR") {
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(Path::new(&out).join(format!("triage-hunt-{i}.json")), &stored.content).unwrap();
        }
    }
    assert_eq!(v1.sweeps().len(), 2);

    // The same detections are never handled twice, across runs of the binary.
    let (code, again, stderr) = tibridge(&path, &["triage", "--once"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["alerts_handled"], 0, "{again}");
    assert_eq!(v1.sweeps().len(), 2);

    // Cases and the review queue hold the evidence; approving carries out the block.
    let (_, cases, _) = tibridge(&path, &["cases"]).await;
    assert_eq!(cases.as_array().map(|c| c.len()), Some(5), "{cases}");
    let (_, pending, _) = tibridge(&path, &["review", "list"]).await;
    let items = pending.as_array().unwrap();
    assert!(items.len() >= 2, "{pending}");
    let (_, audit, _) = tibridge(&path, &["audit"]).await;
    assert!(audit.as_array().unwrap().iter().any(|r| r["actor"] == "triage:c2"));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enricher_down_sends_everything_to_review_and_blocks_nothing() {
    let config = triage_lab();
    let lab = Lab::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_sync_config(&lab, &config, dir.path(), &LabConfigOptions::default()).unwrap();
    seed_triage_branches(&lab, now() - 3600);
    lab.virustotal.as_ref().unwrap().faults.set(FaultConfig { error_5xx_ratio: 1.0, ..FaultConfig::default() });

    let (code, report, stderr) = tibridge(&path, &["triage", "--once"]).await;
    assert!(code == 0 || code == 1, "{stderr}");
    for alert in report["alerts"].as_array().unwrap() {
        assert_eq!(alert["status"], "review", "{alert}");
    }
    assert!(
        lab.vision_one.as_ref().unwrap().state.suspicious_objects().is_empty(),
        "an error must never lead to a block"
    );
    assert!(lab.vision_one.as_ref().unwrap().state.sweeps().is_empty());
    lab.shutdown().await;
}
