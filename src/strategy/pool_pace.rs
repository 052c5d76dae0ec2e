//! One model's pacing under 429s without details (issue 26, item 8): a full shared pool
//! (Vertex AI's dynamic shared quota), a PayGo lane, a spend cap. No budget is to blame and
//! rotating is pointless; and backing off each request on its own keeps every queued request
//! knocking (tens of thousands of 429s at a pool's peak). `flux` instead queues the model's
//! requests behind one pacing of the room the model has shown, AIMD-like:
//!
//! - it counts its own sends on the model over the last minute, as a pool counts them (sends
//!   refused or failed take nothing), and sends only while that count is under `cap`;
//! - the first 429 without details sets `cap` to the count the refused send met; a later
//!   refusal of a send under `cap` (the room fell) lowers `cap` to the count it met, and a
//!   second in a row (no send admitted in between: a burst) halves it;
//! - beyond `cap` one *probe* goes at a time, and only once `gap` has passed since the last
//!   refused one; a probe admitted raises `cap` by one and lets the next go at once (two at a
//!   time, three, … while `cap` is under the level it had before its latest fall, as TCP's slow
//!   start: after a burst the room comes back fast); a probe refused doubles `gap`, from 1 s
//!   to 60 s, or to 5 s while `cap` is 0 (nothing goes: a late probe would waste the whole
//!   room when the pool reopens);
//! - a probe counts as admitted once `settle` has passed without a 429 (a refusal comes back
//!   before any response): twice the longest a 429 took to come back, at least 1 ms.
//!
//! The requests wait in their order of asking: one of them is told when the room frees (the
//! *waker*); the others are deferred behind it (the driver keeps them in order).

use std::collections::VecDeque;

use crate::core::time::{Nanos, MILLISECOND, MINUTE, SECOND};

/// The shortest wait between a refused probe and the next.
const GAP_MIN: Nanos = SECOND;
/// The longest, while some room is believed left.
const GAP_MAX: Nanos = MINUTE;
/// The longest while none is (`cap` 0).
const GAP_MAX_SHUT: Nanos = 5 * SECOND;
/// The least time after a send without a 429 before it is taken as admitted.
const SETTLE_MIN: Nanos = MILLISECOND;

/// What [`PoolPace::gate`] says about a send on the model now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Room: send (`probe`: beyond the believed room, to find out whether it grew).
    Go { probe: bool },
    /// No room until `at`.
    Wait(Nanos),
}

/// One model's pacing (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct PoolPace {
    /// Its sends of the last minute the model admitted or may still admit: (sent, request),
    /// in order of `sent`.
    sends: VecDeque<(Nanos, u64)>,
    /// Sends a minute the model is believed to take; `None` until its first 429 without
    /// details (unpaced).
    cap: Option<u64>,
    /// `cap` before its latest fall: probes ramp up quickly back to it.
    before_fall: u64,
    /// Probes allowed out at once.
    probes: u64,
    /// Probes out, not yet known admitted: (request, sent).
    out: Vec<(u64, Nanos)>,
    /// Wait after a refused probe.
    gap: Nanos,
    /// No probe before this.
    probe_at: Nanos,
    /// The latest refused send of a run of refusals not yet broken by an admitted one.
    falling: Option<Nanos>,
    /// How long after a send without a 429 it counts as admitted.
    settle: Nanos,
    /// The request told to come back when room frees, and when.
    waker: Option<(u64, Nanos)>,
}

impl Default for PoolPace {
    fn default() -> Self {
        PoolPace {
            sends: VecDeque::new(),
            cap: None,
            before_fall: 0,
            probes: 1,
            out: Vec::new(),
            gap: GAP_MIN,
            probe_at: 0,
            falling: None,
            settle: SETTLE_MIN,
            waker: None,
        }
    }
}

impl PoolPace {
    /// The sends a minute it believes the model takes (`None`: unpaced).
    #[cfg(test)]
    pub(super) fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// Whether request `request` may be sent now.
    pub(super) fn gate(&mut self, now: Nanos, request: u64) -> Gate {
        if self.waker.is_some_and(|(r, at)| r == request || at < now) {
            self.waker = None;
        }
        self.expire(now);
        if self.cap.is_none() {
            return Gate::Go { probe: false };
        }
        self.gate_paced(now)
    }

    /// [`PoolPace::gate`] once a 429 without details set a pace (apart: off the path of a
    /// model never refused so, issue 34).
    #[inline(never)]
    fn gate_paced(&mut self, now: Nanos) -> Gate {
        let Some(cap) = self.cap else {
            return Gate::Go { probe: false };
        };
        self.settle_probes(now);
        let cap = self.cap.unwrap_or(cap);
        let n = self.sends.len() as u64;
        if n < cap {
            return Gate::Go { probe: false };
        }
        let out = self.out.len() as u64;
        if now >= self.probe_at && out < self.probes {
            return Gate::Go { probe: true };
        }
        let mut at = if cap > 0 {
            self.sends[(n - cap) as usize].0.saturating_add(MINUTE)
        } else {
            Nanos::MAX
        };
        if out < self.probes {
            at = at.min(self.probe_at);
        }
        if let Some(s) = self.out.iter().map(|&(_, s)| s + self.settle).min() {
            at = at.min(s);
        }
        Gate::Wait(at.max(now + 1))
    }

