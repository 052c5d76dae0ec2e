//! `serve` against hostile and careless clients, over real sockets: a stranger's body is never
//! read, slow or half-sent requests are cut off, shutdown cannot be held up, every malformed
//! request gets Google's 400 naming the field, and every error is in Google's envelope.

use std::path::Path;
use std::time::{Duration, Instant};

use flux_sim::net::serve::{READ_TIMEOUT, SHUTDOWN_DEADLINE};
use flux_sim::scenario::Scenario;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SCENARIO: &str = r#"
name = "hostile"
[server.latency]
ttft = "1ms"
tokens_per_second = 100000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 1000
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "AIzaSyHOSTILE-test-key-0001"
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 5 }
"#;
const KEY: &str = "AIzaSyHOSTILE-test-key-0001";

struct Live {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Live {
    let s = Scenario::parse(SCENARIO, Path::new("hostile.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(flux_sim::net::serve::serve(listener, s, 1, async move {
        let _ = rx.await;
    }));
    Live {
        addr,
        stop: Some(tx),
        done,
    }
}

/// Sends raw bytes and reads the response until the server closes or `wait` passes.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // One complete response is enough.
                let text = String::from_utf8_lossy(&out);
                if let Some(h) = text.find("\r\n\r\n") {
                    let len = text[..h].lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_some_and(|n| out.len() >= h + 4 + n) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and JSON body of a raw HTTP response.
fn parsed(resp: &str) -> (u16, Value) {
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn post(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    parsed(&raw(addr, req.as_bytes(), Duration::from_secs(5)).await)
}

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

#[tokio::test]
async fn a_strangers_body_is_never_read() {
    let live = start().await;
    // Headers announcing 4 MiB - 1 bytes, no key, no body sent: answered at once with 403.
    let head = format!(
        "POST {GENERATE} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        4 * 1024 * 1024 - 1
    );
    let t = Instant::now();
    let (status, body) = parsed(&raw(live.addr, head.as_bytes(), Duration::from_secs(3)).await);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "answered without waiting for the body"
    );
    // An unknown path or method is refused before any body too.
    let head = "POST /v1beta/models/nope:generateContent HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\nx-goog-api-key: AIzaSyHOSTILE-test-key-0001\r\n\r\n";
    let (status, _) = parsed(&raw(live.addr, head.as_bytes(), Duration::from_secs(3)).await);
    assert_eq!(status, 404);
}

#[tokio::test]
async fn slow_and_half_sent_requests_are_cut_off() {
    let live = start().await;
    // Half the headers, then silence: the connection is closed after the read timeout.
    let t = Instant::now();
    let out = raw(
        live.addr,
        b"POST /v1beta/models HTTP/1.1\r\nhost: x\r\n",
        READ_TIMEOUT * 3,
    )
    .await;
    let took = t.elapsed();
    assert!(took < READ_TIMEOUT * 2, "closed after {took:?} ({out:?})");
    // A body that never arrives: 408 after the read timeout, in Google's envelope.
    let head =
        format!("POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {KEY}\r\ncontent-length: 100\r\n\r\n{{\"con");
    let (status, body) = parsed(&raw(live.addr, head.as_bytes(), READ_TIMEOUT * 3).await);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["status"], "DEADLINE_EXCEEDED");
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_half_sent_request() {
    let mut live = start().await;
    let mut s = TcpStream::connect(live.addr).await.unwrap();
    s.write_all(
        format!("POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {KEY}\r\ncontent-length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    live.stop.take().unwrap().send(()).unwrap();
    let r = tokio::time::timeout(SHUTDOWN_DEADLINE + Duration::from_secs(3), &mut live.done).await;
    assert!(r.is_ok(), "serve did not stop within its deadline");
    assert!(
        t.elapsed() <= SHUTDOWN_DEADLINE + Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    drop(s);
}

#[tokio::test]
async fn malformed_requests_get_googles_400_naming_the_field() {
    let live = start().await;
    let key = [("x-goog-api-key", KEY)];
    let cases: [(Value, &str); 8] = [
        (json!({"contents": []}), "contents is not specified"),
        (json!({}), "contents is not specified"),
        (json!({"contents": {"parts": []}}), "'contents'"),
        (json!({"contents": [{"parts": "hi"}]}), "'contents[0].parts'"),
        (
            json!({"contents": [{"parts": [{"text": 5}]}]}),
            "'contents[0].parts[0].text'",
        ),
        (
            json!({"contents": [{"parts": []}]}),
            "contents[0].parts: contents.parts must not be empty",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": 3}),
            "'generation_config'",
        ),
        (json!([1, 2]), "Invalid value at ''"),
    ];
    for (body, field) in cases {
        let (status, resp) = post(live.addr, GENERATE, &key, &body.to_string()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert_eq!(resp["error"]["status"], "INVALID_ARGUMENT", "{body}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{body}: {msg}");
    }
    // countTokens validates the same way.
    let (status, _) = post(
        live.addr,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &key,
        "{\"contents\": []}",
    )
    .await;
    assert_eq!(status, 400);
    // Two key headers: refused, naming the header.
    let ok = json!({"contents": [{"parts": [{"text": "x"}]}]}).to_string();
    let (status, resp) = post(
        live.addr,
        GENERATE,
        &[("x-goog-api-key", KEY), ("x-goog-api-key", KEY)],
        &ok,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        resp["error"]["message"].as_str().unwrap().contains("x-goog-api-key"),
        "{resp}"
    );
    // A key header with bytes that are not text is an invalid key, not a missing one.
    let req = format!(
        "POST {GENERATE} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\nx-goog-api-key: caf\u{e9}-key-12345\r\n\r\n{ok}",
        ok.len()
    );
    let (status, resp) = parsed(&raw(live.addr, req.as_bytes(), Duration::from_secs(5)).await);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["details"][0]["reason"], "API_KEY_INVALID");
    // And the well-formed request is served.
    assert_eq!(post(live.addr, GENERATE, &key, &ok).await.0, 200);
}

#[tokio::test]
async fn every_error_is_in_googles_envelope() {
    let live = start().await;
    let cases: [(&str, u16); 4] = [
        (
            "DELETE /v1beta/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            405,
        ),
        (
            "GET /v1beta/models/%FF%FE HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            400,
        ),
        (
            "GET /v1beta/models?key=%ZZ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            400,
        ),
        ("GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 404),
    ];
    for (req, code) in cases {
        let resp = raw(live.addr, req.as_bytes(), Duration::from_secs(5)).await;
        let (status, body) = parsed(&resp);
        assert_eq!(status, code, "{req:?} -> {resp}");
        assert_eq!(body["error"]["code"], code, "{req:?} -> {resp}");
        assert!(
            body["error"]["status"].is_string() && body["error"]["message"].is_string(),
            "{resp}"
        );
        assert!(
            resp.to_ascii_lowercase().contains("content-type: application/json"),
            "{resp}"
        );
    }
}

/// A generateContent body whose prompt shows a JSON template of `fields` string fields (as
/// gemini-flux's policy request does, at scale: 40,000 fields is a 1.5 MB body).
fn template_body(fields: usize) -> String {
    let template: Vec<String> = (0..fields)
        .map(|i| format!("\"field_number_{i:05}\": \"<string>\""))
        .collect();
    let prompt = format!("Answer in JSON exactly like this template: {{{}}}", template.join(", "));
    json!({"contents": [{"parts": [{"text": prompt}]}]}).to_string()
}

#[tokio::test]
async fn two_large_json_templates_do_not_stall_a_small_request() {
    // Before: each took 8.7-19 s of CPU on an async thread, and a small request sent during two
    // of them waited 65 s. Now the work is linear and off the async threads.
    let live = start().await;
    let url = format!("http://{}{GENERATE}", live.addr);
    let http = reqwest::Client::new();
    let big = template_body(40_000);
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, big) = (http.clone(), url.clone(), big.clone());
            tokio::spawn(async move {
                let r = http
                    .post(&url)
                    .header("x-goog-api-key", KEY)
                    .body(big)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let small = json!({"contents": [{"parts": [{"text": "hi"}]}]}).to_string();
    let r = http
        .post(&url)
        .header("x-goog-api-key", KEY)
        .body(small)
        .send()
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    assert!(took < Duration::from_secs(5), "the small request waited {took:?}");
    for h in heavy {
        let (status, body) = h.await.unwrap();
        assert_eq!(
            status,
            200,
            "{}",
            body.to_string().chars().take(300).collect::<String>()
        );
        let text = body["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
        let answer: Value = serde_json::from_str(text).unwrap();
        assert_eq!(answer.as_object().unwrap().len(), 40_000);
    }
}

#[tokio::test]
async fn a_schema_asking_for_gigabytes_is_refused() {
    let live = start().await;
    let key = [("x-goog-api-key", KEY)];
    // 10,000 × 10,000 strings: before, serve set out to build them (gigabytes) before answering.
    let schema = json!({"type": "array", "minItems": 10000, "items":
        {"type": "array", "minItems": 10000, "items": {"type": "string"}}});
    let body = json!({"contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema}});
    let (status, resp) = post(live.addr, GENERATE, &key, &body.to_string()).await;
    assert_eq!(status, 400, "{resp}");
    let msg = resp["error"]["message"].as_str().unwrap();
    assert!(msg.contains("more than 16777216 characters"), "{msg}");
}
