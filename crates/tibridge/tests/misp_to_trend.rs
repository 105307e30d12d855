//! End to end: the real `tibridge` binary syncing the lab MISP to the lab Apex Central and
//! Deep Security, through deletions, expiry, full lists, a SIGKILL mid-apply, faulty vendors
//! and a broken MISP. The lab runs in this test process so the test can change and inspect
//! the simulators while the binary talks to them over loopback.

mod common;
use common::tibridge;

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tibridge_lab::tibridge_config::{write_sync_config, LabConfigOptions};
use tibridge_lab::{FaultConfig, GeneratedDataset, Lab, LabConfig};

struct Setup {
    lab: Lab,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

async fn setup(events: usize, per_event: usize, options: LabConfigOptions) -> Setup {
    let mut config = LabConfig::default();
    config.misp.settings.generate = GeneratedDataset { events, attrs_per_event: per_event, seed: 11 };
    let lab = Lab::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_sync_config(&lab, &config, dir.path(), &options).unwrap();
    Setup { lab, _dir: dir, config: path }
}

fn plan_of<'a>(report: &'a Value, sink: &str) -> &'a Value {
    report["plans"].as_array().unwrap().iter().find(|p| p["sink_id"] == sink).unwrap()
}

fn changes(report: &Value, sink: &str) -> (usize, usize) {
    let plan = &plan_of(report, sink)["plan"];
    (plan["additions"].as_array().unwrap().len(), plan["removals"].as_array().unwrap().len())
}

async fn ledger_sizes(config: &Path) -> (u64, u64) {
    let (_, status, _) = tibridge(config, &["status"]).await;
    let entries = |id: &str| {
        status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink_id"] == id)
            .map_or(0, |s| s["entries"].as_u64().unwrap())
    };
    (entries("apex"), entries("deep-security"))
}

