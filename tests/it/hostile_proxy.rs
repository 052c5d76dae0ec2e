//! Real `flux-sim proxy` processes against hostile clients and a hostile world (issue 29):
//! every refusal it makes itself (404, 405) is in Google's error envelope; under a low
//! `ulimit -n` silent connections must not lock new clients out; in front of a real
//! `flux-sim serve`, at default settings and without `--ledger`, no 60 s window there ever gets
//! more than a minute's requests or tokens, and `--margin` holds each window that much longer;
//! a frozen Redis (SIGSTOP) ends every request by its deadline and nothing is sent.
//!
//! `FLUX_PROXY_BIN=/path/to/flux-sim` runs the proxy of another build (serve stays this
//! build's): how docs/proxy.md's "Issue 29, case by case" ran these tests on the old code.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SCENARIO: &str = r#"
name = "hostile-proxy"
[models."gemini-2.5-flash"]
rpm = 10
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "AIzaSyHOSTILE-proxy-key-0001"
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 5 }
"#;
/// What the proxy's clients send as their key.
const TOKEN: &str = "proxy-client-token-0001";

/// A flux-sim process (proxy or serve) and its address; killed when dropped.
struct Proc {
    child: Child,
    addr: String,
    /// What it wrote to stderr after its banner.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// `http://ADDR`.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The binary whose proxy runs: `FLUX_PROXY_BIN`, or this build's.
fn proxy_bin() -> std::path::PathBuf {
    std::env::var_os("FLUX_PROXY_BIN")
        .map(Into::into)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("flux-sim"))
}

/// Runs `bin COMMAND FILE ARGS` with `text` in FILE, with at most `open_files` descriptors
/// (`ulimit -n`) when given, and the proxy token in the environment; waits for its banner and
/// takes the last address it names (a proxy's names its upstream first).
fn start(bin: &std::path::Path, command: &str, text: &str, args: &[&str], open_files: Option<u64>) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, text).unwrap();
    // `ulimit -n` in a shell that then becomes the process.
    let mut c = match open_files {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg(command)
        .arg(&file)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("FLUX_PROXY_TOKEN", TOKEN)
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches([';', ')', ','])
        .to_string();
    // Read the rest, so that a full pipe never blocks it.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in err.lines() {
            let Ok(l) = l else { return };
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    Proc {
        child,
        addr,
        log,
        _dir: dir,
    }
}

/// A proxy for [`SCENARIO`] in front of an upstream that is never reached, with at most
/// `open_files` descriptors (`ulimit -n`) when given.
fn proxy(open_files: Option<u64>) -> Proc {
    start(
        &proxy_bin(),
        "proxy",
        SCENARIO,
        &["--upstream", "http://127.0.0.1:9"],
        open_files,
    )
}

/// Sends `request` over a new connection and reads the answer until the proxy closes it (or
/// `wait` passes): the status and the body.
fn exchange(addr: &str, request: &str, wait: Duration) -> (u16, String) {
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(wait)).unwrap();
    t.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// Issue 29 item 9: the proxy's 405s had no envelope (an empty body); every refusal it makes
/// itself now is Google's JSON envelope with the answer's status as its code.
#[test]
fn every_refusal_of_the_proxy_is_in_googles_envelope() {
    let p = proxy(None);
    for (method, target, want) in [
        ("PUT", "/v1beta/models/gemini-2.5-flash", 405),
        ("DELETE", "/v1beta/models", 405),
        ("PATCH", "/v1beta/models/gemini-2.5-flash:generateContent", 405),
        ("POST", "/v1beta/models", 405),
        ("GET", "/v1beta/files", 404),
        (
            "POST",
            "/v1beta%2Fmodels%2Fgemini-2.5-flash%3AgenerateContent%23/models/x:countTokens",
            404,
        ),
        ("GET", "/v1beta/models/x?upload=1", 400),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        let (status, body) = exchange(&p.addr, &request, Duration::from_secs(10));
        assert_eq!(status, want, "{method} {target}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {target}: {e}: {body:?}"));
        assert_eq!(v["error"]["code"].as_u64(), Some(want as u64), "{method} {target}: {v}");
        assert!(
            v["error"]["message"].is_string() && v["error"]["status"].is_string(),
            "{method} {target}: {v}"
        );
    }
}

