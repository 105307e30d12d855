//! Behaviour tests of the triage simulators (Vision One, VirusTotal, Intezer) over real
//! loopback sockets, plus the vendor-SDK conformance run (pytmv1, vt-py, intezer-sdk) when
//! `TIBRIDGE_VENDOR_PYTHON` names a Python that has them installed.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use tibridge_core::IndicatorKind;
use tibridge_lab::intezer::{self, HashVerdict, IntezerConfig, IntezerState, UrlVerdict};
use tibridge_lab::virustotal::{self, VirusTotalConfig, VirusTotalState};
use tibridge_lab::vision_one::{self, OatDetection, SoType, VisionOneConfig, VisionOneState, WorkbenchAlert};
use time::OffsetDateTime;

/// Serves `router` on 127.0.0.1:0 for the rest of the test and returns its base URL.
async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

// ------------------------------------------------------------------------------------------
// VirusTotal
// ------------------------------------------------------------------------------------------

const VT_KEY: &str = virustotal::DEFAULT_API_KEY;

async fn vt(config: VirusTotalConfig) -> (Arc<VirusTotalState>, String) {
    let state = Arc::new(VirusTotalState::new(config));
    let base = spawn(virustotal::router(state.clone())).await;
    (state, base)
}

async fn vt_get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}/api/v3{path}")).header("x-apikey", VT_KEY).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn vt_rejects_missing_and_wrong_keys_with_the_documented_codes() {
    let (_s, base) = vt(VirusTotalConfig::default()).await;
    let r = client().get(format!("{base}/api/v3/domains/a.example")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationRequiredError");
    let r = client().get(format!("{base}/api/v3/domains/a.example")).header("X-Apikey", "nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "WrongCredentialsError");
}

#[tokio::test]
async fn vt_serves_seeded_domains_and_ips_and_404s_the_rest() {
    let (s, base) = vt(VirusTotalConfig::default()).await;
    s.set_verdict(IndicatorKind::Domain, "Evil.Example", 7, 2).unwrap();
    s.set_verdict(IndicatorKind::Ipv4, "198.51.100.7", 0, 0).unwrap();
    let (st, body) = vt_get(&base, "/domains/evil.example").await;
    assert_eq!(st, 200);
    let data = &body["data"];
    assert_eq!(data["type"], "domain");
    assert_eq!(data["id"], "evil.example");
    assert_eq!(data["attributes"]["last_analysis_stats"]["malicious"], 7);
    assert_eq!(data["attributes"]["last_analysis_stats"]["suspicious"], 2);
    assert!(data["attributes"]["last_analysis_date"].is_i64());
    assert!(data["links"]["self"].as_str().unwrap().ends_with("/api/v3/domains/evil.example"));
    let results = data["attributes"]["last_analysis_results"].as_object().unwrap();
    let flagged = results.values().filter(|e| e["category"] == "malicious").count();
    assert_eq!(flagged, 7);

    let (st, body) = vt_get(&base, "/ip_addresses/198.51.100.7").await;
    assert_eq!(st, 200);
    assert_eq!(body["data"]["type"], "ip_address");
    assert_eq!(body["data"]["attributes"]["last_analysis_stats"]["malicious"], 0);

    let (st, body) = vt_get(&base, "/domains/unknown.example").await;
    assert_eq!(st, 404);
    assert_eq!(body["error"]["code"], "NotFoundError");
    let (st, body) = vt_get(&base, "/ip_addresses/not-an-ip").await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "InvalidArgumentError");
}

