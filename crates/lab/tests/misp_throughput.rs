//! How fast the lab MISP serves a 100k-attribute data set, so benchmarks of the MISP
//! connector measure the connector and not the simulator. Ignored by default; run with
//!
//!     cargo test --release -p tibridge-lab --test misp_throughput -- --ignored --nocapture
//!
//! Sizes can be changed with LAB_BENCH_EVENTS / LAB_BENCH_ATTRS_PER_EVENT / LAB_BENCH_LIMIT.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tibridge_lab::misp::{generate_dataset, router, MispState};
use tibridge_lab::{serve, FaultHandle};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
async fn serve_100k_attributes() {
    let events = env_usize("LAB_BENCH_EVENTS", 1000);
    let per_event = env_usize("LAB_BENCH_ATTRS_PER_EVENT", 100);
    let limit = env_usize("LAB_BENCH_LIMIT", 1000);

    let t = Instant::now();
    let data = generate_dataset(events, per_event, 1);
    let generate = t.elapsed();
    let total = data.attributes.len();

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    data.write_feed_dir(dir.path()).unwrap();
    let feed = t.elapsed();

    let state = MispState::new(data, "bench-key");
    let server = serve(router(state), FaultHandle::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let t = Instant::now();
    let mut served = 0usize;
    let mut bytes = 0usize;
    for page in 1.. {
        let resp = http
            .post(format!("{}/attributes/restSearch", server.base_url()))
            .header("Authorization", "bench-key")
            .json(&json!({"returnFormat": "json", "limit": limit, "page": page, "deleted": [0, 1],
                          "order": "Attribute.timestamp asc", "includeEventTags": 1}))
            .send()
            .await
            .unwrap();
        // Count from the header so the number measures the simulator, not JSON parsing here.
        let n: usize = resp.headers()["x-result-count"].to_str().unwrap().parse().unwrap();
        let body = resp.bytes().await.unwrap();
        bytes += body.len();
        if page == 1 {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["response"]["Attribute"].as_array().unwrap().len(), n);
        }
        served += n;
        if n < limit {
            break;
        }
    }
    let paging = t.elapsed();
    assert_eq!(served, total);
    println!(
        "lab MISP bench: {total} attributes in {events} events | generate {:.0} ms | write feed dir {:.0} ms | \
         restSearch paging (limit {limit}, includeEventTags, order timestamp) {:.0} ms = {:.0} attributes/s, {:.1} MB",
        generate.as_secs_f64() * 1e3,
        feed.as_secs_f64() * 1e3,
        paging.as_secs_f64() * 1e3,
        total as f64 / paging.as_secs_f64(),
        bytes as f64 / 1e6
    );
    server.shutdown().await;
}
