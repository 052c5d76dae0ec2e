//! What every driver (virtual-time engine, real-time `drive`) does alike with requests between
//! arrival and end: keep them in a slab, queue those the strategy defers, hand a closed batch's
//! free workers their next request (the strategy's pick among the next ones, if it orders its
//! batch), offer each to the strategy, and count how it ended.

use std::collections::VecDeque;

use crate::core::cache::prefetch_all;
use crate::core::server::{ConcurrencyScope, Via};
use crate::core::time::Nanos;
use crate::core::workload::{Arrivals, Request};
use crate::scenario::Scenario;
use crate::sim::bound::Bound;
use crate::sim::metrics::{round3, Recorder, SessionMetrics, StrategyResult};
use crate::strategy::{Ask, Decision, GiveUp, Strategy, StrategySpec, BATCH_LOOKAHEAD};

/// A request between arrival and end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Live {
    pub req: Request,
    /// Attempts sent so far.
    pub attempts: u32,
    /// Time, key and model of the latest send (or of the planned one).
    pub sent: Nanos,
    pub key: u32,
    pub model: u32,
    /// The path that admitted the latest send (for the trace).
    pub via: Option<Via>,
    /// Its response time on its own model when its driver already drew it (the bound's pass
    /// draws it, so the server need not draw it again); 0 when not drawn.
    pub drawn: Nanos,
}

impl Live {
    /// The request as the strategy sees it.
    pub fn ask(&self) -> Ask {
        ask_of(&self.req, self.attempts)
    }
}

/// Request `r` as a strategy sees it, after `attempts` sends.
fn ask_of(r: &Request, attempts: u32) -> Ask {
    Ask {
        request: r.id,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        model: r.model,
        attempts,
    }
}

/// How a request ended.
pub(crate) enum End {
    Completed,
    Failed,
    Unservable,
}

/// The requests a driver holds.
#[derive(Debug, Default)]
pub(crate) struct Book {
    slab: Vec<Option<Live>>,
    free_slots: Vec<u32>,
    /// Requests between arrival and end.
    pub live: u64,
    /// Requests the strategy deferred, in order, per lane (see [`Strategy::lanes`]).
    parked: Vec<VecDeque<u32>>,
    /// Idle workers of a closed batch.
    pub free_workers: u64,
    closed: bool,
    /// A closed batch's next requests, read ahead for a strategy that chooses among them
    /// ([`Strategy::orders_batch`]).
    ahead: Ahead,
}

/// A closed batch's next requests not yet taken, in the batch's order, with their drawn
/// response times, and beside them the same requests as a strategy sees them (`asks[i]` is
/// `reqs[i]`'s), both from `head` on. A take moves the shorter side of the taken request by
/// one (taking the first moves only `head`), and the taken front is dropped once it is as long
/// as [`BATCH_LOOKAHEAD`]: a take in the batch's order costs amortised O(1), not a rebuild of
/// every `Ask` shown.
#[derive(Debug, Default)]
struct Ahead {
    reqs: Vec<(Request, Nanos)>,
    asks: Vec<Ask>,
    head: usize,
}

impl Ahead {
    /// Requests held.
    fn len(&self) -> usize {
        self.reqs.len() - self.head
    }

    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the batch's next request (with its drawn response time) behind the others.
    fn push(&mut self, (r, drawn): (Request, Nanos)) {
        if self.head >= BATCH_LOOKAHEAD {
            self.reqs.drain(..self.head);
            self.asks.drain(..self.head);
            self.head = 0;
        }
        self.asks.push(ask_of(&r, 0));
        self.reqs.push((r, drawn));
    }

    /// The requests held, in the batch's order, as a strategy sees them.
    fn asks(&self) -> &[Ask] {
        &self.asks[self.head..]
    }

