//! `gemini_flux`: a model of gemini-flux 1.1.1 (PyPI, the only release; `flux.py`,
//! `scheduler.py`, `key_pool.py`, `policy.py`), re-derived from that source and checked
//! against `flux-sim serve` with `benches/peers-vs-real.sh`.
//!
//! What it models, as the library does it:
//! - start-up: one free `countTokens` per key; a key it rejects is marked invalid and never
//!   gets a request (here: the keys the server would refuse, [`Env::key_valid`]);
//! - the model chain is the library's, whatever model the request names: the models it
//!   discovers (here the request's model and `fallback`) sorted as `_sort_models` sorts them —
//!   pro, flash, flash-lite, then the previews (pro, flash, lite), newest version first in
//!   each group, by the model's name;
//! - one global lock: one request in flight at a time (its waits included);
//! - key by key: for each live key, the first model of the chain it has not used up today
//!   (its own count against the policy's RPD); the key whose 60 s input-token log has room
//!   soonest wins, ties to the first key, so key 1 takes pro, flash, flash-lite until each is
//!   spent before key 2 is touched;
//! - the token log is per key (shared by its models), filled with a request's input tokens
//!   when its response arrives; RPM is never looked at; a request bigger than the policy's
//!   TPM waits 60 s and is sent anyway;
//! - any 429 ("quota", "429" or "exhausted" in the error text: an unservable one too) marks
//!   that model used up on that key until midnight Pacific and the next pick is tried at once;
//!   a 400 marks the key invalid; a 503 is retried at once; after keys × models attempts it
//!   gives up.
//!
//! Not paced: 1.1.1 prints "Dynamic interval: {token_cooldown_seconds}s / {keys} keys" at
//! start-up (`flux.py`, step 5) but never waits on it; its only waits are the token log's.
//!
//! Not modelled: the policy (RPD, TPM per family) is the limits the strategy knows, as if the
//! one policy request at start-up had answered them (the library caches the answer 7 days;
//! without a cache that request costs one flash request on key 1); the `mode` setting
//! (`pro_only` …: narrow the chain with `fallback`); the per-request `countTokens` and the
//! ~50 ms of building a new client per call (wall-clock overhead, see docs/strategies.md).

use std::collections::VecDeque;

use super::kind::{KindDef, Param, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Strategy};
use crate::core::time::{Nanos, MINUTE};
use std::cmp::Ordering;

/// `gemini_flux` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "gemini_flux",
    help: "gemini-flux 1.1.1: invalid keys dropped at start-up, key by key through its model chain (pro, flash, lite), input TPM per key, one request in flight, a 429 kills the model on that key until midnight",
    takes: &[Param::Fallback],
    requires: &[],
    defaults: Params::NONE,
    // It retries at once and stops after keys × models attempts; it speaks REST only.
    retry: RetryPolicy::Immediate { max_attempts: u32::MAX },
    live: false,
    rest: true,
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
    /// Per model: its place in the library's order (`_sort_models`).
    rank: Vec<usize>,
    busy: bool,
    day_end: Nanos,
}

/// `_sort_models`' key of a model name: its group (pro, flash, flash-lite, then the preview
/// pro, flash, lite; anything else last) and its version (the first number in the name).
fn priority(name: &str) -> (u8, f64) {
    let n = name.to_lowercase();
    let (pro, flash, lite, preview) = (
        n.contains("pro"),
        n.contains("flash"),
        n.contains("lite"),
        n.contains("preview"),
    );
    let group = match () {
        _ if pro && !preview => 0,
        _ if flash && !lite && !preview => 1,
        _ if lite && !preview => 2,
        _ if pro => 3,
        _ if flash && !lite => 4,
        _ if lite => 5,
        _ => 6,
    };
    (group, version(&n))
}

/// The first `\d+\.?\d*` of `name` as a number (0 without one), as `_sort_models` reads it.
fn version(name: &str) -> f64 {
    let Some(start) = name.find(|c: char| c.is_ascii_digit()) else {
        return 0.0;
    };
    let rest = &name[start..];
    let int = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let mut end = int;
    if rest[int..].starts_with('.') {
        end = int
            + 1
            + rest[int + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - int - 1);
    }
    rest[..end].trim_end_matches('.').parse().unwrap_or(0.0)
}

