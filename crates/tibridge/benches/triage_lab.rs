//! Triage benchmark: 1,000 Vision One C2 detections against the lab at zero latency, handled
//! by the real release binary (`tibridge triage --once`).
//!
//! Reports the CPU time tibridge itself spends per detection (the child's user + system time
//! from `wait4`; the simulators run in this process, so their work is not counted) and how
//! many VirusTotal calls the cache saved. The detections share 200 URLs, as real C2 alerts
//! repeat the same infrastructure.
//!
//! Run: `cargo bench -p tibridge --bench triage_lab` (size: `TRIAGE_DETECTIONS`).

use std::path::Path;
use std::time::Instant;
use tibridge_core::{normalize, IndicatorKind};
use tibridge_lab::intezer::UrlVerdict;
use tibridge_lab::tibridge_config::{write_sync_config, LabConfigOptions};
use tibridge_lab::vision_one::OatDetection;
use tibridge_lab::{Lab, LabConfig};

fn main() {
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"triage_lab".contains(a.as_str())) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let detections: usize = std::env::var("TRIAGE_DETECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut config = LabConfig::default();
    config.misp.enabled = false;
    config.apex_central.enabled = false;
    config.deep_security.enabled = false;
    config.vision_one.settings.sweep_notstarted_polls = 0;
    config.vision_one.settings.sweep_running_polls = 0;
    config.intezer.settings.url_pending_polls = 0;
    let lab = Lab::start(config.clone()).await.unwrap();
    let (v1, vt, iz) =
        (lab.vision_one.as_ref().unwrap(), lab.virustotal.as_ref().unwrap(), lab.intezer.as_ref().unwrap());

    let detected = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    for i in 0..detections {
        let n = i % 200;
        let url = format!("http://host{n}.c2-bench-example.net/gate/{n}.php");
        let host = format!("host{n}.c2-bench-example.net");
        v1.state.seed_detection(OatDetection::c2_url(
            &format!("bench-{i}"),
            detected,
            "high",
            &format!("ws-{i}"),
            &url,
        ));
        if i < 200 {
            let canonical = normalize(IndicatorKind::Url, &url).unwrap();
            let malicious = [0, 2, 9][n % 3];
            vt.state.set_verdict(IndicatorKind::Url, &canonical.value, malicious, 0).unwrap();
            vt.state.set_verdict(IndicatorKind::Domain, &host, 0, 0).unwrap();
            iz.state.set_url_verdict(&canonical.value, UrlVerdict::Malicious);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_sync_config(&lab, &config, dir.path(), &LabConfigOptions::default()).unwrap();

    let vt_before = vt.state.requests_served();
    let started = Instant::now();
    let (report, cpu_seconds) = triage_once(&path);
    let wall = started.elapsed().as_secs_f64();
    let handled = report["alerts_handled"].as_u64().unwrap();
    let lookups = report["reputation_lookups"].as_u64().unwrap();
    let hits = report["reputation_cache_hits"].as_u64().unwrap();
    println!("{handled} detections handled of {detections} seeded: {wall:.1} s wall");
    println!(
        "  tibridge's own CPU time: {:.2} s, {:.2} ms per detection",
        cpu_seconds,
        cpu_seconds * 1000.0 / handled.max(1) as f64
    );
    println!(
        "  VirusTotal: {} objects looked up, {} calls made ({} served by the simulator), {} answered from the cache ({:.0}% saved)",
        lookups + hits,
        lookups,
        vt.state.requests_served() - vt_before,
        hits,
        100.0 * hits as f64 / (lookups + hits).max(1) as f64
    );
    println!(
        "  sandbox: {} submissions, {} from the cache; {} blocked, {} to review, {} benign",
        report["sandbox_submissions"],
        report["sandbox_cache_hits"],
        report["blocked"],
        report["reviews"],
        report["benign"]
    );
    lab.shutdown().await;
}

/// Runs `tibridge triage --once` and returns its JSON report and CPU seconds (user + system).
fn triage_once(config: &Path) -> (serde_json::Value, f64) {
    use std::io::Read;
    // Reaped below with wait4, which std does not know about.
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tibridge"))
        .arg("--config")
        .arg(config)
        .args(["--json", "triage", "--once"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid with valid out pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0 && libc::WIFEXITED(status), "tibridge triage did not exit normally");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (serde_json::from_slice(&stdout).unwrap(), seconds(usage.ru_utime) + seconds(usage.ru_stime))
}
