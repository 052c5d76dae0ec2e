//! serve's Live API: `GET /ws/google.ai.generativelanguage.{v1beta,v1alpha}.GenerativeService.
//! BidiGenerateContent` upgraded to a WebSocket, one session per connection on the same
//! ledger as the REST endpoints: `setup` → quota check → `setupComplete` (or close 1011 after
//! it), turns answered with audio or text at the model's latency, `generationComplete`, then
//! `turnComplete` when the audio has played out; `goAway` and close 1008 at the lifetime; the
//! session's slot freed when and as `[server.live]` says.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::{error, given_key, known_key, not_found, Shared, READ_TIMEOUT};
use crate::core::live::{EarlyClose, QuotaCheck, CLOSE_QUOTA, QUOTA_CLOSE_REASON};
use crate::core::rng::{rng, Stream};
use crate::core::server::{Call, KeyRef, Response as Answer};
use crate::core::time::Nanos;
use crate::core::workload::TokenDist;
use crate::net::wire::{self, live};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/ws/{service}", get(connect))
}

/// The services a Live client connects to (google-genai uses `v1` when given a base URL).
const SERVICES: [&str; 3] = [
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
    "google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
    "google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
];

/// Bytes of one client frame at most (a second of 16 kHz audio is 43 kB in base64).
const MAX_FRAME: usize = 4 * 1024 * 1024;

async fn connect(
    State(s): State<Arc<Shared>>,
    Path(service): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    req_uri: axum::http::Uri,
) -> Response {
    if !SERVICES.contains(&service.as_str()) {
        return not_found(
            axum::http::Request::get(req_uri)
                .body(axum::body::Body::empty())
                .expect("a GET of a URI is a request"),
        )
        .await;
    }
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(wire::invalid_argument(&e.body_text())),
    };
    let key = match given_key(&headers, &query).and_then(|k| known_key(&s, &k)) {
        Ok(k) => k,
        Err(body) => return error(body),
    };
    let Ok(ws) = ws else {
        return error(wire::invalid_argument(
            "BidiGenerateContent is a WebSocket: send a GET with `Connection: Upgrade` and `Upgrade: websocket`.",
        ));
    };
    let rules = s.scenario.server.live;
    if rules.quota_check == QuotaCheck::Connect {
        // The model is named only in `setup`: at the upgrade the scenario's first Live model is
        // the one checked (scenario reference: server.live.quota_check).
        if let Some(model) = s.scenario.models.iter().position(|m| m.live) {
            let mut guard = s.server.lock().expect("no handler panics holding the lock");
            let now = s.now();
            let answer = guard.0.open_session(now, &call(key, model, 0, 0), now);
            if !matches!(answer, Answer::Ok { .. }) {
                let project = &s.scenario.topology.projects[s.scenario.topology.keys[key].project];
                let name = s.scenario.models[model].name.clone();
                guard.1.count(&project.name, &name, &answer);
                drop(guard);
                return error(refusal_body(&s, key, model, &answer));
            }
        }
    }
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move { session(s, key, socket).await })
        .into_response()
}

fn call(key: usize, model: usize, input_tokens: u64, request: u64) -> Call {
    Call {
        key: KeyRef::Known(key),
        model: Some(model),
        input_tokens,
        output_tokens: 0,
        request,
        attempt: 1,
    }
}

/// The 429 envelope of a refused upgrade (`quota_check = "connect"`).
fn refusal_body(s: &Shared, key: usize, model: usize, answer: &Answer) -> Value {
    let p = &s.scenario.topology.projects[s.scenario.topology.keys[key].project];
    let name = &s.scenario.models[model].name;
    match *answer {
        Answer::RateLimited {
            violated, retry_delay, ..
        } => wire::quota_exceeded(
            violated,
            &p.limits[model],
            &p.tier,
            name,
            Some(retry_delay.div_ceil(s.scale)),
        ),
        Answer::Unservable { violated } => wire::quota_exceeded(violated, &p.limits[model], &p.tier, name, None),
        Answer::SpendCap => wire::spend_cap_exhausted(),
        _ => wire::capacity_exhausted(),
    }
}

/// Closes with `code` and `reason` (cut to a close frame's 123 bytes).
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: live::close_reason(reason).into(),
        })))
        .await;
}

async fn send(socket: &mut WebSocket, v: &Value) -> bool {
    socket.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// What a frame from the client was.
enum Frame {
    /// A JSON message (text, or binary holding UTF-8).
    Json(String),
    /// The client closed or the connection broke.
    Gone,
    /// Ping/pong: nothing to do.
    Nothing,
    /// Binary that is not UTF-8.
    Bad,
}

fn frame(m: Option<Result<Message, axum::Error>>) -> Frame {
    match m {
        Some(Ok(Message::Text(t))) => Frame::Json(t.to_string()),
        Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
            Ok(t) => Frame::Json(t),
            Err(_) => Frame::Bad,
        },
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Nothing,
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Frame::Gone,
    }
}

