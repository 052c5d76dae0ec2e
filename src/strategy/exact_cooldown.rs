//! `exact_cooldown`: keeps a client-side replica of the quota ledger (sliding windows, exact
//! token cooldowns, daily counts reset at midnight Pacific) and sends each request on the budget
//! whose window has room soonest, waiting exactly that long; falls back along a model chain when
//! a model's daily quota is gone. Every known dimension, per project, in-flight requests
//! reserved. It trusts its configured limits and RetryInfo; [`super::flux`] builds on it to
//! learn and re-plan.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};

use super::idle::{Idle, Share};
use super::kind::{KindDef, Param, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Peer, Strategy};
use crate::core::idmap::IdMap;
use crate::core::ledger::{Admission, BudgetId, Dimension, Dims, Ledger, LedgerConfig, Limits, WindowKind};
use crate::core::server::{ConcurrencyScope, Overflow};
use crate::core::time::{Nanos, MILLISECOND, MINUTE, SECOND};
use rustc_hash::FxHashMap;

/// `exact_cooldown` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "exact_cooldown",
    help: "a replica of the quota ledger per project: sends exactly when a budget has room; model fallback; trusts its limits and RetryInfo",
    takes: &[Param::Margin, Param::Fallback],
    requires: &[],
    defaults: Params::NONE,
    // RetryInfo: it plans by exact instants, so the server's delay is worth reading.
    retry: RetryPolicy::RetryInfo { base: SECOND, cap: 60 * SECOND, max_attempts: None },
    live: true,
    rest: true,
    build: |env, spec| Box::new(ExactCooldown::new(env, spec.fallback.clone(), spec.kind.params.margin)),
};

/// One budget as the strategy tracks it: a (project, model) pair.
#[derive(Debug, Clone)]
struct Unit {
    budget: BudgetId,
    /// The latest planned send: plans on one budget never go back in time, so the replica's
    /// windows stay ordered and a plan never breaks an earlier one.
    last: Nanos,
    /// Not before this (learned from 429 retry delays).
    blocked: Nanos,
    /// Sends planned or outstanding.
    inflight: u64,
    /// `(day_end, sends)`: the sends planned for the day ending at `day_end`, its own and its
    /// peers', less those withdrawn or not charged (as the replica's day), its order of
    /// preference on token buckets when the day has no request limit (see
    /// [`ExactCooldown::preference`]); counted only while the planner plans buckets.
    day_sends: (Nanos, u64),
    /// Known concurrency limit and its scope.
    concurrent: Option<(u64, ConcurrencyScope)>,
    /// The project's reservation on the model (provisioned throughput), a budget of its own
    /// counting input tokens, and whether the overflow spills to the quota (`budget`); the
    /// server serves a request from it first whenever it has room.
    reservation: Option<(BudgetId, Overflow)>,
    /// Dimensions whose believed limit a send may exceed now, to find out whether it is too
    /// low (set by `flux`; always empty for `exact_cooldown`).
    probe: Dims,
    /// Dimensions a probe is out for: sends they hold back wait for an outcome rather than
    /// being planned by a belief the probe may overturn.
    awaiting: Dims,
    /// When the outcome `awaiting` waits for is known at the latest: the probe's planned
    /// instant and its owner's admit grace ([`ExactCooldown::set_admit_grace`], if it said).
    awaiting_until: Nanos,
    /// Where the unit is indexed.
    place: Place,
    /// `(cost, t)`: a request of `cost` could go no sooner than `t`, so neither could a larger
    /// one, as long as nothing about the unit changes (cleared by `reindex`). Lets
    /// `best_for` pass over idle units that cannot take a large request now.
    refused: Option<(u64, Nanos)>,
    /// Out of the index because its project's concurrency slots are all taken (counted in
    /// [`ExactCooldown::slots_out`]).
    slots_out: bool,
}

/// The earlier of two instants, either of which may be unknown.
fn earliest(a: Option<Nanos>, b: Option<Nanos>) -> Option<Nanos> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What [`ExactCooldown::best_for`] learned of the units it visited, beside the best one.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Some unit could take the request, at some time or once a slot frees.
    fits: bool,
    /// Some unit could take it only once an outstanding request ends.
    slots_full: bool,
    /// The earliest instant a unit waiting only for a concurrency slot could take it by its
    /// windows and day.
    slot_at: Option<Nanos>,
    /// Per model visited: the earliest instant a probe's outcome one of its units awaits is
    /// known.
    awaiting: Vec<(usize, Nanos)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Not a candidate: no live key, concurrency slots full, or a limit of 0.
    Out,
    /// Could take a request now (its lower bound has passed); keyed by preference.
    Idle(Share),
    /// Cannot take any request before this instant.
    Waiting(Nanos),
}

impl Place {
    /// The same place, field for field (an idle unit's share as stored, not only its value).
    fn same(self, other: Place) -> bool {
        match (self, other) {
            (Place::Out, Place::Out) => true,
            (Place::Idle(a), Place::Idle(b)) => (a.used, a.of) == (b.used, b.of),
            (Place::Waiting(a), Place::Waiting(b)) => a == b,
            _ => false,
        }
    }
}

/// The candidates of one model: idle units by preference (the share of the day's requests
/// used, so every project's daily quota lasts as long as the others', whatever its size),
/// waiting ones by lower bound.
#[derive(Debug, Clone)]
struct Index {
    idle: Idle,
    waiting: BTreeSet<(Nanos, u32)>,
}

/// The keys of each owner (a project), in key order, in one array: `of(o)` is
/// `keys[start[o]..start[o + 1]]` (a vector per owner put each owner's keys on a line of its
/// own, cold when `pick_key` reads it; issue 34).
#[derive(Debug, Clone)]
struct OwnerKeys {
    keys: Vec<usize>,
    start: Vec<usize>,
}

impl OwnerKeys {
    /// `owners` owners; key `k` is `key_owner[k]`'s.
    fn new(owners: usize, key_owner: &[usize]) -> Self {
        let mut start = vec![0; owners + 1];
        for &o in key_owner {
            start[o + 1] += 1;
        }
        for o in 0..owners {
            start[o + 1] += start[o];
        }
        let mut next = start.clone();
        let mut keys = vec![0; key_owner.len()];
        for (k, &o) in key_owner.iter().enumerate() {
            keys[next[o]] = k;
            next[o] += 1;
        }
        OwnerKeys { keys, start }
    }

    /// Owner `o`'s keys.
    #[inline]
    fn of(&self, o: usize) -> &[usize] {
        &self.keys[self.start[o]..self.start[o + 1]]
    }

    /// Owners.
    fn len(&self) -> usize {
        self.start.len() - 1
    }

    /// Each owner's keys, by owner.
    fn iter(&self) -> impl Iterator<Item = &[usize]> {
        (0..self.len()).map(|o| self.of(o))
    }
}

/// How a unit could serve a request.
enum Eval {
    /// At this instant, on this key (exceeding the believed limits of these dimensions: a
    /// probe).
    At(Nanos, usize, Dims),
    /// Not until an outstanding request ends: with the instant the unit's windows and day
    /// would take it once a concurrency slot frees (`None`: not a concurrency slot that is
    /// missing, but a Live probe's outcome the unit awaits, or a live key to send on).
    SlotsFull(Option<Nanos>),
    /// Not until the outcome of a probe it awaits is known, at this instant (a REST probe's).
    Awaiting(Nanos),
    /// Never (a limit of 0 or too many tokens).
    Never,
}

/// What the replica counted for one planned or outstanding send, and the tag a strategy built
/// on the planner keeps with it (`T`: nothing for `exact_cooldown`, `flux`'s plan of the send;
/// see [`ExactCooldown::tag`]).
#[derive(Debug, Clone, Copy, Default)]
struct Held<T> {
    at: Nanos,
    cost: u64,
    /// The key it goes on (its concurrency slot is counted there too).
    key: u32,
    /// On the reservation's budget (counting input tokens) rather than the quota's.
    on_reservation: bool,
    /// Withdrawn before it came due (see [`ExactCooldown::release_plans`]): it holds nothing
    /// (no slot, no room in the windows); the entry waits for its request to come due.
    released: bool,
    /// `T::default()`: untagged.
    tag: T,
}

impl<T: Default> Held<T> {
    /// Counted at `at` for `cost` on `key`, on the reservation or the quota, untagged.
    fn new(at: Nanos, cost: u64, key: usize, on_reservation: bool) -> Self {
        Held {
            at,
            cost,
            key: key as u32,
            on_reservation,
            released: false,
            tag: T::default(),
        }
    }
}

/// The exact-cooldown strategy. `T` is what a strategy built on it (`flux`) keeps per planned
/// send in the planner's own entry for the send, so that a request's state is one cold line,
/// not one per map (issue 34); `()` for `exact_cooldown` itself, whose entries stay as small.
#[derive(Debug, Clone)]
pub struct ExactCooldown<T: Copy = ()> {
    env: Env,
    fallback: Vec<usize>,
    replica: Ledger,
    units: Vec<Unit>,
    index: Vec<Index>,
    /// Keys of each owner (a project).
    owner_keys: OwnerKeys,
    key_owner: Vec<usize>,
    key_dead: Vec<bool>,
    key_inflight: Vec<u64>,
    cursor: Vec<usize>,
    /// When the current day ends: idle preferences (requests used today) are re-keyed then.
    day_end: Nanos,
    /// The smallest request cost seen: lower bounds hold for any request at least this big,
    /// and are recomputed when a smaller one comes (about ln N times in N requests).
    floor: Option<u64>,
    /// Whether `best_for` may pass over units known unable to take a request now (always, but
    /// for the test that checks it decides exactly as the full scan).
    pass_over: bool,
    /// The dimensions the latest decision probed (see [`ExactCooldown::take_probe`]).
    last_probe: Dims,
    /// How long after a probe's send its owner knows the outcome at the latest (0: never
    /// said; see [`ExactCooldown::set_admit_grace`]).
    admit_grace: Nanos,
    /// Per request with a send planned or outstanding: the instant, the cost its replica
    /// reserved and the budget it counted on (the unit's quota, or its reservation), so an
    /// outcome the server did not charge withdraws exactly that.
    reserved: IdMap<Held<T>>,
    /// A send on a quota goes only when this many copies of it fit its per-minute windows (1
    /// but in a fleet, where `flux` plans with its share of the room its peers may not have
    /// claimed yet: see [`ExactCooldown::set_weight`]).
    weight: u64,
    /// A send that could go only later than this after `now` is not planned yet: the request
    /// is asked about again then (unbounded but in a fleet, whose room is seen late).
    horizon: Nanos,
    /// Whether a Live model's units are preferred by the smallest share of their session
    /// slots in use rather than of their day (`flux`: see [`ExactCooldown::spread_sessions`]).
    spread: bool,
    /// Per unit: a day's requests to judge its share of the day by, where more than the limit
    /// it plans with (0: none). `flux` sets it on a project whose day it was told, when
    /// another project's told day proved low: see `Flux::grow`.
    day_estimate: Vec<u64>,
    /// Whether the caller asks for the next decision's budget itself ([`Strategy::prefetch_next`],
    /// as the engine does, well ahead): until it does, `decide` and `on_outcome` ask for it.
    driven: Cell<bool>,
    /// Whether the server counts a request it refused against RPM (`server.count_rejected`),
    /// as a 429's RetryInfo showed ([`ExactCooldown::judge_refusal`]); `None`: not known, and
    /// the replica keeps counting a refusal (`flux`'s; `exact_cooldown` never asks).
    refusals_counted: Option<bool>,
    /// While that is not known: the refusals the replica still counts, (instant, unit), the
    /// last two minutes' (older ones have left every window), to take back if the server
    /// proves not to count them.
    refusals: VecDeque<(Nanos, usize)>,
    /// Units out of the index until one of their project's concurrency slots frees.
    slots_out: usize,
    /// The request told to come back when a planned send would go, while sends wait for a
    /// concurrency slot instead of being planned far ahead (see `plan`), and when.
    waker: Option<(u64, Nanos)>,
    /// The latest decision deferred its request because every unit that could take it waits
    /// for a concurrency slot (or a live key), which only an outcome frees.
    waits_for_slot: bool,
    /// Per unit the server called a request unservable on, the smallest such cost (TPM): a
    /// request costing at least this can never be admitted there, whatever the planner
    /// believes of the limits (kept apart from `units`, which every decision reads, since
    /// almost no run has one).
    too_large: FxHashMap<usize, u64>,
    /// The send last withdrawn ([`Strategy::cancel`]).
    withdrawn: Option<Withdrawn>,
    /// A send withdrawn from a key found invalid since it was planned, to plan again where it
    /// was (see [`ExactCooldown::reclaim`]).
    reclaim: Option<Withdrawn>,
    /// Sends the server did not charge (a 400 for an invalid key, a 503) or that a send put
    /// back before them displaced, and until when their requests may take the room back
    /// (see [`ExactCooldown::retake`]).
    retakes: Vec<(Withdrawn, Nanos)>,
    /// Per unit (empty until needed): its plans due before this instant may meet a send put
    /// back before them since they were planned, and are checked when due
    /// ([`ExactCooldown::displaced`]).
    shaken: Vec<Nanos>,
    /// The latest of `shaken`: no plan due after it needs a check.
    shaken_until: Nanos,
}

/// A send withdrawn from the replica: whose, on which unit, and what it held.
#[derive(Debug, Clone, Copy)]
struct Withdrawn {
    request: u64,
    unit: usize,
    at: Nanos,
    cost: u64,
    on_reservation: bool,
}

impl Withdrawn {
    /// `request`'s send on unit `unit`, as the replica held it.
    fn of<T>(request: u64, unit: usize, held: &Held<T>) -> Self {
        Withdrawn {
            request,
            unit,
            at: held.at,
            cost: held.cost,
            on_reservation: held.on_reservation,
        }
    }
}

impl ExactCooldown {
    /// The strategy over `env`, falling back to `fallback` models in order; its replica holds
    /// window entries `margin` longer than 60 s (see [`Ledger::with_margin`]; 0 plans exactly).
    pub fn new(env: Env, fallback: Vec<usize>, margin: Nanos) -> Self {
        Self::tagged(env, fallback, margin)
    }
}

impl<T: Copy + Default + PartialEq + Send> ExactCooldown<T> {
    /// [`ExactCooldown::new`] with a tag `T` per planned send.
    pub(super) fn tagged(env: Env, fallback: Vec<usize>, margin: Nanos) -> Self {
        let mut replica = Ledger::new(
            env.calendar.clone(),
            LedgerConfig {
                // The scenario's window kind (a sliding replica waits up to a minute longer
                // than needed under calendar minutes, and where a bucket lets a burst through);
                // buckets kept as their sends, so that a withdrawal is exact.
                window: env.window,
                count_rejected: false,
            },
        )
        .with_margin(margin)
        .lazy()
        .exact_buckets();
        let keys = env.key_project.len();
        let owner_keys = OwnerKeys::new(env.projects, &env.key_project);
        let key_owner = env.key_project.clone();
        let mut units = Vec::new();
        for keys_of_owner in owner_keys.iter() {
            let project = env.key_project[keys_of_owner[0]];
            for m in 0..env.models {
                let known = env.limits[project * env.models + m];
                let limits = Limits {
                    concurrent: None,
                    ..known
                };
                let reservation = env
                    .reserved
                    .get(m)
                    .copied()
                    .flatten()
                    // Sliding whatever the quota's windows, as the server keeps it.
                    .map(|pt| (replica.add_sliding_budget(pt.limits), pt.overflow));
                units.push(Unit {
                    budget: replica.add_budget(limits, 0),
                    reservation,
                    last: 0,
                    blocked: 0,
                    inflight: 0,
                    day_sends: (0, 0),
                    concurrent: known.concurrent.map(|c| (c, env.scopes[m])),
                    probe: Dims::EMPTY,
                    awaiting: Dims::EMPTY,
                    awaiting_until: 0,
                    place: Place::Out,
                    refused: None,
                    slots_out: false,
                });
            }
        }
        let mut s = ExactCooldown {
            cursor: vec![0; owner_keys.len()],
            index: vec![
                Index {
                    idle: Idle::new(owner_keys.len()),
                    waiting: BTreeSet::new(),
                };
                env.models
            ],
            owner_keys,
            key_owner,
            key_dead: vec![false; keys],
            key_inflight: vec![0; keys],
            env,
            fallback,
            replica,
            units,
            floor: None,
            pass_over: true,
            day_end: 0,
            last_probe: Dims::EMPTY,
            admit_grace: 0,
            driven: Cell::new(false),
            reserved: IdMap::new(),
            weight: 1,
            horizon: Nanos::MAX,
            spread: false,
            day_estimate: Vec::new(),
            refusals_counted: None,
            refusals: VecDeque::new(),
            slots_out: 0,
            waker: None,
            waits_for_slot: false,
            too_large: FxHashMap::default(),
            withdrawn: None,
            reclaim: None,
            retakes: Vec::new(),
            shaken: Vec::new(),
            shaken_until: 0,
        };
        for u in 0..s.units.len() {
            s.reindex(u, 0);
        }
        for (m, q) in s.env.routes.clone() {
            s.share_quota(m, q, 0);
        }
        s
    }

