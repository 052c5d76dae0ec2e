//! The discrete-event driver: integer-nanosecond virtual time, events ordered by
//! `(time, sequence)` (ties in FIFO order), one strategy against a fresh mock server on the
//! scenario's request stream. Every strategy of a run sees the identical requests.

use crate::core::ledger::{Dimension, Dims};
use crate::core::live::SessionEnd;
use crate::core::server::{Call, KeyRef, Response, Server, Via};
use crate::core::spend::PICO_PER_USD;
use crate::core::time::Nanos;
use crate::core::workload::{Arrivals, Request, RequestStream};
use crate::scenario::Scenario;
use crate::sim::bound::{Bound, BoundPass};
use crate::sim::dispatch::{summary, Book, Dispatch, End, Live};
use crate::sim::metrics::{round3, Recorder, StrategyResult};
use crate::sim::queue::{Event, EventQueue};
use crate::sim::timeline::{Details, Timeline};
use crate::strategy::retry::RetryPolicy;
use crate::strategy::{Outcome, Strategy, StrategySpec};
use rustc_hash::FxHashMap;

/// What became of one attempt (one line of `--trace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When it was sent.
    pub time: Nanos,
    /// Request id.
    pub request: u64,
    /// Attempt number from 1.
    pub attempt: u32,
    /// Key index.
    pub key: usize,
    /// Project index.
    pub project: usize,
    /// Model index.
    pub model: usize,
    /// Input tokens.
    pub input_tokens: u64,
    /// HTTP status of the response.
    pub status: u16,
    /// `ok`, `rate_limited`, `unservable` or `error`.
    pub outcome: &'static str,
    /// Violated dimensions of a 429.
    pub violated: Dims,
    /// RetryInfo delay of a 429.
    pub retry_delay: Option<Nanos>,
    /// When a successful response completed.
    pub completion: Option<Nanos>,
    /// The path that admitted a successful one (`None` for the others, and where the client
    /// cannot know it: `drive` over HTTP).
    pub via: Option<Via>,
}

impl AttemptRecord {
    /// The latest attempt of `l`, sent at `l.sent`, answered at `now` (the completion of an
    /// `ok` one).
    pub(crate) fn of(
        scenario: &Scenario,
        l: &Live,
        now: Nanos,
        status: u16,
        outcome: &'static str,
        violated: Dims,
        retry_delay: Option<Nanos>,
    ) -> Self {
        let key = l.key as usize;
        AttemptRecord {
            time: l.sent,
            request: l.req.id,
            attempt: l.attempts,
            key,
            project: scenario.topology.keys[key].project,
            model: l.model as usize,
            input_tokens: l.req.input_tokens,
            status,
            outcome,
            violated,
            retry_delay,
            completion: (outcome == "ok").then_some(now),
            via: if outcome == "ok" { l.via } else { None },
        }
    }
}

/// What an event does, packed with its request's slot into one word: `slot << 2 | kind`.
const OFFER: u64 = 0;
const SEND: u64 = 1;
const COMPLETE: u64 = 2;
/// A refused Live session's client learns of its close (1011 after `setupComplete`), or a
/// REST client of an answer that is not a success (`server.error_latency`).
const REFUSED: u64 = 3;
/// The slot of an `OFFER` event that offers the parked requests, not one request (see
/// [`Dispatch::pump_at`]); no request has it (slots are indexes into the book's slab).
const PUMP: u32 = u32::MAX;

/// A request retried this many times at one instant, with nothing else in the run changing
/// meanwhile (no arrival, no admission, no request ending), is a livelock: the engine stops
/// and reports it instead of spinning forever. It is above the most attempts a scenario may
/// give a policy (`max_attempts` ≤ 1,000), so only a policy without a limit can reach it, and
/// far above what random picks need to leave a dead key (one valid key among 100 picked
/// uniformly stays missed 10,000 times with probability e^-100).
pub const STALL_LIMIT: u32 = 10_000;

/// How long the request in one slot has been retried at one instant without progress.
#[derive(Debug, Clone, Copy, Default)]
struct Stall {
    at: Nanos,
    request: u64,
    progress: u64,
    count: u32,
}

