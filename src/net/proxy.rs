//! `flux-sim proxy`: a strategy (flux by default) in front of real traffic. Any Gemini client
//! sends its requests here with the proxy's token instead of a key; the proxy counts the
//! request's input tokens (serve's rule), asks the strategy for a key, a model and a time,
//! holds the request until then (a bounded queue, a deadline per request), forwards it upstream
//! with the chosen key, passes the answer through unchanged (streams included), and feeds the
//! outcome back to the strategy, retrying as the strategy's retry policy says while the
//! deadline allows. The strategy's clock is the real time elapsed since the proxy started.
//! A client that goes away gives back what its request held: a planned send is cancelled, a
//! send in flight is ended.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::core::ledger::{Admission, BudgetId, Ledger, Limits};
use crate::core::time::{format_duration, Calendar, Nanos};
use crate::net::http::{error, json_response, not_found};
use crate::net::shared_ledger::RedisLedger;
use crate::net::wire;
use crate::scenario::Scenario;
use crate::strategy::{Ask, Decision, GiveUp, Outcome, Param, Strategy, StrategySpec};

mod gate;
mod live;
mod openai;
mod prom;
pub mod route;
use gate::{Gate, Verdict};
use prom::{Refusal, Stats};
pub use route::{is_model_id, VERSIONS};
use route::{Call, Route};

/// Largest request body accepted, as serve.
pub const MAX_BODY: usize = crate::net::http::MAX_BODY;
/// Bytes of request bodies the proxy holds at once while their requests wait for their
/// moment (more: 429 at once), so that waiting clients cannot make it hold more than this.
pub const MAX_HELD_BYTES: usize = 256 << 20;
/// Largest error body read from the upstream (success bodies stream through unread).
const MAX_ERROR_BODY: usize = 1 << 20;

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where requests go: `https://generativelanguage.googleapis.com`, or a `serve`.
    pub upstream: String,
    /// What clients send instead of an API key.
    pub token: String,
    /// Longest a request may wait for its send, from its arrival.
    pub deadline: Duration,
    /// Requests that may wait at once; more get a 429 at once.
    pub queue: usize,
    /// `redis://host:port/db`: budgets shared with other proxies (none: this proxy's alone).
    pub ledger: Option<String>,
    /// How much later than planned a send may reach the server: flux's and exact_cooldown's
    /// plans and the shared ledger's minute windows hold entries this much longer (the
    /// proxy's own check before each send needs none: see `gate`).
    pub margin: Nanos,
    /// Start even if the shared ledger's Redis may evict keys (a warning instead of an error).
    pub allow_eviction: bool,
}

struct Proxy {
    scenario: Scenario,
    spec: StrategySpec,
    strategy: Mutex<Box<dyn Strategy>>,
    /// Signalled after every outcome or cancellation: deferred requests ask again.
    changed: tokio::sync::Notify,
    epoch: Instant,
    client: reqwest::Client,
    /// The upstream's base URL: every upstream URL is this plus segments the proxy checked.
    upstream: reqwest::Url,
    token: String,
    /// Request bodies read at once.
    bodies: tokio::sync::Semaphore,
    /// Large bodies parsed at once, off the proxy's thread ([`MAX_CPU_JOBS`]).
    cpu: tokio::sync::Semaphore,
    /// Kibibytes of request bodies held while waiting ([`MAX_HELD_BYTES`]).
    held: tokio::sync::Semaphore,
    deadline: Nanos,
    queue: tokio::sync::Semaphore,
    next_id: AtomicU64,
    counters: Mutex<BTreeMap<String, u64>>,
    /// Budgets shared with other proxies, checked just before each send.
    shared: Option<RedisLedger>,
    /// Names this proxy's records in the shared ledger.
    instance: String,
    /// What this proxy sent, per (project, model) at `project * models + model`, counted as
    /// the server counts it (for `/flux/ledger`).
    sent: Mutex<(Ledger, Vec<BudgetId>)>,
    /// The last check before each send (see `gate`), per (project, model) as `sent`.
    gate: Mutex<Gate>,
    /// Signalled when a send's arrival becomes known: sends waiting at the gate look again.
    gate_changed: tokio::sync::Notify,
    /// What `GET /metrics` shows, per (project, model).
    stats: Mutex<Stats>,
    /// Live sessions open in this proxy, per budget.
    slots: live::Slots,
    /// Requests waiting now (for `GET /metrics`).
    waiting: AtomicU64,
}

impl Proxy {
    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos().min(u64::MAX as u128) as Nanos
    }

    fn count(&self, what: impl Into<String>) {
        *self
            .counters
            .lock()
            .expect("no panic holds it")
            .entry(what.into())
            .or_default() += 1;
    }

    fn strategy(&self) -> std::sync::MutexGuard<'_, Box<dyn Strategy>> {
        self.strategy.lock().expect("no panic holds the strategy")
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().expect("no panic holds it")
    }

    /// The budget (`project * models + model`) of a send with `key` on `model`.
    fn budget(&self, key: usize, model: usize) -> usize {
        self.scenario.topology.keys[key].project * self.scenario.models.len() + model
    }

    /// When a key may have room for `ask`, as the strategy knows now: it is asked once more
    /// and what it plans is given back at once. `None` when it cannot say (it waits for
    /// answers in flight, or gives up).
    fn next_room(&self, ask: &Ask) -> Option<Nanos> {
        let now = self.now();
        let mut strategy = self.strategy();
        match strategy.decide(now, ask) {
            Decision::Send { key, model, at } => {
                strategy.cancel(now, ask, key, model, at);
                drop(strategy);
                self.changed.notify_waiters();
                Some(at.saturating_sub(now))
            }
            Decision::Later(at) | Decision::DeferUntil(at) => Some(at.saturating_sub(now)),
            Decision::Defer | Decision::GiveUp(_) => None,
        }
    }

    /// Sleeps until proxy time `at`.
    async fn sleep_until(&self, at: Nanos) {
        let now = self.now();
        if at > now {
            tokio::time::sleep(Duration::from_nanos(at - now)).await;
        }
    }
}

/// A send the strategy planned that has not happened yet: dropped armed (the client went
/// away), it is cancelled.
struct Planned<'a> {
    proxy: &'a Proxy,
    ask: Ask,
    key: usize,
    model: usize,
    at: Nanos,
    armed: bool,
}

impl Planned<'_> {
    /// Waits until the planned send of `ask` on `key` and `model` at `at` is due, then asks the
    /// strategy to confirm it; whether it goes. If the wait is dropped (the client left), the
    /// strategy is told the send is cancelled.
    async fn wait_and_confirm(proxy: &Proxy, ask: Ask, key: usize, model: usize, at: Nanos) -> bool {
        let mut planned = Planned {
            proxy,
            ask,
            key,
            model,
            at,
            armed: true,
        };
        proxy.sleep_until(at).await;
        let go = proxy.strategy().confirm(proxy.now(), &ask, key, model);
        planned.armed = false;
        go
    }
}