    /// A live key of `owner` with a free slot under key-scoped concurrency `per_key`
    /// (round-robin among the owner's keys).
    fn pick_key(&self, owner: usize, per_key: Option<u64>) -> Option<usize> {
        let keys = self.owner_keys.of(owner);
        let cursor = self.cursor[owner];
        // `cursor < keys.len()`: one subtraction wraps it (no division).
        (0..keys.len())
            .map(|i| {
                let j = cursor + i;
                keys[if j >= keys.len() { j - keys.len() } else { j }]
            })
            .find(|&k| !self.key_dead[k] && per_key.is_none_or(|l| self.key_inflight[k] < l))
    }

    /// How many copies of a send costing `cost` must fit unit `u`'s per-minute windows (not
    /// counting `except`): the weight, but never more than its RPM or TPM limit holds.
    fn weight_for(&self, u: usize, cost: u64, except: Dims) -> u64 {
        if self.weight == 1 {
            return 1;
        }
        let b = self.units[u].budget;
        let (limits, [cap_r, cap_t]) = (self.replica.limits(b), self.replica.cap(b));
        let mut w = self.weight;
        if let Some(r) = limits.rpm.filter(|_| !except.contains(Dimension::Rpm)) {
            w = w.min(r.min(cap_r.unwrap_or(r)));
        }
        if let Some(t) = limits.tpm.filter(|_| cost > 0 && !except.contains(Dimension::Tpm)) {
            w = w.min(t.min(cap_t.unwrap_or(t)) / cost);
        }
        w.max(1)
    }

    fn start(&self, u: usize, now: Nanos) -> Nanos {
        let unit = &self.units[u];
        now.max(unit.last).max(unit.blocked)
    }

    /// Puts unit `u` where it belongs in its model's index, after anything about it changed.
    fn reindex(&mut self, u: usize, now: Nanos) {
        self.reindex_after(u, now, false);
    }

    /// [`ExactCooldown::reindex`]; `committed`: a send on the unit's budget was just committed
    /// to the replica at `now`, with nothing changed since, so a room the replica sees without
    /// reading a window ([`Ledger::fits_held`]) needs no check (a third of a decision's checks,
    /// 5% of `flux`'s instructions on `large.toml`; issue 34).
    fn reindex_after(&mut self, u: usize, now: Nanos, committed: bool) {
        self.units[u].refused = None;
        let (owner, m) = (u / self.env.models, u % self.env.models);
        let unit = &self.units[u];
        // A unit that may probe its concurrency limit is not full at it.
        let slots_full = matches!(unit.concurrent, Some((l, ConcurrencyScope::Project)) if unit.inflight >= l)
            && !unit.probe.contains(Dimension::Concurrency);
        if unit.slots_out != slots_full {
            self.units[u].slots_out = slots_full;
            if slots_full {
                self.slots_out += 1;
            } else {
                self.slots_out -= 1;
            }
        }
        let unit = &self.units[u];
        let place = if slots_full || self.pick_key(owner, None).is_none() {
            Place::Out
        } else {
            // The earliest instant any request of at least `floor` tokens could go.
            let t0 = self.start(u, now);
            let (budget, mut probe, reservation) = (unit.budget, unit.probe, unit.reservation);
            // A unit that may probe is bounded by the limits it does not probe; one awaiting a
            // day's probe outcome at a known time (REST) by the days it does not await, so that
            // a request reaches it and learns when the outcome is known: bounded by a believed
            // day spent, a unit awaiting its day's probe was never reached, and the queue was
            // planned an hour ahead on a 1-RPM project (`tpd-told-half-legacy`). A minute's
            // belief bounds it by at most a minute, as before.
            let awaited = !unit.awaiting.is_empty() && unit.awaiting_until > now && self.outcome_timed(u);
            if awaited {
                probe = probe.or(unit
                    .awaiting
                    .and([Dimension::Rpd, Dimension::Tpd].into_iter().collect()));
            }
            let floor = self.floor.unwrap_or(0);
            let room = |a: Admission| match a {
                Admission::Unservable { violated } => Err(violated),
                Admission::Admitted => Ok(t0),
                Admission::Rejected { retry_at, .. } => Ok(retry_at),
            };
            let quota = match reservation {
                Some((_, Overflow::DedicatedOnly)) => None,
                _ if committed && t0 == now && probe.is_empty() && self.replica.fits_held(t0, budget, floor) => {
                    Some(t0)
                }
                // One copy: a lower bound whatever the weight (see `set_weight`).
                _ => match room(self.replica.check_except(t0, budget, None, floor, probe)) {
                    Ok(t) => Some(t),
                    // Too large for a minute's belief a probe's outcome may overturn: reached,
                    // so that a request learns to wait for that outcome rather than being given
                    // up (told half the tokens a minute, every request but the probe was given
                    // up as unservable: hunt-3054, `scenarios/old-config-large-prompts.toml`).
                    Err(violated) if awaited && !violated.and(unit.awaiting).is_empty() => room(
                        self.replica
                            .check_except(t0, budget, None, floor, probe.or(unit.awaiting)),
                    )
                    .ok(),
                    Err(_) => None,
                },
            };
            // Its reservation, by the requests it has room for (a request's input tokens may
            // be fewer than the floor's cost: tokens are not bounded here).
            let reserved = reservation.and_then(|(r, _)| match self.replica.check(t0, r, None, 0) {
                Admission::Unservable { .. } => None,
                Admission::Admitted => Some(t0),
                Admission::Rejected { retry_at, .. } => Some(retry_at),
            });
            match quota.into_iter().chain(reserved).min() {
                None => Place::Out,
                Some(t) if t <= now => Place::Idle(self.preference(u, now)),
                Some(t) => Place::Waiting(t),
            }
        };
        let old = self.units[u].place;
        if old.same(place) {
            // Indexed where it belongs already: no walk of the index.
            return;
        }
        let index = &mut self.index[m];
        match old {
            Place::Out => {}
            Place::Idle(key) => {
                index.idle.remove(key, owner as u32);
            }
            Place::Waiting(t) => {
                index.waiting.remove(&(t, owner as u32));
            }
        }
        match place {
            Place::Out => {}
            Place::Idle(key) => {
                index.idle.insert(key, owner as u32);
            }
            Place::Waiting(t) => {
                index.waiting.insert((t, owner as u32));
            }
        }
        self.units[u].place = place;
    }

    /// Which idle unit to prefer (smaller first): the budget that has used the smallest share
    /// of its day's requests, so no project runs out of daily quota while others still have
    /// plenty (by count, a project with a quarter of another's requests per day would be
    /// spent when the other has three quarters left, and its minute's capacity lost).
    fn preference(&self, u: usize, now: Nanos) -> Share {
        if self.spread && self.env.live.get(u % self.env.models).copied().unwrap_or(false) {
            let unit = &self.units[u];
            return Share {
                used: unit.inflight,
                of: unit.concurrent.map_or(1, |(l, _)| l.max(1)),
            };
        }
        let b = self.units[u].budget;
        let estimate = self.day_estimate(u);
        if self.replica.limits(b).rpd.is_none() && estimate == 0 && self.window() == WindowKind::Bucket {
            // Buckets, and a day without a request limit: the day's sends over a day that
            // never fills, so a limited day's share used weighs more and, among unlimited
            // days, the one sent on least goes first. A bucket left full wastes its refill
            // while another is drained (hunt-820: the first project's always went first, the
            // second's stayed full for the first minute, 633 done where round robin did 645).
            // Minute windows waste nothing while unused, and the first project first packs a
            // batch's tokens into the minute best (`scenarios/contracts-few-slots.toml`).
            let (day_end, sends) = self.units[u].day_sends;
            return Share {
                used: if day_end == self.day_end { sends } else { 0 },
                of: u64::MAX,
            };
        }
        Share {
            used: self.replica.used_today(now, b),
            of: self.replica.limits(b).rpd.unwrap_or(1).max(1).max(estimate),
        }
    }

    /// Moves the units of model `m` whose lower bound has passed into the idle set.
    fn wake(&mut self, m: usize, now: Nanos) {
        while let Some(&(t, owner)) = self.index[m].waiting.first() {
            if t > now {
                break;
            }
            self.index[m].waiting.pop_first();
            let u = owner as usize * self.env.models + m;
            let key = self.preference(u, now);
            self.index[m].idle.insert(key, owner);
            self.units[u].place = Place::Idle(key);
        }
    }

    /// When and on which key unit `u` could serve a request costing `cost` with `input`
    /// tokens: by its reservation, first, as the server does, or by its quota.
    fn evaluate(&mut self, u: usize, now: Nanos, cost: u64, input: u64) -> Eval {
        if !self.too_large.is_empty() && self.too_large.get(&u).is_some_and(|&bound| cost >= bound) {
            return Eval::Never;
        }
        let t0 = self.start(u, now);
        let reserved = match self.units[u].reservation {
            None => None,
            Some((r, overflow)) => {
                let at = match self.replica.check(t0, r, None, input) {
                    Admission::Admitted => Some(t0),
                    Admission::Rejected { retry_at, .. } => Some(retry_at),
                    Admission::Unservable { .. } => None,
                };
                if overflow == Overflow::DedicatedOnly {
                    return self.on_key(u, at.map(|t| (t, Dims::EMPTY)).ok_or(Eval::Never));
                }
                at
            }
        };
        let quota = self.evaluate_quota(u, (now, t0), cost);
        let choice = match (quota, reserved) {
            // The reservation when it admits no later than the quota (at a tie, the server
            // serves it from the reservation).
            (Ok((tq, _)), Some(tr)) if tr <= tq => Ok((tr, Dims::EMPTY)),
            (Err(_), Some(tr)) => Ok((tr, Dims::EMPTY)),
            (q, _) => q,
        };
        self.on_key(u, choice)
    }

    /// A key of unit `u` for a send at a time (and probing dimensions) `choice`.
    fn on_key(&self, u: usize, choice: Result<(Nanos, Dims), Eval>) -> Eval {
        let (t, mut probe) = match choice {
            Ok(c) => c,
            Err(e) => return e,
        };
        let unit = &self.units[u];
        // Its concurrency limit may be probed: one send beyond it, whose outcome tells.
        let may = unit.probe.contains(Dimension::Concurrency);
        let owner = u / self.env.models;
        match unit.concurrent {
            Some((l, ConcurrencyScope::Project)) if unit.inflight >= l => {
                if !may {
                    return Eval::SlotsFull(Some(t));
                }
                probe.insert(Dimension::Concurrency);
            }
            Some((l, ConcurrencyScope::Key)) => {
                return match self.pick_key(owner, Some(l)) {
                    Some(k) => Eval::At(t, k, probe),
                    None if may => match self.pick_key(owner, None) {
                        Some(k) => {
                            probe.insert(Dimension::Concurrency);
                            Eval::At(t, k, probe)
                        }
                        None => Eval::SlotsFull(Some(t)),
                    },
                    None => Eval::SlotsFull(Some(t)),
                };
            }
            _ => {}
        }
        match self.pick_key(owner, None) {
            Some(k) => Eval::At(t, k, probe),
            None => Eval::SlotsFull(None),
        }
    }

    /// Whether the outcome of a probe on unit `u` is known by `awaiting_until` at the latest
    /// (a REST probe's, once its owner said its grace; a Live session holds its slot for
    /// minutes, see `plan`).
    fn outcome_timed(&self, u: usize) -> bool {
        self.admit_grace > 0 && !self.env.live[u % self.env.models]
    }

    /// Whether unit `u` awaits a probe's outcome that was due by `t` (its grace is past) and
    /// is still not heard of.
    fn outcome_overdue(&self, u: usize, t: Nanos) -> bool {
        self.outcome_timed(u) && self.units[u].awaiting_until <= t
    }

    /// When unit `u`'s quota could take a request costing `cost`, from `t0` on (asked at
    /// `now`), and the dimensions it would probe; or why not.
    fn evaluate_quota(&mut self, u: usize, (now, t0): (Nanos, Nanos), cost: u64) -> Result<(Nanos, Dims), Eval> {
        let w = self.weight_for(u, cost, Dims::EMPTY);
        let unit = &self.units[u];
        let (t, probe) = match self.replica.check_weighted(t0, unit.budget, None, cost, Dims::EMPTY, w) {
            Admission::Admitted => (t0, Dims::EMPTY),
            // A believed limit in the way that may be probed: send when the others allow.
            Admission::Unservable { violated } | Admission::Rejected { violated, .. }
                if cost > 0 && !violated.and(unit.probe).is_empty() =>
            {
                let probed = violated.and(unit.probe);
                let w = self.weight_for(u, cost, probed);
                match self.replica.check_weighted(t0, unit.budget, None, cost, probed, w) {
                    Admission::Admitted => (t0, probed),
                    Admission::Rejected { retry_at, .. } => (retry_at, probed),
                    Admission::Unservable { .. } => return Err(Eval::Never),
                }
            }
            // Known by the probe's grace at the latest, where that is timed; once that is past,
            // judged by its beliefs. A minute's belief is judged so once the grace is past the
            // unit's next plan (`t0`): it costs a minute at most. A day's only once the grace is
            // past now: judged by its plans, a project told half its day and probing its one
            // told slot two minutes ahead planned the rest of its batch for the next day, where
            // the day's probe after that outcome found room today
            // (`scenarios/invalid-keys-told-half.toml`: 37 hours for a 25-minute batch).
            Admission::Unservable { violated } | Admission::Rejected { violated, .. }
                if !violated.and(unit.awaiting).is_empty()
                    && !self.outcome_overdue(u, if violated.and(unit.awaiting).per_day() { now } else { t0 }) =>
            {
                return Err(if self.outcome_timed(u) {
                    Eval::Awaiting(unit.awaiting_until)
                } else {
                    Eval::SlotsFull(None)
                });
            }
            Admission::Unservable { .. } => return Err(Eval::Never),
            Admission::Rejected { retry_at, .. } => (retry_at, Dims::EMPTY),
        };
        Ok((t, probe))
    }