/// A model turn in progress (virtual times).
struct Turn {
    prompt: u64,
    output: u64,
    /// Pieces sent so far, of `pieces`.
    sent: u64,
    pieces: u64,
    first: Nanos,
    generated: Nanos,
    complete: Nanos,
    generation_sent: bool,
}

impl Turn {
    /// When the next thing of this turn is due.
    fn next_due(&self) -> Nanos {
        if self.sent < self.pieces {
            if self.pieces <= 1 {
                return self.first;
            }
            // Pieces evenly from the first token to the end of generation.
            self.first + (self.generated - self.first) * self.sent / (self.pieces - 1)
        } else if !self.generation_sent {
            self.generated
        } else {
            self.complete
        }
    }
}

async fn session(s: Arc<Shared>, key: usize, mut socket: WebSocket) {
    let rules = s.scenario.server.live;
    // `setup` first, within the read timeout.
    let text = match tokio::time::timeout(READ_TIMEOUT, socket.recv()).await {
        Ok(m) => match frame(m) {
            Frame::Json(t) => t,
            Frame::Bad => {
                return close(
                    &mut socket,
                    live::CLOSE_INVALID,
                    "Invalid JSON payload received. Frames must be UTF-8 JSON.",
                )
                .await
            }
            _ => return,
        },
        Err(_) => return close(&mut socket, live::CLOSE_POLICY, "No setup message arrived in time.").await,
    };
    let setup = match live::parse_setup(&text) {
        Ok(x) => x,
        Err(reason) => return close(&mut socket, live::CLOSE_INVALID, &reason).await,
    };
    let Some(model) = s.scenario.models.iter().position(|m| m.name == setup.model && m.live) else {
        let reason = format!(
            "models/{} is not found for API version v1beta, or is not supported for bidiGenerateContent. Call ListModels to see the list of available models and their supported methods.",
            setup.model
        );
        return close(&mut socket, live::CLOSE_POLICY, &reason).await;
    };
    let id = s.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let project = s.scenario.topology.keys[key].project;
    let project_name = s.scenario.topology.projects[project].name.clone();
    let model_name = s.scenario.models[model].name.clone();
    // Admitted until the latest a session could last; the real end is set when it ends.
    let (answer, opened, held) = {
        let mut guard = s.server.lock().expect("no handler panics holding the lock");
        let now = s.now();
        let held = now
            .saturating_add(rules.lifetime.max(rules.audio_cap).max(rules.video_cap))
            .saturating_add(rules.release);
        let answer = guard
            .0
            .open_session(now, &call(key, model, setup.system_tokens, id), held);
        guard.1.count(&project_name, &model_name, &answer);
        (answer, now, held)
    };
    tokio::time::sleep(s.real(rules.setup)).await;
    if !send(&mut socket, &live::setup_complete()).await {
        if matches!(answer, Answer::Ok { .. }) {
            end(&s, key, model, held, s.now());
        }
        return;
    }
    if !matches!(answer, Answer::Ok { .. }) {
        tokio::time::sleep(s.real(rules.reject_delay)).await;
        return close(&mut socket, CLOSE_QUOTA, QUOTA_CLOSE_REASON).await;
    }
    let latency = s.scenario.models[model].latency;
    let go_away_at = opened + rules.lifetime - rules.go_away;
    let mut cap_at = opened + rules.lifetime.min(rules.audio_cap);
    let mut went_away = false;
    let mut pending = setup.system_tokens;
    let mut turns = 0u32;
    let mut turn: Option<Turn> = None;
    let release = loop {
        let now = s.now();
        let mut due = cap_at;
        if !went_away {
            due = due.min(go_away_at);
        }
        if let Some(t) = &turn {
            due = due.min(t.next_due());
        }
        let wait = s.real(due.saturating_sub(now));
        tokio::select! {
            m = socket.recv() => {
                let text = match frame(m) {
                    Frame::Json(t) => t,
                    Frame::Nothing => continue,
                    Frame::Gone => {
                        // The client closed: a turn it walked away from may run on.
                        let now = s.now();
                        break match (&turn, rules.early_close) {
                            (Some(t), EarlyClose::HoldsTurn) => t.complete.max(now),
                            _ => now,
                        };
                    }
                    Frame::Bad => {
                        close(&mut socket, live::CLOSE_INVALID, "Invalid JSON payload received. Frames must be UTF-8 JSON.").await;
                        break s.now();
                    }
                };
                let (tokens, ends_turn, video) = match live::parse_message(&text) {
                    Ok(live::ClientMessage::Content { tokens, turn_complete }) => (tokens, turn_complete, false),
                    Ok(live::ClientMessage::Realtime { tokens, ends_turn, video }) => (tokens, ends_turn, video),
                    Ok(live::ClientMessage::ToolResponse) => (0, false, false),
                    Err(reason) => {
                        close(&mut socket, live::CLOSE_INVALID, &reason).await;
                        break s.now();
                    }
                };
                if video {
                    cap_at = cap_at.min(opened + rules.video_cap);
                }
                pending = pending.saturating_add(tokens);
                if ends_turn && turn.is_none() {
                    turn = Some(start_turn(&s, id, turns, std::mem::take(&mut pending), setup.audio, s.now(), &latency));
                    turns += 1;
                }
            }
            _ = tokio::time::sleep(wait) => {
                let now = s.now();
                if now >= cap_at {
                    let reason = if cap_at == opened + rules.lifetime {
                        "The connection reached its maximum lifetime."
                    } else {
                        "The session reached its maximum duration."
                    };
                    close(&mut socket, live::CLOSE_POLICY, reason).await;
                    break now;
                }
                if !went_away && now >= go_away_at {
                    went_away = true;
                    if !send(&mut socket, &live::go_away(cap_at.saturating_sub(now).min(rules.go_away))).await {
                        break now;
                    }
                    continue;
                }
                let Some(t) = turn.as_mut() else { continue };
                if now < t.next_due() {
                    continue;
                }
                let ok = if t.sent < t.pieces {
                    let piece = piece(&rules, t, setup.audio, setup.transcription);
                    t.sent += 1;
                    send(&mut socket, &piece).await
                } else if !t.generation_sent {
                    t.generation_sent = true;
                    send(&mut socket, &live::generation_complete()).await
                } else {
                    let done = live::turn_complete(t.prompt, t.output);
                    turn = None;
                    send(&mut socket, &done).await
                };
                if !ok {
                    let now = s.now();
                    break match (&turn, rules.early_close) {
                        (Some(t), EarlyClose::HoldsTurn) => t.complete.max(now),
                        _ => now,
                    };
                }
            }
        }
    };
    end(&s, key, model, held, release.saturating_add(rules.release));
}