impl Drop for Planned<'_> {
    fn drop(&mut self) {
        if self.armed {
            let now = self.proxy.now();
            self.proxy
                .strategy()
                .cancel(now, &self.ask, self.key, self.model, self.at);
            self.proxy.count("cancelled");
            self.proxy.changed.notify_waiters();
        }
    }
}

/// A send in flight: its outcome goes to the strategy once, when known, or as an error if it
/// is dropped first (the client went away mid-answer).
struct InFlight {
    proxy: Arc<Proxy>,
    ask: Ask,
    key: usize,
    model: usize,
    sent: Nanos,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, outcome: &Outcome) {
        self.end(outcome, false);
    }

    /// The shared ledger refused it before it left (`refusal`: the 429 that stands for): the
    /// strategy withdraws it and keeps off its key until the ledger's wait is over.
    fn unsent(&mut self, refusal: &Outcome) {
        self.end(refusal, true);
    }

    /// It never left after all (a Live client that left while its session waited): the
    /// strategy gets its plan back.
    fn cancel(&mut self) {
        if !self.done {
            self.done = true;
            let now = self.proxy.now();
            self.proxy
                .strategy()
                .cancel(now, &self.ask, self.key, self.model, self.sent);
            self.proxy.changed.notify_waiters();
        }
    }

    /// Tells the strategy once: the outcome of the send, or its refusal before it left.
    fn end(&mut self, outcome: &Outcome, unsent: bool) {
        if !self.done {
            self.done = true;
            let now = self.proxy.now();
            let mut s = self.proxy.strategy();
            if unsent {
                s.unsent(now, &self.ask, self.key, self.model, self.sent, outcome);
            } else {
                s.on_outcome(now, &self.ask, self.key, self.model, self.sent, outcome);
            }
            drop(s);
            self.proxy.changed.notify_waiters();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(&Outcome::Error);
    }
}

/// The router of a proxy for `scenario`'s keys and limits, running `spec`; with
/// `opts.ledger`, connected to the shared ledger first. Days end at the real midnight in the
/// scenario's zone.
pub async fn router(scenario: Scenario, spec: StrategySpec, opts: &ProxyOptions) -> Result<Router, String> {
    Ok(router_and_closing(scenario, spec, opts).await?.0)
}

/// What a proxy does once it stops serving: gives back the slots its shared ledger admitted
/// in advance and it did not use.
pub struct Closing {
    shared: Option<RedisLedger>,
    epoch: Instant,
}

impl Closing {
    /// Gives the pre-admitted slots back (each call bounded by a second).
    pub async fn close(self) {
        if let Some(shared) = self.shared {
            let now = self.epoch.elapsed().as_nanos().min(u64::MAX as u128) as Nanos;
            shared.release(now, true, Duration::from_secs(1)).await;
        }
    }
}

/// As [`router`], with what to do when the proxy stops.
pub async fn router_and_closing(
    mut scenario: Scenario,
    mut spec: StrategySpec,
    opts: &ProxyOptions,
) -> Result<(Router, Closing), String> {
    // The margin is the strategy's too, with or without a shared ledger.
    if spec.kind.takes(Param::Margin) {
        spec.kind.params.margin = spec.kind.params.margin.max(opts.margin);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let shown = crate::core::topology::mask_secrets(&opts.upstream);
    let url = reqwest::Url::parse(&opts.upstream).map_err(|e| format!("upstream URL {shown:?}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.cannot_be_a_base()
    {
        return Err(format!(
            "upstream URL {shown:?}: expected http://host[:port] or https://host[:port]"
        ));
    }
    // The proxy's clock: time since now, and now on the calendar (the Unix clock proxies share).
    let start = chrono::Utc::now();
    let epoch = Instant::now();
    scenario.calendar = Calendar::new(start.fixed_offset(), scenario.calendar.tz());
    let shared = match &opts.ledger {
        Some(url) => {
            let ledger = RedisLedger::connect(url, scenario.calendar.clone(), "flux:", opts.margin).await?;
            let shown = crate::core::topology::mask_secrets(url);
            match ledger.eviction_risk().await {
                Ok(None) => {}
                Ok(Some(risk)) if opts.allow_eviction => {
                    eprintln!("flux-sim proxy: WARNING: Redis URL {shown:?}: {risk}")
                }
                Ok(Some(risk)) => return Err(format!("Redis URL {shown:?}: {risk}")),
                Err(e) => eprintln!(
                    "flux-sim proxy: WARNING: Redis URL {shown:?}: cannot check that Redis keeps the ledger's keys ({e}); make sure its maxmemory-policy is noeviction"
                ),
            }
            Some(ledger)
        }
        None => None,
    };
    let instance = format!("{}-{}", std::process::id(), start.timestamp_micros());
    let mut ledger = Ledger::new(scenario.calendar.clone(), scenario.server.ledger);
    let mut budgets = Vec::new();
    for p in &scenario.topology.projects {
        for l in &p.limits {
            budgets.push(ledger.add_budget(Limits { concurrent: None, ..*l }, 0));
        }
    }
    // The re-routes its configuration states are what its user knows: told, not learned
    // from a 429.
    let strategy = scenario.strategy_told_routes(&spec, scenario.seed);
    let proxy = Arc::new(Proxy {
        gate: Mutex::new(Gate::new(budgets.len())),
        gate_changed: tokio::sync::Notify::new(),
        stats: Mutex::new(Stats::default()),
        slots: live::Slots::default(),
        waiting: AtomicU64::new(0),
        sent: Mutex::new((ledger, budgets)),
        shared,
        instance,
        strategy: Mutex::new(strategy),
        spec,
        changed: tokio::sync::Notify::new(),
        epoch,
        client,
        upstream: url,
        bodies: tokio::sync::Semaphore::new(crate::net::http::MAX_BODIES),
        cpu: tokio::sync::Semaphore::new(MAX_CPU_JOBS),
        held: tokio::sync::Semaphore::new(MAX_HELD_BYTES >> 10),
        token: opts.token.clone(),
        deadline: opts.deadline.as_nanos().min(u64::MAX as u128) as Nanos,
        queue: tokio::sync::Semaphore::new(opts.queue),
        next_id: AtomicU64::new(0),
        counters: Mutex::new(BTreeMap::new()),
        scenario,
    });
    if proxy.shared.is_some() {
        tokio::spawn(watch_ledger(Arc::downgrade(&proxy)));
    }
    let closing = Closing {
        shared: proxy.shared.clone(),
        epoch,
    };
    let router = Router::new()
        .route("/{version}/models", get(list_models))
        .route("/{version}/models/{name}", get(get_model).post(call_model))
        .route("/{version}/openai/chat/completions", axum::routing::post(openai::chat))
        .route("/{version}/openai/embeddings", axum::routing::post(openai::embeddings))
        .route("/{version}/openai/models", get(openai::models))
        .route("/ws/{service}", get(live::connect))
        .route("/flux/metrics", get(metrics))
        .route("/metrics", get(prometheus))
        .route("/flux/ledger", get(ledger_view))
        .method_not_allowed_fallback(crate::net::http::method_not_allowed)
        .fallback(not_found)
        .with_state(proxy);
    Ok((router, closing))
}

/// The proxy's tokio runtime: one thread (tokio's current-thread scheduler). A request crosses
/// the client's, the upstream's and the ledger's connections, each a wake-up; on tokio's
/// multi-threaded scheduler many of those wake-ups also woke an idle worker thread (a futex
/// call, and on a virtual machine an idle CPU brought back), which was most of the proxy's
/// added latency, and more on a quiet machine than on a busy one (issue 28). One thread keeps
/// a request's hops on one CPU; a proxy's own work per request is a few tens of microseconds,
/// so one thread serves thousands of requests a second. Work that may take long (parsing a
/// large body) runs on blocking threads ([`MAX_CPU_JOBS`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Bodies parsed at once on blocking threads (more wait their turn), as serve does.
pub const MAX_CPU_JOBS: usize = 4;

/// Bodies up to this size are parsed on the proxy's thread (well under a millisecond);
/// larger ones on a blocking thread, so that a large body (a prompt with a 40,000-field JSON
/// template takes seconds) never holds up the other requests.
pub const PARSE_INLINE: usize = 64 << 10;

/// `parse(body)`, on a blocking thread if `body` is larger than [`PARSE_INLINE`]; `Err` is
/// the 500 to answer if the parse panicked.
async fn parse_body<T: Send + 'static>(
    p: &Proxy,
    body: &Bytes,
    parse: impl FnOnce(&[u8]) -> T + Send + 'static,
) -> Result<T, Value> {
    if body.len() <= PARSE_INLINE {
        return Ok(parse(body));
    }
    let _slot = p.cpu.acquire().await.expect("the semaphore is never closed");
    let body = body.clone();
    tokio::task::spawn_blocking(move || parse(&body))
        .await
        .map_err(|_| json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}))
}

