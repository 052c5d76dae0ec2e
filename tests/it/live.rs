//! serve's Live API over real sockets (tokio-tungstenite as the client, plain and TLS): a turn
//! brings audio, transcription, generationComplete and turnComplete; the 4th concurrent
//! session of a 3-session project is closed 1011 after setupComplete; a closed session's slot
//! comes back after the release delay, at the time scale; goAway then 1008 at the lifetime; a
//! client walking away mid-turn holds its slot, or not, as the scenario says; malformed frames
//! are closed with a reason and nothing panics.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_sim::scenario::Scenario;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const MODEL: &str = "gemini-2.0-flash-live-001";

/// A 3-session project; turns of 320 output tokens: generated in 0.2 s, played in 10 s.
fn scenario(live: &str, concurrent: u64) -> String {
    format!(
        r#"
name = "live-test"
seed = 3
[server.live]
{live}
[models."{MODEL}"]
live = true
concurrent = {concurrent}
latency = {{ ttft = "100ms", tokens_per_second = 3200, jitter = 0.0 }}
[models."gemini-2.5-flash"]
rpm = 10
[topology]
projects = 1
[workload]
kind = "sessions"
clients = 1
sessions = 1
model = "{MODEL}"
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 320 }}
"#
    )
}

struct Served {
    addr: std::net::SocketAddr,
    key: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(text: &str, scale: u64, tls: Option<Arc<rustls::ServerConfig>>) -> Served {
    let s = Scenario::parse(text, Path::new("live-test.toml")).unwrap();
    let key = s.topology.keys[0].value.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flux_sim::net::serve::serve_tls(listener, s, scale, tls, async move {
        let _ = rx.await;
    }));
    Served { addr, key, _stop: tx }
}

async fn connect(s: &Served) -> Ws {
    let mut req = format!("ws://{}{PATH}", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("x-goog-api-key", s.key.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

fn setup(audio: bool) -> Value {
    let modality = if audio { "AUDIO" } else { "TEXT" };
    json!({"setup": {"model": format!("models/{MODEL}"), "generationConfig": {"responseModalities": [modality]}, "outputAudioTranscription": {}}})
}

fn turn() -> Value {
    json!({"client_content": {"turns": [{"role": "user", "parts": [{"text": "Hi, give me 100+ words about Elon Musk"}]}], "turn_complete": true}})
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

/// Opens a session up to its setupComplete.
async fn open(s: &Served) -> Ws {
    let mut ws = connect(s).await;
    send(&mut ws, setup(true)).await;
    assert!(next(&mut ws).await.unwrap().get("setupComplete").is_some());
    ws
}

/// Reads a turn's frames until turnComplete (or `stop_at` in serverContent): what came.
async fn read_turn(ws: &mut Ws, stop_at: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = next(ws).await.unwrap();
        let stop = m["serverContent"].get(stop_at).is_some();
        got.push(m);
        if stop {
            return got;
        }
    }
}

#[tokio::test]
async fn a_turn_brings_audio_transcription_generation_and_turn_complete() {
    let s = serve(&scenario("", 3), 10, None).await;
    let mut ws = open(&s).await;
    send(&mut ws, turn()).await;
    let t0 = Instant::now();
    let got = read_turn(&mut ws, "turnComplete").await;
    let took = t0.elapsed();
    let audio: usize = got
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["inlineData"].as_object())
        .inspect(|d| assert_eq!(d["mimeType"], "audio/pcm;rate=24000"))
        .map(|d| d["data"].as_str().unwrap().len() / 4 * 3)
        .sum();
    // 320 tokens at 32 a second: 10 s of 24 kHz 16-bit audio.
    assert!((470_000..=480_000).contains(&audio), "{audio} bytes");
    let words: usize = got
        .iter()
        .filter_map(|m| m["serverContent"]["outputTranscription"]["text"].as_str())
        .map(|t| t.split_whitespace().count())
        .sum();
    assert!(words > 100, "{words} words transcribed");
    let gen = got
        .iter()
        .position(|m| m["serverContent"]["generationComplete"] == true)
        .unwrap();
    let done = got.len() - 1;
    assert!(gen < done, "generationComplete comes before turnComplete");
    assert_eq!(got[done]["usageMetadata"]["responseTokenCount"], 320);
    // turnComplete when the audio has played: 0.1 + 10 s of quota time at ×10 = 1.01 s.
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_millis(1_800),
        "{took:?}"
    );
    // Text answers: parts of text, turnComplete with the generation.
    let mut ws = connect(&s).await;
    send(&mut ws, setup(false)).await;
    next(&mut ws).await.unwrap();
    send(&mut ws, turn()).await;
    let got = read_turn(&mut ws, "turnComplete").await;
    assert!(got[0]["serverContent"]["modelTurn"]["parts"][0]["text"].is_string());
}

#[tokio::test]
async fn the_fourth_concurrent_session_of_a_three_session_project_closes_1011() {
    let s = serve(&scenario("", 3), 10, None).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&s).await);
    }
    let mut ws = connect(&s).await;
    send(&mut ws, setup(true)).await;
    let t0 = Instant::now();
    assert!(
        next(&mut ws).await.unwrap().get("setupComplete").is_some(),
        "setupComplete first"
    );
    let (code, reason) = next(&mut ws).await.unwrap_err();
    assert_eq!(code, 1011);
    assert_eq!(reason, flux_sim::core::live::QUOTA_CLOSE_REASON);
    assert_eq!(
        flux_sim::core::live::CloseCause::of(code, &reason),
        Some(flux_sim::core::live::CloseCause::Quota)
    );
    assert_eq!(reason.len(), 123);
    // 0.8 s of quota time at ×10.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(70) && took < Duration::from_millis(600),
        "{took:?}"
    );
    // Per project: the REST model of the same project is untouched, and a 4th opens once one
    // of the three closes.
    held.pop().unwrap().close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    open(&s).await;
}

