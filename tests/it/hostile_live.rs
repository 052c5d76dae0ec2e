//! serve's Live API against hostile clients over raw sockets: a frame that breaks the
//! WebSocket protocol (unmasked, reserved bits or opcodes, fragmented control frames, too
//! large, bad UTF-8) gets a close frame naming what was wrong, and Live frames in flight are
//! capped as request bodies are (64 past their first 64 KiB), each within the read timeout.

use std::path::Path;
use std::time::{Duration, Instant};

use flux_sim::net::http::{FREE_FRAME, MAX_FRAMES};
use flux_sim::scenario::Scenario;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const MODEL: &str = "gemini-2.0-flash-live-001";

struct Served {
    addr: std::net::SocketAddr,
    key: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Served {
    let text = format!(
        r#"
name = "hostile-live"
[models."{MODEL}"]
live = true
concurrent = 500
[topology]
projects = 1
[workload]
kind = "sessions"
clients = 1
sessions = 1
model = "{MODEL}"
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 10 }}
"#
    );
    let s = Scenario::parse(&text, Path::new("hostile-live.toml")).unwrap();
    let key = s.topology.keys[0].value.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flux_sim::net::serve::serve(listener, s, 1, async move {
        let _ = rx.await;
    }));
    Served { addr, key, _stop: tx }
}

/// A WebSocket opened by hand, so that frames no client library sends can be sent.
async fn upgrade(s: &Served) -> TcpStream {
    let mut t = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "GET {PATH} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\nx-goog-api-key: {}\r\n\r\n",
        s.key
    );
    t.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(t.read(&mut b).await.unwrap(), 1, "{}", String::from_utf8_lossy(&got));
        got.push(b[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    t
}

/// A client frame: `first` is FIN, RSV and opcode; masked with a zero key; `len` is the length
/// the header announces (the payload sent may be shorter).
fn frame(first: u8, payload: &[u8], len: usize) -> Vec<u8> {
    let mut f = vec![first];
    match len {
        0..=125 => f.push(0x80 | len as u8),
        126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(0x81, payload, payload.len())
}

/// The next server frame within `wait`: (opcode, payload); `None` when the connection ended or
/// nothing came.
async fn next_frame(t: &mut TcpStream, wait: Duration) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(wait, async {
        let mut h = [0u8; 2];
        t.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7f {
            126 => t.read_u16().await.ok()? as usize,
            127 => t.read_u64().await.ok()? as usize,
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        t.read_exact(&mut p).await.ok()?;
        Some((h[0] & 0x0f, p))
    })
    .await
    .ok()
    .flatten()
}

/// The close frame the server sends next: (code, reason).
async fn close_of(t: &mut TcpStream) -> (u16, String) {
    loop {
        match next_frame(t, Duration::from_secs(15)).await {
            Some((8, p)) => {
                assert!(p.len() >= 2, "a close frame without a code");
                return (
                    u16::from_be_bytes([p[0], p[1]]),
                    String::from_utf8_lossy(&p[2..]).into_owned(),
                );
            }
            Some(_) => continue,
            None => panic!("the connection ended without a close frame"),
        }
    }
}

fn setup(system: &str) -> Vec<u8> {
    text(
        json!({"setup": {"model": format!("models/{MODEL}"), "systemInstruction": system}})
            .to_string()
            .as_bytes(),
    )
}

#[tokio::test]
async fn frames_that_break_the_protocol_get_a_close_frame() {
    let s = serve().await;
    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002, "unmasked"),
        ("reserved bits", frame(0xc1, b"{}", 2), 1002, "Reserved bits"),
        ("reserved opcode", frame(0x83, b"x", 1), 1002, "opcode"),
        ("fragmented ping", frame(0x09, b"", 0), 1002, "ragmented"),
        ("continuation first", frame(0x80, b"x", 1), 1002, "ontinue"),
        ("5 MiB frame", frame(0x81, b"", 5 * 1024 * 1024), 1009, "too long"),
        ("bad UTF-8 text", text(&[0xff, 0xfe]), 1007, "UTF-8"),
    ];
    for (what, bytes, want, words) in cases {
        let mut t = upgrade(&s).await;
        t.write_all(&bytes).await.unwrap();
        let (code, reason) = close_of(&mut t).await;
        assert_eq!(code, want, "{what}: {reason}");
        assert!(
            reason.to_lowercase().contains(&words.to_lowercase()) && reason.len() <= 123,
            "{what}: {reason}"
        );
    }
    // In a session too.
    let mut t = upgrade(&s).await;
    t.write_all(&setup("")).await.unwrap();
    let (_, p) = next_frame(&mut t, Duration::from_secs(10)).await.unwrap();
    assert!(String::from_utf8_lossy(&p).contains("setupComplete"));
    t.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(close_of(&mut t).await.0, 1002);
}

#[tokio::test]
async fn live_frames_in_flight_are_capped_like_bodies() {
    let s = serve().await;
    // 64 clients each hold a partial frame (100 KiB of an announced 1 MiB): all the slots.
    let mut holders = Vec::new();
    for _ in 0..MAX_FRAMES {
        let mut t = upgrade(&s).await;
        t.write_all(&frame(0x81, &vec![b' '; 100 * 1024], 1024 * 1024))
            .await
            .unwrap();
        holders.push(t);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A small setup is answered at once: frames under 64 KiB need no slot.
    let mut small = upgrade(&s).await;
    small.write_all(&setup("short")).await.unwrap();
    let (_, p) = next_frame(&mut small, Duration::from_secs(5))
        .await
        .expect("a small setup is answered");
    assert!(String::from_utf8_lossy(&p).contains("setupComplete"));
    // A large one waits for a slot (before: read at once, +4 MiB per client with no bound).
    let mut large = upgrade(&s).await;
    large.write_all(&setup(&"a".repeat(2 * FREE_FRAME))).await.unwrap();
    assert!(
        next_frame(&mut large, Duration::from_millis(1500)).await.is_none(),
        "a 65th large frame was read while 64 were in flight"
    );
    // One holder leaves: its slot goes to the large setup.
    let t = Instant::now();
    drop(holders.pop());
    let (_, p) = next_frame(&mut large, Duration::from_secs(5))
        .await
        .expect("answered once a slot is free");
    assert!(String::from_utf8_lossy(&p).contains("setupComplete"));
    assert!(t.elapsed() < Duration::from_secs(5));
    // A frame holding a slot must arrive within the read timeout: then 1008.
    let (code, reason) = close_of(&mut holders[0]).await;
    assert_eq!(code, 1008, "{reason}");
}