/// Longest a request waits for the confirmation on its way of its budget's previous
/// pre-admitted send (which may bring a slot) before it asks the ledger itself: a few round
/// trips to a local Redis.
const PREFETCH_WAIT: Duration = Duration::from_millis(2);

/// Longest a pre-admitted send's confirmation waits for the send's answer's head before it
/// starts anyway.
const CONFIRM_AFTER: Duration = Duration::from_millis(1);

/// Longest wait for the shared ledger to confirm a pre-admitted send (off the request's path;
/// unconfirmed, the reservation counts for its window, which covers the send).
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// How often an idle proxy checks that its shared ledger answers (and, through the check,
/// reconnects to it), so that `/flux/metrics` and the log say when it is down and back.
pub const LEDGER_WATCH: Duration = Duration::from_millis(500);

/// Pings the shared ledger every [`LEDGER_WATCH`] while the proxy lives, and gives back the
/// slots it pre-admitted that were not used within
/// [`PREFETCH_LIFE`](crate::net::shared_ledger::PREFETCH_LIFE).
async fn watch_ledger(proxy: std::sync::Weak<Proxy>) {
    loop {
        tokio::time::sleep(LEDGER_WATCH).await;
        let Some((shared, now)) = proxy.upgrade().and_then(|p| Some((p.shared.clone()?, p.now()))) else {
            return;
        };
        // Slots reserved in advance and not used in time go back to the fleet.
        shared.release(now, false, LEDGER_WATCH).await;
        let _ = shared.ping(LEDGER_WATCH).await;
    }
}

/// Serves the proxy on `listener` until `shutdown` completes.
pub async fn proxy(
    listener: tokio::net::TcpListener,
    scenario: Scenario,
    spec: StrategySpec,
    opts: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (app, closing) = router_and_closing(scenario, spec, &opts).await?;
    let served = serve_router(listener, app, None, shutdown).await;
    closing.close().await;
    served
}

/// Serves a proxy's [`router`] on `listener` until `shutdown` completes, with serve's
/// connection hardening ([`crate::net::http::serve_connections`]); over TLS (HTTPS and WSS on
/// the same port) when `tls` is given.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // Two descriptors a connection: the client's and the upstream's.
    crate::net::http::serve_connections(listener, app, tls, crate::net::http::connection_cap(2), shutdown)
        .await
        .map_err(|e| format!("proxy stopped: {e}"))
}

/// Checks the proxy token a client sends where a key would go (`x-goog-api-key`, else
/// `?key=`): the error body otherwise (403 without one, 400 API_KEY_INVALID for another, 400
/// for two).
fn check_token(p: &Proxy, headers: &HeaderMap, in_query: &[&str]) -> Result<(), Value> {
    let mut headed = headers.get_all("x-goog-api-key").iter();
    let given = match (headed.next(), headed.next()) {
        (Some(_), Some(_)) => {
            return Err(wire::error::invalid_argument(
                "The request carries the x-goog-api-key header more than once; send one key.",
            ))
        }
        (Some(v), None) => v.to_str().map_err(|_| wire::error::invalid_key())?.to_string(),
        (None, _) => match *in_query {
            [] => return Err(wire::error::missing_key()),
            [k] => k.to_string(),
            _ => {
                return Err(wire::error::invalid_argument(
                    "The request carries ?key= more than once; send one key.",
                ))
            }
        },
    };
    if given == p.token {
        Ok(())
    } else {
        Err(wire::error::invalid_key())
    }
}

