//! Spend caps: what a billing account may spend over a rolling window (Google: 10 minutes; tier 1
//! $10), in integer picodollars. Admitted requests are charged in full (input and output tokens
//! at the model's prices) when admitted; a request whose cost would take the spend the server
//! can see over the cap is refused. Billing data may reach the check late (`delay`): spend
//! then counts only from `delay` after it happened, and the cap can be overrun meanwhile.

use std::collections::VecDeque;

use super::time::Nanos;

/// Picodollars (10⁻¹² USD) per US dollar.
pub const PICO_PER_USD: u128 = 1_000_000_000_000;

/// A model's prices in picodollars per token (USD per million tokens × 10⁶).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    /// Per input token.
    pub input: u64,
    /// Per output token.
    pub output: u64,
}

impl Prices {
    /// What a request of `input` and `output` tokens costs, in picodollars.
    pub fn cost(&self, input: u64, output: u64) -> u128 {
        input as u128 * self.input as u128 + output as u128 * self.output as u128
    }
}

/// The prices in force at `now`: the last of `changes` (ascending by instant) at or before
/// it, else `base` (issue 31, item 6: gemini-4-argon $2/$10 per million tokens until
/// 2026-11-30, $4/$20 from 2026-12-01).
pub fn price_at(base: Prices, changes: &[(Nanos, Prices)], now: Nanos) -> Prices {
    changes
        .iter()
        .take_while(|(at, _)| *at <= now)
        .last()
        .map_or(base, |(_, p)| *p)
}

/// The spend cap settings of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendRule {
    /// The rolling window a cap limits.
    pub window: Nanos,
    /// How late spend reaches the check.
    pub delay: Nanos,
}

/// One billing account's spend against its cap.
#[derive(Debug, Clone)]
pub struct SpendWindow {
    cap: u128,
    rule: SpendRule,
    /// Charges `(time, cumulative picodollars including this one)`, in time order; `base` is
    /// the cumulative amount of those already out of the window.
    entries: VecDeque<(Nanos, u128)>,
    base: u128,
    peak: u128,
}

impl SpendWindow {
    /// An account that may spend `cap` picodollars per window of `rule`.
    pub fn new(cap: u128, rule: SpendRule) -> Self {
        SpendWindow {
            cap,
            rule,
            entries: VecDeque::new(),
            base: 0,
            peak: 0,
        }
    }

    /// The spend the check sees at `now`: charges made in `(now − delay − window, now − delay]`.
    pub fn visible(&mut self, now: Nanos) -> u128 {
        let horizon = now.saturating_sub(self.rule.delay);
        while let Some(&(t, cum)) = self.entries.front() {
            if t + self.rule.window > horizon {
                break;
            }
            self.base = cum;
            self.entries.pop_front();
        }
        let k = self.entries.partition_point(|&(t, _)| t <= horizon);
        if k == 0 || now < self.rule.delay {
            0
        } else {
            self.entries[k - 1].1 - self.base
        }
    }

    /// Whether a request costing `cost` may be admitted at `now`.
    pub fn allows(&mut self, now: Nanos, cost: u128) -> bool {
        self.visible(now) + cost <= self.cap
    }

    /// Charges `cost` at `now` (calls in non-decreasing time).
    pub fn charge(&mut self, now: Nanos, cost: u128) {
        let last = self.entries.back().map_or(self.base, |&(_, c)| c);
        match self.entries.back_mut() {
            Some((t, cum)) if *t == now => *cum += cost,
            _ => self.entries.push_back((now, last + cost)),
        }
        // The true spend in the window ending now (whatever the check could see).
        let from = self.entries.partition_point(|&(t, _)| t + self.rule.window <= now);
        let before = if from == 0 { self.base } else { self.entries[from - 1].1 };
        self.peak = self.peak.max(last + cost - before);
    }

    /// The cap, in picodollars.
    pub fn cap(&self) -> u128 {
        self.cap
    }

    /// The most ever spent within one window, in picodollars.
    pub fn peak(&self) -> u128 {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{MINUTE, SECOND};

    const RULE: SpendRule = SpendRule {
        window: 10 * MINUTE,
        delay: 0,
    };

    #[test]
    fn prices_are_per_million_tokens() {
        // gemini-2.5-flash: $0.30 per million input tokens, $2.50 per million output tokens.
        let p = Prices {
            input: 300_000,
            output: 2_500_000,
        };
        assert_eq!(p.cost(1_000_000, 0), 3 * PICO_PER_USD / 10);
        assert_eq!(
            p.cost(0, 400),
            1_000_000_000,
            "400 output tokens cost a tenth of a cent"
        );
    }

    #[test]
    fn the_cap_holds_over_any_rolling_window() {
        let mut w = SpendWindow::new(10 * PICO_PER_USD, RULE);
        assert!(w.allows(0, 6 * PICO_PER_USD));
        w.charge(0, 6 * PICO_PER_USD);
        assert!(w.allows(MINUTE, 4 * PICO_PER_USD), "exactly the cap is allowed");
        w.charge(MINUTE, 4 * PICO_PER_USD);
        assert!(!w.allows(2 * MINUTE, 1));
        // The first charge leaves the window 10 minutes after it was made.
        assert!(!w.allows(10 * MINUTE - 1, 1));
        assert!(w.allows(10 * MINUTE, 6 * PICO_PER_USD));
        assert!(!w.allows(10 * MINUTE, 6 * PICO_PER_USD + 1));
        assert_eq!(w.peak(), 10 * PICO_PER_USD);
    }

    #[test]
    fn late_billing_data_lets_spend_overrun_the_cap() {
        let rule = SpendRule {
            window: 10 * MINUTE,
            delay: 30 * SECOND,
        };
        let mut w = SpendWindow::new(10 * PICO_PER_USD, rule);
        for i in 0..15 {
            let now = i * SECOND;
            assert!(w.allows(now, PICO_PER_USD), "the check sees nothing yet at {i} s");
            w.charge(now, PICO_PER_USD);
        }
        assert_eq!(w.peak(), 15 * PICO_PER_USD, "50% over the cap");
        assert_eq!(
            w.visible(30 * SECOND),
            PICO_PER_USD,
            "at 30 s the check sees spend up to 0 s"
        );
        assert_eq!(w.visible(44 * SECOND), 15 * PICO_PER_USD);
        assert!(!w.allows(44 * SECOND, 1));
        // Visible until 10 min 30 s after it was made.
        assert_eq!(w.visible(10 * MINUTE + 30 * SECOND), 14 * PICO_PER_USD);
    }
}
