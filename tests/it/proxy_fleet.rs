//! `flux-sim proxy` on every route serve has, as a fleet on one Redis (issue 28 items 7 and
//! the killed-proxy fault): OpenAI-compatible chat completions scheduled and counted in the
//! shared ledger like generateContent; Live sessions holding a concurrency slot across two
//! proxies until they end; a proxy SIGKILLed while clients send, the other going on with no
//! quota 429 at the upstream and the dead one's slots coming back when their leases end.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{listener, serve};
use flux_sim::net::proxy::{proxy, ProxyOptions};
use flux_sim::scenario::Scenario;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "proxy-token-for-fleet-tests";
const LIVE_MODEL: &str = "gemini-2.0-flash-live-001";
const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

/// One project: a REST model at `rpm` and a Live model with one concurrent session.
fn scenario(rpm: u64) -> String {
    format!(
        r#"
name = "fleet-test"
seed = 5
[server.latency]
ttft = "2ms"
tokens_per_second = 100000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = {rpm}
tpm = 1000000
rpd = 100000
[models."{LIVE_MODEL}"]
live = true
concurrent = 1
latency = {{ ttft = "50ms", tokens_per_second = 3200, jitter = 0.0 }}
[topology]
projects = ["solo"]
[workload]
kind = "closed"
model = "gemini-2.5-flash"
requests = 1
workers = 1
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 20 }}
"#
    )
}