#[tokio::test]
async fn vt_files_resolve_by_any_hash_to_the_sha256_id_with_file_stat_keys() {
    let (s, base) = vt(VirusTotalConfig::default()).await;
    // EICAR test file hashes (public, harmless).
    let md5 = "44d88612fea8a8f36de82e1278abb02f";
    let sha1 = "3395856ce81f2b7382dee72602f798b642f14140";
    let sha256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    s.set_file(md5, sha1, sha256, 60, 1).unwrap();
    for h in [md5, sha1, sha256, &sha256.to_uppercase()] {
        let (st, body) = vt_get(&base, &format!("/files/{h}")).await;
        assert_eq!(st, 200, "{h}");
        assert_eq!(body["data"]["id"], sha256);
        let stats = &body["data"]["attributes"]["last_analysis_stats"];
        assert_eq!(stats["malicious"], 60);
        assert!(stats.get("confirmed-timeout").is_some());
        assert!(stats.get("type-unsupported").is_some());
    }
    let (st, _) = vt_get(&base, &format!("/files/{}", "0".repeat(64))).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn vt_urls_answer_both_id_forms_with_the_sha256_id() {
    let (s, base) = vt(VirusTotalConfig::default()).await;
    let url = "http://evil.example/payload?x=1";
    s.set_verdict(IndicatorKind::Url, url, 9, 0).unwrap();
    let sha = virustotal::url_sha256(url);
    for id in [virustotal::url_base64_id(url), sha.clone()] {
        let (st, body) = vt_get(&base, &format!("/urls/{id}")).await;
        assert_eq!(st, 200, "{id}");
        assert_eq!(body["data"]["id"], sha.as_str());
        assert_eq!(body["data"]["type"], "url");
        assert_eq!(body["data"]["attributes"]["url"], url);
    }
    let (st, body) = vt_get(&base, "/urls/thisurlidmakesnosenseatall").await;
    assert_eq!(st, 404);
    assert_eq!(body["error"]["code"], "NotFoundError");
}

#[tokio::test]
async fn vt_url_submission_goes_queued_in_progress_completed_and_then_has_a_report() {
    let (s, base) = vt(VirusTotalConfig::default()).await;
    let url = "http://fresh.example/";
    s.set_verdict_after_analysis(url, 4, 1);
    let r = client()
        .post(format!("{base}/api/v3/urls"))
        .header("x-apikey", VT_KEY)
        .form(&[("url", url)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "vt-py treats anything but 200 as an error");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["type"], "analysis");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let (st, _) = vt_get(&base, &format!("/urls/{}", virustotal::url_base64_id(url))).await;
    assert_eq!(st, 404, "no report before the analysis completes");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (st, body) = vt_get(&base, &format!("/analyses/{id}")).await;
        assert_eq!(st, 200);
        seen.push(body["data"]["attributes"]["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["queued", "in-progress", "completed"]);
    let (st, body) = vt_get(&base, &format!("/urls/{}", virustotal::url_base64_id(url))).await;
    assert_eq!(st, 200);
    assert_eq!(body["data"]["attributes"]["last_analysis_stats"]["malicious"], 4);
    assert_eq!(s.submitted_urls(), vec![url.to_string()]);
}

#[tokio::test]
async fn vt_public_quota_answers_429_quota_exceeded_and_the_counter_sees_every_request() {
    let config = VirusTotalConfig { quota_per_minute: Some(4), ..Default::default() };
    let (s, base) = vt(config).await;
    s.set_verdict(IndicatorKind::Domain, "q.example", 1, 0).unwrap();
    for _ in 0..4 {
        assert_eq!(vt_get(&base, "/domains/q.example").await.0, 200);
    }
    let (st, body) = vt_get(&base, "/domains/q.example").await;
    assert_eq!(st, 429);
    assert_eq!(body["error"]["code"], "QuotaExceededError");
    assert_eq!(s.requests_served(), 5);
    s.reset_quota();
    assert_eq!(vt_get(&base, "/domains/q.example").await.0, 200);
}

// ------------------------------------------------------------------------------------------
// Intezer
// ------------------------------------------------------------------------------------------

async fn intezer(config: IntezerConfig) -> (Arc<IntezerState>, String) {
    let state = Arc::new(IntezerState::new(config));
    let base = spawn(intezer::router(state.clone())).await;
    (state, base)
}

async fn token(base: &str) -> String {
    let r = client()
        .post(format!("{base}/api/v2-0/get-access-token"))
        .json(&json!({"api_key": intezer::DEFAULT_API_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["expire_at"].as_f64().unwrap() > 0.0);
    body["result"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn intezer_tokens_are_checked_and_expire() {
    let (s, base) = intezer(IntezerConfig::default()).await;
    let r = client()
        .post(format!("{base}/api/v2-0/get-access-token"))
        .json(&json!({"api_key": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(format!("{base}/api/v2-0/files/{}", "a".repeat(64))).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let t = token(&base).await;
    let r = client().get(format!("{base}/api/v2-0/files/{}", "a".repeat(64))).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 404, "valid token, no analysis");
    s.expire_all_tokens();
    let r = client().get(format!("{base}/api/v2-0/files/{}", "a".repeat(64))).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 401, "expired token");
    for path in ["/api/v2-0/is-available", "/api/is-available"] {
        let body: Value = client().get(format!("{base}{path}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["is_available"], true);
    }
}

#[tokio::test]
async fn intezer_url_analysis_stays_pending_then_succeeds_with_the_seeded_verdict() {
    let (s, base) = intezer(IntezerConfig::default()).await;
    let url = "http://c2.example/gate.php";
    s.set_url_verdict(url, UrlVerdict::Malicious);
    let t = token(&base).await;
    let r =
        client().post(format!("{base}/api/v2-0/url")).bearer_auth(&t).json(&json!({"url": url})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let result_url = body["result_url"].as_str().unwrap().to_string();
    assert!(result_url.starts_with("/url/"));
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for i in 0..3 {
        // The original script's double slash, and the SDK's JSON body on GET, both served.
        let path = if i == 2 { format!("/api/v2-0/{result_url}") } else { format!("/api/v2-0{result_url}") };
        let r = client().get(format!("{base}{path}")).bearer_auth(&t).json(&json!({})).send().await.unwrap();
        statuses.push(r.status().as_u16());
        last = r.json().await.unwrap();
        if i < 2 {
            assert_eq!(last["result_url"], result_url.as_str());
        }
    }
    assert_eq!(statuses, [202, 202, 200]);
    assert_eq!(last["status"], "succeeded");
    let result = &last["result"];
    assert_eq!(result["summary"]["verdict_type"], "malicious");
    assert_eq!(result["summary"]["title"], "Malicious URL");
    assert_eq!(result["submitted_url"], url);
    assert!(result["ip"].as_str().unwrap().starts_with("203.0.113."));
    let time = result["analysis_time"].as_str().unwrap();
    assert!(time.ends_with(" GMT") && time.len() == 29, "RFC 1123: {time}");
    assert_eq!(s.submissions(), 1);
}

#[tokio::test]
async fn intezer_refuses_offline_and_invalid_urls_with_the_exact_bodies() {
    let (s, base) = intezer(IntezerConfig::default()).await;
    s.set_url_verdict("http://gone.example/", UrlVerdict::Offline);
    let t = token(&base).await;
    let post = |u: &str| client().post(format!("{base}/api/v2-0/url")).bearer_auth(&t).json(&json!({"url": u})).send();
    let r = post("http://gone.example/").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"error": intezer::OFFLINE_MESSAGE, "result": {"is_url_offline": true}}));
    let r = post("not a url at all").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "Invalid url"}));
    assert_eq!(s.submissions(), 0);
}

#[tokio::test]
async fn intezer_hash_analysis_404_201_409_then_verdict_and_latest() {
    let (s, base) = intezer(IntezerConfig::default()).await;
    let known = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    s.set_hash_verdict(known, HashVerdict::new("malicious", "known_malicious", Some("EICAR")));
    let t = token(&base).await;
    let submit = |h: &str| {
        client().post(format!("{base}/api/v2-0/analyze-by-hash")).bearer_auth(&t).json(&json!({"hash": h})).send()
    };
    let r = submit(&"b".repeat(64)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "File not found");
    let r = submit(known).await.unwrap();
    assert_eq!(r.status(), 201);
    let result_url = r.json::<Value>().await.unwrap()["result_url"].as_str().unwrap().to_string();
    let r = submit(known).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(format!("/analyses/{}", body["result"]["analysis_id"].as_str().unwrap()), result_url);
    let get = |p: String| client().get(format!("{base}/api/v2-0{p}")).bearer_auth(&t).send();
    assert_eq!(get(result_url.clone()).await.unwrap().status(), 202);
    let r = get(result_url.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["verdict"], "malicious");
    assert_eq!(body["result"]["family_name"], "EICAR");
    let r = get(format!("/files/{known}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["result_url"], result_url.as_str());
}

#[tokio::test]
async fn intezer_quota_answers_403() {
    let (_s, base) = intezer(IntezerConfig { analysis_quota: Some(1), ..Default::default() }).await;
    let t = token(&base).await;
    let post = || {
        client().post(format!("{base}/api/v2-0/url")).bearer_auth(&t).json(&json!({"url": "http://a.example/"})).send()
    };
    assert_eq!(post().await.unwrap().status(), 201);
    assert_eq!(post().await.unwrap().status(), 403);
}

// ------------------------------------------------------------------------------------------
// Vision One
// ------------------------------------------------------------------------------------------

const V1_TOKEN: &str = vision_one::DEFAULT_TOKEN;

async fn v1(config: VisionOneConfig) -> (Arc<VisionOneState>, String) {
    let state = Arc::new(VisionOneState::new(config));
    let base = spawn(vision_one::router(state.clone())).await;
    (state, base)
}

async fn v1_get(url: &str, filter: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url).bearer_auth(V1_TOKEN);
    if let Some(f) = filter {
        req = req.header("TMV1-Filter", f);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn v1_post(url: &str, body: &Value) -> (u16, Value) {
    let r = client().post(url).bearer_auth(V1_TOKEN).json(body).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn iso(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap()
}

#[tokio::test]
async fn v1_rejects_a_bad_token_with_invalid_credentials() {
    let (_s, base) = v1(VisionOneConfig::default()).await;
    let r = client().get(format!("{base}/v3.0/oat/detections")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidCredentials");
    assert_eq!(body["error"]["innererror"]["code"], "InvalidToken");
}

#[tokio::test]
async fn v1_oat_filters_by_tactic_and_risk_and_pages_with_the_filter_resent() {
    let (s, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    for i in 0..120 {
        let risk = if i % 2 == 0 { "high" } else { "critical" };
        let t = now - time::Duration::minutes(i % 50);
        s.seed_detection(OatDetection::c2_url(&format!("c2-{i}"), t, risk, "ws-01", "http://c2.example/"));
    }
    let mut other = OatDetection::c2_url("other", now, "high", "ws-02", "http://x.example/");
    other.filters[0].mitre_tactic_ids = vec!["TA0002".into()];
    s.seed_detection(other);
    let mut low = OatDetection::c2_url("low", now, "low", "ws-03", "http://y.example/");
    low.filters[0].risk_level = "low".into();
    s.seed_detection(low);

    let filter = "(riskLevel eq 'high' or riskLevel eq 'critical') and filterMitreTacticId eq 'TA0011'";
    let start = iso(now - time::Duration::days(1));
    let end = iso(now + time::Duration::minutes(1));
    let url = format!("{base}/v3.0/oat/detections?detectedStartDateTime={start}&detectedEndDateTime={end}&top=50");
    let (st, page1) = v1_get(&url, Some(filter)).await;
    assert_eq!(st, 200, "{page1}");
    assert_eq!(page1["totalCount"], 120);
    assert_eq!(page1["count"], 50);
    let next = page1["nextLink"].as_str().unwrap().to_string();
    assert!(next.starts_with(&format!("{base}/v3.0/oat/detections?skipToken=")), "{next}");
    let (st, body) = v1_get(&next, None).await;
    assert_eq!(st, 400, "a page without the filter re-sent is refused: {body}");
    let mut uuids: Vec<String> = Vec::new();
    let mut page = page1;
    loop {
        for item in page["items"].as_array().unwrap() {
            uuids.push(item["uuid"].as_str().unwrap().to_string());
            assert_eq!(item["filters"][0]["mitreTacticIds"][0], "TA0011");
        }
        let Some(n) = page["nextLink"].as_str().map(str::to_string) else {
            break;
        };
        let (st, p) = v1_get(&n, Some(filter)).await;
        assert_eq!(st, 200);
        page = p;
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 120);

    let (st, _) = v1_get(&format!("{base}/v3.0/oat/detections?top=1"), None).await;
    assert_eq!(st, 400, "top outside 50|100|200");
    let (st, body) = v1_get(&format!("{base}/v3.0/oat/detections"), Some("colour eq 'red'")).await;
    assert_eq!(st, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("colour"));
}

#[tokio::test]
async fn v1_suspicious_objects_add_list_delete_with_per_item_answers_and_the_cap() {
    let config = VisionOneConfig { suspicious_object_cap_per_type: 2, ..Default::default() };
    let (s, base) = v1(config).await;
    let so = format!("{base}/v3.0/threatintel/suspiciousObjects");
    let (st, body) = v1_post(
        &so,
        &json!([
            {"domain": "evil.example", "description": "c2", "scanAction": "block", "riskLevel": "high", "daysToExpiration": 30},
            {"url": "http://evil.example/x", "daysToExpiration": "90"},
            {"ip": "198.51.100.7", "scanAction": "log", "riskLevel": "medium"}
        ]),
    )
    .await;
    assert_eq!(st, 207);
    assert_eq!(body[0], json!({"status": 201}));
    assert_eq!(body[1]["status"], 400);
    assert!(body[1]["body"]["error"]["message"].as_str().unwrap().contains("daysToExpiration"));
    assert_eq!(body[2]["status"], 201);

    let (_, body) = v1_post(&so, &json!([{"domain": "two.example"}, {"domain": "three.example"}])).await;
    assert_eq!(body[0]["status"], 201);
    assert_eq!(body[1]["status"], 400);
    assert_eq!(body[1]["body"]["error"]["message"], "The number of objects exceeds the maximum limit");

    let (st, list) = v1_get(&so, Some("type eq 'domain'")).await;
    assert_eq!(st, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["type"] == "domain" && i["domain"].is_string()));
    assert!(items.iter().all(|i| i["expiredDateTime"].is_string() && i["inExceptionList"] == false));

    // An exception marks the listed object, and can be removed again.
    let exc = format!("{base}/v3.0/threatintel/suspiciousObjectExceptions");
    let (st, body) = v1_post(&exc, &json!([{"ip": "198.51.100.7", "description": "our NAT"}, {"ip": "nope"}])).await;
    assert_eq!(st, 207);
    assert_eq!((body[0]["status"].as_u64(), body[1]["status"].as_u64()), (Some(201), Some(400)));
    let (_, list) = v1_get(&so, Some("type eq 'ip'")).await;
    assert_eq!(list["items"][0]["inExceptionList"], true);
    let (_, list) = v1_get(&exc, None).await;
    assert_eq!(list["items"][0]["ip"], "198.51.100.7");
    let (_, body) = v1_post(&format!("{exc}/delete"), &json!([{"ip": "198.51.100.7"}, {"ip": "198.51.100.8"}])).await;
    assert_eq!((body[0]["status"].as_u64(), body[1]["status"].as_u64()), (Some(204), Some(404)));
    assert!(s.suspicious_object_exceptions().is_empty());

    let (st, body) =
        v1_post(&format!("{so}/delete"), &json!([{"domain": "evil.example"}, {"domain": "never-added.example"}])).await;
    assert_eq!(st, 207);
    assert_eq!(body[0]["status"], 204);
    assert_eq!(body[1]["status"], 404);
    let left: Vec<String> = s.suspicious_objects().into_iter().map(|o| o.value).collect();
    assert!(!left.contains(&"evil.example".to_string()));
    assert!(left.contains(&"198.51.100.7".to_string()));
    assert_eq!(s.suspicious_objects().iter().filter(|o| o.kind == SoType::Domain).count(), 1);
}

#[tokio::test]
async fn v1_default_cap_of_10000_per_type_is_reached_with_batches_under_one_megabyte() {
    let (s, base) = v1(VisionOneConfig::default()).await;
    let so = format!("{base}/v3.0/threatintel/suspiciousObjects");
    let started = std::time::Instant::now();
    for batch in 0..10 {
        let items: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"domain": format!("d{batch}-{i}.example"), "scanAction": "block",
                            "riskLevel": "high", "daysToExpiration": 30})
            })
            .collect();
        let (st, body) = v1_post(&so, &Value::Array(items)).await;
        assert_eq!(st, 207);
        assert!(body.as_array().unwrap().iter().all(|i| i["status"] == 201), "batch {batch}");
    }
    let elapsed = started.elapsed();
    let (_, body) = v1_post(&so, &json!([{"domain": "one-too-many.example"}, {"ip": "192.0.2.1"}])).await;
    assert_eq!(body[0]["status"], 400);
    assert_eq!(body[0]["body"]["error"]["message"], "The number of objects exceeds the maximum limit");
    assert_eq!(body[1]["status"], 201, "the cap is per type");
    assert_eq!(s.suspicious_objects().len(), 10_001);
    // Paging the full list: 200 per page, 51 pages.
    let mut pages = 0;
    let mut count = 0;
    let mut next = Some(format!("{so}?top=200"));
    while let Some(url) = next {
        let (st, page) = v1_get(&url, None).await;
        assert_eq!(st, 200);
        count += page["items"].as_array().unwrap().len();
        pages += 1;
        next = page["nextLink"].as_str().map(str::to_string);
    }
    assert_eq!((pages, count), (51, 10_001));
    println!("10 batches of 1000 suspicious objects added in {elapsed:?}");
}

#[tokio::test]
async fn v1_bodies_over_one_megabyte_are_413() {
    let (_s, base) = v1(VisionOneConfig::default()).await;
    let items: Vec<Value> =
        (0..40_000).map(|i| json!({"domain": format!("d{i}.example"), "description": "x".repeat(10)})).collect();
    let (st, body) = v1_post(&format!("{base}/v3.0/threatintel/suspiciousObjects"), &Value::Array(items)).await;
    assert_eq!(st, 413);
    assert_eq!(body["error"]["code"], "RequestEntityTooLarge");
}

#[tokio::test]
async fn v1_rate_limit_answers_429() {
    let (_s, base) = v1(VisionOneConfig { rate_limit_per_minute: Some(2), ..Default::default() }).await;
    let url = format!("{base}/v3.0/healthcheck/connectivity");
    assert_eq!(v1_get(&url, None).await.0, 200);
    assert_eq!(v1_get(&url, None).await.0, 200);
    let (st, body) = v1_get(&url, None).await;
    assert_eq!(st, 429);
    assert_eq!(body["error"]["code"], "TooManyRequests");
}

/// A minimal STIX 2.1 report bundle, hand-written for this test (same shape tibridge uploads:
/// identity, report, one domain indicator).
const C2_REPORT_BUNDLE: &str = r#"{
  "type": "bundle",
  "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
  "objects": [
    {"type": "identity", "spec_version": "2.1", "id": "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01",
     "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
     "name": "tibridge", "identity_class": "system"},
    {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
     "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
     "created_by_ref": "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01",
     "pattern": "[domain-name:value = 'c2.example']", "pattern_type": "stix",
     "valid_from": "2026-01-01T00:00:00Z", "indicator_types": ["malicious-activity"]},
    {"type": "report", "spec_version": "2.1", "id": "report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3",
     "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
     "created_by_ref": "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01",
     "name": "C2 seen by tibridge", "published": "2026-01-01T00:00:00Z", "report_types": ["threat-report"],
     "object_refs": ["indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]}
  ]
}"#;

#[tokio::test]
async fn v1_report_upload_sweep_and_task_polling() {
    let (s, base) = v1(VisionOneConfig::default()).await;
    s.mark_seen("c2.example");
    let bundle = C2_REPORT_BUNDLE;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bundle.as_bytes().to_vec())
                .file_name("report.json")
                .mime_str("application/stix+json")
                .unwrap(),
        )
        .text("reportName", "");
    let r = client()
        .post(format!("{base}/v3.0/threatintel/intelligenceReports"))
        .bearer_auth(V1_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["status"], 201);
    assert_eq!(body[0]["headers"][0]["name"], "Location");
    let location = body[0]["headers"][0]["value"].as_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    assert!(id.starts_with("report--"));
    let stored = s.report(&id).unwrap();
    assert_eq!(stored.name, "C2 seen by tibridge");
    assert_eq!(stored.bundle().unwrap()["type"], "bundle");
    let (st, got) = v1_get(&location, None).await;
    assert_eq!(st, 200);
    assert_eq!(got, serde_json::from_str::<Value>(bundle).unwrap());

    let (st, body) = v1_post(
        &format!("{base}/v3.0/threatintel/intelligenceReports/sweep"),
        &json!([{"id": id, "sweepType": "manual", "description": "hunt"}, {"id": "report--missing"}]),
    )
    .await;
    assert_eq!(st, 207);
    assert_eq!(body[0]["status"], 202);
    assert_eq!(body[0]["headers"][0]["name"], "Operation-Location");
    assert_eq!(body[1]["status"], 404);
    let task_url = body[0]["headers"][0]["value"].as_str().unwrap().to_string();
    assert!(task_url.contains("/v3.0/threatintel/tasks/"));
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..3 {
        let (st, t) = v1_get(&task_url, None).await;
        assert_eq!(st, 200);
        statuses.push(t["status"].as_str().unwrap().to_string());
        last = t;
    }
    assert_eq!(statuses, ["notstarted", "running", "succeeded"]);
    assert_eq!(last["isHit"], true);
    assert_eq!(last["reportId"], id.as_str());
    assert_eq!(s.sweeps().len(), 1);
    // The hit raised one TI workbench alert pointing at the value and the report.
    let alert_id = s.sweeps()[0].alert_id.clone().unwrap();
    let (st, _) = v1_get(&task_url, None).await;
    assert_eq!(st, 200);
    let (_, alerts) = v1_get(&format!("{base}/v3.0/workbench/alerts"), Some("alertProvider eq 'TI'")).await;
    assert_eq!(alerts["totalCount"], 1, "raised once, not on every poll");
    let ti = &alerts["items"][0];
    assert_eq!(ti["id"], alert_id.as_str());
    assert_eq!(ti["indicators"][0]["value"], "c2.example");
    assert_eq!(ti["matchedIndicatorPatterns"][0]["pattern"], "[domain-name:value = 'c2.example']");
    assert!(ti["reportLink"].as_str().unwrap().ends_with(&id));
    assert!(ti.get("matchedRules").is_none());
    // Matched results: fetched without Authorization (and refused with it).
    let results_url = last["resourceLocation"].as_str().unwrap().to_string();
    let r = client().get(&results_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let results: Value = r.json().await.unwrap();
    assert_eq!(results["items"][0]["value"], "c2.example");
    let r = client().get(&results_url).bearer_auth(V1_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let bad = reqwest::multipart::Form::new().text("reportName", "no file");
    let r = client()
        .post(format!("{base}/v3.0/threatintel/intelligenceReports"))
        .bearer_auth(V1_TOKEN)
        .multipart(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn v1_workbench_alerts_filter_etag_patch_and_notes() {
    let (s, base) = v1(VisionOneConfig::default()).await;
    let now = OffsetDateTime::now_utc();
    s.seed_alert(WorkbenchAlert::sae(
        "WB-1-20260101-00001",
        "critical",
        now - time::Duration::hours(1),
        "ws-01",
        &[("domain", "c2.example"), ("url", "http://c2.example/gate")],
    ));
    s.seed_alert(WorkbenchAlert::sae("WB-1-20260101-00002", "low", now, "ws-02", &[("ip", "198.51.100.9")]));
    let list = format!("{base}/v3.0/workbench/alerts");
    let (st, body) = v1_get(&list, Some("severity eq 'critical' or severity eq 'high'")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["totalCount"], 1);
    assert_eq!(body["items"][0]["indicators"][0]["value"], "c2.example");
    let (st, _) = v1_get(&list, Some("filterMitreTacticId eq 'TA0011'")).await;
    assert_eq!(st, 400, "no MITRE field on workbench filters");

    let one = format!("{list}/WB-1-20260101-00001");
    let r = client().get(&one).bearer_auth(V1_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let patch = |tag: &str| {
        client()
            .patch(&one)
            .bearer_auth(V1_TOKEN)
            .header("If-Match", tag)
            .json(&json!({"status": "Closed", "investigationResult": "True Positive"}))
            .send()
    };
    assert_eq!(patch("\"stale\"").await.unwrap().status(), 412);
    assert_eq!(patch(&etag).await.unwrap().status(), 204);
    assert_eq!(patch(&etag).await.unwrap().status(), 412, "the ETag changed with the update");
    assert_eq!(s.alert("WB-1-20260101-00001").unwrap().status, "Closed");

    let r = client()
        .post(format!("{one}/notes"))
        .bearer_auth(V1_TOKEN)
        .json(&json!({"content": "blocked by tibridge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"].to_str().unwrap().contains("/notes/1"));
    assert_eq!(s.alert_notes("WB-1-20260101-00001"), vec!["blocked by tibridge".to_string()]);
}

// ------------------------------------------------------------------------------------------
// Vendor SDK conformance
// ------------------------------------------------------------------------------------------

/// Runs `tests/conformance/vendor_sdks.py` (pytmv1, vt-py, intezer-sdk) against the three
/// simulators. Needs `TIBRIDGE_VENDOR_PYTHON` = a Python with the pinned SDKs, e.g.
/// `python3 -m venv /tmp/tibridge-vendor && /tmp/tibridge-vendor/bin/pip install
/// "pytmv1==0.11.0" "vt-py==0.22.0" "intezer-sdk==1.27.9"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_sdks_accept_the_simulators() {
    let Ok(python) = std::env::var("TIBRIDGE_VENDOR_PYTHON") else {
        eprintln!("skipped: set TIBRIDGE_VENDOR_PYTHON to a python with pytmv1, vt-py and intezer-sdk");
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/vendor_sdks.py");

    let v1_state = Arc::new(VisionOneState::new(VisionOneConfig::default()));
    let now = OffsetDateTime::now_utc();
    for i in 0..60 {
        let d = OatDetection::c2_url(
            &format!("sdk-{i}"),
            now - time::Duration::seconds(i * 30),
            "high",
            "ws-01",
            "http://c2.example/gate",
        );
        v1_state.seed_detection(d);
    }
    let mut exec = OatDetection::c2_url("sdk-exec", now, "high", "ws-02", "http://x.example/");
    exec.filters[0].mitre_tactic_ids = vec!["TA0002".into()];
    v1_state.seed_detection(exec);
    v1_state.seed_alert(WorkbenchAlert::sae(
        "WB-LAB-1",
        "critical",
        now - time::Duration::minutes(10),
        "ws-01",
        &[("domain", "c2.example"), ("url", "http://c2.example/gate")],
    ));
    v1_state.seed_alert(WorkbenchAlert::sae("WB-LAB-2", "low", now, "ws-02", &[("ip", "198.51.100.9")]));
    v1_state.seed_alert(WorkbenchAlert::ti(
        "WB-LAB-TI",
        now - time::Duration::minutes(3),
        "report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3",
        "http://127.0.0.1/v3.0/threatintel/intelligenceReports/report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3",
        &[("c2.example".to_string(), "ws-01".to_string())],
    ));
    let v1_base = spawn(vision_one::router(v1_state.clone())).await;

    let vt_state = Arc::new(VirusTotalState::new(VirusTotalConfig::default()));
    vt_state.set_verdict(IndicatorKind::Domain, "c2.example", 12, 3).unwrap();
    vt_state.set_verdict(IndicatorKind::Url, "http://c2.example/gate", 9, 1).unwrap();
    let vt_base = spawn(virustotal::router(vt_state.clone())).await;

    let iz_state = Arc::new(IntezerState::new(IntezerConfig::default()));
    iz_state.set_url_verdict("http://c2.example/gate", UrlVerdict::Malicious);
    iz_state.set_url_verdict("http://offline.example/", UrlVerdict::Offline);
    let iz_base = spawn(intezer::router(iz_state.clone())).await;

    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("LAB_V1_URL", &v1_base)
        .env("LAB_V1_TOKEN", V1_TOKEN)
        .env("LAB_VT_URL", &vt_base)
        .env("LAB_VT_KEY", virustotal::DEFAULT_API_KEY)
        .env("LAB_INTEZER_URL", &iz_base)
        .env("LAB_INTEZER_KEY", intezer::DEFAULT_API_KEY)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .await
        .expect("run the vendor SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vendor_sdks.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{stdout}");
    // The SDKs really talked to us: the objects they added and removed left their trace.
    assert!(v1_state.suspicious_objects().is_empty(), "pytmv1 removed what it added");
    assert_eq!(v1_state.alert("WB-LAB-1").map(|a| a.status), Some("Closed".to_string()));
    assert!(vt_state.requests_served() >= 2);
    assert!(iz_state.submissions() >= 1);
}

// ------------------------------------------------------------------------------------------
// Hostile input
// ------------------------------------------------------------------------------------------

/// Bodies a broken or hostile client might send: none may produce a 5xx or kill the server.
fn garbage_bodies() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "",
        "null",
        "{",
        "[",
        "[]",
        "{}",
        "[null]",
        "[1,2,3]",
        "\"str\"",
        "[[[[[]]]]]",
        r#"[{"domain": 5}]"#,
        r#"[{"domain": ""}]"#,
        r#"[{"domain": "a.example", "daysToExpiration": 1e308}]"#,
        r#"[{"domain": "a.example", "daysToExpiration": -1}]"#,
        r#"[{"ip": "::1", "riskLevel": null}]"#,
        r#"{"url": ["x"]}"#,
        r#"{"api_key": 1}"#,
        r#"{"hash": "zz"}"#,
        r#"[{"id": 7, "sweepType": []}]"#,
        "url=",
        "url=%ZZ",
        "\u{0}\u{1}\u{2}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![0xff, 0xfe, 0x00, 0x80]);
    v.push(format!("[{}]", "{\"domain\":\"x.example\"},".repeat(100) + "{}").into_bytes());
    v
}

#[tokio::test]
async fn no_garbage_body_makes_any_simulator_fail_with_a_5xx() {
    let (_s, v1_base) = v1(VisionOneConfig::default()).await;
    let (_s2, vt_base) = vt(VirusTotalConfig::default()).await;
    let (_s3, iz_base) = intezer(IntezerConfig::default()).await;
    let t = token(&iz_base).await;
    let targets: Vec<(String, &str, String)> = vec![
        (format!("{v1_base}/v3.0/threatintel/suspiciousObjects"), "bearer", V1_TOKEN.to_string()),
        (format!("{v1_base}/v3.0/threatintel/suspiciousObjects/delete"), "bearer", V1_TOKEN.to_string()),
        (format!("{v1_base}/v3.0/threatintel/intelligenceReports"), "bearer", V1_TOKEN.to_string()),
        (format!("{v1_base}/v3.0/threatintel/intelligenceReports/sweep"), "bearer", V1_TOKEN.to_string()),
        (format!("{v1_base}/v3.0/threatintel/intelligenceReports/delete"), "bearer", V1_TOKEN.to_string()),
        (format!("{v1_base}/v3.0/workbench/alerts/WB-x/notes"), "bearer", V1_TOKEN.to_string()),
        (format!("{vt_base}/api/v3/urls"), "vt", VT_KEY.to_string()),
        (format!("{iz_base}/api/v2-0/url"), "bearer", t.clone()),
        (format!("{iz_base}/api/v2-0/analyze-by-hash"), "bearer", t.clone()),
        (format!("{iz_base}/api/v2-0/get-access-token"), "none", String::new()),
    ];
    for (url, auth, secret) in &targets {
        for body in garbage_bodies() {
            for ctype in ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                let mut req = client().post(url).header("content-type", ctype).body(body.clone());
                req = match *auth {
                    "bearer" => req.bearer_auth(secret),
                    "vt" => req.header("x-apikey", secret),
                    _ => req,
                };
                let st = req.send().await.unwrap().status();
                assert!(st.as_u16() < 500, "{url} {ctype} {:?} -> {st}", String::from_utf8_lossy(&body));
            }
        }
    }
    // Hostile filters and query strings on the list endpoints.
    for filter in ["((((", "riskLevel eq '", "uuid eq 'a' and", "riskLevel eq 'x' §", &"(".repeat(5000)] {
        let (st, _) = v1_get(&format!("{v1_base}/v3.0/oat/detections?top=50"), Some(filter)).await;
        assert_eq!(st, 400, "{filter:?}");
    }
    for q in ["skipToken=%%%", "skipToken=eyJ9", "detectedStartDateTime=yesterday", "top=-1"] {
        let (st, _) = v1_get(&format!("{v1_base}/v3.0/oat/detections?{q}"), None).await;
        assert_eq!(st, 400, "{q}");
    }
}

#[tokio::test]
async fn intezer_expired_analyses_answer_410_gone() {
    let (s, base) = intezer(IntezerConfig::default()).await;
    let t = token(&base).await;
    let r = client()
        .post(format!("{base}/api/v2-0/url"))
        .bearer_auth(&t)
        .json(&json!({"url": "http://a.example/"}))
        .send()
        .await
        .unwrap();
    let result_url = r.json::<Value>().await.unwrap()["result_url"].as_str().unwrap().to_string();
    s.expire_analyses();
    let r = client().get(format!("{base}/api/v2-0{result_url}")).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn v1_report_and_task_lists_take_the_filter_query() {
    let (s, base) = v1(VisionOneConfig::default()).await;
    for name in ["alpha", "beta"] {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"type,value\ndomain,c2.example\n".to_vec())
                    .file_name("r.csv")
                    .mime_str("text/csv")
                    .unwrap(),
            )
            .text("reportName", name);
        let r = client()
            .post(format!("{base}/v3.0/threatintel/intelligenceReports"))
            .bearer_auth(V1_TOKEN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 207);
    }
    let list = format!("{base}/v3.0/threatintel/intelligenceReports");
    let r = client().get(&list).bearer_auth(V1_TOKEN).query(&[("filter", "name eq 'beta'")]).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["name"], "beta");
    let r = client().get(&list).bearer_auth(V1_TOKEN).query(&[("filter", "colour eq 'x'")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let id = s.reports().into_iter().find(|r| r.name == "alpha").unwrap().id;
    let (st, _) = v1_post(&format!("{list}/sweep"), &json!([{"id": id}])).await;
    assert_eq!(st, 207);
    let r = client()
        .get(format!("{base}/v3.0/threatintel/tasks"))
        .bearer_auth(V1_TOKEN)
        .query(&[("filter", "status eq 'notstarted'")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"][0]["reportId"], id.as_str());
    assert!(body["items"][0].get("isHit").is_none(), "isHit only once the sweep has finished");
}

#[tokio::test]
async fn configs_default_from_empty_sections_and_seed_a_demo_lab() {
    let empty = json!({});
    assert_eq!(serde_json::from_value::<VisionOneConfig>(empty.clone()).unwrap(), VisionOneConfig::default());
    assert_eq!(serde_json::from_value::<VirusTotalConfig>(empty.clone()).unwrap(), VirusTotalConfig::default());
    assert_eq!(serde_json::from_value::<IntezerConfig>(empty).unwrap(), IntezerConfig::default());
    assert!(serde_json::from_value::<VisionOneConfig>(json!({"tokn": "x"})).is_err(), "typos are refused");

    let v1_config: VisionOneConfig = serde_json::from_value(json!({"seed_c2": [
        {"endpoint": "ws-01", "url": "http://c2.example/gate", "alert_severity": "high"},
        {"endpoint": "ws-02", "url": "http://other.example/"}]}))
    .unwrap();
    let (_s, base) = v1(v1_config).await;
    let (st, body) = v1_get(&format!("{base}/v3.0/oat/detections"), Some("filterMitreTacticId eq 'TA0011'")).await;
    assert_eq!(st, 200);
    assert_eq!(body["totalCount"], 2);
    let (_, body) = v1_get(&format!("{base}/v3.0/workbench/alerts"), None).await;
    assert_eq!(body["totalCount"], 1);
    assert_eq!(body["items"][0]["indicators"][1]["value"], "c2.example");

    let vt_config: VirusTotalConfig =
        serde_json::from_value(json!({"seed": [{"kind": "domain", "value": "c2.example", "malicious": 12}]})).unwrap();
    let (_s, base) = vt(vt_config).await;
    assert_eq!(
        vt_get(&base, "/domains/c2.example").await.1["data"]["attributes"]["last_analysis_stats"]["malicious"],
        12
    );
    let bad: VirusTotalConfig =
        serde_json::from_value(json!({"seed": [{"kind": "sha1", "value": "nope", "malicious": 1}]})).unwrap();
    assert!(VirusTotalState::try_new(bad).is_err());

    let iz_config: IntezerConfig = serde_json::from_value(json!({
        "url_verdicts": {"http://gone.example/": "offline"},
        "hash_verdicts": {"44D88612FEA8A8F36DE82E1278ABB02F": {"verdict": "malicious"}}}))
    .unwrap();
    let (_s, base) = intezer(iz_config).await;
    let t = token(&base).await;
    let r = client()
        .post(format!("{base}/api/v2-0/url"))
        .bearer_auth(&t)
        .json(&json!({"url": "http://gone.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(format!("{base}/api/v2-0/analyze-by-hash"))
        .bearer_auth(&t)
        .json(&json!({"hash": "44d88612fea8a8f36de82e1278abb02f"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn intezer_pending_time_makes_a_single_early_poll_miss() {
    let (_s, base) = intezer(IntezerConfig { url_pending_polls: 0, url_pending_secs: 30, ..Default::default() }).await;
    let t = token(&base).await;
    let r = client()
        .post(format!("{base}/api/v2-0/url"))
        .bearer_auth(&t)
        .json(&json!({"url": "http://slow.example/"}))
        .send()
        .await
        .unwrap();
    let result_url = r.json::<Value>().await.unwrap()["result_url"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let r = client().get(format!("{base}/api/v2-0/{result_url}")).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), 202, "still pending before 30 s, however often polled");
    }
}

#[tokio::test]
async fn vt_daily_quota_is_per_key_and_answers_429() {
    let other_key = "0".repeat(64);
    let config = VirusTotalConfig {
        api_keys: vec![VT_KEY.to_string(), other_key.clone()],
        quota_per_day: Some(2),
        ..Default::default()
    };
    let (s, base) = vt(config).await;
    s.set_verdict(IndicatorKind::Domain, "d.example", 0, 0).unwrap();
    assert_eq!(vt_get(&base, "/domains/d.example").await.0, 200);
    assert_eq!(vt_get(&base, "/domains/d.example").await.0, 200);
    let (st, body) = vt_get(&base, "/domains/d.example").await;
    assert_eq!(st, 429);
    assert_eq!(body["error"]["code"], "QuotaExceededError");
    assert!(body["error"]["message"].as_str().unwrap().contains("per day"));
    let r =
        client().get(format!("{base}/api/v3/domains/d.example")).header("x-apikey", &other_key).send().await.unwrap();
    assert_eq!(r.status(), 200, "another key has its own quota");
}