struct Sim<'a, 'b> {
    scenario: &'a Scenario,
    seed: u64,
    retry: RetryPolicy,
    server: Server,
    strategy: Box<dyn Strategy>,
    stream: RequestStream,
    queue: EventQueue,
    seq: u64,
    book: Book,
    /// The next open/trace arrival with its place in the event order and its response time
    /// as drawn already (see [`Sim::draw`]); kept out of the queue.
    next_arrival: Option<(Nanos, u64, Request, Nanos)>,
    /// Requests drawn from the stream and given to the pass, not yet taken: `ahead[taken..]`
    /// (see [`Sim::draw`]).
    ahead: Vec<(Request, Nanos)>,
    taken: usize,
    rec: Recorder,
    trace: Option<&'b mut dyn FnMut(&AttemptRecord)>,
    timeline: Option<Timeline>,
    /// Sends the server admitted (a part of the run's progress, see [`Sim::progress`]).
    admitted: u64,
    /// Per slot: its request's retries at one instant without progress.
    stalls: Vec<Stall>,
    /// The strategy's name and kind, for a livelock's report.
    name: String,
    kind: &'static str,
    /// The livelock found, which stops the run.
    livelock: Option<String>,
    /// The bound's pass, fed every request this run draws (so they are drawn once for both).
    pass: Option<BoundPass<'a>>,
    /// Whether the strategy keeps state per request worth prefetching ([`Strategy::prefetches`]).
    prefetch_requests: bool,
    /// The key and model the next arrival will likely be sent on, whose records were asked
    /// for (see [`Strategy::prefetch_next`]).
    hint: Option<(usize, usize)>,
    /// The instant the parked requests are next offered by a `PUMP` event, if one is due.
    pump_due: Option<Nanos>,
    /// Per slot: the REST answer on its way to its client (`server.error_latency`).
    late: FxHashMap<u32, Late>,
}

/// A REST answer that is not a success, as its client will read it.
enum Late {
    /// A 429, 400, 403, 404 or 503.
    Error(Outcome),
    /// A 429 for a request larger than a limit, with the limits it exceeds.
    Unservable(Dims, crate::core::ledger::Limits),
}

/// Runs strategy `spec` on `scenario` with `seed`; `bound` is the scenario's upper bound and
/// `trace`, if given, receives every attempt.
pub fn simulate(
    scenario: &Scenario,
    spec: &StrategySpec,
    seed: u64,
    bound: &Bound,
    trace: Option<&mut dyn FnMut(&AttemptRecord)>,
) -> StrategyResult {
    let opts = SimOptions {
        trace,
        ..SimOptions::default()
    };
    simulate_full(scenario, spec, seed, bound, opts).result
}

/// Watches and stops simulations from another thread: `stop` ends them at the next check
/// (within a few thousand events), with a report of the time simulated so far; `progress`
/// counts work done: requests ended for a closed batch, simulated seconds otherwise.
#[derive(Debug, Default)]
pub struct Control {
    /// Set to stop (Ctrl-C).
    pub stop: std::sync::atomic::AtomicBool,
    /// Work done so far, summed over the strategies running.
    pub progress: std::sync::atomic::AtomicU64,
}

impl Control {
    /// The progress units a run of `strategies` strategies of `scenario` amounts to in all.
    pub fn total(scenario: &Scenario, strategies: usize) -> u64 {
        let per = match scenario.workload.arrivals {
            Arrivals::Closed { requests, .. } => requests,
            _ => scenario.horizon / crate::core::time::SECOND,
        };
        per.saturating_mul(strategies as u64)
    }
}

/// Events whose requests are prefetched ahead of the one handled ([`Book::prefetch`]).
const PREFETCH: usize = 2;

/// Requests drawn from the stream at a time ([`Sim::draw`]).
const DRAW_AHEAD: usize = 128;

/// Events between two looks at a [`Control`].
const CHECK_EVERY: u32 = 4096;

/// Everything one simulated strategy leaves behind.
#[derive(Debug)]
pub struct Simulation {
    /// The summary row.
    pub result: StrategyResult,
    /// The mock server as the run left it (its ledger's peaks show how full windows got).
    pub server: Server,
    /// Time series, wait distribution and utilisation, when asked for.
    pub details: Option<Details>,
    /// The virtual time the result covers (a closed batch's makespan; else until the
    /// horizon, or until the run was stopped).
    pub span: Nanos,
}

/// What one simulation records and who watches it, beside what it simulates.
#[derive(Default)]
pub struct SimOptions<'a> {
    /// Receives each attempt as it ends.
    pub trace: Option<&'a mut dyn FnMut(&AttemptRecord)>,
    /// Collect what a report shows ([`Simulation::details`]).
    pub details: bool,
    /// Watches and may stop the simulation from another thread.
    pub control: Option<&'a Control>,
}