    /// The unit of model `m` that can take a request costing `cost` soonest. Units are visited
    /// by lower bound and the visit stops once the bound passes the best time found, or a
    /// unit can send now (branch and bound: exact, and O(log n) while budgets have room).
    /// Notes in `seen` what it learns of the units it visits.
    fn best_for(
        &mut self,
        m: usize,
        now: Nanos,
        cost: u64,
        input: u64,
        seen: &mut Seen,
    ) -> Option<(Nanos, usize, usize, Dims)> {
        self.wake(m, now);
        // The first unit in scan order (idle by preference, then waiting by bound) among those
        // that can go soonest wins: `best` is the least (time, rank).
        let mut best: Option<(Nanos, u32, u32, usize, Dims)> = None;
        let mut consider =
            |this: &mut Self, owner: u32, rank: u32, best: &mut Option<(Nanos, u32, u32, usize, Dims)>| {
                let u = owner as usize * this.env.models + m;
                match this.evaluate(u, now, cost, input) {
                    Eval::At(t, k, probe) => {
                        seen.fits = true;
                        let unit = &mut this.units[u];
                        let plain = probe.is_empty() && unit.probe.is_empty() && unit.awaiting.is_empty();
                        let key_slots = matches!(unit.concurrent, Some((_, ConcurrencyScope::Key)));
                        if t > now && plain && !key_slots {
                            unit.refused = Some((cost, t));
                        }
                        if best.is_none_or(|(bt, br, _, _, _)| (t, rank) < (bt, br)) {
                            *best = Some((t, rank, owner, k, probe));
                        }
                    }
                    Eval::SlotsFull(at) => {
                        seen.fits = true;
                        seen.slots_full = true;
                        seen.slot_at = earliest(seen.slot_at, at);
                    }
                    Eval::Awaiting(at) => {
                        seen.fits = true;
                        seen.slots_full = true;
                        match seen.awaiting.iter_mut().find(|e| e.0 == m) {
                            Some(e) => e.1 = e.1.min(at),
                            None => seen.awaiting.push((m, at)),
                        }
                    }
                    Eval::Never => {}
                }
            };
        // Idle units in preference order until one can send now; those known unable to take
        // this large a request now wait for the second pass.
        let mut passed: Vec<(Nanos, u32, u32)> = Vec::new();
        let mut rank = 0u32;
        let mut cursor = self.index[m].idle.first();
        while let Some((key, owner)) = cursor {
            rank += 1;
            let u = owner as usize * self.env.models + m;
            match self.units[u].refused {
                // (With a weight, a larger request may need fewer copies: no such bound.)
                Some((c, t)) if self.pass_over && self.weight == 1 && cost >= c && t > now => {
                    passed.push((t, rank, owner))
                }
                _ => consider(self, owner, rank, &mut best),
            }
            if best.is_some_and(|(t, ..)| t <= now) {
                break;
            }
            cursor = self.index[m].idle.after(key, owner);
        }
        if best.is_none_or(|(t, ..)| t > now) {
            // A passed unit can go no sooner than its bound: it matters only if that bound
            // does not exceed the best time found.
            for (bound, r, owner) in passed {
                if best.is_none_or(|(t, ..)| bound <= t) {
                    consider(self, owner, r, &mut best);
                }
            }
        }
        let mut cursor = self.index[m].waiting.first().copied();
        while let Some((bound, owner)) = cursor {
            let done = best.is_some_and(|(t, ..)| t <= now || bound >= t);
            if done {
                break;
            }
            rank += 1;
            consider(self, owner, rank, &mut best);
            cursor = self.index[m].waiting.range((bound, owner + 1)..).next().copied();
        }
        best.map(|(t, _, owner, k, probe)| (t, owner as usize * self.env.models + m, k, probe))
    }
}

/// What [`super::flux`] adjusts: learned limits, blocks, withdrawn plans and probes.
impl<T: Copy + Default + PartialEq + Send> ExactCooldown<T> {
    /// The unit of (`key`'s project, `model`).
    pub(super) fn unit_of(&self, key: usize, model: usize) -> usize {
        self.key_owner[key] * self.env.models + model
    }

    /// Model `m`'s calls draw on model `q`'s quotas (a 429 for `m` named `q`'s: a re-routed
    /// id): each project's unit of `m` plans on the budget of its unit of `q` from now on,
    /// which takes over what `m`'s counted. Says whether anything changed.
    pub(super) fn share_quota(&mut self, m: usize, q: usize, now: Nanos) -> bool {
        let models = self.env.models;
        if m >= models || q >= models || m == q {
            return false;
        }
        let mut changed = false;
        for owner in 0..self.owner_keys.len() {
            let (um, uq) = (owner * models + m, owner * models + q);
            let (from, into) = (self.units[um].budget, self.units[uq].budget);
            if from == into {
                continue;
            }
            self.replica.absorb(from, into);
            self.units[um].budget = into;
            // One budget, two units: neither plans before the later start of the two from now
            // on. A unit's plans and blocks read its budget ahead of `now`, and a sliding
            // window forgets what expires before its latest read: the target's, blocked a
            // minute by its own 429 just before, had forgotten sends that still counted
            // earlier, and the old id, planning on it at once, met the 429 it had counted
            // (retired-ids, project 2 at the merge).
            let last = self.units[um].last.max(self.units[uq].last);
            let blocked = self.units[um].blocked.max(self.units[uq].blocked);
            // One day: judged by the larger estimate of the two (see `set_day_estimate`).
            let estimate = self.day_estimate(um).max(self.day_estimate(uq));
            for v in [um, uq] {
                self.put_day_estimate(v, estimate);
            }
            for v in [um, uq] {
                self.units[v].last = last;
                self.units[v].blocked = blocked;
            }
            self.reindex(um, now);
            self.reindex(uq, now);
            changed = true;
        }
        changed
    }

    /// Whether what model `m` and its fallback chain have left of today's tokens per day, as
    /// the replica counts them (planned sends included) and summed over the projects with a
    /// live key (a budget two ids share counted once), is less than `need()`: `None` when one
    /// of those budgets has no tokens-per-day limit, or one of `unknown` or more (what a
    /// strategy plans an unknown limit with). `need` is asked at most once, and only
    /// once a budget with a limit is met; the walk stops as soon as the budgets counted hold
    /// `need` (more of them can only add room, and every budget met so far had a limit), so it
    /// costs a walk of every project only while the day's tokens run short.
    pub(super) fn day_tokens_short(
        &self,
        now: Nanos,
        m: usize,
        unknown: u64,
        need: impl FnOnce() -> u64,
    ) -> Option<bool> {
        let (mut ask, mut need) = (Some(need), 0);
        let mut left = 0u64;
        for b in self.live_chain_budgets(m) {
            let tpd = self.replica.limits(b).tpd.filter(|&l| l < unknown)?;
            if let Some(f) = ask.take() {
                need = f();
            }
            left = left.saturating_add(tpd.saturating_sub(self.replica.tokens_today(now, b)));
            if left >= need {
                return Some(false);
            }
        }
        // No budget with a limit met (no live key): nothing can be sent today either.
        Some(left < ask.map_or(need, |f| f()))
    }

    /// At most how many requests model `m` and its fallback chain may still send today,
    /// summed over the projects with a live key (a budget two ids share counted once): each
    /// budget's requests per day left, as the replica counts them (planned sends included),
    /// and no more than its RPM in each minute until midnight, and one more minute's (a
    /// bucket's burst, a calendar minute begun). `None` when one of those budgets has neither
    /// limit, or only ones of `unknown` or more, or a unit has a reservation (Provisioned
    /// Throughput takes requests beyond the quota's count).
    pub(super) fn day_requests_left(&self, now: Nanos, m: usize, unknown: u64) -> Option<u64> {
        if self.live_chain_units(m).any(|u| self.units[u].reservation.is_some()) {
            return None;
        }
        let minutes = self
            .env
            .calendar
            .next_day_start(now)
            .saturating_sub(now)
            .div_ceil(MINUTE)
            + 1;
        let mut left = 0u64;
        for b in self.live_chain_budgets(m) {
            let limits = self.replica.limits(b);
            let by_day = limits
                .rpd
                .filter(|&l| l < unknown)
                .map(|l| l.saturating_sub(self.replica.used_today(now, b)));
            let by_minute = limits.rpm.filter(|&l| l < unknown).map(|l| l.saturating_mul(minutes));
            let room = match (by_day, by_minute) {
                (None, None) => return None,
                (d, r) => d.unwrap_or(u64::MAX).min(r.unwrap_or(u64::MAX)),
            };
            left = left.saturating_add(room);
        }
        Some(left)
    }