    /// What to tell request `request`, which [`PoolPace::gate`] told to wait until `at`: to
    /// come back then if no other request will (it wakes the queue), else to wait its turn.
    pub(super) fn wait(&mut self, request: u64, at: Nanos) -> Option<Nanos> {
        match self.waker {
            Some((r, _)) if r != request => None,
            _ => {
                self.waker = Some((request, at));
                Some(at)
            }
        }
    }

    /// Whether one of its sends of the last minute the model admitted (or may) went within
    /// `slack` of `t`.
    pub(super) fn sent_near(&self, t: Nanos, slack: Nanos) -> bool {
        let i = self.sends.partition_point(|&(s, _)| s + slack < t);
        self.sends.get(i).is_some_and(|&(s, _)| s <= t + slack)
    }

    /// Request `request` is sent at `at` (`probe`: as the gate said).
    pub(super) fn sent(&mut self, request: u64, at: Nanos, probe: bool) {
        // Sends are mostly decided in time order: at the end without a search (a binary
        // search of a minute of sends grew with the send rate, i.e. with the keys).
        if self.sends.back().is_none_or(|&(s, _)| s <= at) {
            self.sends.push_back((at, request));
        } else {
            let i = self.sends.partition_point(|&(s, _)| s <= at);
            self.sends.insert(i, (at, request));
        }
        if probe && self.cap.is_some() {
            self.out.push((request, at));
        }
    }

    /// Request `request`, sent at `sent`, took nothing from the model (withdrawn, failed, or
    /// refused on a quota).
    pub(super) fn forget(&mut self, request: u64, sent: Nanos) {
        self.remove(request, sent);
        self.out.retain(|&(r, _)| r != request);
    }

    /// Request `request`, sent at `sent`, completed.
    pub(super) fn admitted(&mut self, now: Nanos, request: u64, sent: Nanos) {
        if let Some(i) = self.out.iter().position(|&(r, _)| r == request) {
            self.out.swap_remove(i);
            self.probe_admitted(now);
        }
        if self.falling.is_some_and(|f| sent > f) {
            self.falling = None;
        }
    }

    /// Request `request`, sent at `sent`, met a 429 without details at `now`.
    pub(super) fn refused(&mut self, now: Nanos, request: u64, sent: Nanos) {
        // The sends the pool counted when it refused this one: those of the minute before it.
        let to = self
            .remove(request, sent)
            .unwrap_or_else(|| self.sends.partition_point(|&(s, _)| s < sent));
        let from = self.sends.partition_point(|&(s, _)| s + MINUTE <= sent);
        let met = to.saturating_sub(from) as u64;
        self.settle = self.settle.max(2 * now.saturating_sub(sent));
        let probe = match self.out.iter().position(|&(r, _)| r == request) {
            Some(i) => {
                self.out.swap_remove(i);
                true
            }
            None => false,
        };
        self.probes = 1;
        match self.cap {
            None => {
                self.cap = Some(met);
                self.before_fall = met;
                self.gap = GAP_MIN;
            }
            Some(cap) if probe => {
                // The room is no larger than it was believed: try again later.
                self.cap = Some(cap.min(met));
                self.before_fall = self.before_fall.min(cap);
                self.gap = (self.gap * 2).min(if cap == 0 { GAP_MAX_SHUT } else { GAP_MAX });
            }
            Some(cap) => {
                // The room fell under what was being used: to what it met, and by half more
                // while refusals follow each other.
                if self.falling.is_some() {
                    self.cap = Some(cap.min(met) / 2);
                    self.gap = (self.gap * 2).min(GAP_MAX_SHUT);
                } else {
                    self.before_fall = cap;
                    self.cap = Some(cap.min(met));
                    self.gap = GAP_MIN;
                }
            }
        }
        self.falling = Some(self.falling.map_or(sent, |f| f.max(sent)));
        self.probe_at = now + self.gap;
    }

    /// Drops the sends that left the minute.
    fn expire(&mut self, now: Nanos) {
        while self.sends.front().is_some_and(|&(s, _)| s + MINUTE <= now) {
            self.sends.pop_front();
        }
    }

    /// Takes the probes out without a 429 for `settle` as admitted.
    fn settle_probes(&mut self, now: Nanos) {
        let mut i = 0;
        while i < self.out.len() {
            if self.out[i].1 + self.settle <= now {
                self.out.swap_remove(i);
                self.probe_admitted(now);
            } else {
                i += 1;
            }
        }
        if let (Some(f), Some(&(last, _))) = (self.falling, self.sends.back()) {
            // A send after the latest refusal went through: the fall is over.
            if last > f && last + self.settle <= now {
                self.falling = None;
            }
        }
    }

