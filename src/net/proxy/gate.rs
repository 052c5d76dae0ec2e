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

use std::collections::VecDeque;

use crate::core::ledger::Limits;
use crate::core::time::{Nanos, MINUTE};

/// One send: its tokens, and when its answer's head came back (or the send failed): the
/// latest it can have reached the upstream.
#[derive(Debug, Clone, Copy)]
struct Send {
    id: u64,
    tokens: u64,
    head: Option<Nanos>,
}

/// The sends of every budget (`project * models + model`).
#[derive(Debug)]
pub struct Gate {
    budgets: Vec<VecDeque<Send>>,
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
            budgets: vec![VecDeque::new(); budgets],
            next: 0,
        }
    }

    /// Records a send of `tokens` on `budget` (with `limits`) at `now` if it fits.
    pub fn admit(&mut self, now: Nanos, budget: usize, limits: &Limits, tokens: u64) -> Verdict {
        if limits.tpm.is_some_and(|t| tokens > t) || limits.rpm == Some(0) {
            return Verdict::Never;
        }
        let sends = &mut self.budgets[budget];
        // Forget what has left every window.
        sends.retain(|s| s.head.is_none_or(|l| l.saturating_add(MINUTE) > now));
        let count = sends.len() as u64;
        let used: u64 = sends.iter().map(|s| s.tokens).sum();
        let fits = limits.rpm.is_none_or(|r| count < r) && limits.tpm.is_none_or(|t| used + tokens <= t);
        if fits {
            let id = self.next;
            self.next += 1;
            sends.push_back(Send { id, tokens, head: None });
            return Verdict::Go(id);
        }
        // The earliest known expiry that could make room; unknown ones wake the waiter when
        // they become known.
        let expiry = sends
            .iter()
            .filter_map(|s| s.head)
            .map(|l| l.saturating_add(MINUTE))
            .min();
        Verdict::Wait(expiry)
    }

    /// Send `id` on `budget` got its answer's head (or failed) at `now`.
    pub fn answered(&mut self, budget: usize, id: u64, now: Nanos) {
        if let Some(s) = self.budgets[budget].iter_mut().find(|s| s.id == id) {
            s.head.get_or_insert(now);
        }
    }

    /// Send `id` on `budget` never left (refused before it was sent): forgotten.
    pub fn withdraw(&mut self, budget: usize, id: u64) {
        self.budgets[budget].retain(|s| s.id != id);
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
        let Verdict::Go(a) = g.admit(0, 0, &l, 10) else {
            panic!()
        };
        let Verdict::Go(b) = g.admit(0, 0, &l, 10) else {
            panic!()
        };
        // Neither answered yet: no known expiry.
        assert_eq!(g.admit(0, 0, &l, 10), Verdict::Wait(None));
        // a was a slow upload: its head came at 4 s; b's at 100 ms.
        g.answered(0, a, 4 * SECOND);
        g.answered(0, b, 100 * MILLISECOND);
        assert_eq!(
            g.admit(60 * SECOND, 0, &l, 10),
            Verdict::Wait(Some(60 * SECOND + 100 * MILLISECOND))
        );
        assert_eq!(g.admit(60 * SECOND + 100 * MILLISECOND, 0, &l, 10), Verdict::Go(2));
        // The third took b's place; a holds until 64 s.
        assert_eq!(g.admit(61 * SECOND, 0, &l, 10), Verdict::Wait(Some(64 * SECOND)));
        assert!(matches!(g.admit(64 * SECOND, 0, &l, 10), Verdict::Go(_)));
    }

    #[test]
    fn tokens_count_too_and_too_large_is_never() {
        let mut g = Gate::new(2);
        let l = limits(100, 1_000);
        assert_eq!(g.admit(0, 0, &l, 1_001), Verdict::Never);
        let Verdict::Go(a) = g.admit(0, 0, &l, 600) else {
            panic!()
        };
        assert_eq!(g.admit(0, 0, &l, 600), Verdict::Wait(None));
        // Another budget is another window.
        assert!(matches!(g.admit(0, 1, &l, 600), Verdict::Go(_)));
        g.withdraw(0, a);
        assert!(matches!(g.admit(0, 0, &l, 600), Verdict::Go(_)));
    }
}
