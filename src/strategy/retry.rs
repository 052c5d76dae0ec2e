//! Retry policies (client side, separate from the strategy): after an attempt fails, how long
//! to wait before the strategy is asked again, or whether to give up.

use crate::core::ledger::{Dims, Limits};
use crate::core::rng::{rng, unit, Stream};
use crate::core::time::{Nanos, SECOND};
use crate::strategy::Outcome;

/// Retry policy after a 429, a 503 or an invalid key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryPolicy {
    /// Give up at the first error.
    None,
    /// Retry at once.
    Immediate {
        /// Attempts in all, first included.
        max_attempts: u32,
    },
    /// Truncated exponential backoff: `min(cap, base * 2^(n-1))` with jitter.
    Backoff {
        /// First delay.
        base: Nanos,
        /// Largest delay.
        cap: Nanos,
        /// How the delay is randomised.
        jitter: Jitter,
        /// Attempts in all, first included.
        max_attempts: u32,
    },
    /// Wait the server's RetryInfo delay; errors without one use backoff with `base`/`cap`.
    RetryInfo {
        /// First delay of the fallback backoff.
        base: Nanos,
        /// Largest delay of the fallback backoff.
        cap: Nanos,
        /// Attempts in all, first included (`None`: unlimited).
        max_attempts: Option<u32>,
    },
}

/// Backoff jitter (AWS's naming, and tenacity's additive kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`.
    Equal,
    /// Exactly `d`.
    None,
    /// `d` plus uniform in `[0, amount]`, then capped (tenacity's `wait_exponential_jitter`,
    /// which google-genai's retry options use).
    Plus(Nanos),
    /// AWS's decorrelated jitter: each delay uniform in `[base, 3 × the previous]`, capped
    /// (the first previous is `base`); no doubling schedule of its own.
    Decorrelated,
}

impl Jitter {
    /// The jitter as a scenario writes it.
    pub fn describe(&self) -> String {
        match self {
            Jitter::Full => "full jitter".into(),
            Jitter::Equal => "equal jitter".into(),
            Jitter::None => "no jitter".into(),
            Jitter::Plus(a) => format!("+0..{} jitter", crate::core::time::format_duration(*a)),
            Jitter::Decorrelated => "decorrelated jitter".into(),
        }
    }
}

/// google-genai's `HttpRetryOptions()`: 5 attempts, 1 s doubling to 60 s plus up to 1 s of
/// jitter; it retries 408, 429 and 5xx and never reads RetryInfo.
pub const SDK: RetryPolicy = RetryPolicy::Backoff {
    base: SECOND,
    cap: 60 * SECOND,
    jitter: Jitter::Plus(SECOND),
    max_attempts: 5,
};

impl RetryPolicy {
    /// The policy in words, as `flux-sim strategies` shows it.
    pub fn describe(&self) -> String {
        let d = crate::core::time::format_duration;
        match *self {
            RetryPolicy::None => "none (give up at the first error)".into(),
            RetryPolicy::Immediate { max_attempts: u32::MAX } => "immediate, unlimited attempts".into(),
            RetryPolicy::Immediate { max_attempts } => format!("immediate, {max_attempts} attempts"),
            RetryPolicy::Backoff {
                base,
                cap,
                jitter,
                max_attempts,
            } => format!(
                "backoff {}→{}, {}, {}",
                d(base),
                d(cap),
                jitter.describe(),
                if max_attempts == u32::MAX {
                    "unlimited attempts".to_string()
                } else {
                    format!("{max_attempts} attempts")
                }
            ),
            RetryPolicy::RetryInfo {
                base,
                cap,
                max_attempts,
            } => format!(
                "retry_info (the server's RetryInfo delay; without one or at 0 s, backoff {}→{}), {}",
                d(base),
                d(cap),
                max_attempts.map_or("unlimited attempts".to_string(), |n| format!("{n} attempts"))
            ),
        }
    }
}

/// Truncated exponential backoff for the `attempts`-th failure: `min(cap, base * 2^(attempts-1))`.
pub(crate) fn exponential(base: Nanos, cap: Nanos, attempts: u32) -> Nanos {
    let shift = attempts.saturating_sub(1).min(63);
    base.checked_mul(1u64 << shift).unwrap_or(cap).min(cap)
}

fn jittered(d: Nanos, jitter: Jitter, u: f64) -> Nanos {
    match jitter {
        Jitter::None => d,
        Jitter::Full => (d as f64 * u).floor() as Nanos,
        Jitter::Equal => d / 2 + ((d - d / 2) as f64 * u).floor() as Nanos,
        Jitter::Plus(a) => d.saturating_add((a as f64 * u).floor() as Nanos),
        Jitter::Decorrelated => unreachable!("decorrelated delays depend on the previous one"),
    }
}

/// The `attempts`-th decorrelated delay, `draw(k)` being the k-th attempt's uniform draw.
fn decorrelated(base: Nanos, cap: Nanos, attempts: u32, draw: &dyn Fn(u32) -> f64) -> Nanos {
    let mut d = base;
    for k in 1..=attempts.min(64) {
        let hi = d.saturating_mul(3).max(base);
        d = (base + ((hi - base) as f64 * draw(k)).floor() as Nanos).min(cap);
    }
    d
}

