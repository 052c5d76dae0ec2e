//! The yardstick of `benches/serve-vs-axum.sh`: a bare axum handler that reads the same
//! generateContent JSON body serve reads and answers a fixed response, served the way serve is
//! (tokio multi-thread, TCP_NODELAY). `cargo run --release --example bare_axum -- 127.0.0.1:18083`

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

const ANSWER: &str = r#"{"candidates":[{"content":{"parts":[{"text":"the dub cue and "}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":4,"totalTokenCount":6},"modelVersion":"gemini-2.5-flash","responseId":"bare"}"#;

async fn generate(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.get("contents").is_some() => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            ANSWER,
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            "{}",
        ),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let at = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18083".into());
    let app = Router::new().route("/v1beta/models/{name}", post(generate));
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind(&at).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("bare axum on http://{at}");
    axum::serve(listener, app).await
}
