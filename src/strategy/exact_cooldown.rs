//! `exact_cooldown`: keeps a client-side replica of the quota ledger (sliding windows, exact
//! token cooldowns, daily counts reset at midnight Pacific) and sends each request on the budget
//! whose window has room soonest, waiting exactly that long; falls back along a model chain when
//! a model's daily quota is gone. The default is the correct version (every known dimension,
//! per project, in-flight reservations); `gemini-flux` mode reproduces that library's blind
//! spots (input TPM and RPD only, per key, one request in flight, any 429 kills the model on
//! that key until midnight, ties to the first key).

use std::collections::BTreeSet;

use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::ledger::{Admission, BudgetId, Dimension, Ledger, LedgerConfig, Limits, WindowKind};
use crate::core::server::ConcurrencyScope;
use crate::core::time::{Nanos, SECOND};

/// One budget as the strategy tracks it: a (project, model) pair, or (key, model) in
/// gemini-flux mode.
#[derive(Debug, Clone)]
struct Unit {
    budget: BudgetId,
    /// The latest planned send: plans on one budget never go back in time, so the replica's
    /// windows stay ordered and a plan never breaks an earlier one.
    last: Nanos,
    /// Not before this (learned from 429 retry delays).
    blocked: Nanos,
    /// gemini-flux: model dead on this key until then.
    dead_until: Nanos,
    /// Sends planned or outstanding.
    inflight: u64,
    /// Known concurrency limit and its scope.
    concurrent: Option<(u64, ConcurrencyScope)>,
    /// Where the unit is indexed.
    place: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Not a candidate: no live key, concurrency slots full, or a limit of 0.
    Out,
    /// Could take a request now (its lower bound has passed); keyed by preference.
    Idle(u64),
    /// Cannot take any request before this instant.
    Waiting(Nanos),
}

/// The candidates of one model: idle units by preference (requests used today, so daily
/// quota is spent evenly; gemini-flux: key index), waiting ones by lower bound.
#[derive(Debug, Clone, Default)]
struct Index {
    idle: BTreeSet<(u64, u32)>,
    waiting: BTreeSet<(Nanos, u32)>,
}

/// How a unit could serve a request.
enum Eval {
    /// At this instant, on this key.
    At(Nanos, usize),
    /// Not until an outstanding request ends.
    SlotsFull,
    /// Never (a limit of 0 or too many tokens).
    Never,
}

/// The exact-cooldown strategy.
#[derive(Debug, Clone)]
pub struct ExactCooldown {
    env: Env,
    fallback: Vec<usize>,
    flux: bool,
    replica: Ledger,
    units: Vec<Unit>,
    index: Vec<Index>,
    /// Keys of each owner (a project; a single key in gemini-flux mode).
    owner_keys: Vec<Vec<usize>>,
    key_owner: Vec<usize>,
    key_dead: Vec<bool>,
    key_inflight: Vec<u64>,
    cursor: Vec<usize>,
    /// gemini-flux's global lock: one request in flight.
    busy: bool,
    /// When the current day ends: idle preferences (requests used today) are re-keyed then.
    day_end: Nanos,
    /// The smallest request cost seen: lower bounds hold for any request at least this big,
    /// and are recomputed when a smaller one comes (about ln N times in N requests).
    floor: Option<u64>,
}

