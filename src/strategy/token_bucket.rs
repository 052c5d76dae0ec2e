//! `token_bucket`: the OpenAI cookbook's `api_request_parallel_processor.py`, the client-side
//! limiter most hand-written batch jobs copy. One key; a requests bucket and a tokens bucket
//! per model, each of capacity = the limit it is told (RPM, TPM) and refilled continuously at
//! that rate per minute; a request is charged up front (its input tokens plus the output it
//! asks for, as the cookbook's estimate does); requests leave strictly in arrival order (FIFO);
//! after any 429, no request is dispatched for 15 s. A failed request is retried at once
//! (5 attempts in all), behind the pause. A request bigger than a bucket never leaves (the
//! cookbook would wait forever): it is reported unservable.

use super::kind::{KindDef, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::time::{Nanos, MINUTE, SECOND};

/// `token_bucket` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "token_bucket",
    help: "the OpenAI cookbook's parallel processor: RPM and TPM buckets, FIFO, every dispatch paused 15 s after a 429",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    // The cookbook re-queues a failed request at once, 5 attempts in all; it speaks REST only.
    retry: RetryPolicy::Immediate { max_attempts: 5 },
    live: false,
    build: |env, _| Box::new(TokenBucket::new(&env)),
};

/// The cookbook's `seconds_to_pause_after_rate_limit_error`.
pub const PAUSE: Nanos = 15 * SECOND;

/// A continuously refilled bucket as debt: `debt` is (capacity − level) × 60 s, in
/// amount·ns, at `at` (exact integer arithmetic, like the ledger's bucket windows).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: u64,
    debt: u128,
    at: Nanos,
}

impl Bucket {
    fn settle(&mut self, now: Nanos) {
        if now > self.at {
            self.debt = self.debt.saturating_sub(self.limit as u128 * (now - self.at) as u128);
            self.at = now;
        }
    }

    /// Earliest instant `>= t` at which `amount` fits (`t` not before the last charge).
    fn earliest(&mut self, t: Nanos, amount: u64) -> Nanos {
        self.settle(t);
        let need = self.debt + amount as u128 * MINUTE as u128;
        let cap = self.limit as u128 * MINUTE as u128;
        if need <= cap {
            t
        } else {
            t + (need - cap).div_ceil(self.limit as u128) as Nanos
        }
    }

    fn charge(&mut self, t: Nanos, amount: u64) {
        self.settle(t);
        self.debt += amount as u128 * MINUTE as u128;
    }

    fn refund(&mut self, amount: u64) {
        self.debt = self.debt.saturating_sub(amount as u128 * MINUTE as u128);
    }
}

/// The cookbook's parallel processor.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Requests and tokens buckets per model (`None`: no limit told).
    buckets: Vec<(Option<Bucket>, Option<Bucket>)>,
    /// The latest planned dispatch: FIFO, nothing overtakes.
    last: Nanos,
    /// No dispatch before this (15 s after the latest 429).
    paused_until: Nanos,
}

impl TokenBucket {
    /// The processor on the first key of `env`, told that key's project's limits.
    pub fn new(env: &Env) -> Self {
        let project = env.key_project.first().copied().unwrap_or(0);
        let bucket = |l: Option<u64>| l.map(|limit| Bucket { limit, debt: 0, at: 0 });
        let buckets = (0..env.models)
            .map(|m| {
                let l = env.limits[project * env.models + m];
                (bucket(l.rpm), bucket(l.tpm))
            })
            .collect();
        TokenBucket {
            buckets,
            last: 0,
            paused_until: 0,
        }
    }

    fn estimate(ask: &Ask) -> u64 {
        ask.input_tokens + ask.output_tokens
    }
}

