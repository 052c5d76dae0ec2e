//! `flux-sim serve`: the mock server model driven by the wall clock over HTTP, wire-compatible
//! with Gemini's REST v1beta (tokio + axum). Virtual time = elapsed real time × time scale,
//! read under the server's lock so the ledger always sees time move forward.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::core::dist::TokenDist;
use crate::core::ledger::Dimension;
use crate::core::rng::{rng, Stream};
use crate::core::server::{Call, KeyRef, Response as Answer, Server};
use crate::core::time::Nanos;
use crate::net::wire::{self, openai, structured};
use crate::scenario::{EmbedBatch, Scenario};

mod live;
mod openai_compat;

use crate::net::http::{error, json_response, not_found, not_found_at};
pub use crate::net::http::{shutdown_signal, MAX_BODIES, MAX_BODY, MAX_CONNECTIONS, READ_TIMEOUT, SHUTDOWN_DEADLINE};

#[derive(Default)]
struct Counters {
    /// (project, model, HTTP status) → responses.
    responses: BTreeMap<(String, String, u16), u64>,
    /// (project, model, dimension) → 429 violations.
    limited: BTreeMap<(String, String, &'static str), u64>,
}

impl Counters {
    /// Counts `answer` to a call of `project` on `model`.
    fn count(&mut self, project: &str, model: &str, answer: &Answer) {
        *self
            .responses
            .entry((project.to_string(), model.to_string(), status_of(answer)))
            .or_default() += 1;
        let named: Vec<&'static str> = match answer {
            Answer::RateLimited { violated, .. } | Answer::Unservable { violated, .. } => {
                violated.iter().map(|d| d.name()).collect()
            }
            Answer::SpendCap => vec!["spend_cap"],
            _ => Vec::new(),
        };
        for d in named {
            *self
                .limited
                .entry((project.to_string(), model.to_string(), d))
                .or_default() += 1;
        }
    }
}

struct Shared {
    scenario: Scenario,
    server: Mutex<(Server, Counters)>,
    /// Real time is measured from here; virtual time 0 is `zero` nanoseconds after it (moved by
    /// `POST /flux/reset`, under the server's lock).
    epoch: Instant,
    zero: AtomicU64,
    scale: u64,
    next_id: AtomicU64,
    bodies: tokio::sync::Semaphore,
    /// Slots for the CPU work of requests, done off the async threads: see [`MAX_CPU_JOBS`].
    cpu: tokio::sync::Semaphore,
    /// Slots for Live frames being received: see [`crate::net::http::MAX_FRAMES`].
    frames: Arc<tokio::sync::Semaphore>,
    /// Live sessions' resumption handles and open sockets.
    resumptions: Mutex<live::Resumptions>,
}

impl Shared {
    fn now(&self) -> Nanos {
        let since = self
            .epoch
            .elapsed()
            .as_nanos()
            .saturating_sub(self.zero.load(Ordering::Relaxed) as u128);
        (since * self.scale as u128).min(u64::MAX as u128) as Nanos
    }

    fn real(&self, virtual_ns: Nanos) -> Duration {
        Duration::from_nanos(virtual_ns / self.scale)
    }
}

/// The key a request carries (`x-goog-api-key`, else `?key=`): `Err` is the body of the error
/// to send: 403 without a key, 400 API_KEY_INVALID for bytes that are not text, 400
/// INVALID_ARGUMENT for two key headers.
fn given_key(headers: &HeaderMap, query: &BTreeMap<String, String>) -> Result<String, Value> {
    let mut given = headers.get_all("x-goog-api-key").iter();
    match (given.next(), given.next()) {
        (Some(_), Some(_)) => Err(wire::error::invalid_argument(
            "The request carries the x-goog-api-key header more than once; send one key.",
        )),
        (Some(v), None) => v.to_str().map(str::to_string).map_err(|_| wire::error::invalid_key()),
        (None, _) => query.get("key").cloned().ok_or_else(wire::error::missing_key),
    }
}

/// The scenario's index of `key`, or 400 API_KEY_INVALID for a key it does not know (or
/// marks invalid).
fn known_key(s: &Shared, key: &str) -> Result<usize, Value> {
    if s.scenario.wire.standard_keys == crate::scenario::StandardKeys::Refused && key.starts_with("AIza") {
        return Err(wire::error::access_token_type_unsupported());
    }
    match s.scenario.topology.key_index(key) {
        Some(i) if s.scenario.topology.keys[i].valid => Ok(i),
        _ => Err(wire::error::invalid_key()),
    }
}

