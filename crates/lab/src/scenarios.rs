//! Seeded scenarios shared by the demo and the end-to-end tests.
//!
//! The values are made up (`.example` names) and never leave loopback.

use crate::intezer::UrlVerdict;
use crate::vision_one::OatDetection;
use crate::Lab;
use tibridge_core::{normalize, IndicatorKind};
use time::OffsetDateTime;

/// One Vision One C2 detection seeded to reach one branch of the triage playbook.
#[derive(Debug, Clone)]
pub struct TriageBranch {
    /// The playbook branch it exercises, for people: `benign`, `review`, ...
    pub branch: &'static str,
    pub detection_id: String,
    pub url: String,
    pub host: String,
}

/// Seeds one detection per playbook branch: benign (VirusTotal 0), review (1 to 3),
/// malicious and blocked (4 or more, sandbox malicious), sandbox clean (VirusTotal and the
/// sandbox disagree), and URL offline. Each detection's host is known to VirusTotal as clean
/// so the URL decides. Needs the Vision One, VirusTotal and Intezer simulators.
/// `detected` is the detections' time in Unix seconds.
pub fn seed_triage_branches(lab: &Lab, detected: i64) -> Vec<TriageBranch> {
    let detected = OffsetDateTime::from_unix_timestamp(detected).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let (Some(v1), Some(vt), Some(iz)) = (&lab.vision_one, &lab.virustotal, &lab.intezer) else {
        return Vec::new();
    };
    let cases: [(&str, &str, u32, Option<UrlVerdict>); 5] = [
        ("benign", "http://cdn-updates.benign-example.net/app/latest.json", 0, None),
        ("review", "http://promo.maybe-example.org/landing?id=7", 2, None),
        ("malicious and blocked", "http://gate.c2-example.com/panel/gate.php", 9, Some(UrlVerdict::Malicious)),
        ("sandbox clean", "http://files.disputed-example.net/doc/view", 6, Some(UrlVerdict::NoThreats)),
        ("URL offline", "http://short.lived-example.info/x/1", 5, Some(UrlVerdict::Offline)),
    ];
    let mut seeded = Vec::new();
    for (i, (branch, url, malicious, sandbox)) in cases.into_iter().enumerate() {
        let Ok(canonical) = normalize(IndicatorKind::Url, url) else { continue };
        let host = url.split('/').nth(2).unwrap_or_default().to_string();
        let id = format!("c2-branch-{i}");
        v1.state.seed_detection(OatDetection::c2_url(&id, detected, "high", &format!("ws-{i:02}"), url));
        v1.state.mark_seen(&host);
        let _ = vt.state.set_verdict(IndicatorKind::Url, &canonical.value, malicious, 0);
        let _ = vt.state.set_verdict(IndicatorKind::Domain, &host, 0, 0);
        if let Some(verdict) = sandbox {
            iz.state.set_url_verdict(&canonical.value, verdict);
        }
        seeded.push(TriageBranch { branch, detection_id: id, url: canonical.value, host });
    }
    seeded
}
