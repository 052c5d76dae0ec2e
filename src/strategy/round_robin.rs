//! `round_robin`: the next key in order, sent at once; tracks nothing (key-mixer).

use super::kind::{KindDef, Params};
use super::{Ask, Decision, Env, Outcome, Strategy};
use crate::core::time::Nanos;

/// `round_robin` as the registry (`strategy::KINDS`) knows it.
pub(super) const KIND: KindDef = KindDef {
    name: "round_robin",
    help: "the next key in order, sent at once; tracks nothing (key-mixer)",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    retry: super::retry::SDK,
    live: true,
    rest: true,
    build: |env, _| Box::new(RoundRobin::new(&env)),
};

/// Strict round-robin over every key.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    keys: usize,
    next: usize,
}

impl RoundRobin {
    /// Round-robin over the keys of `env`.
    pub fn new(env: &Env) -> Self {
        RoundRobin {
            keys: env.key_project.len(),
            next: 0,
        }
    }
}

impl Strategy for RoundRobin {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        let key = self.next;
        self.next = (self.next + 1) % self.keys;
        Decision::Send {
            key,
            model: ask.model,
            at: now,
        }
    }

    fn prefetch_next(&self, _: usize, _: bool) -> Option<usize> {
        Some(self.next)
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
    use crate::strategy::tests::env;

    #[test]
    fn cycles_through_every_key_at_once() {
        let mut s = RoundRobin::new(&env(&[0, 0, 1], None));
        let ask = crate::strategy::tests::ask(0, 1);
        let keys: Vec<usize> = (0..5)
            .map(|i| {
                // The key it names ahead (a hint for the driver) is the one it then takes.
                let hint = s.prefetch_next(0, false);
                (i, hint, s.decide(i, &ask))
            })
            .map(|(i, hint, d)| match d {
                Decision::Send { key, .. } if hint != Some(key) => panic!("hinted {hint:?}, sent on {key}"),
                Decision::Send { key, at, .. } => {
                    assert_eq!(at, i);
                    key
                }
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(keys, [0, 1, 2, 0, 1]);
    }
}