    /// The budgets of [`Self::live_chain_units`], each once (two ids sharing one quota).
    fn live_chain_budgets(&self, m: usize) -> impl Iterator<Item = BudgetId> + '_ {
        // Budgets already met, by index: one look per owner, not a search of the others.
        let mut seen: Vec<bool> = Vec::new();
        self.live_chain_units(m).filter_map(move |u| {
            let b = self.units[u].budget;
            let i = b.0 as usize;
            if i >= seen.len() {
                seen.resize(i + 1, false);
            } else if seen[i] {
                return None;
            }
            seen[i] = true;
            Some(b)
        })
    }

    /// The units of model `m`, then of each of its fallbacks, of the owners (projects) with a
    /// live key, in owner order.
    pub(super) fn live_chain_units(&self, m: usize) -> impl Iterator<Item = usize> + '_ {
        let models = self.env.models;
        std::iter::once(m)
            .chain(self.fallback.iter().copied())
            .flat_map(move |model| {
                self.owner_keys
                    .iter()
                    .enumerate()
                    .filter(|(_, keys)| !keys.iter().all(|&k| self.key_dead[k]))
                    .map(move |(owner, _)| owner * models + model)
            })
    }

    /// The largest request, in tokens, that some unit of model `m` or of its fallbacks with a
    /// live key could take as the planner now judges (0 if none, `u64::MAX` if any has no
    /// bound): one larger is given up as unservable when asked. A unit's bound is its TPM and
    /// TPD limits but those it probes or awaits (a limit only told may be higher), and below the
    /// size a project of it called unservable; a zero limit it does not probe lets none through.
    /// A unit with a reservation (Provisioned Throughput) is taken as bounded by nothing. The
    /// walk stops at the first unit that takes `enough` (its bound is returned then, at least
    /// `enough`): a caller asking about requests of at most `enough` tokens reads one unit in
    /// the common case, not every project.
    pub(super) fn servable_bound(&self, m: usize, enough: u64) -> u64 {
        let mut bound = 0u64;
        for u in self.live_chain_units(m) {
            let unit = &self.units[u];
            if unit.reservation.is_some() {
                return u64::MAX;
            }
            let open = unit.probe.or(unit.awaiting);
            let limits = self.replica.limits(unit.budget);
            let shut = Dimension::ALL
                .into_iter()
                .any(|d| !open.contains(d) && limits.get(d) == Some(0));
            if shut {
                continue;
            }
            let mut b = u64::MAX;
            for d in [Dimension::Tpm, Dimension::Tpd] {
                if let Some(l) = limits.get(d).filter(|_| !open.contains(d)) {
                    b = b.min(l);
                }
            }
            if let Some(&t) = self.too_large.get(&u) {
                b = b.min(t.saturating_sub(1));
            }
            bound = bound.max(b);
            if bound >= enough {
                return bound;
            }
        }
        bound
    }

    /// The owners (projects) it plans for.
    pub(super) fn owners(&self) -> usize {
        self.owner_keys.len()
    }

    /// What unit `u`'s replica counted today (the day containing `now`): `[requests, tokens]`,
    /// planned sends included.
    pub(super) fn used_today(&self, u: usize, now: Nanos) -> [u64; 2] {
        let b = self.units[u].budget;
        [self.replica.used_today(now, b), self.replica.tokens_today(now, b)]
    }

    /// The replica's margin (see [`Ledger::with_margin`]).
    pub(super) fn margin(&self) -> Nanos {
        self.replica.margin()
    }

    /// Sets the replica's margin from now on.
    pub(super) fn set_margin(&mut self, margin: Nanos) {
        self.replica.set_margin(margin);
        self.units.iter_mut().for_each(|u| u.refused = None);
    }

    /// The budget unit `u` plans on.
    pub(super) fn budget(&self, u: usize) -> BudgetId {
        self.units[u].budget
    }

    /// Whether units `a` and `b` plan on one budget (a re-route learned or told).
    pub(super) fn same_budget(&self, a: usize, b: usize) -> bool {
        self.units[a].budget == self.units[b].budget
    }

    /// Units in all.
    pub(super) fn units(&self) -> usize {
        self.units.len()
    }

    /// Prefers, among a Live model's units, the one with the smallest share of its session
    /// slots in use (the fewest sessions open where no limit is known): sessions spread over
    /// the projects, so a concurrency limit told too high, or not told, is not met while
    /// another project has a slot free (`live-conversations` told +50% or nothing filled one
    /// project past its 3 slots and met 1011s where exact_cooldown's order met none).
    pub(super) fn spread_sessions(&mut self, now: Nanos) {
        self.spread = true;
        for u in 0..self.units.len() {
            self.reindex(u, now);
        }
    }

    /// Sends (sessions) unit `u` has in flight, as it counts them.
    pub(super) fn inflight(&self, u: usize) -> u64 {
        self.units[u].inflight
    }

    /// The limits unit `u` plans with (concurrency included).
    pub(super) fn limits(&self, u: usize) -> Limits {
        let unit = &self.units[u];
        Limits {
            concurrent: unit.concurrent.map(|(c, _)| c),
            ..self.replica.limits(unit.budget)
        }
    }

    /// Plans unit `u` with `limits` from now on.
    pub(super) fn set_limits(&mut self, u: usize, limits: Limits, now: Nanos) {
        let m = u % self.env.models;
        let unit = &mut self.units[u];
        self.replica.set_limits(
            unit.budget,
            Limits {
                concurrent: None,
                ..limits
            },
        );
        unit.concurrent = limits.concurrent.map(|c| (c, self.env.scopes[m]));
        // The budget's other units (a re-routed id merged with its target) plan with the same
        // limits: their share of the day is judged anew too.
        for v in self.budget_units(u) {
            self.reindex(v, now);
        }
    }

    /// The units of unit `u`'s project that plan on its budget, `u` among them (more than one
    /// where a re-routed id was merged with its target: [`ExactCooldown::share_quota`]).
    pub(super) fn budget_units(&self, u: usize) -> Vec<usize> {
        let models = self.env.models;
        let first = u - u % models;
        (first..first + models)
            .filter(|&v| self.units[v].budget == self.units[u].budget)
            .collect()
    }

    /// Unit `u`'s share of its day is judged against `day` requests where that is more than
    /// the limit it plans with (0: by that limit alone); the limit itself is unchanged. The
    /// estimate is its budget's: the budget's other units take it too.
    pub(super) fn set_day_estimate(&mut self, u: usize, day: u64, now: Nanos) {
        for v in self.budget_units(u) {
            if self.put_day_estimate(v, day) {
                self.reindex(v, now);
            }
        }
    }

    /// Sets unit `v`'s day estimate, its place in the index left as it was; says whether it
    /// changed.
    fn put_day_estimate(&mut self, v: usize, day: u64) -> bool {
        if self.day_estimate(v) == day {
            return false;
        }
        if self.day_estimate.len() <= v {
            self.day_estimate.resize(self.units.len(), 0);
        }
        self.day_estimate[v] = day;
        true
    }

    /// Unit `u`'s day estimate (0: none; see [`ExactCooldown::set_day_estimate`]).
    pub(super) fn day_estimate(&self, u: usize) -> u64 {
        self.day_estimate.get(u).copied().unwrap_or(0)
    }

    /// Lets unit `u` probe beyond its believed limits of `probe` (one send, whose dimensions
    /// then await its outcome), and makes sends held back by `awaiting` wait for an outcome.
    pub(super) fn set_probe(&mut self, u: usize, probe: Dims, awaiting: Dims, now: Nanos) {
        let unit = &mut self.units[u];
        if unit.probe != probe || unit.awaiting != awaiting {
            unit.probe = probe;
            unit.awaiting = awaiting;
            self.reindex(u, now);
        }
    }

    /// Sends on a quota go only when `weight` copies of them fit its per-minute windows (a
    /// fleet's instance planning with its share of the room it sees: see `flux`).
    pub(super) fn set_weight(&mut self, weight: u64, now: Nanos) {
        if weight.max(1) != self.weight {
            self.weight = weight.max(1);
            for u in 0..self.units.len() {
                self.reindex(u, now);
            }
        }
    }

    /// Unit `u`'s own ceilings on its per-minute windows, `[RPM, TPM]` (see `set_cap`).
    pub(super) fn cap(&self, u: usize) -> [Option<u64>; 2] {
        self.replica.cap(self.units[u].budget)
    }

    /// Caps unit `u`'s quota's per-minute windows, `[RPM, TPM]`, below its limits from now
    /// on (the share of the budget `flux` believes is its own: see [`Ledger::set_cap`]).
    pub(super) fn set_cap(&mut self, u: usize, cap: [Option<u64>; 2], now: Nanos) {
        let b = self.units[u].budget;
        if self.replica.cap(b) != cap {
            self.replica.set_cap(b, cap);
            self.reindex(u, now);
        }
    }

    /// What unit `u`'s replica held of its quota's per-minute windows at `at`, `[RPM, TPM]`
    /// (its own sends, and the others' it has seen).
    pub(super) fn held_at(&self, u: usize, at: Nanos) -> [u64; 2] {
        self.replica.held_at(at, self.units[u].budget)
    }

    /// What units `u` and `v` would hold together at `at`, where their budgets are buckets
    /// (see [`Ledger::held_together_at`]); `None` where their counts add.
    pub(super) fn held_together_at(&self, u: usize, v: usize, at: Nanos) -> Option<[u64; 2]> {
        self.replica
            .held_together_at(at, self.units[u].budget, self.units[v].budget)
    }

    /// A probe's outcome is known `grace` after its send at the latest (a refusal comes back
    /// within a round trip; `flux` takes the silence for an admission): sends a probe holds
    /// back then wait for it as for a concurrency slot that frees by then, rather than being
    /// planned far ahead on another unit for good (see `plan`).
    pub(super) fn set_admit_grace(&mut self, grace: Nanos) {
        self.admit_grace = grace;
    }

    /// Plans no send more than `horizon` ahead of the decision: asks again then.
    pub(super) fn set_horizon(&mut self, horizon: Nanos) {
        self.horizon = horizon;
    }

    /// Where the send planned for `request` was counted: its instant and cost, if on unit
    /// `u`'s quota (not its reservation).
    pub(super) fn on_quota(&self, request: u64) -> Option<(Nanos, u64)> {
        self.reserved
            .get(request)
            .filter(|h| !h.on_reservation)
            .map(|h| (h.at, h.cost))
    }

    /// The tag of the send planned for `request` and the send's instant, if it is tagged.
    pub(super) fn tag(&self, request: u64) -> Option<(Nanos, T)> {
        self.reserved
            .get(request)
            .filter(|h| h.tag != T::default())
            .map(|h| (h.at, h.tag))
    }

    /// Tags the send planned for `request` (`None`: untags it; its entry stays until its
    /// outcome or cancel); its previous tag, if any. Nothing without a send planned.
    pub(super) fn set_tag(&mut self, request: u64, tag: Option<T>) -> Option<(Nanos, T)> {
        let h = self.reserved.get_mut(request)?;
        let old = std::mem::replace(&mut h.tag, tag.unwrap_or_default());
        (old != T::default()).then_some((h.at, old))
    }

    /// Every tag with its send's instant (not those whose slots were released), in no
    /// particular order.
    pub(super) fn tags(&self) -> impl Iterator<Item = (Nanos, T)> + '_ {
        self.reserved
            .values()
            .filter(|h| h.tag != T::default() && !h.released)
            .map(|h| (h.at, h.tag))
    }

    /// Counts `copies` more sends costing `cost` at `at` on unit `u`'s quota, no send of its
    /// own (the room a fleet's peers may be taking unseen), until [`ExactCooldown::unshadow`].
    pub(super) fn shadow(&mut self, u: usize, at: Nanos, cost: u64, copies: u64, now: Nanos) {
        let b = self.units[u].budget;
        for _ in 0..copies {
            self.replica.insert(at, b, cost);
        }
        self.reindex(u, now);
    }

    /// Takes back what [`ExactCooldown::shadow`] counted.
    pub(super) fn unshadow(&mut self, u: usize, at: Nanos, cost: u64, copies: u64, now: Nanos) {
        let b = self.units[u].budget;
        for _ in 0..copies {
            self.replica.cancel(at, b, cost);
        }
        self.reindex(u, now);
    }

    /// The cost of `ask` as the replica counts it (TPM).
    pub(super) fn cost(&self, ask: &Ask) -> u64 {
        self.env.tpm_cost(ask)
    }

    /// When unit `u`'s quota, as the replica now counts it (planned sends included, blocks
    /// not), could first take a request costing `cost`, from `now` on; `None`: never.
    pub(super) fn quota_ready(&mut self, u: usize, now: Nanos, cost: u64) -> Option<Nanos> {
        self.quota_ready_on(u, now, cost, Dimension::ALL.into_iter().collect())
    }

    /// [`ExactCooldown::quota_ready`] by the limits of `dims` alone (those a 429 named: a
    /// send that probes the others may go before the rest allow it).
    pub(super) fn quota_ready_on(&mut self, u: usize, now: Nanos, cost: u64, dims: Dims) -> Option<Nanos> {
        let except = Dimension::ALL.into_iter().filter(|&d| !dims.contains(d)).collect();
        match self.replica.check_except(now, self.units[u].budget, None, cost, except) {
            Admission::Admitted => Some(now),
            Admission::Rejected { retry_at, .. } => Some(retry_at),
            Admission::Unservable { .. } => None,
        }
    }

    /// The dimensions the latest decision probed.
    pub(super) fn take_probe(&mut self) -> Dims {
        std::mem::replace(&mut self.last_probe, Dims::EMPTY)
    }

    /// How its replica measures per-minute windows.
    pub(super) fn window(&self) -> WindowKind {
        self.replica.window()
    }

    /// Plans calendar minutes from now on (flux learned the server counts them).
    pub(super) fn measure_fixed(&mut self) {
        self.replica.measure_fixed();
    }

    /// Plans token buckets from `now` on (flux learned the server's are), each unit indexed
    /// by when its bucket has room ([`Ledger::measure_buckets`]).
    pub(super) fn measure_buckets(&mut self, now: Nanos) {
        self.replica.measure_buckets(now);
        for u in 0..self.units.len() {
            self.reindex(u, now);
        }
    }

    /// When a send on unit `u` costing `cost` at `now` would fit its per-minute `dims` were
    /// its windows token buckets, `(least, most)` ([`Ledger::bucket_retry`]): the least
    /// without the refusals not yet known to count or not (`judge_refusal`), nor the sends
    /// `later` (`(instant, tokens)`) that reached the server after the refused one.
    pub(super) fn bucket_retry(
        &self,
        u: usize,
        now: Nanos,
        cost: u64,
        dims: Dims,
        later: &[(Nanos, u64)],
    ) -> Option<(Nanos, Nanos)> {
        let b = self.units[u].budget;
        let units = &self.units;
        let less: Vec<(Nanos, u64, u64)> = self
            .refusals
            .iter()
            .filter(|&&(_, v)| units[v].budget == b)
            .map(|&(at, _)| (at, 1, 0))
            .chain(later.iter().map(|&(at, tokens)| (at, 1, tokens)))
            .collect();
        self.replica.bucket_retry(now, b, cost, dims, &less)
    }

    /// The sends planned or in flight, each `(instant, tokens, tag)`, that carry a tag.
    pub(super) fn tagged_sends(&self) -> impl Iterator<Item = (Nanos, u64, T)> + '_ {
        self.reserved
            .values()
            .filter(|h| h.tag != T::default())
            .map(|h| (h.at, h.cost, h.tag))
    }

    /// The server refused a send on unit `u` costing `cost` at `now`, by its per-minute
    /// `dims`, until `retry_at`: its buckets owe what makes the send fit then
    /// ([`Ledger::calibrate_bucket`]).
    pub(super) fn calibrate_bucket(&mut self, u: usize, now: Nanos, cost: u64, dims: Dims, retry_at: Nanos) {
        self.replica
            .calibrate_bucket(now, self.units[u].budget, cost, dims, retry_at);
        self.reindex(u, now);
    }

    /// Sends nothing on unit `u` before `until`.
    pub(super) fn block(&mut self, u: usize, until: Nanos, now: Nanos) {
        // Every unit of the owner that plans on the same budget: the block is the quota's.
        let models = self.env.models;
        let (owner, budget) = (u / models, self.units[u].budget);
        for v in owner * models..(owner + 1) * models {
            if self.units[v].budget == budget && until > self.units[v].blocked {
                self.units[v].blocked = until;
                self.reindex(v, now);
            }
        }
    }

    /// Lifts unit `u`'s block (and that of every unit of its owner on the same budget): what
    /// blocked it is known not to hold any more.
    pub(super) fn unblock(&mut self, u: usize, now: Nanos) {
        let models = self.env.models;
        let (owner, budget) = (u / models, self.units[u].budget);
        for v in owner * models..(owner + 1) * models {
            if self.units[v].budget == budget && self.units[v].blocked > now {
                self.units[v].blocked = now;
                self.reindex(v, now);
            }
        }
    }

    /// Ends a send `flux` handled as a refusal (its own 429): the server charged none of its
    /// day, so the replica refunds it; what bounds the unit from now on is `flux`'s to set.
    /// Its tokens leave the minute windows too: no server counts a refused request's tokens
    /// (one that counts refusals, `server.count_rejected`, counts the request alone), and a
    /// large request refused on every project would otherwise hold them all a minute.
    pub(super) fn refused(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos) {
        let u = self.unit_of(key, model);
        let held =
            self.reserved
                .get(ask.request)
                .copied()
                .unwrap_or(Held::new(sent, self.env.tpm_cost(ask), key, false));
        let budget = self.budget_of(u, held);
        self.replica.refund_tokens(held.at, budget, held.cost);
        if !held.on_reservation {
            match self.refusals_counted {
                Some(false) => self.replica.refund_request(held.at, budget),
                Some(true) => {}
                None => {
                    while self
                        .refusals
                        .front()
                        .is_some_and(|&(at, _)| at.saturating_add(2 * MINUTE) < now)
                    {
                        self.refusals.pop_front();
                    }
                    self.refusals.push_back((held.at, u));
                }
            }
        }
        self.end_send(now, ask, key, model, sent, &Outcome::UNSERVABLE_UNSTATED);
    }

    /// Whether the server counts a refused request against RPM, if known.
    pub(super) fn refusals_counted(&self) -> Option<bool> {
        self.refusals_counted
    }

    /// The server counts refused requests against RPM after all (`flux` learned it from a
    /// later 429, [`super::bucket_trial`]): those it takes back from now on stay counted.
    pub(super) fn count_refusals(&mut self) {
        self.refusals_counted = Some(true);
        self.refusals.clear();
    }

    /// Learns from a 429 whether the server counts refusals against RPM: the refusal of a
    /// send counted at `at` on unit `u` (handed to [`ExactCooldown::refused`] already), whose
    /// RetryInfo says a request costing `cost` goes at `retry_at` read from the send, up to
    /// `late` later (the server decided between the send and the 429's coming back), or that
    /// plus the margin by which the replica's sliding windows hold entries longer. The replica, its limits
    /// known, times that retry twice ([`ExactCooldown::quota_ready`]): with the refusal still
    /// counted (as a server with `count_rejected` does: its own delay counts the refusal too)
    /// and without. When the server's instant is one of the two (within that, and a millisecond) and not
    /// the other, that is how the server counts, from now on; a refusal the server does not
    /// count is taken back from the replica, this one and those of the last minutes it kept
    /// counting, so that none holds a slot the server gave back (`rerouted-paid` told nothing at seed 22: a slot lost for a minute after each
    /// 429, the burst served a request late, a wait p99 of 8.7 s against 5.5 s). Otherwise
    /// (the instants coincide, the server's is neither: sends the replica cannot see, a
    /// rounded delay) nothing is learned.
    pub(super) fn judge_refusal(
        &mut self,
        u: usize,
        at: Nanos,
        now: Nanos,
        (retry_at, late): (Nanos, Nanos),
        cost: u64,
    ) {
        if self.refusals_counted.is_some() {
            return;
        }
        let Some(i) = self.refusals.iter().rposition(|&r| r == (at, u)) else {
            return;
        };
        let b = self.units[u].budget;
        let with = self.quota_ready(u, now, cost);
        self.replica.refund_request(at, b);
        let without = self.quota_ready(u, now, cost);
        let margin = self.replica.margin();
        let near = |r: Option<Nanos>| {
            r.is_some_and(|r| {
                [retry_at, retry_at.saturating_add(margin)]
                    .iter()
                    .any(|&t| t.saturating_sub(MILLISECOND) <= r && r <= t.saturating_add(late + MILLISECOND))
            })
        };
        match (near(with), near(without)) {
            (false, true) => {
                self.refusals_counted = Some(false);
                self.refusals.remove(i);
                for (at, v) in std::mem::take(&mut self.refusals) {
                    let b = self.units[v].budget;
                    self.replica.refund_request(at, b);
                    self.reindex(v, now);
                }
                self.reindex(u, now);
            }
            (true, false) => {
                self.refusals_counted = Some(true);
                self.refusals.clear();
                self.replica.recount_request(at, b);
            }
            _ => self.replica.recount_request(at, b),
        }
    }

    /// Withdraws a send planned on unit `u` and `key` at `at` costing `cost` against its quota
    /// (its request is offered again).
    pub(super) fn withdraw(&mut self, u: usize, key: usize, at: Nanos, cost: u64, now: Nanos) {
        let held = Held::new(at, cost, key, false);
        self.withdraw_held(u, key, held, now);
    }

    /// What the replica counted for `ask`'s send (by default: its quota at `sent`, `sent` may
    /// be later than planned: a real network, timers), forgotten from now on.
    fn held(&mut self, ask: &Ask, key: usize, sent: Nanos) -> Held<T> {
        self.reserved
            .remove(ask.request)
            .unwrap_or(Held::new(sent, self.env.tpm_cost(ask), key, false))
    }

    /// The budget a send was counted on.
    fn budget_of(&self, u: usize, held: Held<T>) -> BudgetId {
        match self.units[u].reservation {
            Some((r, _)) if held.on_reservation => r,
            _ => self.units[u].budget,
        }
    }

    /// The earliest instant a unit of one of `chain`'s models that is out of the index for
    /// its project's concurrency (until an outcome frees a slot) could take a request of
    /// `cost` by its windows and day. (The retries of two requests sent to invalid keys slept
    /// to the next day while their project, its slots taken, had room today for both:
    /// `scenarios/invalid-keys-full-day.toml`.)
    fn slot_out_at(&mut self, chain: &[usize], now: Nanos, cost: u64) -> Option<Nanos> {
        if self.slots_out == 0 {
            return None;
        }
        let models = self.env.models;
        let mut first: Option<Nanos> = None;
        for &m in chain {
            for o in 0..self.owner_keys.len() {
                let u = o * models + m;
                if !self.units[u].slots_out || self.pick_key(o, None).is_none() {
                    continue;
                }
                let t0 = self.start(u, now);
                if let Ok((t, _)) = self.evaluate_quota(u, (now, t0), cost) {
                    first = earliest(first, Some(t));
                }
            }
        }
        first
    }

    /// When the request the planner told to come back once the room it waits for opens
    /// (the rest of the queue waits in line behind it) comes back, if that is another than
    /// `request`'s and still to come.
    pub(super) fn waker_of_others(&self, request: u64, now: Nanos) -> Option<Nanos> {
        self.waker.filter(|&(r, t)| r != request && t >= now).map(|(_, t)| t)
    }

    /// Whether the latest decision deferred its request until an outcome frees a slot (not
    /// until a probe's outcome, nor behind a waker).
    pub(super) fn waits_for_slot(&self) -> bool {
        self.waits_for_slot
    }

    /// Whether `key` answered 400 for an invalid key.
    pub(super) fn key_dead(&self, key: usize) -> bool {
        self.key_dead[key]
    }

    /// The send of `request` due now on a key found invalid since it was planned was just
    /// withdrawn ([`Strategy::cancel`]): its next decision, at once, plans it again where it
    /// was, on a live key of its project (see [`ExactCooldown::replan`]).
    pub(super) fn reclaim(&mut self, request: u64) {
        self.reclaim = self.withdrawn.take().filter(|w| w.request == request);
    }

    /// Plans the send `w` withdrew again now, at the instant it held, on a live key of its
    /// unit. Plans never go back in time elsewhere (a send before a unit's later plans could
    /// overfill a window they were checked in), but this one takes back exactly what it gave
    /// up, where it was, and so leaves every window as those plans found it. Before, the
    /// request went after the unit's last plan, and the slot was lost
    /// (`scenarios/invalid-keys-full-day.toml`, told nothing: 36 minutes instead of 26).
    /// Over a network the send is confirmed a little after its instant: it is counted where
    /// it was as long as it goes within the margin of it (the replica counts an entry a
    /// margin longer than the server does, so no later plan finds it counted short). Before,
    /// `drive` went a minute later than the simulation on a project with a revoked key
    /// (`drive::a_send_withdrawn_from_a_revoked_key_keeps_its_instant_over_http`).
    fn replan(&mut self, now: Nanos, ask: &Ask, w: Withdrawn) -> Decision {
        let owner = w.unit / self.env.models;
        let per_key = self.key_slots(w.unit);
        let on_time = now.checked_sub(w.at).is_some_and(|late| late <= self.replica.margin());
        // A send put back before it since it was planned (`retake`) may have taken its room.
        let room = self.shaken.get(w.unit).is_none_or(|&until| now >= until)
            || self
                .replica
                .fits_through(now, self.units[w.unit].budget, w.cost, false)
                .unwrap_or(false);
        let key = match self.pick_key(owner, per_key) {
            Some(k) if on_time && room && !w.on_reservation && self.units[w.unit].blocked <= now => k,
            _ => return self.retake(now, ask, w),
        };
        self.replica.insert(w.at, self.units[w.unit].budget, w.cost);
        self.reserved.insert(ask.request, Held::new(w.at, w.cost, key, false));
        self.last_probe = Dims::EMPTY;
        self.units[w.unit].inflight += 1;
        self.key_inflight[key] += 1;
        self.reindex(w.unit, now);
        Decision::Send {
            key,
            model: w.unit % self.env.models,
            at: now,
        }
    }

    /// Unit `u`'s concurrency limit where it is per key (`pick_key` takes a key below it).
    fn key_slots(&self, u: usize) -> Option<u64> {
        match self.units[u].concurrent {
            Some((l, ConcurrencyScope::Key)) => Some(l),
            _ => None,
        }
    }

    /// Keeps `w` (a send the server did not charge) for its request to take back within a
    /// window's span ([`ExactCooldown::retake`]).
    fn offer_retake(&mut self, w: Withdrawn, now: Nanos) {
        self.retakes.retain(|&(r, until)| r.request != w.request && until > now);
        self.retakes
            .push((w, now.saturating_add(MINUTE + self.replica.margin())));
    }

    /// The send of `request` just withdrawn ([`Strategy::cancel`]) is offered back to it
    /// ([`ExactCooldown::retake`]) at its next decision.
    pub(super) fn retake_withdrawn(&mut self, request: u64, now: Nanos) {
        if let Some(w) = self.withdrawn.take().filter(|w| w.request == request) {
            self.offer_retake(w, now);
        }
    }

    /// Plans `ask` on the unit its send `w` was withdrawn from, at the earliest instant the
    /// unit's windows have room for it by what was sent up to then, when that is before the
    /// unit's later plans. Plans never go back in time otherwise, and those later plans were
    /// made a slot apart from the withdrawn send: under a queue planned ahead, the room a
    /// send the server did not charge (a 503, a 400 for an invalid key) left stayed empty,
    /// and every 503 cost its unit a slot (hunt-373: 2.55 requests a minute where round robin
    /// completed 3.03). The plans it goes before are checked when due and moved as little as
    /// the windows need ([`ExactCooldown::displaced`]; in a calendar minute it goes only where
    /// the whole minute, later plans included, has room, and none moves). Planned afresh where
    /// the windows cannot tell (what they kept aside was forgotten: a merged budget's), on a
    /// reservation, a fleet's share, or a unit whose concurrency slots are taken. It is no
    /// probe: it goes within the limits the unit plans by.
    fn retake(&mut self, now: Nanos, ask: &Ask, w: Withdrawn) -> Decision {
        let u = w.unit;
        let unit = &self.units[u];
        let slot_free = match unit.concurrent {
            Some((l, ConcurrencyScope::Project)) => unit.inflight < l,
            _ => true,
        };
        if w.on_reservation || self.weight != 1 || unit.blocked > now || !slot_free || unit.last <= now {
            return self.plan(now, ask);
        }
        let (budget, last) = (unit.budget, unit.last);
        let day_end = self.env.calendar.next_day_start(now);
        let limits = self.replica.limits(budget);
        let day_room = limits.rpd.is_none_or(|l| self.replica.used_today(now, budget) < l)
            && limits
                .tpd
                .is_none_or(|l| self.replica.tokens_today(now, budget) + w.cost <= l);
        let at = match self.replica.earliest_fit_through(now, budget, w.cost) {
            Some(t) if day_room && t < last && t < day_end && t - now <= self.horizon => t,
            _ => return self.plan(now, ask),
        };
        let Some(key) = self.pick_key(u / self.env.models, self.key_slots(u)) else {
            return self.plan(now, ask);
        };
        self.replica.insert(at, budget, w.cost);
        self.reserved.insert(ask.request, Held::new(at, w.cost, key, false));
        self.shake(u, at);
        self.last_probe = Dims::EMPTY;
        self.units[u].inflight += 1;
        self.key_inflight[key] += 1;
        self.reindex(u, now);
        Decision::Send {
            key,
            model: u % self.env.models,
            at,
        }
    }

    /// A send was put on unit `u` at `at`, before plans made without it: those it may take
    /// room from are checked when due (with the units that plan on its budget). In sliding
    /// windows, those due within a window's span of it; a bucket's debt carries it for as long
    /// as the bucket stays drained, so there every plan made before it (before, a 503's retry
    /// in `scenarios/gateway-buckets.toml` met a 429 80 s later).
    fn shake(&mut self, u: usize, at: Nanos) {
        let mut until = at.saturating_add(MINUTE + self.replica.margin());
        if self.window() == WindowKind::Bucket {
            until = until.max(self.units[u].last.saturating_add(1));
        }
        self.shaken.resize(self.units.len(), 0);
        let models = self.env.models;
        let owner = u / models;
        for v in owner * models..(owner + 1) * models {
            if v == u || self.units[v].budget == self.units[u].budget {
                self.shaken[v] = self.shaken[v].max(until);
            }
        }
        self.shaken_until = self.shaken_until.max(until);
    }

    /// Whether the send of `ask` planned on `key` and `model`, due now, no longer fits its
    /// unit's windows by what was sent up to now: a send put back before it since it was
    /// planned ([`ExactCooldown::retake`]) took its room. Such a send is withdrawn and goes
    /// as soon as the windows have room, still before the unit's later plans, which are
    /// checked in turn.
    pub(super) fn displaced(&self, now: Nanos, ask: &Ask, key: usize, model: usize) -> bool {
        if now >= self.shaken_until {
            return false;
        }
        let u = self.unit_of(key, model);
        if self.shaken.get(u).is_none_or(|&until| now >= until) {
            return false;
        }
        let Some(held) = self.reserved.get(ask.request) else {
            return false;
        };
        !held.on_reservation
            && self
                .replica
                .fits_through(now, self.units[u].budget, held.cost, true)
                .is_some_and(|fits| !fits)
    }

    /// Counts a send planned on unit `u` at `at` (its own or a peer's) in its day's sends.
    /// Only on token buckets, the one window kind whose preference reads them: elsewhere no
    /// send pays for the count, nor a refund for the calendar lookup that takes one back.
    fn count_day_send(&mut self, u: usize, at: Nanos) {
        if self.window() != WindowKind::Bucket {
            return;
        }
        let unit = &mut self.units[u];
        if at >= unit.day_sends.0 {
            unit.day_sends = (self.env.calendar.next_day_start(at), 0);
        }
        unit.day_sends.1 += 1;
    }

    /// Takes a send planned on unit `u` at `at` out of its day's sends (withdrawn, or not
    /// charged by the server), as the replica takes it out of a day it counts.
    fn uncount_day_send(&mut self, u: usize, at: Nanos) {
        let (day_end, sends) = self.units[u].day_sends;
        if sends > 0
            && at < day_end
            && self.window() == WindowKind::Bucket
            && self.env.calendar.next_day_start(at) == day_end
        {
            self.units[u].day_sends.1 -= 1;
        }
    }

    /// Withdraws a send planned on unit `u` and `key` as `held` counted it.
    fn withdraw_held(&mut self, u: usize, key: usize, held: Held<T>, now: Nanos) {
        if held.released {
            return;
        }
        let budget = self.budget_of(u, held);
        self.replica.cancel(held.at, budget, held.cost);
        self.uncount_day_send(u, held.at);
        let unit = &mut self.units[u];
        unit.inflight = unit.inflight.saturating_sub(1);
        self.key_inflight[key] = self.key_inflight[key].saturating_sub(1);
        self.reindex(u, now);
    }

    /// Withdraws at once the sends planned on unit `u` and not yet sent that `stale` picks by
    /// their tags (a 429 made them stale), rather than each when it comes due: their slots and
    /// their windows' room are free from now, and the replica's windows read from now again
    /// ([`Ledger::rewind`]), so the unit plans from now rather than after the last of them.
    /// Each entry stays, marked released, until its request comes due and is decided again
    /// (withdrawing it then takes nothing more). Before, a concurrency limit learned after the
    /// queue was planned ahead counted every plan in flight until it came due: 55 against 3
    /// slots and no send for 4.5 minutes (hunt-296, `scenarios/slots-learned-late.toml`).
    pub(super) fn release_plans(&mut self, u: usize, now: Nanos, stale: impl Fn(&T) -> bool) {
        let picked: Vec<u64> = self
            .reserved
            .iter()
            .filter(|(_, h)| !h.released && h.tag != T::default() && stale(&h.tag))
            .map(|(r, _)| r)
            .collect();
        for &r in &picked {
            let Some(h) = self.reserved.get_mut(r) else { continue };
            let held = *h;
            h.released = true;
            self.withdraw_held(u, held.key as usize, held, now);
        }
        if picked.is_empty() {
            return;
        }
        // Plans after the withdrawn ones' instants no longer, where its windows (the quota's,
        // and the reservation's if it has one) read from now again: the unit plans from the
        // latest send they still hold (peers' and their copies too), and from the latest still
        // counted on its project's keys (any model's: never too early).
        let quota = self.replica.rewind(self.units[u].budget, now);
        let reserved = match self.units[u].reservation {
            Some((r, _)) => self.replica.rewind(r, now),
            None => Some(now),
        };
        if let (Some(a), Some(b)) = (quota, reserved) {
            let owner = u / self.env.models;
            let latest = self
                .reserved
                .values()
                .filter(|h| !h.released && self.key_owner[h.key as usize] == owner)
                .map(|h| h.at)
                .fold(a.max(b), Nanos::max);
            let unit = &mut self.units[u];
            unit.last = unit.last.min(latest);
            self.reindex(u, now);
        }
    }
}

