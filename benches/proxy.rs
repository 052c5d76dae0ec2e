//! What `flux-sim proxy` adds: request latency through the proxy versus straight to `serve`
//! (p50 and p99, one request at a time, the two interleaved so that both see the same noise),
//! and requests per second with 64 clients at once, on loopback. `serve` runs
//! `scenarios/serve-bench.toml` (instant answers, quotas too large to bind), the proxy `flux`.
//! Not criterion: percentiles are the point. `cargo bench --bench proxy`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_sim::net::proxy::{proxy, ProxyOptions};
use flux_sim::scenario::Scenario;
use hdrhistogram::Histogram;

const TOKEN: &str = "bench-token";
const BODY: &str =
    r#"{"contents":[{"role":"user","parts":[{"text":"hello there"}]}],"generationConfig":{"maxOutputTokens":16}}"#;

async fn listen() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

async fn once(client: &reqwest::Client, url: &str, key: &str) {
    let r = client
        .post(url)
        .header("x-goog-api-key", key)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = Scenario::load(Path::new("scenarios/serve-bench.toml")).unwrap();
        let key = s.topology.keys[0].value.clone();
        let (l, serve_url) = listen().await;
        tokio::spawn(flux_sim::net::serve::serve(l, s.clone(), 1, std::future::pending()));
        let (l, proxy_url) = listen().await;
        let opts = ProxyOptions {
            upstream: serve_url.clone(),
            token: TOKEN.into(),
            deadline: Duration::from_secs(60),
            queue: 4096,
            ledger: None,
            margin: 0,
            allow_eviction: false,
        };
        let spec = s.builtin_strategy("flux").unwrap();
        tokio::spawn(proxy(l, s, spec, opts, std::future::pending()));
        let path = "/v1beta/models/gemini-2.5-flash:generateContent";
        let direct = format!("{serve_url}{path}");
        let via = format!("{proxy_url}{path}");
        let client = reqwest::Client::new();
        for _ in 0..2_000 {
            once(&client, &direct, &key).await;
            once(&client, &via, TOKEN).await;
        }
        let mut hd = Histogram::<u64>::new(3).unwrap();
        let mut hp = Histogram::<u64>::new(3).unwrap();
        for _ in 0..20_000 {
            let t = Instant::now();
            once(&client, &direct, &key).await;
            hd.record(t.elapsed().as_nanos() as u64).unwrap();
            let t = Instant::now();
            once(&client, &via, TOKEN).await;
            hp.record(t.elapsed().as_nanos() as u64).unwrap();
        }
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!("one at a time, 20,000 requests each, interleaved:");
        println!(
            "  straight to serve: p50 {:.0} µs, p99 {:.0} µs",
            us(&hd, 0.5),
            us(&hd, 0.99)
        );
        println!(
            "  through the proxy: p50 {:.0} µs, p99 {:.0} µs",
            us(&hp, 0.5),
            us(&hp, 0.99)
        );
        println!(
            "  added by the proxy: p50 {:.0} µs, p99 {:.0} µs",
            us(&hp, 0.5) - us(&hd, 0.5),
            us(&hp, 0.99) - us(&hd, 0.99)
        );
        for (name, url, k) in [
            ("straight to serve", &direct, key.as_str()),
            ("through the proxy", &via, TOKEN),
        ] {
            let done = Arc::new(AtomicU64::new(0));
            let stop = Instant::now() + Duration::from_secs(5);
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let (client, url, k, done) = (client.clone(), url.clone(), k.to_string(), done.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < stop {
                        once(&client, &url, &k).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            println!(
                "64 clients, 5 s, {name}: {:.0} requests/s",
                done.load(Ordering::Relaxed) as f64 / 5.0
            );
        }
    });
}
