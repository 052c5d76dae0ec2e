//! `flux-sim drive`: one strategy driven by the wall clock against a real endpoint (Gemini, or
//! `flux-sim serve`). The scenario's workload arrives in real time, the strategy chooses keys
//! and timing, requests go out over HTTP (reqwest), and what comes back (QuotaFailure and
//! RetryInfo from 429 bodies) is fed to the strategy and the retry policy. Virtual time =
//! elapsed real time × time scale, so plans, delays and the summary read like `run`'s.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::core::ledger::Dims;
use crate::core::server::Model;
use crate::core::time::Nanos;
use crate::core::workload::{Arrivals, Request, RequestStream};
use crate::net::wire;
use crate::scenario::Scenario;
use crate::sim::bound::upper_bound;
use crate::sim::dispatch::{summary, Book, Dispatch, End};
use crate::sim::engine::{simulate, AttemptRecord};
use crate::sim::metrics::{round3, Recorder, RunResult, StrategyResult};
use crate::strategy::{Outcome, Strategy, StrategySpec};

/// How long one HTTP request may take before it counts as a transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Where and how to drive.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080` or
    /// `https://generativelanguage.googleapis.com` (`/v1beta/models/…` is appended).
    pub endpoint: String,
    /// The endpoint's time scale (`serve --time-scale`; 1 for a real API): one real second is
    /// this many seconds of quota time, and RetryInfo delays are multiplied by it.
    pub time_scale: u64,
    /// Seed of the workload and of retry jitter.
    pub seed: u64,
}

/// What a drive leaves behind.
#[derive(Debug, Clone)]
pub struct Driven {
    /// The summary row, as `run` would print it.
    pub result: StrategyResult,
    /// The quota time it covers: a closed batch's makespan if it ended, else until the
    /// horizon or the interruption.
    pub span: Nanos,
    /// Attempts that got no HTTP response (connection refused or reset, timeout); each
    /// counts as an error response and is retried like a 503.
    pub transport_errors: u64,
    /// The first transport error's message.
    pub first_transport_error: Option<String>,
    /// Whether `stop` ended the drive before the workload did.
    pub interrupted: bool,
}

/// Cuts `scenario` at `span` of virtual time (`--duration` × time scale): its horizon and, for
/// an open or trace workload, its arrival window, so the bound and a simulation of the cut
/// scenario cover the same time as the drive.
pub fn cut(scenario: &mut Scenario, span: Nanos) {
    scenario.horizon = scenario.horizon.min(span);
    if !matches!(scenario.workload.arrivals, Arrivals::Closed { .. }) {
        scenario.workload.duration = scenario.workload.duration.min(span);
    }
}

/// Asks `flux-sim serve` at `endpoint` to start fresh (`POST /flux/reset`: empty ledger,
/// virtual time 0), so a drive is not charged for the drives before it.
pub async fn reset_endpoint(endpoint: &str) -> Result<(), String> {
    let (client, base) = client_for(endpoint)?;
    let sent = tokio::time::timeout(PREFLIGHT_TIMEOUT, client.post(format!("{base}/flux/reset")).send()).await;
    match sent {
        Ok(Ok(r)) if r.status().is_success() => Ok(()),
        Ok(Ok(r)) => Err(format!(
            "{base}/flux/reset answered {} (only flux-sim serve, from this machine, can be reset)",
            r.status()
        )),
        Ok(Err(e)) => Err(format!("cannot reach {base}: {}", error_chain(&e))),
        Err(_) => Err(format!(
            "{base} did not answer within {} s",
            PREFLIGHT_TIMEOUT.as_secs()
        )),
    }
}

/// What `drive` reports: the real run's row, then the simulation of the same (cut) scenario
/// with the same strategy and seed, named `NAME (simulated)`. An interrupted drive's
/// simulation is cut at the time driven too, so both rows cover the same span.
pub fn beside_simulation(scenario: &Scenario, spec: &StrategySpec, seed: u64, driven: Driven) -> RunResult {
    let mut cut_here = scenario.clone();
    if driven.interrupted {
        cut(&mut cut_here, driven.span.max(1));
    }
    let scenario = &cut_here;
    let bound = upper_bound(scenario, seed);
    let mut simulated = simulate(scenario, spec, seed, &bound, None);
    simulated.strategy = format!("{} (simulated)", spec.name);
    let sim_span = simulated.makespan_s.unwrap_or(scenario.horizon as f64 / 1e9);
    RunResult {
        scenario: scenario.name.clone(),
        seed,
        simulated_seconds: round3(sim_span.max(driven.span as f64 / 1e9)),
        assumes: Vec::new(),
        fleet: scenario.fleet.describe(),
        results: vec![driven.result, simulated],
    }
}