/// A proxy in this process for `text` in front of `upstream`, on the ledger `ledger`.
async fn start_proxy(
    text: &str,
    upstream: &str,
    ledger: Option<&str>,
    deadline: Duration,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let s = Scenario::parse(text, Path::new("proxy.toml")).unwrap();
    let spec = s.builtin_strategy("flux").unwrap();
    let (l, base) = listener().await;
    let opts = ProxyOptions {
        upstream: upstream.to_string(),
        token: TOKEN.into(),
        deadline,
        queue: 256,
        ledger: ledger.map(str::to_string),
        margin: 0,
        allow_eviction: false,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy(l, s, spec, opts, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

/// The ledger's clock (Unix µs).
fn ledger_now(redis: &common::RedisServer) -> String {
    let t: Vec<u64> = redis
        .cli(&["TIME"])
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (t[0] * 1_000_000 + t[1]).to_string()
}

/// The sends in a budget's RPM window in Redis (`key`): its entries up to the ledger's now. A
/// slot pre-admitted and not yet used is scored after now (see `proxy_prefetch`), and a send
/// on one is confirmed off its path just after its answer: the count is read until it shows
/// `want` (or 2 s pass), and the last count read is returned.
async fn sends_in_window(redis: &common::RedisServer, key: &str, want: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let n = redis
            .cli(&["ZCOUNT", key, "-inf", &ledger_now(redis)])
            .trim()
            .to_string();
        if n == want || started.elapsed() > Duration::from_secs(2) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers of serve with HTTP `code`, over all budgets (Live refusals count as 429).
async fn upstream_answers(upstream: &str, code: u16) -> u64 {
    model_answers(upstream, "", code).await
}

/// Answers of serve with HTTP `code` on models whose label contains `model`.
async fn model_answers(upstream: &str, model: &str, code: u16) -> u64 {
    let text = reqwest::get(format!("{upstream}/flux/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tag = format!("code=\"{code}\"}}");
    text.lines()
        .filter(|l| l.starts_with("flux_responses_total") && l.contains(&tag) && l.contains(model))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Issue 28 item 7: the openai SDK's chat completions through the proxy (it answered 404):
/// plain and streamed, answered by serve, each counted once in the shared ledger (its RPM
/// window in Redis) and in `/metrics`; a wrong token is a 401 as Google answers there.
#[tokio::test]
async fn openai_chat_completions_go_through_the_shared_ledger() {
    let Some(redis) = common::redis_server() else { return };
    let text = scenario(30);
    let (upstream, _stop) = serve(&text).await;
    let (base, _p) = start_proxy(&text, &upstream, Some(&redis.url), Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1beta/openai/chat/completions");
    let body = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20});
    let r = client.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = client
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = r.text().await.unwrap();
    assert!(t.starts_with("data: ") && t.ends_with("data: [DONE]\n\n"), "{t}");
    let r = client
        .post(&url)
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/v1beta/openai/models"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Counted in the fleet's ledger: two entries in the budget's minute window.
    let n = sends_in_window(&redis, "flux:{solo:gemini-2.5-flash}:rpm", "2").await;
    assert_eq!(n, "2", "the shared ledger's window");
    assert_eq!(upstream_answers(&upstream, 200).await, 2);
    let m = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("flux_proxy_admitted_total{project=\"solo\",model=\"gemini-2.5-flash\"} 2\n"),
        "{m}"
    );
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Live session through the proxy at `base`: connected and its setup sent.
async fn live_session(base: &str) -> Ws {
    let mut req = format!("{}{PATH}", base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    let setup = json!({"setup": {"model": format!("models/{LIVE_MODEL}"), "generationConfig": {"responseModalities": ["TEXT"]}}});
    ws.send(Message::Text(setup.to_string().into())).await.unwrap();
    ws
}

/// The next frame: a JSON message, or the close (code, reason).
async fn next(ws: &mut Ws) -> Result<Value, (u16, String)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
        {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Binary(b))) => return Ok(serde_json::from_slice(&b).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => return Err((u16::from(f.code), f.reason.to_string())),
            Some(Ok(Message::Close(None))) | None => return Err((1005, String::new())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((1006, e.to_string())),
        }
    }
}

/// Issue 28 item 7: a Live session holds its project's one concurrency slot across the fleet
/// until it ends. Through proxy A it opens and talks; a session through proxy B waits for the
/// slot, and at its deadline is closed 1011 by B saying when to come back — serve never sees
/// it (no 1011 from serve); once A's session ends, B's next session opens. (The proxy answered
/// 404 on this path.)
#[tokio::test]
async fn a_live_session_holds_a_concurrency_slot_across_the_fleet() {
    let Some(redis) = common::redis_server() else { return };
    let text = scenario(30);
    let (upstream, _stop) = serve(&text).await;
    let (a, _pa) = start_proxy(&text, &upstream, Some(&redis.url), Duration::from_secs(5)).await;
    let (b, _pb) = start_proxy(&text, &upstream, Some(&redis.url), Duration::from_secs(2)).await;
    let mut first = live_session(&a).await;
    assert!(next(&mut first).await.unwrap().get("setupComplete").is_some());
    let turn = json!({"client_content": {"turns": [{"role": "user", "parts": [{"text": "Hello, how are you today?"}]}], "turn_complete": true}});
    first.send(Message::Text(turn.to_string().into())).await.unwrap();
    loop {
        let m = next(&mut first).await.expect("the turn's frames");
        if m["serverContent"].get("turnComplete").is_some() {
            break;
        }
    }
    let t = Instant::now();
    let mut second = live_session(&b).await;
    let (code, reason) = next(&mut second).await.expect_err("no slot: closed by the proxy");
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("flux-sim proxy: no key has room"), "{reason}");
    assert!(
        t.elapsed() >= Duration::from_millis(1800) && t.elapsed() < Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(upstream_answers(&upstream, 429).await, 0, "serve refused a session");
    // A's session ends: its slot comes back at once, and B's next session opens.
    first.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = live_session(&b).await;
    assert!(next(&mut third).await.unwrap().get("setupComplete").is_some());
    assert_eq!(upstream_answers(&upstream, 429).await, 0);
    let m = reqwest::get(format!("{b}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(&format!(
            "flux_proxy_live_sessions_open{{project=\"solo\",model=\"{LIVE_MODEL}\"}} 1\n"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "flux_proxy_refused_total{{project=\"solo\",model=\"{LIVE_MODEL}\",reason=\"deadline\"}} 1\n"
        )),
        "{m}"
    );
}

/// A `flux-sim proxy` process (the binary), killed when dropped.
struct ProxyProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary's proxy for `config` in front of `upstream` on `ledger`, and waits until
/// it answers.
async fn proxy_process(config: &Path, upstream: &str, ledger: &str) -> ProxyProcess {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flux-sim"))
        .arg("proxy")
        .arg(config)
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            upstream,
            "--ledger",
            ledger,
        ])
        .args(["--deadline", "3s", "--margin", "0s"])
        .env("FLUX_PROXY_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let p = ProxyProcess { child, base };
    for _ in 0..200 {
        if reqwest::get(format!("{}/flux/metrics", p.base)).await.is_ok() {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy did not answer within 10 s");
}

/// A generateContent through `base`: its status.
async fn generate(client: &reqwest::Client, base: &str) -> u16 {
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 20}});
    client
        .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Issue 28's fault "a proxy killed mid-run": two proxy processes on one Redis, clients on
/// both; proxy A holds a Live session and is SIGKILLed while its clients send. Proxy B goes
/// on: serve answers no quota 429 (what A sent stays in the shared windows until they end, 60
/// s after each admission), and A's concurrency slot comes back when its lease ends (15 s
/// after its last renewal; renewed every 5 s): its end is never pushed back after the kill,
/// so a session through B opens by then.
#[tokio::test]
async fn a_proxy_killed_mid_run_leaves_the_fleet_exact() {
    let Some(redis) = common::redis_server() else { return };
    // 40 a minute for the fleet; clients ask for more.
    let text = scenario(40);
    let (upstream, _stop) = serve(&text).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.toml");
    std::fs::write(&config, &text).unwrap();
    let mut a = proxy_process(&config, &upstream, &redis.url).await;
    let b = proxy_process(&config, &upstream, &redis.url).await;
    let mut held = live_session(&a.base).await;
    assert!(next(&mut held).await.unwrap().get("setupComplete").is_some());
    let lease_key = format!("flux:{{solo:{LIVE_MODEL}}}:live");
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, base) = (client.clone(), if i % 2 == 0 { a.base.clone() } else { b.base.clone() });
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(4) {
                codes.push(generate(&client, &base).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            codes
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL: no chance to give anything back.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    let lease_end: f64 = redis
        .cli(&["ZRANGE", &lease_key, "0", "0", "WITHSCORES"])
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut from_b = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let codes = t.await.unwrap();
        if i % 2 == 1 {
            from_b.extend(codes);
        }
    }
    // B went on: its clients got answers (200, or its own 429 once the minute was full).
    assert!(from_b.iter().all(|&c| c == 200 || c == 429), "{from_b:?}");
    assert!(from_b.iter().filter(|&&c| c == 200).count() >= 5, "{from_b:?}");
    assert_eq!(upstream_answers(&upstream, 429).await, 0, "a quota 429 at serve");
    // Everything sent is in the shared window, A's sends included.
    let sent = model_answers(&upstream, "model=\"gemini-2.5-flash\"", 200).await;
    assert!(sent <= 40, "{sent} sent in a minute of 40");
    let window = redis.cli(&["ZCARD", "flux:{solo:gemini-2.5-flash}:rpm"]);
    assert_eq!(
        window.trim().parse::<u64>().unwrap(),
        sent,
        "what serve answered is in the window"
    );
    // A's lease is never renewed again: its end stays put, within 15 s of the kill.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        lease_end - now_ms <= 15_000.0,
        "the lease ends {} ms from now",
        lease_end - now_ms
    );
    tokio::time::sleep(Duration::from_millis(5500).saturating_sub(killed.elapsed())).await;
    let again: f64 = redis
        .cli(&["ZRANGE", &lease_key, "0", "0", "WITHSCORES"])
        .lines()
        .nth(1)
        .map_or(0.0, |l| l.trim().parse().unwrap());
    assert!(
        again == lease_end || again == 0.0,
        "renewed after the kill: {lease_end} -> {again}"
    );
    drop(held);
    // B's session opens once the lease has ended (its deadline is 3 s: ask until then).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = live_session(&b.base).await;
        match next(&mut s).await {
            Ok(m) if m.get("setupComplete").is_some() => break,
            other => assert!(Instant::now() < deadline, "no slot 20 s after the kill: {other:?}"),
        }
    }
    eprintln!(
        "the killed proxy's slot came back {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(upstream_answers(&upstream, 429).await, 0);
}

/// The proxy's `GET /metrics` and `/flux/metrics` texts.
async fn proxy_metrics(base: &str) -> (String, String) {
    let get = |path: &'static str| async move {
        reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    (get("/metrics").await, get("/flux/metrics").await)
}

/// Issue 28: a Live session the upstream refuses is the upstream's refusal, as serve and
/// Gemini send it: `setupComplete` then close 1011 "You exceeded your current quota…" (told
/// apart from the other 1011s by its reason only), or an HTTP 429 at the upgrade
/// (`quota_check = "connect"`). Either way the proxy counts a 429 answer in `/metrics` (the
/// refused session's budget) and passes the quota close on; before, the close went uncounted
/// and the upgrade's 429 was counted as an unreachable upstream. The proxy is told two
/// concurrent sessions where serve allows one, so the second session is refused upstream.
#[tokio::test]
async fn live_refusals_by_the_upstream_count_as_its_429s() {
    for check in ["setup", "connect"] {
        let up = scenario(30).replace(
            "[topology]",
            &format!("[server.live]\nquota_check = \"{check}\"\n[topology]"),
        );
        let told = scenario(30).replace("concurrent = 1", "concurrent = 2");
        let (upstream, _stop) = serve(&up).await;
        let (base, _p) = start_proxy(&told, &upstream, None, Duration::from_secs(5)).await;
        let mut first = live_session(&base).await;
        assert!(
            next(&mut first).await.unwrap().get("setupComplete").is_some(),
            "{check}"
        );
        let mut second = live_session(&base).await;
        if check == "setup" {
            assert!(next(&mut second).await.unwrap().get("setupComplete").is_some());
        }
        let (code, reason) = next(&mut second).await.expect_err("refused upstream");
        assert_eq!(code, 1011, "{check}: {reason}");
        assert!(
            reason.starts_with("You exceeded your current quota"),
            "{check}: {reason}"
        );
        assert_eq!(
            upstream_answers(&upstream, 429).await,
            1,
            "{check}: serve refused one session"
        );
        // The proxy relays the close before it counts it: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (prom, events) = proxy_metrics(&base).await;
        let refused =
            format!("flux_proxy_upstream_responses_total{{project=\"solo\",model=\"{LIVE_MODEL}\",code=\"429\"}} 1\n");
        assert!(prom.contains(&refused), "{check}: {prom}");
        assert!(
            events.contains("flux_proxy_events_total{event=\"upstream_429\"} 1\n"),
            "{check}: {events}"
        );
        assert!(!events.contains("upstream_unreachable"), "{check}: {events}");
    }
}

/// Issue 28: a 1011 for another cause than quota (here serve's backend failure, "The service
/// is currently unavailable.", every session at `fault_rate = 1`) is not counted as a refusal.
#[tokio::test]
async fn a_backend_1011_from_the_upstream_is_not_a_refusal() {
    let up = scenario(30).replace("[server.latency]", "[server]\nfault_rate = 1.0\n[server.latency]");
    let (upstream, _stop) = serve(&up).await;
    let (base, _p) = start_proxy(&scenario(30), &upstream, None, Duration::from_secs(5)).await;
    let mut s = live_session(&base).await;
    assert!(next(&mut s).await.unwrap().get("setupComplete").is_some());
    let (code, reason) = next(&mut s).await.expect_err("closed upstream");
    assert_eq!((code, reason.as_str()), (1011, "The service is currently unavailable."));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (prom, events) = proxy_metrics(&base).await;
    assert!(!prom.contains("code=\"429\""), "{prom}");
    assert!(
        events.contains("flux_proxy_events_total{event=\"upstream_live_close_1011_backend\"} 1\n"),
        "{events}"
    );
}

/// The google-genai SDK connects Live only with `wss://`: the proxy serves HTTPS and WSS on
/// one port with `--tls-cert/--tls-key` (it served plain HTTP only, so the SDK's Live API
/// could not use it). A generateContent over HTTPS and a Live session over WSS go through
/// it to serve (plain HTTP upstream), trusting a self-signed certificate.
#[tokio::test]
async fn the_proxy_serves_https_and_wss_with_a_certificate() {
    let (_dir, tls, cert) = common::self_signed_tls();
    let text = scenario(30);
    let (upstream, _stop) = serve(&text).await;
    let s = Scenario::parse(&text, Path::new("proxy.toml")).unwrap();
    let spec = s.builtin_strategy("flux").unwrap();
    let opts = common::proxy_options(&upstream, TOKEN, Duration::from_secs(5), 16);
    let app = flux_sim::net::proxy::router(s, spec, &opts).await.unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(flux_sim::net::proxy::serve_router(
        l,
        app,
        Some(tls),
        std::future::pending(),
    ));
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = https
        .post(format!(
            "https://localhost:{port}/v1beta/models/gemini-2.5-flash:generateContent"
        ))
        .header("x-goog-api-key", TOKEN)
        .json(&json!({"contents": [{"parts": [{"text": "hello"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://localhost:{port}/v1beta/models"))
        .await
        .is_err());
    let mut req = format!("wss://localhost:{port}{PATH}").into_client_request().unwrap();
    req.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(common::trusting(&cert)))
        .await
        .unwrap();
    let setup = json!({"setup": {"model": format!("models/{LIVE_MODEL}"), "generationConfig": {"responseModalities": ["TEXT"]}}});
    ws.send(Message::Text(setup.to_string().into())).await.unwrap();
    assert!(next(&mut ws).await.unwrap().get("setupComplete").is_some());
    let prom = common::text_of(&https, &format!("https://localhost:{port}/metrics")).await;
    let opened =
        format!("flux_proxy_upstream_responses_total{{project=\"solo\",model=\"{LIVE_MODEL}\",code=\"101\"}} 1\n");
    assert!(prom.contains(&opened), "the session reached serve: {prom}");
}

/// serve and a proxy for `text` (the proxy's `deadline`), a Live session opened through it
/// (`first`, its `setupComplete` read) and a second one sent after it (`second`, its setup
/// sent): the session the tests of a waiting session watch.
struct OneBehind {
    upstream: String,
    base: String,
    first: Ws,
    second: Ws,
    _stops: (tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Sender<()>),
}

async fn one_behind_another(text: &str, deadline: Duration) -> OneBehind {
    let (upstream, serve_stop) = serve(text).await;
    let (base, proxy_stop) = start_proxy(text, &upstream, None, deadline).await;
    let mut first = live_session(&base).await;
    assert!(next(&mut first).await.unwrap().get("setupComplete").is_some());
    let second = live_session(&base).await;
    OneBehind {
        upstream,
        base,
        first,
        second,
        _stops: (serve_stop, proxy_stop),
    }
}

/// A Live session the proxy holds (its project's one slot is taken) answers its client's
/// pings, and once its client leaves it is never opened upstream. The google-genai SDK pings
/// every 20 s and gives up 20 s later: a session held 50 s died at the client (1006), and the
/// proxy, which did not read the socket while it waited, opened it upstream all the same when
/// the slot freed, spending its tokens (found with google-genai 3.6.1 through the proxy: 40 of
/// 57 sessions serve admitted had no client any more).
#[tokio::test]
async fn a_held_live_session_answers_pings_and_is_never_opened_once_its_client_left() {
    let OneBehind {
        upstream,
        base,
        mut first,
        second: mut held,
        _stops,
    } = one_behind_another(&scenario(30), Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.send(Message::Ping(b"still there?".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match held.next().await {
                Some(Ok(Message::Pong(b))) => return b.to_vec(),
                Some(Ok(Message::Ping(_))) => continue,
                other => panic!("a held session answered {other:?}"),
            }
        }
    })
    .await
    .expect("a held session answers a ping");
    assert_eq!(pong, b"still there?");
    // Its client leaves, and is answered its close at once; then the slot frees.
    held.close(None).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(2), held.next()).await;
    assert!(
        matches!(answered, Ok(Some(Ok(Message::Close(_))) | None)),
        "the close was not answered: {answered:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.close(None).await.unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        model_answers(&upstream, LIVE_MODEL, 200).await,
        1,
        "the left session was opened upstream"
    );
    one_client_left(&base, "the left session was not counted").await;
}

/// A session whose strategy has it wait for a later moment (one session a minute) is dropped
/// as soon as its client leaves, not when its moment comes a minute later: it holds no plan
/// while it waits.
#[tokio::test]
async fn a_session_waiting_for_its_moment_is_dropped_when_its_client_leaves() {
    let OneBehind {
        upstream: _,
        base,
        first: _first,
        second: mut waiting,
        _stops,
    } = one_behind_another(
        &scenario(30).replace("concurrent = 1\n", "concurrent = 5\nrpm = 1\n"),
        Duration::from_secs(90),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiting.close(None).await.unwrap();
    drop(waiting);
    tokio::time::sleep(Duration::from_millis(500)).await;
    one_client_left(&base, "not dropped at once").await;
}

/// The proxy at `base` counted exactly one session whose client left before it opened.
async fn one_client_left(base: &str, why: &str) {
    let (_, events) = proxy_metrics(base).await;
    assert!(
        events.contains("flux_proxy_events_total{event=\"client_left\"} 1\n"),
        "{why}: {events}"
    );
}

/// What a held session's client sends before its session is open reaches the upstream once it
/// is: a turn sent while the proxy waits for the slot is answered after `setupComplete`.
#[tokio::test]
async fn a_turn_sent_while_the_session_is_held_is_answered_once_it_opens() {
    let OneBehind {
        upstream: _,
        base: _,
        mut first,
        second: mut held,
        _stops,
    } = one_behind_another(&scenario(30), Duration::from_secs(20)).await;
    let turn = json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hello early"}]}], "turnComplete": true}});
    held.send(Message::Text(turn.to_string().into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.close(None).await.unwrap();
    assert!(next(&mut held).await.unwrap().get("setupComplete").is_some());
    let answer = next(&mut held).await.unwrap();
    assert!(answer.get("serverContent").is_some(), "{answer}");
}

/// A held session's client may send a few frames early (relayed once its session is open);
/// one that floods the proxy while it waits is closed 1008 when its turn comes, and its
/// session is never opened.
#[tokio::test]
async fn a_held_live_session_that_floods_is_closed_unopened() {
    let OneBehind {
        upstream,
        base: _,
        mut first,
        second: mut held,
        _stops,
    } = one_behind_another(&scenario(30), Duration::from_secs(20)).await;
    for i in 0..17 {
        let turn = json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": format!("hello {i}")}]}], "turnComplete": true}});
        held.send(Message::Text(turn.to_string().into())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.close(None).await.unwrap();
    let (code, reason) = next(&mut held).await.expect_err("closed");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("before setupComplete"), "{reason}");
    assert_eq!(
        model_answers(&upstream, LIVE_MODEL, 200).await,
        1,
        "the flood was opened upstream"
    );
}

/// A Live session the upstream refuses closes 1011 naming nothing, and the proxy tells its
/// strategy so, as a simulated refusal reaches it: flux told no limits then tells the minute's
/// tokens from a session limit by what it sent. Before, the proxy named the session's slot,
/// and flux, never learning, sent a session every second for serve to refuse (google-genai
/// through the proxy: 1,652 refusals in 4 minutes on a `*-live` model limited by tokens).
/// Here serve admits one 4,000-token setup a minute; the proxy knows no limit on it.
#[tokio::test]
async fn a_nameless_upstream_1011_is_nameless_to_the_strategy() {
    let up = scenario(30).replace("concurrent = 1\n", "tpm = 4_000\n");
    let told = scenario(30).replace("concurrent = 1\n", "")
        + &format!(
            "\n[[strategies]]\nname = \"blind\"\nkind = \"flux\"\nknown_limits = {{ \"{LIVE_MODEL}\" = {{}} }}\n"
        );
    let (upstream, _stop) = serve(&up).await;
    let s = Scenario::parse(&told, Path::new("proxy.toml")).unwrap();
    let spec = s.strategies[0].clone();
    let (l, base) = listener().await;
    let opts = common::proxy_options(&upstream, TOKEN, Duration::from_secs(20), 16);
    tokio::spawn(proxy(l, s, spec, opts, std::future::pending()));
    // 16,000 characters: 4,000 tokens at serve's four characters a token.
    let system = "x".repeat(16_000);
    let open = || async {
        let mut req = format!("{}{PATH}", base.replacen("http://", "ws://", 1))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
        let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
        let setup = json!({"setup": {"model": format!("models/{LIVE_MODEL}"),
            "systemInstruction": {"parts": [{"text": system}]}}});
        ws.send(Message::Text(setup.to_string().into())).await.unwrap();
        ws
    };
    let mut first = open().await;
    assert!(next(&mut first).await.unwrap().get("setupComplete").is_some());
    let mut second = open().await;
    assert!(next(&mut second).await.unwrap().get("setupComplete").is_some());
    let (code, reason) = next(&mut second).await.expect_err("refused by serve");
    assert_eq!(code, 1011, "{reason}");
    // A third, while the first is open: a session limit of one explains the refusal as well
    // as the minute's tokens do, so flux waits rather than sending it into serve's refusal.
    let _third = open().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        model_answers(&upstream, LIVE_MODEL, 429).await,
        1,
        "serve refused sessions the strategy sent after the first refusal"
    );
}

/// [`scenario`] with an embedding model limited to `rpm` requests a minute.
fn with_embeddings(rpm: u64) -> String {
    scenario(30).replace(
        "[topology]",
        &format!("[models.\"gemini-embedding-001\"]\nrpm = {rpm}\ntpm = 1000000\nrpd = 100000\n[topology]"),
    )
}

/// Issue 28 item 7, "every route serve has": embedContent, batchEmbedContents and the OpenAI
/// embeddings go through the proxy (it answered 404 on them) and its shared ledger like
/// generateContent, each text one request as serve counts it (`embed_batch = "each"`, the
/// default). At 5 a minute: one text, a batch of 3 and one OpenAI input fill the window (5
/// entries in Redis); the next batch finds no room before its 2 s deadline and gets the proxy's
/// own 429; serve never answers 429.
#[tokio::test]
async fn embeddings_go_through_the_shared_ledger_one_request_per_text() {
    let Some(redis) = common::redis_server() else { return };
    let text = with_embeddings(5);
    let (upstream, _stop) = serve(&text).await;
    let (base, _p) = start_proxy(&text, &upstream, Some(&redis.url), Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    let native = |method: &str| format!("{base}/v1beta/models/gemini-embedding-001:{method}");
    let content = |t: &str| json!({"parts": [{"text": t}]});
    let window = |want| sends_in_window(&redis, "flux:{solo:gemini-embedding-001}:rpm", want);
    let one = json!({"content": content("hello there")});
    let r = client
        .post(native("embedContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["embedding"]["values"].is_array(), "{v}");
    assert_eq!(window("1").await, "1");
    let requests: Vec<Value> = ["a", "bb", "ccc"]
        .iter()
        .map(|t| json!({"model": "models/gemini-embedding-001", "content": content(t)}))
        .collect();
    let batch = json!({ "requests": requests });
    let r = client
        .post(native("batchEmbedContents"))
        .header("x-goog-api-key", TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(window("4").await, "4", "a batch of 3 counts 3");
    let r = client
        .post(format!("{base}/v1beta/openai/embeddings"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "gemini-embedding-001", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(window("5").await, "5");
    let r = client
        .post(native("batchEmbedContents"))
        .header("x-goog-api-key", TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the window is full: the proxy's own 429");
    assert_eq!(window("5").await, "5");
    assert_eq!(upstream_answers(&upstream, 429).await, 0, "serve refused an embedding");
}
