//! The proxy's last check before a send: what it has itself sent to each (project, model),
//! timed by when each send can at the latest have reached the upstream, so that no 60 s
//! window of arrivals there holds more than the limits — whatever the strategy planned and
//! however late a send left (a slow upload, a late timer, a new connection).
//!
//! A send reaches the upstream no later than its answer's head comes back (or the send fails):
//! so each send counts from its start until 60 s after that, exactly, whatever the network
//! and the upstream's buffers. (A body's leaving the proxy bounds nothing: kernel and
//! upstream buffers can hold it for seconds.) The price: a key's next window starts its
//! answer's latency later — the time to first byte for a stream, the whole generation for a
//! plain generateContent. Per-minute requests and tokens only: days are the strategy's.

use std::collections::{BTreeMap, HashMap};

use crate::core::ledger::Limits;
use crate::core::time::{Nanos, MINUTE};

/// What a send counts for: the requests (a batch of embeddings may count one per text) and
/// its tokens.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    requests: u64,
    tokens: u64,
}

/// The sends of one budget: those whose answer's head has not come back (they count until a
/// minute after it does), those whose has, by when they leave the window (a minute after
/// their head: the latest they can have reached the upstream, plus the window), and the sums
/// of both, kept as sends come and go so that a check costs O(log n), not a pass over a
/// minute of sends.
#[derive(Debug, Default)]
struct Budget {
    unanswered: HashMap<u64, Cost>,
    /// (leaves the window at, id) → cost.
    answered: BTreeMap<(Nanos, u64), Cost>,
    requests: u64,
    tokens: u64,
}

impl Budget {
    fn add(&mut self, c: Cost) {
        self.requests += c.requests;
        self.tokens += c.tokens;
    }

    fn remove(&mut self, c: Cost) {
        self.requests -= c.requests;
        self.tokens -= c.tokens;
    }
}

/// The sends of every budget (`project * models + model`).
#[derive(Debug)]
pub struct Gate {
    budgets: Vec<Budget>,
    next: u64,
}

/// What the gate says of a send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded as sent: its id.
    Go(u64),
    /// Not before this instant (or an earlier change: an answer's head coming back).
    Wait(Option<Nanos>),
    /// Never: it alone exceeds a per-minute limit.
    Never,
}

impl Gate {
    /// A gate of `budgets` budgets.
    pub fn new(budgets: usize) -> Self {
        Gate {
            budgets: (0..budgets).map(|_| Budget::default()).collect(),
            next: 0,
        }
    }

