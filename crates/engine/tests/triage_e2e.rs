//! The triage playbook end to end with the real connectors against the lab simulators of
//! Vision One, VirusTotal and Intezer on 127.0.0.1:0. Seed data is made up for this test
//! (`.example` names; the simulator resolves URLs to RFC 5737 documentation addresses).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tibridge_connectors::http::{HttpClient, HttpClientBuilder, HttpOptions, RetryPolicy, Secret};
use tibridge_connectors::intezer::IntezerSandbox;
use tibridge_connectors::virustotal::VirusTotalEnricher;
use tibridge_connectors::vision_one::{VisionOneAlertSource, VisionOneHunter, VisionOneSink};
use tibridge_core::policy::Filters;
use tibridge_core::{normalize, IndicatorKind};
use tibridge_engine::triage::{Playbook, TriagePolicy};
use tibridge_lab::intezer::{self, IntezerConfig, IntezerState, UrlVerdict};
use tibridge_lab::virustotal::{self, VirusTotalConfig, VirusTotalState};
use tibridge_lab::vision_one::{self, OatDetection, VisionOneConfig, VisionOneState};
use tibridge_lab::FaultHandle;
use tibridge_store::cases::{CaseStatus, ReviewStatus};
use tibridge_store::Store;
use time::OffsetDateTime;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn fast_client(target: &str) -> HttpClient {
    HttpClientBuilder::new(target)
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_total: Duration::from_secs(10),
        })
        .build()
        .expect("client")
}

/// Serves a simulator router on 127.0.0.1:0 (a macro, so this crate needs no axum).
macro_rules! serve {
    ($router:expr) => {{
        let server = tibridge_lab::serve($router, FaultHandle::default(), loopback()).await.expect("serve");
        let base = server.base_url();
        (server, base)
    }};
}

#[tokio::test]
async fn a_c2_detection_is_blocked_hunted_and_recorded_once() {
    let now = OffsetDateTime::now_utc();
    let url = "http://c2.example/gate.php";

    let v1_state = Arc::new(VisionOneState::new(VisionOneConfig {
        sweep_notstarted_polls: 1,
        sweep_running_polls: 1,
        ..Default::default()
    }));
    v1_state.seed_detection(OatDetection::c2_url("det-1", now - time::Duration::hours(2), "high", "ws-01", url));
    v1_state.mark_seen("c2.example");
    let (_v1, v1_base) = serve!(vision_one::router(v1_state.clone()));

    let vt_state = Arc::new(VirusTotalState::new(VirusTotalConfig::default()));
    let canonical = normalize(IndicatorKind::Url, url).expect("url");
    vt_state.set_verdict(IndicatorKind::Url, &canonical.value, 9, 0).expect("seed");
    vt_state.set_verdict(IndicatorKind::Domain, "c2.example", 2, 0).expect("seed");
    let (_vt, vt_base) = serve!(virustotal::router(vt_state.clone()));

    let iz_state = Arc::new(IntezerState::new(IntezerConfig::default()));
    iz_state.set_url_verdict(&canonical.value, UrlVerdict::Malicious);
    let (_iz, iz_root) = serve!(intezer::router(iz_state.clone()));

    let token = || Secret::new(vision_one::DEFAULT_TOKEN);
    let alerts = VisionOneAlertSource::new("v1-alerts".into(), &v1_base, token(), fast_client("v1")).expect("alerts");
    let vt_client = VirusTotalEnricher::client(&HttpOptions::default(), 6000).expect("client");
    let vt = VirusTotalEnricher::new(&vt_base, Secret::new(virustotal::DEFAULT_API_KEY), vt_client).expect("vt");
    let sandbox = IntezerSandbox::new(
        &format!("{iz_root}/api/v2-0"),
        Secret::new(intezer::DEFAULT_API_KEY),
        fast_client("intezer"),
    )
    .expect("intezer")
    .with_poll_interval(Duration::from_millis(10))
    .with_max_wait(Duration::from_secs(5));
    let sink = VisionOneSink::new("vision-one-triage".into(), &v1_base, token(), fast_client("v1so")).expect("sink");
    let hunter = VisionOneHunter::new("v1-hunt".into(), &v1_base, token(), fast_client("v1hunt"))
        .expect("hunter")
        .with_poll_interval(Duration::from_millis(10))
        .with_max_wait(Duration::from_secs(10));

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("t.db")).await.expect("store");
    let playbook = Playbook::new(
        store.clone(),
        TriagePolicy::default(),
        Arc::new(alerts),
        Arc::new(vt),
        Arc::new(sandbox),
        Arc::new(sink),
        Some(Arc::new(hunter)),
        Filters::default(),
    );

    let report = playbook.run_once(now.unix_timestamp()).await.expect("triage run");
    assert_eq!(report.alerts_handled, 1, "{report:#?}");
    let alert = &report.alerts[0];
    assert_eq!(alert.status, CaseStatus::Blocked, "{alert:#?}");
    let blocked: Vec<String> = alert.blocks.iter().filter(|b| b.done).map(|b| b.indicator.to_string()).collect();
    assert!(blocked.contains(&canonical.to_string()), "{blocked:?}");
    assert!(blocked.contains(&"domain:c2.example".to_string()), "{blocked:?}");
    assert!(blocked.iter().any(|b| b.starts_with("ipv4:203.0.113.")), "{blocked:?}");
    let listed: Vec<String> = v1_state.suspicious_objects().iter().map(|o| o.value.clone()).collect();
    assert!(listed.iter().any(|v| v == "c2.example"), "{listed:?}");
    assert_eq!(v1_state.sweeps().len(), 1);
    let hunt = alert.hunt.as_ref().expect("hunted");
    assert!(hunt.outcome.is_ok(), "{hunt:?}");
    // The domain object itself (VirusTotal 2) is for an analyst.
    let pending = store.review_items(Some(ReviewStatus::Pending), 10).await.expect("reviews");
    assert!(pending.iter().any(|r| r.object.value == "c2.example"), "{pending:?}");

    // Exactly once: a second pass over the same window changes nothing.
    let again = playbook.run_once(now.unix_timestamp() + 60).await.expect("second run");
    assert_eq!((again.alerts_handled, again.alerts_skipped), (0, 1));
    assert_eq!(v1_state.sweeps().len(), 1);
    assert_eq!(store.ledger("vision-one-triage").await.expect("ledger").len(), blocked.len());
}