/// How long the start-up check waits for any answer from the endpoint.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows a redirect only within the same origin (scheme, host, port): the key travels in a
/// header, and reqwest strips only its own sensitive headers when it leaves the origin.
fn same_origin_only() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = |u: &reqwest::Url| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_string),
                u.port_or_known_default(),
            )
        };
        let first = attempt.previous().first().map(origin);
        if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else if first.is_some_and(|f| f != origin(attempt.url())) {
            attempt.error("a redirect to another origin (the API key is not sent there)")
        } else {
            attempt.follow()
        }
    })
}

/// Checks `endpoint` (the same check `drive` makes first, so a command line can refuse a bad
/// one before it prints anything); an error names `--endpoint`.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    client_for(endpoint).map(|_| ())
}

/// Checks `endpoint` and builds the HTTP client; an error starts with the endpoint.
fn client_for(endpoint: &str) -> Result<(reqwest::Client, String), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("{endpoint:?}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{endpoint:?}: expected http://host[:port] or https://host[:port]"
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .redirect(same_origin_only())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok((client, endpoint.trim_end_matches('/').to_string()))
}

/// One attempt's answer, from its HTTP task to the driver.
struct Reply {
    slot: u32,
    /// HTTP status, or 0 when no response came.
    status: u16,
    outcome: Outcome,
    violated: Dims,
    /// A 429 for the spend cap.
    spend_cap: bool,
    transport_error: Option<String>,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Ask the strategy again (after a retry delay).
    Offer,
    /// Send as the strategy planned.
    Send,
    /// Offer the parked requests ([`crate::strategy::Decision::DeferUntil`]); every wake of
    /// the loop does, so the timer only wakes it.
    Pump,
}

/// One drive in progress: the strategy, the requests it holds, its timers and the HTTP
/// requests on the wire.
struct Driver<'a, 'b> {
    scenario: &'a Scenario,
    /// The scenario's models, for the HTTP tasks to read which one a 429's quota names.
    models: Arc<[Model]>,
    spec: &'a StrategySpec,
    opts: &'a DriveOptions,
    client: reqwest::Client,
    base: String,
    start: Instant,
    strategy: Box<dyn Strategy>,
    stream: RequestStream,
    /// Stream ended (or reached the horizon).
    exhausted: bool,
    next_arrival: Option<Request>,
    book: Book,
    timers: BinaryHeap<Reverse<(Nanos, u64, Timer, u32)>>,
    seq: u64,
    rec: Recorder,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Reply>,
    transport_errors: u64,
    first_transport_error: Option<String>,
    trace: Option<&'b mut dyn FnMut(&AttemptRecord)>,
    /// The instant a `Pump` timer is next due, if one is.
    pump_due: Option<Nanos>,
}