impl RetryPolicy {
    /// After `attempts` attempts (the last ending in `outcome`), the delay before the next, or
    /// `None` to give up. `u` is a uniform draw in `[0, 1)` for jitter. An invalid key is
    /// retried at once (on whichever key the strategy picks) by every policy but `none`.
    pub fn next_delay(&self, attempts: u32, outcome: &Outcome, u: f64) -> Option<Nanos> {
        self.next_delay_with(attempts, outcome, &|_| u)
    }

    /// [`RetryPolicy::next_delay`] with `draw(k)` the uniform draw of attempt `k` (decorrelated
    /// jitter depends on every earlier one).
    fn next_delay_with(&self, attempts: u32, outcome: &Outcome, draw: &dyn Fn(u32) -> f64) -> Option<Nanos> {
        let u = draw(attempts);
        let retryable = matches!(
            outcome,
            Outcome::RateLimited { .. } | Outcome::InvalidKey | Outcome::Unavailable
        );
        if !retryable {
            return None;
        }
        let max = match *self {
            RetryPolicy::None => return None,
            RetryPolicy::Immediate { max_attempts } | RetryPolicy::Backoff { max_attempts, .. } => Some(max_attempts),
            RetryPolicy::RetryInfo { max_attempts, .. } => max_attempts,
        };
        if max.is_some_and(|m| attempts >= m) {
            return None;
        }
        if matches!(outcome, Outcome::InvalidKey) {
            return Some(0);
        }
        Some(match *self {
            RetryPolicy::None => unreachable!(),
            RetryPolicy::Immediate { .. } => 0,
            RetryPolicy::Backoff {
                base,
                cap,
                jitter: Jitter::Decorrelated,
                ..
            } => decorrelated(base, cap, attempts, draw),
            RetryPolicy::Backoff { base, cap, jitter, .. } => {
                jittered(exponential(base, cap, attempts), jitter, u).min(cap)
            }
            // A delay of exactly 0 tells nothing (servers have been seen to say `0s` on a
            // per-day 429): it backs off like an error without one, instead of spinning.
            RetryPolicy::RetryInfo { base, cap, .. } => match outcome {
                Outcome::RateLimited {
                    retry_delay: Some(d), ..
                } if *d > 0 => *d,
                _ => jittered(exponential(base, cap, attempts), Jitter::Full, u),
            },
        })
    }
}

impl RetryPolicy {
    /// [`RetryPolicy::next_delay`] with the jitter drawn from `seed`'s retry stream for this
    /// request and attempt, so every driver of the same run draws the same delays.
    pub fn delay_after(&self, seed: u64, request: u64, attempts: u32, outcome: &Outcome) -> Option<Nanos> {
        self.next_delay_with(attempts, outcome, &|k| unit(&mut rng(seed, Stream::Retry, request, k)))
    }
}

