//! `gemini_balance`: the key manager of gemini-balance (snailyp/gemini-balance,
//! `app/service/key/key_manager.py`), the proxy many Chinese-speaking users run. It sticks to
//! the current key while it succeeds; any failure (429, 5xx, invalid key) counts against that
//! key and moves on to the next key in the cycle whose count is under 3 (MAX_FAILURES); when
//! every key has 3, it uses the next one anyway. Counts are reset by the hourly check of failed
//! keys (here every hour from the start; the check's own verification request is not modelled).
//! Retries go at once to the next working key (MAX_RETRIES 3).

use super::kind::{KindDef, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, Outcome, Strategy};
use crate::core::time::{Nanos, HOUR};

/// `gemini_balance` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "gemini_balance",
    help: "gemini-balance: sticky key, next key on any failure, a key with 3 failures skipped until the hourly check",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    // MAX_RETRIES 3: four attempts in all, each on the next working key; its routes are REST only.
    retry: RetryPolicy::Immediate { max_attempts: 4 },
    live: false,
    build: |env, _| Box::new(GeminiBalance::new(&env)),
};

/// gemini-balance's MAX_FAILURES.
pub const MAX_FAILURES: u32 = 3;

/// gemini-balance's key manager.
#[derive(Debug, Clone)]
pub struct GeminiBalance {
    failures: Vec<u32>,
    /// The key `cycle` hands out next.
    cycle: usize,
    current: Option<usize>,
    next_check: Nanos,
}

impl GeminiBalance {
    /// The key manager over the keys of `env`.
    pub fn new(env: &Env) -> Self {
        GeminiBalance {
            failures: vec![0; env.key_project.len()],
            cycle: 0,
            current: None,
            next_check: HOUR,
        }
    }

    fn next_key(&mut self) -> usize {
        let k = self.cycle;
        self.cycle = (self.cycle + 1) % self.failures.len();
        k
    }

    /// `get_next_working_key`.
    fn working_key(&mut self) -> usize {
        if let Some(k) = self.current.filter(|&k| self.failures[k] < MAX_FAILURES) {
            return k;
        }
        let first = self.next_key();
        let mut k = first;
        loop {
            if self.failures[k] < MAX_FAILURES {
                break;
            }
            k = self.next_key();
            if k == first {
                break;
            }
        }
        self.current = Some(k);
        k
    }
}

impl Strategy for GeminiBalance {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        while now >= self.next_check {
            self.failures.iter_mut().for_each(|f| *f = 0);
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
        if matches!(outcome, Outcome::Ok) {
            return;
        }
        self.failures[key] += 1;
        if self.current == Some(key) {
            self.current = None;
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

    #[test]
    fn sticks_to_a_key_moves_on_failure_and_drops_it_after_three() {
        let ask = crate::strategy::tests::ask(0, 1);
        let mut s = GeminiBalance::new(&env(&[0, 1, 2], None));
        let step = |s: &mut GeminiBalance, now, outcome: Outcome| {
            let k = key(s.decide(now, &ask));
            s.on_outcome(now, &ask, k, 0, now, &outcome);
            k
        };
        assert_eq!(step(&mut s, 0, Outcome::Ok), 0);
        assert_eq!(step(&mut s, 1, Outcome::Ok), 0, "sticky while it succeeds");
        assert_eq!(step(&mut s, 2, Outcome::Unavailable), 0);
        // Every failure moves on; a key with 3 failures is skipped.
        let keys: Vec<usize> = (0..8).map(|_| step(&mut s, 3, Outcome::Unavailable)).collect();
        assert_eq!(keys, [1, 2, 0, 1, 2, 0, 1, 2]);
        // Key 1 has 3 failures now, key 2 three, key 0 three: all spent, the cycle goes on.
        assert_eq!(step(&mut s, 4, Outcome::Ok), 0);
        // The hourly check forgives everyone.
        assert!(s.failures.iter().all(|&f| f >= MAX_FAILURES));
        s.decide(HOUR, &ask);
        assert!(s.failures.iter().all(|&f| f == 0));
    }
}
