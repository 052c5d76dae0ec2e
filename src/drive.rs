//! `flux-sim drive`: one strategy driven by the wall clock against a real endpoint (Gemini, or
//! `flux-sim serve`). The scenario's workload arrives in real time, the strategy chooses keys
//! and timing, requests go out over HTTP (reqwest), and what comes back (QuotaFailure and
//! RetryInfo from 429 bodies) is fed to the strategy and the retry policy. Virtual time =
//! elapsed real time × time scale, so plans, delays and the summary read like `run`'s.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::bound::upper_bound;
use crate::engine::AttemptRecord;
use crate::ledger::Dims;
use crate::metrics::{Recorder, StrategyResult};
use crate::scenario::{Scenario, StrategySpec};
use crate::strategy::{self, Ask, Decision, GiveUp, Outcome, Strategy};
use crate::time::Nanos;
use crate::wire;
use crate::workload::{Arrivals, Request, RequestStream};

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

/// Checks `endpoint` and builds the HTTP client; an error names `--endpoint`.
fn client_for(endpoint: &str) -> Result<(reqwest::Client, String), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("--endpoint {endpoint:?}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "--endpoint {endpoint:?}: expected http://host[:port] or https://host[:port]"
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok((client, endpoint.trim_end_matches('/').to_string()))
}

/// One attempt's answer, from its HTTP task to the driver.
struct Reply {
    slot: usize,
    /// HTTP status, or 0 when no response came.
    status: u16,
    outcome: Outcome,
    violated: Dims,
    transport_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    req: Request,
    attempts: u32,
    sent: Nanos,
    key: usize,
    model: usize,
}

/// How a request ended.
enum End {
    Completed,
    Failed,
    Unservable,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Ask the strategy again (after a retry delay).
    Offer,
    /// Send as the strategy planned.
    Send,
}

