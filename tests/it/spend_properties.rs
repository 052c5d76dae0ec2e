//! Property tests of the spend cap against a brute-force reference written from its
//! definition: a request is admitted iff the spend charged in `(now − delay − window,
//! now − delay]` plus its price is at most the cap; with no delay, no rolling window ever holds
//! more than the cap.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use flux_sim::core::spend::{SpendRule, SpendWindow};
use flux_sim::core::time::{Nanos, MINUTE, SECOND};

/// Advances (ns; 0 = the same instant) and prices (picodollars) of a sequence of requests; some
/// advances land exactly on a window edge of an earlier charge.
fn ops() -> impl Strategy<Value = Vec<(u64, bool, u128)>> {
    prop::collection::vec((0u64..90 * SECOND, any::<bool>(), 0u128..4_000), 1..300)
}

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/spend_properties.txt"))),
        ..Config::default()
    })]

    #[test]
    fn spend_window_equals_brute_force_reference(
        cap in 1u128..10_000,
        window_s in 1u64..600,
        delay_s in prop::sample::select(vec![0u64, 0, 1, 30, 600]),
        ops in ops(),
    ) {
        let rule = SpendRule { window: window_s * SECOND, delay: delay_s * SECOND };
        let mut w = SpendWindow::new(cap, rule);
        let mut charged: Vec<(Nanos, u128)> = Vec::new();
        let mut now: Nanos = 0;
        for (advance, to_edge, price) in ops {
            now = match (to_edge, charged.len()) {
                // Exactly when an earlier charge leaves what the check sees.
                (true, n) if n > 0 => {
                    let edge = charged[advance as usize % n].0 + rule.window + rule.delay;
                    edge.max(now)
                }
                _ => now + advance,
            };
            let seen: u128 = if now < rule.delay {
                0
            } else {
                let horizon = now - rule.delay;
                charged
                    .iter()
                    .filter(|&&(t, _)| t <= horizon && t + rule.window > horizon)
                    .map(|&(_, c)| c)
                    .sum()
            };
            let expected = seen + price <= cap;
            prop_assert_eq!(w.allows(now, price), expected, "at {} with {} seen", now, seen);
            if expected {
                w.charge(now, price);
                charged.push((now, price));
            }
        }
        // The peak is the most any window ending at a charge held.
        let peak = charged
            .iter()
            .map(|&(t, _)| charged.iter().filter(|&&(u, _)| u <= t && u + rule.window > t).map(|&(_, c)| c).sum::<u128>())
            .max()
            .unwrap_or(0);
        prop_assert_eq!(w.peak(), peak);
        if rule.delay == 0 {
            prop_assert!(peak <= cap, "without a billing delay the cap holds: {} > {}", peak, cap);
        }
    }
}

#[test]
fn a_ten_minute_delay_lets_a_burst_spend_many_times_the_cap() {
    let rule = SpendRule {
        window: 10 * MINUTE,
        delay: 10 * MINUTE,
    };
    let mut w = SpendWindow::new(10, rule);
    let mut admitted = 0;
    for i in 0..600 {
        if w.allows(i * SECOND, 1) {
            w.charge(i * SECOND, 1);
            admitted += 1;
        }
    }
    assert_eq!(admitted, 600, "nothing is visible for 10 minutes");
    assert_eq!(w.peak(), 600);
}