/// The router of a server for `scenario` whose quota windows run `time_scale` times faster.
pub fn router(scenario: Scenario, time_scale: u64) -> Router {
    let shared = Arc::new(Shared {
        server: Mutex::new((scenario.server(scenario.seed), Counters::default())),
        scenario,
        epoch: Instant::now(),
        zero: AtomicU64::new(0),
        scale: time_scale.max(1),
        next_id: AtomicU64::new(0),
        bodies: tokio::sync::Semaphore::new(MAX_BODIES),
        cpu: tokio::sync::Semaphore::new(MAX_CPU_JOBS),
        frames: Arc::new(tokio::sync::Semaphore::new(crate::net::http::MAX_FRAMES)),
        resumptions: Mutex::new(live::Resumptions::default()),
    });
    Router::new()
        .route("/{version}/models", get(list_models))
        .route("/{version}/models/{name}", get(get_model).post(call_model))
        .route("/flux/metrics", get(metrics))
        .route("/flux/ledger", get(ledger))
        .route("/flux/reset", axum::routing::post(reset))
        .merge(openai_compat::routes())
        .merge(live::routes())
        .method_not_allowed_fallback(crate::net::http::method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), late_errors))
        .with_state(shared)
}

/// An answer that is not a success reaches its client `server.error_latency` late (scaled
/// like every wait), as in a simulation: the round trip in which a burst's later sends leave
/// before the first 429 is back. Not serve's own endpoints (`/flux/…`), nor a Live
/// upgrade (`server.live` has its own delays).
async fn late_errors(State(s): State<Arc<Shared>>, req: Request, next: axum::middleware::Next) -> Response {
    let late = s.scenario.server.error_latency;
    let exempt = late == 0 || req.uri().path().starts_with("/flux/") || req.headers().contains_key(header::UPGRADE);
    let response = next.run(req).await;
    if !exempt && (response.status().is_client_error() || response.status().is_server_error()) {
        wait(s.real(late)).await;
    }
    response
}

/// Serves on `listener` until `shutdown` completes, then lets the requests in progress finish
/// for up to [`SHUTDOWN_DEADLINE`] and stops (a client holding a half-sent request cannot keep
/// it running). At most [`MAX_CONNECTIONS`] connections are served at once; a connection that
/// sends no complete request headers within [`READ_TIMEOUT`] is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    scenario: Scenario,
    time_scale: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, scenario, time_scale, None, shutdown).await
}

/// [`serve`], over TLS (HTTPS and WSS on the same port) when `tls` is given; a client that
/// does not finish its handshake within [`READ_TIMEOUT`] is dropped.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    scenario: Scenario,
    time_scale: u64,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(scenario, time_scale);
    crate::net::http::serve_connections(listener, app, tls, crate::net::http::connection_cap(1), shutdown).await
}

/// API versions served (the google-genai SDK calls `v1beta` or `v1`).
const VERSIONS: [&str; 3] = ["v1beta", "v1", "v1alpha"];

/// 404 for an API version serve does not serve.
fn check_version(version: &str) -> Result<(), Value> {
    if VERSIONS.contains(&version) {
        return Ok(());
    }
    let message = format!("API version {version} is not served; use one of {VERSIONS:?}.");
    Err(json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}))
}

/// Checks the API version and the key of a request: `Err` is the error body to send.
fn gate(s: &Shared, version: &str, headers: &HeaderMap, q: &BTreeMap<String, String>) -> Result<usize, Value> {
    check_version(version)?;
    known_key(s, &given_key(headers, q)?)
}

/// The query string, or the body of the 400 to send when it cannot be decoded.
fn query_of(q: Result<Query<BTreeMap<String, String>>, QueryRejection>) -> Result<BTreeMap<String, String>, Value> {
    q.map(|Query(q)| q)
        .map_err(|e| wire::error::invalid_argument(&format!("Invalid query string: {}", e.body_text())))
}

/// The path parameters, or the body of the 400 to send when they cannot be decoded.
fn path_of<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Value> {
    p.map(|Path(p)| p)
        .map_err(|e| wire::error::invalid_argument(&format!("Invalid request path: {}", e.body_text())))
}

