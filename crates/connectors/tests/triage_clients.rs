//! The triage clients (Vision One, VirusTotal, Intezer) against the lab simulators on
//! 127.0.0.1:0. Seed data is made up for these tests (documentation address ranges and
//! `.example` names; the EICAR hashes are the public test-file hashes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tibridge_connectors::alert::AlertSource;
use tibridge_connectors::enrich::{EnrichError, Enricher, Hunter, Sandbox, SandboxVerdict};
use tibridge_connectors::http::{HttpClient, HttpClientBuilder, HttpOptions, RetryPolicy, Secret};
use tibridge_connectors::intezer::IntezerSandbox;
use tibridge_connectors::virustotal::{self as vt_client, VirusTotalEnricher};
use tibridge_connectors::vision_one::{AlertMode, OatWindow, VisionOneAlertSource, VisionOneHunter, VisionOneSink};
use tibridge_connectors::{ItemOutcome, Sink};
use tibridge_core::normalize::normalize;
use tibridge_core::plan::LedgerEntry;
use tibridge_core::policy::DesiredEntry;
use tibridge_core::{Indicator, IndicatorKind};
use tibridge_lab::intezer::{self, HashVerdict, IntezerConfig, IntezerState, UrlVerdict};
use tibridge_lab::virustotal::{self, VirusTotalConfig, VirusTotalState};
use tibridge_lab::vision_one::{
    self, HighlightedObject, OatDetection, SoType, VisionOneConfig, VisionOneState, WorkbenchAlert,
};
use tibridge_lab::{FaultConfig, FaultHandle, RunningServer};
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

fn ind(kind: IndicatorKind, raw: &str) -> Indicator {
    normalize(kind, raw).expect("valid test indicator")
}

// ------------------------------------------------------------------------------------------
// Vision One
// ------------------------------------------------------------------------------------------

async fn v1(config: VisionOneConfig) -> (Arc<VisionOneState>, RunningServer, String) {
    let state = Arc::new(VisionOneState::new(config));
    let server = tibridge_lab::serve(vision_one::router(state.clone()), FaultHandle::default(), loopback())
        .await
        .expect("serve");
    let base = server.base_url();
    (state, server, base)
}

fn v1_token() -> Secret {
    Secret::new(vision_one::DEFAULT_TOKEN)
}

#[tokio::test]
async fn oat_detections_are_all_read_with_the_filter_resent_on_every_page() {
    let (s, _server, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    for i in 0..450 {
        let risk = if i % 3 == 0 { "critical" } else { "high" };
        let t = now - time::Duration::seconds(i * 20);
        s.seed_detection(OatDetection::c2_url(&format!("c2-{i}"), t, risk, "ws-01", "http://C2.example/gate"));
    }
    let mut rich = OatDetection::c2_url("rich", now, "high", "ws-02", "hxxp://other[.]example/x");
    rich.filters[0].highlighted_objects.push(HighlightedObject {
        field: "objectIps".into(),
        kind: "ip".into(),
        value: json!(["198.51.100.7", "2001:db8::7", "198.51.100.7"]),
        master: None,
        risk_level: None,
    });
    rich.filters[0].highlighted_objects.push(HighlightedObject {
        field: "dpt".into(),
        kind: "port".into(),
        value: json!(443),
        master: None,
        risk_level: None,
    });
    s.seed_detection(rich);
    let mut execution = OatDetection::c2_url("exec", now, "high", "ws-03", "http://x.example/");
    execution.filters[0].mitre_tactic_ids = vec!["TA0002".into()];
    s.seed_detection(execution);
    let mut low = OatDetection::c2_url("low", now, "low", "ws-04", "http://y.example/");
    low.filters[0].risk_level = "low".into();
    s.seed_detection(low);

    let source = VisionOneAlertSource::new("v1".into(), &base, v1_token(), fast_client("v1")).expect("source");
    let before = s.requests_served();
    let alerts = source
        .poll((now - time::Duration::days(1)).unix_timestamp(), (now + time::Duration::minutes(1)).unix_timestamp())
        .await
        .expect("poll");
    // 451 matching detections at 200 a page: 3 pages, each refused by the simulator if the
    // filter were not re-sent.
    assert_eq!(alerts.len(), 451);
    assert_eq!(s.requests_served() - before, 3);
    let mut ids: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 451);
    assert!(alerts.iter().all(|a| a.tactic_ids == ["TA0011"] && a.source_id == "v1"));
    assert!(!alerts.iter().any(|a| a.id == "exec" || a.id == "low"));

    let c2 = alerts.iter().find(|a| a.id == "c2-0").expect("c2-0");
    assert_eq!(c2.severity, "critical");
    assert_eq!(c2.title, "Malicious URL");
    assert_eq!(c2.technique_ids, ["T1071"]);
    assert_eq!(c2.entity.as_deref(), Some("ws-01"));
    assert!((c2.detected_at - now.unix_timestamp()).abs() <= 1);
    assert_eq!(c2.objects.len(), 2);
    assert_eq!(c2.objects[0].field, "request");
    assert_eq!(c2.objects[0].indicator, Ok(ind(IndicatorKind::Url, "http://C2.example/gate")));
    assert_eq!(c2.objects[1].indicator, Ok(ind(IndicatorKind::Domain, "c2.example")));

    let rich = alerts.iter().find(|a| a.id == "rich").expect("rich");
    let kinds: Vec<(String, Result<IndicatorKind, bool>)> = rich
        .objects
        .iter()
        .map(|o| (o.raw_value.clone(), o.indicator.as_ref().map(|i| i.kind).map_err(|_| false)))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("hxxp://other[.]example/x".to_string(), Ok(IndicatorKind::Url)),
            ("other[.]example".to_string(), Ok(IndicatorKind::Domain)),
            ("198.51.100.7".to_string(), Ok(IndicatorKind::Ipv4)),
            ("2001:db8::7".to_string(), Ok(IndicatorKind::Ipv6)),
            ("443".to_string(), Err(false)),
        ],
        "every value shape read, duplicates dropped, non-indicators kept with a reason"
    );
}