struct Driver<'a, 'b> {
    scenario: &'a Scenario,
    spec: &'a StrategySpec,
    opts: &'a DriveOptions,
    client: reqwest::Client,
    base: Arc<str>,
    start: Instant,
    strategy: Box<dyn Strategy>,
    stream: RequestStream,
    /// Stream ended (or reached the horizon).
    exhausted: bool,
    next_arrival: Option<Request>,
    free_workers: u64,
    slab: Vec<Option<Live>>,
    free_slots: Vec<usize>,
    live: u64,
    parked: VecDeque<usize>,
    timers: BinaryHeap<Reverse<(Nanos, u64, Timer, usize)>>,
    seq: u64,
    rec: Recorder,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Reply>,
    transport_errors: u64,
    first_transport_error: Option<String>,
    trace: Option<&'b mut dyn FnMut(&AttemptRecord)>,
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
    let (client, base) = client_for(&opts.endpoint)?;
    preflight(&client, &base, scenario).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        scenario,
        spec,
        opts,
        client,
        base: base.into(),
        start: Instant::now(),
        strategy: strategy::build(scenario, spec),
        stream: RequestStream::new(&scenario.workload, opts.seed),
        exhausted: false,
        next_arrival: None,
        free_workers: 0,
        slab: Vec::new(),
        free_slots: Vec::new(),
        live: 0,
        parked: VecDeque::new(),
        timers: BinaryHeap::new(),
        seq: 0,
        rec: Recorder::new(),
        tasks: JoinSet::new(),
        tx,
        transport_errors: 0,
        first_transport_error: None,
        trace,
    };
    let closed = match scenario.workload.arrivals {
        Arrivals::Closed { workers, .. } => {
            d.free_workers = workers;
            true
        }
        _ => {
            d.next_open_arrival();
            false
        }
    };
    let horizon = scenario.horizon;
    tokio::pin!(stop);
    let mut interrupted = false;
    loop {
        let now = d.now();
        if now >= horizon {
            break;
        }
        while let Some(r) = d.next_arrival.filter(|r| r.arrival <= now) {
            d.next_arrival = None;
            d.rec.requests += 1;
            let slot = d.alloc(r);
            if !d.offer(slot, now) {
                d.parked.push_back(slot);
            }
            d.next_open_arrival();
        }
        while let Some(&Reverse((t, _, what, slot))) = d.timers.peek() {
            if t > now {
                break;
            }
            d.timers.pop();
            match what {
                Timer::Offer => {
                    if !d.offer(slot, now) {
                        d.parked.push_back(slot);
                    }
                }
                Timer::Send => {
                    let l = d.get(slot);
                    d.send(slot, l.key, l.model, now);
                }
            }
        }
        d.pump(now);
        while d.tasks.try_join_next().is_some() {}
        if d.exhausted && d.live == 0 {
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
    let end = d.now().min(horizon);
    let (requests, makespan) = match scenario.workload.arrivals {
        Arrivals::Closed { requests, .. } => {
            d.rec.requests = requests;
            let ended = d.rec.completed + d.rec.failed + d.rec.unservable;
            (requests, (ended == requests).then_some(d.rec.last_end))
        }
        _ => (d.rec.requests, None),
    };
    let pending = requests - d.rec.completed - d.rec.failed - d.rec.unservable;
    let span = match (closed, makespan) {
        (true, Some(m)) => m,
        _ if interrupted => end,
        _ => horizon,
    };
    let bound = upper_bound(scenario, opts.seed);
    let result = d.rec.finish(
        &spec.name,
        spec.kind.name(),
        pending,
        span,
        makespan,
        bound.per_min,
        bound.best_span,
    );
    Ok(Driven {
        result,
        transport_errors: d.transport_errors,
        first_transport_error: d.first_transport_error,
        interrupted,
    })
}

/// Lists the models once, to fail early (and clearly) when nothing answers at `base`. Any
/// HTTP answer will do: only a missing connection stops the drive.
async fn preflight(client: &reqwest::Client, base: &str, scenario: &Scenario) -> Result<(), String> {
    let mut req = client.get(format!("{base}/v1beta/models"));
    if let Some(k) = scenario.topology.keys.iter().find(|k| k.valid) {
        req = req.header("x-goog-api-key", &k.value);
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("--endpoint {base}: cannot reach it: {}", error_chain(&e))),
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

    fn push(&mut self, at: Nanos, what: Timer, slot: usize) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, what, slot)));
    }

    fn alloc(&mut self, req: Request) -> usize {
        self.live += 1;
        let l = Some(Live {
            req,
            attempts: 0,
            sent: req.arrival,
            key: 0,
            model: 0,
        });
        match self.free_slots.pop() {
            Some(s) => {
                self.slab[s] = l;
                s
            }
            None => {
                self.slab.push(l);
                self.slab.len() - 1
            }
        }
    }

    fn get(&self, slot: usize) -> Live {
        self.slab[slot].expect("live request")
    }

    fn ask(l: &Live) -> Ask {
        Ask {
            request: l.req.id,
            input_tokens: l.req.input_tokens,
            output_tokens: l.req.output_tokens,
            model: l.req.model,
            attempts: l.attempts,
        }
    }

    /// Asks the strategy; false if it defers (the caller parks the request).
    fn offer(&mut self, slot: usize, now: Nanos) -> bool {
        let l = self.get(slot);
        match self.strategy.decide(now, &Self::ask(&l)) {
            Decision::Send { key, model, at } if at <= now => self.send(slot, key, model, now),
            Decision::Send { key, model, at } => {
                let s = self.slab[slot].as_mut().expect("live request");
                s.key = key;
                s.model = model;
                self.push(at, Timer::Send, slot);
            }
            Decision::Defer => return false,
            Decision::GiveUp(GiveUp::Unservable) => self.end(slot, now, End::Unservable),
            Decision::GiveUp(GiveUp::Exhausted) => self.end(slot, now, End::Failed),
        }
        true
    }

    /// Offers parked requests (FIFO, stopping at the first that still defers) and gives free
    /// workers of a closed batch their next request, until nothing moves.
    fn pump(&mut self, now: Nanos) {
        loop {
            let mut moved = false;
            while let Some(&slot) = self.parked.front() {
                self.parked.pop_front();
                if !self.offer(slot, now) {
                    self.parked.push_front(slot);
                    break;
                }
                moved = true;
            }
            if self.free_workers > 0 && !self.exhausted {
                match self.stream.next() {
                    Some(mut r) => {
                        self.free_workers -= 1;
                        r.arrival = now;
                        let slot = self.alloc(r);
                        if !self.offer(slot, now) {
                            self.parked.push_back(slot);
                        }
                        moved = true;
                    }
                    None => self.exhausted = true,
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Sends an attempt: an HTTP task answers through the channel.
    fn send(&mut self, slot: usize, key: usize, model: usize, now: Nanos) {
        let mut l = self.get(slot);
        l.attempts += 1;
        l.sent = now;
        l.key = key;
        l.model = model;
        self.slab[slot] = Some(l);
        self.rec.attempts += 1;
        self.rec.in_flight += 1;
        let s = self.scenario;
        let url = format!("{}/v1beta/models/{}:generateContent", self.base, s.models[model].name);
        let body = wire::generate_body(l.req.input_tokens, l.req.output_tokens);
        let cost = s.server.tpm_counts.cost(l.req.input_tokens, l.req.output_tokens);
        let request = self
            .client
            .post(url)
            .header("x-goog-api-key", &s.topology.keys[key].value)
            .header("content-type", "application/json")
            .body(body);
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let reply = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(b) => {
                            let (outcome, violated) = wire::read_response(status, &b, cost);
                            Reply {
                                slot,
                                status,
                                outcome,
                                violated,
                                transport_error: None,
                            }
                        }
                        Err(e) => transport_failure(slot, &e),
                    }
                }
                Err(e) => transport_failure(slot, &e),
            };
            // The driver may have stopped listening; the answer is then moot.
            let _ = tx.send(reply);
        });
    }

    /// Feeds one attempt's answer to the metrics, the strategy and the retry policy.
    fn answer(&mut self, reply: Reply, now: Nanos) {
        let l = self.get(reply.slot);
        let ask = Self::ask(&l);
        self.rec.in_flight -= 1;
        // RetryInfo delays are in the endpoint's time: scale them to quota time.
        let outcome = match reply.outcome {
            Outcome::RateLimited { violated, retry_delay } => Outcome::RateLimited {
                violated,
                retry_delay: retry_delay.map(|d| d.saturating_mul(self.opts.time_scale)),
            },
            o => o,
        };
        let (label, retry_delay) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::RateLimited { retry_delay, .. } => ("rate_limited", retry_delay),
            Outcome::Unservable => ("unservable", None),
            _ => ("error", None),
        };
        if let Some(t) = self.trace.as_mut() {
            t(&AttemptRecord {
                time: l.sent,
                request: l.req.id,
                attempt: l.attempts,
                key: l.key,
                project: self.scenario.topology.keys[l.key].project,
                model: l.model,
                input_tokens: l.req.input_tokens,
                status: reply.status,
                outcome: label,
                violated: reply.violated,
                retry_delay,
                completion: (label == "ok").then_some(now),
            });
        }
        if let Some(e) = reply.transport_error {
            self.transport_errors += 1;
            self.first_transport_error.get_or_insert(e);
        }
        self.strategy.on_outcome(now, &ask, l.key, l.model, l.sent, &outcome);
        match outcome {
            Outcome::Ok => {
                self.rec.completed(l.req.arrival, l.sent, now, l.req.input_tokens);
                self.end(reply.slot, now, End::Completed);
                return;
            }
            Outcome::Unservable => {
                self.rec.rate_limited(reply.violated);
                self.end(reply.slot, now, End::Unservable);
                return;
            }
            Outcome::RateLimited { violated, .. } => self.rec.rate_limited(violated),
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

    fn end(&mut self, slot: usize, now: Nanos, how: End) {
        match how {
            End::Completed => {}
            End::Failed => self.rec.failed += 1,
            End::Unservable => self.rec.unservable += 1,
        }
        self.rec.last_end = self.rec.last_end.max(now);
        self.slab[slot] = None;
        self.free_slots.push(slot);
        self.live -= 1;
        if matches!(self.scenario.workload.arrivals, Arrivals::Closed { .. }) {
            self.free_workers += 1;
        }
    }
}

fn transport_failure(slot: usize, e: &reqwest::Error) -> Reply {
    Reply {
        slot,
        status: 0,
        outcome: Outcome::Unavailable,
        violated: Dims::EMPTY,
        transport_error: Some(error_chain(e)),
    }
}
