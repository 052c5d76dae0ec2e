//! The proxy's Live API route: `GET /ws/google.ai.generativelanguage.{v1beta,v1alpha,v1}.
//! GenerativeService.BidiGenerateContent` upgraded to a WebSocket. The session's `setup` names
//! the model; the session is then scheduled as one request (the strategy picks the key and the
//! moment, the gate counts it against the per-minute limits, the shared ledger admits it) and
//! takes one of its project's concurrency slots for the model until it ends: counted in this
//! proxy, and with `--ledger` leased in the shared ledger (renewed while the session lasts, so
//! a killed proxy's slots come back when their leases end). The proxy then opens the upstream
//! session with the chosen key, sends the setup, and relays every frame both ways until either
//! side closes. A session that finds no slot before the deadline is closed 1011 with a reason
//! saying when to come back.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use super::*;
use crate::core::ledger::Dims;
use crate::net::shared_ledger::LEASE_TIME;
use crate::net::wire::live::{close_reason, CLOSE_INVALID, CLOSE_POLICY, SERVICES};

/// Bytes of one frame at most, either way (as serve takes).
const MAX_FRAME: usize = 4 * 1024 * 1024;

/// How often a session waiting for a slot of the shared ledger asks again.
const SLOT_POLL: Duration = Duration::from_millis(100);

/// Live sessions open in this proxy per budget (its own count of concurrency slots).
#[derive(Debug, Default)]
pub(super) struct Slots(Mutex<HashMap<usize, u64>>);