    /// Takes out the `i`-th request held (`i < len()`); the others keep their order.
    fn take(&mut self, i: usize) -> (Request, Nanos) {
        let (h, at) = (self.head, self.head + i);
        let taken = self.reqs[at];
        if i < self.len() - 1 - i {
            self.reqs.copy_within(h..at, h + 1);
            self.asks.copy_within(h..at, h + 1);
            self.head += 1;
        } else {
            self.reqs.copy_within(at + 1.., at);
            self.asks.copy_within(at + 1.., at);
            self.reqs.pop();
            self.asks.pop();
        }
        taken
    }
}

impl Book {
    /// An empty book whose deferred requests wait in `lanes` queues; a closed batch starts
    /// with all its workers free.
    pub fn new(arrivals: &Arrivals, lanes: usize) -> Self {
        let (closed, free_workers) = match *arrivals {
            Arrivals::Closed { workers, .. } => (true, workers),
            _ => (false, 0),
        };
        Book {
            closed,
            free_workers,
            parked: vec![VecDeque::new(); lanes.max(1)],
            ..Book::default()
        }
    }

    /// Queues the request in `slot`, which the strategy deferred, in its lane: behind the
    /// others, or, `in_place`, ahead of the first that arrived after it (later, or at the same
    /// instant with a larger id). A lane is in arrival order but for requests queued behind
    /// the others on their retry, so a request in place goes ahead of those too.
    pub fn park(&mut self, slot: u32, in_place: bool) {
        let r = self.get(slot).req;
        let lane = (r.id % self.parked.len() as u64) as usize;
        let q = &self.parked[lane];
        let at = if in_place {
            let place = |s: &u32| self.slab[*s as usize].as_ref().map(|l| (l.req.arrival, l.req.id));
            q.iter()
                .position(|s| place(s) > Some((r.arrival, r.id)))
                .unwrap_or(q.len())
        } else {
            q.len()
        };
        self.parked[lane].insert(at, slot);
    }

    /// Takes in a request whose response time on its own model was `drawn` (0: not drawn);
    /// returns its slot.
    pub fn alloc(&mut self, req: Request, drawn: Nanos) -> u32 {
        self.live += 1;
        let l = Some(Live {
            req,
            attempts: 0,
            sent: req.arrival,
            key: 0,
            model: 0,
            via: None,
            drawn,
        });
        match self.free_slots.pop() {
            Some(s) => {
                self.slab[s as usize] = l;
                s
            }
            None => {
                self.slab.push(l);
                (self.slab.len() - 1) as u32
            }
        }
    }

    /// The request in `slot`.
    pub fn get(&self, slot: u32) -> Live {
        self.slab[slot as usize].expect("live request")
    }

    /// Asks the CPU to bring the request in `slot` into its cache, without waiting for it:
    /// a driver that knows which request its next event is about calls this while it handles
    /// the current one. A request's slot is cold by the time its response completes (tens of
    /// thousands of others came and went meanwhile): its load was a fifth of a large run's
    /// time (`perf annotate` of `Book::get` in `Sim::complete`, issue 34). Every line of it:
    /// a slot is 80 bytes, so it always spans two. Changes nothing.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        if let Some(l) = self.slab.get(slot as usize) {
            prefetch_all(l);
        }
    }

    /// The id of the request in `slot`, if one is there.
    #[inline]
    pub fn request_id(&self, slot: u32) -> Option<u64> {
        self.slab.get(slot as usize).and_then(|l| l.as_ref()).map(|l| l.req.id)
    }

    /// The request in `slot`, to change.
    pub fn get_mut(&mut self, slot: u32) -> &mut Live {
        self.slab[slot as usize].as_mut().expect("live request")
    }

    /// Records a new attempt of the request in `slot` on `key` and `model` at `now`.
    pub fn attempt(&mut self, slot: u32, key: usize, model: usize, now: Nanos) -> Live {
        let l = self.get_mut(slot);
        l.attempts += 1;
        l.sent = now;
        l.key = key as u32;
        l.model = model as u32;
        l.via = None;
        *l
    }

    /// Lets `slot` go (its request ended); a closed batch's worker becomes free.
    fn free(&mut self, slot: u32) {
        self.slab[slot as usize] = None;
        self.free_slots.push(slot);
        self.live -= 1;
        if self.closed {
            self.free_workers += 1;
        }
    }
}