/// Drives `spec` on `scenario`'s workload against `opts.endpoint` until the workload ends,
/// the scenario's horizon passes (in virtual time), or `stop` completes. Fails only when the
/// endpoint is not a URL or cannot be reached at all before the first request.
pub async fn drive(
    scenario: &Scenario,
    spec: &StrategySpec,
    opts: &DriveOptions,
    trace: Option<&mut dyn FnMut(&AttemptRecord)>,
    stop: impl Future<Output = ()>,
) -> Result<Driven, String> {
    if scenario.workload.session.is_some() {
        return Err(format!(
            "scenario {}: drive sends REST requests and does not open Live sessions; \
             simulate a sessions workload with `run`, and serve it to a Live client with `serve`",
            scenario.name
        ));
    }
    let (client, base) = client_for(&opts.endpoint)?;
    preflight(&client, &base, scenario).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let strategy = scenario.strategy(spec, opts.seed);
    let lanes = strategy.lanes();
    let mut d = Driver {
        scenario,
        models: scenario.models.clone().into(),
        spec,
        opts,
        client,
        base,
        start: Instant::now(),
        strategy,
        stream: RequestStream::new(&scenario.workload, opts.seed),
        exhausted: false,
        next_arrival: None,
        book: Book::new(&scenario.workload.arrivals, lanes),
        timers: BinaryHeap::new(),
        seq: 0,
        rec: Recorder::new(),
        tasks: JoinSet::new(),
        tx,
        transport_errors: 0,
        first_transport_error: None,
        trace,
        pump_due: None,
    };
    if !matches!(scenario.workload.arrivals, Arrivals::Closed { .. }) {
        d.next_open_arrival();
    }
    let horizon = scenario.horizon;
    tokio::pin!(stop);
    let mut interrupted = false;
    loop {
        let now = d.now();
        // Every arrival before the horizon counts, also when this loop wakes after it (a timer
        // late on a busy machine): the simulation counts it, so drive does, pending, unsent.
        while let Some(r) = d.next_arrival.filter(|r| r.arrival <= now) {
            d.next_arrival = None;
            d.rec.requests += 1;
            if now < horizon {
                d.arrive(r, 0, now);
            }
            d.next_open_arrival();
        }
        if now >= horizon {
            break;
        }
        while let Some(&Reverse((t, _, what, slot))) = d.timers.peek() {
            if t > now {
                break;
            }
            d.timers.pop();
            match what {
                Timer::Offer => {
                    if !d.offer(slot, now) {
                        d.park(slot);
                    }
                }
                Timer::Send => d.due(slot, now),
                Timer::Pump => d.pump_due = d.pump_due.filter(|&t| t > now),
            }
        }
        d.pump(now);
        while d.tasks.try_join_next().is_some() {}
        if d.exhausted && d.book.live == 0 {
            break;
        }
        let wake = [
            d.next_arrival.map(|r| r.arrival),
            d.timers.peek().map(|Reverse((t, ..))| *t),
            Some(horizon),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("the horizon is always there");
        let deadline = d.start + Duration::from_nanos(wake.div_ceil(opts.time_scale));
        tokio::select! {
            biased;
            _ = &mut stop => {
                interrupted = true;
                break;
            }
            Some(reply) = rx.recv() => {
                let now = d.now();
                d.answer(reply, now);
                // Take every answer already waiting before planning again.
                while let Ok(reply) = rx.try_recv() {
                    d.answer(reply, now);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    d.tasks.abort_all();
    let until = if interrupted { d.now().min(horizon) } else { horizon };
    let bound = upper_bound(scenario, opts.seed);
    let (result, span) = summary(&mut d.rec, scenario, spec, &bound, until);
    Ok(Driven {
        result,
        span,
        transport_errors: d.transport_errors,
        first_transport_error: d.first_transport_error,
        interrupted,
    })
}

/// Whether anything answers HTTP at `endpoint` (a `GET /v1beta/models` with the scenario's
/// first key, within a few seconds): `drive` checks it before it says anything.
pub async fn reachable(scenario: &Scenario, endpoint: &str) -> Result<(), String> {
    let (client, base) = client_for(endpoint)?;
    preflight(&client, &base, scenario).await
}

/// Lists the models once, to fail early (and clearly) when nothing answers at `base`. Any
/// HTTP answer will do: only a missing connection stops the drive.
async fn preflight(client: &reqwest::Client, base: &str, scenario: &Scenario) -> Result<(), String> {
    let mut req = client.get(format!("{base}/v1beta/models"));
    if let Some(k) = scenario.topology.keys.iter().find(|k| k.valid) {
        req = req.header("x-goog-api-key", &k.value);
    }
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, req.send()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::core::topology::mask_secrets(&format!(
            "{base}: cannot reach it: {}",
            error_chain(&e)
        ))),
        Err(_) => Err(format!(
            "{base}: no answer within {} s (it accepts connections but does not respond)",
            PREFLIGHT_TIMEOUT.as_secs()
        )),
    }
}

/// An error with its causes ("error sending request: …: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Driver<'_, '_> {
    /// Virtual time now: elapsed real time × the time scale.
    fn now(&self) -> Nanos {
        (self.start.elapsed().as_nanos() * self.opts.time_scale as u128).min(u64::MAX as u128) as Nanos
    }

    fn next_open_arrival(&mut self) {
        match self.stream.next() {
            Some(r) if r.arrival < self.scenario.horizon => self.next_arrival = Some(r),
            _ => self.exhausted = true,
        }
    }

    fn push(&mut self, at: Nanos, what: Timer, slot: u32) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, what, slot)));
    }

    /// Feeds one attempt's answer to the metrics, the strategy and the retry policy.
    fn answer(&mut self, reply: Reply, now: Nanos) {
        let l = self.book.get(reply.slot);
        let ask = l.ask();
        self.rec.in_flight -= 1;
        // RetryInfo delays are in the endpoint's time: scale them to quota time.
        let outcome = match reply.outcome {
            Outcome::RateLimited {
                violated,
                retry_delay,
                quota,
                quota_model,
            } => Outcome::RateLimited {
                violated,
                quota,
                quota_model,
                retry_delay: retry_delay.map(|d| d.saturating_mul(self.opts.time_scale)),
            },
            o => o,
        };
        let (label, retry_delay) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::RateLimited { retry_delay, .. } => ("rate_limited", retry_delay),
            Outcome::Unservable { .. } => ("unservable", None),
            _ => ("error", None),
        };
        if let Some(t) = self.trace.as_mut() {
            t(&AttemptRecord::of(
                self.scenario,
                &l,
                now,
                reply.status,
                label,
                reply.violated,
                retry_delay,
            ));
        }
        if let Some(e) = reply.transport_error {
            self.transport_errors += 1;
            self.first_transport_error.get_or_insert(e);
        }
        let (key, model) = (l.key as usize, l.model as usize);
        self.strategy.on_outcome(now, &ask, key, model, l.sent, &outcome);
        match outcome {
            Outcome::Ok => {
                self.rec.completed(l.req.arrival, l.sent, now, l.req.input_tokens);
                self.end(reply.slot, now, End::Completed);
                return;
            }
            Outcome::Unservable { .. } => {
                self.rec.rate_limited(reply.violated);
                // A tool that reads only the status code retries it like any 429.
                let delay = (!self.strategy.tells_unservable())
                    .then(|| {
                        let policy = &self.spec.retry;
                        policy.delay_after_unservable(self.opts.seed, l.req.id, l.attempts, reply.violated)
                    })
                    .flatten();
                match delay {
                    Some(d) => self.push(now.saturating_add(d), Timer::Offer, reply.slot),
                    None => self.end(reply.slot, now, End::Unservable),
                }
                return;
            }
            Outcome::RateLimited { .. } if reply.spend_cap => self.rec.spend_limited(),
            Outcome::RateLimited {
                violated, quota_model, ..
            } => self.rec.rate_limited_on(violated, model, quota_model),
            _ => self.rec.other_errors += 1,
        }
        match self
            .spec
            .retry
            .delay_after(self.opts.seed, l.req.id, l.attempts, &outcome)
        {
            Some(d) => self.push(now.saturating_add(d), Timer::Offer, reply.slot),
            None => self.end(reply.slot, now, End::Failed),
        }
    }
}