/// [`simulate`], also handing back the server and, as `opts` ask, what a report shows.
pub fn simulate_full(
    scenario: &Scenario,
    spec: &StrategySpec,
    seed: u64,
    bound: &Bound,
    opts: SimOptions,
) -> Simulation {
    simulate_unbounded(scenario, spec, seed, opts, None).0.finish(bound)
}

/// [`simulate_full`] without the bound, which the result is judged against afterwards
/// ([`Unbounded::finish`]). With `pass`, every request the run draws is also given to that
/// bound's pass, and the rest of the stream once the run ends: the pass comes back complete,
/// and the workload was drawn once for the run and its bound.
pub fn simulate_unbounded<'a>(
    scenario: &'a Scenario,
    spec: &'a StrategySpec,
    seed: u64,
    opts: SimOptions,
    pass: Option<BoundPass<'a>>,
) -> (Unbounded<'a>, Option<BoundPass<'a>>) {
    let SimOptions {
        trace,
        details,
        control,
    } = opts;
    let strategy = scenario.strategy(spec, seed);
    let lanes = strategy.lanes();
    let prefetch_requests = strategy.prefetches();
    let mut sim = Sim {
        scenario,
        seed,
        retry: spec.retry,
        server: scenario.server(seed),
        strategy,
        stream: RequestStream::new(&scenario.workload, seed),
        queue: EventQueue::default(),
        seq: 0,
        book: Book::new(&scenario.workload.arrivals, lanes),
        next_arrival: None,
        ahead: Vec::with_capacity(DRAW_AHEAD),
        taken: 0,
        rec: Recorder::with_routes(scenario.quota_routes()),
        trace,
        timeline: details.then(Timeline::default),
        admitted: 0,
        stalls: Vec::new(),
        name: spec.name.clone(),
        kind: spec.kind.name(),
        livelock: None,
        pass,
        prefetch_requests,
        hint: None,
        pump_due: None,
        late: FxHashMap::default(),
    };
    let horizon = scenario.horizon;
    if !matches!(scenario.workload.arrivals, Arrivals::Closed { .. }) {
        sim.schedule_next_arrival();
    }
    sim.pump(0);
    let closed = matches!(scenario.workload.arrivals, Arrivals::Closed { .. });
    let (mut steps, mut reported, mut last_now) = (0u32, 0u64, 0);
    let mut stopped = false;
    loop {
        steps += 1;
        if steps == CHECK_EVERY {
            steps = 0;
            if let Some(c) = control {
                use std::sync::atomic::Ordering::Relaxed;
                let done = if closed {
                    sim.rec.completed + sim.rec.failed + sim.rec.unservable
                } else {
                    last_now / crate::core::time::SECOND
                };
                c.progress.fetch_add(done - reported, Relaxed);
                reported = done;
                if c.stop.load(Relaxed) {
                    stopped = true;
                    break;
                }
            }
        }
        let arrival_first = match (&sim.next_arrival, sim.queue.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((t, seq, _, _)), Some(e)) => ((*t as u128) << 64 | *seq as u128) < e.key(),
        };
        if arrival_first {
            let (now, _, req, drawn) = sim.next_arrival.take().expect("checked");
            if now > horizon {
                break;
            }
            last_now = now;
            sim.tick(now);
            sim.rec.requests += 1;
            sim.arrive(req, drawn, now);
            sim.schedule_next_arrival();
            sim.pump(now);
            continue;
        }
        let ev = sim.queue.pop().expect("checked");
        // The next events' requests, fetched into the cache while this one is handled; and
        // the strategy's state of the next one's request (its slot was asked for one event
        // ago, so reading its id seldom waits).
        for (i, next) in sim.queue.following(PREFETCH).enumerate() {
            let slot = (next.tag >> 2) as u32;
            if i == 0 && sim.prefetch_requests {
                if let Some(id) = sim.book.request_id(slot) {
                    sim.strategy.prefetch(id);
                }
            }
            sim.book.prefetch(slot);
        }
        let now = ev.time();
        if now > horizon {
            break;
        }
        last_now = now;
        sim.tick(now);
        let slot = (ev.tag >> 2) as u32;
        match ev.tag & 3 {
            // Every event is followed by a pump (below): nothing else to do.
            OFFER if slot == PUMP => sim.pump_due = sim.pump_due.filter(|&t| t > now),
            OFFER => {
                if !sim.offer(slot, now) {
                    sim.park(slot);
                }
            }
            SEND => sim.due(slot, now),
            COMPLETE => sim.complete(slot, now),
            _ => sim.refused(slot, now),
        }
        // The next arrival's likely budget: its record was asked for when it was drawn, so
        // its window entries can be now.
        if let Some((k, m)) = sim.hint.take() {
            sim.strategy.prefetch_next(m, true);
            sim.server.prefetch(k, m, true);
        }
        if sim.livelock.is_some() {
            stopped = true;
            break;
        }
        sim.pump(now);
    }
    // Stopped early: the report covers the time simulated so far.
    let until = if stopped { last_now } else { horizon };
    if let Some(c) = control {
        let done = if closed {
            sim.rec.completed + sim.rec.failed + sim.rec.unservable
        } else {
            until / crate::core::time::SECOND
        };
        c.progress
            .fetch_add(done.saturating_sub(reported), std::sync::atomic::Ordering::Relaxed);
    }
    // The bound's pass takes the requests the run did not reach.
    let mut pass = sim.pass.take();
    if let Some(p) = pass.as_mut() {
        p.feed(sim.stream.by_ref());
    }
    (
        Unbounded {
            scenario,
            spec,
            until,
            rec: sim.rec,
            server: sim.server,
            timeline: sim.timeline,
            live: sim.book.live,
            livelock: sim.livelock,
        },
        pass,
    )
}

