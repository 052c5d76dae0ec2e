//! `gemini_flux`: a model of gemini-flux 1.1.1 (PyPI; `scheduler.py`, `key_pool.py`,
//! `flux.py`), behaviour checked against `flux-sim serve`.
//!
//! What it models, as the library does it:
//! - one global lock: one request in flight at a time;
//! - key by key: for each live key, the first model of the chain (the request's model, then
//!   the fallbacks) it has not used up today (its own count against the policy's RPD); the
//!   key whose 60 s input-token log has room soonest wins, ties to the first key, so key 1
//!   takes pro, flash, flash-lite until each is spent before key 2 is touched;
//! - the token log is per key (shared by its models), filled with a request's input tokens
//!   when its response arrives; RPM is never looked at; a request bigger than the policy's
//!   TPM waits 60 s and is sent anyway;
//! - any 429 marks that model used up on that key until midnight Pacific, and the next pick
//!   is tried at once; a 400 marks the key invalid; after keys × models attempts it gives up.
//!
//! Not modelled: the start-up countTokens key check and the one policy request (cached for 7
//! days by the library), and the ~50 ms of building a new client per call.

use std::collections::VecDeque;

use super::kind::{KindDef, Param, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::time::{Nanos, MINUTE};

/// `gemini_flux` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "gemini_flux",
    help: "gemini-flux 1.1.1: key by key through the model chain, input TPM per key, one request in flight, a 429 kills the model on that key until midnight",
    takes: &[Param::Fallback],
    requires: &[],
    defaults: Params::NONE,
    // It retries at once and stops after keys × models attempts; it speaks REST only.
    retry: RetryPolicy::Immediate { max_attempts: u32::MAX },
    live: false,
    build: |env, spec| Box::new(GeminiFlux::new(env, spec.fallback.clone())),
};

/// One key as gemini-flux tracks it.
#[derive(Debug, Clone, Default)]
struct KeyState {
    invalid: bool,
    /// Requests counted today per model (a 429 sets it to the model's RPD).
    today: Vec<u64>,
    /// `(completion time, input tokens)` of the last 60 s.
    log: VecDeque<(Nanos, u64)>,
    /// The tokens in `log` (the library sums them each time; the sum is the same).
    used: u64,
}

impl KeyState {
    /// Seconds (here: nanoseconds) until `needed` tokens fit under `tpm`, as
    /// `seconds_until_available` computes it: 60 s when they never will.
    fn wait(&mut self, now: Nanos, needed: u64, tpm: u64) -> Nanos {
        while let Some(&(t, n)) = self.log.front() {
            if t + MINUTE > now {
                break;
            }
            self.log.pop_front();
            self.used -= n;
        }
        let available = tpm.saturating_sub(self.used);
        if available >= needed {
            return 0;
        }
        let extra = needed - available;
        let mut acc = 0;
        for &(t, n) in &self.log {
            acc += n;
            if acc >= extra {
                return (t + MINUTE).saturating_sub(now);
            }
        }
        MINUTE
    }
}

/// gemini-flux's scheduler.
#[derive(Debug, Clone)]
pub struct GeminiFlux {
    env: Env,
    fallback: Vec<usize>,
    keys: Vec<KeyState>,
    busy: bool,
    day_end: Nanos,
}

impl GeminiFlux {
    /// gemini-flux over the keys of `env`, with the model chain `fallback` after each
    /// request's own model; its policy is the limits `env` knows.
    pub fn new(env: Env, fallback: Vec<usize>) -> Self {
        let keys = vec![
            KeyState {
                today: vec![0; env.models],
                ..KeyState::default()
            };
            env.key_project.len()
        ];
        GeminiFlux {
            env,
            fallback,
            keys,
            busy: false,
            day_end: 0,
        }
    }

    fn limits(&self, key: usize, model: usize) -> crate::core::ledger::Limits {
        self.env.limits[self.env.key_project[key] * self.env.models + model]
    }

