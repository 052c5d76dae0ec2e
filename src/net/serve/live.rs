//! serve's Live API: `GET /ws/google.ai.generativelanguage.{v1beta,v1alpha}.GenerativeService.
//! BidiGenerateContent` upgraded to a WebSocket, one session per connection on the same
//! ledger as the REST endpoints: `setup` → quota check → `setupComplete` (or close 1011 after
//! it), turns answered with audio or text at the model's latency, `generationComplete`, then
//! `turnComplete` when the audio has played out; `goAway` and close 1008 at the lifetime; the
//! session's slot freed when and as `[server.live]` says. A session that asks for resumption
//! gets a handle (`sessionResumptionUpdate`); resuming it while an earlier socket of the same
//! session is still open is closed with 1011 "Internal error encountered", as users report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::{drawn_output, error, given_key, known_key, not_found_at, Shared, READ_TIMEOUT};
use crate::core::live::{CloseCause, EarlyClose, LiveRules, QuotaCheck, CLOSE_QUOTA};
use crate::core::server::{Call, KeyRef, Response as Answer, Via};
use crate::core::time::Nanos;
use crate::net::http::FrameMeter;
use crate::net::wire::{self, live};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/ws/{service}", get(connect))
}

use crate::net::wire::live::SERVICES;

/// Bytes of one client frame at most (a second of 16 kHz audio is 43 kB in base64).
const MAX_FRAME: usize = 4 * 1024 * 1024;

async fn connect(
    State(s): State<Arc<Shared>>,
    Path(service): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    meter: Option<Extension<FrameMeter>>,
    uri: axum::http::Uri,
) -> Response {
    if !SERVICES.contains(&service.as_str()) {
        return not_found_at(&axum::http::Method::GET, uri.path());
    }
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(wire::error::invalid_argument(&e.body_text())),
    };
    let key = match given_key(&headers, &query).and_then(|k| known_key(&s, &k)) {
        Ok(k) => k,
        Err(body) => return error(body),
    };
    let Ok(ws) = ws else {
        return error(wire::error::invalid_argument(
            "BidiGenerateContent is a WebSocket: send a GET with `Connection: Upgrade` and `Upgrade: websocket`.",
        ));
    };
    // Checked at the upgrade: the model is named only in `setup`, so the scenario's first Live
    // model is the one admitted here (scenario reference: server.live.quota_check); the
    // session then goes on with this admission, counted once.
    let mut pre = None;
    if s.scenario.server.live.quota_check == QuotaCheck::Connect {
        if let Some(model) = s.scenario.models.iter().position(|m| m.live) {
            let (answer, admitted) = admit_session(&s, key, model, 0);
            if !matches!(answer, Answer::Ok { .. }) {
                return error(refusal_body(&s, key, model, &answer));
            }
            pre = Some(admitted);
        }
    }
    let failed = Arc::clone(&s);
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_failed_upgrade(move |_| {
            if let Some(a) = pre {
                end(&failed, key, a, failed.now());
            }
        })
        .on_upgrade(move |socket| async move {
            // Frames in flight are capped from here on, as request bodies are.
            let meter = meter.map(|Extension(m)| m).unwrap_or_default();
            meter.limit(Arc::clone(&s.frames));
            let mut socket = Socket { ws: socket, meter };
            session(s, key, pre, &mut socket).await
        })
        .into_response()
}

/// The sessions that asked for resumption: the session each handle resumes, and those with a
/// socket open now.
#[derive(Default)]
pub(super) struct Resumptions {
    handles: HashMap<String, u64>,
    open: HashSet<u64>,
    next: u64,
}

/// A resumable session's socket, open until dropped.
struct Holding {
    s: Arc<Shared>,
    session: u64,
}

impl Holding {
    /// A new handle that resumes this session.
    fn new_handle(&self) -> String {
        let mut book = self.s.resumptions.lock().expect("no handler panics holding the lock");
        book.next += 1;
        let handle = format!("flux-resume-{:x}-{:x}", self.session, book.next);
        book.handles.insert(handle.clone(), self.session);
        handle
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Ok(mut book) = self.s.resumptions.lock() {
            book.open.remove(&self.session);
        }
    }
}