    /// A probe was admitted: one more a minute, and the next probe at once (more at once while
    /// under the level before the latest fall).
    fn probe_admitted(&mut self, now: Nanos) {
        let cap = self.cap.map_or(0, |c| c + 1);
        self.cap = Some(cap);
        self.gap = GAP_MIN;
        self.probe_at = now;
        self.probes = if cap < self.before_fall {
            (self.probes + 1).min(self.before_fall - cap)
        } else {
            1
        };
    }

    /// Removes request `request`'s send at `sent`; returns where it was.
    fn remove(&mut self, request: u64, sent: Nanos) -> Option<usize> {
        let i = self.sends.partition_point(|&(s, _)| s < sent);
        let j = (i..self.sends.len())
            .take_while(|&j| self.sends[j].0 == sent)
            .find(|&j| self.sends[j].1 == request)?;
        self.sends.remove(j);
        Some(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` requests from `first` at `at`, each as the gate allows; returns how many went.
    fn fill(p: &mut PoolPace, first: u64, n: u64, at: Nanos) -> u64 {
        let mut went = 0;
        for r in first..first + n {
            if let Gate::Go { probe } = p.gate(at, r) {
                p.sent(r, at, probe);
                went += 1;
            }
        }
        went
    }

    #[test]
    fn paces_by_what_the_pool_refused_and_probes_one_at_a_time() {
        let mut p = PoolPace::default();
        assert_eq!(fill(&mut p, 0, 5, 0), 5, "unpaced before any 429");
        // The sixth is refused: five fit in a minute.
        assert_eq!(p.gate(SECOND, 5), Gate::Go { probe: false });
        p.sent(5, SECOND, false);
        p.refused(SECOND, 5, SECOND);
        assert_eq!(p.cap(), Some(5));
        // Full: wait for the probe gap (1 s) at most.
        assert_eq!(p.gate(SECOND, 6), Gate::Wait(2 * SECOND));
        assert_eq!(p.wait(6, 2 * SECOND), Some(2 * SECOND), "the first waits for the room");
        assert_eq!(p.wait(7, 2 * SECOND), None, "the others behind it");
        // One probe at 2 s, refused: the next not before 2 s later.
        assert_eq!(p.gate(2 * SECOND, 6), Gate::Go { probe: true });
        p.sent(6, 2 * SECOND, true);
        assert_eq!(p.gate(2 * SECOND, 7), Gate::Wait(2 * SECOND + SETTLE_MIN));
        p.refused(2 * SECOND, 6, 2 * SECOND);
        assert_eq!(p.gate(2 * SECOND, 7), Gate::Wait(4 * SECOND));
        // At 60 s the five leave the minute: five go, and one probe; the seventh waits.
        assert_eq!(fill(&mut p, 10, 7, MINUTE), 6);
        assert_eq!(p.cap(), Some(5));
    }

    #[test]
    fn a_burst_halves_the_room_and_it_comes_back_fast() {
        let mut p = PoolPace::default();
        // 21 sends at 0 s; the 21st refused: 20 a minute.
        assert_eq!(fill(&mut p, 0, 21, 0), 21);
        p.refused(0, 20, 0);
        assert_eq!(p.cap(), Some(20));
        // A probe at 1 s, admitted: 21.
        assert_eq!(p.gate(SECOND, 100), Gate::Go { probe: true });
        p.sent(100, SECOND, true);
        p.admitted(3 * SECOND, 100, SECOND);
        assert_eq!(p.cap(), Some(21));
        // A burst: at 60 s the 20 sent at 0 left; a send under the cap is refused, meeting one.
        let t = MINUTE;
        assert_eq!(p.gate(t, 101), Gate::Go { probe: false });
        p.sent(101, t, false);
        p.refused(t, 101, t);
        assert_eq!(p.cap(), Some(1), "to the one it met");
        // The next, under the cap once the probe left the minute, refused too: halved.
        let t = MINUTE + SECOND;
        assert_eq!(p.gate(t, 102), Gate::Go { probe: false });
        p.sent(102, t, false);
        p.refused(t, 102, t);
        assert_eq!(p.cap(), Some(0), "halved: refusals in a row");
        // Shut: one probe 2 s later, not before.
        assert_eq!(p.gate(t, 103), Gate::Wait(t + 2 * SECOND));
        // The burst is over: from then on, probes ramp back to 21 in a few rounds.
        let mut now = t + 2 * SECOND;
        for round in 0..8 {
            fill(&mut p, 1_000 * (round + 1), 30, now);
            now += SETTLE_MIN;
        }
        assert!(p.cap().unwrap() >= 21, "{:?}", p.cap());
    }
}
