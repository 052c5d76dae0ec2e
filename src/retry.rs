//! Retry policies (client side, separate from the strategy): after an attempt fails, how long
//! to wait before the strategy is asked again, or whether to give up.

use crate::rng::{rng, unit, Stream};
use crate::scenario::{Jitter, RetryPolicy};
use crate::strategy::Outcome;
use crate::time::Nanos;

/// Truncated exponential backoff for the `attempts`-th failure: `min(cap, base * 2^(attempts-1))`.
fn exponential(base: Nanos, cap: Nanos, attempts: u32) -> Nanos {
    let shift = attempts.saturating_sub(1).min(63);
    base.checked_mul(1u64 << shift).unwrap_or(cap).min(cap)
}

fn jittered(d: Nanos, jitter: Jitter, u: f64) -> Nanos {
    match jitter {
        Jitter::None => d,
        Jitter::Full => (d as f64 * u).floor() as Nanos,
        Jitter::Equal => d / 2 + ((d - d / 2) as f64 * u).floor() as Nanos,
    }
}

impl RetryPolicy {
    /// After `attempts` attempts (the last ending in `outcome`), the delay before the next, or
    /// `None` to give up. `u` is a uniform draw in `[0, 1)` for jitter. An invalid key is
    /// retried at once (on whichever key the strategy picks) by every policy but `none`.
    pub fn next_delay(&self, attempts: u32, outcome: &Outcome, u: f64) -> Option<Nanos> {
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
            RetryPolicy::Backoff { base, cap, jitter, .. } => jittered(exponential(base, cap, attempts), jitter, u),
            RetryPolicy::RetryInfo { base, cap, .. } => match outcome {
                Outcome::RateLimited {
                    retry_delay: Some(d), ..
                } => *d,
                _ => jittered(exponential(base, cap, attempts), Jitter::Full, u),
            },
        })
    }
}

impl RetryPolicy {
    /// [`RetryPolicy::next_delay`] with the jitter drawn from `seed`'s retry stream for this
    /// request and attempt, so every driver of the same run draws the same delays.
    pub fn delay_after(&self, seed: u64, request: u64, attempts: u32, outcome: &Outcome) -> Option<Nanos> {
        let u = unit(&mut rng(seed, Stream::Retry, request, attempts));
        self.next_delay(attempts, outcome, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Dims;
    use crate::time::SECOND;

    const RL: Outcome = Outcome::RateLimited {
        violated: Dims::EMPTY,
        retry_delay: Some(38_909_233_000),
    };

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
    fn retry_info_waits_the_servers_delay_exactly() {
        let p = RetryPolicy::RetryInfo {
            base: SECOND,
            cap: 60 * SECOND,
            max_attempts: None,
        };
        assert_eq!(p.next_delay(100, &RL, 0.9), Some(38_909_233_000));
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
        assert_eq!(p.next_delay(1, &Outcome::Unservable, 0.0), None);
    }
}