/// A socket for the session `handle` resumes (`None`: a new session; a handle serve never
/// gave is taken as a new session too), or `None` when an earlier socket of that session is
/// still open: the resume collision.
fn claim(s: &Arc<Shared>, handle: Option<&str>) -> Option<Holding> {
    let mut book = s.resumptions.lock().expect("no handler panics holding the lock");
    let session = match handle.and_then(|h| book.handles.get(h)).copied() {
        Some(session) if book.open.contains(&session) => return None,
        Some(session) => session,
        None => {
            book.next += 1;
            book.next
        }
    };
    book.open.insert(session);
    Some(Holding {
        s: Arc::clone(s),
        session,
    })
}

/// A session on the ledger: its id, model, when it was admitted and until when its slot is
/// held for now (the latest it could end; set to the real end when it ends).
#[derive(Debug, Clone, Copy)]
struct Admitted {
    id: u64,
    model: usize,
    opened: Nanos,
    held: Nanos,
    /// The path that admitted it (a refused one: the quota's).
    via: Via,
}

/// Checks a new session of `key` on `model` (with `tokens` of system instruction) against the
/// ledger and counts the answer; admitted, its slot is held until the latest the session could
/// last: the lifetime or the audio cap, and the release after it.
fn admit_session(s: &Shared, key: usize, model: usize, tokens: u64) -> (Answer, Admitted) {
    let rules = &s.scenario.server.live;
    let id = s.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let project = &s.scenario.topology.projects[s.scenario.topology.keys[key].project];
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    let now = s.now();
    let held = now
        .saturating_add(rules.lifetime.min(rules.audio_cap))
        .saturating_add(rules.release);
    let call = Call {
        key: KeyRef::Known(key),
        model: Some(model),
        input_tokens: tokens,
        output_tokens: 0,
        request: id,
        attempt: 1,
        priority: false,
    };
    let answer = guard.0.open_session(now, &call, held);
    guard.1.count(&project.name, &s.scenario.models[model].name, &answer);
    (
        answer,
        Admitted {
            id,
            model,
            opened: now,
            held,
            via: match answer {
                Answer::Ok { via, .. } => via,
                _ => Via::Quota,
            },
        },
    )
}

/// The 429 envelope of a refused upgrade (`quota_check = "connect"`).
fn refusal_body(s: &Shared, key: usize, model: usize, answer: &Answer) -> Value {
    let p = &s.scenario.topology.projects[s.scenario.topology.keys[key].project];
    let name = &s.scenario.models[model].name;
    match *answer {
        Answer::RateLimited {
            violated, retry_delay, ..
        } => wire::error::quota_exceeded(
            violated,
            &p.limits[model],
            &p.tier,
            name,
            Some(retry_delay.div_ceil(s.scale)),
        ),
        Answer::Unservable { violated, .. } => {
            wire::error::quota_exceeded(violated, &p.limits[model], &p.tier, name, None)
        }
        Answer::SpendCap => wire::error::spend_cap_exhausted(),
        Answer::Unavailable => wire::error::unavailable(),
        _ => wire::error::capacity_exhausted(),
    }
}

/// A session's WebSocket and the meter of the frames it receives.
struct Socket {
    ws: WebSocket,
    meter: FrameMeter,
}

impl Socket {
    /// The next frame from the client: what it was.
    async fn recv(&mut self) -> Frame {
        let m = self.ws.recv().await;
        if matches!(m, Some(Ok(_))) {
            self.meter.message_done();
        }
        frame(m)
    }
}

/// Closes with `code` and `reason` (cut to a close frame's 123 bytes).
async fn close(socket: &mut Socket, code: u16, reason: &str) {
    let _ = socket
        .ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: live::close_reason(reason).into(),
        })))
        .await;
}

async fn send(socket: &mut Socket, v: &Value) -> bool {
    socket.ws.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// What a frame from the client was.
enum Frame {
    /// A JSON message (text, or binary holding UTF-8).
    Json(String),
    /// The client closed or the connection broke.
    Gone,
    /// Ping/pong: nothing to do.
    Nothing,
    /// A frame to close the session for: the code and reason of the close.
    Bad(u16, String),
}

/// Close code of a frame that breaks the WebSocket protocol (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL: u16 = 1002;
/// Close code of a message larger than the server takes.
const CLOSE_TOO_BIG: u16 = 1009;

fn frame(m: Option<Result<Message, axum::Error>>) -> Frame {
    match m {
        Some(Ok(Message::Text(t))) => Frame::Json(t.to_string()),
        Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
            Ok(t) => Frame::Json(t),
            Err(_) => Frame::Bad(live::CLOSE_INVALID, NOT_UTF8.into()),
        },
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Nothing,
        Some(Err(e)) => broken(e),
        Some(Ok(Message::Close(_))) | None => Frame::Gone,
    }
}