impl<T: Copy + Default + PartialEq + Send> ExactCooldown<T> {
    /// [`Strategy::prefetch_next`]'s work: asks for the budget (or, `second`, its window) of
    /// the unit of model `m` most preferred now, the one the next decision most likely takes,
    /// and names its key (if `key`).
    fn ask_next(&self, model: usize, second: bool, key: bool) -> Option<usize> {
        let (_, owner) = self.index.get(model)?.idle.first()?;
        let u = owner as usize * self.env.models + model;
        let b = self.units[u].budget;
        if second {
            // The driver keeps the key it was told the first time.
            self.replica.prefetch_window(b);
            return None;
        }
        self.replica.prefetch_budget(b);
        key.then(|| self.pick_key(owner as usize, None)).flatten()
    }
}

impl<T: Copy + Default + PartialEq + Send> ExactCooldown<T> {
    /// [`Strategy::decide`]'s work, once a withdrawn send may go back where it was.
    fn plan(&mut self, now: Nanos, ask: &Ask) -> Decision {
        if self.waker.is_some_and(|(r, t)| r == ask.request || t < now) {
            self.waker = None;
        }
        let cost = self.env.tpm_cost(ask);
        let new_day = now >= self.day_end;
        if self.floor.is_none_or(|f| cost < f) || new_day {
            self.floor = Some(self.floor.map_or(cost, |f| f.min(cost)));
            self.day_end = self.env.calendar.next_day_start(now);
            if new_day {
                // Idle units are keyed again into empty indexes: the day's counts start over,
                // and one index holding yesterday's counts and today's (a bitset per count
                // between them, see `Idle`) would turn into the B-tree for good.
                let owners = self.owner_keys.len();
                for index in &mut self.index {
                    index.idle = Idle::new(owners);
                }
                for unit in &mut self.units {
                    if matches!(unit.place, Place::Idle(_)) {
                        unit.place = Place::Out;
                    }
                }
            }
            for u in 0..self.units.len() {
                // A smaller floor leaves an idle unit idle under the same preference (it had
                // room for more); a new day re-keys them all.
                if new_day || !matches!(self.units[u].place, Place::Idle(_)) {
                    self.reindex(u, now);
                }
            }
        }
        // Set above at this instant or earlier on the same day.
        let day_end = self.day_end;
        let models = self.env.models;
        // The model, then its fallbacks (no allocation without any).
        let with_fallbacks: Vec<usize>;
        let chain: &[usize] = if self.fallback.is_empty() {
            std::slice::from_ref(&ask.model)
        } else {
            let mut c = vec![ask.model];
            for &m in &self.fallback {
                if !c.contains(&m) {
                    c.push(m);
                }
            }
            with_fallbacks = c;
            &with_fallbacks
        };
        let mut seen = Seen::default();
        let mut chosen: Option<(Nanos, usize, usize, Dims)> = None;
        let mut later: Option<(Nanos, usize, usize, Dims)> = None;
        for &m in chain {
            match self.best_for(m, now, cost, ask.input_tokens, &mut seen) {
                Some(b) if b.0 < day_end => {
                    chosen = Some(b);
                    break;
                }
                Some(b) if later.is_none_or(|l| b.0 < l.0) => later = Some(b),
                _ => {}
            }
        }
        let Seen {
            fits,
            slots_full,
            slot_at,
            awaiting,
        } = seen;
        let mut pick = chosen.or(later);
        if let Some(p) = pick.filter(|p| p.0 > now) {
            // A probe's outcome awaited on the pick's model may free a unit sooner: waited for
            // when the pick is more than a window's span later (a plan within it costs no
            // more than a refused probe would). One on another model of the chain holds back
            // no pick on this one. Waiting for every outcome, `overridden-days`' flux told
            // days too high waited for day probes the server then refused: p99 52.5 → 74.8 s.
            let model = p.1 % models;
            let slot_at = awaiting
                .iter()
                .filter(|e| e.0 == model && p.0 > e.1.saturating_add(MINUTE))
                .fold(slot_at, |a, e| earliest(a, Some(e.1)));
            // A unit waiting for a concurrency slot (it frees when one of its requests ends,
            // at a time not known) could take this request sooner than the pick by its windows
            // and day. A send planned at the pick would be this request's for good, and the
            // slot, when it frees, would find no request left to take it: a project without
            // a known concurrency limit but a slow minute took every queued request an hour
            // ahead while the others sat idle (`scenarios/concurrency-slots-queue.toml`).
            let freed = earliest(slot_at, self.slot_out_at(chain, now, cost));
            if p.0 >= day_end && (slots_full || freed.is_some_and(|f| f < day_end)) {
                // A send only tomorrow is worse than waiting for an outcome that frees a slot
                // today.
                pick = None;
            } else if freed.is_some_and(|f| f < p.0) && !self.env.live[p.1 % models] {
                // One request comes back when the pick's room opens (the rest of the queue
                // behind it), unless a slot frees first and an outcome asks them all again.
                if self.waker.is_none_or(|(r, t)| r == ask.request || t < now) {
                    self.waker = Some((ask.request, p.0));
                    return Decision::DeferUntil(p.0.min(now.saturating_add(self.horizon)));
                }
                return Decision::Defer;
            }
        }
        let Some((at, u, key, probe)) = pick else {
            // Nothing indexed can take it: find out why (rare, so a scan is fine).
            let dead = (0..self.owner_keys.len()).any(|o| self.pick_key(o, None).is_none());
            let full = slots_full
                || chain.iter().any(|&m| {
                    (0..self.owner_keys.len()).any(|o| {
                        let unit = &self.units[o * models + m];
                        matches!(unit.concurrent, Some((l, ConcurrencyScope::Project)) if unit.inflight >= l)
                    })
                });
            return if full {
                // A slot frees when an outstanding request ends.
                self.waits_for_slot = awaiting.is_empty();
                Decision::Defer
            } else if !fits && !dead {
                Decision::GiveUp(GiveUp::Unservable)
            } else {
                // Every key dead.
                Decision::GiveUp(GiveUp::Exhausted)
            };
        };
        if at >= day_end {
            // Not before the day ends: nothing is reserved, the request is asked about again
            // then. A send reserved tomorrow would hold its budget's plans back from today
            // (they never go back in time), so requests that still fit today's remaining
            // quota (smaller ones, under tokens per day) would wait for tomorrow too; and
            // today's counts stay today's, refunds and withdrawals included.
            return Decision::Later(at);
        }
        if at - now > self.horizon {
            // Not planned so far ahead: by the horizon more is known (in a fleet, the room the
            // others took), and plans on a budget never go back in time.
            return Decision::Later(now + self.horizon);
        }
        // The server serves it from the reservation whenever that has room at `at`.
        let reservation = self.units[u]
            .reservation
            .filter(|&(r, _)| self.replica.check(at, r, None, ask.input_tokens) == Admission::Admitted);
        let unit = &mut self.units[u];
        // `best_for` checked exactly this: the send fits the replica at `at` (or probes beyond
        // it). Reserving it now (rather than deciding again at `at`) keeps large requests from
        // being overtaken by small ones forever.
        let probe = if let Some((r, _)) = reservation {
            self.replica.commit(at, r, None, ask.input_tokens, at);
            // The reservation's windows have room: only a concurrency probe is still one.
            probe.and([Dimension::Concurrency].into_iter().collect())
        } else if probe.is_empty() {
            self.replica.commit(at, unit.budget, None, cost, at);
            probe
        } else {
            self.replica.force(at, unit.budget, None, cost, at);
            probe
        };
        if !probe.is_empty() {
            unit.awaiting = unit.probe;
            unit.probe = Dims::EMPTY;
            unit.awaiting_until = at.saturating_add(self.admit_grace);
        }
        self.last_probe = probe;
        let held = match reservation {
            Some(_) => Held::new(at, ask.input_tokens, key, true),
            None => Held::new(at, cost, key, false),
        };
        self.reserved.insert(ask.request, held);
        unit.last = at;
        unit.inflight += 1;
        self.count_day_send(u, at);
        self.key_inflight[key] += 1;
        let owner = self.key_owner[key];
        self.cursor[owner] = (self.cursor[owner] + 1) % self.owner_keys.of(owner).len();
        // Units that plan on the same budget (a re-routed id's, merged by `share_quota`) never
        // plan behind each other's sends: the replica's windows stay in time order.
        let budget = self.units[u].budget;
        for v in owner * models..(owner + 1) * models {
            if v != u && self.units[v].budget == budget && self.units[v].last < at {
                self.units[v].last = at;
                self.reindex(v, now);
            }
        }
        // Committed at `now` when nothing was probed and nothing reserved (`at` is then
        // `now` only for a send at once).
        let committed = at == now && reservation.is_none() && self.last_probe.is_empty();
        self.reindex_after(u, now, committed);
        // The budget the next decision most likely reads, asked for while this one's caller
        // works (the second step, its window, after the outcome): with 16,384 budgets it is
        // cold, and waiting for it, then for its window, was most of a decision (issue 34).
        if !self.driven.get() {
            self.ask_next(u % models, false, false);
        }
        Decision::Send {
            key,
            model: u % models,
            at,
        }
    }
}

