//! End to end: the real `tibridge` binary on the shipped example config and sample feeds.
//!
//! Covers the foundation's promises: EDL and STIX outputs, the ledger, a second run that
//! changes nothing, a removal when an item leaves a feed, a mass removal refused with exit
//! code 3 and then forced, and a missing source that retires nothing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Lab {
    /// Copies `examples/` into a temporary folder, pointing the config at the repository's
    /// shipped warninglists.
    fn new() -> Lab {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        copy_dir(&repo.join("examples"), &root.join("examples"));
        let config = std::fs::read_to_string(root.join("examples/tibridge.toml")).unwrap();
        let warninglists = repo.join("data/warninglists").canonicalize().unwrap();
        let config = config.replace("\"../data/warninglists\"", &format!("{:?}", warninglists.display().to_string()));
        std::fs::write(root.join("examples/tibridge.toml"), config).unwrap();
        Lab { _dir: dir, root }
    }

    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_tibridge"))
            .arg("--config")
            .arg(self.root.join("examples/tibridge.toml"))
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (output.status.code().unwrap_or(-1), json, stderr)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap_or_default()
    }

    fn edit(&self, path: &str, f: impl FnOnce(String) -> String) {
        let path = self.root.join(path);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, f(text)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn plan_of<'a>(report: &'a Value, sink: &str) -> &'a Value {
    report["plans"].as_array().unwrap().iter().find(|p| p["sink_id"] == sink).unwrap()
}

fn changes(report: &Value, sink: &str) -> (usize, usize) {
    let plan = &plan_of(report, sink)["plan"];
    (plan["additions"].as_array().unwrap().len(), plan["removals"].as_array().unwrap().len())
}

/// Keeps a copy of every STIX file the tests write, for the OASIS validator in CI.
fn keep_stix_for_validation(path: &Path, name: &str) {
    if let Ok(dir) = std::env::var("TIBRIDGE_STIX_OUT_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, Path::new(&dir).join(name)).unwrap();
    }
}