/// The library's order of `names`: the models' indices sorted by [`priority`], newest
/// version first within a group, ties in the given order (Python's sort is stable).
fn library_order(names: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        let ((ga, va), (gb, vb)) = (priority(&names[a]), priority(&names[b]));
        ga.cmp(&gb).then(vb.partial_cmp(&va).unwrap_or(Ordering::Equal))
    });
    let mut rank = vec![0; names.len()];
    for (place, &m) in order.iter().enumerate() {
        rank[m] = place;
    }
    rank
}

impl GeminiFlux {
    /// gemini-flux over the keys of `env`, with the model chain `fallback` after each
    /// request's own model; its policy is the limits `env` knows.
    pub fn new(env: Env, fallback: Vec<usize>) -> Self {
        // Start-up: a key its countTokens check rejects is invalid from the start.
        let keys = (0..env.key_project.len())
            .map(|k| KeyState {
                invalid: !env.key_valid.get(k).copied().unwrap_or(true),
                today: vec![0; env.models],
                ..KeyState::default()
            })
            .collect();
        let rank = library_order(&env.model_names);
        GeminiFlux {
            env,
            fallback,
            keys,
            rank,
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

    /// The models it knows (the request's and the fallbacks) in the library's order.
    fn chain(&self, ask: &Ask) -> Vec<usize> {
        let mut chain = vec![ask.model];
        chain.extend(self.fallback.iter().filter(|&&m| m != ask.model));
        chain.sort_by_key(|&m| self.rank.get(m).copied().unwrap_or(usize::MAX));
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

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
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
            Outcome::RateLimited { .. } | Outcome::Unservable { .. } => {
                self.keys[key].today[model] = self.rpd(key, model)
            }
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
        quota_model: None,
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
        e.model_names = ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]
            .map(String::from)
            .to_vec();
        GeminiFlux::new(e, vec![1, 2])
    }

    /// `_sort_models` on the library's own fallback chain, shuffled, gives that chain back;
    /// ties keep their order.
    #[test]
    fn orders_models_as_the_library_sorts_them() {
        let chain = [
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-3.1-pro-preview",
            "gemini-3-flash-preview",
            "gemini-3.1-flash-lite-preview",
        ];
        let shuffled: Vec<String> = [5, 3, 1, 4, 0, 2].iter().map(|&i| chain[i].to_string()).collect();
        let rank = library_order(&shuffled);
        let mut sorted = vec![""; 6];
        for (i, name) in shuffled.iter().enumerate() {
            sorted[rank[i]] = name;
        }
        assert_eq!(sorted, chain);
        // Newest version first within a group; a name without a number is version 0.
        let names: Vec<String> = ["gemini-2.0-flash", "gemini-flash-latest", "gemini-2.5-flash"]
            .map(String::from)
            .to_vec();
        assert_eq!(library_order(&names), [1, 2, 0]);
        assert_eq!(version("gemini-2.5-pro"), 2.5);
        assert_eq!(version("gemini-3-flash-preview"), 3.0);
    }

    /// Issue 30: the library walks its own chain (pro first) whatever model was asked for.
    #[test]
    fn walks_pro_first_whatever_model_the_request_names() {
        let limits = Limits {
            rpd: Some(1),
            ..Limits::default()
        };
        let mut e = env(&[0], Some(limits));
        e.models = 2;
        e.limits = vec![limits; 2];
        e.model_names = ["gemini-2.5-flash", "gemini-2.5-pro"].map(String::from).to_vec();
        // The request names flash (model 0) with pro as its fallback: pro goes first.
        let mut f = GeminiFlux::new(e, vec![1]);
        assert_eq!(send(f.decide(0, &ask(1, 0))), (0, 1, 0));
        f.on_outcome(0, &ask(1, 0), 0, 1, 0, &Outcome::Ok);
        assert_eq!(send(f.decide(SECOND, &ask(1, 0))), (0, 0, SECOND));
    }

    /// Issue 30: its countTokens check at start-up drops an invalid key before any request.
    #[test]
    fn an_invalid_key_never_gets_a_request() {
        let mut e = env(&[0, 1, 2], None);
        e.key_valid = vec![false, true, false];
        let mut f = GeminiFlux::new(e, vec![]);
        for i in 0..5 {
            assert_eq!(send(f.decide(i * SECOND, &ask(1, 0))).0, 1);
            f.on_outcome(i * SECOND, &ask(1, 0), 1, 0, 0, &Outcome::Ok);
        }
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
        f.on_outcome(0, &ask(1, 0), 0, 0, 0, &Outcome::UNSERVABLE_UNSTATED);
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