/// A simulation that has run, waiting for its bound to be summed up ([`Unbounded::finish`]).
pub struct Unbounded<'a> {
    scenario: &'a Scenario,
    spec: &'a StrategySpec,
    until: Nanos,
    rec: Recorder,
    server: Server,
    timeline: Option<Timeline>,
    live: u64,
    livelock: Option<String>,
}

impl Unbounded<'_> {
    /// The simulation's result, judged against `bound`.
    pub fn finish(mut self, bound: &Bound) -> Simulation {
        let scenario = self.scenario;
        let (mut result, span) = summary(&mut self.rec, scenario, self.spec, bound, self.until);
        result.livelock = self.livelock.take();
        result.peak_spend_usd = (0..scenario.topology.accounts.len())
            .filter_map(|a| self.server.spend_peak(a))
            .map(|(peak, _)| round3(peak as f64 / PICO_PER_USD as f64))
            .reduce(f64::max);
        let details = self.timeline.take().map(|mut tl| {
            tl.sample_until(span, self.rec.in_flight, self.live - self.rec.in_flight);
            tl.finish(span, &self.server, scenario, self.rec.wait_cdf())
        });
        Simulation {
            result,
            span,
            server: self.server,
            details,
        }
    }
}

impl Sim<'_, '_> {
    /// Lets the timeline (if any) sample the minute boundaries before `now`.
    fn tick(&mut self, now: Nanos) {
        if let Some(tl) = self.timeline.as_mut() {
            tl.sample_until(now, self.rec.in_flight, self.book.live - self.rec.in_flight);
        }
    }

    fn push(&mut self, time: Nanos, kind: u64, slot: u32) {
        self.seq += 1;
        let key = (time as u128) << 64 | self.seq as u128;
        self.queue.push(Event::new(key, (slot as u64) << 2 | kind));
    }

    /// The stream's next request, also given to the bound's pass if any, with the response
    /// time on its own model that the pass drew for it (0 if none: the server draws it then).
    ///
    /// Requests are drawn `DRAW_AHEAD` at a time, each written in place, then given to the
    /// pass: one request's draws (two lognormal sizes, a response time, each ending in an
    /// `exp`) do not wait for the previous one's, and the pass's counters are touched in a
    /// row. The same requests in the same order as one at a time, so the same results (the
    /// pass takes the rest of the stream after the run, whatever was drawn ahead).
    fn draw(&mut self) -> Option<(Request, Nanos)> {
        if self.taken == self.ahead.len() {
            self.ahead.clear();
            self.ahead.resize(DRAW_AHEAD, (Request::default(), 0));
            let mut n = 0;
            while n < DRAW_AHEAD && self.stream.next_into(&mut self.ahead[n].0) {
                n += 1;
            }
            self.ahead.truncate(n);
            self.taken = 0;
            if let Some(p) = self.pass.as_mut() {
                for (r, drawn) in self.ahead.iter_mut() {
                    *drawn = p.add(r);
                }
            }
        }
        let next = self.ahead.get(self.taken).copied();
        self.taken += 1;
        next
    }

    fn schedule_next_arrival(&mut self) {
        if let Some((r, drawn)) = self.draw() {
            if r.arrival < self.scenario.horizon {
                self.seq += 1;
                // Its strategy state is written when it arrives, a few events from now; the
                // budget it will likely be sent on is asked for too (its window entries after
                // the next event: `hint`).
                if self.prefetch_requests {
                    self.strategy.prefetch(r.id);
                }
                self.hint = self.strategy.prefetch_next(r.model, false).map(|k| (k, r.model));
                if let Some((k, m)) = self.hint {
                    self.server.prefetch(k, m, false);
                }
                self.next_arrival = Some((r.arrival, self.seq, r, drawn));
            }
        }
    }