impl Slots {
    /// Takes one of `limit` slots of `budget` if one is free.
    fn take(&self, budget: usize, limit: Option<u64>) -> bool {
        let mut open = self.0.lock().expect("no panic holds it");
        let n = open.entry(budget).or_default();
        if limit.is_some_and(|l| *n >= l) {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, budget: usize) {
        let mut open = self.0.lock().expect("no panic holds it");
        if let Some(n) = open.get_mut(&budget) {
            *n = n.saturating_sub(1);
        }
    }
}

/// `GET /ws/{service}`: checks the service and the token, then upgrades.
pub(super) async fn connect(
    State(p): State<Arc<Proxy>>,
    service: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (service, q) = match (path_of(service), query_of(&q)) {
        (Ok(s), Ok(q)) => (s, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    if !SERVICES.contains(&service.as_str()) {
        let shown: String = service.chars().take(128).collect();
        return crate::net::http::not_found_at(&axum::http::Method::GET, &format!("/ws/{shown}"));
    }
    if let Err(e) = check_token(&p, &headers, &keys_of(&q)) {
        return error(e);
    }
    let Ok(ws) = ws else {
        return error(wire::error::invalid_argument(
            "BidiGenerateContent is a WebSocket: send a GET with `Connection: Upgrade` and `Upgrade: websocket`.",
        ));
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| session(p, service, socket))
        .into_response()
}

/// Closes the client's socket with `code` and `reason`.
async fn close(client: &mut WebSocket, code: u16, reason: &str) {
    let frame = ws::CloseFrame {
        code,
        reason: close_reason(reason).into(),
    };
    let _ = client.send(ws::Message::Close(Some(frame))).await;
}

/// A slot held for a session: given back (here and in the shared ledger) when dropped.
struct Slot {
    proxy: Arc<Proxy>,
    budget: usize,
    name: String,
    member: String,
    renew: Option<tokio::task::JoinHandle<()>>,
    /// The gate's id of the session's send.
    pass: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.proxy.slots.give_back(self.budget);
        self.proxy.stats().session(self.budget, false);
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        if let Some(shared) = self.proxy.shared.clone() {
            let (name, member) = (std::mem::take(&mut self.name), std::mem::take(&mut self.member));
            tokio::spawn(async move {
                let _ = shared.lease(&name, None, &member, LEASE_TIME).await;
            });
        }
        self.proxy.changed.notify_waiters();
    }
}

/// One session: its setup, its scheduling, then the relay.
async fn session(p: Arc<Proxy>, service: String, mut client: WebSocket) {
    let first = tokio::time::timeout(crate::net::http::READ_TIMEOUT, client.recv()).await;
    let text = match first {
        Ok(Some(Ok(ws::Message::Text(t)))) => t.as_str().to_string(),
        Ok(Some(Ok(ws::Message::Binary(b)))) => String::from_utf8_lossy(&b).into_owned(),
        _ => return close(&mut client, CLOSE_POLICY, "The first message must be setup.").await,
    };
    let setup = match wire::live::parse_setup(&text) {
        Ok(s) => s,
        Err(m) => return close(&mut client, CLOSE_INVALID, &m).await,
    };
    let Some(model) = p.scenario.model_index(&setup.model) else {
        let m = format!("models/{} is not found for API version v1beta.", setup.model);
        return close(&mut client, CLOSE_POLICY, &m).await;
    };
    let _waiting = Waiting::new(&p.waiting);
    let mut ask = Ask {
        request: p.next_id.fetch_add(1, Ordering::Relaxed),
        input_tokens: setup.system_tokens,
        output_tokens: 0,
        model,
        attempts: 0,
    };
    let arrived = p.now();
    let deadline = arrived.saturating_add(p.deadline);
    let mut held = false;
    // While the session waits for its key, slot and moment, the client's socket is read: its
    // pings are answered (the google-genai SDK pings every 20 s and gives up on a socket
    // silent for 20 s more: a session held 50 s died at the client and was then opened
    // upstream all the same, its tokens spent), frames it sends early are kept for the
    // upstream, and a client that leaves is noticed, so its session is never opened.
    let mut early: Vec<ws::Message> = Vec::new();
    // The client left (or sent too much to be a Live client: `flooded`).
    let (mut gone, mut flooded) = (false, false);
    // Whether the session holds a confirmed plan (between the strategy's confirmation and its
    // slot): only then is the wait for its turn not dropped when its client leaves.
    let committed = AtomicBool::new(false);
    let scheduled = {
        let scheduling = schedule(&p, &mut ask, deadline, &mut held, &committed);
        tokio::pin!(scheduling);
        loop {
            tokio::select! {
                r = &mut scheduling => break Some(r),
                m = client.recv(), if !gone => match m {
                    Some(Ok(ws::Message::Ping(_) | ws::Message::Pong(_))) => {}
                    Some(Ok(ws::Message::Close(_))) => {
                        // The close's answer (queued by the socket) goes now, not when the
                        // session's wait ends: a client waits for it before it lets go.
                        gone = true;
                        let _ = client.flush().await;
                    }
                    None | Some(Err(_)) => gone = true,
                    Some(Ok(m)) if early.len() < MAX_EARLY => early.push(m),
                    // More than a Live client sends before its session is open.
                    Some(Ok(_)) => (gone, flooded) = (true, true),
                },
            }
            // Deciding, or waiting for a planned moment, it holds nothing that dropping the
            // wait would not give back (a planned send is cancelled when its wait is dropped).
            if gone && !committed.load(Ordering::Relaxed) {
                break None;
            }
        }
    };
    let Some(scheduled) = scheduled else {
        return left(&p, &mut client, flooded).await;
    };
    let (key, model, slot, mut flight) = match scheduled {
        Ok(s) => s,
        Err((code, reason)) => return close(&mut client, code, &reason).await,
    };
    if gone {
        // Never opened: the strategy gets its plan back, the gate its pass, the slot goes.
        p.gate
            .lock()
            .expect("no panic holds it")
            .withdraw(slot.budget, slot.pass);
        p.gate_changed.notify_waiters();
        flight.cancel();
        return left(&p, &mut client, flooded).await;
    }
    let budget = p.budget(key, model);
    p.stats().admitted(budget, held, p.now().saturating_sub(arrived));
    drop(_waiting);
    relay(
        &p,
        &service,
        key,
        model,
        &setup.model,
        text,
        client,
        slot,
        flight,
        budget,
        early,
    )
    .await;
}

/// Frames a client may send before its session is open, kept for the upstream.
const MAX_EARLY: usize = 16;

/// A session never opened because its client left (counted), or flooded the proxy while it
/// waited (counted, and closed 1008).
async fn left(p: &Proxy, client: &mut WebSocket, flooded: bool) {
    if flooded {
        p.count("client_flooded");
        let m = format!("Send at most {MAX_EARLY} messages before setupComplete.");
        close(client, CLOSE_POLICY, &m).await;
    } else {
        p.count("client_left");
    }
}

/// Plans the session of `ask` until it has a key, a slot and its moment (see [`take_slot`]):
/// the key, the model, the slot and the send in flight, or the close to give.
async fn schedule(
    p: &Arc<Proxy>,
    ask: &mut Ask,
    deadline: Nanos,
    held: &mut bool,
    committed: &AtomicBool,
) -> Result<(usize, usize, Slot, InFlight), (u16, String)> {
    loop {
        let (key, model, at) = match decide(p, ask, deadline, held).await {
            Ok(d) => d,
            Err(r) => {
                p.stats().refused(ask.model, None, r.why);
                let reason = match r.retry {
                    Some(d) => format!("{} Please retry in {}.", r.message, wire::error::duration_string(d)),
                    None => r.message,
                };
                return Err((crate::core::live::CLOSE_QUOTA, reason));
            }
        };
        if !Planned::wait_and_confirm(p, *ask, key, model, at).await {
            continue;
        }
        committed.store(true, Ordering::Relaxed);
        let taken = take_slot(p, ask, key, model, at, deadline, held).await;
        committed.store(false, Ordering::Relaxed);
        match taken? {
            Some((slot, flight)) => return Ok((key, model, slot, flight)),
            None => ask.attempts += 1,
        }
    }
}

/// The gate, this proxy's slots, and the shared ledger (its lease, then its admission) for a
/// session planned on (`key`, `model`) at `at`: the slot and the send in flight, `None` when
/// the shared ledger refused (the strategy has learnt it: plan again), or the close to give.
async fn take_slot(
    p: &Arc<Proxy>,
    ask: &Ask,
    key: usize,
    model: usize,
    at: Nanos,
    deadline: Nanos,
    held: &mut bool,
) -> Result<Option<(Slot, InFlight)>, (u16, String)> {
    let budget = p.budget(key, model);
    let project = &p.scenario.topology.projects[p.scenario.topology.keys[key].project];
    let limits = project.limits[model];
    let name = format!("{}:{}", project.name, p.scenario.models[model].name);
    let member = format!("{}-{}-{}", p.instance, ask.request, ask.attempts);
    let give_up = |p: &Arc<Proxy>, retry: Option<Nanos>, why: Refusal| {
        let now = p.now();
        p.strategy().cancel(now, ask, key, model, at);
        p.changed.notify_waiters();
        p.count("deadline");
        p.stats().refused(model, Some(project_of(p, key)), why);
        let mut reason = format!(
            "flux-sim proxy: no key has room for this session before its deadline ({}).",
            format_duration(p.deadline)
        );
        if let Some(d) = retry {
            reason.push_str(&format!(" Please retry in {}.", wire::error::duration_string(d)));
        }
        Err((crate::core::live::CLOSE_QUOTA, reason))
    };
    // This proxy's own count of open sessions first: it needs no round trip.
    loop {
        let notified = p.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if p.slots.take(budget, limits.concurrent) {
            break;
        }
        *held = true;
        let now = p.now();
        if now >= deadline {
            return give_up(p, None, Refusal::Deadline);
        }
        let _ = tokio::time::timeout(Duration::from_nanos(deadline - now), notified).await;
    }
    p.stats().session(budget, true);
    let mut slot = Slot {
        proxy: p.clone(),
        budget,
        name: name.clone(),
        member: member.clone(),
        renew: None,
        pass: 0,
    };
    let cost = ask.input_tokens;
    let pass = match through_gate(p, budget, &limits, 1, cost, deadline, held).await {
        Ok(id) => {
            slot.pass = id;
            id
        }
        Err(retry) => {
            let now = p.now();
            return give_up(p, retry.map(|r| r.saturating_sub(now)), Refusal::Deadline);
        }
    };
    let Some(shared) = p.shared.clone() else {
        return Ok(Some((slot, in_flight(p, ask, key, model, budget))));
    };
    let withdraw = |p: &Arc<Proxy>| {
        p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
        p.gate_changed.notify_waiters();
    };
    // The fleet's slots: leased, waiting for one until the deadline.
    loop {
        let left = Duration::from_nanos(deadline.saturating_sub(p.now()));
        match shared
            .lease(&name, limits.concurrent.or(Some(u64::MAX)), &member, left)
            .await
        {
            Ok(None) => break,
            Ok(Some(wait)) => {
                *held = true;
                let now = p.now();
                if now.saturating_add(SLOT_POLL.as_nanos() as Nanos) >= deadline {
                    withdraw(p);
                    return give_up(p, Some(wait.as_nanos() as Nanos), Refusal::Deadline);
                }
                tokio::time::sleep(SLOT_POLL).await;
            }
            Err(e) => {
                withdraw(p);
                p.stats().refused(model, Some(project_of(p, key)), Refusal::LedgerDown);
                p.count("shared_ledger_down");
                let now = p.now();
                p.strategy().cancel(now, ask, key, model, at);
                let retry = crate::net::shared_ledger::RETRY_AFTER_OUTAGE.as_nanos() as Nanos;
                return Err((
                    crate::core::live::CLOSE_QUOTA,
                    format!(
                        "flux-sim proxy: not sent, {e}. Please retry in {}.",
                        wire::error::duration_string(retry)
                    ),
                ));
            }
        }
    }
    // Renewed while the session lasts.
    let (renewer, n, m) = (shared.clone(), name.clone(), member.clone());
    slot.renew = Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_TIME / 3).await;
            let _ = renewer.lease(&n, Some(u64::MAX), &m, LEASE_TIME / 3).await;
        }
    }));
    // Then its requests and tokens, as a REST call.
    let now = p.now();
    let admit_limits = Limits {
        concurrent: None,
        ..limits
    };
    let left = Duration::from_nanos(deadline.saturating_sub(now));
    let asked = std::time::Instant::now();
    let answer = shared.admit(now, &name, admit_limits, 1, cost, &member, left).await;
    let took = asked.elapsed().as_nanos().min(u64::MAX as u128) as Nanos;
    let answered = match &answer {
        Ok(Admission::Admitted) => Some(true),
        Ok(_) => Some(false),
        Err(_) => None,
    };
    p.stats().ledger(budget, took, answered);
    match answer {
        Ok(Admission::Admitted) => Ok(Some((slot, in_flight(p, ask, key, model, budget)))),
        Ok(Admission::Rejected { violated, retry_at }) => {
            withdraw(p);
            p.count("shared_ledger_refused");
            *held = true;
            let mut flight = in_flight(p, ask, key, model, budget);
            flight.unsent(&Outcome::RateLimited {
                violated,
                retry_delay: Some(retry_at - now),
                quota: admit_limits.only(violated),
                quota_model: None,
            });
            Ok(None)
        }
        Ok(Admission::Unservable { violated }) => {
            withdraw(p);
            let mut flight = in_flight(p, ask, key, model, budget);
            flight.finish(&Outcome::Unservable {
                quota: admit_limits.only(violated),
            });
            Err((
                CLOSE_POLICY,
                "flux-sim proxy: this session can never fit the limits of any key.".into(),
            ))
        }
        Err(e) => {
            withdraw(p);
            let mut flight = in_flight(p, ask, key, model, budget);
            flight.finish(&Outcome::Unavailable);
            p.count("shared_ledger_down");
            p.stats().refused(model, Some(project_of(p, key)), Refusal::LedgerDown);
            let retry = crate::net::shared_ledger::RETRY_AFTER_OUTAGE.as_nanos() as Nanos;
            Err((
                crate::core::live::CLOSE_QUOTA,
                format!(
                    "flux-sim proxy: not sent, {e}. Please retry in {}.",
                    wire::error::duration_string(retry)
                ),
            ))
        }
    }
}