/// A driver: what differs between virtual and real time (how a send happens, how a planned
/// send waits, where a batch's next request comes from); offering and ending are the same.
pub(crate) trait Dispatch {
    /// The requests it holds.
    fn book(&mut self) -> &mut Book;
    /// The strategy it drives.
    fn strategy(&mut self) -> &mut dyn Strategy;
    /// Its metrics.
    fn recorder(&mut self) -> &mut Recorder;
    /// The next request of a closed batch, if any is left, with its response time on its own
    /// model if the driver drew it already (else 0).
    fn next_batch_request(&mut self) -> Option<(Request, Nanos)>;
    /// Sends the request in `slot` on `key` and `model` now.
    fn send(&mut self, slot: u32, key: usize, model: usize, now: Nanos);
    /// Sends the request in `slot` at `at` (> now), on the key and model stored in it.
    fn send_at(&mut self, slot: u32, at: Nanos);
    /// Offers the request in `slot` to the strategy again at `at` (> now).
    fn offer_at(&mut self, slot: u32, at: Nanos);
    /// Offers the parked requests again at `at` (> now), if nothing did before
    /// ([`Decision::DeferUntil`]).
    fn pump_at(&mut self, at: Nanos);

    /// Queues the request in `slot`, which the strategy deferred, where the strategy keeps it
    /// ([`Strategy::keeps_place`]).
    fn park(&mut self, slot: u32) {
        let id = self.book().get(slot).req.id;
        let in_place = self.strategy().keeps_place(id);
        self.book().park(slot, in_place);
    }

    /// Asks the strategy about the request in `slot`; false if it defers (the caller parks it).
    fn offer(&mut self, slot: u32, now: Nanos) -> bool {
        let ask = self.book().get(slot).ask();
        match self.strategy().decide(now, &ask) {
            Decision::Send { key, model, at } => {
                debug_assert!(at >= now, "strategies never plan in the past");
                if at <= now {
                    self.send(slot, key, model, now);
                } else {
                    let l = self.book().get_mut(slot);
                    l.key = key as u32;
                    l.model = model as u32;
                    self.send_at(slot, at);
                }
            }
            Decision::Defer => return false,
            Decision::DeferUntil(at) => {
                debug_assert!(at > now, "DeferUntil is for the future");
                self.pump_at(at.max(now + 1));
                return false;
            }
            Decision::Later(at) => {
                debug_assert!(at > now, "Later is for the future");
                self.offer_at(slot, at.max(now + 1));
            }
            Decision::GiveUp(GiveUp::Unservable) => self.end(slot, now, End::Unservable),
            Decision::GiveUp(GiveUp::Exhausted) => self.end(slot, now, End::Failed),
        }
        true
    }

    /// A planned send of the request in `slot` is due: sends it if the strategy confirms it,
    /// else offers the request again (or parks it).
    fn due(&mut self, slot: u32, now: Nanos) {
        let l = self.book().get(slot);
        let (key, model) = (l.key as usize, l.model as usize);
        if self.strategy().confirm(now, &l.ask(), key, model) {
            self.send(slot, key, model, now);
        } else if !self.offer(slot, now) {
            self.park(slot);
        }
    }

    /// Takes in a request that arrives now (its response time on its own model `drawn`
    /// already, or 0): offers it, or parks it.
    fn arrive(&mut self, req: Request, drawn: Nanos, now: Nanos) {
        let slot = self.book().alloc(req, drawn);
        if !self.offer(slot, now) {
            self.park(slot);
        }
    }