/// The `?key=` values of a checked query (the OpenAI and Live routes).
fn keys_of(query: &[(String, String)]) -> Vec<&str> {
    query
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// For the OpenAI and Live routes, whose paths axum's router has matched: the API version
/// must be one of [`VERSIONS`], or the 404 to answer ([`route::forwarded_version`], as the
/// native routes).
fn classify_version(version: &str) -> Result<(), Value> {
    route::forwarded_version(version).map(|_| ())
}

/// The query parameters of a request on the OpenAI and Live routes, checked as the native
/// routes' ([`route::query_pairs`]): `Err` is the 400 to answer.
fn query_of(q: &RawQuery) -> Result<Vec<(String, String)>, Value> {
    route::query_pairs(q.0.as_deref().unwrap_or(""))
}

/// The path parameters, or the 400 to answer when they cannot be decoded.
fn path_of<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Value> {
    p.map(|Path(p)| p)
        .map_err(|e| wire::error::invalid_argument(&format!("Invalid request path: {}", e.body_text())))
}

/// The upstream URL of the checked path `segments` and the checked `query` less its `key`
/// (the token never goes upstream): every segment and value is percent-encoded, so none can
/// add a path, a query or a fragment. (Native calls build theirs with [`Route::upstream_url`].)
fn upstream_url(p: &Proxy, segments: &[&str], query: &[(String, String)]) -> reqwest::Url {
    let mut url = p.upstream.clone();
    url.path_segments_mut()
        .expect("checked at start: a base URL")
        .pop_if_empty()
        .extend(segments);
    route::forward_query(&mut url, query);
    url
}

/// The first valid key, for calls that spend no quota (model lists, countTokens).
fn any_key(p: &Proxy) -> Option<&str> {
    p.scenario
        .topology
        .keys
        .iter()
        .find(|k| k.valid)
        .map(|k| k.value.as_str())
}

/// A response with the upstream answer's status and content type, and no body yet.
fn head_of(resp: &reqwest::Response) -> Response {
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = resp.headers().get(reqwest::header::CONTENT_TYPE) {
        if let Ok(ct) = header::HeaderValue::from_bytes(ct.as_bytes()) {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
    }
    out
}

/// An upstream answer passed through: status, content type and body, streamed.
fn pass_through(resp: reqwest::Response) -> Response {
    let mut out = head_of(&resp);
    *out.body_mut() = Body::from_stream(resp.bytes_stream());
    out
}

/// Forwards a call that spends no generateContent quota (`what`: its name in the metrics)
/// with any key, to `url`.
async fn forward_free(
    p: &Proxy,
    what: &str,
    method: reqwest::Method,
    url: reqwest::Url,
    body: Option<Bytes>,
) -> Response {
    let Some(key) = any_key(p) else {
        return error(wire::error::upstream_unreachable("the configuration has no valid key"));
    };
    p.count(format!("forwarded_{what}"));
    let mut r = p.client.request(method, url).header("x-goog-api-key", key);
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    match tokio::time::timeout(Duration::from_nanos(p.deadline), r.send()).await {
        Ok(Ok(resp)) => pass_through(resp),
        Ok(Err(e)) => error(wire::error::upstream_unreachable(&describe(e))),
        Err(_) => {
            p.count("upstream_timeout");
            error(upstream_timeout(p.deadline))
        }
    }
}

/// 504 DEADLINE_EXCEEDED: the upstream did not start answering within the request's deadline.
fn upstream_timeout(deadline: Nanos) -> Value {
    let message = format!(
        "flux-sim proxy: the upstream did not answer within the request's deadline ({}).",
        format_duration(deadline)
    );
    json!({"error": {"code": 504, "message": message, "status": "DEADLINE_EXCEEDED"}})
}

/// A transport error in words, without the URL (which is the proxy's own configuration).
fn describe(e: reqwest::Error) -> String {
    let mut chain = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    crate::core::topology::mask_secrets(&format!("{}{chain}", e.without_url()))
}

async fn list_models(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    forward(p, req).await
}

async fn get_model(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    forward(p, req).await
}

async fn call_model(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    forward(p, req).await
}

/// Forwards a request the proxy can classify ([`route::classify`]) and that carries its token;
/// answers anything else with Google's envelope. The path and the token first: a stranger's
/// body is never read.
async fn forward(p: Arc<Proxy>, req: Request) -> Response {
    let route = match route::classify(req.method().as_str(), req.uri().path(), req.uri().query()) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    if let Err(e) = check_token(&p, req.headers(), &route.keys().collect::<Vec<_>>()) {
        return error(e);
    }
    let (what, method) = match route.call {
        Call::ListModels => ("list_models", reqwest::Method::GET),
        Call::GetModel => ("get_model", reqwest::Method::GET),
        Call::CountTokens => ("countTokens", reqwest::Method::POST),
        Call::Generate | Call::StreamGenerate => ("generate", reqwest::Method::POST),
        Call::Embed | Call::BatchEmbed => ("embed", reqwest::Method::POST),
    };
    if method == reqwest::Method::GET {
        let url = route.upstream_url(&p.upstream, None);
        return forward_free(&p, what, method, url, None).await;
    }
    let model = match route.call.spends_quota() {
        false => None,
        true => {
            let name = route.model.as_deref().unwrap_or_default();
            match p.scenario.model_index(name) {
                Some(m) => Some(m),
                None => {
                    let shown = route.call.method().unwrap_or_default();
                    return error(wire::error::unknown_model(name, route.version, shown));
                }
            }
        }
    };
    let body = match crate::net::http::read_body(&p.bodies, req).await {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let Ok(_held) = p.held.try_acquire_many((body.len().div_ceil(1024) as u32).max(1)) else {
        p.count("memory_full");
        if let Some(m) = model {
            p.stats().refused(m, None, Refusal::MemoryFull);
        }
        return refusal(
            "flux-sim proxy: too many request bytes are waiting; retry shortly.",
            Some(crate::core::time::SECOND),
        );
    };
    match model {
        None => {
            let url = route.upstream_url(&p.upstream, None);
            forward_free(&p, what, method, url, Some(body)).await
        }
        Some(model) => match route.call {
            Call::Embed => embed(p.clone(), &route, model, body, false).await,
            Call::BatchEmbed => embed(p.clone(), &route, model, body, true).await,
            _ => generate(p.clone(), &route, model, body).await,
        },
    }
}

/// Why a request gets no send: the response to give.
fn refusal(message: &str, retry: Option<Nanos>) -> Response {
    error(wire::error::proxy_refusal(message, retry))
}

/// The proxy's own refusal of a request: its words, when a key may have room (if known), and
/// its reason for `GET /metrics`.
struct Refused {
    message: String,
    retry: Option<Nanos>,
    why: Refusal,
    /// The project of the key the strategy chose, if it chose one.
    project: Option<usize>,
}

impl Refused {
    fn new(message: impl Into<String>, retry: Option<Nanos>, why: Refusal) -> Self {
        Refused {
            message: message.into(),
            retry,
            why,
            project: None,
        }
    }
}

/// The upstream's latest error answer to a request, kept in case no retry fits its deadline.
struct Last {
    head: Response,
    status: u16,
    body: Vec<u8>,
    /// When it came (proxy time), and the retry delay it said.
    at: Nanos,
    retry: Option<Nanos>,
}

/// The answer to a request the proxy stops trying: the upstream's latest error if there was
/// one, else the proxy's own 429. An upstream 429 passed on after the proxy itself waited
/// would carry a stale delay (the upstream's, from when it answered): its RetryInfo and message
/// say instead when a key has room as the proxy knows it (`refused.retry`), else the instant
/// the upstream named, counted from now.
fn give_up(p: &Proxy, model: usize, project: Option<usize>, refused: Refused, last: Option<Last>) -> Response {
    p.stats().refused(model, refused.project.or(project), refused.why);
    let Some(last) = last else {
        return refusal(&refused.message, refused.retry);
    };
    let mut answer = last.head;
    let mut body = last.body;
    if last.status == 429 {
        let now = p.now();
        let retry = refused
            .retry
            .or_else(|| last.retry.map(|d| last.at.saturating_add(d).saturating_sub(now)));
        if let Some(fixed) = retry.and_then(|r| wire::error::with_retry_delay(&body, r)) {
            body = fixed;
        }
    }
    *answer.body_mut() = Body::from(body);
    answer
}

/// Asks the strategy until it plans a send no later than `deadline` (proxy time): the key,
/// model and time, or why not (with when a key may have room, if known).
async fn decide(p: &Proxy, ask: &Ask, deadline: Nanos, held: &mut bool) -> Result<(usize, usize, Nanos), Refused> {
    loop {
        let notified = p.changed.notified();
        tokio::pin!(notified);
        // Registered before deciding: an outcome between the decision and the wait wakes it.
        notified.as_mut().enable();
        let now = p.now();
        let decision = p.strategy().decide(now, ask);
        match decision {
            // Sent only where the answer can still come back before the deadline (as long as
            // the longest of the budget's recent answers took): one sent at the deadline's edge was
            // charged by the upstream and its answer cut off, a 504 (google-genai, 8 threads,
            // `slots-learned-late`: 9-10 of 24 calls a run).
            Decision::Send { key, model, at }
                if at.saturating_add(p.stats().answer_time(p.budget(key, model))) <= deadline =>
            {
                *held |= at > now;
                return Ok((key, model, at));
            }
            Decision::Send { key, model, at } => {
                p.strategy().cancel(now, ask, key, model, at);
                p.changed.notify_waiters();
                p.count("deadline");
                return Err(Refused::new(
                    format!(
                        "flux-sim proxy: no key has room for this request early enough for its answer before its deadline ({}).",
                        format_duration(p.deadline)
                    ),
                    Some(at - now),
                    Refusal::Deadline,
                ));
            }
            Decision::Later(at) => {
                *held = true;
                p.sleep_until(at.min(deadline)).await
            }
            Decision::Defer => {
                *held = true;
                let wait = Duration::from_nanos(deadline.saturating_sub(now));
                let _ = tokio::time::timeout(wait, notified).await;
            }
            // Woken by an outcome or at `at`, whichever comes first.
            Decision::DeferUntil(at) => {
                *held = true;
                let wait = Duration::from_nanos(at.min(deadline).saturating_sub(now));
                let _ = tokio::time::timeout(wait, notified).await;
            }
            Decision::GiveUp(why) => {
                p.count("refused");
                let (message, why) = match why {
                    GiveUp::Unservable => (
                        "flux-sim proxy: this request can never fit the limits of any key.",
                        Refusal::Unservable,
                    ),
                    GiveUp::Exhausted => (
                        "flux-sim proxy: no key or model is left to try today.",
                        Refusal::Exhausted,
                    ),
                };
                return Err(Refused::new(message, None, why));
            }
        }
        if p.now() >= deadline {
            p.count("deadline");
            return Err(Refused::new(
                format!(
                    "flux-sim proxy: the request waited its whole deadline ({}) without a key with room.",
                    format_duration(p.deadline)
                ),
                p.next_room(ask),
                Refusal::Deadline,
            ));
        }
    }
}

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A send on a slot the shared ledger admitted in advance: dropped once the send has left (or
/// with the request), it spawns the ledger's confirmation, which starts when the answer's head
/// is back (`head` closed) or [`CONFIRM_AFTER`] later, off the request's path, and may reserve
/// the next slot ([`RedisLedger::confirm`]). The slot's entry counts from its reservation
/// until a window after the latest instant it could be used, so a late confirmation (or none)
/// never frees the fleet's windows early.
struct Confirm {
    shared: Option<RedisLedger>,
    proxy: Arc<Proxy>,
    budget: String,
    limits: Limits,
    taken: Option<crate::net::shared_ledger::Reservation>,
    tokens: u64,
    reserve: Option<u64>,
    /// Closed when the send's answer's head is back (or the send is dropped).
    head: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Drop for Confirm {
    fn drop(&mut self) {
        let (Some(shared), Some(taken)) = (self.shared.take(), self.taken.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (budget, limits, tokens, reserve) =
            (std::mem::take(&mut self.budget), self.limits, self.tokens, self.reserve);
        let (proxy, head) = (self.proxy.clone(), self.head.take());
        runtime.spawn(async move {
            match head {
                // The answer's head (its sender dropped), or CONFIRM_AFTER, whichever first.
                Some(head) => {
                    let _ = tokio::time::timeout(CONFIRM_AFTER, head).await;
                }
                None => tokio::task::yield_now().await,
            }
            let now = proxy.now();
            drop(proxy);
            let _ = shared
                .confirm(now, &budget, limits, taken, tokens, reserve, CONFIRM_WITHIN)
                .await;
        });
    }
}

/// Where a scheduled call goes upstream.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// `/{version}/models/{model}:{method}` (generateContent, streamGenerateContent), the key
    /// in `x-goog-api-key`.
    Native { route: &'a Route },
    /// `/{version}/openai/{endpoint}` (`chat/completions`, `embeddings`), the model named in
    /// the body, the key as a bearer token.
    OpenAi { version: &'a str, endpoint: &'static str },
}

/// An error body of the OpenAI-compatible endpoint, which may come wrapped in a list, as the
/// native endpoint writes it.
fn unwrapped(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(mut a)) if a.len() == 1 => {
            std::borrow::Cow::Owned(serde_json::to_vec(&a.remove(0)).unwrap_or_default())
        }
        _ => std::borrow::Cow::Borrowed(body),
    }
}

/// Schedules, forwards and retries one generateContent or streamGenerateContent call.
async fn generate(p: Arc<Proxy>, route: &Route, model: usize, body: Bytes) -> Response {
    let parsed = match parse_body(&p, &body, wire::request::parse_generate).await {
        Ok(Ok(r)) => r,
        Ok(Err(m)) => return error(wire::error::invalid_argument(&m)),
        Err(e) => return error(e),
    };
    let target = Target::Native { route };
    let output = parsed.max_output_tokens.unwrap_or(0);
    schedule(p, target, model, parsed.input_tokens, output, 1, body).await
}

/// The requests and tokens a call embedding `texts` counts for, as serve counts them: each
/// text its [`wire::request::embed_tokens`], and each text one request or the call one
/// (`server.embed_batch`).
fn embed_cost(p: &Proxy, texts: &[String]) -> (u64, u64) {
    let tokens = texts.iter().map(|t| wire::request::embed_tokens(t)).sum();
    let requests = match p.scenario.wire.embed_batch {
        crate::scenario::EmbedBatch::Each => texts.len().max(1) as u64,
        crate::scenario::EmbedBatch::One => 1,
    };
    (requests, tokens)
}

/// Schedules, forwards and retries one embedContent or batchEmbedContents call (`batch`),
/// counted as serve counts it ([`embed_cost`]); sent to the model the strategy chose, which
/// the body's `model` fields then name too.
async fn embed(p: Arc<Proxy>, route: &Route, model: usize, body: Bytes, batch: bool) -> Response {
    let name = p.scenario.models[model].name.clone();
    let parsed = match parse_body(&p, &body, move |b| wire::request::parse_embed(b, &name, batch)).await {
        Ok(Ok(r)) => r,
        Ok(Err(m)) => return error(wire::error::invalid_argument(&m)),
        Err(e) => return error(e),
    };
    let (requests, tokens) = embed_cost(&p, &parsed.texts);
    schedule(p, Target::Native { route }, model, tokens, 0, requests, body).await
}

/// An embedContent or batchEmbedContents body whose `model` fields (where given) name `model`
/// instead of the one the client asked for.
fn embed_body_for(body: &Bytes, model: &str) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    let name = Value::String(format!("models/{model}"));
    if let Some(requests) = v.get_mut("requests").and_then(Value::as_array_mut) {
        for r in requests.iter_mut().filter(|r| r.get("model").is_some()) {
            r["model"] = name.clone();
        }
    } else if v.get("model").is_some() {
        v["model"] = name;
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// Schedules, forwards and retries one call for `model` of `input` tokens asking for `output`
/// (its body already checked), to `target`; the call counts as `requests` requests at the
/// upstream (1 but for a batch of embeddings: the strategy plans it as one request, the gate
/// and the shared ledger count each).
#[allow(clippy::too_many_arguments)]
async fn schedule(
    p: Arc<Proxy>,
    target: Target<'_>,
    model: usize,
    input: u64,
    output: u64,
    requests: u64,
    body: Bytes,
) -> Response {
    let mut ask = Ask {
        request: p.next_id.fetch_add(1, Ordering::Relaxed),
        input_tokens: input,
        output_tokens: output,
        model,
        attempts: 0,
    };
    let Ok(_slot) = p.queue.try_acquire() else {
        p.count("queue_full");
        // When to come back: when a key would have room for it, as the strategy plans now.
        let retry = p.next_room(&ask);
        let refused = Refused::new(
            "flux-sim proxy: too many requests are waiting.",
            retry,
            Refusal::QueueFull,
        );
        return give_up(&p, model, None, refused, None);
    };
    let _waiting = Waiting::new(&p.waiting);
    let arrived = p.now();
    let deadline = arrived.saturating_add(p.deadline);
    let cost = p.scenario.server.tpm_counts.cost(ask.input_tokens, ask.output_tokens);
    // The upstream's latest error: what the client gets if no retry fits its deadline.
    let mut last: Option<Last> = None;
    let mut held = false;
    let mut project = None;
    loop {
        let (key, model, at) = match decide(&p, &ask, deadline, &mut held).await {
            Ok(d) => d,
            Err(r) => return give_up(&p, ask.model, project, r, last),
        };
        if !Planned::wait_and_confirm(&p, ask, key, model, at).await {
            continue;
        }
        let budget = p.budget(key, model);
        project = Some(p.scenario.topology.keys[key].project);
        let limits = p.scenario.topology.projects[p.scenario.topology.keys[key].project].limits[model];
        let mut gated = false;
        // Held by the gate, it still goes only where its answer can beat the deadline (as in
        // `decide`): sends held until their window freed left with less time than their answer
        // took, and the upstream charged three answers cut off (8 threads, 3 slots, session 37).
        let latest = deadline.saturating_sub(p.stats().answer_time(budget));
        let pass = match through_gate(&p, budget, &limits, requests, cost, latest, &mut gated).await {
            Ok(id) => id,
            Err(retry) => {
                // Not sent: the strategy gets its plan back.
                let now = p.now();
                p.strategy().cancel(now, &ask, key, model, at);
                p.changed.notify_waiters();
                p.count("deadline");
                let message = format!(
                    "flux-sim proxy: no key has room for this request before its deadline ({}).",
                    format_duration(p.deadline)
                );
                let refused = Refused::new(message, retry.map(|r| r.saturating_sub(now)), Refusal::Deadline);
                return give_up(&p, model, project, refused, last);
            }
        };
        held |= gated;
        // Held by the gate, the send goes later than the strategy decided it, which may have
        // learned meanwhile that the decision no longer holds (a 429 on the same key: its day
        // spent). It confirms the send again, as a planned one, or the request is decided
        // anew. Sent as decided, a request held a minute by the gate met a per-day 429 the
        // strategy had already learned (google-genai through a proxy told no limits: 3 of 7).
        if gated && !p.strategy().confirm(p.now(), &ask, key, model) {
            p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
            p.gate_changed.notify_waiters();
            p.changed.notify_waiters();
            p.count("regated");
            continue;
        }
        let now = p.now();
        ask.attempts += 1;
        let mut flight = InFlight {
            proxy: p.clone(),
            ask,
            key,
            model,
            sent: now,
            done: false,
        };
        // A pre-admitted send's confirmation, made once its answer's head is back (or the
        // request is dropped): off the request's path.
        let mut confirm: Option<Confirm> = None;
        if let Some(shared) = &p.shared {
            // The fleet's budget has the last word: a refusal teaches the strategy as a 429
            // would, without spending a request.
            let project = &p.scenario.topology.projects[p.scenario.topology.keys[key].project];
            let name = format!("{}:{}", project.name, p.scenario.models[model].name);
            let limits = Limits {
                concurrent: None,
                ..project.limits[model]
            };
            let member = format!("{}-{}-{}", p.instance, ask.request, ask.attempts);
            // Pre-admission (issue 28): a slot the ledger admitted in advance sends this
            // request at once; the ledger hears of it off the request's path. The next slot
            // reserved holds twice this request's tokens, so that a somewhat larger one fits.
            let reserve = (requests == 1).then(|| cost.saturating_mul(2).max(1));
            let left = Duration::from_nanos(deadline.saturating_sub(now));
            let mut pre = shared
                .take_or_wait(&name, requests, cost, left.min(PREFETCH_WAIT))
                .await;
            let now = p.now();
            let answer = match pre {
                Some(_) => Ok(Admission::Admitted),
                None => {
                    p.count("shared_ledger_asked");
                    let left = Duration::from_nanos(deadline.saturating_sub(now));
                    let asked = std::time::Instant::now();
                    let answer = shared
                        .admit_reserving(now, &name, limits, requests, cost, &member, left, reserve)
                        .await;
                    let took = asked.elapsed().as_nanos().min(u64::MAX as u128) as Nanos;
                    let answered = match &answer {
                        Ok(Admission::Admitted) => Some(true),
                        Ok(_) => Some(false),
                        Err(_) => None,
                    };
                    p.stats().ledger(budget, took, answered);
                    answer
                }
            };
            // Refused while a confirmation brought this proxy a slot: that slot is the
            // fleet's admission, made for a request like this one.
            let answer = match answer {
                Ok(Admission::Rejected { .. }) if pre.is_none() => match shared.take(&name, requests, cost) {
                    Some(r) => {
                        pre = Some(r);
                        Ok(Admission::Admitted)
                    }
                    None => answer,
                },
                a => a,
            };
            if let Some(taken) = pre {
                p.count("shared_ledger_preadmitted");
                p.stats().preadmitted(budget);
                confirm = Some(Confirm {
                    shared: Some(shared.clone()),
                    proxy: p.clone(),
                    budget: name,
                    limits,
                    taken: Some(taken),
                    tokens: cost,
                    reserve,
                    head: None,
                });
            }
            match answer {
                Ok(Admission::Admitted) => {}
                Ok(Admission::Rejected { violated, retry_at }) => {
                    p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
                    p.gate_changed.notify_waiters();
                    p.count("shared_ledger_refused");
                    held = true;
                    flight.unsent(&Outcome::RateLimited {
                        violated,
                        retry_delay: Some(retry_at - now),
                        quota: limits.only(violated),
                        quota_model: None,
                    });
                    continue;
                }
                Ok(Admission::Unservable { violated }) => {
                    p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
                    p.gate_changed.notify_waiters();
                    flight.finish(&Outcome::Unservable {
                        quota: limits.only(violated),
                    });
                    p.stats()
                        .refused(model, Some(p.scenario.topology.keys[key].project), Refusal::Unservable);
                    return refusal(
                        "flux-sim proxy: this request can never fit the limits of any key.",
                        None,
                    );
                }
                Err(e) => {
                    // Fail closed: never send what the fleet's ledger has not admitted. Come
                    // back once the proxy has tried to reach the ledger again.
                    p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
                    p.gate_changed.notify_waiters();
                    flight.finish(&Outcome::Unavailable);
                    p.count("shared_ledger_down");
                    p.stats()
                        .refused(model, Some(p.scenario.topology.keys[key].project), Refusal::LedgerDown);
                    let retry = crate::net::shared_ledger::RETRY_AFTER_OUTAGE.as_nanos() as Nanos;
                    return error(wire::error::shared_ledger_down(&e, retry));
                }
            }
        }
        {
            let mut book = p.sent.lock().expect("no panic holds it");
            let b = book.1[budget];
            book.0.force(now, b, None, cost, now);
            for _ in 1..requests {
                book.0.force(now, b, None, 0, now);
            }
        }
        {
            let mut stats = p.stats();
            stats.admitted(budget, held, now.saturating_sub(arrived));
            stats.late(budget, now.saturating_sub(at));
        }
        let key_value = &p.scenario.topology.keys[key].value;
        let request = match target {
            Target::Native { route } => {
                let chosen = &p.scenario.models[model].name;
                // An embedding's body may name the model: the one chosen, if the strategy
                // chose another.
                let body = match route.call {
                    Call::Embed | Call::BatchEmbed if model != ask.model => embed_body_for(&body, chosen),
                    _ => body.clone(),
                };
                p.client
                    .post(route.upstream_url(&p.upstream, Some(chosen)))
                    .header("x-goog-api-key", key_value)
                    .body(body)
            }
            Target::OpenAi { version, endpoint } => {
                // The strategy may have chosen another model than the body names.
                let body = if model == ask.model {
                    body.clone()
                } else {
                    let mut v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    v["model"] = Value::String(p.scenario.models[model].name.clone());
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                };
                let mut segments = vec![version, "openai"];
                segments.extend(endpoint.split('/'));
                p.client
                    .post(upstream_url(&p, &segments, &[]))
                    .header(header::AUTHORIZATION, format!("Bearer {key_value}"))
                    .body(body)
            }
        };
        let send = request.header("content-type", "application/json").send();
        // The wait for the answer's head is bounded by the request's deadline too.
        let left = Duration::from_nanos(deadline.saturating_sub(p.now()));
        // A pre-admitted send's confirmation starts once the send has left: when its answer's
        // head is back, or CONFIRM_AFTER after it left if the upstream takes longer (so that
        // the work lands after a fast answer, and a slow one does not keep the budget's next
        // slot from concurrent requests).
        let (head_back, head_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(c) = confirm.as_mut() {
            c.head = Some(head_rx);
        }
        let reply = tokio::time::timeout(left, async {
            let mut send = std::pin::pin!(send);
            // The send's first poll hands it to its connection's task, queued before the
            // confirmation spawned below.
            let first = futures_util::poll!(send.as_mut());
            drop(confirm);
            match first {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => send.await,
            }
        })
        .await;
        drop(head_back);
        let head = p.now();
        p.stats().head(budget, head.saturating_sub(now), reply.is_ok());
        p.gate.lock().expect("no panic holds it").answered(budget, pass, head);
        p.gate_changed.notify_waiters();
        let (outcome, answer) = match reply {
            Err(_) => {
                p.count("upstream_timeout");
                flight.finish(&Outcome::Error);
                return match last {
                    Some(l) => give_up(&p, model, project, Refused::new("", None, Refusal::Deadline), Some(l)),
                    None => error(upstream_timeout(p.deadline)),
                };
            }
            Ok(reply) => match reply {
                Err(e) => {
                    p.count("upstream_unreachable");
                    let head = error(wire::error::upstream_unreachable(&describe(e)));
                    let status = head.status().as_u16();
                    let (head, body) = head.into_parts();
                    let body = axum::body::to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
                    let answer = Last {
                        head: Response::from_parts(head, Body::empty()),
                        status,
                        body: body.to_vec(),
                        at: p.now(),
                        retry: None,
                    };
                    (Outcome::Unavailable, answer)
                }
                Ok(resp) if resp.status().is_success() => {
                    p.count(format!("upstream_{}", resp.status().as_u16()));
                    p.stats().upstream(budget, resp.status().as_u16());
                    return stream_through(resp, flight);
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    p.count(format!("upstream_{status}"));
                    p.stats().upstream(budget, status);
                    let head = head_of(&resp);
                    let left = Duration::from_nanos(deadline.saturating_sub(p.now()));
                    let text = tokio::time::timeout(left, read_capped(resp)).await.unwrap_or_default();
                    let (outcome, _) = wire::client::read_response(status, &unwrapped(&text), cost, &p.scenario.models);
                    let retry = match outcome {
                        Outcome::RateLimited { retry_delay, .. } => retry_delay,
                        _ => None,
                    };
                    let answer = Last {
                        head,
                        status,
                        body: text,
                        at: p.now(),
                        retry,
                    };
                    (outcome, answer)
                }
            },
        };
        if outcome == Outcome::InvalidKey {
            // A key the upstream does not know is charged to no project: its send holds no
            // room in the gate (it held the budget's next minute for a request of the batch
            // that the strategy planned in the room it left; issue 26, item 5).
            p.gate.lock().expect("no panic holds it").withdraw(budget, pass);
            p.gate_changed.notify_waiters();
        } else if let Outcome::RateLimited { violated, .. } = outcome {
            // A quota 429 is charged as the scenario's server counts refusals, its request at
            // most; one without quota details (capacity, a spend cap) is not charged.
            let counted = p.scenario.server.ledger.count_rejected && !violated.is_empty();
            p.gate.lock().expect("no panic holds it").refused(budget, pass, counted);
            p.gate_changed.notify_waiters();
        }
        flight.finish(&outcome);
        match retry_after(&p, &ask, &outcome, deadline) {
            Some(d) => {
                last = Some(answer);
                held = true;
                tokio::time::sleep(d).await;
            }
            None => {
                let mut out = answer.head;
                *out.body_mut() = Body::from(answer.body);
                return out;
            }
        }
    }
}

/// Waits until the gate lets a send of `requests` requests of `cost` tokens on `budget` go, no later than
/// `deadline`: its id, or when it might have gone (`None`: never). A wait for answers whose
/// head has not come back is at least a minute: each such send counts until a minute after
/// its head.
async fn through_gate(
    p: &Proxy,
    budget: usize,
    limits: &Limits,
    requests: u64,
    cost: u64,
    deadline: Nanos,
    held: &mut bool,
) -> Result<u64, Option<Nanos>> {
    loop {
        let notified = p.gate_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = p.now();
        let verdict = p
            .gate
            .lock()
            .expect("no panic holds it")
            .admit(now, budget, limits, requests, cost);
        match verdict {
            Verdict::Go(id) => return Ok(id),
            Verdict::Never => return Err(None),
            Verdict::Wait(at) => {
                if now >= deadline || at.is_some_and(|a| a > deadline) {
                    return Err(Some(at.unwrap_or(now.saturating_add(crate::core::time::MINUTE))));
                }
                *held = true;
                p.count("gate_waits");
                let until = at.unwrap_or(deadline).min(deadline);
                let _ = tokio::time::timeout(Duration::from_nanos(until.saturating_sub(now)), notified).await;
            }
        }
    }
}

/// The strategy's retry policy's delay after `outcome`, if it retries and the retry can start
/// before the deadline.
fn retry_after(p: &Proxy, ask: &Ask, outcome: &Outcome, deadline: Nanos) -> Option<Duration> {
    let d = p
        .spec
        .retry
        .delay_after(p.scenario.seed, ask.request, ask.attempts, outcome)?;
    (p.now().saturating_add(d) < deadline).then(|| Duration::from_nanos(d))
}

/// An error body, at most [`MAX_ERROR_BODY`] bytes of it.
async fn read_capped(resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_ERROR_BODY {
            out.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    out
}

/// A success passed through as it streams; the strategy learns the outcome when the stream
/// ends (an error if it breaks, or if the client leaves: the body, which owns the send in
/// flight, is then dropped). The chunks go from the upstream's connection to the client's as
/// the client's connection asks for them, with no task or channel between (each would add a
/// wake-up to every request).
fn stream_through(resp: reqwest::Response, flight: InFlight) -> Response {
    let mut out = head_of(&resp);
    let upstream = resp.bytes_stream();
    let relayed = futures_util::stream::unfold((upstream, Some(flight)), |(mut upstream, mut flight)| async move {
        // Finished (the stream broke): nothing more.
        let f = flight.as_mut()?;
        match upstream.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), (upstream, flight))),
            Some(Err(e)) => {
                f.finish(&Outcome::Error);
                let e = std::io::Error::other(e.without_url().to_string());
                Some((Err(e), (upstream, None)))
            }
            None => {
                f.finish(&Outcome::Ok);
                None
            }
        }
    });
    *out.body_mut() = Body::from_stream(relayed);
    out
}

async fn metrics(State(p): State<Arc<Proxy>>) -> Response {
    let mut out = String::from(
        "# HELP flux_proxy_events_total What the proxy did with requests: upstream answers by status, deadlines, refusals, cancellations.\n# TYPE flux_proxy_events_total counter\n",
    );
    for (what, n) in p.counters.lock().expect("no panic holds it").iter() {
        out.push_str(&format!("flux_proxy_events_total{{event=\"{what}\"}} {n}\n"));
    }
    if let Some(shared) = &p.shared {
        let s = shared.status();
        let down = s.down_for.map_or(0.0, |d| d.as_secs_f64());
        out.push_str(&format!(
            "# HELP flux_proxy_shared_ledger_up Whether the shared ledger (Redis) answered the last call (1) or not (0).\n# TYPE flux_proxy_shared_ledger_up gauge\nflux_proxy_shared_ledger_up {}\n\
             # HELP flux_proxy_shared_ledger_down_seconds How long the shared ledger has not answered (0 while it answers).\n# TYPE flux_proxy_shared_ledger_down_seconds gauge\nflux_proxy_shared_ledger_down_seconds {down:.3}\n\
             # HELP flux_proxy_shared_ledger_outages_total Times the shared ledger stopped answering.\n# TYPE flux_proxy_shared_ledger_outages_total counter\nflux_proxy_shared_ledger_outages_total {}\n\
             # HELP flux_proxy_shared_ledger_errors_total Calls to the shared ledger not answered (in time).\n# TYPE flux_proxy_shared_ledger_errors_total counter\nflux_proxy_shared_ledger_errors_total {}\n\
             # HELP flux_proxy_shared_ledger_state_losses_total Budgets whose state the shared ledger lost (restarted empty, flushed, evicted).\n# TYPE flux_proxy_shared_ledger_state_losses_total counter\nflux_proxy_shared_ledger_state_losses_total {}\n\
             # HELP flux_proxy_shared_ledger_answers_total Calls the shared ledger answered.\n# TYPE flux_proxy_shared_ledger_answers_total counter\nflux_proxy_shared_ledger_answers_total {}\n\
             # HELP flux_proxy_shared_ledger_answer_seconds_total Time the answered calls took.\n# TYPE flux_proxy_shared_ledger_answer_seconds_total counter\nflux_proxy_shared_ledger_answer_seconds_total {:.6}\n",
            u8::from(s.up),
            s.outages,
            s.errors,
            s.losses,
            s.answered,
            s.answer_micros as f64 / 1e6,
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /metrics`: Prometheus' text format, per project and model (see [`prom`]).
async fn prometheus(State(p): State<Arc<Proxy>>) -> Response {
    let projects: Vec<&str> = p.scenario.topology.projects.iter().map(|x| x.name.as_str()).collect();
    let models: Vec<&str> = p.scenario.models.iter().map(|m| m.name.as_str()).collect();
    let ledger = p.shared.as_ref().map(|l| {
        let s = l.status();
        prom::LedgerGauges {
            up: s.up,
            outages: s.outages,
            losses: s.losses,
        }
    });
    let text = p
        .stats()
        .render(&projects, &models, ledger, p.waiting.load(Ordering::Relaxed));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// What this proxy sent, per (project, model): usage of every limited window now and its peak,
/// as serve's `/flux/ledger` shows the server's.
async fn ledger_view(State(p): State<Arc<Proxy>>) -> Response {
    let now = p.now();
    let mut sent = p.sent.lock().expect("no panic holds it");
    let models = p.scenario.models.len();
    let mut budgets = Vec::new();
    for (pi, project) in p.scenario.topology.projects.iter().enumerate() {
        for (mi, m) in p.scenario.models.iter().enumerate() {
            let b = sent.1[pi * models + mi];
            let usage = sent.0.usage(now, b, None);
            let peak = sent.0.peak(b);
            budgets.push(json!({"project": project.name, "model": m.name, "limits": project.limits[mi], "usage": usage, "peak": peak}));
        }
    }
    json_response(StatusCode::OK, &json!({"time_ns": now, "budgets": budgets}))
}