    /// Hands one attempt to the trace sink.
    fn record(
        &mut self,
        l: &Live,
        now: Nanos,
        status: u16,
        outcome: &'static str,
        violated: Dims,
        retry_delay: Option<Nanos>,
    ) {
        if let Some(t) = self.trace.as_mut() {
            t(&AttemptRecord::of(
                self.scenario,
                l,
                now,
                status,
                outcome,
                violated,
                retry_delay,
            ));
        }
    }

    /// A refused session's client sees the close: it tells its strategy (a close carries no
    /// quota details) and retries as its policy says.
    /// A REST answer on its way (`server.error_latency`) arrives the same way.
    fn refused(&mut self, slot: u32, now: Nanos) {
        let l = self.book.get(slot);
        if let Some(answer) = self.late.remove(&slot) {
            return self.answer(slot, &l, now, answer);
        }
        let outcome = Outcome::RateLimited {
            violated: Dims::EMPTY,
            retry_delay: None,
            quota: crate::core::ledger::Limits::UNLIMITED,
            quota_model: None,
        };
        self.strategy
            .on_outcome(now, &l.ask(), l.key as usize, l.model as usize, l.sent, &outcome);
        self.retry_or_end(slot, &l, now, &outcome, "close 1011");
    }

    /// A REST send's answer that is not a success reaches its client `server.error_latency`
    /// after the send (at once by default).
    fn answer_late(&mut self, slot: u32, l: &Live, now: Nanos, answer: Late) {
        match self.scenario.server.error_latency {
            0 => self.answer(slot, l, now, answer),
            d => {
                self.late.insert(slot, answer);
                self.push(now + d, REFUSED, slot);
            }
        }
    }

    /// The client of the request in `slot` (`l`) gets `answer` at `now`: its strategy learns
    /// it, and its retry policy retries or ends it.
    fn answer(&mut self, slot: u32, l: &Live, now: Nanos, answer: Late) {
        let (key, model) = (l.key as usize, l.model as usize);
        let outcome = match answer {
            Late::Error(outcome) => outcome,
            Late::Unservable(violated, quota) => {
                self.strategy
                    .on_outcome(now, &l.ask(), key, model, l.sent, &Outcome::Unservable { quota });
                // A tool that reads only the status code retries it like any 429.
                if !self.strategy.tells_unservable() {
                    let delay = self
                        .retry
                        .delay_after_unservable(self.seed, l.req.id, l.attempts, violated);
                    match delay {
                        Some(0) if self.stalled(slot, l, now, "an unservable 429") => {}
                        Some(d) => self.push(now + d, OFFER, slot),
                        None => self.end(slot, now, End::Unservable),
                    }
                    return;
                }
                self.end(slot, now, End::Unservable);
                return;
            }
        };
        self.strategy.on_outcome(now, &l.ask(), key, model, l.sent, &outcome);
        let what = match outcome {
            Outcome::RateLimited { .. } => "429",
            Outcome::InvalidKey => "400 API key not valid",
            Outcome::Unavailable => "503",
            _ => "an error",
        };
        self.retry_or_end(slot, l, now, &outcome, what);
    }

    /// What the run has done so far, as one number that grows with every arrival, admission
    /// and end of a request; a failed attempt alone leaves it as it was.
    fn progress(&self) -> u64 {
        let ended = self.rec.completed + self.rec.failed + self.rec.unservable;
        self.admitted + 2 * ended + self.book.live
    }

    /// After the attempt of `l` failed with `outcome` (`what`, for a report), offers it again
    /// when its retry policy says, or ends it; a request retried [`STALL_LIMIT`] times at one
    /// instant without progress is reported as a livelock and stops the run.
    fn retry_or_end(&mut self, slot: u32, l: &Live, now: Nanos, outcome: &Outcome, what: &str) {
        match self.retry.delay_after(self.seed, l.req.id, l.attempts, outcome) {
            Some(0) => {
                if !self.stalled(slot, l, now, what) {
                    self.push(now, OFFER, slot);
                }
            }
            Some(d) => self.push(now + d, OFFER, slot),
            None => self.end(slot, now, End::Failed),
        }
    }