impl Strategy for TokenBucket {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        let tokens = Self::estimate(ask);
        let (rb, tb) = &mut self.buckets[ask.model];
        if rb.is_some_and(|b| b.limit == 0) || tb.is_some_and(|b| b.limit < tokens) {
            return Decision::GiveUp(GiveUp::Unservable);
        }
        let mut t = now.max(self.last).max(self.paused_until);
        if let Some(b) = rb {
            t = b.earliest(t, 1);
        }
        if let Some(b) = tb {
            t = b.earliest(t, tokens);
        }
        if let Some(b) = rb {
            b.charge(t, 1);
        }
        if let Some(b) = tb {
            b.charge(t, tokens);
        }
        self.last = t;
        Decision::Send {
            key: 0,
            model: ask.model,
            at: t,
        }
    }

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, now: Nanos, _: &Ask, _: usize, _: usize, _: Nanos, outcome: &Outcome) {
        // Any 429 (the cookbook cannot tell one that no retry cures).
        if matches!(outcome, Outcome::RateLimited { .. } | Outcome::Unservable) {
            self.paused_until = self.paused_until.max(now + PAUSE);
        }
    }

    /// A dispatch that falls inside a pause begun after it was planned waits for the pause
    /// to end: its charge is refunded and it is planned again.
    fn confirm(&mut self, now: Nanos, ask: &Ask, _: usize, model: usize) -> bool {
        if now >= self.paused_until {
            return true;
        }
        let (rb, tb) = &mut self.buckets[model];
        if let Some(b) = rb {
            b.refund(1);
        }
        if let Some(b) = tb {
            b.refund(Self::estimate(ask));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::{Dims, Limits};
    use crate::strategy::tests::env;

    fn ask(tokens: u64) -> Ask {
        Ask {
            request: 0,
            input_tokens: tokens,
            output_tokens: 0,
            model: 0,
            attempts: 0,
        }
    }

    fn at(d: Decision) -> Nanos {
        match d {
            Decision::Send { key: 0, at, .. } => at,
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn buckets_refill_continuously_and_dispatch_in_order() {
        let limits = Limits {
            rpm: Some(60),
            tpm: Some(600),
            ..Limits::default()
        };
        let mut s = TokenBucket::new(&env(&[0, 1], Some(limits)));
        // A full tokens bucket lets 600 through at once; the next 300 wait for 300 tokens of
        // refill at 10 per second: 30 s.
        assert_eq!(at(s.decide(0, &ask(600))), 0);
        assert_eq!(at(s.decide(0, &ask(300))), 30 * SECOND);
        // FIFO: a small request behind it does not overtake, and needs 10 more tokens: 1 s.
        assert_eq!(at(s.decide(SECOND, &ask(10))), 31 * SECOND);
        assert_eq!(s.decide(SECOND, &ask(601)), Decision::GiveUp(GiveUp::Unservable));
    }

    #[test]
    fn any_429_pauses_every_dispatch_for_15_seconds() {
        let mut s = TokenBucket::new(&env(&[0], None));
        assert_eq!(at(s.decide(0, &ask(1))), 0);
        assert_eq!(at(s.decide(0, &ask(1))), 0);
        let rl = Outcome::RateLimited {
            violated: Dims::EMPTY,
            retry_delay: Some(SECOND),
            quota: Limits::default(),
        };
        s.on_outcome(2 * SECOND, &ask(1), 0, 0, 0, &rl);
        // Whatever RetryInfo says, nothing leaves before 17 s.
        assert_eq!(at(s.decide(3 * SECOND, &ask(1))), 17 * SECOND);
        // A dispatch planned before the 429 but due inside the pause is withdrawn.
        assert!(!s.confirm(5 * SECOND, &ask(1), 0, 0));
        assert!(s.confirm(17 * SECOND, &ask(1), 0, 0));
    }

    /// Issue 33, item 7: the cookbook pauses after any 429, one no retry cures included (it
    /// cannot tell them apart).
    #[test]
    fn an_unservable_429_pauses_like_any_429() {
        let mut s = TokenBucket::new(&env(&[0], None));
        assert_eq!(at(s.decide(0, &ask(1))), 0);
        s.on_outcome(2 * SECOND, &ask(1), 0, 0, 0, &Outcome::Unservable);
        assert_eq!(at(s.decide(3 * SECOND, &ask(1))), 17 * SECOND);
    }
}