#[tokio::test]
async fn a_late_detection_is_found_by_its_ingestion_time() {
    let (s, _server, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    let mut late =
        OatDetection::c2_url("late", now - time::Duration::hours(3), "high", "ws-09", "http://late.example/");
    late.ingested_date_time = OatDetection::c2_url("x", now, "high", "ws", "http://x.example/").detected_date_time;
    s.seed_detection(late);
    let window = (now.unix_timestamp() - 600, now.unix_timestamp() + 60);
    let by_detection = VisionOneAlertSource::new("v1".into(), &base, v1_token(), fast_client("v1")).expect("source");
    assert!(by_detection.poll(window.0, window.1).await.expect("poll").is_empty());
    let by_ingestion = by_detection.with_window(OatWindow::Ingested);
    let alerts = by_ingestion.poll(window.0, window.1).await.expect("poll");
    assert_eq!(alerts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["late"]);
}

/// Measurement, printed: `cargo test -p tibridge-connectors --test triage_clients oat_poll_of -- --nocapture`.
#[tokio::test]
async fn oat_poll_of_5000_detections_and_so_add_of_5000_objects_measured() {
    let (s, _server, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    s.seed_detections(
        (0..5000)
            .map(|i| OatDetection::c2_url(&format!("m-{i}"), now, "high", "ws-01", &format!("http://c{i}.example/"))),
    );
    let source = VisionOneAlertSource::new("v1".into(), &base, v1_token(), fast_client("v1")).expect("source");
    let started = Instant::now();
    let alerts = source.poll(now.unix_timestamp() - 60, now.unix_timestamp() + 60).await.expect("poll");
    let polled = started.elapsed();
    assert_eq!(alerts.len(), 5000);
    let sink = VisionOneSink::new("v1so".into(), &base, v1_token(), fast_client("v1so")).expect("sink");
    let batch: Vec<DesiredEntry> =
        (0..5000).map(|i| entry(IndicatorKind::Domain, &format!("m{i}.example"), None)).collect();
    let started = Instant::now();
    for chunk in batch.chunks(500) {
        let outcomes = sink.add(chunk).await.expect("add");
        assert!(outcomes.iter().all(|o| matches!(o, ItemOutcome::Done { .. })));
    }
    let added = started.elapsed();
    println!("OAT poll: 5000 detections (25 pages of 200) mapped in {polled:?}; SO add: 5000 objects in 10 requests of 500 in {added:?}");
}

#[tokio::test]
async fn workbench_alerts_are_read_by_severity_with_indicators_as_objects() {
    let (s, _server, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    s.seed_alert(WorkbenchAlert::sae(
        "WB-1",
        "critical",
        now - time::Duration::minutes(5),
        "ws-01",
        &[("domain", "c2.example"), ("url", "http://c2.example/gate"), ("command_line", "curl x")],
    ));
    s.seed_alert(WorkbenchAlert::sae("WB-2", "low", now, "ws-02", &[("ip", "198.51.100.9")]));
    let source = VisionOneAlertSource::new("v1wb".into(), &base, v1_token(), fast_client("v1"))
        .expect("source")
        .with_mode(AlertMode::WorkbenchAlerts);
    assert_eq!(source.filter().as_deref(), Some("severity eq 'critical' or severity eq 'high'"));
    let alerts = source.poll(now.unix_timestamp() - 3600, now.unix_timestamp() + 60).await.expect("poll");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!((a.id.as_str(), a.severity.as_str()), ("WB-1", "critical"));
    assert!(a.tactic_ids.is_empty(), "workbench alerts carry no tactic");
    assert_eq!(a.technique_ids, ["T1071"]);
    assert_eq!(a.entity.as_deref(), Some("ws-01"));
    assert!(a.link.as_deref().is_some_and(|l| l.ends_with("WB-1")));
    assert_eq!(a.objects.len(), 3);
    assert_eq!(a.objects[0].indicator, Ok(ind(IndicatorKind::Domain, "c2.example")));
    assert_eq!(a.objects[1].indicator, Ok(ind(IndicatorKind::Url, "http://c2.example/gate")));
    assert!(a.objects[2].indicator.is_err());
}

fn entry(kind: IndicatorKind, raw: &str, expires_at: Option<i64>) -> DesiredEntry {
    DesiredEntry {
        indicator: ind(kind, raw),
        confidence: Some(90),
        tlp: None,
        expires_at,
        last_seen: None,
        provenance: format!("misp event e-1 attribute for {raw}"),
        tags: Vec::new(),
    }
}

#[tokio::test]
async fn suspicious_objects_are_added_item_by_item_and_removed() {
    let config = VisionOneConfig { suspicious_object_cap_per_type: 2, ..Default::default() };
    let (s, _server, base) = v1(config).await;
    let sink =
        VisionOneSink::new("v1so".into(), &base, v1_token(), fast_client("v1so")).expect("sink").with_expiry_days(7);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let batch = vec![
        entry(IndicatorKind::Domain, "a.example", None),
        entry(IndicatorKind::Domain, "b.example", None),
        entry(IndicatorKind::Domain, "c.example", None),
        entry(IndicatorKind::Url, "http://a.example/x", None),
        entry(IndicatorKind::Md5, "44d88612fea8a8f36de82e1278abb02f", None),
        entry(IndicatorKind::Ipv4, "198.51.100.7", Some(now + 2 * 86_400 + 3600)),
        entry(IndicatorKind::Sha256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", None),
    ];
    let outcomes = sink.add(&batch).await.expect("add");
    assert_eq!(outcomes.len(), 7);
    assert_eq!(outcomes[0], ItemOutcome::Done { remote_id: None });
    assert_eq!(outcomes[1], ItemOutcome::Done { remote_id: None });
    assert!(
        matches!(&outcomes[2], ItemOutcome::CapacityFull { reason } if reason.contains("maximum limit")),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], ItemOutcome::Done { remote_id: None });
    assert!(matches!(&outcomes[4], ItemOutcome::Failed { retryable: false, .. }), "md5 is not an SO type");
    assert_eq!(outcomes[5], ItemOutcome::Done { remote_id: None });
    assert_eq!(outcomes[6], ItemOutcome::Done { remote_id: None });

    let objects = s.suspicious_objects();
    let expiry_days = |value: &str| {
        let o = objects.iter().find(|o| o.value == value).expect("stored");
        let expires = o.expires.expect("an expiry");
        ((expires - OffsetDateTime::now_utc()).whole_hours() as f64 / 24.0).round() as i64
    };
    // daysToExpiration was an integer the simulator accepted: ceil(2 days 1 h) = 3; default 7.
    assert_eq!(expiry_days("198.51.100.7"), 3);
    assert_eq!(expiry_days("a.example"), 7);
    let a = objects.iter().find(|o| o.value == "a.example").expect("a");
    assert_eq!((a.scan_action.as_str(), a.risk_level.as_str()), ("block", "high"));
    assert_eq!(a.description, "misp event e-1 attribute for a.example");
    assert!(objects.iter().any(|o| o.kind == SoType::FileSha256));

    let ledger =
        |kind, raw: &str| LedgerEntry { indicator: ind(kind, raw), remote_id: None, added_at: now, expires_at: None };
    let removed = sink
        .remove(&[ledger(IndicatorKind::Domain, "a.example"), ledger(IndicatorKind::Domain, "never-added.example")])
        .await
        .expect("remove");
    assert_eq!(removed, vec![ItemOutcome::Done { remote_id: None }, ItemOutcome::Done { remote_id: None }]);
    assert!(!s.suspicious_objects().iter().any(|o| o.value == "a.example"));
    assert!(s.suspicious_objects().iter().any(|o| o.value == "b.example"));
}

#[tokio::test]
async fn a_413_splits_the_batch_until_it_fits() {
    let config = VisionOneConfig { max_body_bytes: 4_000, ..Default::default() };
    let (s, _server, base) = v1(config).await;
    let sink = VisionOneSink::new("v1so".into(), &base, v1_token(), fast_client("v1so")).expect("sink");
    let batch: Vec<DesiredEntry> =
        (0..100).map(|i| entry(IndicatorKind::Domain, &format!("d{i}.example"), None)).collect();
    let outcomes = sink.add(&batch).await.expect("add");
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Done { remote_id: None }), "{outcomes:?}");
    assert_eq!(s.suspicious_objects().len(), 100);

    // An item too large on its own fails alone; its neighbours are added.
    let mut huge = entry(IndicatorKind::Domain, "huge.example", None);
    huge.provenance = "x".repeat(200);
    let tiny = VisionOneConfig { max_body_bytes: 250, ..Default::default() };
    let (s2, _server2, base2) = v1(tiny).await;
    let sink = VisionOneSink::new("v1so".into(), &base2, v1_token(), fast_client("v1so")).expect("sink");
    let outcomes =
        sink.add(&[entry(IndicatorKind::Domain, "a.example", None), huge]).await.expect("the first item is added");
    assert_eq!(outcomes[0], ItemOutcome::Done { remote_id: None });
    assert!(matches!(&outcomes[1], ItemOutcome::Failed { retryable: false, reason } if reason.contains("413")));
    assert_eq!(s2.suspicious_objects().len(), 1);
}

#[tokio::test]
async fn a_refused_token_fails_the_whole_batch() {
    let (_s, _server, base) = v1(VisionOneConfig::default()).await;
    let sink = VisionOneSink::new("v1so".into(), &base, Secret::new("wrong"), fast_client("v1so")).expect("sink");
    let err = sink.add(&[entry(IndicatorKind::Domain, "a.example", None)]).await.expect_err("401");
    let text = err.to_string();
    assert!(text.contains("401") && text.contains("InvalidCredentials"), "{text}");
    assert!(!text.contains("wrong"), "the token is never in an error: {text}");
}

#[tokio::test]
async fn flaky_vision_one_is_retried_until_everything_is_read_and_written() {
    let state = Arc::new(VisionOneState::new(VisionOneConfig::default()));
    let faults = FaultHandle::new(FaultConfig {
        error_5xx_ratio: 0.25,
        rate_limit_429_ratio: 0.1,
        retry_after_secs: 0,
        drop_ratio: 0.1,
        seed: Some(7),
        ..Default::default()
    });
    let server =
        tibridge_lab::serve(vision_one::router(state.clone()), faults.clone(), loopback()).await.expect("serve");
    let base = server.base_url();
    let now = OffsetDateTime::now_utc();
    for i in 0..450 {
        state.seed_detection(OatDetection::c2_url(&format!("f-{i}"), now, "high", "ws-01", "http://c2.example/"));
    }
    let patient = || {
        HttpClientBuilder::new("v1")
            .retry(RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                max_total: Duration::from_secs(20),
            })
            .build()
            .expect("client")
    };
    let source = VisionOneAlertSource::new("v1".into(), &base, v1_token(), patient()).expect("source");
    let alerts = source.poll(now.unix_timestamp() - 60, now.unix_timestamp() + 60).await.expect("poll");
    assert_eq!(alerts.len(), 450);
    let sink = VisionOneSink::new("v1so".into(), &base, v1_token(), patient()).expect("sink").with_max_batch(10);
    let batch: Vec<DesiredEntry> =
        (0..60).map(|i| entry(IndicatorKind::Domain, &format!("f{i}.example"), None)).collect();
    let outcomes = sink.add(&batch).await.expect("add");
    assert!(outcomes.iter().all(|o| *o == ItemOutcome::Done { remote_id: None }), "{outcomes:?}");
    assert_eq!(state.suspicious_objects().len(), 60);
    let stats = faults.stats();
    assert!(stats.server_errors + stats.rate_limited + stats.dropped > 0, "faults were injected: {stats:?}");
}