/// What a frame the WebSocket layer refused gets: a close naming what was wrong (protocol,
/// size, UTF-8, a frame that did not arrive in time), or nothing when the connection is gone.
fn broken(e: axum::Error) -> Frame {
    use tungstenite::Error as E;
    let inner = e.into_inner();
    match inner.downcast_ref::<E>() {
        Some(E::Protocol(p)) => Frame::Bad(CLOSE_PROTOCOL, format!("WebSocket protocol error: {p}.")),
        Some(E::Capacity(c)) => Frame::Bad(
            CLOSE_TOO_BIG,
            format!("{c}; a frame may hold at most {MAX_FRAME} bytes."),
        ),
        Some(E::Utf8(_)) => Frame::Bad(live::CLOSE_INVALID, NOT_UTF8.into()),
        Some(E::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut => Frame::Bad(
            live::CLOSE_POLICY,
            format!("A frame did not arrive within {} s.", READ_TIMEOUT.as_secs()),
        ),
        _ => Frame::Gone,
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

/// The close reason of a binary frame that is not UTF-8.
const NOT_UTF8: &str = "Invalid JSON payload received. Frames must be UTF-8 JSON.";

/// Reads `setup` (within the read timeout) and finds its Live model: `Err` is the close to
/// send, if any.
async fn read_setup(s: &Shared, socket: &mut Socket) -> Result<(live::Setup, usize), Option<(u16, String)>> {
    let text = match tokio::time::timeout(READ_TIMEOUT, socket.recv()).await {
        Ok(m) => match m {
            Frame::Json(t) => t,
            Frame::Bad(code, reason) => return Err(Some((code, reason))),
            Frame::Gone | Frame::Nothing => return Err(None),
        },
        Err(_) => return Err(Some((live::CLOSE_POLICY, "No setup message arrived in time.".into()))),
    };
    let setup = live::parse_setup(&text).map_err(|reason| Some((live::CLOSE_INVALID, reason)))?;
    match s.scenario.models.iter().position(|m| m.name == setup.model && m.live) {
        Some(model) => Ok((setup, model)),
        None => Err(Some((
            live::CLOSE_POLICY,
            format!(
                "models/{} is not found for API version v1beta, or is not supported for bidiGenerateContent. Call ListModels to see the list of available models and their supported methods.",
                setup.model
            ),
        ))),
    }
}

/// One session on `socket` for `key`, already admitted at the upgrade when `pre` is given.
async fn session(s: Arc<Shared>, key: usize, pre: Option<Admitted>, socket: &mut Socket) {
    let rules = s.scenario.server.live;
    let (setup, model) = match read_setup(&s, socket).await {
        Ok(x) => x,
        Err(close_with) => {
            if let Some(a) = pre {
                end(&s, key, a, s.now());
            }
            if let Some((code, reason)) = close_with {
                close(socket, code, &reason).await;
            }
            return;
        }
    };
    // A resumption while the session's earlier socket is still open: closed at once, before
    // any quota check (the serve's choice of timing; the reason is what users report).
    let holding = match &setup.resumption {
        None => None,
        Some(handle) => match claim(&s, handle.as_deref()) {
            Some(h) => Some(h),
            None => {
                if let Some(a) = pre {
                    end(&s, key, a, s.now());
                }
                return close(socket, CLOSE_QUOTA, CloseCause::Resume.reason()).await;
            }
        },
    };
    let (answer, admitted) = match pre {
        Some(a) if a.model == model => (
            Answer::Ok {
                completes_at: a.held,
                via: a.via,
            },
            a,
        ),
        other => {
            // Admitted at the upgrade on another model: that admission ends, this one counts.
            if let Some(a) = other {
                end(&s, key, a, s.now());
            }
            admit_session(&s, key, model, setup.system_tokens)
        }
    };
    tokio::time::sleep(s.real(rules.setup)).await;
    if !send(socket, &live::setup_complete()).await {
        if matches!(answer, Answer::Ok { .. }) {
            end(&s, key, admitted, s.now());
        }
        return;
    }
    if !matches!(answer, Answer::Ok { .. }) {
        // A 1011 whose reason says why: a backend failure (an injected fault) or a quota.
        let cause = match answer {
            Answer::Unavailable => CloseCause::Backend,
            _ => CloseCause::Quota,
        };
        tokio::time::sleep(s.real(rules.reject_delay)).await;
        return close(socket, CLOSE_QUOTA, cause.reason()).await;
    }
    if let Some(h) = &holding {
        if !send(socket, &live::resumption_update(&h.new_handle())).await {
            return end(&s, key, admitted, s.now());
        }
    }
    let (id, opened) = (admitted.id, admitted.opened);
    let latency = s.scenario.models[model].latency;
    let mut cap_at = opened + rules.lifetime.min(rules.audio_cap);
    let mut went_away = false;
    let mut pending = setup.system_tokens;
    let mut turns = 0u32;
    let mut turn: Option<Turn> = None;
    let release = loop {
        let now = s.now();
        // `goAway` comes `go_away` before the session ends, by its lifetime or its cap.
        let go_away_at = cap_at.saturating_sub(rules.go_away);
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
                let text = match m {
                    Frame::Json(t) => t,
                    Frame::Nothing => continue,
                    // The client closed: a turn it walked away from may run on.
                    Frame::Gone => break walked_away(&rules, turn.as_ref(), s.now(), cap_at),
                    Frame::Bad(code, reason) => {
                        close(socket, code, &reason).await;
                        break s.now();
                    }
                };
                let (tokens, ends_turn, video) = match live::parse_message(&text) {
                    Ok(live::ClientMessage::Content { tokens, turn_complete }) => (tokens, turn_complete, false),
                    Ok(live::ClientMessage::Realtime { tokens, ends_turn, video }) => (tokens, ends_turn, video),
                    Ok(live::ClientMessage::ToolResponse) => (0, false, false),
                    Err(reason) => {
                        close(socket, live::CLOSE_INVALID, &reason).await;
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
                    // The connection's lifetime: 1008 (documented); the session's length cap:
                    // 1011 "Deadline expired…" (what users report).
                    if cap_at == opened + rules.lifetime {
                        close(socket, live::CLOSE_POLICY, "The connection reached its maximum lifetime.").await;
                    } else {
                        close(socket, CLOSE_QUOTA, CloseCause::Deadline.reason()).await;
                    }
                    break now;
                }
                if !went_away && now >= go_away_at {
                    went_away = true;
                    if !send(socket, &live::go_away(cap_at.saturating_sub(now).min(rules.go_away))).await {
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
                    send(socket, &piece).await
                } else if !t.generation_sent {
                    t.generation_sent = true;
                    send(socket, &live::generation_complete()).await
                } else {
                    let done = live::turn_complete(t.prompt, t.output);
                    turn = None;
                    send(socket, &done).await
                };
                if !ok {
                    break walked_away(&rules, turn.as_ref(), s.now(), cap_at);
                }
            }
        }
    };
    end(&s, key, admitted, release);
}

/// When a session whose client left at `now` is over on the server: a turn it walked away from
/// runs on to its completion if the scenario says so, but not past the session's end `cap_at`.
fn walked_away(rules: &LiveRules, turn: Option<&Turn>, now: Nanos, cap_at: Nanos) -> Nanos {
    match (turn, rules.early_close) {
        (Some(t), EarlyClose::HoldsTurn) => t.complete.min(cap_at).max(now),
        _ => now,
    }
}

/// The session is over at `over` (virtual): its slot is freed `release` later.
fn end(s: &Shared, key: usize, a: Admitted, over: Nanos) {
    let release_at = over.saturating_add(s.scenario.server.live.release);
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    guard.0.end_session(key, a.model, a.held, release_at);
}

/// A turn of `prompt` tokens starting at `now`: its output drawn like a REST answer's (the
/// scenario's output sizes), generated at the model's latency (jitter per session and turn),
/// sent in pieces of about a second of audio (or 64 tokens of text).
fn start_turn(
    s: &Shared,
    id: u64,
    index: u32,
    prompt: u64,
    audio: bool,
    now: Nanos,
    latency: &crate::core::dist::Latency,
) -> Turn {
    let rules = &s.scenario.server.live;
    let output = drawn_output(s, id, 0x11fe_0000 ^ index);
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
    let text = wire::response::generated_text(tokens);
    let bytes = audio.then(|| {
        let ns = rules.playback(tokens);
        (ns as u128 * live::AUDIO_BYTES_PER_SECOND as u128 / 1_000_000_000) as u64 & !1
    });
    live::model_turn(bytes, &text, transcription)
}