    /// Records a send counting `requests` requests of `tokens` tokens in all on `budget` (with
    /// `limits`) at `now` if it fits.
    pub fn admit(&mut self, now: Nanos, budget: usize, limits: &Limits, requests: u64, tokens: u64) -> Verdict {
        if limits.tpm.is_some_and(|t| tokens > t) || limits.rpm.is_some_and(|r| requests > r) || limits.rpm == Some(0) {
            return Verdict::Never;
        }
        let b = &mut self.budgets[budget];
        // Forget what has left every window.
        while let Some(entry) = b.answered.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let c = entry.remove();
            b.remove(c);
        }
        let fits =
            limits.rpm.is_none_or(|r| b.requests + requests <= r) && limits.tpm.is_none_or(|t| b.tokens + tokens <= t);
        if fits {
            let id = self.next;
            self.next += 1;
            let c = Cost { requests, tokens };
            b.unanswered.insert(id, c);
            b.add(c);
            return Verdict::Go(id);
        }
        // The earliest known expiry that could make room; unknown ones wake the waiter when
        // they become known.
        Verdict::Wait(b.answered.first_key_value().map(|(k, _)| k.0))
    }

    /// Send `id` on `budget` got its answer's head (or failed) at `now` (the first time
    /// counts).
    pub fn answered(&mut self, budget: usize, id: u64, now: Nanos) {
        let b = &mut self.budgets[budget];
        if let Some(c) = b.unanswered.remove(&id) {
            b.answered.insert((now.saturating_add(MINUTE), id), c);
        }
    }

    /// Send `id` on `budget` was refused by the upstream (a 429): its tokens count no more (no
    /// server counts a refused request's tokens), and its request only where the upstream
    /// counts refusals against RPM (`counted`, the scenario's `server.count_rejected`). Each
    /// refusal of a burst sent before the first 429 came back held a request of the minute:
    /// 5 of 10 on a 3-slot project, and the calls after waited for the next minute.
    pub fn refused(&mut self, budget: usize, id: u64, counted: bool) {
        if !counted {
            return self.withdraw(budget, id);
        }
        let b = &mut self.budgets[budget];
        let cost = match b.unanswered.get_mut(&id) {
            Some(c) => Some(c),
            None => b.answered.iter_mut().find(|(k, _)| k.1 == id).map(|(_, c)| c),
        };
        if let Some(c) = cost {
            b.tokens -= std::mem::take(&mut c.tokens);
        }
    }

    /// Send `id` on `budget` never left (refused before it was sent): forgotten.
    pub fn withdraw(&mut self, budget: usize, id: u64) {
        let b = &mut self.budgets[budget];
        let c = match b.unanswered.remove(&id) {
            Some(c) => Some(c),
            None => {
                let key = b.answered.keys().find(|k| k.1 == id).copied();
                key.and_then(|k| b.answered.remove(&k))
            }
        };
        if let Some(c) = c {
            b.remove(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{MILLISECOND, SECOND};

    fn limits(rpm: u64, tpm: u64) -> Limits {
        Limits {
            rpm: Some(rpm),
            tpm: Some(tpm),
            ..Limits::default()
        }
    }

    #[test]
    fn a_send_counts_until_a_minute_after_it_can_have_landed() {
        let mut g = Gate::new(1);
        let l = limits(2, 1_000);
        let Verdict::Go(a) = g.admit(0, 0, &l, 1, 10) else {
            panic!()
        };
        let Verdict::Go(b) = g.admit(0, 0, &l, 1, 10) else {
            panic!()
        };
        // Neither answered yet: no known expiry.
        assert_eq!(g.admit(0, 0, &l, 1, 10), Verdict::Wait(None));
        // a was a slow upload: its head came at 4 s; b's at 100 ms.
        g.answered(0, a, 4 * SECOND);
        g.answered(0, b, 100 * MILLISECOND);
        assert_eq!(
            g.admit(60 * SECOND, 0, &l, 1, 10),
            Verdict::Wait(Some(60 * SECOND + 100 * MILLISECOND))
        );
        assert_eq!(g.admit(60 * SECOND + 100 * MILLISECOND, 0, &l, 1, 10), Verdict::Go(2));
        // The third took b's place; a holds until 64 s.
        assert_eq!(g.admit(61 * SECOND, 0, &l, 1, 10), Verdict::Wait(Some(64 * SECOND)));
        assert!(matches!(g.admit(64 * SECOND, 0, &l, 1, 10), Verdict::Go(_)));
    }

    #[test]
    fn tokens_count_too_and_too_large_is_never() {
        let mut g = Gate::new(2);
        let l = limits(100, 1_000);
        assert_eq!(g.admit(0, 0, &l, 1, 1_001), Verdict::Never);
        let Verdict::Go(a) = g.admit(0, 0, &l, 1, 600) else {
            panic!()
        };
        assert_eq!(g.admit(0, 0, &l, 1, 600), Verdict::Wait(None));
        // Another budget is another window.
        assert!(matches!(g.admit(0, 1, &l, 1, 600), Verdict::Go(_)));
        g.withdraw(0, a);
        assert!(matches!(g.admit(0, 0, &l, 1, 600), Verdict::Go(_)));
    }

    /// A send the upstream refused gives back its tokens, and its request unless refusals
    /// count.
    #[test]
    fn a_refused_send_gives_its_room_back() {
        let mut g = Gate::new(1);
        let l = limits(2, 1_000);
        let Verdict::Go(a) = g.admit(0, 0, &l, 1, 600) else {
            panic!()
        };
        g.answered(0, a, SECOND);
        assert_eq!(g.admit(SECOND, 0, &l, 1, 600), Verdict::Wait(Some(61 * SECOND)));
        // Counted: its request stays, its tokens go.
        g.refused(0, a, true);
        let Verdict::Go(b) = g.admit(SECOND, 0, &l, 1, 600) else {
            panic!()
        };
        assert_eq!(g.admit(SECOND, 0, &l, 1, 1), Verdict::Wait(Some(61 * SECOND)));
        // Not counted: it goes whole.
        g.refused(0, b, false);
        g.refused(0, a, false);
        assert!(matches!(g.admit(SECOND, 0, &l, 2, 1_000), Verdict::Go(_)));
    }

    /// A send counting several requests (a batch of embeddings, one per text) takes that many
    /// of the RPM limit at once; more than the limit never fits.
    #[test]
    fn a_batch_counts_each_of_its_requests() {
        let mut g = Gate::new(1);
        let l = limits(5, 1_000);
        assert_eq!(g.admit(0, 0, &l, 6, 10), Verdict::Never);
        let Verdict::Go(a) = g.admit(0, 0, &l, 3, 10) else {
            panic!()
        };
        assert_eq!(g.admit(0, 0, &l, 3, 10), Verdict::Wait(None));
        assert!(matches!(g.admit(0, 0, &l, 2, 10), Verdict::Go(_)));
        g.answered(0, a, SECOND);
        assert_eq!(g.admit(2 * SECOND, 0, &l, 1, 10), Verdict::Wait(Some(61 * SECOND)));
        assert!(matches!(g.admit(61 * SECOND, 0, &l, 3, 10), Verdict::Go(_)));
    }
}