    fn rpd(&self, key: usize, model: usize) -> u64 {
        self.limits(key, model).rpd.unwrap_or(u64::MAX)
    }

    fn chain(&self, ask: &Ask) -> Vec<usize> {
        let mut chain = vec![ask.model];
        chain.extend(self.fallback.iter().filter(|&&m| m != ask.model));
        chain
    }
}

impl Strategy for GeminiFlux {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        if self.busy {
            return Decision::Defer;
        }
        if now >= self.day_end {
            if self.day_end > 0 {
                for k in &mut self.keys {
                    k.today.iter_mut().for_each(|n| *n = 0);
                }
            }
            self.day_end = self.env.calendar.next_day_start(now);
        }
        let chain = self.chain(ask);
        if ask.attempts as usize >= self.keys.len() * chain.len() {
            return Decision::GiveUp(GiveUp::Exhausted);
        }
        let mut best: Option<(Nanos, usize, usize)> = None;
        for k in 0..self.keys.len() {
            if self.keys[k].invalid {
                continue;
            }
            let Some(&m) = chain.iter().find(|&&m| self.keys[k].today[m] < self.rpd(k, m)) else {
                continue;
            };
            let wait = match self.limits(k, m).tpm {
                Some(tpm) => self.keys[k].wait(now, ask.input_tokens, tpm),
                None => 0,
            };
            if best.is_none_or(|(w, _, _)| wait < w) {
                best = Some((wait, k, m));
            }
        }
        match best {
            Some((wait, key, model)) => {
                self.busy = true;
                Decision::Send {
                    key,
                    model,
                    at: now + wait,
                }
            }
            None => Decision::GiveUp(GiveUp::Exhausted),
        }
    }

    fn on_outcome(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, _: Nanos, outcome: &Outcome) {
        self.busy = false;
        match outcome {
            Outcome::Ok => {
                let k = &mut self.keys[key];
                k.log.push_back((now, ask.input_tokens));
                k.used += ask.input_tokens;
                k.today[model] += 1;
            }
            // "quota", "429" or "exhausted" in the error text: used up for the day.
            Outcome::RateLimited { .. } | Outcome::Unservable => self.keys[key].today[model] = self.rpd(key, model),
            Outcome::InvalidKey => self.keys[key].invalid = true,
            Outcome::Unavailable | Outcome::Error => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::{Dims, Limits};
    use crate::core::time::SECOND;
    use crate::strategy::tests::env;

    fn ask(tokens: u64, attempts: u32) -> Ask {
        Ask {
            request: 0,
            input_tokens: tokens,
            output_tokens: 1,
            model: 0,
            attempts,
        }
    }

    fn send(d: Decision) -> (usize, usize, Nanos) {
        match d {
            Decision::Send { key, model, at } => (key, model, at),
            d => panic!("{d:?}"),
        }
    }

    const RL: Outcome = Outcome::RateLimited {
        violated: Dims::EMPTY,
        retry_delay: Some(SECOND),
        quota: Limits::UNLIMITED,
    };

    /// Two keys, three models (pro, flash, lite) with RPD 2 each and TPM 100.
    fn three_models() -> GeminiFlux {
        let limits = Limits {
            tpm: Some(100),
            rpd: Some(2),
            ..Limits::default()
        };
        let mut e = env(&[0, 1], Some(limits));
        e.models = 3;
        e.limits = vec![limits; 6];
        GeminiFlux::new(e, vec![1, 2])
    }

    #[test]
    fn goes_key_by_key_through_the_model_chain() {
        let mut f = three_models();
        let mut order = Vec::new();
        for i in 0..12 {
            let now = i * SECOND;
            let (k, m, at) = send(f.decide(now, &ask(1, 0)));
            assert_eq!(at, now);
            order.push((k, m));
            assert_eq!(f.decide(now, &ask(1, 0)), Decision::Defer, "one request in flight");
            f.on_outcome(now, &ask(1, 0), k, m, now, &Outcome::Ok);
        }
        // Key 1's pro, flash and lite until each is spent, then key 2's.
        assert_eq!(
            order,
            [
                (0, 0),
                (0, 0),
                (0, 1),
                (0, 1),
                (0, 2),
                (0, 2),
                (1, 0),
                (1, 0),
                (1, 1),
                (1, 1),
                (1, 2),
                (1, 2)
            ]
        );
        assert_eq!(f.decide(13 * SECOND, &ask(1, 0)), Decision::GiveUp(GiveUp::Exhausted));
    }

    #[test]
    fn a_429_kills_the_model_on_that_key_until_midnight_pacific() {
        let mut f = three_models();
        assert_eq!(send(f.decide(0, &ask(1, 0))), (0, 0, 0));
        // A per-minute 429: pro is dead on key 1 for the day; the retry goes to flash at once.
        f.on_outcome(0, &ask(1, 0), 0, 0, 0, &RL);
        assert_eq!(send(f.decide(0, &ask(1, 1))), (0, 1, 0));
        f.on_outcome(0, &ask(1, 1), 0, 1, 0, &RL);
        assert_eq!(send(f.decide(0, &ask(1, 2))), (0, 2, 0));
        f.on_outcome(0, &ask(1, 2), 0, 2, 0, &RL);
        // Key 1 spent: key 2's pro.
        assert_eq!(send(f.decide(10 * MINUTE, &ask(1, 0))), (1, 0, 10 * MINUTE));
        f.on_outcome(10 * MINUTE, &ask(1, 0), 1, 0, 0, &RL);
        // Still dead an hour later; back at midnight (start 09:00 PDT: 15 h in).
        assert_eq!(send(f.decide(60 * MINUTE, &ask(1, 0))), (1, 1, 60 * MINUTE));
        f.on_outcome(60 * MINUTE, &ask(1, 0), 1, 1, 0, &Outcome::Ok);
        assert_eq!(send(f.decide(15 * 60 * MINUTE, &ask(1, 0))), (0, 0, 15 * 60 * MINUTE));
    }

    /// Issue 33, item 7: gemini-flux reads no QuotaFailure: an unservable 429 kills the model
    /// on that key like any 429.
    #[test]
    fn an_unservable_429_kills_the_model_like_any_429() {
        let mut f = three_models();
        assert_eq!(send(f.decide(0, &ask(1, 0))), (0, 0, 0));
        f.on_outcome(0, &ask(1, 0), 0, 0, 0, &Outcome::Unservable);
        assert_eq!(send(f.decide(SECOND, &ask(1, 0))), (0, 1, SECOND));
    }

    #[test]
    fn waits_on_its_per_key_token_log_and_ignores_rpm() {
        let limits = Limits {
            rpm: Some(1),
            tpm: Some(100),
            ..Limits::default()
        };
        // Two keys of one project: gemini-flux thinks each has its own budget.
        let mut f = GeminiFlux::new(env(&[0, 0], Some(limits)), vec![]);
        assert_eq!(send(f.decide(0, &ask(80, 0))), (0, 0, 0));
        f.on_outcome(SECOND, &ask(80, 0), 0, 0, 0, &Outcome::Ok);
        // 30 more do not fit key 1 until its entry (logged at completion, 1 s) expires; key 2
        // is free now, RPM notwithstanding.
        assert_eq!(send(f.decide(2 * SECOND, &ask(30, 0))), (1, 0, 2 * SECOND));
        f.on_outcome(3 * SECOND, &ask(30, 0), 1, 0, 0, &Outcome::Ok);
        // 90 fit neither: key 1 frees at 61 s, key 2 at 63 s.
        assert_eq!(send(f.decide(4 * SECOND, &ask(90, 0))), (0, 0, MINUTE + SECOND));
        f.on_outcome(MINUTE + 2 * SECOND, &ask(90, 0), 0, 0, 0, &Outcome::Ok);
        // More than the TPM: wait 60 s and send anyway.
        assert_eq!(send(f.decide(5 * MINUTE, &ask(500, 0))).2, 6 * MINUTE);
    }
}