#[test]
fn example_config_syncs_converges_removes_and_guards_mass_removal() {
    let lab = Lab::new();

    let (code, _, stderr) = lab.run(&["check"]);
    assert_eq!(code, 0, "{stderr}");

    // First run: everything is added, bad input is reported by item and skipped.
    let (code, first, stderr) = lab.run(&["sync"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&first, "firewall"), (15, 0));
    let skipped: Vec<String> = first["sources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["skipped"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
        .collect();
    assert!(skipped.iter().any(|s| s.contains("blocklist.txt:9")), "{skipped:?}");
    assert!(skipped.iter().any(|s| s.contains("sha1 must be 40 hex digits, got 39")), "{skipped:?}");
    assert!(skipped.iter().any(|s| s.contains("FOLLOWEDBY")), "{skipped:?}");

    let domains = lab.read("out/edl/domain.txt");
    assert!(domains.lines().any(|l| l == "secure-webmail-verify.com"), "{domains}");
    assert!(domains.lines().any(|l| l == "cdn-telemetry-sync.org"), "{domains}");
    for never in [
        "google.com",
        "portal.intranet.corp-example.com",
        "leak-portal-onion-gw.top",
        "retired-phish.example-bad.net",
        "old-c2.sinkholed-example.net",
        "tracking.secure-webmail-verify.com",
    ] {
        assert!(!domains.lines().any(|l| l == never), "{never} must not be blocked:\n{domains}");
    }
    let ips = lab.read("out/edl/ip.txt");
    assert!(ips.lines().any(|l| l == "185.220.101.47"), "{ips}");
    assert!(!ips.contains("8.8.8.8") && !ips.contains("10.0.0.0/8"), "{ips}");
    assert!(lab.read("out/edl/url.txt").lines().any(|l| l == "files-share-transfer.top/a/loader.bin"));

    // The shared STIX file holds only what may be shared as TLP:GREEN.
    let stix_path = lab.root.join("out/tibridge.stix.json");
    keep_stix_for_validation(&stix_path, "example-share.json");
    let bundle: Value = serde_json::from_str(&lab.read("out/tibridge.stix.json")).unwrap();
    let patterns: Vec<&str> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "indicator")
        .map(|o| o["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(patterns.len(), 16, "{patterns:?}");
    assert!(patterns.iter().any(|p| p.contains("file:hashes.'SHA-256'")));
    assert!(
        !patterns.iter().any(|p| p.contains("45.155.205.233")),
        "a TLP:AMBER indicator reached the TLP:GREEN share"
    );

    // Second run: nothing to do.
    let (code, second, stderr) = lab.run(&["sync"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&second, "firewall"), (0, 0));
    assert_eq!(changes(&second, "share"), (0, 0));

    // An item leaves a feed: it is removed, and the audit log says so.
    lab.edit("examples/feeds/blocklist.txt", |t| t.replace("185.220.101[.]47\n", ""));
    let (code, third, stderr) = lab.run(&["sync"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&third, "firewall"), (0, 1));
    assert!(!lab.read("out/edl/ip.txt").contains("185.220.101.47"));
    let (_, audit, _) = lab.run(&["audit", "--limit", "200"]);
    assert!(audit.as_array().unwrap().iter().any(|r| r["action"] == "remove"
        && r["item"] == "ipv4:185.220.101.47"
        && r["reason"] == "no longer in any source"));

    // A missing source is an error for that source only; nothing it said is retired.
    std::fs::rename(lab.root.join("examples/feeds/misp"), lab.root.join("examples/feeds/misp-away")).unwrap();
    let (code, missing, _) = lab.run(&["sync"]);
    assert_eq!(code, 1, "a source that could not be read must fail the run");
    assert_eq!(changes(&missing, "firewall"), (0, 0));
    std::fs::rename(lab.root.join("examples/feeds/misp-away"), lab.root.join("examples/feeds/misp")).unwrap();

    // The MISP feed comes back empty: most of the firewall would go. Refused, exit 3.
    let feed = lab.root.join("examples/feeds/misp");
    for entry in std::fs::read_dir(&feed).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(feed.join("manifest.json"), "{}").unwrap();
    let before = lab.read("out/edl/domain.txt");
    let (code, refused, _) = lab.run(&["sync"]);
    assert_eq!(code, 3);
    assert!(plan_of(&refused, "firewall")["refusal"].is_object());
    assert_eq!(lab.read("out/edl/domain.txt"), before, "a refused plan must change nothing");

    // The same run, forced.
    let (code, forced, stderr) = lab.run(&["sync", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, removals) = changes(&forced, "firewall");
    assert!(removals >= 7, "{removals}");
    assert!(!lab.read("out/edl/domain.txt").contains("secure-webmail-verify.com"));
    let (_, status, _) = lab.run(&["status"]);
    let firewall = status["sinks"].as_array().unwrap().iter().find(|s| s["sink_id"] == "firewall").unwrap();
    assert_eq!(firewall["entries"].as_u64().unwrap() as usize, 15 - 1 - removals);
}

#[test]
fn a_config_error_names_the_key_and_exits_2() {
    let lab = Lab::new();
    lab.edit("examples/tibridge.toml", |t| {
        t.replace("max_cidr_prefix_v4 = 24", "max_cidr_prefix_v4 = 24\nmax_cidr_prefix = 16")
    });
    let (code, _, stderr) = lab.run(&["check"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("max_cidr_prefix") && stderr.contains("line"), "{stderr}");
}

#[test]
fn dry_run_changes_nothing_outside() {
    let lab = Lab::new();
    let (code, report, stderr) = lab.run(&["sync", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(changes(&report, "firewall"), (15, 0));
    assert!(!lab.root.join("out/edl/domain.txt").exists());
    let (_, status, _) = lab.run(&["status"]);
    assert!(status["sinks"].as_array().unwrap().iter().all(|s| s["entries"] == 0));
}