impl ExactCooldown {
    /// The strategy over `env`, falling back to `fallback` models in order; `gemini_flux`
    /// selects the compatibility mode; its replica holds window entries `margin` longer than
    /// 60 s (see [`Ledger::with_margin`]; 0 plans exactly).
    pub fn new(env: Env, fallback: Vec<usize>, gemini_flux: bool, margin: Nanos) -> Self {
        let mut replica = Ledger::new(
            env.calendar.clone(),
            LedgerConfig {
                window: WindowKind::Sliding,
                count_rejected: false,
            },
        )
        .with_margin(margin);
        let keys = env.key_project.len();
        let (owner_keys, key_owner): (Vec<Vec<usize>>, Vec<usize>) = if gemini_flux {
            ((0..keys).map(|k| vec![k]).collect(), (0..keys).collect())
        } else {
            let mut v = vec![Vec::new(); env.projects];
            for (k, &p) in env.key_project.iter().enumerate() {
                v[p].push(k);
            }
            (v, env.key_project.clone())
        };
        let mut units = Vec::new();
        for keys_of_owner in &owner_keys {
            let project = env.key_project[keys_of_owner[0]];
            for m in 0..env.models {
                let known = env.limits[project * env.models + m];
                let (limits, concurrent) = if gemini_flux {
                    (
                        Limits {
                            rpm: None,
                            tpm: known.tpm,
                            rpd: known.rpd,
                            concurrent: None,
                        },
                        None,
                    )
                } else {
                    (
                        Limits {
                            concurrent: None,
                            ..known
                        },
                        known.concurrent.map(|c| (c, env.scopes[m])),
                    )
                };
                units.push(Unit {
                    budget: replica.add_budget(limits, 0),
                    last: 0,
                    blocked: 0,
                    dead_until: 0,
                    inflight: 0,
                    concurrent,
                    place: Place::Out,
                });
            }
        }
        let mut s = ExactCooldown {
            cursor: vec![0; owner_keys.len()],
            index: vec![Index::default(); env.models],
            owner_keys,
            key_owner,
            key_dead: vec![false; keys],
            key_inflight: vec![0; keys],
            env,
            fallback,
            flux: gemini_flux,
            replica,
            units,
            busy: false,
            floor: None,
            day_end: 0,
        };
        for u in 0..s.units.len() {
            s.reindex(u, 0);
        }
        s
    }

    /// A live key of `owner` with a free slot under key-scoped concurrency `per_key`
    /// (round-robin among the owner's keys).
    fn pick_key(&self, owner: usize, per_key: Option<u64>) -> Option<usize> {
        let keys = &self.owner_keys[owner];
        (0..keys.len())
            .map(|i| keys[(self.cursor[owner] + i) % keys.len()])
            .find(|&k| !self.key_dead[k] && per_key.is_none_or(|l| self.key_inflight[k] < l))
    }

    fn cost(&self, ask: &Ask) -> u64 {
        if self.flux {
            ask.input_tokens
        } else {
            self.env.tpm_cost(ask)
        }
    }

    fn start(&self, u: usize, now: Nanos) -> Nanos {
        let unit = &self.units[u];
        let t = now.max(unit.last).max(unit.blocked);
        if self.flux {
            t.max(unit.dead_until)
        } else {
            t
        }
    }

    /// Puts unit `u` where it belongs in its model's index, after anything about it changed.
    fn reindex(&mut self, u: usize, now: Nanos) {
        let (owner, m) = (u / self.env.models, u % self.env.models);
        let index = &mut self.index[m];
        match self.units[u].place {
            Place::Out => {}
            Place::Idle(key) => {
                index.idle.remove(&(key, owner as u32));
            }
            Place::Waiting(t) => {
                index.waiting.remove(&(t, owner as u32));
            }
        }
        let unit = &self.units[u];
        let slots_full = matches!(unit.concurrent, Some((l, ConcurrencyScope::Project)) if unit.inflight >= l);
        let place = if slots_full || self.pick_key(owner, None).is_none() {
            Place::Out
        } else {
            // The earliest instant any request of at least `floor` tokens could go.
            let t0 = self.start(u, now);
            match self.replica.check(t0, unit.budget, None, self.floor.unwrap_or(0)) {
                Admission::Unservable { .. } => Place::Out,
                // gemini-flux prefers the first key among those free now; the correct mode
                // takes the unit whose bound passed longest ago, which spreads load.
                Admission::Admitted if t0 <= now => Place::Idle(self.preference(u, now)),
                Admission::Admitted => Place::Waiting(t0),
                Admission::Rejected { retry_at, .. } => Place::Waiting(retry_at),
            }
        };
        let index = &mut self.index[m];
        match place {
            Place::Out => {}
            Place::Idle(key) => {
                index.idle.insert((key, owner as u32));
            }
            Place::Waiting(t) => {
                index.waiting.insert((t, owner as u32));
            }
        }
        self.units[u].place = place;
    }