    /// Offers parked requests (FIFO per lane, stopping at the first that still defers) and gives free
    /// workers of a closed batch their next request, until nothing moves.
    fn pump(&mut self, now: Nanos) {
        loop {
            let mut moved = false;
            for lane in 0..self.book().parked.len() {
                while let Some(slot) = self.book().parked[lane].pop_front() {
                    if !self.offer(slot, now) {
                        self.book().parked[lane].push_front(slot);
                        break;
                    }
                    moved = true;
                }
            }
            if self.book().free_workers > 0 {
                let next = if self.strategy().orders_batch() {
                    self.pick_from_batch(now)
                } else {
                    self.next_batch_request()
                };
                if let Some((mut r, drawn)) = next {
                    self.book().free_workers -= 1;
                    r.arrival = now;
                    self.arrive(r, drawn, now);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// The request of a closed batch a free worker takes at `now`, chosen by the strategy
    /// among the next [`BATCH_LOOKAHEAD`] not yet taken ([`Strategy::pick`]).
    fn pick_from_batch(&mut self, now: Nanos) -> Option<(Request, Nanos)> {
        while self.book().ahead.len() < BATCH_LOOKAHEAD {
            match self.next_batch_request() {
                Some(r) => self.book().ahead.push(r),
                None => break,
            }
        }
        let mut ahead = std::mem::take(&mut self.book().ahead);
        if ahead.is_empty() {
            self.book().ahead = ahead;
            return None;
        }
        let i = self.strategy().pick(now, ahead.asks()).min(ahead.len() - 1);
        let taken = ahead.take(i);
        self.book().ahead = ahead;
        Some(taken)
    }

    /// Ends the request in `slot` at `now`.
    fn end(&mut self, slot: u32, now: Nanos, how: End) {
        let rec = self.recorder();
        match how {
            End::Completed => {}
            End::Failed => rec.failed += 1,
            End::Unservable => rec.unservable += 1,
        }
        rec.last_end = rec.last_end.max(now);
        self.book().free(slot);
    }
}

/// The result row of `spec` once its driver stopped at `until` (the horizon, or earlier when
/// interrupted), and the span it is measured over: a closed batch's makespan if it ended,
/// else `until`.
pub(crate) fn summary(
    rec: &mut Recorder,
    scenario: &Scenario,
    spec: &StrategySpec,
    bound: &Bound,
    until: Nanos,
) -> (StrategyResult, Nanos) {
    let (requests, makespan) = match scenario.workload.arrivals {
        Arrivals::Closed { requests, .. } => {
            rec.requests = requests;
            let ended = rec.completed + rec.failed + rec.unservable;
            (requests, (ended == requests).then_some(rec.last_end))
        }
        _ => (rec.requests, None),
    };
    let pending = requests - rec.completed - rec.failed - rec.unservable;
    let span = makespan.unwrap_or(until);
    let result = rec.finish(
        &spec.name,
        spec.kind.name(),
        pending,
        span,
        until,
        makespan,
        bound,
        matches!(scenario.workload.arrivals, Arrivals::Closed { .. }),
    );
    let mut result = result;
    if scenario.workload.session.is_some() {
        let c = &rec.sessions;
        result.sessions = Some(SessionMetrics {
            closes_1011: c.refused,
            ends_1008: c.lifetime,
            ends_cap: c.cap,
            slot_utilisation: session_slots(scenario)
                .filter(|&n| n > 0)
                .map(|n| round3(c.held_until(span) as f64 / (n as f64 * span.max(1) as f64))),
        });
    }
    (result, span)
}

/// The session slots the limits give the workload's Live models, over every project (and
/// every valid key, for a per-key scope); `None` when some project has no limit.
fn session_slots(scenario: &Scenario) -> Option<u128> {
    let mut models = scenario.workload.model.models();
    models.sort_unstable();
    models.dedup();
    // Valid keys per project, counted in one pass.
    let mut keys = vec![0u128; scenario.topology.projects.len()];
    for k in scenario.topology.keys.iter().filter(|k| k.valid) {
        keys[k.project] += 1;
    }
    let mut slots = 0u128;
    for (p, project) in scenario.topology.projects.iter().enumerate() {
        for &m in &models {
            let limit = project.limits[m].concurrent? as u128;
            slots += match scenario.models[m].concurrency_scope {
                ConcurrencyScope::Project => limit,
                ConcurrencyScope::Key => limit * keys[p],
            };
        }
    }
    Some(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A slot spans two cache lines, which [`Book::prefetch`] asks for both of.
    #[test]
    fn a_slot_is_80_bytes() {
        assert_eq!(std::mem::size_of::<Option<Live>>(), 80);
    }

    fn request(id: u64) -> Request {
        Request {
            id,
            arrival: 0,
            input_tokens: id * 7 % 13,
            output_tokens: id % 5,
            model: (id % 3) as usize,
            priority: false,
        }
    }

    /// A request parked in place goes ahead of the first in its lane that arrived after it
    /// (later, or at the same instant with a larger id), whatever came back behind the others
    /// before it; one parked plainly goes behind every other.
    #[test]
    fn a_request_parked_in_place_goes_ahead_of_those_that_arrived_after_it() {
        let open = Arrivals::Open {
            rate_per_min: 1.0,
            bursts: None,
            max_requests: None,
        };
        let mut book = Book::new(&open, 1);
        let at = |id: u64, arrival: Nanos| Request { arrival, ..request(id) };
        // Requests 1, 3, 5, 7 arrived at 10, 20, 20, 30 and wait in that order; 0 (arrived at
        // 5) came back from a retry behind them.
        for (id, arrival) in [(1, 10), (3, 20), (5, 20), (7, 30), (0, 5)] {
            let s = book.alloc(at(id, arrival), 0);
            book.park(s, false);
        }
        let order = |book: &Book| -> Vec<u64> { book.parked[0].iter().map(|&s| book.get(s).req.id).collect() };
        assert_eq!(order(&book), [1, 3, 5, 7, 0]);
        // 4 arrived at 20: after 3, ahead of 5 (same instant, larger id), 7 and 0.
        let s = book.alloc(at(4, 20), 0);
        book.park(s, true);
        assert_eq!(order(&book), [1, 3, 4, 5, 7, 0]);
        // 2 arrived at 8: ahead of 1 and of everything after.
        let s = book.alloc(at(2, 8), 0);
        book.park(s, true);
        assert_eq!(order(&book), [2, 1, 3, 4, 5, 7, 0]);
        // 9 arrived last: at the end either way; 6 plainly: behind 9.
        let s = book.alloc(at(9, 40), 0);
        book.park(s, true);
        let s = book.alloc(at(6, 1), 0);
        book.park(s, false);
        assert_eq!(order(&book), [2, 1, 3, 4, 5, 7, 0, 9, 6]);
    }

    /// The read-ahead of a closed batch shows a strategy exactly what a queue of the batch's
    /// next requests rebuilt before every take showed it (the `Ask`s, in order, and each
    /// beside its request), whichever it takes: the first, the last, or any between, while
    /// the batch refills it and its taken front is dropped.
    #[test]
    fn the_read_ahead_stays_in_step_with_a_rebuilt_queue() {
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(34);
        let (mut ahead, mut want) = (Ahead::default(), VecDeque::new());
        let mut next = 0u64;
        for step in 0..20_000 {
            let fill = if step < 15_000 { BATCH_LOOKAHEAD } else { 0 };
            while ahead.len() < fill {
                ahead.push((request(next), next * 3));
                want.push_back((request(next), next * 3));
                next += 1;
            }
            if ahead.is_empty() {
                break;
            }
            let shown: Vec<Ask> = want.iter().map(|(q, _): &(Request, Nanos)| ask_of(q, 0)).collect();
            assert!(ahead.asks() == &shown[..], "step {step}: the Asks shown differ");
            let i = match r.random_range(0..4) {
                0 => 0,
                1 => ahead.len() - 1,
                _ => r.random_range(0..ahead.len()),
            };
            assert_eq!(Some(ahead.take(i)), want.remove(i), "step {step}, taking {i}");
            assert!(ahead.reqs.len() <= 2 * BATCH_LOOKAHEAD, "the taken front is dropped");
        }
        assert!(ahead.is_empty() && want.is_empty());
    }
}
