//! SIGTERM against half-open clients, on real `serve` and `proxy` processes over raw TCP: a
//! client holding half its headers, half its body, a half-closed socket, an idle Live session
//! or a request the proxy is holding for a key never keeps the process running past its
//! shutdown deadline.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flux_sim::net::http::SHUTDOWN_DEADLINE;

const SCENARIO: &str = r#"
name = "shutdown"
[server.latency]
ttft = "1ms"
tokens_per_second = 100000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 1
[models."gemini-2.0-flash-live-001"]
live = true
concurrent = 10
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "AIzaSyHOSTILE-test-key-0001"
[workload]
kind = "closed"
requests = 1
workers = 1
model = "gemini-2.5-flash"
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 5 }
"#;
const KEY: &str = "AIzaSyHOSTILE-test-key-0001";
/// What the proxy's clients send as their key.
const TOKEN: &str = "proxy-client-token-0001";
const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

/// A child process and the address its banner names; killed when dropped.
struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Proc {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flux-sim"))
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .env("FLUX_PROXY_TOKEN", TOKEN)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The last address named (the proxy names its upstream first).
    let addr = line
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches([';', ')'])
        .to_string();
    Proc { child, addr }
}

/// A raw TCP client that sent `bytes` and keeps its socket open.
fn half_open(addr: &str, bytes: &str, close_write: bool) -> TcpStream {
    let mut t = TcpStream::connect(addr).unwrap();
    t.write_all(bytes.as_bytes()).unwrap();
    if close_write {
        t.shutdown(std::net::Shutdown::Write).unwrap();
    }
    t
}

/// The hostile clients every server gets.
fn clients(addr: &str, key: &str) -> Vec<TcpStream> {
    vec![
        half_open(addr, "POST /v1beta/models HTTP/1.1\r\nhost: x\r\n", false),
        half_open(
            addr,
            &format!(
                "POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {key}\r\ncontent-length: 100\r\n\r\n{{\"con"
            ),
            false,
        ),
        half_open(
            addr,
            &format!(
                "POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {key}\r\ncontent-length: 100\r\n\r\n{{\"con"
            ),
            true,
        ),
    ]
}

/// Sends SIGTERM and returns how long the process took to exit (at most 30 s), and its status.
fn terminate(p: &mut Proc) -> (Duration, Option<i32>) {
    let t = Instant::now();
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(status) = p.child.try_wait().unwrap() {
            return (t.elapsed(), status.code());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (t.elapsed(), None)
}

fn scenario_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("shutdown.toml");
    std::fs::write(&path, SCENARIO).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn half_open_clients_do_not_hold_up_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(&dir);
    let mut serve = start(&["serve", &file]);
    let mut held = clients(&serve.addr, KEY);
    // An idle Live session after its upgrade.
    let mut ws = half_open(
        &serve.addr,
        "GET /ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nx-goog-api-key: AIzaSyHOSTILE-test-key-0001\r\n\r\n",
        false,
    );
    let mut head = [0u8; 12];
    ws.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    held.push(ws);

    // A proxy in front of it, holding a request for a key with room (1 RPM: the second waits
    // up to its 60 s deadline) on top of the same half-open clients.
    let upstream = format!("http://{}", serve.addr);
    let mut proxy = start(&["proxy", &file, "--upstream", &upstream, "--strategy", "exact_cooldown"]);
    let body = r#"{"contents": [{"parts": [{"text": "hi"}]}]}"#;
    let request = format!(
        "POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {TOKEN}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut first = half_open(&proxy.addr, &request, false);
    let mut status = [0u8; 12];
    first.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200", "the first request goes through");
    held.push(first);
    held.push(half_open(&proxy.addr, &request, false));
    held.extend(clients(&proxy.addr, TOKEN));
    std::thread::sleep(Duration::from_millis(300));

    for (name, p) in [("proxy", &mut proxy), ("serve", &mut serve)] {
        let (took, code) = terminate(p);
        assert!(code.is_some(), "{name} still running {took:?} after SIGTERM");
        assert!(
            took <= SHUTDOWN_DEADLINE + Duration::from_secs(3),
            "{name} took {took:?} to stop"
        );
    }
    drop(held);
}