/// A minimal STIX 2.1 report bundle, hand-written for these tests (identity, report, one domain
/// indicator), the same shape as in the lab's own tests.
const C2_REPORT_BUNDLE: &str = r#"{"type":"bundle","id":"bundle--5d0092c5-5f74-4287-9642-33f4c354e56d","objects":[
{"type":"identity","spec_version":"2.1","id":"identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","name":"tibridge","identity_class":"system"},
{"type":"indicator","spec_version":"2.1","id":"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","created_by_ref":"identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01","pattern":"[domain-name:value = 'c2.example']","pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z","indicator_types":["malicious-activity"]},
{"type":"report","spec_version":"2.1","id":"report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3","created":"2026-01-01T00:00:00.000Z","modified":"2026-01-01T00:00:00.000Z","created_by_ref":"identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01","name":"C2 seen by tibridge","published":"2026-01-01T00:00:00Z","report_types":["threat-report"],"object_refs":["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]}]}"#;

#[tokio::test]
async fn a_hunt_uploads_sweeps_with_the_location_id_and_polls_to_the_end() {
    let config = VisionOneConfig { sweep_notstarted_polls: 2, sweep_running_polls: 2, ..Default::default() };
    let (s, _server, base) = v1(config).await;
    s.mark_seen("c2.example");
    let hunter = VisionOneHunter::new("v1hunt".into(), &base, v1_token(), fast_client("v1hunt"))
        .expect("hunter")
        .with_poll_interval(Duration::from_millis(10))
        .with_max_wait(Duration::from_secs(10));
    let outcome = hunter.hunt("C2 c2.example 2026-01-01", C2_REPORT_BUNDLE.as_bytes().to_vec()).await.expect("hunt");
    let reports = s.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].file_name, "C2_c2.example_2026-01-01.json");
    assert_eq!(reports[0].content_type, "application/stix+json");
    assert_eq!(outcome.report_id, reports[0].id, "the id Vision One assigned, from Location");
    let sweeps = s.sweeps();
    assert_eq!(sweeps.len(), 1);
    assert_eq!(sweeps[0].report_id, outcome.report_id);
    assert_eq!(sweeps[0].sweep_type, "manual");
    assert_eq!(outcome.task_id.as_deref(), Some(sweeps[0].id.as_str()));
    assert_eq!(outcome.status, "succeeded");
    assert_eq!(outcome.is_hit, Some(true));
    assert_eq!(sweeps[0].polls, 5, "notstarted ×2, running ×2, then succeeded");
}