impl<T: Copy + Default + PartialEq + Send> Strategy for ExactCooldown<T> {
    fn prefetch(&self, request: u64) {
        self.reserved.prefetch(request);
    }

    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch_next(&self, model: usize, second: bool) -> Option<usize> {
        self.driven.set(true);
        self.ask_next(model, second, true)
    }

    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        self.replica.set_clock(now);
        // Said of this decision only (set where `plan` defers for a slot).
        self.waits_for_slot = false;
        let reclaim = self.reclaim.take().filter(|w| w.request == ask.request);
        let mut retake = None;
        if !self.retakes.is_empty() {
            if let Some(i) = self.retakes.iter().position(|(w, _)| w.request == ask.request) {
                retake = Some(self.retakes.swap_remove(i)).filter(|&(_, until)| until > now);
            }
            self.retakes.retain(|&(_, until)| until > now);
        }
        match (reclaim, retake) {
            (Some(w), _) => self.replan(now, ask, w),
            (None, Some((w, _))) => self.retake(now, ask, w),
            (None, None) => self.plan(now, ask),
        }
    }

    /// A send planned on a key found invalid since (its 400 came after the plan) is withdrawn
    /// and asked about again: a live key takes it. Before, every request planned ahead on a
    /// revoked key met its 400 too (`scenarios/invalid-keys-full-day.toml`, told nothing).
    fn confirm(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize) -> bool {
        if self.key_dead[key] {
            self.cancel(now, ask, key, model, now);
            self.reclaim(ask.request);
            return false;
        }
        if self.displaced(now, ask, key, model) {
            self.cancel(now, ask, key, model, now);
            self.retake_withdrawn(ask.request, now);
            return false;
        }
        true
    }

    fn cancel(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, at: Nanos) {
        let u = self.unit_of(key, model);
        let held = self.held(ask, key, at);
        self.withdrawn = Some(Withdrawn::of(ask.request, u, &held));
        self.withdraw_held(u, key, held, now);
    }

    /// Withdrawn as if never planned (the shared ledger never recorded it), and the unit kept
    /// off until the ledger's wait is over.
    fn unsent(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, refusal: &Outcome) {
        self.cancel(now, ask, key, model, sent);
        if let Outcome::RateLimited {
            retry_delay: Some(d), ..
        } = *refusal
        {
            let u = self.unit_of(key, model);
            self.block(u, now.saturating_add(d), now);
        }
    }

    fn observe(&mut self, now: Nanos, peer: &Peer) {
        match *peer {
            Peer::Sent { key, model, at, tokens } => {
                let u = self.unit_of(key, model);
                let unit = &mut self.units[u];
                self.replica.insert(at, unit.budget, tokens);
                // Own plans stay after the others' on this budget (windows stay ordered).
                unit.last = unit.last.max(at);
                unit.inflight += 1;
                self.count_day_send(u, at);
                self.key_inflight[key] += 1;
                self.reindex(u, now);
            }
            Peer::Withdrawn { key, model, at, tokens } => {
                let u = self.unit_of(key, model);
                self.withdraw(u, key, at, tokens, now);
            }
            Peer::Ended {
                key,
                model,
                sent,
                cost,
                refused,
                ..
            } => {
                let u = self.unit_of(key, model);
                if refused {
                    self.replica.refund_day(sent, self.units[u].budget, cost);
                    self.uncount_day_send(u, sent);
                }
                let unit = &mut self.units[u];
                unit.inflight = unit.inflight.saturating_sub(1);
                self.key_inflight[key] = self.key_inflight[key].saturating_sub(1);
                self.reindex(u, now);
            }
        }
    }

    fn on_outcome(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, outcome: &Outcome) {
        if matches!(outcome, Outcome::Unservable { .. }) {
            self.too_large(ask, key, model);
        }
        self.end_send(now, ask, key, model, sent, outcome);
    }
}

impl<T: Copy + Default + PartialEq + Send> ExactCooldown<T> {
    /// The server called `ask`'s send on `key` and `model` unservable: no limit of the unit's
    /// will ever take it, so none will take a larger request. flux told a limit too high
    /// (which it probes) tried every larger request on each project anyway, one a minute on a
    /// 1-RPM project (`scenarios/unservable-sizes.toml`).
    pub(super) fn too_large(&mut self, ask: &Ask, key: usize, model: usize) {
        let cost = self.env.tpm_cost(ask);
        let bound = self.too_large.entry(self.unit_of(key, model)).or_insert(cost);
        *bound = (*bound).min(cost);
    }