/// Frees the session's slot at `release_at` (virtual).
fn end(s: &Shared, key: usize, model: usize, held: Nanos, release_at: Nanos) {
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    guard.0.end_session(key, model, held, release_at);
}

/// A turn of `prompt` tokens starting at `now`: its output drawn like a REST answer's (the
/// scenario's output sizes), generated at the model's latency (jitter per session and turn),
/// sent in pieces of about a second of audio (or 64 tokens of text).
#[allow(clippy::too_many_arguments)]
fn start_turn(
    s: &Shared,
    id: u64,
    index: u32,
    prompt: u64,
    audio: bool,
    now: Nanos,
    latency: &crate::core::server::Latency,
) -> Turn {
    let rules = &s.scenario.server.live;
    let output = match s.scenario.workload.output {
        TokenDist::Fixed(0) => 256,
        ref d => d.sample(&mut rng(s.scenario.seed, Stream::Workload, id, 0x11fe_0000 ^ index)),
    };
    let generation = latency.draw_part(output, s.scenario.seed, id, index);
    let modality = if audio {
        crate::core::live::Modality::Audio
    } else {
        crate::core::live::Modality::Text
    };
    let complete = rules.turn_complete(modality, now, latency.ttft, generation, output);
    let per_piece = if audio {
        rules.audio_tokens_per_second.max(1)
    } else {
        64
    };
    let first = now + latency.ttft.min(generation);
    Turn {
        prompt,
        output,
        sent: 0,
        pieces: output.div_ceil(per_piece).clamp(1, 4096),
        first,
        generated: now + generation,
        complete,
        generation_sent: false,
    }
}

/// The next piece of turn `t`: its share of the audio (silence) or text, and of the transcript.
fn piece(rules: &crate::core::live::LiveRules, t: &Turn, audio: bool, transcription: bool) -> Value {
    let tokens = t.output / t.pieces + u64::from(t.sent < t.output % t.pieces);
    let text = wire::generated_text(tokens);
    let bytes = audio.then(|| {
        let ns = rules.playback(tokens);
        (ns as u128 * live::AUDIO_BYTES_PER_SECOND as u128 / 1_000_000_000) as u64 & !1
    });
    live::model_turn(bytes, &text, transcription)
}