impl RetryPolicy {
    /// The delay before retrying a 429 that no retry cures (unservable: the request is bigger
    /// than a limit), for a client that reads only the status code and so retries it as any
    /// 429 without details; `None` to give up. A policy without an attempt limit gives up at
    /// once: it would retry such a request forever.
    pub fn delay_after_unservable(&self, seed: u64, request: u64, attempts: u32, violated: Dims) -> Option<Nanos> {
        if matches!(self, RetryPolicy::RetryInfo { max_attempts: None, .. }) {
            return None;
        }
        let as_429 = Outcome::RateLimited {
            violated,
            retry_delay: None,
            quota: Limits::UNLIMITED,
            quota_model: None,
        };
        self.delay_after(seed, request, attempts, &as_429)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Dims;
    use crate::core::time::SECOND;

    const RL: Outcome = Outcome::RateLimited {
        violated: Dims::EMPTY,
        retry_delay: Some(38_909_233_000),
        quota: crate::core::ledger::Limits::UNLIMITED,
        quota_model: None,
    };

    #[test]
    fn the_sdk_preset_gives_up_long_before_the_servers_delay() {
        // google-genai at time scale 1 gave up after 5 attempts in 17.3 s while RetryInfo said
        // 59.4 s: 1, 2, 4 and 8 s, each plus up to 1 s.
        let waits = |u: f64| -> Nanos { (1..=4).map(|a| SDK.next_delay(a, &RL, u).unwrap()).sum() };
        assert_eq!(waits(0.0), 15 * SECOND);
        assert_eq!(waits(0.5), 17 * SECOND);
        assert!(waits(0.999_999) < 19 * SECOND);
        assert_eq!(SDK.next_delay(5, &RL, 0.5), None, "5 attempts in all");
        // Deep in, the cap holds with the jitter added.
        let long = RetryPolicy::Backoff {
            base: SECOND,
            cap: 60 * SECOND,
            jitter: Jitter::Plus(SECOND),
            max_attempts: 10,
        };
        assert_eq!(long.next_delay(7, &RL, 0.9), Some(60 * SECOND));
        assert_eq!(long.next_delay(6, &RL, 0.5), Some(32 * SECOND + SECOND / 2));
        assert_eq!(
            SDK.next_delay(1, &Outcome::Unavailable, 0.25),
            Some(SECOND + SECOND / 4)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_stops_at_max_attempts() {
        let p = RetryPolicy::Backoff {
            base: SECOND,
            cap: 5 * SECOND,
            jitter: Jitter::None,
            max_attempts: 5,
        };
        let d: Vec<Option<Nanos>> = (1..=5).map(|a| p.next_delay(a, &RL, 0.5)).collect();
        assert_eq!(
            d,
            [Some(SECOND), Some(2 * SECOND), Some(4 * SECOND), Some(5 * SECOND), None]
        );
        let full = RetryPolicy::Backoff {
            base: SECOND,
            cap: 5 * SECOND,
            jitter: Jitter::Full,
            max_attempts: 5,
        };
        assert_eq!(full.next_delay(2, &RL, 0.25), Some(SECOND / 2));
        let equal = RetryPolicy::Backoff {
            base: SECOND,
            cap: 5 * SECOND,
            jitter: Jitter::Equal,
            max_attempts: 5,
        };
        assert_eq!(equal.next_delay(2, &RL, 0.5), Some(SECOND + SECOND / 2));
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_previous_delay() {
        let p = RetryPolicy::Backoff {
            base: SECOND,
            cap: 10 * SECOND,
            jitter: Jitter::Decorrelated,
            max_attempts: 10,
        };
        // Always the top of the range: 3, 9, then the cap.
        let top: Vec<Nanos> = (1..=3).map(|a| p.next_delay(a, &RL, 1.0).unwrap()).collect();
        assert_eq!(top, [3 * SECOND, 9 * SECOND, 10 * SECOND]);
        assert_eq!(p.next_delay(4, &RL, 0.0), Some(SECOND), "the bottom is always base");
        // Seeded: each attempt's range depends on the previous draw.
        let d: Vec<Nanos> = (1..=6).map(|a| p.delay_after(7, 42, a, &RL).unwrap()).collect();
        let mut prev = SECOND;
        for x in d {
            assert!(x >= SECOND && x <= (3 * prev).min(10 * SECOND), "{x} after {prev}");
            prev = x;
        }
    }

    #[test]
    fn retry_info_waits_the_servers_delay_exactly() {
        let p = RetryPolicy::RetryInfo {
            base: SECOND,
            cap: 60 * SECOND,
            max_attempts: None,
        };
        assert_eq!(p.next_delay(100, &RL, 0.9), Some(38_909_233_000));
        let zero = Outcome::RateLimited {
            violated: Dims::EMPTY,
            retry_delay: Some(0),
            quota: crate::core::ledger::Limits::UNLIMITED,
            quota_model: None,
        };
        assert_eq!(
            p.next_delay(2, &zero, 0.5),
            Some(SECOND),
            "0 s backs off: 2 s, full jitter"
        );
        assert_eq!(p.next_delay(1, &Outcome::Unavailable, 0.5), Some(SECOND / 2));
        assert_eq!(p.next_delay(1, &Outcome::Error, 0.5), None);
    }

    #[test]
    fn none_and_immediate() {
        assert_eq!(RetryPolicy::None.next_delay(1, &RL, 0.0), None);
        let p = RetryPolicy::Immediate { max_attempts: 2 };
        assert_eq!(p.next_delay(1, &RL, 0.0), Some(0));
        assert_eq!(p.next_delay(1, &Outcome::InvalidKey, 0.0), Some(0));
        assert_eq!(p.next_delay(2, &RL, 0.0), None);
        assert_eq!(p.next_delay(1, &Outcome::UNSERVABLE_UNSTATED, 0.0), None);
    }

    /// Issue 33 item 7: a client that reads only the status code retries an unservable 429 as
    /// any 429 without details, up to its attempt limit; a policy without a limit stops.
    #[test]
    fn an_unservable_429_is_retried_as_a_429_by_a_limited_policy() {
        let v = Dims::EMPTY;
        assert_eq!(SDK.delay_after_unservable(1, 2, 1, v), SDK.delay_after(1, 2, 1, &RL));
        assert!(SDK.delay_after_unservable(1, 2, 4, v).is_some());
        assert_eq!(SDK.delay_after_unservable(1, 2, 5, v), None);
        let immediate = RetryPolicy::Immediate { max_attempts: 3 };
        assert_eq!(immediate.delay_after_unservable(1, 2, 2, v), Some(0));
        assert_eq!(RetryPolicy::None.delay_after_unservable(1, 2, 1, v), None);
        let unlimited = RetryPolicy::RetryInfo {
            base: SECOND,
            cap: 60 * SECOND,
            max_attempts: None,
        };
        assert_eq!(unlimited.delay_after_unservable(1, 2, 1, v), None);
        let limited = RetryPolicy::RetryInfo {
            base: SECOND,
            cap: 60 * SECOND,
            max_attempts: Some(3),
        };
        assert!(limited.delay_after_unservable(1, 2, 1, v).is_some());
    }
}