    /// What every end of a send does: the replica and the unit learn how it went (a send
    /// `flux` refused itself ends as [`Outcome::Unservable`] here, see `refused`).
    fn end_send(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, outcome: &Outcome) {
        let owner = self.key_owner[key];
        let u = owner * self.env.models + model;
        self.units[u].inflight = self.units[u].inflight.saturating_sub(1);
        self.key_inflight[key] = self.key_inflight[key].saturating_sub(1);
        // What the replica reserved for this send, and where.
        let held = self.held(ask, key, sent);
        debug_assert!(!held.released, "a send whose slot was released went");
        let budget = self.budget_of(u, held);
        let (at, cost) = (held.at, held.cost);
        match outcome {
            // A 400 for an invalid key or a 503 comes before the server's quota check: it
            // charges nothing, so the replica withdraws the send from its windows and its day
            // (a minute entry kept would hold a slot the server never counted).
            Outcome::InvalidKey | Outcome::Unavailable => {
                self.replica.cancel(at, budget, cost);
                self.uncount_day_send(u, at);
            }
            // A 429 is not charged to the day; its minute entries stay: whether the server
            // counts a refusal against RPM is not known, so at worst a little caution.
            // (`flux` hands its own 429s and refused sessions over as `Error`, after handling
            // them itself.) A reservation counts no day.
            Outcome::RateLimited { .. } | Outcome::Unservable { .. } => {
                self.replica.refund_day(at, budget, cost);
                self.uncount_day_send(u, at);
            }
            Outcome::Ok | Outcome::Error => {}
        }
        let unit = &mut self.units[u];
        match *outcome {
            Outcome::RateLimited {
                violated, retry_delay, ..
            } => {
                let mut until = now + retry_delay.unwrap_or(SECOND);
                if violated.per_day() {
                    until = until.max(self.env.calendar.next_day_start(now));
                }
                unit.blocked = unit.blocked.max(until);
            }
            Outcome::InvalidKey => {
                // Its request, asked again next, takes back the instant it held on a live key
                // (see `replan`: within the margin of it, over a network), or later the room
                // the windows have then (`retake`).
                self.reclaim = Some(Withdrawn::of(ask.request, u, &held));
                self.offer_retake(Withdrawn::of(ask.request, u, &held), now);
                self.key_dead[key] = true;
                for m in 0..self.env.models {
                    self.reindex(owner * self.env.models + m, now);
                }
            }
            // Its windows gave back the withdrawn send: its request, asked again after its
            // back-off, takes the room back (`retake`).
            Outcome::Unavailable => self.offer_retake(Withdrawn::of(ask.request, u, &held), now),
            // Its day gave back the refused send.
            Outcome::Unservable { .. } => {}
            Outcome::Ok | Outcome::Error => {
                // Nothing that bounds this unit changed, unless a concurrency slot freed.
                if unit.concurrent.is_none() {
                    // The window of the budget `decide` asked for (see there).
                    if !self.driven.get() {
                        self.ask_next(model, true, false);
                    }
                    return;
                }
            }
        }
        self.reindex(u, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MINUTE;
    use crate::strategy::tests::{self, env, send};

    fn ask(tokens: u64) -> Ask {
        tests::ask(0, tokens)
    }

    /// The flat per-owner key lists hold each owner's keys in key order, as a vector per
    /// owner did, whatever the assignment (owners in any order, several keys each).
    #[test]
    fn owner_keys_lists_each_owner_s_keys_in_order() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        for owners in [1usize, 2, 7, 100] {
            let mut key_owner: Vec<usize> = (0..owners).collect();
            for _ in 0..r.random_range(0..3 * owners) {
                key_owner.push(r.random_range(0..owners));
            }
            let flat = OwnerKeys::new(owners, &key_owner);
            assert_eq!(flat.len(), owners);
            for o in 0..owners {
                let want: Vec<usize> = (0..key_owner.len()).filter(|&k| key_owner[k] == o).collect();
                assert_eq!(flat.of(o), &want[..], "owner {o} of {owners}");
            }
            assert_eq!(flat.iter().count(), owners);
        }
    }

    /// What a model has left of today's tokens per day, over the projects with a live key (a
    /// budget two ids share counted once), is short of what is asked exactly when the sum is
    /// below it; a project with no tokens-per-day limit makes it never short; what is asked
    /// is computed at most once, and not at all when the first budget has no limit.
    #[test]
    fn day_tokens_short_counts_each_budget_once_and_asks_need_at_most_once() {
        use std::cell::Cell;
        let limits = Limits {
            tpd: Some(1_000),
            ..Limits::default()
        };
        // Keys 0 and 1 are project 0's: 3 projects, 3,000 tokens a day.
        let mut e = ExactCooldown::new(env(&[0, 0, 1, 2], Some(limits)), vec![], 0);
        let asked = Cell::new(0);
        let short = |e: &ExactCooldown, need: u64| {
            e.day_tokens_short(0, 0, 5_000, || {
                asked.set(asked.get() + 1);
                need
            })
        };
        // Every budget met has a limit: an answer.
        let sh = |e: &ExactCooldown, need: u64| short(e, need).expect("limits known");
        assert!(!sh(&e, 3_000) && sh(&e, 3_001));
        send(e.decide(0, &ask(900)));
        assert!(!sh(&e, 2_100) && sh(&e, 2_101) && sh(&e, u64::MAX));
        assert_eq!(asked.get(), 5, "once per question");
        // Two models, the second the first's fallback: 2 projects, 4,000 tokens a day, until
        // the first id turns out to draw on the second's quota: one budget each, 2,000.
        let mut e = ExactCooldown::new(tests::env_two_models(&[0, 1], limits), vec![1], 0);
        assert!(!sh(&e, 4_000) && sh(&e, 4_001));
        assert!(e.share_quota(0, 1, 0));
        assert!(!sh(&e, 2_000) && sh(&e, 2_001), "a shared budget counted once");
        let mut untold = env(&[0, 1, 2], Some(limits));
        untold.limits[1].tpd = None;
        let e = ExactCooldown::new(untold.clone(), vec![], 0);
        // Project 0 holds 1,000: not short without looking further; 1,001 meets project 1.
        assert_eq!(short(&e, 1_000), Some(false));
        assert_eq!((short(&e, 1_001), short(&e, u64::MAX)), (None, None));
        untold.limits[0].tpd = None;
        let e = ExactCooldown::new(untold, vec![], 0);
        asked.set(0);
        assert_eq!(short(&e, u64::MAX), None);
        // A limit of `unknown` or more is no limit known.
        let e = ExactCooldown::new(
            env(
                &[0, 1],
                Some(Limits {
                    tpd: Some(5_000),
                    ..limits
                }),
            ),
            vec![],
            0,
        );
        assert_eq!((short(&e, 1), short(&e, u64::MAX)), (None, None));
        assert_eq!(asked.get(), 0, "no limit on the first budget: nothing asked");
    }

    /// A project the server called a request unservable on is never offered one as large or
    /// larger, whatever the planner believes of its limits; a smaller one still goes there,
    /// and another project still takes the large one. (Told no token limit, both projects
    /// look able to take anything.)
    #[test]
    fn a_project_that_called_a_request_unservable_is_offered_no_larger_one() {
        let mut e = ExactCooldown::new(env(&[0, 1], None), vec![], 0);
        let at = |tokens: u64, request: u64| tests::ask(request, tokens);
        // A 429 stating no value: the bound alone, whatever the limits.
        let never = Outcome::UNSERVABLE_UNSTATED;
        let (key, _) = send(e.decide(0, &at(40_000, 1)));
        e.on_outcome(0, &at(40_000, 1), key, 0, 0, &never);
        for (tokens, request) in [(60_000, 2), (40_000, 3)] {
            let (k, _) = send(e.decide(0, &at(tokens, request)));
            assert_ne!(k, key, "{tokens} tokens went where 40,000 could never go");
            if tokens == 40_000 {
                e.on_outcome(0, &at(tokens, request), k, 0, 0, &never);
            }
        }
        // Both projects refused 40,000: it, and anything larger, goes nowhere.
        assert_eq!(e.decide(0, &at(40_000, 3)), Decision::GiveUp(GiveUp::Unservable));
        assert_eq!(e.decide(0, &at(90_000, 3)), Decision::GiveUp(GiveUp::Unservable));
        // A smaller one still goes.
        assert!(matches!(e.decide(0, &at(39_999, 4)), Decision::Send { .. }));
    }

    /// A merged budget has one day estimate (issue 26, `rerouted-paid` told -50% at seed 14):
    /// the estimate set on one id's unit judges the other id's share of the day too, and a
    /// merge keeps the larger of the two. Before, each unit kept its own, so the two ids of
    /// one project judged its day against 500 and 250.
    #[test]
    fn the_ids_of_a_merged_budget_share_its_day_estimate() {
        let limits = Limits {
            rpd: Some(100),
            ..Limits::default()
        };
        let mut e = ExactCooldown::new(tests::env_two_models(&[0, 1], limits), vec![], 0);
        e.set_day_estimate(1, 300, 0);
        assert_eq!((e.day_estimate(0), e.day_estimate(1)), (0, 300), "two budgets");
        assert!(e.share_quota(0, 1, 0));
        assert_eq!(e.budget_units(0), vec![0, 1]);
        assert_eq!((e.day_estimate(0), e.day_estimate(1)), (300, 300), "merged: the larger");
        e.set_day_estimate(0, 400, 0);
        assert_eq!((e.day_estimate(0), e.day_estimate(1)), (400, 400));
        // The other project's units (2 and 3) are merged too, and kept their own estimate.
        assert_eq!((e.day_estimate(2), e.day_estimate(3)), (0, 0));
    }

    /// A re-route the strategy is told of (`Env::routes`, as `proxy` tells its configuration's)
    /// plans both ids on the target's budget from the start: 2 RPM spent under the old id
    /// leave none for the target in that minute.
    #[test]
    fn a_told_route_plans_both_ids_on_the_targets_budget() {
        let limits = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        let two = tests::env_two_models(&[0], limits);
        let on = |model: usize, request: u64| Ask {
            model,
            ..tests::ask(request, 10)
        };
        for (routes, target_at) in [(vec![], 0), (vec![(0, 1)], MINUTE)] {
            let mut told = two.clone();
            told.routes = routes;
            let mut e = ExactCooldown::new(told, vec![], 0);
            for r in 0..2 {
                assert_eq!(send(e.decide(0, &on(0, r))).1, 0);
            }
            let at = match e.decide(0, &on(1, 2)) {
                Decision::Send { at, .. } | Decision::Later(at) => at,
                d => panic!("{d:?}"),
            };
            assert_eq!(at, target_at, "routes told: {:?}", e.env.routes);
        }
        // flux, two projects, answers coming back before the next asks: 2 RPM per project
        // shared by both ids.
        let mut t3 = tests::env_two_models(&[0, 1], limits);
        t3.routes = vec![(0, 1)];
        let mut f = crate::strategy::flux::Flux::new(t3, vec![], 0);
        use crate::strategy::Strategy as _;
        let mut now_sent = 0;
        let mut out = Vec::new();
        for r in 0..3u64 {
            let a = on((r % 2) as usize, r);
            if let Decision::Send { at: 0, key, model } = f.decide(0, &a) {
                now_sent += 1;
                f.confirm(0, &a, key, model);
                out.push((a, key, model));
            }
        }
        let t = 800 * crate::core::time::MILLISECOND;
        for (a, key, model) in out {
            f.on_outcome(t, &a, key, model, 0, &Outcome::Ok);
        }
        for r in 3..8u64 {
            let a = on((r % 2) as usize, r);
            if let Decision::Send { at, key, model } = f.decide(t, &a) {
                if at == t {
                    now_sent += 1;
                    f.confirm(t, &a, key, model);
                }
            }
        }
        assert_eq!(now_sent, 4);
        // One client calling again once answered (380 ms), 5 RPM per project shared.
        let five = Limits {
            rpm: Some(5),
            rpd: Some(1000),
            tpm: Some(250_000),
            ..Limits::default()
        };
        let mut t4 = tests::env_two_models(&[0, 1], five);
        t4.routes = vec![(0, 1)];
        let mut f = crate::strategy::flux::Flux::new(t4, vec![], 0);
        let step = 380 * crate::core::time::MILLISECOND;
        let mut per = [0; 2];
        for r in 0..12u64 {
            let t = r * step;
            let a = on((r % 2) as usize, r);
            if let Decision::Send { at, key, model } = f.decide(t, &a) {
                if at == t {
                    per[key] += 1;
                    f.confirm(t, &a, key, model);
                    f.on_outcome(t + step - 1, &a, key, model, t, &Outcome::Ok);
                }
            }
        }
        assert_eq!(per, [5, 5]);
    }

    /// Passing over idle units that cannot take a request now changes no decision: the same
    /// random asks, outcomes and cancellations against the full scan.
    #[test]
    fn passing_over_full_units_decides_as_the_full_scan() {
        use rand::{Rng, SeedableRng};
        let limits = Limits {
            rpm: Some(30),
            tpm: Some(6_000),
            rpd: Some(2_000),
            ..Limits::default()
        };
        let keys: Vec<usize> = (0..24).map(|k| k % 12).collect();
        let mut fast = ExactCooldown::new(env(&keys, Some(limits)), vec![], 0);
        let mut full = ExactCooldown::new(env(&keys, Some(limits)), vec![], 0);
        full.pass_over = false;
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let (mut now, mut later, mut planned) = (0, 0, Vec::new());
        let (mut sent_now, mut hinted) = (0u64, 0u64);
        for i in 0..5_000u64 {
            // Coarse times, so units often free at the same instant (ties go by scan order).
            now += r.random_range(0..4) * 100 * crate::core::time::MILLISECOND;
            let a = tests::ask(i, r.random_range(1..2_500));
            // The driver's hints (issue 34) change nothing either: only `fast` gets them.
            let hint = fast.prefetch_next(0, false);
            fast.prefetch(a.request);
            assert_eq!(fast.prefetch_next(0, true), None);
            let d = fast.decide(now, &a);
            assert_eq!(d, full.decide(now, &a), "decision {i} at {now}");
            if let Decision::Send { key, at, .. } = d {
                later += u64::from(at > now);
                planned.push((a, key, at));
                if at == now {
                    sent_now += 1;
                    hinted += u64::from(hint == Some(key));
                }
            }
            // Now and then an outcome (some refused) or a cancelled plan comes back.
            let n = r.random_range(0..10);
            if let Some(j) = planned.iter().position(|&(_, _, at)| n == 0 || at <= now) {
                let (a, key, at) = planned.swap_remove(j);
                match n {
                    0 => {
                        fast.cancel(now, &a, key, 0, at);
                        full.cancel(now, &a, key, 0, at);
                    }
                    1 => {
                        let o = tests::limited(&[crate::core::ledger::Dimension::Tpm], SECOND, limits);
                        fast.on_outcome(now, &a, key, 0, at, &o);
                        full.on_outcome(now, &a, key, 0, at, &o);
                    }
                    _ => {
                        fast.on_outcome(now, &a, key, 0, at, &Outcome::Ok);
                        full.on_outcome(now, &a, key, 0, at, &Outcome::Ok);
                    }
                }
            }
        }
        assert!(
            later > 1_000,
            "the budgets must be full often enough to matter: {later}"
        );
        // The key named ahead is the one a send at once goes on, most of the time (here budgets
        // are full most of the time, so the first preferred unit is often passed over).
        assert!(
            sent_now > 50 && hinted * 3 >= sent_now * 2,
            "hinted {hinted} of {sent_now}"
        );
    }

    /// Issue 33, item 6: a 400 for an invalid key costs no quota, in the replica's day too: with
    /// a fallback chain, the first model keeps all of its day for the valid key.
    #[test]
    fn an_invalid_key_s_400_costs_none_of_the_day() {
        let limits = Limits {
            tpd: Some(1_000),
            ..Limits::default()
        };
        let mut e = env(&[0, 0], Some(limits));
        e.models = 2;
        e.scopes = vec![ConcurrencyScope::Project; 2];
        e.believed = vec![false; 2];
        e.live = vec![false; 2];
        e.limits = vec![limits; 2];
        let mut s = ExactCooldown::new(e, vec![1], 0);
        let sent = |d: Decision| match d {
            Decision::Send { key, model, at } => (key, model, at),
            d => panic!("{d:?}"),
        };
        // The first send goes on key 0, which turns out invalid.
        let (bad, model, at) = sent(s.decide(0, &ask(100)));
        assert_eq!((model, at), (0, 0));
        s.on_outcome(0, &ask(100), bad, 0, 0, &Outcome::InvalidKey);
        // Ten more of 100 tokens: model 0's whole day of 1,000, on the valid key.
        for i in 1..=10 {
            let (key, model, at) = sent(s.decide(i * SECOND, &ask(100)));
            assert_eq!((model, at), (0, i * SECOND), "request {i} on model 0");
            assert_ne!(key, bad);
            s.on_outcome(i * SECOND, &ask(100), key, 0, i * SECOND, &Outcome::Ok);
        }
        assert_eq!(sent(s.decide(11 * SECOND, &ask(100))).1, 1, "then the fallback");
    }

    /// Issue 33, item 3: a request beyond the quota's TPM that the project's reservation can
    /// serve is planned on the reservation, not given up as unservable (before, all three of
    /// these 6,000-token requests were given up at once); what neither can ever take is.
    #[test]
    fn plans_requests_only_a_reservation_can_serve() {
        use crate::core::server::Provisioned;
        let quota = Limits {
            tpm: Some(1_000),
            ..Limits::default()
        };
        let mut e = env(&[0], Some(quota));
        e.reserved = vec![Some(Provisioned {
            limits: Limits {
                tpm: Some(10_000),
                ..Limits::default()
            },
            overflow: Overflow::Spill,
        })];
        let mut s = ExactCooldown::new(e.clone(), vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 6_000))), (0, 0));
        assert_eq!(send(s.decide(SECOND, &tests::ask(1, 6_000))), (0, MINUTE));
        assert_eq!(send(s.decide(2 * SECOND, &tests::ask(2, 6_000))), (0, 2 * MINUTE));
        assert_eq!(
            s.decide(3 * SECOND, &tests::ask(3, 10_001)),
            Decision::GiveUp(GiveUp::Unservable),
            "beyond the reservation and the quota"
        );
        // The quota takes what fits it at once while the reservation is full.
        let mut s = ExactCooldown::new(e.clone(), vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 9_500))), (0, 0));
        assert_eq!(send(s.decide(SECOND, &tests::ask(1, 900))), (0, SECOND));
        assert_eq!(
            send(s.decide(SECOND, &tests::ask(2, 900))),
            (0, MINUTE),
            "neither has room"
        );
        // A 503 on the reservation's send gives its minute back to the reservation.
        let mut s = ExactCooldown::new(e.clone(), vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 9_500))), (0, 0));
        s.on_outcome(SECOND, &tests::ask(0, 9_500), 0, 0, 0, &Outcome::Unavailable);
        assert_eq!(send(s.decide(SECOND, &tests::ask(1, 9_000))), (0, SECOND));
        // Sent "dedicated only", nothing goes by the quota: a small request waits for room in
        // the reservation too.
        e.reserved[0].as_mut().unwrap().overflow = Overflow::DedicatedOnly;
        let mut s = ExactCooldown::new(e, vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 9_500))), (0, 0));
        assert_eq!(send(s.decide(0, &tests::ask(1, 900))), (0, MINUTE));
    }

    /// Issue 26, item 6: told the server counts calendar minutes, the planner waits for the
    /// next minute, not 60 s after the last send (before, it always planned sliding windows).
    #[test]
    fn plans_by_the_window_kind_it_was_given() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut e = env(&[0], Some(limits));
        // The calendar starts at 09:00:00: minute m starts at m * 60 s.
        e.window = WindowKind::Fixed;
        let mut s = ExactCooldown::new(e.clone(), vec![], 0);
        assert_eq!(send(s.decide(30 * SECOND, &ask(1))), (0, 30 * SECOND));
        assert_eq!(send(s.decide(31 * SECOND, &ask(1))), (0, MINUTE));
        e.window = WindowKind::Sliding;
        let mut s = ExactCooldown::new(e.clone(), vec![], 0);
        assert_eq!(send(s.decide(30 * SECOND, &ask(1))), (0, 30 * SECOND));
        assert_eq!(send(s.decide(31 * SECOND, &ask(1))), (0, 90 * SECOND));
        // A bucket of 2 a minute, full at first: two at once, then one each 30 s, and a 503
        // gives its room back exactly (before, it planned sliding windows: the third at 60 s).
        let two = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        let mut e = env(&[0], Some(two));
        e.window = WindowKind::Bucket;
        let mut s = ExactCooldown::new(e, vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 1))), (0, 0));
        assert_eq!(send(s.decide(0, &tests::ask(1, 1))), (0, 0));
        assert_eq!(send(s.decide(0, &tests::ask(2, 1))), (0, 30 * SECOND));
        s.on_outcome(SECOND, &tests::ask(1, 1), 0, 0, 0, &Outcome::Unavailable);
        // The planned 30 s send stands, and the 503's room came back: the next fits at 30 s too.
        assert_eq!(send(s.decide(SECOND, &tests::ask(3, 1))), (0, 30 * SECOND));
    }

    /// Token buckets without a limit on requests a day: the planner sends on the project it
    /// sent least on today, so no bucket sits full wasting its refill while another drains
    /// (before, every share was 0 and the first project took all it could: hunt-820,
    /// `scenarios/buckets-left-full.toml`, 633 done where round robin did 645). Minute windows
    /// keep the first project first (a batch packs its minute's tokens best so:
    /// `scenarios/contracts-few-slots.toml`), and a new day counts from 0.
    #[test]
    fn buckets_without_a_day_limit_go_to_the_project_sent_on_least() {
        let limits = Limits {
            rpm: Some(30),
            ..Limits::default()
        };
        let keys = |window: WindowKind, at: Nanos| {
            let mut e = env(&[0, 1], Some(limits));
            e.window = window;
            let mut s = ExactCooldown::new(e, vec![], 0);
            (0..5)
                .map(|r| send(s.decide(at, &tests::ask(r, 1))).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(WindowKind::Bucket, 0), [0, 1, 0, 1, 0]);
        assert_eq!(keys(WindowKind::Sliding, 0), [0; 5]);
        assert_eq!(keys(WindowKind::Fixed, 0), [0; 5]);
        // Project 0 took three today, project 1 two; at midnight both count from 0 again, and
        // the first goes first (by yesterday's counts project 1 would).
        let mut e = env(&[0, 1], Some(limits));
        e.window = WindowKind::Bucket;
        let mut s = ExactCooldown::new(e, vec![], 0);
        let midnight = s.env.calendar.next_day_start(0);
        let day: Vec<_> = (0..5)
            .map(|r| send(s.decide(midnight - SECOND, &tests::ask(r, 1))).0)
            .collect();
        assert_eq!(day, [0, 1, 0, 1, 0]);
        let next: Vec<_> = (5..8).map(|r| send(s.decide(midnight, &tests::ask(r, 1))).0).collect();
        assert_eq!(next, [0, 1, 0], "a new day");
        // A send the server did not charge (a 503) leaves the day's sends, as the replica's
        // day: project 0 has two to project 1's one, then one after the 503.
        let mut e = env(&[0, 1], Some(limits));
        e.window = WindowKind::Bucket;
        let mut s = ExactCooldown::new(e, vec![], 0);
        let day: Vec<_> = (0..3).map(|r| send(s.decide(0, &tests::ask(r, 1))).0).collect();
        assert_eq!(day, [0, 1, 0]);
        s.on_outcome(SECOND, &tests::ask(0, 1), 0, 0, 0, &Outcome::Unavailable);
        assert_eq!(
            send(s.decide(SECOND, &tests::ask(3, 1))).0,
            0,
            "after a 503 on project 0"
        );
        // A peer's send counts as the replica counts it, and its refusal leaves the count.
        let mut e = env(&[0, 1], Some(limits));
        e.window = WindowKind::Bucket;
        let mut s = ExactCooldown::new(e, vec![], 0);
        let peer = |at| Peer::Sent {
            key: 0,
            model: 0,
            at,
            tokens: 1,
        };
        s.observe(0, &peer(0));
        assert_eq!(
            send(s.decide(0, &tests::ask(0, 1))).0,
            1,
            "project 0 took a peer's send"
        );
        s.observe(0, &peer(0));
        s.observe(
            SECOND,
            &Peer::Ended {
                key: 0,
                model: 0,
                sent: 0,
                at: SECOND,
                cost: 1,
                tokens: 1,
                refused: true,
            },
        );
        assert_eq!(send(s.decide(SECOND, &tests::ask(1, 1))).0, 0, "one of them refused");
    }

    /// Issue 26, item 5: a 503 or a 400 for an invalid key comes before the server's quota
    /// check, so the replica holds no window slot for it: the next send goes at once, not a
    /// minute later; and what is withdrawn is what was reserved at the planned instant, even
    /// when the outcome says the send left later (a real network).
    #[test]
    fn uncharged_errors_hold_no_window_slot() {
        let limits = Limits {
            rpm: Some(1),
            tpm: Some(100),
            rpd: Some(10),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 60))), (0, 0));
        s.on_outcome(0, &tests::ask(0, 60), 0, 0, 0, &Outcome::Unavailable);
        assert_eq!(send(s.decide(SECOND, &tests::ask(0, 60))), (0, SECOND), "after a 503");
        // Planned at 61 s (the window holds the send at 1 s), left 3 ms late, answered 503.
        s.on_outcome(2 * SECOND, &tests::ask(0, 60), 0, 0, SECOND, &Outcome::Ok);
        let at = MINUTE + SECOND;
        assert_eq!(send(s.decide(2 * SECOND, &tests::ask(1, 60))), (0, at));
        let late = at + 3 * crate::core::time::MILLISECOND;
        s.on_outcome(late, &tests::ask(1, 60), 0, 0, late, &Outcome::Unavailable);
        assert_eq!(
            send(s.decide(late, &tests::ask(1, 60))),
            (0, late),
            "the planned entry withdrawn"
        );
        // A 400 on one key of a project: its other key goes at once.
        let mut s = ExactCooldown::new(env(&[0, 0], Some(limits)), vec![], 0);
        let (bad, _) = send(s.decide(0, &ask(60)));
        s.on_outcome(0, &ask(60), bad, 0, 0, &Outcome::InvalidKey);
        let (key, t) = send(s.decide(SECOND, &ask(60)));
        assert_eq!((t, key == bad), (SECOND, false), "after a 400");
    }

    /// Issue 26, item 4: among budgets with room, the one with the smallest share of its
    /// day's requests used goes first (by count, the 10-a-day project would be spent by the
    /// 20th request, while the 40-a-day one still had 30 left), ties to the first project.
    #[test]
    fn prefers_the_smallest_share_of_the_day_used() {
        let limits = |rpd| Limits {
            rpd: Some(rpd),
            ..Limits::default()
        };
        let mut e = env(&[0, 1], None);
        e.limits = vec![limits(10), limits(40)];
        let mut s = ExactCooldown::new(e, vec![], 0);
        let order: Vec<usize> = (0..50).map(|i| send(s.decide(i * SECOND, &ask(1))).0).collect();
        // 0/10 = 0/40: the first project; then the second until 4/40 = 1/10, the tie the first's.
        assert_eq!(order[..6], [0, 1, 1, 1, 1, 0]);
        for n in [5, 25, 50] {
            let on_first = order[..n].iter().filter(|&&k| k == 0).count();
            assert_eq!(on_first * 5, n, "one in five on the 10-a-day project after {n}");
        }
    }

    /// A new day keys the idle units into fresh indexes: after a day of 35,000 requests per
    /// project, today's counts (0) and yesterday's would span more counts than the bitsets
    /// hold, and the index stayed the B-tree from then on (the same order, slower). The
    /// order of sends is the shares' either way.
    #[test]
    fn a_new_day_keeps_the_idle_index_in_bitsets() {
        let limits = Limits {
            rpd: Some(100_000),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0, 1], Some(limits)), vec![], 0);
        let mut t = 0;
        for i in 0..70_000 {
            t = i * crate::core::time::MILLISECOND;
            assert_eq!(send(s.decide(t, &ask(1))).0, (i % 2) as usize, "request {i}");
        }
        let midnight = s.env.calendar.next_day_start(t);
        assert!(matches!(s.index[0].idle, Idle::Counts { .. }), "bitsets all day");
        assert_eq!(send(s.decide(midnight, &ask(1))), (0, midnight));
        assert!(matches!(s.index[0].idle, Idle::Counts { .. }), "bitsets the next day");
        assert_eq!(send(s.decide(midnight, &ask(1))), (1, midnight));
        assert_eq!(send(s.decide(midnight, &ask(1))), (0, midnight));
    }

    #[test]
    fn waits_exactly_until_the_soonest_budget_has_room() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(100),
            rpd: Some(1000),
            tpd: None,
            concurrent: None,
        };
        let mut s = ExactCooldown::new(env(&[0, 1], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(80))), (0, 0));
        assert_eq!(send(s.decide(SECOND, &ask(80))), (1, SECOND));
        // Both budgets hold 80 of 100: 30 more fit when the first send expires.
        assert_eq!(send(s.decide(2 * SECOND, &ask(30))), (0, MINUTE));
        assert_eq!(send(s.decide(2 * SECOND, &ask(20))), (1, 2 * SECOND));
        assert_eq!(s.decide(3 * SECOND, &ask(101)), Decision::GiveUp(GiveUp::Unservable));
    }

    #[test]
    fn a_margin_delays_each_cooldown_by_exactly_that_much() {
        let limits = Limits {
            rpm: Some(1),
            tpm: Some(100),
            ..Limits::default()
        };
        let margin = 300 * crate::core::time::MILLISECOND;
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], margin);
        assert_eq!(send(s.decide(0, &ask(10))), (0, 0), "the first send is not delayed");
        assert_eq!(send(s.decide(0, &ask(10))), (0, MINUTE + margin));
        assert_eq!(send(s.decide(0, &ask(10))), (0, 2 * (MINUTE + margin)));
    }

    #[test]
    fn a_cancelled_plan_frees_its_place() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        assert_eq!(send(s.decide(0, &ask(1))), (0, MINUTE));
        s.cancel(SECOND, &ask(1), 0, 0, MINUTE);
        assert_eq!(send(s.decide(SECOND, &ask(1))), (0, MINUTE), "the minute is free again");
    }

    /// `flux`'s tag lives in the send's entry: set after the decision, read back with the
    /// send's instant, listed, taken out before the outcome (the entry stays until then), and
    /// gone with the entry; no entry, no tag.
    #[test]
    fn a_tag_lives_in_its_send_s_entry() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s: ExactCooldown<(u32, u64)> = ExactCooldown::tagged(env(&[0], Some(limits)), vec![], 0);
        let a = |request| tests::ask(request, 1);
        let tag = (1, 3);
        assert_eq!(s.set_tag(7, Some(tag)), None, "no send planned for request 7");
        assert_eq!(s.tag(7), None);
        assert_eq!(send(s.decide(0, &a(1))), (0, 0));
        assert_eq!(send(s.decide(0, &a(2))), (0, MINUTE));
        assert_eq!(s.set_tag(2, Some(tag)), None);
        assert_eq!(s.tag(2), Some((MINUTE, tag)));
        assert_eq!(s.tag(1), None, "request 1 is planned, untagged");
        assert_eq!(s.tags().collect::<Vec<_>>(), [(MINUTE, tag)]);
        assert_eq!(s.set_tag(2, Some((1, 5))), Some((MINUTE, tag)));
        assert_eq!(s.set_tag(2, None), Some((MINUTE, (1, 5))));
        assert_eq!(s.tags().count(), 0);
        // Its reservation outlives the tag: the cancel withdraws exactly the minute planned.
        s.cancel(SECOND, &a(2), 0, 0, 2 * MINUTE);
        assert_eq!(send(s.decide(SECOND, &a(3))), (0, MINUTE), "the minute is free again");
        assert_eq!(s.tag(3), None, "a new entry starts untagged");
        s.set_tag(3, Some(tag));
        s.on_outcome(MINUTE, &a(3), 0, 0, MINUTE, &Outcome::Ok);
        assert_eq!(s.tag(3), None, "gone with its entry");
        // What the entries cost: `exact_cooldown`'s stay 24 bytes; `flux`'s tag adds 16.
        assert_eq!(std::mem::size_of::<Held<()>>(), 24);
    }

    #[test]
    fn keys_of_one_project_share_its_budget() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0, 0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        // The second key is in the same project: wait a minute, on either key.
        assert_eq!(send(s.decide(0, &ask(1))).1, MINUTE);
    }

    #[test]
    fn correct_mode_learns_retry_delays_and_falls_back_by_rpd() {
        let limits = Limits {
            rpd: Some(1),
            ..Limits::default()
        };
        let mut e = env(&[0], Some(limits));
        e.models = 2;
        e.limits = vec![limits, limits];
        e.scopes = vec![ConcurrencyScope::Project; 2];
        e.live = vec![false; 2];
        let mut s = ExactCooldown::new(e, vec![1], 0);
        let a = ask(1);
        assert_eq!(
            s.decide(0, &a),
            Decision::Send {
                key: 0,
                model: 0,
                at: 0
            }
        );
        assert_eq!(
            s.decide(1, &a),
            Decision::Send {
                key: 0,
                model: 1,
                at: 1
            }
        );
        // Both models spent for today: ask again at midnight Pacific, nothing reserved; then
        // the preferred model.
        let midnight = 15 * 60 * MINUTE;
        assert_eq!(s.decide(2, &a), Decision::Later(midnight));
        assert_eq!(
            s.decide(midnight, &a),
            Decision::Send {
                key: 0,
                model: 0,
                at: midnight
            }
        );
    }

    /// Issue 26, item 2: a request that can only go tomorrow is not reserved there, so today
    /// keeps its refunds: a 429 on today's second send frees today's day for the next request
    /// (before, the send reserved at midnight held the project's plans back to tomorrow and
    /// the refund was dropped with today's record).
    #[test]
    fn a_send_only_tomorrow_leaves_today_s_refunds_to_today() {
        let limits = Limits {
            rpd: Some(2),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        assert_eq!(send(s.decide(0, &tests::ask(1, 1))), (0, 0));
        let midnight = 15 * 60 * MINUTE;
        assert_eq!(s.decide(SECOND, &tests::ask(2, 1)), Decision::Later(midnight));
        let busy = tests::limited(&[crate::core::ledger::Dimension::Rpm], SECOND, Limits::default());
        s.on_outcome(2 * SECOND, &tests::ask(1, 1), 0, 0, 0, &busy);
        assert_eq!(send(s.decide(3 * SECOND, &tests::ask(2, 1))), (0, 3 * SECOND));
    }

    /// Issue 26, item 7: under tokens per day, a request that no longer fits today does not
    /// hold back a smaller one that still does (before, it was reserved at midnight and the
    /// smaller one planned after it, at midnight too).
    #[test]
    fn a_request_too_big_for_today_lets_smaller_ones_go_today() {
        let limits = Limits {
            tpd: Some(1_000),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(600))), (0, 0));
        let midnight = 15 * 60 * MINUTE;
        assert_eq!(s.decide(SECOND, &tests::ask(1, 500)), Decision::Later(midnight));
        assert_eq!(send(s.decide(SECOND, &tests::ask(2, 300))), (0, SECOND));
        assert_eq!(send(s.decide(midnight, &tests::ask(1, 500))), (0, midnight));
    }

    #[test]
    fn concurrency_defers_until_an_outcome() {
        let limits = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        assert_eq!(s.decide(0, &ask(1)), Decision::Defer);
        s.on_outcome(9, &ask(1), 0, 0, 0, &Outcome::Ok);
        assert_eq!(send(s.decide(9, &ask(1))), (0, 9));
        s.on_outcome(9, &ask(1), 0, 0, 0, &Outcome::InvalidKey);
        assert_eq!(s.decide(10, &ask(1)), Decision::GiveUp(GiveUp::Exhausted));
    }

    /// A project whose one slot is taken, but whose day has room, frees that slot today: a
    /// request the other project (its day spent) could take only tomorrow waits for the
    /// outcome. Before, the taken project was out of the index, unseen, and the request slept
    /// until midnight (`scenarios/invalid-keys-full-day.toml`).
    #[test]
    fn a_slot_that_frees_today_beats_a_send_tomorrow() {
        let limits = Limits {
            tpd: Some(200),
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0, 1], Some(limits)), vec![], 0);
        let (a, _) = send(s.decide(0, &tests::ask(0, 100)));
        let (b, _) = send(s.decide(0, &tests::ask(1, 100)));
        assert_ne!(a, b);
        // b's project spends its day; a's keeps its slot taken.
        s.on_outcome(SECOND, &tests::ask(1, 100), b, 0, 0, &Outcome::Ok);
        assert_eq!(send(s.decide(SECOND, &tests::ask(2, 100))), (b, SECOND));
        s.on_outcome(2 * SECOND, &tests::ask(2, 100), b, 0, SECOND, &Outcome::Ok);
        assert_eq!(s.decide(2 * SECOND, &tests::ask(3, 100)), Decision::Defer);
        // Its slot freed, a's project takes it today.
        s.on_outcome(3 * SECOND, &tests::ask(0, 100), a, 0, 0, &Outcome::Ok);
        assert_eq!(send(s.decide(3 * SECOND, &tests::ask(3, 100))), (a, 3 * SECOND));
    }

    /// A send planned on a key whose 400 came after the plan goes at its planned instant on a
    /// live key of its project, not after the project's later plans (the slot was lost).
    #[test]
    fn a_send_planned_on_a_key_found_invalid_keeps_its_slot() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0, 0], Some(limits)), vec![], 0);
        let plans: Vec<(usize, Nanos)> = (0..4).map(|r| send(s.decide(0, &tests::ask(r, 10)))).collect();
        let (dead, live) = (plans[0].0, plans[1].0);
        assert_eq!(
            plans,
            vec![(dead, 0), (live, MINUTE), (dead, 2 * MINUTE), (live, 3 * MINUTE)]
        );
        s.on_outcome(SECOND, &tests::ask(0, 10), dead, 0, 0, &Outcome::InvalidKey);
        assert!(!s.confirm(2 * MINUTE, &tests::ask(2, 10), dead, 0));
        assert_eq!(send(s.decide(2 * MINUTE, &tests::ask(2, 10))), (live, 2 * MINUTE));
        assert!(s.confirm(3 * MINUTE, &tests::ask(3, 10), live, 0));
    }

    /// While a project waits for a concurrency slot, the others' room is not planned beyond
    /// the time it could take the request: the line's head is told to come back when the room
    /// opens, or at an outcome before (the slot may free first), in its place in the line; the
    /// others wait for an outcome. Before, every queued request was planned, minute after
    /// minute, on the project with room, and the slot found none left to take it
    /// (`scenarios/concurrency-slots-queue.toml`); and the head, told to come back later
    /// out of line, was overtaken at every freed slot and went a minute late, alone
    /// (`scenarios/contracts-few-slots.toml`: 49.8 → 269.7 a minute).
    #[test]
    fn a_slot_about_to_free_is_not_planned_past() {
        // Project 0 allows one request in flight; project 1 one a minute.
        let mut s = ExactCooldown::new(env(&[0, 1], None), vec![], 0);
        let slots = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        s.set_limits(0, slots, 0);
        let minute = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        s.set_limits(1, minute, 0);
        assert_eq!(send(s.decide(0, &tests::ask(0, 10))), (0, 0));
        assert_eq!(send(s.decide(0, &tests::ask(1, 10))), (1, 0));
        // Project 0's slot is taken, project 1's minute is spent: a minute ahead is too far.
        assert_eq!(s.decide(SECOND, &tests::ask(2, 10)), Decision::DeferUntil(MINUTE));
        assert_eq!(s.decide(SECOND, &tests::ask(3, 10)), Decision::Defer);
        // Asked again in line (an outcome of another project's), it is still the one to wake.
        assert_eq!(s.decide(SECOND, &tests::ask(2, 10)), Decision::DeferUntil(MINUTE));
        // The slot frees first: the line's head takes it, the next one is told to wake.
        s.on_outcome(2 * SECOND, &tests::ask(0, 10), 0, 0, 0, &Outcome::Ok);
        assert_eq!(send(s.decide(2 * SECOND, &tests::ask(2, 10))), (0, 2 * SECOND));
        assert_eq!(s.decide(2 * SECOND, &tests::ask(3, 10)), Decision::DeferUntil(MINUTE));
        // It comes back when the minute opens and is sent there.
        assert_eq!(send(s.decide(MINUTE, &tests::ask(3, 10))), (1, MINUTE));
    }
}
