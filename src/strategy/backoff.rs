//! `backoff`: one key and the client's retry policy, nothing else — what most scripts do with
//! the google-genai SDK (3.4.0). By default its retry policy is the SDK's `HttpRetryOptions()`
//! ([`super::retry::SDK`], `preset = "sdk"`): 5 attempts, 1 s doubling to 60 s plus up to 1 s
//! of jitter, on 408, 429 and 5xx, never reading RetryInfo; any other `retry` table (e.g.
//! full or equal jitter) makes it the textbook exponential backoff.

use super::kind::{KindDef, Param, Params};
use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::time::Nanos;

/// `backoff` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "backoff",
    help: "one key, and the retry policy: google-genai 3.4.0's HttpRetryOptions() (preset \"sdk\")",
    takes: &[Param::Preset],
    requires: &[],
    defaults: Params::NONE,
    retry: super::retry::SDK,
    live: true,
    rest: true,
    build: |env, _| Box::new(Backoff::new(&env)),
};

/// Every request on the first key; a 400 API_KEY_INVALID stops it (the SDK does not retry 400).
#[derive(Debug, Clone)]
pub struct Backoff {
    dead: bool,
}

impl Backoff {
    /// One key of `env`: its first.
    pub fn new(_env: &Env) -> Self {
        Backoff { dead: false }
    }
}

impl Strategy for Backoff {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        if self.dead {
            return Decision::GiveUp(GiveUp::Exhausted);
        }
        Decision::Send {
            key: 0,
            model: ask.model,
            at: now,
        }
    }

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, _: Nanos, _: &Ask, _: usize, _: usize, _: Nanos, outcome: &Outcome) {
        self.dead |= matches!(outcome, Outcome::InvalidKey);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::env;

    #[test]
    fn one_key_at_once_until_it_proves_invalid() {
        let mut s = Backoff::new(&env(&[0, 1], None));
        let ask = crate::strategy::tests::ask(0, 1);
        for t in [0, 5, 9] {
            assert_eq!(
                s.decide(t, &ask),
                Decision::Send {
                    key: 0,
                    model: 0,
                    at: t
                }
            );
        }
        s.on_outcome(9, &ask, 0, 0, 9, &Outcome::InvalidKey);
        assert_eq!(s.decide(10, &ask), Decision::GiveUp(GiveUp::Exhausted));
    }
}