#[tokio::test]
async fn checked_at_the_upgrade_a_session_start_counts_once_and_a_refusal_is_http_429() {
    let text = scenario("quota_check = \"connect\"", 3).replace("live = true", "live = true\nrpm = 2");
    let s = serve(&text, 10, None).await;
    // Two session starts fit 2 a minute (each counted once, at the upgrade)...
    let _a = open(&s).await;
    let _b = open(&s).await;
    // ...the third is refused before any socket, with Google's 429 envelope.
    let mut req = format!("ws://{}{PATH}", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("x-goog-api-key", s.key.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        }
        other => panic!("expected HTTP 429 at the upgrade, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_closed_session_s_slot_comes_back_after_the_release_delay() {
    // 10 s of quota time at ×10: 1 s real.
    let s = serve(&scenario("release = \"10s\"", 1), 10, None).await;
    let mut ws = open(&s).await;
    ws.close(None).await.unwrap();
    let closed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = connect(&s).await;
    send(&mut again, setup(true)).await;
    next(&mut again).await.unwrap();
    assert_eq!(
        next(&mut again).await.unwrap_err().0,
        1011,
        "still held half-way through"
    );
    tokio::time::sleep(Duration::from_millis(1_250).saturating_sub(closed.elapsed())).await;
    open(&s).await;
}

#[tokio::test]
async fn go_away_then_1008_at_the_lifetime() {
    // A 20 s lifetime with 5 s notice at ×20: goAway after 0.75 s, close at 1 s.
    let s = serve(&scenario("lifetime = \"20s\"\ngo_away = \"5s\"", 3), 20, None).await;
    let t0 = Instant::now();
    let mut ws = open(&s).await;
    let m = next(&mut ws).await.unwrap();
    assert_eq!(
        m["goAway"]["timeLeft"]
            .as_str()
            .map(|t| t.starts_with('4') || t == "5s"),
        Some(true),
        "{m}"
    );
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(700) && at < Duration::from_millis(950),
        "{at:?}"
    );
    let (code, _) = next(&mut ws).await.unwrap_err();
    assert_eq!(code, 1008);
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(950) && at < Duration::from_millis(1_500),
        "{at:?}"
    );
}

/// Issue 31, item 5: the session's length cap (here 20 s, under the lifetime) gives `goAway`
/// `go_away` ahead, then close 1011 "Deadline expired before operation could complete." (what
/// users report), not 1008 without notice.
#[tokio::test]
async fn go_away_then_1011_deadline_expired_at_the_session_cap() {
    use flux_sim::core::live::CloseCause;
    // A 20 s audio cap with 5 s notice at ×20: goAway after 0.75 s, close at 1 s.
    let s = serve(&scenario("audio_cap = \"20s\"\ngo_away = \"5s\"", 3), 20, None).await;
    let t0 = Instant::now();
    let mut ws = open(&s).await;
    let m = next(&mut ws).await.unwrap();
    assert!(m.get("goAway").is_some(), "goAway before the cap: {m}");
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(700) && at < Duration::from_millis(950),
        "{at:?}"
    );
    let (code, reason) = next(&mut ws).await.unwrap_err();
    assert_eq!(
        (code, reason.as_str()),
        (1011, "Deadline expired before operation could complete.")
    );
    assert_eq!(CloseCause::of(code, &reason), Some(CloseCause::Deadline));
}