/// Issue 29 item 4: under a low `ulimit -n` (160 here), idle connections (never sending a
/// byte) used up the proxy's descriptors and locked every new client out for as long as they
/// stayed. Now the proxy serves at most (160 − 64) / 2 = 48 connections at once, the rest wait
/// in the listen queue (128), and each idle one is closed when no byte came within 10 s: a new
/// client behind 165 idle ones is accepted in the fourth round, about 30 s later.
#[test]
fn idle_connections_do_not_lock_new_clients_out_under_a_low_ulimit() {
    let p = proxy(Some(160));
    let idle: Vec<TcpStream> = (0..165).map(|_| TcpStream::connect(&p.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (status, body) = exchange(
        &p.addr,
        "GET /flux/metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    assert_eq!(status, 200, "after {took:?}: {body:?}");
    let bound = flux_sim::net::http::READ_TIMEOUT * 4 + Duration::from_secs(5);
    assert!(took < bound, "a new client waited {took:?} behind 165 idle connections");
    drop(idle);
}

/// One project of 12 RPM and 2,000 TPM, one key, answering within milliseconds: serve's and
/// the proxy's configuration alike.
const EDGE: &str = r#"
name = "hostile-window-edge"
[server.latency]
ttft = "1ms"
tokens_per_second = 1000000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 12
tpm = 2000
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "AIzaSyHOSTILE-proxy-key-0001"
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 5 }
"#;

/// A real serve for `text` (this build's) and a proxy for the same file before it, with `args`
/// (and `--ledger URL` when given).
fn serve_and_proxy(text: &str, args: &[&str]) -> (Proc, Proc) {
    let up = start(&assert_cmd::cargo::cargo_bin("flux-sim"), "serve", text, &[], None);
    let url = up.url();
    let mut all = vec!["--upstream", url.as_str()];
    all.extend_from_slice(args);
    let proxy = start(&proxy_bin(), "proxy", text, &all, None);
    (up, proxy)
}

/// A generateContent body whose prompt is `tokens` tokens (4 characters a token, serve's and
/// the proxy's rule) with `padding` bytes of JSON whitespace, which cost no token but take
/// time to upload and parse.
fn prompt(tokens: usize, padding: usize) -> String {
    format!(
        r#"{{"contents": [{{"role": "user", "parts": [{{"text": "{}"}}]}}],{}"generationConfig": {{"maxOutputTokens": 5}}}}"#,
        "w".repeat(tokens * 4),
        " ".repeat(padding)
    )
}

/// Posts `body` to the proxy's generateContent: the status, the body, and when the answer
/// had come whole.
async fn generate(client: &reqwest::Client, proxy: &str, body: String) -> (u16, String, Instant) {
    let r = client
        .post(format!("{proxy}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer from the proxy: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, text, Instant::now())
}

/// How many generateContent calls serve answered with HTTP `code`, over all budgets (its
/// `/flux/metrics`).
async fn served(client: &reqwest::Client, serve: &str, code: u16) -> u64 {
    let text = crate::common::text_of(client, &format!("{serve}/flux/metrics")).await;
    let tag = format!("code=\"{code}\"}}");
    text.lines()
        .filter(|l| l.starts_with("flux_responses_total") && l.contains(&tag))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Issue 29 item 2, TPM end to end: one proxy at its default settings (flux, no `--margin`,
/// no `--ledger`; only a longer deadline) before a real serve of a 12-RPM, 2,000-TPM project. serve admits by the
/// arrival instant of each call over exactly 60 s, so a quota 429 from it means a window
/// there held more than 12 requests or 2,000 tokens; the test needs none. A minute's tokens
/// come in 5 calls of 400 tokens padded to 3 MiB (each reaches serve's check milliseconds
/// after the proxy decided to send it: the upload and the parse), then 5 small ones of 400
/// tokens (which reach it at once). The old proxy sent the small ones exactly 60 s after
/// it had decided on the large ones: into the window at serve that still held them, 4,000
/// tokens.
#[tokio::test]
async fn at_default_settings_no_window_at_serve_gets_more_than_a_minutes_tokens() {
    // A long deadline, so that on a loaded machine the next minute's calls wait for room
    // rather than get the proxy's own 429.
    let (up, proxy) = serve_and_proxy(EDGE, &["--deadline", "150s"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(200))
        .build()
        .unwrap();
    let t = Instant::now();
    let calls = |body: String| {
        let (client, url) = (client.clone(), proxy.url());
        (0..5)
            .map(|_| {
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move { generate(&client, &url, body).await })
            })
            .collect::<Vec<_>>()
    };
    let mut answers = Vec::new();
    for c in calls(prompt(400, 3 << 20)) {
        answers.push(c.await.unwrap());
    }
    for c in calls(prompt(400, 0)) {
        answers.push(c.await.unwrap());
    }
    let log = proxy.log.lock().unwrap().clone();
    let when: Vec<String> = answers
        .iter()
        .map(|(status, _, at)| format!("{status} at {:.3}s", at.duration_since(t).as_secs_f64()))
        .collect();
    for (i, (status, body, _)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "call {i}: {body}\nanswers: {when:?}\nproxy: {log}");
    }
    eprintln!("answers: {when:?}");
    let refused = served(&client, &up.url(), 429).await;
    assert_eq!(
        refused, 0,
        "serve answered {refused} quota 429s: a 60 s window there got more than 2,000 tokens (or 12 requests); answers: {when:?}"
    );
    assert_eq!(served(&client, &up.url(), 200).await, 10);
}

/// Issue 29 item 2, `--margin` without `--ledger`: it was ignored (it only widened the shared
/// ledger's windows). With `--margin 5s` on a 1-RPM project, the second call reaches serve at
/// least 65 s after the proxy decided on the first, so at least 64.5 s after the first
/// reached serve (0.5 s for that first call's way to serve and the answers' way back). The
/// old proxy sent it 60 s after; so does the gate alone.
#[tokio::test]
async fn margin_without_a_ledger_holds_each_window_that_much_longer() {
    let text = EDGE.replace("rpm = 12", "rpm = 1");
    let (up, proxy) = serve_and_proxy(&text, &["--margin", "5s", "--deadline", "90s"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(150))
        .build()
        .unwrap();
    let (s1, b1, t1) = generate(&client, &proxy.url(), prompt(10, 0)).await;
    assert_eq!(s1, 200, "{b1}");
    let (s2, b2, t2) = generate(&client, &proxy.url(), prompt(10, 0)).await;
    assert_eq!(s2, 200, "{b2}");
    let gap = t2.duration_since(t1);
    eprintln!("the second call reached serve {gap:?} after the first");
    assert!(
        gap >= Duration::from_millis(64_500),
        "the second call reached serve {gap:?} after the first on a 1-RPM project with --margin 5s"
    );
    assert_eq!(served(&client, &up.url(), 429).await, 0);
}

/// Issue 29 item 5, a frozen Redis: with `--deadline 5s` and its `--ledger`'s redis-server
/// stopped (SIGSTOP), every request ends by its deadline (plus 1 s for a loaded machine) with
/// 503 UNAVAILABLE naming the ledger and not its password, and nothing reaches the upstream:
/// not while Redis is frozen, nor when it thaws and answers what it was asked (a late "yes"
/// must not send a request whose client has had its 503). It then serves again.
#[tokio::test]
async fn a_frozen_redis_ends_every_request_by_its_deadline_and_sends_nothing() {
    const PASSWORD: &str = "frozen-s3cret-pass";
    let Some(redis) = crate::common::redis_server_with(&["--requirepass", PASSWORD]) else {
        return;
    };
    let ledger = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port());
    let (up, proxy) = serve_and_proxy(EDGE, &["--ledger", &ledger, "--deadline", "5s"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (status, body, _) = generate(&client, &proxy.url(), prompt(10, 0)).await;
    assert_eq!(status, 200, "{body}");
    // That admission also reserved a slot for the budget (pre-admission, issue 28): a send on
    // it, admitted by the ledger before the freeze, may go within its life. Past its life and
    // the sweep that gives it back, every send needs the ledger again.
    tokio::time::sleep(
        flux_sim::net::shared_ledger::PREFETCH_LIFE
            + flux_sim::net::shared_ledger::RELEASED_WITHIN
            + Duration::from_millis(200),
    )
    .await;
    let signal = |s: &str| {
        assert!(Command::new("kill")
            .args([s, &redis.pid().to_string()])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    struct Thaw<'a>(&'a dyn Fn(&str));
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            (self.0)("-CONT");
        }
    }
    let thaw = Thaw(&signal);
    let t = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (client, url) = (client.clone(), proxy.url());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{url}/v1beta/models/gemini-2.5-flash:generateContent"))
                    .header("x-goog-api-key", TOKEN)
                    .header("content-type", "application/json")
                    .body(prompt(10, 0))
                    .send()
                    .await;
                let took = t.elapsed();
                match r {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default(), took),
                    Err(e) => (0, format!("no answer: {e}"), took),
                }
            })
        })
        .collect();
    for task in tasks {
        let (status, body, took) = task.await.unwrap();
        eprintln!("{status} after {took:?}");
        assert!(
            took <= Duration::from_secs(6),
            "answered {took:?} after Redis froze, with --deadline 5s: {status} {body}"
        );
        assert_eq!(status, 503, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["error"]["status"], "UNAVAILABLE", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("ledger"), "{message}");
        assert!(!body.contains(PASSWORD), "{body}");
    }
    assert_eq!(served(&client, &up.url(), 200).await, 1, "sent while Redis was frozen");
    drop(thaw);
    // Redis answers what it was asked; nothing of it may be sent now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        served(&client, &up.url(), 200).await,
        1,
        "sent after its 503, when Redis thawed"
    );
    let back = Instant::now();
    let mut status = 0;
    while back.elapsed() < Duration::from_secs(10) && status != 200 {
        status = generate(&client, &proxy.url(), prompt(10, 0)).await.0;
    }
    assert_eq!(status, 200, "not serving again 10 s after Redis thawed");
    assert!(!proxy.log.lock().unwrap().contains(PASSWORD));
}
