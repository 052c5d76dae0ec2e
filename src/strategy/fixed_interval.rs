//! `fixed_interval`: a key is reused only `interval` after its last use, whatever the request
//! size (the hand-written "rotate every 30 s" rotator). O(1) per decision: send times never
//! decrease, so keys become free again in the order they were used (a FIFO).

use std::collections::VecDeque;

use super::kind::{KindDef, Param, Params};
use super::{Ask, Decision, Env, Outcome, Strategy};
use crate::core::time::{Nanos, SECOND};

/// `fixed_interval` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "fixed_interval",
    help: "a key is reused only `interval` after its last use, whatever the request (the hand-written rotator)",
    takes: &[Param::Interval],
    requires: &[(Param::Interval, "\"30s\"")],
    defaults: Params {
        interval: 30 * SECOND,
        ..Params::NONE
    },
    retry: super::retry::SDK,
    live: true,
    rest: true,
    build: |env, spec| Box::new(FixedInterval::new(&env, spec.kind.params.interval)),
};

/// Keys reused after a fixed interval.
#[derive(Debug, Clone)]
pub struct FixedInterval {
    interval: Nanos,
    /// `(free at, key)`, soonest first: the key used longest ago is at the front.
    free: VecDeque<(Nanos, usize)>,
}

impl FixedInterval {
    /// Every key of `env`, each reusable `interval` after its last send.
    pub fn new(env: &Env, interval: Nanos) -> Self {
        FixedInterval {
            interval,
            free: (0..env.key_project.len()).map(|k| (0, k)).collect(),
        }
    }
}

impl Strategy for FixedInterval {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        let (free_at, key) = self.free.pop_front().expect("at least one key");
        let at = free_at.max(now);
        debug_assert!(self.free.back().is_none_or(|&(t, _)| t <= at + self.interval));
        self.free.push_back((at + self.interval, key));
        Decision::Send {
            key,
            model: ask.model,
            at,
        }
    }

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, _: Nanos, _: &Ask, _: usize, _: usize, _: Nanos, _: &Outcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::SECOND;
    use crate::strategy::tests::env;

    #[test]
    fn reuses_a_key_only_after_the_interval() {
        let mut s = FixedInterval::new(&env(&[0, 1], None), 30 * SECOND);
        let ask = crate::strategy::tests::ask(0, 1);
        let got: Vec<(usize, Nanos)> = (0..5)
            .map(|_| match s.decide(SECOND, &ask) {
                Decision::Send { key, at, .. } => (key, at),
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, SECOND),
                (1, SECOND),
                (0, 31 * SECOND),
                (1, 31 * SECOND),
                (0, 61 * SECOND)
            ]
        );
    }
}