    /// Counts a retry at once of `l` in `slot`; true (with the livelock recorded) when it is
    /// the [`STALL_LIMIT`]-th at this instant with nothing else having changed.
    fn stalled(&mut self, slot: u32, l: &Live, now: Nanos, what: &str) -> bool {
        let progress = self.progress();
        let i = slot as usize;
        if self.stalls.len() <= i {
            self.stalls.resize(i + 1, Stall::default());
        }
        let s = &mut self.stalls[i];
        if s.at == now && s.request == l.req.id && s.progress == progress {
            s.count += 1;
        } else {
            *s = Stall {
                at: now,
                request: l.req.id,
                progress,
                count: 1,
            };
        }
        if s.count < STALL_LIMIT {
            return false;
        }
        let key = l.key as usize;
        self.livelock = Some(format!(
            "strategy {:?} (kind {}) livelocked: request {} was retried {} times at t = {} with nothing else in the run changing (its last attempt: key #{} of project {:?}, model {:?}, answered {what}); its retry policy ({}) never gives up and the strategy keeps choosing what fails, so the run would never end",
            self.name,
            self.kind,
            l.req.id,
            s.count,
            crate::core::time::format_duration(now),
            key,
            self.scenario.topology.projects[self.scenario.topology.keys[key].project].name,
            self.scenario.models[l.model as usize].name,
            self.retry.describe(),
        ));
        true
    }

    fn complete(&mut self, slot: u32, now: Nanos) {
        let l = self.book.get(slot);
        let (key, model) = (l.key as usize, l.model as usize);
        if let Some(plan) = self.scenario.session_plan(model, &l.req, self.seed) {
            match plan.end {
                SessionEnd::Lifetime => self.rec.sessions.lifetime += 1,
                SessionEnd::Cap => self.rec.sessions.cap += 1,
                SessionEnd::Closed => {}
            }
        }
        self.rec.in_flight -= 1;
        self.rec.completed(l.req.arrival, l.sent, now, l.req.input_tokens);
        if let Some(tl) = self.timeline.as_mut() {
            tl.completed(now, l.req.input_tokens);
        }
        self.record(&l, now, 200, "ok", Dims::EMPTY, None);
        self.strategy
            .on_outcome(now, &l.ask(), key, model, l.sent, &Outcome::Ok);
        self.end(slot, now, End::Completed);
    }
}