#[tokio::test]
async fn a_hunt_that_outlasts_the_wait_reports_the_last_status() {
    let config = VisionOneConfig { sweep_notstarted_polls: 1_000, ..Default::default() };
    let (_s, _server, base) = v1(config).await;
    let hunter = VisionOneHunter::new("v1hunt".into(), &base, v1_token(), fast_client("v1hunt"))
        .expect("hunter")
        .with_poll_interval(Duration::from_millis(20))
        .with_max_wait(Duration::from_millis(150));
    let started = Instant::now();
    let outcome = hunter.hunt("slow", C2_REPORT_BUNDLE.as_bytes().to_vec()).await.expect("hunt");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(outcome.status, "notstarted");
    assert_eq!(outcome.is_hit, None);
}

// ------------------------------------------------------------------------------------------
// VirusTotal
// ------------------------------------------------------------------------------------------

async fn vt(config: VirusTotalConfig) -> (Arc<VirusTotalState>, RunningServer, String) {
    let state = Arc::new(VirusTotalState::new(config));
    let server = tibridge_lab::serve(virustotal::router(state.clone()), FaultHandle::default(), loopback())
        .await
        .expect("serve");
    let base = server.base_url();
    (state, server, base)
}

fn vt_enricher(base: &str, per_minute: u32) -> VirusTotalEnricher {
    let client = VirusTotalEnricher::client(&HttpOptions::default(), per_minute).expect("client");
    VirusTotalEnricher::new(base, Secret::new(virustotal::DEFAULT_API_KEY), client)
        .expect("enricher")
        .with_retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_total: Duration::from_secs(5),
        })
        .with_minute_window(Duration::from_millis(200))
}

