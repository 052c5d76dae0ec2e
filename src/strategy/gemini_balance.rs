//! `gemini_balance`: the key manager of gemini-balance 2.2.8 (snailyp/gemini-balance at
//! 5512f7f, 2025-09-25: `app/service/key/key_manager.py`, `app/handler/retry_handler.py`,
//! `app/scheduler/scheduled_tasks.py`, `app/core/constants.py`), the proxy many
//! Chinese-speaking users run in front of their keys.
//!
//! Modelled, as the source does it:
//! - **Every request takes the next working key** (`get_next_working_key`): the key cycle
//!   (`itertools.cycle` over the keys, in order) advances once per request; a key whose failure
//!   count has reached `max_failures` is skipped (the cycle advances past it too); when every
//!   key has reached it, the key the cycle first gave is used anyway. It is a round robin over
//!   the working keys, not a sticky key.
//! - **Any failure** (a 429, a 5xx, an invalid key: every exception the route's call raises)
//!   adds one to that key's count (`handle_api_failure`); the request is retried at once on the
//!   next working key, `MAX_RETRIES` = 3 attempts in all (`RetryHandler`: `for attempt in
//!   range(MAX_RETRIES)`, and no new key after the third failure), then the client gets the
//!   last error.
//! - **The hourly check** (`check_failed_keys`, every `CHECK_INTERVAL_HOURS` = 1 h from the
//!   start): each key with a failure count above 0 is sent one test request; a key the server
//!   accepts is reset to 0, an invalid key's count grows by one (the server's answer to that
//!   request is [`Env::key_valid`]).
//! - `max_failures` is the setting `MAX_FAILURES` (default 3, `app/config/config.py`; the
//!   shipped `.env.example` sets 10); the attempts are the retry policy (`MAX_RETRIES`).
//!
//! Not modelled: the hourly check's test request itself (it spends one request of
//! `TEST_MODEL` per failed key an hour on the server: not sent in the simulation, and a key
//! still rate-limited at the check is reset all the same); the model-list request the routes
//! make; its escalating 429 cooldown (`cooldown_manager.py` is not used by the key manager);
//! the optional proxies, Vertex Express keys and paid key.

use super::kind::{KindDef, Param, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, Outcome, Strategy};
use crate::core::time::{Nanos, HOUR};

/// `gemini_balance` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "gemini_balance",
    help: "gemini-balance 2.2.8: the next working key per request, a key with max_failures failures skipped until the hourly check; 3 attempts",
    takes: &[Param::MaxFailures],
    requires: &[],
    defaults: Params {
        max_failures: MAX_FAILURES,
        ..Params::NONE
    },
    // MAX_RETRIES 3: three attempts in all, each on the next working key; its routes are REST only.
    retry: RetryPolicy::Immediate { max_attempts: 3 },
    live: false,
    rest: true,
    build: |env, spec| Box::new(GeminiBalance::new(&env, spec.kind.params.max_failures)),
};

/// gemini-balance's default `MAX_FAILURES` (`app/config/config.py`).
pub const MAX_FAILURES: u32 = 3;

/// gemini-balance's key manager.
#[derive(Debug, Clone)]
pub struct GeminiBalance {
    failures: Vec<u32>,
    max_failures: u32,
    /// The key the cycle hands out next.
    cycle: usize,
    /// What the hourly check's test request would be answered: the server accepts the key.
    valid: Vec<bool>,
    next_check: Nanos,
}

impl GeminiBalance {
    /// The key manager over the keys of `env`, skipping a key at `max_failures` failures.
    pub fn new(env: &Env, max_failures: u32) -> Self {
        let keys = env.key_project.len();
        GeminiBalance {
            failures: vec![0; keys],
            max_failures,
            cycle: 0,
            valid: (0..keys)
                .map(|k| env.key_valid.get(k).copied().unwrap_or(true))
                .collect(),
            next_check: HOUR,
        }
    }

    /// `get_next_key`: the cycle's next key.
    fn next_key(&mut self) -> usize {
        let k = self.cycle;
        self.cycle = (self.cycle + 1) % self.failures.len();
        k
    }

    /// `get_next_working_key`.
    fn working_key(&mut self) -> usize {
        let first = self.next_key();
        let mut k = first;
        while self.failures[k] >= self.max_failures {
            k = self.next_key();
            if k == first {
                break;
            }
        }
        k
    }
}

impl Strategy for GeminiBalance {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        while now >= self.next_check {
            // `check_failed_keys`: a test request per key with failures.
            for (f, &valid) in self.failures.iter_mut().zip(&self.valid) {
                if *f > 0 {
                    *f = if valid { 0 } else { *f + 1 };
                }
            }
            self.next_check += HOUR;
        }
        Decision::Send {
            key: self.working_key(),
            model: ask.model,
            at: now,
        }
    }

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, _: Nanos, _: &Ask, key: usize, _: usize, _: Nanos, outcome: &Outcome) {
        if !matches!(outcome, Outcome::Ok) {
            self.failures[key] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::env;

    fn key(d: Decision) -> usize {
        match d {
            Decision::Send { key, .. } => key,
            d => panic!("{d:?}"),
        }
    }

    fn step(s: &mut GeminiBalance, now: Nanos, outcome: Outcome) -> usize {
        let ask = crate::strategy::tests::ask(0, 1);
        let k = key(s.decide(now, &ask));
        s.on_outcome(now, &ask, k, 0, now, &outcome);
        k
    }

    /// `get_next_working_key` advances the cycle on every request, successful or not: a round
    /// robin, not a sticky key (the model before 2.2.8 was re-read kept the key while it
    /// succeeded: 0, 0, 0).
    #[test]
    fn every_request_takes_the_next_key_of_the_cycle() {
        let mut s = GeminiBalance::new(&env(&[0, 1, 2], None), MAX_FAILURES);
        let keys: Vec<usize> = (0..5).map(|t| step(&mut s, t, Outcome::Ok)).collect();
        assert_eq!(keys, [0, 1, 2, 0, 1]);
    }

    /// A key is skipped once it has failed `max_failures` times; with every key there, the
    /// cycle's next key is used anyway; the hourly check resets the keys the server accepts
    /// and counts one more failure for the others.
    #[test]
    fn a_key_at_max_failures_is_skipped_until_the_hourly_check() {
        let mut e = env(&[0, 1, 2], None);
        e.key_valid = vec![true, false, true];
        let mut s = GeminiBalance::new(&e, 2);
        // Key 1 fails twice (two rounds of the cycle): it is skipped from then on.
        for t in 0..6 {
            let outcome = if t % 3 == 1 { Outcome::InvalidKey } else { Outcome::Ok };
            step(&mut s, t, outcome);
        }
        let keys: Vec<usize> = (0..4).map(|t| step(&mut s, 10 + t, Outcome::Ok)).collect();
        assert_eq!(keys, [0, 2, 0, 2]);
        // Every key at its limit: the cycle's next is used anyway.
        s.failures = vec![2, 2, 2];
        let first = s.cycle;
        assert_eq!(step(&mut s, 20, Outcome::Ok), first);
        // The hourly check: keys 0 and 2 reset, invalid key 1 counts one more.
        s.decide(HOUR, &crate::strategy::tests::ask(0, 1));
        assert_eq!(s.failures, [0, 3, 0]);
    }
}
