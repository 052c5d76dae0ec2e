//! A real `flux-sim proxy` process against hostile clients over raw TCP (issue 29): every
//! refusal it makes itself (404, 405) is in Google's error envelope; and under
//! a low `ulimit -n` silent connections must not lock new clients out.

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

/// A proxy process and its address; killed when dropped.
struct Proc {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy for [`SCENARIO`] in front of an upstream that is never reached, with at most
/// `open_files` descriptors (`ulimit -n`) when given.
fn proxy(open_files: Option<u64>) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("flux-sim");
    // `ulimit -n` in a shell that then becomes the proxy.
    let mut c = match open_files {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                .arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    c.arg("proxy")
        .arg(&file)
        .args(["--bind", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"])
        .env("FLUX_PROXY_TOKEN", TOKEN)
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The last address named (the banner names its upstream first).
    let addr = line
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches([';', ')'])
        .to_string();
    Proc { child, addr, _dir: dir }
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