#[tokio::test]
async fn virustotal_reads_every_kind_and_404_is_not_found() {
    let (s, _server, base) = vt(VirusTotalConfig::default()).await;
    let url = ind(IndicatorKind::Url, "http://evil.example/payload?x=1");
    s.set_verdict(IndicatorKind::Domain, "evil.example", 7, 2).expect("seed");
    s.set_verdict(IndicatorKind::Ipv4, "198.51.100.7", 3, 0).expect("seed");
    s.set_verdict(IndicatorKind::Ipv6, "2001:db8::7", 1, 1).expect("seed");
    s.set_verdict(IndicatorKind::Url, &url.value, 9, 0).expect("seed");
    let (md5, sha1, sha256) = (
        "44d88612fea8a8f36de82e1278abb02f",
        "3395856ce81f2b7382dee72602f798b642f14140",
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    );
    s.set_file(md5, sha1, sha256, 60, 1).expect("seed");
    let enricher = vt_enricher(&base, 6000);

    let r = enricher.reputation(&ind(IndicatorKind::Domain, "Evil.Example")).await.expect("domain");
    assert!(r.found);
    assert_eq!((r.malicious, r.suspicious), (7, 2));
    assert_eq!(r.malicious + r.suspicious + r.harmless + r.undetected, 70);
    assert_eq!(r.link.as_deref(), Some("https://www.virustotal.com/gui/domain/evil.example"));
    let r = enricher.reputation(&ind(IndicatorKind::Ipv4, "198.51.100.7")).await.expect("ipv4");
    assert_eq!(r.malicious, 3);
    let r = enricher.reputation(&ind(IndicatorKind::Ipv6, "2001:db8::7")).await.expect("ipv6");
    assert_eq!((r.malicious, r.suspicious), (1, 1));
    // The client asks by the base64 form; the simulator answers with the SHA-256 form as id.
    let r = enricher.reputation(&url).await.expect("url");
    assert_eq!(r.malicious, 9);
    let sha_id = virustotal::url_sha256(&url.value);
    assert_eq!(r.link, Some(format!("https://www.virustotal.com/gui/url/{sha_id}")));
    assert_eq!(vt_client::url_id(&url.value), virustotal::url_base64_id(&url.value));
    for (kind, h) in [(IndicatorKind::Md5, md5), (IndicatorKind::Sha1, sha1), (IndicatorKind::Sha256, sha256)] {
        let r = enricher.reputation(&ind(kind, h)).await.expect("file");
        assert_eq!(r.malicious, 60, "{kind}");
        assert_eq!(r.link, Some(format!("https://www.virustotal.com/gui/file/{sha256}")));
    }

    let r = enricher.reputation(&ind(IndicatorKind::Domain, "unknown.example")).await.expect("404 is a value");
    assert!(!r.found);
    assert_eq!((r.malicious, r.link), (0, None));
    let r = enricher.reputation(&ind(IndicatorKind::Url, "http://never.example/")).await.expect("404");
    assert!(!r.found);

    for (kind, raw) in [(IndicatorKind::Email, "a@evil.example"), (IndicatorKind::Ipv4Cidr, "198.51.100.0/24")] {
        let err = enricher.reputation(&ind(kind, raw)).await.expect_err("unsupported");
        assert!(matches!(err, EnrichError::Unsupported { .. }), "{err}");
    }
}

