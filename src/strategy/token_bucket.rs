//! `token_bucket`: the OpenAI cookbook's `examples/api_request_parallel_processor.py`
//! (openai/openai-cookbook, read at commit 04a3090), the client-side limiter most
//! hand-written batch jobs copy, pointed unmodified at Gemini's OpenAI-compatible endpoint.
//!
//! Modelled, as the script does it: one key; a requests bucket and a tokens bucket per model,
//! each of capacity = the limit it is told (RPM, TPM), starting full and refilled continuously
//! at that rate per minute; a request is charged up front (its input tokens plus the output it
//! asks for: the script's estimate is prompt tokens + `n × max_tokens`); requests leave
//! strictly in order (the next request waits until both buckets hold enough); a request
//! bigger than a bucket never leaves (the script would wait forever): it is reported
//! unservable.
//!
//! What it does with Gemini's errors, read from the source: an answer counts as an error only
//! if its JSON object has an `error` member (`"error" in response`), and the 15 s pause after
//! a rate limit only when `error.code == '429'`, a string. Gemini's OpenAI-compatible endpoint
//! wraps every error in a list (`[{"error": {"code": 429, ...}}]`, facts gemini-2026-12), so
//! the script saves the 429 (or 503, or 400) as the request's result: no retry, no pause. The
//! simulation counts such a request as failed, and the default retry policy is `none`. (With
//! an unwrapped body, as serve's `openai_errors = "object"`, the code is the number 429, not
//! the string: it would retry up to 5 attempts, still without the pause; set
//! `retry = { policy = "immediate", max_attempts = 5 }` for that.)

use super::kind::{KindDef, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::time::{Nanos, MINUTE};

/// `token_bucket` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "token_bucket",
    help: "the OpenAI cookbook's parallel processor: RPM and TPM buckets refilled continuously, FIFO; Gemini's list-wrapped errors are saved as results (no retry, no pause)",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    // It takes Gemini's list-wrapped error for a result: nothing is retried. REST only.
    retry: RetryPolicy::None,
    live: false,
    rest: true,
    build: |env, _| Box::new(TokenBucket::new(&env)),
};

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
}

/// The cookbook's parallel processor.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Requests and tokens buckets per model (`None`: no limit told).
    buckets: Vec<(Option<Bucket>, Option<Bucket>)>,
    /// The latest planned dispatch: FIFO, nothing overtakes.
    last: Nanos,
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
        TokenBucket { buckets, last: 0 }
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
        let mut t = now.max(self.last);
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

    /// Nothing: the script's pause never fires on a Gemini error (see the module's header).
    fn on_outcome(&mut self, _: Nanos, _: &Ask, _: usize, _: usize, _: Nanos, _: &Outcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::{Dims, Limits};
    use crate::core::time::SECOND;
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

    /// Its pause fires only on `error.code == '429'` (a string) in an unwrapped body; Gemini's
    /// 429 is list-wrapped with the number 429, so a 429 — unservable or not — changes nothing:
    /// the next dispatch is when the buckets allow (before: 15 s later).
    #[test]
    fn a_gemini_429_pauses_nothing() {
        let mut s = TokenBucket::new(&env(&[0], None));
        assert_eq!(at(s.decide(0, &ask(1))), 0);
        let rl = Outcome::RateLimited {
            violated: Dims::EMPTY,
            retry_delay: Some(SECOND),
            quota: Limits::default(),
            quota_model: None,
        };
        s.on_outcome(2 * SECOND, &ask(1), 0, 0, 0, &rl);
        assert_eq!(at(s.decide(3 * SECOND, &ask(1))), 3 * SECOND);
        s.on_outcome(4 * SECOND, &ask(1), 0, 0, 0, &Outcome::UNSERVABLE_UNSTATED);
        assert_eq!(at(s.decide(5 * SECOND, &ask(1))), 5 * SECOND);
        assert!(s.confirm(5 * SECOND, &ask(1), 0, 0));
        assert_eq!(KIND.retry, RetryPolicy::None, "the error is saved as the result");
    }
}