impl Dispatch for Driver<'_, '_> {
    fn book(&mut self) -> &mut Book {
        &mut self.book
    }

    fn strategy(&mut self) -> &mut dyn Strategy {
        self.strategy.as_mut()
    }

    fn recorder(&mut self) -> &mut Recorder {
        &mut self.rec
    }

    fn next_batch_request(&mut self) -> Option<(Request, Nanos)> {
        let next = if self.exhausted { None } else { self.stream.next() };
        self.exhausted = next.is_none();
        next.map(|r| (r, 0))
    }

    fn send_at(&mut self, slot: u32, at: Nanos) {
        self.push(at, Timer::Send, slot);
    }

    fn offer_at(&mut self, slot: u32, at: Nanos) {
        self.push(at, Timer::Offer, slot);
    }

    fn pump_at(&mut self, at: Nanos) {
        if self.pump_due.is_none_or(|t| at < t) {
            self.pump_due = Some(at);
            self.push(at, Timer::Pump, 0);
        }
    }

    /// Sends an attempt: an HTTP task answers through the channel.
    fn send(&mut self, slot: u32, key: usize, model: usize, now: Nanos) {
        let l = self.book.attempt(slot, key, model, now);
        self.rec.attempts += 1;
        self.rec.in_flight += 1;
        let s = self.scenario;
        let url = format!("{}/v1beta/models/{}:generateContent", self.base, s.models[model].name);
        let body = wire::client::generate_body(l.req.input_tokens, l.req.output_tokens);
        let cost = s.server.tpm_counts.cost(l.req.input_tokens, l.req.output_tokens);
        let request = self
            .client
            .post(url)
            .header("x-goog-api-key", &s.topology.keys[key].value)
            .header("content-type", "application/json")
            .body(body);
        let tx = self.tx.clone();
        let models = self.models.clone();
        self.tasks.spawn(async move {
            let reply = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match capped_body(resp).await {
                        Ok(b) => {
                            let (outcome, violated) = wire::client::read_response(status, &b, cost, &models);
                            Reply {
                                slot,
                                status,
                                outcome,
                                violated,
                                spend_cap: status == 429 && wire::error::names_spend_cap(&b),
                                transport_error: None,
                            }
                        }
                        Err(e) => transport_failure(slot, &e),
                    }
                }
                Err(e) => transport_failure(slot, &error_chain(&e)),
            };
            // The driver may have stopped listening; the answer is then moot.
            let _ = tx.send(reply);
        });
    }
}

fn transport_failure(slot: u32, e: &str) -> Reply {
    Reply {
        slot,
        status: 0,
        outcome: Outcome::Unavailable,
        violated: Dims::EMPTY,
        spend_cap: false,
        transport_error: Some(e.to_string()),
    }
}

/// The most bytes of a response body `drive` reads (Gemini's answers are far smaller; an
/// endless body must not fill memory).
pub const MAX_RESPONSE: usize = 16 << 20;

/// A response's body, read up to [`MAX_RESPONSE`] bytes (more is a transport error).
async fn capped_body(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!("the response body is larger than {} MiB", MAX_RESPONSE >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