#[tokio::test]
async fn virustotal_daily_quota_is_reported_at_once_without_retrying() {
    let config = VirusTotalConfig { quota_per_day: Some(1), ..Default::default() };
    let (s, _server, base) = vt(config).await;
    s.set_verdict(IndicatorKind::Domain, "q.example", 1, 0).expect("seed");
    let enricher = vt_enricher(&base, 6000);
    let domain = ind(IndicatorKind::Domain, "q.example");
    assert!(enricher.reputation(&domain).await.expect("first").found);
    let started = Instant::now();
    let err = enricher.reputation(&domain).await.expect_err("over quota");
    assert!(
        matches!(&err, EnrichError::QuotaExceeded { detail, .. } if detail.contains("QuotaExceededError")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(150), "no wait on a daily quota");
    assert_eq!(s.requests_served(), 2, "one request for the 429, no spinning");
}

#[tokio::test]
async fn virustotal_minute_quota_is_waited_out_once_then_reported() {
    let config = VirusTotalConfig { quota_per_minute: Some(1), ..Default::default() };
    let (s, _server, base) = vt(config).await;
    s.set_verdict(IndicatorKind::Domain, "m.example", 1, 0).expect("seed");
    let enricher = vt_enricher(&base, 6000);
    let domain = ind(IndicatorKind::Domain, "m.example");
    enricher.reputation(&domain).await.expect("first");
    let started = Instant::now();
    let err = enricher.reputation(&domain).await.expect_err("still over quota after one window");
    assert!(matches!(err, EnrichError::QuotaExceeded { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200), "one window waited");
    assert_eq!(s.requests_served(), 3, "the first, the 429, one retry after the window");
}

#[tokio::test]
async fn virustotal_limiter_spaces_requests_to_the_configured_rate() {
    let (s, _server, base) = vt(VirusTotalConfig { quota_per_minute: Some(4), ..Default::default() }).await;
    s.set_verdict(IndicatorKind::Domain, "r.example", 1, 0).expect("seed");
    // 600 a minute with a burst of one: five lookups need at least four 100 ms gaps.
    let enricher = vt_enricher(&base, 600);
    let domain = ind(IndicatorKind::Domain, "r.example");
    let started = Instant::now();
    for _ in 0..4 {
        enricher.reputation(&domain).await.expect("within quota");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    println!("4 lookups at 600/min took {elapsed:?}");
}

#[tokio::test]
async fn virustotal_server_errors_and_a_dead_host_are_unavailable() {
    let listener = std::net::TcpListener::bind(loopback()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let enricher = vt_enricher(&format!("http://{addr}"), 6000);
    let err = enricher.reputation(&ind(IndicatorKind::Domain, "a.example")).await.expect_err("nobody listens");
    assert!(matches!(&err, EnrichError::Unavailable { detail, .. } if detail.contains("3 attempt")), "{err}");
    let (_s, _server, base) = vt(VirusTotalConfig::default()).await;
    let bad_key = VirusTotalEnricher::new(
        &base,
        Secret::new("not-the-key"),
        VirusTotalEnricher::client(&HttpOptions::default(), 6000).expect("client"),
    )
    .expect("enricher");
    let err = bad_key.reputation(&ind(IndicatorKind::Domain, "a.example")).await.expect_err("401");
    assert!(
        matches!(&err, EnrichError::Unavailable { detail, .. } if detail.contains("WrongCredentialsError")),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-key"));
}

// ------------------------------------------------------------------------------------------
// Intezer
// ------------------------------------------------------------------------------------------

async fn iz(config: IntezerConfig) -> (Arc<IntezerState>, RunningServer, String) {
    let state = Arc::new(IntezerState::new(config));
    let server =
        tibridge_lab::serve(intezer::router(state.clone()), FaultHandle::default(), loopback()).await.expect("serve");
    let base = format!("{}/api/v2-0", server.base_url());
    (state, server, base)
}

fn sandbox(base: &str) -> IntezerSandbox {
    IntezerSandbox::new(base, Secret::new(intezer::DEFAULT_API_KEY), fast_client("intezer"))
        .expect("sandbox")
        .with_poll_interval(Duration::from_millis(10))
        .with_max_wait(Duration::from_secs(5))
}

const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

#[tokio::test]
async fn intezer_url_pending_then_malicious_with_ip_title_and_link() {
    let (s, _server, base) = iz(IntezerConfig { url_pending_polls: 3, ..Default::default() }).await;
    let url = ind(IndicatorKind::Url, "http://c2.example/gate.php");
    s.set_url_verdict(&url.value, UrlVerdict::Malicious);
    let report = sandbox(&base).analyze(&url).await.expect("analysis");
    assert_eq!(report.verdict, SandboxVerdict::Malicious);
    assert_eq!(report.title.as_deref(), Some("Malicious URL"));
    assert!(report.resolved_ip.as_deref().is_some_and(|ip| ip.starts_with("203.0.113.")), "{report:?}");
    assert!(report.scanned_url.is_some() && report.link.is_some(), "{report:?}");
    assert_eq!(s.submissions(), 1);

    for (verdict, want) in [
        (UrlVerdict::Suspicious, SandboxVerdict::Suspicious),
        (UrlVerdict::NoThreats, SandboxVerdict::Clean),
        (UrlVerdict::Failed, SandboxVerdict::Inconclusive),
    ] {
        let u = ind(IndicatorKind::Url, &format!("http://{verdict:?}.example/").to_ascii_lowercase());
        s.set_url_verdict(&u.value, verdict);
        assert_eq!(sandbox(&base).analyze(&u).await.expect("analysis").verdict, want, "{verdict:?}");
    }
}

#[tokio::test]
async fn intezer_offline_only_from_the_flag_and_invalid_urls_are_inconclusive() {
    let (s, _server, base) = iz(IntezerConfig::default()).await;
    let gone = ind(IndicatorKind::Url, "http://gone.example/");
    s.set_url_verdict(&gone.value, UrlVerdict::Offline);
    let report = sandbox(&base).analyze(&gone).await.expect("offline is a verdict");
    assert_eq!(report.verdict, SandboxVerdict::Offline);
    let invalid = Indicator::from_canonical(IndicatorKind::Url, "not a url at all");
    let report = sandbox(&base).analyze(&invalid).await.expect("a refusal is not an error");
    assert_eq!(report.verdict, SandboxVerdict::Inconclusive);
    assert!(report.title.as_deref().is_some_and(|t| t.contains("Invalid url")), "{report:?}");
    // A dead sandbox is an error, never "offline".
    let listener = std::net::TcpListener::bind(loopback()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = sandbox(&format!("http://{addr}/api/v2-0")).analyze(&gone).await.expect_err("nobody listens");
    assert!(matches!(err, EnrichError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn intezer_pending_past_the_wait_times_out() {
    let (_s, _server, base) = iz(IntezerConfig { url_pending_secs: 30, ..Default::default() }).await;
    let started = Instant::now();
    let err = sandbox(&base)
        .with_max_wait(Duration::from_millis(200))
        .analyze(&ind(IndicatorKind::Url, "http://slow.example/"))
        .await
        .expect_err("still pending");
    assert!(matches!(err, EnrichError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn intezer_token_is_renewed_after_expiry_and_the_call_repeated() {
    let (s, _server, base) = iz(IntezerConfig::default()).await;
    s.set_hash_verdict(EICAR_SHA256, HashVerdict::new("malicious", "known_malicious", Some("EICAR")));
    let sandbox = sandbox(&base);
    let hash = ind(IndicatorKind::Sha256, EICAR_SHA256);
    assert_eq!(sandbox.analyze(&hash).await.expect("first").verdict, SandboxVerdict::Malicious);
    s.expire_all_tokens();
    let report = sandbox.analyze(&hash).await.expect("the 401 renews the token");
    assert_eq!(report.verdict, SandboxVerdict::Malicious);

    // A token shorter-lived than the renewal margin is fetched again for every call.
    let (s2, _server2, base2) = iz(IntezerConfig { token_ttl_secs: 5, ..Default::default() }).await;
    s2.set_hash_verdict(EICAR_SHA256, HashVerdict::new("trusted", "known_trusted", None));
    let short = self::sandbox(&base2);
    assert_eq!(short.analyze(&hash).await.expect("ok").verdict, SandboxVerdict::Clean);
    assert_eq!(short.analyze(&hash).await.expect("ok").verdict, SandboxVerdict::Clean);
}

#[tokio::test]
async fn intezer_hash_verdicts_unknown_hashes_and_a_running_analysis() {
    let (s, _server, base) = iz(IntezerConfig { hash_pending_polls: 2, ..Default::default() }).await;
    let md5 = "44d88612fea8a8f36de82e1278abb02f";
    let sha1 = "3395856ce81f2b7382dee72602f798b642f14140";
    s.set_hash_verdict(EICAR_SHA256, HashVerdict::new("malicious", "known_malicious", Some("EICAR")));
    s.set_hash_verdict(md5, HashVerdict::new("suspicious", "suspicious", None));
    s.set_hash_verdict(sha1, HashVerdict::new("neutral", "neutral", None));
    let sandbox = sandbox(&base);
    let report = sandbox.analyze(&ind(IndicatorKind::Sha256, EICAR_SHA256)).await.expect("sha256");
    assert_eq!(report.verdict, SandboxVerdict::Malicious);
    assert_eq!(report.title.as_deref(), Some("EICAR"));
    assert!(report.link.is_some());
    assert_eq!(sandbox.analyze(&ind(IndicatorKind::Md5, md5)).await.expect("md5").verdict, SandboxVerdict::Suspicious);
    assert_eq!(sandbox.analyze(&ind(IndicatorKind::Sha1, sha1)).await.expect("sha1").verdict, SandboxVerdict::Clean);

    let unknown = sandbox.analyze(&ind(IndicatorKind::Sha256, &"b".repeat(64))).await.expect("404 is a value");
    assert_eq!(unknown.verdict, SandboxVerdict::Inconclusive);
    assert_eq!(unknown.title.as_deref(), Some("unknown to Intezer"));

    // An analysis of the same hash already running: 409, and its id is polled.
    let other = "c".repeat(64);
    s.set_hash_verdict(&other, HashVerdict::new("malicious", "malicious", Some("Other")));
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/get-access-token"))
        .json(&json!({"api_key": intezer::DEFAULT_API_KEY}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let r = http
        .post(format!("{base}/analyze-by-hash"))
        .bearer_auth(token["result"].as_str().expect("token"))
        .json(&json!({"hash": other}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 201);
    let submissions = s.submissions();
    let report = sandbox.analyze(&ind(IndicatorKind::Sha256, &other)).await.expect("409 then poll");
    assert_eq!(report.verdict, SandboxVerdict::Malicious);
    assert_eq!(report.title.as_deref(), Some("Other"));
    assert_eq!(s.submissions(), submissions, "the 409 created no new analysis");

    for (kind, raw) in [(IndicatorKind::Domain, "c2.example"), (IndicatorKind::Ipv4, "198.51.100.7")] {
        let err = sandbox.analyze(&ind(kind, raw)).await.expect_err("unsupported");
        assert!(matches!(err, EnrichError::Unsupported { .. }), "{err}");
    }
}

#[tokio::test]
async fn intezer_quota_403_is_quota_exceeded() {
    let (s, _server, base) = iz(IntezerConfig { analysis_quota: Some(1), ..Default::default() }).await;
    let url = ind(IndicatorKind::Url, "http://a.example/");
    s.set_url_verdict(&url.value, UrlVerdict::NoThreats);
    s.set_hash_verdict("44d88612fea8a8f36de82e1278abb02f", HashVerdict::new("malicious", "", None));
    let sandbox = sandbox(&base);
    assert_eq!(sandbox.analyze(&url).await.expect("first").verdict, SandboxVerdict::Clean);
    let err = sandbox.analyze(&url).await.expect_err("quota spent");
    assert!(matches!(err, EnrichError::QuotaExceeded { .. }), "{err}");
    let err = sandbox.analyze(&ind(IndicatorKind::Md5, "44d88612fea8a8f36de82e1278abb02f")).await.expect_err("quota");
    assert!(matches!(err, EnrichError::QuotaExceeded { .. }), "{err}");
}