    /// Which idle unit to prefer (smaller first): gemini-flux takes the first key; the correct
    /// mode the budget that has used least of its day, so no project runs out of daily quota
    /// while others still have plenty.
    fn preference(&self, u: usize, now: Nanos) -> u64 {
        if self.flux {
            0
        } else {
            self.replica.used_today(now, self.units[u].budget)
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
            self.index[m].idle.insert((key, owner));
            self.units[u].place = Place::Idle(key);
        }
    }

    /// When and on which key unit `u` could serve a request costing `cost`.
    fn evaluate(&mut self, u: usize, now: Nanos, cost: u64) -> Eval {
        let t0 = self.start(u, now);
        let unit = &self.units[u];
        let t = match self.replica.check(t0, unit.budget, None, cost) {
            Admission::Unservable { .. } => return Eval::Never,
            Admission::Admitted => t0,
            Admission::Rejected { retry_at, .. } => retry_at,
        };
        let per_key = match unit.concurrent {
            Some((l, ConcurrencyScope::Key)) => Some(l),
            _ => None,
        };
        match self.pick_key(u / self.env.models, per_key) {
            Some(k) => Eval::At(t, k),
            None => Eval::SlotsFull,
        }
    }

    /// The unit of model `m` that can take a request costing `cost` soonest. Units are visited
    /// by lower bound and the visit stops once the bound passes the best time found, or a
    /// unit can send now (branch and bound: exact, and O(log n) while budgets have room).
    /// gemini-flux breaks ties by key index, as that library does: its idle units are visited
    /// first, in index order. Sets `fits` and `slots_full` as it learns.
    fn best_for(
        &mut self,
        m: usize,
        now: Nanos,
        cost: u64,
        fits: &mut bool,
        slots_full: &mut bool,
    ) -> Option<(Nanos, usize, usize)> {
        self.wake(m, now);
        let mut best: Option<(Nanos, u32, usize)> = None;
        let mut consider = |this: &mut Self, owner: u32, best: &mut Option<(Nanos, u32, usize)>| match this.evaluate(
            owner as usize * this.env.models + m,
            now,
            cost,
        ) {
            Eval::At(t, k) => {
                *fits = true;
                let better = match best {
                    None => true,
                    Some((bt, bo, _)) if this.flux => (t, owner) < (*bt, *bo),
                    Some((bt, _, _)) => t < *bt,
                };
                if better {
                    *best = Some((t, owner, k));
                }
            }
            Eval::SlotsFull => {
                *fits = true;
                *slots_full = true;
            }
            Eval::Never => {}
        };
        let mut cursor = self.index[m].idle.first().copied();
        while let Some((key, owner)) = cursor {
            consider(self, owner, &mut best);
            if best.is_some_and(|(t, _, _)| t <= now) {
                break;
            }
            cursor = self.index[m].idle.range((key, owner + 1)..).next().copied();
        }
        let mut cursor = self.index[m].waiting.first().copied();
        while let Some((bound, owner)) = cursor {
            let done = match best {
                None => false,
                Some((t, bo, _)) if self.flux => (bound, owner) > (t, bo),
                Some((t, _, _)) => t <= now || bound >= t,
            };
            if done {
                break;
            }
            consider(self, owner, &mut best);
            cursor = self.index[m].waiting.range((bound, owner + 1)..).next().copied();
        }
        best.map(|(t, owner, k)| (t, owner as usize * self.env.models + m, k))
    }
}