impl Dispatch for Sim<'_, '_> {
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
        self.draw()
    }

    fn send_at(&mut self, slot: u32, at: Nanos) {
        self.push(at, SEND, slot);
    }

    fn offer_at(&mut self, slot: u32, at: Nanos) {
        self.push(at, OFFER, slot);
    }

    fn pump_at(&mut self, at: Nanos) {
        // One pump event at a time is enough: the one due first offers the line's head, which
        // says again when it wants to be asked.
        if self.pump_due.is_none_or(|t| at < t) {
            self.pump_due = Some(at);
            self.push(at, OFFER, PUMP);
        }
    }

    fn send(&mut self, slot: u32, key: usize, model: usize, now: Nanos) {
        let l = self.book.attempt(slot, key, model, now);
        self.rec.attempts += 1;
        let call = Call {
            key: KeyRef::Known(key),
            model: Some(model),
            input_tokens: l.req.input_tokens,
            output_tokens: l.req.output_tokens,
            request: l.req.id,
            attempt: l.attempts,
            priority: l.req.priority,
        };
        let plan = self.scenario.session_plan(model, &l.req, self.seed);
        let response = match plan {
            Some(p) => self.server.open_session(now, &call, now.saturating_add(p.release_at)),
            // The response time the bound's pass drew, if any, is the server's on that model.
            None if l.drawn > 0 => self.server.handle_drawn(now, &call, (l.req.model, l.drawn)),
            None => self.server.handle(now, &call),
        };
        // A refused Live session is a close (1011, or 1006 at the upgrade), not a 429.
        let rules = self.scenario.server.live;
        let refused = if plan.is_some() { rules.refusal_code() } else { 429 };
        let outcome = match response {
            Response::Ok { completes_at, via } => {
                self.book.get_mut(slot).via = Some(via);
                self.rec.in_flight += 1;
                self.admitted += 1;
                if let Some(tl) = self.timeline.as_mut() {
                    let s = self.scenario;
                    let budget = s.topology.keys[key].project * s.models.len() + model;
                    let cost = self.server.tpm_cost(l.req.input_tokens, l.req.output_tokens);
                    tl.admitted(
                        now,
                        budget,
                        s.topology.projects.len() * s.models.len(),
                        cost,
                        completes_at,
                        s,
                    );
                }
                match plan {
                    Some(p) => {
                        self.rec.sessions.held.push((now, completes_at));
                        self.push(now + p.client_end, COMPLETE, slot);
                    }
                    None => self.push(completes_at, COMPLETE, slot),
                }
                return;
            }
            Response::RateLimited {
                violated,
                retry_delay,
                quota,
                quota_model,
            } => {
                self.rec.rate_limited_on(violated, model, Some(quota_model));
                let only_days = [Dimension::Rpd].into_iter().collect::<Dims>();
                if violated == only_days && self.server.day_spent_before(now, l.key as usize, quota_model) {
                    let project = self.scenario.topology.keys[l.key as usize].project;
                    self.rec.day_spent_before(project, quota_model);
                }
                if let Some(tl) = self.timeline.as_mut() {
                    tl.rate_limited(now, violated);
                }
                self.record(&l, now, refused, "rate_limited", violated, Some(retry_delay));
                Outcome::RateLimited {
                    violated,
                    retry_delay: Some(retry_delay),
                    quota,
                    quota_model: Some(quota_model),
                }
            }
            Response::Unservable { violated, quota } => {
                self.rec.rate_limited(violated);
                if let Some(tl) = self.timeline.as_mut() {
                    tl.rate_limited(now, violated);
                }
                self.record(&l, now, 429, "unservable", violated, None);
                self.answer_late(slot, &l, now, Late::Unservable(violated, quota));
                return;
            }
            Response::SpendCap => {
                self.rec.spend_limited();
                if let Some(tl) = self.timeline.as_mut() {
                    tl.spend_limited(now);
                }
                self.record(&l, now, refused, "spend_cap", Dims::EMPTY, None);
                Outcome::RateLimited {
                    violated: Dims::EMPTY,
                    retry_delay: None,
                    quota: crate::core::ledger::Limits::UNLIMITED,
                    quota_model: None,
                }
            }
            Response::Capacity => {
                self.rec.rate_limited(Dims::EMPTY);
                if let Some(tl) = self.timeline.as_mut() {
                    tl.rate_limited(now, Dims::EMPTY);
                }
                self.record(&l, now, refused, "rate_limited", Dims::EMPTY, None);
                Outcome::RateLimited {
                    violated: Dims::EMPTY,
                    retry_delay: None,
                    quota: crate::core::ledger::Limits::UNLIMITED,
                    quota_model: None,
                }
            }
            r => {
                self.rec.other_errors += 1;
                let (status, outcome) = match r {
                    Response::InvalidKey => (400, Outcome::InvalidKey),
                    Response::MissingKey => (403, Outcome::Error),
                    Response::UnknownModel => (404, Outcome::Error),
                    // A Live session's backend failure is a close 1011 whose reason says so.
                    _ if plan.is_some() => (crate::core::live::CLOSE_QUOTA, Outcome::Unavailable),
                    _ => (503, Outcome::Unavailable),
                };
                self.record(&l, now, status, "error", Dims::EMPTY, None);
                outcome
            }
        };
        if plan.is_some() && matches!(outcome, Outcome::RateLimited { .. }) {
            // Its client learns it at the close, which names no dimension (`refused`).
            self.rec.sessions.refused += 1;
            match rules.refusal_delay() {
                0 => self.refused(slot, now),
                delay => self.push(now + delay, REFUSED, slot),
            }
            return;
        }
        self.answer_late(slot, &l, now, Late::Error(outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::bound::upper_bound;
    use std::path::Path;

    const MIXED: &str = r#"
name = "mixed"
seed = 5
[server]
fault_rate = 0.05
[server.latency]
ttft = "500ms"
tokens_per_second = 100
jitter = 0.5
[models.m]
rpm = 6
tpm = 5000
rpd = 300
concurrent = 2
[topology]
projects = ["a", "b", "c"]
[topology.project.a]
keys = 2
invalid_keys = 1
[workload]
kind = "open"
rate = 40
duration = "30m"
burst_on = "2m"
burst_off = "3m"
input_tokens = { dist = "lognormal", median = 400, p99 = 6000 }
output_tokens = { dist = "uniform", min = 10, max = 400 }
[[strategies]]
kind = "round_robin"
[[strategies]]
kind = "fixed_interval"
interval = "5s"
[[strategies]]
name = "flux"
kind = "exact_cooldown"
compat = "gemini-flux"
retry = { policy = "immediate" }
[[strategies]]
kind = "exact_cooldown"
"#;

    fn run_all(text: &str) -> Vec<StrategyResult> {
        let s = Scenario::parse(text, Path::new("t.toml")).unwrap();
        let b = upper_bound(&s, s.seed);
        s.strategies
            .iter()
            .map(|spec| simulate(&s, spec, s.seed, &b, None))
            .collect()
    }

    #[test]
    fn every_request_ends_once_and_attempts_add_up() {
        for r in run_all(MIXED) {
            assert_eq!(r.requests, r.completed + r.failed + r.unservable + r.pending, "{r:?}");
            assert!(r.attempts >= r.completed + r.rate_limited + r.other_errors, "{r:?}");
            assert!(
                r.attempts - (r.completed + r.rate_limited + r.other_errors) <= r.pending,
                "{r:?}"
            );
            assert!(r.requests > 100, "{r:?}");
            // gemini-flux may kill every key before it meets an oversized request.
            assert!(
                r.unservable > 0 || r.strategy == "flux",
                "p99 6000 > tpm 5000 makes some unservable: {r:?}"
            );
            assert!(r.efficiency <= 1.0 + 1e-9, "{r:?}");
        }
    }

    #[test]
    fn exact_cooldown_with_true_limits_never_gets_a_quota_429() {
        let rs = run_all(MIXED);
        let ec = rs.iter().find(|r| r.strategy == "exact_cooldown").unwrap();
        assert_eq!(ec.rate_limited, 0, "{ec:?}");
        assert!(ec.other_errors > 0, "503s and the invalid key still happen: {ec:?}");
        let rr = rs.iter().find(|r| r.strategy == "round_robin").unwrap();
        assert!(rr.rate_limited > 0, "{rr:?}");
    }

    /// `server.error_latency`: a refusal reaches its client that long after the send, and a
    /// burst's later sends leave meanwhile. Eight sends at once on a project of 3 slots, by a
    /// flux told nothing: with the 429 at the send's instant, the fourth send is refused and
    /// teaches the cap before the fifth; with 150 ms, five are refused, and the retry of each
    /// leaves no sooner than 150 ms after its refusal.
    #[test]
    fn a_refusal_comes_back_a_round_trip_late() {
        let text = |latency: &str| {
            format!(
                r#"
name = "burst"
seed = 3
[server]
error_latency = "{latency}"
[server.latency]
ttft = "2s"
tokens_per_second = 1000
jitter = 0.0
[models.m]
rpm = 100
concurrent = 3
[topology]
projects = 1
[workload]
kind = "closed"
requests = 8
workers = 8
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 10 }}
[[strategies]]
kind = "flux"
known_limits = {{ m = {{}} }}
"#
            )
        };
        for (latency, refused) in [("0s", 1), ("150ms", 5)] {
            let s = Scenario::parse(&text(latency), Path::new("t.toml")).unwrap();
            let b = upper_bound(&s, s.seed);
            let mut sends: Vec<(u64, u32, Nanos, u16)> = Vec::new();
            let mut trace = |a: &AttemptRecord| sends.push((a.request, a.attempt, a.time, a.status));
            let r = simulate(&s, &s.strategies[0], s.seed, &b, Some(&mut trace));
            assert_eq!(r.completed, 8, "{latency}: {r:?}");
            assert_eq!(r.rate_limited_by.concurrency, refused, "{latency}: {sends:?}");
            for &(request, attempt, at, status) in &sends {
                if status != 429 {
                    continue;
                }
                let retry = sends.iter().find(|x| x.0 == request && x.1 == attempt + 1).unwrap();
                let late = s.server.error_latency;
                assert!(retry.2 >= at + late, "{latency}: retry at {} of a 429 at {at}", retry.2);
            }
        }
    }

    #[test]
    fn rerunning_gives_identical_results() {
        assert_eq!(run_all(MIXED), run_all(MIXED));
    }

    #[test]
    fn a_closed_batch_reports_its_makespan() {
        let text = r#"
name = "c"
[models.m]
rpm = 10
[topology]
projects = 1
[workload]
kind = "closed"
requests = 100
workers = 100
input_tokens = { dist = "fixed", value = 1 }
output_tokens = { dist = "fixed", value = 1 }
[[strategies]]
kind = "exact_cooldown"
"#;
        let r = &run_all(text)[0];
        assert_eq!((r.completed, r.rate_limited), (100, 0));
        // 10 per minute: the 100th request is sent at 9 minutes.
        let m = r.makespan_s.unwrap();
        assert!((540.0..545.0).contains(&m), "{m}");
        assert!(r.efficiency > 0.99 && r.efficiency <= 1.0, "{r:?}");
    }
}