/// Issue 31, item 5: a backend failure (an injected fault) is a 1011 whose reason says so —
/// "The service is currently unavailable." — not the quota's; checked at the upgrade it is an
/// HTTP 503, not a 429.
#[tokio::test]
async fn a_backend_failure_closes_1011_with_its_own_reason() {
    use flux_sim::core::live::CloseCause;
    let text = scenario("", 3).replace("[server.live]", "[server]\nfault_rate = 1.0\n[server.live]");
    let s = serve(&text, 10, None).await;
    let mut ws = connect(&s).await;
    send(&mut ws, setup(true)).await;
    assert!(next(&mut ws).await.unwrap().get("setupComplete").is_some());
    let (code, reason) = next(&mut ws).await.unwrap_err();
    assert_eq!((code, reason.as_str()), (1011, "The service is currently unavailable."));
    assert_eq!(CloseCause::of(code, &reason), Some(CloseCause::Backend));

    let s = serve(
        &text.replace("[server.live]", "[server.live]\nquota_check = \"connect\""),
        10,
        None,
    )
    .await;
    let mut req = format!("ws://{}{PATH}", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("x-goog-api-key", s.key.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected HTTP 503 at the upgrade, got {:?}", other.map(|_| ())),
    }
}

/// Issue 31, item 5: a session that asks for resumption gets a handle; resuming it while the
/// session's first socket is still open closes 1011 "Internal error encountered" (the resume
/// collision users report), which no client may take for a quota close; once the first socket
/// is closed, the same handle resumes.
#[tokio::test]
async fn resuming_while_the_old_socket_is_open_closes_1011() {
    use flux_sim::core::live::CloseCause;
    let s = serve(&scenario("", 3), 10, None).await;
    let with = |handle: Option<&str>| {
        let mut v = setup(true);
        v["setup"]["sessionResumption"] = match handle {
            Some(h) => json!({ "handle": h }),
            None => json!({}),
        };
        v
    };
    let mut first = connect(&s).await;
    send(&mut first, with(None)).await;
    assert!(next(&mut first).await.unwrap().get("setupComplete").is_some());
    let update = next(&mut first).await.unwrap();
    assert_eq!(update["sessionResumptionUpdate"]["resumable"], true, "{update}");
    let handle = update["sessionResumptionUpdate"]["newHandle"]
        .as_str()
        .unwrap()
        .to_string();

    let mut second = connect(&s).await;
    send(&mut second, with(Some(&handle))).await;
    let (code, reason) = next(&mut second).await.unwrap_err();
    assert_eq!((code, reason.as_str()), (1011, "Internal error encountered"));
    assert_eq!(
        CloseCause::of(code, &reason),
        Some(CloseCause::Resume),
        "not a quota close"
    );

    first.close(None).await.unwrap();
    while next(&mut first).await.is_ok() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect(&s).await;
    send(&mut third, with(Some(&handle))).await;
    assert!(
        next(&mut third).await.unwrap().get("setupComplete").is_some(),
        "resumed"
    );
    assert!(next(&mut third).await.unwrap().get("sessionResumptionUpdate").is_some());
}

#[tokio::test]
async fn walking_away_mid_turn_holds_the_slot_as_the_scenario_says() {
    for (setting, held) in [
        ("early_close = \"holds_turn\"", true),
        ("early_close = \"releases\"", false),
    ] {
        let s = serve(&scenario(setting, 1), 10, None).await;
        let mut ws = open(&s).await;
        send(&mut ws, turn()).await;
        read_turn(&mut ws, "generationComplete").await;
        ws.close(None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The turn plays for 1 s more (real): a new session finds the slot held, or free.
        let mut again = connect(&s).await;
        send(&mut again, setup(true)).await;
        next(&mut again).await.unwrap();
        send(&mut again, turn()).await;
        let refused = matches!(next(&mut again).await, Err((1011, _)));
        assert_eq!(refused, held, "{setting}");
    }
}

#[tokio::test]
async fn malformed_frames_are_closed_with_a_reason_and_nothing_panics() {
    let s = serve(&scenario("", 3), 10, None).await;
    let cases: [(Message, u16, &str); 6] = [
        (Message::Text("not json".into()), 1007, "Invalid JSON payload received."),
        (
            Message::Text(r#"{"setup": {"modle": "x"}}"#.into()),
            1007,
            "Unknown name \"modle\"",
        ),
        (
            Message::Text(r#"{"clientContent": {}}"#.into()),
            1007,
            "The first message must be setup",
        ),
        (Message::Binary(vec![0xff, 0xfe, 0x00].into()), 1007, "UTF-8"),
        (
            Message::Text(r#"{"setup": {"model": "models/nope"}}"#.into()),
            1008,
            "models/nope is not found",
        ),
        (
            Message::Text(r#"{"setup": {"model": "models/gemini-2.5-flash"}}"#.into()),
            1008,
            "not supported for bidiGenerateContent",
        ),
    ];
    for (frame, want, words) in cases {
        let mut ws = connect(&s).await;
        ws.send(frame).await.unwrap();
        let (code, reason) = next(&mut ws).await.unwrap_err();
        assert_eq!(code, want, "{reason}");
        assert!(reason.contains(words) && reason.len() <= 123, "{reason}");
    }
    // After setup: a bad message closes the session (and frees its slot).
    for bad in [
        r#"{"clientContent": {"turns": [], "prompt": 1}}"#,
        "[1]",
        r#"{"setup": {"model": "x"}}"#,
    ] {
        let mut ws = open(&s).await;
        ws.send(Message::Text(bad.into())).await.unwrap();
        assert_eq!(next(&mut ws).await.unwrap_err().0, 1007, "{bad}");
    }
    for _ in 0..3 {
        open(&s).await;
    }
    // No key, a wrong key, a wrong service, not an upgrade: HTTP errors before any socket.
    let http = reqwest::Client::new();
    let url = format!("http://{}{PATH}", s.addr);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("{url}?key=wrong")).send().await.unwrap().status(), 400);
    assert_eq!(
        http.get(&url)
            .header("x-goog-api-key", &s.key)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let other = format!(
        "ws://{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.Nope",
        s.addr
    );
    assert!(tokio_tungstenite::connect_async(other).await.is_err());
}

#[tokio::test]
async fn tls_serves_wss_with_a_self_signed_certificate() {
    let (_dir, tls, cert) = crate::common::self_signed_tls();
    let s = serve(&scenario("", 3), 10, Some(tls)).await;
    let mut req = format!("wss://localhost:{}{PATH}", s.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("x-goog-api-key", s.key.parse().unwrap());
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(crate::common::trusting(&cert)))
            .await
            .unwrap();
    send(&mut ws, setup(true)).await;
    assert!(next(&mut ws).await.unwrap().get("setupComplete").is_some());
    // HTTPS on the same port.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = https
        .get(format!(
            "https://localhost:{}/v1beta/models?key={}",
            s.addr.port(),
            s.key
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// JSON-shaped frames built from the protocol's own words, nested at random.
fn hostile_frame() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let word = prop::sample::select(vec![
        "setup",
        "model",
        "clientContent",
        "client_content",
        "turns",
        "parts",
        "text",
        "turnComplete",
        "realtimeInput",
        "audio",
        "mediaChunks",
        "mimeType",
        "data",
        "inlineData",
        "activityEnd",
        "audioStreamEnd",
        "generationConfig",
        "responseModalities",
        "systemInstruction",
        "toolResponse",
        "audio/pcm;rate=0",
        "image/png",
        "AUDIO",
        "models/x",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        word.clone().prop_map(Value::from),
        "[A-Za-z0-9+/=!]{0,12}".prop_map(Value::from),
    ];
    let v = leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((word.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    prop_oneof![v.prop_map(|v| v.to_string()), ".{0,40}"]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
    /// Any frame is parsed or refused with a reason that fits a close frame; never a panic.
    #[test]
    fn no_frame_panics_and_every_reason_fits_a_close_frame(frame in hostile_frame()) {
        use flux_sim::net::wire::live::{parse_message, parse_setup, MAX_REASON};
        for r in [parse_setup(&frame).err(), parse_message(&frame).err()].into_iter().flatten() {
            proptest::prop_assert!(r.len() <= MAX_REASON, "{}", r);
        }
    }
}