impl Strategy for ExactCooldown {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        if self.flux && self.busy {
            return Decision::Defer;
        }
        let cost = self.cost(ask);
        if self.floor.is_none_or(|f| cost < f) || now >= self.day_end {
            self.floor = Some(self.floor.map_or(cost, |f| f.min(cost)));
            self.day_end = self.env.calendar.next_day_start(now);
            for u in 0..self.units.len() {
                self.reindex(u, now);
            }
        }
        let day_end = self.env.calendar.next_day_start(now);
        let models = self.env.models;
        let mut chain = vec![ask.model];
        for &m in &self.fallback {
            if !chain.contains(&m) {
                chain.push(m);
            }
        }
        let (mut fits, mut slots_full) = (false, false);
        let mut chosen: Option<(Nanos, usize, usize)> = None;
        let mut later: Option<(Nanos, usize, usize)> = None;
        for &m in &chain {
            match self.best_for(m, now, cost, &mut fits, &mut slots_full) {
                Some(b) if b.0 < day_end => {
                    chosen = Some(b);
                    break;
                }
                Some(b) if !self.flux && later.is_none_or(|l| b.0 < l.0) => later = Some(b),
                _ => {}
            }
        }
        let Some((at, u, key)) = chosen.or(later) else {
            // Nothing indexed can take it: find out why (rare, so a scan is fine).
            let dead = chain.iter().any(|&m| {
                (0..self.owner_keys.len()).any(|o| {
                    let unit = &self.units[o * models + m];
                    self.pick_key(o, None).is_none() || (self.flux && unit.dead_until > now)
                })
            });
            let full = slots_full
                || chain.iter().any(|&m| {
                    (0..self.owner_keys.len()).any(|o| {
                        let unit = &self.units[o * models + m];
                        matches!(unit.concurrent, Some((l, ConcurrencyScope::Project)) if unit.inflight >= l)
                    })
                });
            return if full {
                // A slot frees when an outstanding request ends.
                Decision::Defer
            } else if !fits && !dead {
                Decision::GiveUp(GiveUp::Unservable)
            } else {
                // Every key dead, or (gemini-flux) every model dead or out of daily quota.
                Decision::GiveUp(GiveUp::Exhausted)
            };
        };
        let unit = &mut self.units[u];
        // `best_for` checked exactly this: the send fits the replica at `at`. Reserving it now
        // (rather than deciding again at `at`) keeps large requests from being overtaken by
        // small ones forever.
        self.replica.commit(at, unit.budget, None, cost, at);
        unit.last = at;
        unit.inflight += 1;
        self.key_inflight[key] += 1;
        let owner = self.key_owner[key];
        self.cursor[owner] = (self.cursor[owner] + 1) % self.owner_keys[owner].len();
        self.busy = true;
        self.reindex(u, now);
        Decision::Send {
            key,
            model: u % models,
            at,
        }
    }

    fn on_outcome(&mut self, now: Nanos, _: &Ask, key: usize, model: usize, _: Nanos, outcome: &Outcome) {
        let owner = self.key_owner[key];
        let u = owner * self.env.models + model;
        let unit = &mut self.units[u];
        unit.inflight = unit.inflight.saturating_sub(1);
        self.key_inflight[key] = self.key_inflight[key].saturating_sub(1);
        self.busy = false;
        match *outcome {
            Outcome::RateLimited { violated, retry_delay } => {
                if self.flux {
                    unit.dead_until = self.env.calendar.next_day_start(now);
                } else {
                    let mut until = now + retry_delay.unwrap_or(SECOND);
                    if violated.contains(Dimension::Rpd) {
                        until = until.max(self.env.calendar.next_day_start(now));
                    }
                    unit.blocked = unit.blocked.max(until);
                }
            }
            Outcome::InvalidKey => {
                self.key_dead[key] = true;
                for m in 0..self.env.models {
                    self.reindex(owner * self.env.models + m, now);
                }
            }
            Outcome::Ok | Outcome::Unservable | Outcome::Unavailable | Outcome::Error => {
                // Nothing that bounds this unit changed, unless a concurrency slot freed.
                if unit.concurrent.is_none() {
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
    use crate::core::ledger::Dims;
    use crate::core::time::MINUTE;
    use crate::strategy::tests::env;

    fn ask(tokens: u64) -> Ask {
        Ask {
            request: 0,
            input_tokens: tokens,
            output_tokens: 1,
            model: 0,
            attempts: 0,
        }
    }

    fn send(d: Decision) -> (usize, Nanos) {
        match d {
            Decision::Send { key, at, .. } => (key, at),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn waits_exactly_until_the_soonest_budget_has_room() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(100),
            rpd: Some(1000),
            concurrent: None,
        };
        let mut s = ExactCooldown::new(env(&[0, 1], Some(limits)), vec![], false, 0);
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
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], false, margin);
        assert_eq!(send(s.decide(0, &ask(10))), (0, 0), "the first send is not delayed");
        assert_eq!(send(s.decide(0, &ask(10))), (0, MINUTE + margin));
        assert_eq!(send(s.decide(0, &ask(10))), (0, 2 * (MINUTE + margin)));
    }

    #[test]
    fn keys_of_one_project_share_its_budget() {
        let limits = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0, 0], Some(limits)), vec![], false, 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        // The second key is in the same project: wait a minute, on either key.
        assert_eq!(send(s.decide(0, &ask(1))).1, MINUTE);
        // gemini-flux believes each key has its own budget (and ignores RPM).
        let mut f = ExactCooldown::new(env(&[0, 0], Some(limits)), vec![], true, 0);
        assert_eq!(send(f.decide(0, &ask(1))), (0, 0));
        assert_eq!(f.decide(0, &ask(1)), Decision::Defer, "one request in flight");
        f.on_outcome(5, &ask(1), 0, 0, 0, &Outcome::Ok);
        assert_eq!(
            send(f.decide(5, &ask(1))),
            (0, 5),
            "ties go to the first key; RPM unknown"
        );
    }

    #[test]
    fn gemini_flux_kills_a_model_on_a_key_for_the_day_after_any_429() {
        let limits = Limits {
            tpm: Some(100),
            ..Limits::default()
        };
        let mut f = ExactCooldown::new(env(&[0, 1], Some(limits)), vec![], true, 0);
        assert_eq!(send(f.decide(0, &ask(1))), (0, 0));
        let rl = Outcome::RateLimited {
            violated: Dims::EMPTY,
            retry_delay: Some(SECOND),
        };
        f.on_outcome(0, &ask(1), 0, 0, 0, &rl);
        assert_eq!(send(f.decide(10 * MINUTE, &ask(1))), (1, 10 * MINUTE));
        f.on_outcome(10 * MINUTE, &ask(1), 1, 0, 0, &rl);
        assert_eq!(f.decide(11 * MINUTE, &ask(1)), Decision::GiveUp(GiveUp::Exhausted));
        // Scenario starts 09:00 PDT: both keys live again at midnight, 15 h in.
        assert_eq!(send(f.decide(15 * 60 * MINUTE, &ask(1))).0, 0);
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
        let mut s = ExactCooldown::new(e, vec![1], false, 0);
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
        // Both models spent for today: wait for midnight Pacific on the preferred model.
        assert_eq!(
            s.decide(2, &a),
            Decision::Send {
                key: 0,
                model: 0,
                at: 15 * 60 * MINUTE
            }
        );
    }

    #[test]
    fn concurrency_defers_until_an_outcome() {
        let limits = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut s = ExactCooldown::new(env(&[0], Some(limits)), vec![], false, 0);
        assert_eq!(send(s.decide(0, &ask(1))), (0, 0));
        assert_eq!(s.decide(0, &ask(1)), Decision::Defer);
        s.on_outcome(9, &ask(1), 0, 0, 0, &Outcome::Ok);
        assert_eq!(send(s.decide(9, &ask(1))), (0, 9));
        s.on_outcome(9, &ask(1), 0, 0, 0, &Outcome::InvalidKey);
        assert_eq!(s.decide(10, &ask(1)), Decision::GiveUp(GiveUp::Exhausted));
    }
}