async fn list_models(
    State(s): State<Arc<Shared>>,
    version: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let (version, q) = match (path_of(version), query_of(q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    if let Err(e) = gate(&s, &version, &headers, &q) {
        return error(e);
    }
    let names: Vec<&str> = s.scenario.models.iter().map(|m| m.name.as_str()).collect();
    let size = q.get("pageSize").or_else(|| q.get("page_size")).map(String::as_str);
    let token = q.get("pageToken").or_else(|| q.get("page_token")).map(String::as_str);
    match wire::response::models_page(&names, size, token) {
        Ok(page) => json_response(StatusCode::OK, &page),
        Err(m) => error(wire::error::invalid_argument(&m)),
    }
}

async fn get_model(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let ((version, name), q) = match (path_of(path), query_of(q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    if let Err(e) = gate(&s, &version, &headers, &q) {
        return error(e);
    }
    match s.scenario.model_index(&name) {
        Some(_) => json_response(StatusCode::OK, &wire::response::model_entry(&name)),
        None => error(wire::error::unknown_model(&name, &version, "generateContent")),
    }
}

async fn call_model(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    req: Request,
) -> Response {
    let ((version, name), q) = match (path_of(path), query_of(q)) {
        (Ok(v), Ok(q)) => (v, q),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    // Path, version, key and model first: a stranger's body is never read.
    let Some((model_name, method)) = name.split_once(':') else {
        return error(wire::error::unknown_model(&name, &version, "generateContent"));
    };
    let key = match gate(&s, &version, req.headers(), &q) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let Some(model) = s.scenario.model_index(model_name) else {
        return error(wire::error::unknown_model(model_name, &version, method));
    };
    if !matches!(
        method,
        "countTokens" | "generateContent" | "streamGenerateContent" | "embedContent" | "batchEmbedContents"
    ) {
        return error(wire::error::unknown_model(model_name, &version, method));
    }
    // Vertex AI's Priority PayGo header (only models on PayGo tell it apart).
    let priority = wire::request::priority_requested(
        req.headers()
            .get(wire::request::PRIORITY_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let body = match read_body(&s, req).await {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    match method {
        "embedContent" => embed_native(&s, key, model, &body, false).await,
        "batchEmbedContents" => embed_native(&s, key, model, &body, true).await,
        "countTokens" => match parse_generate(&s, &body).await {
            Ok(r) => json_response(StatusCode::OK, &json!({ "totalTokens": r.input_tokens })),
            Err(e) => error(e),
        },
        "generateContent" => generate(&s, key, model, &body, None, priority).await,
        "streamGenerateContent" => {
            let sse = Some(q.get("alt").is_some_and(|a| a == "sse"));
            generate(&s, key, model, &body, sse, priority).await
        }
        other => error(wire::error::unknown_model(model_name, &version, other)),
    }
}

/// Bodies parsed and answers written at once, each on a blocking thread (more wait their
/// turn): a request's JSON can take a while — a prompt showing a JSON template of 40,000
/// fields is a 1.5 MB body and a 1.2 MB answer — and the async threads stay free meanwhile
/// for every other request.
pub const MAX_CPU_JOBS: usize = 4;

/// Runs `work` (parsing a body, writing an answer) on a blocking thread once one of the
/// [`MAX_CPU_JOBS`] slots is free; `Err` is the 500 to answer if it panicked.
async fn off_thread<T: Send + 'static>(s: &Shared, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Value> {
    let _slot = s.cpu.acquire().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}))
}

/// [`wire::request::parse_generate`] off the async threads: `Err` is the error to answer.
async fn parse_generate(s: &Shared, body: &Bytes) -> Result<wire::request::GenerateRequest, Value> {
    let body = body.clone();
    off_thread(s, move || wire::request::parse_generate(&body))
        .await?
        .map_err(|m| wire::error::invalid_argument(&m))
}

/// A request's body, read as [`crate::net::http::read_body`] says.
async fn read_body(s: &Shared, req: Request) -> Result<Bytes, Value> {
    crate::net::http::read_body(&s.bodies, req).await
}

/// The output a call gets: the drawn size (trace workloads carry none: 256), cut at the
/// request's maximum, and the finish reason.
fn draw_output(s: &Shared, id: u64, max: Option<u64>) -> (u64, &'static str) {
    let drawn = drawn_output(s, id, 0x5e7e);
    match max {
        Some(m) if drawn > m => (m, "MAX_TOKENS"),
        _ => (drawn, "STOP"),
    }
}

/// An output length of the scenario's sizes for call `id`, from its own draw `part` (trace
/// workloads carry none: 256).
fn drawn_output(s: &Shared, id: u64, part: u32) -> u64 {
    match s.scenario.workload.output {
        TokenDist::Fixed(0) => 256,
        ref d => d.sample(&mut rng(s.scenario.seed, Stream::Workload, id, part)),
    }
}

/// The HTTP status serve answers `answer` with.
fn status_of(answer: &Answer) -> u16 {
    match answer {
        Answer::Ok { .. } => 200,
        Answer::RateLimited { .. } | Answer::Unservable { .. } | Answer::Capacity | Answer::SpendCap => 429,
        Answer::Unavailable => 503,
        _ => 400,
    }
}

/// Admits `calls` (input, output tokens) on `key` and `model` in order under one lock,
/// counting each answer. `Ok` is how long the slowest admitted response takes (real time);
/// `Err` the error envelope of the first call refused (those admitted before it stay counted).
fn admit(s: &Shared, key: usize, model: usize, id: u64, calls: &[(u64, u64)]) -> Result<Duration, Value> {
    admit_as(s, key, model, id, calls, false)
}

/// [`admit`], the calls sent with Priority PayGo's header when `priority`.
fn admit_as(
    s: &Shared,
    key: usize,
    model: usize,
    id: u64,
    calls: &[(u64, u64)],
    priority: bool,
) -> Result<Duration, Value> {
    let project = s.scenario.topology.keys[key].project;
    let p = &s.scenario.topology.projects[project];
    // A retired id's calls are counted, and refused, under the model whose quotas they draw on.
    let (_, quota_model) = routed(s, model);
    let model_name = &s.scenario.models[quota_model].name;
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    let now = s.now();
    let mut longest = 0;
    for (i, &(input_tokens, output_tokens)) in calls.iter().enumerate() {
        let call = Call {
            key: KeyRef::Known(key),
            model: Some(model),
            input_tokens,
            output_tokens,
            request: id + i as u64,
            attempt: 1,
            priority,
        };
        let answer = guard.0.handle(now, &call);
        guard.1.count(&p.name, model_name, &answer);
        let limits = p.limits[quota_model];
        let refused = match answer {
            Answer::Ok { completes_at, .. } => {
                longest = longest.max(completes_at - now);
                continue;
            }
            Answer::RateLimited {
                violated, retry_delay, ..
            } => wire::error::quota_exceeded(
                violated,
                &limits,
                &p.tier,
                model_name,
                Some(retry_delay.div_ceil(s.scale)),
            ),
            Answer::Unservable { violated, .. } => {
                wire::error::quota_exceeded(violated, &limits, &p.tier, model_name, None)
            }
            Answer::Unavailable => wire::error::unavailable(),
            Answer::Capacity => wire::error::capacity_exhausted(),
            Answer::SpendCap => wire::error::spend_cap_exhausted(),
            Answer::InvalidKey => wire::error::invalid_key(),
            Answer::MissingKey => wire::error::missing_key(),
            Answer::UnknownModel => wire::error::invalid_argument("unknown model"),
        };
        return Err(refused);
    }
    Ok(s.real(longest))
}

/// For model `model` as the call named it: `(served, quota)`, the model that serves its calls
/// and the model whose quotas they draw on — itself twice, or for a retired id re-routed
/// (`models.<name>.routed_to`) its target and, as `routed_quota` says, the target or itself.
fn routed(s: &Shared, model: usize) -> (usize, usize) {
    use crate::core::server::{Route, RouteQuota};
    match s.scenario.models[model].route {
        None => (model, model),
        Some(Route {
            to,
            quota: RouteQuota::Target,
        }) => (to, to),
        Some(Route {
            to,
            quota: RouteQuota::Own,
        }) => (to, model),
    }
}

/// When the chunks of a streamed response of `output` tokens taking `latency` go out: `(n,
/// first, step)`: n chunks of up to 64 tokens, the first at the time to first token (its
/// share of this response's jittered latency), the rest evenly at the token rate until the
/// latency.
fn schedule(s: &Shared, model: usize, latency: Duration, output: u64) -> (u64, Duration, Duration) {
    let chunks = output.div_ceil(64).max(1);
    let l = s.scenario.models[routed(s, model).0].latency;
    let base = l.ttft as f64 + output as f64 * 1e9 / l.tokens_per_second;
    let first = latency.mul_f64(if base > 0.0 {
        (l.ttft as f64 / base).clamp(0.0, 1.0)
    } else {
        1.0
    });
    let step = if chunks > 1 {
        latency.saturating_sub(first) / (chunks - 1) as u32
    } else {
        Duration::ZERO
    };
    (chunks, first, step)
}

/// `text` cut into `n` pieces of (nearly) equal numbers of characters, in one pass.
fn pieces(text: &str, n: u64) -> Vec<String> {
    let len = text.chars().count() as u64;
    let mut chars = text.chars();
    (0..n)
        .map(|i| {
            chars
                .by_ref()
                .take(((i + 1) * len / n - i * len / n) as usize)
                .collect()
        })
        .collect()
}

/// A streamed body: `frame(i)` for i in 0..n, the first after `first`, the others `step`
/// apart, then `tail` (if any) at once.
fn timed_stream(
    n: u64,
    first: Duration,
    step: Duration,
    frame: impl Fn(u64) -> String + Send + Sync + 'static,
    tail: Option<String>,
    content_type: &'static str,
) -> Response {
    let frame = Arc::new(frame);
    let stream = futures_util::stream::unfold((0u64, tail), move |(i, tail)| {
        let frame = frame.clone();
        async move {
            if i > n {
                return None;
            }
            if i == n {
                let t = tail?;
                return Some((Ok::<_, std::convert::Infallible>(Bytes::from(t)), (i + 1, None)));
            }
            let wait = if i == 0 { first } else { step };
            if wait >= Duration::from_millis(1) {
                tokio::time::sleep(wait).await;
            }
            Some((Ok(Bytes::from(frame(i))), (i + 1, tail)))
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The text of call `id`'s answer of `output` tokens in `format` (drawn from the seed),
/// written off the async threads; `Err` is the error to answer.
async fn answer_text(s: &Shared, id: u64, format: &structured::Format, output: u64) -> Result<String, Value> {
    let (format, seed) = (format.clone(), s.scenario.seed);
    off_thread(s, move || {
        structured::text(&format, output, &mut rng(seed, Stream::Workload, id, 0x7e47))
    })
    .await?
    .map_err(|m| wire::error::invalid_argument(&m))
}

/// Waits out a whole response's latency (tokio's timer counts whole milliseconds: a shorter
/// wait would take a full one).
async fn wait(latency: Duration) {
    if latency >= Duration::from_millis(1) {
        tokio::time::sleep(latency).await;
    }
}

/// Admits a call and answers it; `stream` is `Some(sse)` for streamGenerateContent;
/// `priority` when it carried Priority PayGo's header.
async fn generate(
    s: &Arc<Shared>,
    key: usize,
    model: usize,
    body: &Bytes,
    stream: Option<bool>,
    priority: bool,
) -> Response {
    let req = match parse_generate(s, body).await {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let (output, finish) = draw_output(s, id, req.max_output_tokens);
    let latency = match admit_as(s, key, model, id, &[(req.input_tokens, output)], priority) {
        Ok(l) => l,
        Err(e) => return error(e),
    };
    // Written only for an admitted call (parse_generate checked that the format can be met).
    let text = match answer_text(s, id, &req.format, output).await {
        Ok(t) => t,
        Err(e) => return error(e),
    };
    // modelVersion is "the model version used to generate the response" (the API reference):
    // for a retired id re-routed, the model that served it.
    let model_name = s.scenario.models[routed(s, model).0].name.clone();
    let response_id = format!("flux-{id:016x}");
    let Some(sse) = stream else {
        wait(latency).await;
        return json_response(
            StatusCode::OK,
            &wire::response::response(&text, req.input_tokens, output, Some(finish), &model_name, &response_id),
        );
    };
    // Usage is cumulative: chunk i reports the tokens streamed so far.
    let (n, first, step) = schedule(s, model, latency, output);
    let (prompt, pieces) = (req.input_tokens, pieces(&text, n));
    let frame = move |i: u64| {
        let last = i + 1 == n;
        let done = ((i + 1) * 64).min(output);
        let v = wire::response::response(
            &pieces[i as usize],
            prompt,
            done,
            last.then_some(finish),
            &model_name,
            &response_id,
        );
        if sse {
            format!("data: {v}\r\n\r\n")
        } else {
            format!(
                "{}{v}{}",
                if i == 0 { "[" } else { ",\r\n" },
                if last { "]" } else { "" }
            )
        }
    };
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    timed_stream(n, first, step, frame, None, content_type)
}

/// The texts of embedContent/batchEmbedContents, admitted as `server.embed_batch` says: `Ok`
/// is their tokens in all.
async fn embed(s: &Arc<Shared>, key: usize, model: usize, texts: &[String]) -> Result<u64, Value> {
    let id = s.next_id.fetch_add(texts.len().max(1) as u64, Ordering::Relaxed);
    let tokens: Vec<u64> = texts.iter().map(|t| wire::request::embed_tokens(t)).collect();
    let calls: Vec<(u64, u64)> = match s.scenario.wire.embed_batch {
        EmbedBatch::Each => tokens.iter().map(|&t| (t, 0)).collect(),
        EmbedBatch::One => vec![(tokens.iter().sum(), 0)],
    };
    let latency = admit(s, key, model, id, &calls)?;
    wait(latency).await;
    Ok(tokens.iter().sum())
}

/// `:embedContent` and `:batchEmbedContents`.
async fn embed_native(s: &Arc<Shared>, key: usize, model: usize, body: &Bytes, batch: bool) -> Response {
    let name = &s.scenario.models[model].name;
    let req = match wire::request::parse_embed(body, name, batch) {
        Ok(r) => r,
        Err(m) => return error(wire::error::invalid_argument(&m)),
    };
    if let Err(e) = embed(s, key, model, &req.texts).await {
        return error(e);
    }
    let seed = s.scenario.seed;
    let vectors: Vec<Value> = req
        .texts
        .iter()
        .zip(&req.dimensions)
        .map(|(t, d)| json!({"values": openai::embedding(seed, t, d.unwrap_or(openai::EMBED_DIMENSIONS))}))
        .collect();
    let body = if batch {
        json!({ "embeddings": vectors })
    } else {
        json!({ "embedding": vectors[0] })
    };
    json_response(StatusCode::OK, &body)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    let now = s.now();
    out.push_str("# HELP flux_responses_total Responses to generateContent calls by project, model and HTTP status.\n# TYPE flux_responses_total counter\n");
    for ((p, m, code), n) in &guard.1.responses {
        out.push_str(&format!(
            "flux_responses_total{{project=\"{p}\",model=\"{m}\",code=\"{code}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP flux_rate_limited_total Quota violations in 429 responses by project, model and dimension.\n# TYPE flux_rate_limited_total counter\n");
    for ((p, m, d), n) in &guard.1.limited {
        out.push_str(&format!(
            "flux_rate_limited_total{{project=\"{p}\",model=\"{m}\",dimension=\"{d}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP flux_window_usage Current use of each quota window.\n# TYPE flux_window_usage gauge\n");
    for (pi, p) in s.scenario.topology.projects.iter().enumerate() {
        for (mi, m) in s.scenario.models.iter().enumerate() {
            let u = guard.0.usage(now, pi, mi);
            for d in Dimension::ALL {
                if p.limits[mi].get(d).is_some() {
                    out.push_str(&format!(
                        "flux_window_usage{{project=\"{}\",model=\"{}\",dimension=\"{}\"}} {}\n",
                        p.name,
                        m.name,
                        d.name(),
                        u.get(d)
                    ));
                }
            }
        }
    }
    drop(guard);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// `POST /flux/reset`: a fresh server — empty ledger, counters at zero, virtual time 0 now —
/// so drives can be repeated against one `serve`. Only from a loopback address.
async fn reset(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if !peer.is_some_and(|ip| ip.is_loopback()) {
        return error(
            json!({"error": {"code": 403, "message": "/flux/reset is served to loopback clients only.", "status": "PERMISSION_DENIED"}}),
        );
    }
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    *guard = (s.scenario.server(s.scenario.seed), Counters::default());
    s.zero.store(
        s.epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
    drop(guard);
    json_response(StatusCode::OK, &json!({"reset": true, "virtual_time_ns": 0}))
}

async fn ledger(State(s): State<Arc<Shared>>) -> Response {
    let mut guard = s.server.lock().expect("no handler panics holding the lock");
    let now = s.now();
    let mut budgets = Vec::new();
    for (pi, p) in s.scenario.topology.projects.iter().enumerate() {
        for (mi, m) in s.scenario.models.iter().enumerate() {
            let u = guard.0.usage(now, pi, mi);
            let peak = guard.0.peak(pi, mi);
            budgets.push(json!({"project": p.name, "model": m.name, "limits": p.limits[mi], "usage": u, "peak": peak}));
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"virtual_time_ns": now, "time_scale": s.scale, "budgets": budgets}),
    )
}