/// The simulators hold exactly what the ledger says, once each.
async fn assert_converged(setup: &Setup) {
    let (code, plan, stderr) = tibridge(&setup.config, &["plan"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&plan, "apex"), (0, 0), "apex not converged");
    assert_eq!(changes(&plan, "deep-security"), (0, 0), "deep security not converged");
    let (apex_ledger, ds_ledger) = ledger_sizes(&setup.config).await;
    let udso = setup.lab.apex_central.as_ref().unwrap().state.udso();
    let keys: HashSet<(String, String)> =
        udso.iter().map(|u| (u.udso_type.clone(), u.content.to_lowercase())).collect();
    assert_eq!(keys.len(), udso.len(), "duplicate UDSO");
    assert_eq!(udso.len() as u64, apex_ledger, "Apex Central and the ledger disagree");
    let rules = setup.lab.deep_security.as_ref().unwrap().state.rules();
    let hashes: HashSet<String> = rules.iter().map(|r| r.sha256.to_lowercase()).collect();
    assert_eq!(hashes.len(), rules.len(), "duplicate Deep Security rule");
    assert_eq!(rules.len() as u64, ds_ledger, "Deep Security and the ledger disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misp_reaches_both_sinks_and_deletions_follow() {
    let setup = setup(4, 25, LabConfigOptions::default()).await;
    let (code, first, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (apex_added, _) = changes(&first, "apex");
    let (ds_added, _) = changes(&first, "deep-security");
    assert!(apex_added > 20 && ds_added > 3, "{apex_added} {ds_added}");
    assert_converged(&setup).await;

    // Every UDSO carries its MISP provenance and the configured scan action.
    let udso = setup.lab.apex_central.as_ref().unwrap().state.udso();
    assert!(udso.iter().all(|u| u.scan_action == "block" && u.notes.contains("misp")), "{:?}", udso.first());
    let types: HashSet<&str> = udso.iter().map(|u| u.udso_type.as_str()).collect();
    assert!(
        types.contains("file_sha1") && types.contains("domain") && types.contains("url") && types.contains("ip"),
        "{types:?}"
    );

    // A second run makes no write call at all.
    let apex_calls = setup.lab.apex_central.as_ref().unwrap().state.request_count();
    let ds_calls = setup.lab.deep_security.as_ref().unwrap().state.request_count();
    let (code, second, _) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0);
    assert_eq!(changes(&second, "apex"), (0, 0));
    assert_eq!(setup.lab.apex_central.as_ref().unwrap().state.request_count(), apex_calls);
    assert_eq!(setup.lab.deep_security.as_ref().unwrap().state.request_count(), ds_calls);

    // An attribute deleted in MISP leaves both controls.
    let misp = setup.lab.misp.as_ref().unwrap();
    let udso_values: HashSet<String> = udso.iter().map(|u| u.content.to_lowercase()).collect();
    let rule_values: HashSet<String> =
        setup.lab.deep_security.as_ref().unwrap().state.rules().iter().map(|r| r.sha256.to_lowercase()).collect();
    let data = misp.state.dataset();
    let sha1 =
        data.attributes.iter().find(|a| a.attr_type == "sha1" && udso_values.contains(&a.value)).unwrap().clone();
    let sha256 =
        data.attributes.iter().find(|a| a.attr_type == "sha256" && rule_values.contains(&a.value)).unwrap().clone();
    misp.state.soft_delete_attribute(&sha1.uuid).unwrap();
    misp.state.soft_delete_attribute(&sha256.uuid).unwrap();
    let (code, third, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&third, "apex"), (0, 1));
    assert_eq!(changes(&third, "deep-security"), (0, 1));
    assert!(!setup
        .lab
        .apex_central
        .as_ref()
        .unwrap()
        .state
        .udso()
        .iter()
        .any(|u| u.content.eq_ignore_ascii_case(&sha1.value)));
    assert!(!setup
        .lab
        .deep_security
        .as_ref()
        .unwrap()
        .state
        .rules()
        .iter()
        .any(|r| r.sha256.eq_ignore_ascii_case(&sha256.value)));
    assert_converged(&setup).await;

    // MISP answering 500 removes nothing and fails the run.
    misp.state.set_down(true);
    let before = setup.lab.apex_central.as_ref().unwrap().state.udso().len();
    let (code, down, _) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 1);
    assert_eq!(changes(&down, "apex"), (0, 0));
    assert_eq!(changes(&down, "deep-security"), (0, 0));
    assert_eq!(setup.lab.apex_central.as_ref().unwrap().state.udso().len(), before);
    misp.state.set_down(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_indicator_is_removed() {
    let options = LabConfigOptions { misp_extra: "max_age = \"7d\"".into(), ..LabConfigOptions::default() };
    let setup = setup(3, 20, options).await;
    // One attribute of a published TLP:GREEN event was last changed almost 7 days ago: it is
    // blocked now and its max_age runs out within seconds.
    let misp = setup.lab.misp.as_ref().unwrap();
    let event = misp.state.add_event("expiring soon", &["tlp:green"], true);
    let value = "5b5ad6a5e3b7d1e6d4c0a7c3a4e7d1d2e3f4a5b6";
    let added = misp.state.add_attribute(event, "sha1", value, true, &[]).unwrap();
    let mut data = misp.state.dataset();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    data.attributes.iter_mut().find(|a| a.uuid == added.uuid).unwrap().timestamp = now - 7 * 86_400 + 15;
    misp.state.replace_dataset(data);

    let (code, _, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    let apex = setup.lab.apex_central.as_ref().unwrap();
    let present = |value: &str| apex.state.udso().iter().any(|u| u.content.eq_ignore_ascii_case(value));
    assert!(present(value), "the attribute must be blocked while it is younger than max_age");
    tokio::time::sleep(Duration::from_secs(16)).await;
    let (code, report, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&report, "apex").1, 1);
    assert!(!present(value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_apex_list_keeps_the_best_and_warns() {
    // By policy: the sink's capacity keeps the best N, and the plan says what was left out.
    let options = LabConfigOptions { apex_extra: "capacity = 10".into(), ..LabConfigOptions::default() };
    let setup = setup(4, 25, options).await;
    let (code, report, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&report, "apex").0, 10);
    assert!(plan_of(&report, "apex")["left_out_by_capacity"].as_u64().unwrap() > 0);
    assert_eq!(setup.lab.apex_central.as_ref().unwrap().state.udso().len(), 10);

    // By the vendor: the list fills up (-1101) before tibridge's own limit.
    let setup = setup_full_vendor_list().await;
    let (code, report, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    let applied = report["applied"].as_array().unwrap().iter().find(|a| a["sink_id"] == "apex").unwrap();
    let warnings = applied["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("is full")), "{applied}");
    assert_eq!(setup.lab.apex_central.as_ref().unwrap().state.udso().len(), 5);
    let (apex_ledger, _) = ledger_sizes(&setup.config).await;
    assert_eq!(apex_ledger, 5, "only what the vendor confirmed is in the ledger");
}

async fn setup_full_vendor_list() -> Setup {
    let setup = setup(4, 25, LabConfigOptions::default()).await;
    setup.lab.apex_central.as_ref().unwrap().state.set_capacity(5);
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_apply_then_run_again_converges() {
    let setup = setup(8, 25, LabConfigOptions::default()).await;
    let apex = setup.lab.apex_central.as_ref().unwrap();
    apex.faults.set(FaultConfig { latency: Duration::from_millis(60), ..FaultConfig::default() });
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tibridge"))
        .arg("--config")
        .arg(&setup.config)
        .arg("sync")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while apex.state.udso().len() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "the apply never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let partial = apex.state.udso().len();
    apex.faults.clear();

    let (code, report, stderr) = tibridge(&setup.config, &["sync"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (added, removed) = changes(&report, "apex");
    assert_eq!(removed, 0);
    assert!(added > 0, "the first run was killed after {partial} objects, yet nothing was left to add");
    assert_converged(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_answering_30_percent_errors_converge() {
    let setup = setup(4, 25, LabConfigOptions::default()).await;
    let faulty = FaultConfig {
        error_5xx_ratio: 0.15,
        rate_limit_429_ratio: 0.15,
        retry_after_secs: 1,
        seed: Some(7),
        ..FaultConfig::default()
    };
    setup.lab.apex_central.as_ref().unwrap().faults.set(faulty.clone());
    setup.lab.deep_security.as_ref().unwrap().faults.set(faulty);
    let mut last = (0, Value::Null, String::new());
    for _ in 0..4 {
        last = tibridge(&setup.config, &["sync"]).await;
        if last.0 == 0 {
            break;
        }
    }
    assert_eq!(last.0, 0, "{}", last.2);
    let stats = setup.lab.apex_central.as_ref().unwrap().faults.stats();
    assert!(stats.server_errors + stats.rate_limited > 0, "no fault was injected: {stats:?}");
    setup.lab.apex_central.as_ref().unwrap().faults.clear();
    setup.lab.deep_security.as_ref().unwrap().faults.clear();
    assert_converged(&setup).await;
}