fn project_of(p: &Proxy, key: usize) -> usize {
    p.scenario.topology.keys[key].project
}

/// A session sent now on (`key`, `model`), counted in this proxy's ledger.
fn in_flight(p: &Arc<Proxy>, ask: &Ask, key: usize, model: usize, budget: usize) -> InFlight {
    let now = p.now();
    let mut book = p.sent.lock().expect("no panic holds it");
    let b = book.1[budget];
    book.0.force(now, b, None, ask.input_tokens, now);
    let mut ask = *ask;
    ask.attempts += 1;
    InFlight {
        proxy: p.clone(),
        ask,
        key,
        model,
        sent: now,
        done: false,
    }
}

/// The upstream's Live URL for `service`: the upstream's base with `ws`/`wss`.
fn upstream_ws(p: &Proxy, service: &str) -> String {
    let mut url = p.upstream.clone();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let _ = url.set_scheme(scheme);
    url.path_segments_mut()
        .expect("checked at start: a base URL")
        .pop_if_empty()
        .extend(["ws", service]);
    url.to_string()
}

/// Opens the upstream session with the chosen key, sends the setup (naming the chosen model),
/// and relays frames both ways until either side closes; the slot is given back then, and the
/// strategy told how it went (see [`closed_by_upstream`]; a 429 at the upgrade: refused).
#[allow(clippy::too_many_arguments)]
async fn relay(
    p: &Arc<Proxy>,
    service: &str,
    key: usize,
    model: usize,
    asked_model: &str,
    setup: String,
    mut client: WebSocket,
    slot: Slot,
    mut flight: InFlight,
    budget: usize,
    early: Vec<ws::Message>,
) {
    let mut req = match upstream_ws(p, service).into_client_request() {
        Ok(r) => r,
        Err(e) => {
            flight.finish(&Outcome::Error);
            return close(&mut client, 1011, &format!("flux-sim proxy: upstream URL: {e}")).await;
        }
    };
    if let Ok(v) = header::HeaderValue::from_str(&p.scenario.topology.keys[key].value) {
        req.headers_mut().insert("x-goog-api-key", v);
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let left = Duration::from_nanos(p.deadline);
    let connected = tokio::time::timeout(
        left,
        tokio_tungstenite::connect_async_with_config(req, Some(config), false),
    )
    .await;
    p.gate
        .lock()
        .expect("no panic holds it")
        .answered(budget, slot.pass, p.now());
    p.gate_changed.notify_waiters();
    let mut upstream = match connected {
        Ok(Ok((u, resp))) => {
            p.stats().upstream(budget, resp.status().as_u16());
            u
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            // Refused at the upgrade (serve's `quota_check = "connect"`: a 429 with Google's
            // envelope, which browsers report as 1006): an answer, read as generateContent's.
            let status = resp.status().as_u16();
            p.count(format!("upstream_{status}"));
            p.stats().upstream(budget, status);
            let body = resp.body().as_deref().unwrap_or_default();
            let (outcome, _) = wire::client::read_response(status, &unwrapped(body), 0, &p.scenario.models);
            flight.finish(&outcome);
            let reason = if status == 429 {
                crate::core::live::QUOTA_CLOSE_REASON.to_string()
            } else {
                format!("flux-sim proxy: the upstream refused the session with HTTP {status}.")
            };
            return close(&mut client, 1011, &reason).await;
        }
        Ok(Err(e)) => {
            p.count("upstream_unreachable");
            flight.finish(&Outcome::Unavailable);
            let why = crate::core::topology::mask_secrets(&e.to_string());
            return close(
                &mut client,
                1011,
                &format!("flux-sim proxy: the upstream did not answer: {why}"),
            )
            .await;
        }
        Err(_) => {
            p.count("upstream_timeout");
            flight.finish(&Outcome::Error);
            return close(
                &mut client,
                1011,
                "flux-sim proxy: the upstream did not answer in time.",
            )
            .await;
        }
    };
    p.count("upstream_101");
    // The setup names the chosen model (the strategy may fall back to another).
    let setup = if p.scenario.models[model].name == asked_model {
        setup
    } else {
        let mut v: Value = serde_json::from_str(&setup).unwrap_or_default();
        v["setup"]["model"] = Value::String(format!("models/{}", p.scenario.models[model].name));
        v.to_string()
    };
    if upstream.send(tungstenite::Message::Text(setup.into())).await.is_err() {
        flight.finish(&Outcome::Error);
        return close(&mut client, 1011, "flux-sim proxy: the upstream closed the session.").await;
    }
    // What the client sent while its session waited, in order.
    for m in early {
        let m = match m {
            ws::Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
            ws::Message::Binary(b) => tungstenite::Message::Binary(b),
            _ => continue,
        };
        if upstream.send(m).await.is_err() {
            flight.finish(&Outcome::Error);
            return close(&mut client, 1011, "flux-sim proxy: the upstream closed the session.").await;
        }
    }
    let mut outcome = Outcome::Ok;
    loop {
        tokio::select! {
            m = client.recv() => match m {
                Some(Ok(ws::Message::Text(t))) => {
                    if upstream.send(tungstenite::Message::Text(t.as_str().into())).await.is_err() { break; }
                }
                Some(Ok(ws::Message::Binary(b))) => {
                    if upstream.send(tungstenite::Message::Binary(b)).await.is_err() { break; }
                }
                Some(Ok(ws::Message::Ping(b))) => { let _ = upstream.send(tungstenite::Message::Ping(b)).await; }
                Some(Ok(ws::Message::Pong(_))) => {}
                Some(Ok(ws::Message::Close(f))) => {
                    let f = f.map(|f| tungstenite::protocol::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = upstream.send(tungstenite::Message::Close(f)).await;
                    break;
                }
                None | Some(Err(_)) => {
                    let _ = upstream.close(None).await;
                    break;
                }
            },
            m = upstream.next() => match m {
                Some(Ok(tungstenite::Message::Text(t))) => {
                    if client.send(ws::Message::Text(t.as_str().into())).await.is_err() { break; }
                }
                Some(Ok(tungstenite::Message::Binary(b))) => {
                    if client.send(ws::Message::Binary(b)).await.is_err() { break; }
                }
                Some(Ok(tungstenite::Message::Ping(b))) => { let _ = client.send(ws::Message::Ping(b)).await; }
                Some(Ok(tungstenite::Message::Close(f))) => {
                    if let Some(f) = &f {
                        outcome = closed_by_upstream(p, budget, u16::from(f.code), f.reason.as_str());
                    }
                    let f = f.map(|f| ws::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = client.send(ws::Message::Close(f)).await;
                    break;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    outcome = Outcome::Error;
                    close(&mut client, 1011, "flux-sim proxy: the upstream session broke.").await;
                    break;
                }
            },
        }
    }
    flight.finish(&outcome);
    drop(slot);
}

/// The outcome of a session the upstream closed with `code` and `reason`, counted in the
/// metrics. Gemini closes with 1011 for several causes,
/// told apart only by the reason ([`CloseCause`]): a quota close ("You exceeded your current
/// quota…", cut to 123 bytes) is the upstream's refusal, whenever it comes — counted as a 429
/// answer in `/metrics` (as serve counts it) and taught to the strategy as a rate limit on the
/// session's slot; a backend failure is the upstream unavailable; the session cap (after
/// `goAway`) is a session that ran its course; a resume collision or another 1011 is an error
/// (never a quota). Other codes (1000, 1008 after `goAway`) end a session normally.
fn closed_by_upstream(p: &Proxy, budget: usize, code: u16, reason: &str) -> Outcome {
    use crate::core::live::{CloseCause, CLOSE_QUOTA};
    if code != CLOSE_QUOTA {
        return Outcome::Ok;
    }
    let cause = CloseCause::of(code, reason);
    let name = match cause {
        Some(CloseCause::Quota) => "quota",
        Some(CloseCause::Deadline) => "deadline",
        Some(CloseCause::Backend) => "backend",
        Some(CloseCause::Resume) => "resume",
        None => "other",
    };
    p.count(format!("upstream_live_close_1011_{name}"));
    match cause {
        Some(CloseCause::Quota) => {
            p.count("upstream_429");
            p.stats().upstream(budget, 429);
            // As a simulated one reaches its strategy: a refusal naming nothing (a session
            // limit, or the minute's tokens: flux tells them apart by what it sent). Named the
            // session's slot instead, flux told no limits never learnt the minute's tokens and
            // sent a session every second for serve to refuse (1,652 in 4 minutes, google-genai
            // through the proxy).
            Outcome::RateLimited {
                violated: Dims::EMPTY,
                retry_delay: None,
                quota: Limits::default(),
                quota_model: None,
            }
        }
        Some(CloseCause::Backend) => Outcome::Unavailable,
        Some(CloseCause::Deadline) => Outcome::Ok,
        Some(CloseCause::Resume) | None => Outcome::Error,
    }
}
