//! The simulators over real sockets, driven with reqwest as tibridge's connectors drive them:
//! MISP paging with warninglist-shortened pages, deletions and tag NOT; Apex Central JWT
//! accept/reject and list full; Deep Security 429; fault injection (5xx share, 429, latency,
//! dropped connections).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tibridge_lab::apex_central::{make_token, ApexConfig};
use tibridge_lab::deep_security::DeepSecurityConfig;
use tibridge_lab::misp::MispAttribute;
use tibridge_lab::{FaultConfig, GeneratedDataset, Lab, LabConfig, MispSettings, SimulatorConfig};

const MISP_KEY: &str = "test-misp-key-0000000000000000000000000000";

fn only(misp: bool, apex: bool, ds: bool) -> LabConfig {
    let mut c = LabConfig::default();
    c.misp.enabled = misp;
    c.apex_central.enabled = apex;
    c.deep_security.enabled = ds;
    c.vision_one.enabled = false;
    c.virustotal.enabled = false;
    c.intezer.enabled = false;
    c
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn misp_lab(events: usize, per_event: usize) -> Lab {
    let mut config = only(true, false, false);
    config.misp = SimulatorConfig {
        settings: MispSettings {
            api_key: MISP_KEY.into(),
            generate: GeneratedDataset { events, attrs_per_event: per_event, seed: 11 },
            ..MispSettings::default()
        },
        ..SimulatorConfig::default()
    };
    Lab::start(config).await.unwrap()
}

struct Page {
    attrs: Vec<Value>,
    count: usize,
    skipped: usize,
}

async fn search(http: &reqwest::Client, url: &str, body: Value) -> Page {
    let resp = http
        .post(format!("{url}/attributes/restSearch"))
        .header("Authorization", MISP_KEY)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().parse::<usize>().unwrap();
    let (count, skipped) = (header("x-result-count"), header("x-skipped-elements-count"));
    let v: Value = resp.json().await.unwrap();
    let attrs = v["response"]["Attribute"].as_array().unwrap().clone();
    assert_eq!(attrs.len(), count);
    Page { attrs, count, skipped }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misp_paging_survives_warninglist_shortened_pages() {
    let lab = misp_lab(6, 40).await;
    let misp = lab.misp.as_ref().unwrap();
    let all: Vec<MispAttribute> = misp.state.dataset().attributes;
    // Warninglist every 7th attribute so several pages come back short without being the end.
    let listed: Vec<String> = all.iter().step_by(7).map(|a| a.value.clone()).collect();
    misp.state.set_warninglist(&listed);
    let listed_set: HashSet<String> = listed.iter().map(|v| v.to_ascii_lowercase()).collect();

    let http = client();
    let limit = 25;
    let mut seen = Vec::new();
    let mut short_but_not_last = 0;
    for page in 1.. {
        let body = json!({"returnFormat": "json", "limit": limit, "page": page, "deleted": [0, 1],
                          "order": "Attribute.timestamp asc", "enforceWarninglist": 1});
        let p = search(&http, &misp.url, body).await;
        seen.extend(p.attrs.iter().map(|a| a["uuid"].as_str().unwrap().to_owned()));
        // The contract's stop rule: only when count + skipped < limit.
        if p.count + p.skipped < limit {
            break;
        }
        if p.count < limit {
            short_but_not_last += 1;
        }
        assert!(page < 100, "paging never ended");
    }
    assert!(short_but_not_last > 0, "no page was shortened by the warninglist");
    let expected: Vec<String> = {
        let mut v: Vec<&MispAttribute> = all
            .iter()
            .filter(|a| !listed_set.contains(&a.value.to_ascii_lowercase()))
            .filter(|a| !a.parts().iter().any(|p| listed_set.contains(&p.to_ascii_lowercase())))
            .collect();
        v.sort_by_key(|a| (a.timestamp, a.id));
        v.iter().map(|a| a.uuid.clone()).collect()
    };
    assert_eq!(seen, expected);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misp_deletions_and_tag_not() {
    let lab = misp_lab(4, 30).await;
    let misp = lab.misp.as_ref().unwrap();
    let http = client();
    let cursor = misp.state.dataset().attributes.iter().map(|a| a.timestamp).max().unwrap();

    // Nothing newer than the cursor yet.
    let p = search(&http, &misp.url, json!({"timestamp": cursor + 1, "deleted": [0, 1]})).await;
    assert_eq!(p.count, 0);

    let victim = misp.state.dataset().attributes.iter().find(|a| !a.deleted).unwrap().clone();
    misp.state.soft_delete_attribute(&victim.uuid).unwrap();
    let p = search(&http, &misp.url, json!({"timestamp": cursor + 1, "deleted": [0, 1]})).await;
    assert_eq!(p.count, 1);
    assert_eq!(p.attrs[0]["uuid"], victim.uuid.as_str());
    assert_eq!(p.attrs[0]["deleted"], true);
    assert!(p.attrs[0]["timestamp"].as_str().unwrap().parse::<i64>().unwrap() > cursor);
    // Default deleted=0 hides it; deleted=1 shows only soft-deleted ones.
    let p = search(&http, &misp.url, json!({"timestamp": cursor + 1})).await;
    assert_eq!(p.count, 0);
    let p = search(&http, &misp.url, json!({"deleted": 1})).await;
    assert!(p.attrs.iter().all(|a| a["deleted"] == true));
    assert!(p.attrs.iter().any(|a| a["uuid"] == victim.uuid.as_str()));

    // Tag NOT on either the attribute or its event, in both spellings.
    for tags in [json!({"NOT": ["tlp:red"]}), json!(["!tlp:red"])] {
        let p = search(&http, &misp.url, json!({"tags": tags, "includeEventTags": 1})).await;
        assert!(p.count > 0);
        for a in &p.attrs {
            let names: Vec<&str> =
                a["Tag"].as_array().map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect()).unwrap_or_default();
            assert!(!names.contains(&"tlp:red"), "{a}");
        }
    }
    let red = search(&http, &misp.url, json!({"tags": ["tlp:red"]})).await;
    let not_red = search(&http, &misp.url, json!({"tags": {"NOT": ["tlp:red"]}})).await;
    let everything = search(&http, &misp.url, json!({})).await;
    assert_eq!(red.count + not_red.count, everything.count);
    let wildcard = search(&http, &misp.url, json!({"tags": ["tlp:%"]})).await;
    assert_eq!(wildcard.count, everything.count, "every generated event carries a tlp tag");

    // Hard delete: gone even with deleted [0,1].
    misp.state.hard_delete_attribute(&victim.uuid).unwrap();
    let p = search(&http, &misp.url, json!({"uuid": victim.uuid, "deleted": [0, 1]})).await;
    assert_eq!(p.count, 0);
    lab.shutdown().await;
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_jwt_accept_reject_and_list_full() {
    let mut config = only(false, true, false);
    config.apex_central.settings = ApexConfig { capacity: 2, ..ApexConfig::default() };
    let lab = Lab::start(config).await.unwrap();
    let apex = lab.apex_central.as_ref().unwrap();
    let (app, key) = (apex.state.app_id(), apex.state.api_key());
    let http = client();
    let path = "/WebApp/api/SuspiciousObjects/UserDefinedSO/";
    let put = |token: String, body: String| {
        http.put(format!("{}{path}", apex.url))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json;charset=utf-8")
            .body(body)
            .send()
    };
    let body = |content: &str| {
        json!({"param": {"type": "domain", "content": content, "scan_action": "block", "notes": "lab"}}).to_string()
    };

    let b = body("one.example");
    let resp = put(make_token(&app, &key, now(), "PUT", path, b.as_bytes()), b.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["Meta"]["Result"], 1);

    // Checksum over a different body than the one sent.
    let resp =
        put(make_token(&app, &key, now(), "PUT", path, body("other.example").as_bytes()), b.clone()).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["Meta"]["ErrorCode"], -8);
    // Expired.
    let resp = put(make_token(&app, &key, now() - 86_400.0, "PUT", path, b.as_bytes()), b.clone()).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["Meta"]["ErrorCode"], -6);

    let b2 = body("two.example");
    let resp = put(make_token(&app, &key, now(), "PUT", path, b2.as_bytes()), b2).await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["Meta"]["Result"], 1);
    let b3 = body("three.example");
    let resp = put(make_token(&app, &key, now(), "PUT", path, b3.as_bytes()), b3).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["Meta"]["Result"].as_i64(), v["Meta"]["ErrorCode"].as_i64()), (Some(0), Some(-1101)));
    assert_eq!(apex.state.udso().len(), 2);

    // The listing, with a query string the checksum must cover.
    let list = format!("{path}?type=domain&contentFilter=two");
    let resp = http
        .get(format!("{}{list}", apex.url))
        .header("Authorization", format!("Bearer {}", make_token(&app, &key, now(), "GET", &list, b"")))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["Data"].as_array().unwrap().len(), 1, "{v}");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_security_answers_429_over_its_rate() {
    let mut config = only(false, false, true);
    config.deep_security.settings =
        DeepSecurityConfig { requests_per_minute: 5, api_key: "ds-key".into(), ..Default::default() };
    let lab = Lab::start(config).await.unwrap();
    let ds = lab.deep_security.as_ref().unwrap();
    let http = client();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let resp = http
            .get(format!("{}/applicationcontrolglobalrules", ds.url))
            .header("api-secret-key", "ds-key")
            .header("api-version", "v1")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let retry_after = retry_after.unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(ds.state.rate_limited_count(), 3);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_5xx_share_429_latency_and_dropped_connections() {
    let lab = misp_lab(1, 5).await;
    let misp = lab.misp.as_ref().unwrap();
    let http = client();
    let get = || http.get(format!("{}/servers/getVersion", misp.url)).header("Authorization", MISP_KEY).send();

    misp.faults.set(FaultConfig { error_5xx_ratio: 0.3, error_status: 500, seed: Some(7), ..FaultConfig::default() });
    let mut errors = 0;
    for _ in 0..200 {
        if get().await.unwrap().status() == 500 {
            errors += 1;
        }
    }
    assert!((40..=80).contains(&errors), "{errors} of 200 at 30%");
    assert_eq!(misp.faults.stats().server_errors, errors);

    misp.faults.set(FaultConfig { rate_limit_429_ratio: 1.0, retry_after_secs: 3, ..FaultConfig::default() });
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");

    misp.faults.set(FaultConfig { latency: Duration::from_millis(150), ..FaultConfig::default() });
    let t = Instant::now();
    assert_eq!(get().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    misp.faults.set(FaultConfig { drop_ratio: 1.0, ..FaultConfig::default() });
    let err = get().await.expect_err("a dropped connection is an error, not a response");
    assert!(err.status().is_none(), "{err}");
    assert!(err.is_request() || err.is_connect() || err.is_body(), "{err:?}");

    misp.faults.clear();
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(misp.faults.stats().dropped, 1);
    lab.shutdown().await;
}
