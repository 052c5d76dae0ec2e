//! A fleet: `instances` copies of one strategy on the same keys (containers or replicas of one
//! service), the workload split between them (request `r` goes to instance `r mod N`). Each
//! instance keeps its own counts (what every rotator does today), or all share one ledger that
//! each sees through a sync delay (LiteLLM's Redis sync: 1 s), or they share request counts
//! but keep token counts local (LiteLLM issue 40291: its TPM pre-call check read local memory
//! only). Sharing is by [`Peer`] events: what an instance plans, withdraws and ends is
//! published, and every other instance observes it once the sync delay has passed.

use std::collections::{HashMap, VecDeque};

use super::{Ask, Decision, Outcome, Peer, Strategy};
use crate::core::server::TpmCounts;
use crate::core::time::{format_duration, Nanos, SECOND};

/// What the instances of a fleet share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Nothing: each instance counts only its own requests.
    #[default]
    Local,
    /// Every count (requests and tokens), seen by the others after the sync delay.
    Shared,
    /// Request counts shared, token counts local (LiteLLM #40291).
    RpmShared,
}

impl Sharing {
    /// The name as written in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            Sharing::Local => "local",
            Sharing::Shared => "shared",
            Sharing::RpmShared => "rpm_shared",
        }
    }

    /// The sharing a scenario names.
    pub fn parse(name: &str) -> Option<Sharing> {
        [Sharing::Local, Sharing::Shared, Sharing::RpmShared]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// How many instances, what they share and how late they see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSpec {
    /// Copies of the strategy (1: no fleet).
    pub instances: usize,
    /// What they share.
    pub sharing: Sharing,
    /// How long after an instance acts the others see it.
    pub sync_delay: Nanos,
}

impl FleetSpec {
    /// In words, for report headers: `None` for a single instance.
    pub fn describe(&self) -> Option<String> {
        let n = self.instances;
        match self.sharing {
            _ if n <= 1 => None,
            Sharing::Local => Some(format!("a fleet of {n} instances, each with its own counts")),
            Sharing::Shared => Some(format!(
                "a fleet of {n} instances sharing one ledger seen {} late",
                format_duration(self.sync_delay)
            )),
            Sharing::RpmShared => Some(format!(
                "a fleet of {n} instances sharing request counts ({} late), token counts local",
                format_duration(self.sync_delay)
            )),
        }
    }
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            instances: 1,
            sharing: Sharing::Local,
            sync_delay: SECOND,
        }
    }
}

/// A send planned or outstanding, as the fleet remembers it to publish its end.
#[derive(Debug, Clone, Copy)]
struct Out {
    instance: usize,
    key: usize,
    model: usize,
    at: Nanos,
    tokens: u64,
}

/// `N` instances of a strategy behind one [`Strategy`].
pub struct Fleet {
    instances: Vec<Box<dyn Strategy>>,
    spec: FleetSpec,
    tpm_counts: TpmCounts,
    /// Sends planned or outstanding, by request.
    out: HashMap<u64, Out>,
    /// Per instance: its sends planned or outstanding.
    busy: Vec<u64>,
    /// Published events the others have not seen yet: (visible at, from, event), in time order.
    pending: VecDeque<(Nanos, usize, Peer)>,
}

impl Fleet {
    /// The fleet of `instances` (one per copy) sharing as `spec` says; `tpm_counts` is what a
    /// send's tokens count.
    pub fn new(instances: Vec<Box<dyn Strategy>>, spec: FleetSpec, tpm_counts: TpmCounts) -> Self {
        Fleet {
            busy: vec![0; instances.len()],
            instances,
            spec,
            tpm_counts,
            out: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    fn instance(&self, ask: &Ask) -> usize {
        (ask.request % self.instances.len() as u64) as usize
    }

    /// Shows every event published at least the sync delay before `now` to the instances that
    /// did not publish it.
    fn sync(&mut self, now: Nanos) {
        while let Some(&(visible, from, peer)) = self.pending.front() {
            if visible > now {
                break;
            }
            self.pending.pop_front();
            let published = visible - self.spec.sync_delay;
            for (i, s) in self.instances.iter_mut().enumerate() {
                if i != from {
                    s.heard(now, from, published);
                    s.observe(now, &peer);
                }
            }
        }
    }

    fn publish(&mut self, now: Nanos, from: usize, peer: Peer) {
        if self.spec.sharing != Sharing::Local {
            self.pending.push_back((now + self.spec.sync_delay, from, peer));
            self.sync(now);
        }
    }

    fn tokens(&self, n: u64) -> u64 {
        if self.spec.sharing == Sharing::Shared {
            n
        } else {
            0
        }
    }

    /// Forgets the send of `request` and says that it is no longer out.
    fn close(&mut self, request: u64) -> Option<Out> {
        let o = self.out.remove(&request)?;
        self.busy[o.instance] -= 1;
        Some(o)
    }
}

impl Strategy for Fleet {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        self.sync(now);
        let i = self.instance(ask);
        let d = self.instances[i].decide(now, ask);
        match d {
            Decision::Send { key, model, at } => {
                let tokens = self.tokens(self.tpm_counts.cost(ask.input_tokens, ask.output_tokens));
                self.close(ask.request);
                self.out.insert(
                    ask.request,
                    Out {
                        instance: i,
                        key,
                        model,
                        at,
                        tokens,
                    },
                );
                self.busy[i] += 1;
                self.publish(now, i, Peer::Sent { key, model, at, tokens });
                d
            }
            // An instance with nothing out would never be asked again by an outcome of its
            // own: ask it again when the others' next event becomes visible to it.
            Decision::Defer if self.busy[i] == 0 => match self.pending.front() {
                Some(&(visible, _, _)) => Decision::Later(visible.max(now + 1)),
                None => d,
            },
            _ => d,
        }
    }

    fn confirm(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize) -> bool {
        self.sync(now);
        let i = self.instance(ask);
        let go = self.instances[i].confirm(now, ask, key, model);
        if !go {
            if let Some(o) = self.close(ask.request) {
                let (key, model, at, tokens) = (o.key, o.model, o.at, o.tokens);
                self.publish(now, i, Peer::Withdrawn { key, model, at, tokens });
            }
        }
        go
    }

    fn cancel(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, at: Nanos) {
        self.sync(now);
        let i = self.instance(ask);
        self.instances[i].cancel(now, ask, key, model, at);
        if let Some(o) = self.close(ask.request) {
            let (key, model, at, tokens) = (o.key, o.model, o.at, o.tokens);
            self.publish(now, i, Peer::Withdrawn { key, model, at, tokens });
        }
    }

    fn on_outcome(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, outcome: &Outcome) {
        self.sync(now);
        let i = self.instance(ask);
        self.instances[i].on_outcome(now, ask, key, model, sent, outcome);
        if let Some(o) = self.close(ask.request) {
            let used = match outcome {
                Outcome::Ok => self.tokens(ask.input_tokens + ask.output_tokens),
                _ => 0,
            };
            let ended = Peer::Ended {
                key,
                model,
                sent: o.at,
                cost: o.tokens,
                at: now,
                tokens: used,
                refused: matches!(outcome, Outcome::RateLimited { .. }),
            };
            self.publish(now, i, ended);
        }
    }

    fn lanes(&self) -> usize {
        self.instances.len()
    }

    fn keeps_place(&self, request: u64) -> bool {
        self.instances[(request % self.instances.len() as u64) as usize].keeps_place(request)
    }

    fn tells_unservable(&self) -> bool {
        self.instances.iter().all(|i| i.tells_unservable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Limits;
    use crate::core::time::MINUTE;
    use crate::strategy::tests::{ask, env, rpm, send};
    use crate::strategy::{ExactCooldown, LiteLlm, RoundRobin};

    fn cooldowns(n: usize, limits: Limits) -> Vec<Box<dyn Strategy>> {
        (0..n)
            .map(|_| Box::new(ExactCooldown::new(env(&[0], Some(limits)), vec![], 0)) as Box<dyn Strategy>)
            .collect()
    }

    fn fleet(n: usize, limits: Limits, sharing: Sharing, delay: Nanos) -> Fleet {
        let spec = FleetSpec {
            instances: n,
            sharing,
            sync_delay: delay,
        };
        Fleet::new(cooldowns(n, limits), spec, TpmCounts::Input)
    }

    #[test]
    fn local_ledgers_admit_the_limit_once_per_instance() {
        let mut f = fleet(3, rpm(1), Sharing::Local, SECOND);
        // Requests 0, 1, 2 go to instances 0, 1, 2: each believes the minute is free.
        for r in 0..3 {
            assert_eq!(send(f.decide(0, &ask(r, 1))), (0, 0));
        }
        assert_eq!(send(f.decide(0, &ask(3, 1))), (0, MINUTE), "instance 0 again");
    }

    #[test]
    fn a_shared_ledger_without_delay_plans_as_one() {
        let mut f = fleet(3, rpm(1), Sharing::Shared, 0);
        assert_eq!(send(f.decide(0, &ask(0, 1))), (0, 0));
        assert_eq!(send(f.decide(0, &ask(1, 1))), (0, MINUTE));
        assert_eq!(send(f.decide(0, &ask(2, 1))), (0, 2 * MINUTE));
    }

    #[test]
    fn a_sync_delay_admits_twice_until_the_others_see_it() {
        let mut f = fleet(2, rpm(1), Sharing::Shared, SECOND);
        assert_eq!(send(f.decide(0, &ask(0, 1))), (0, 0));
        // Instance 1 has not seen it yet: over-admission.
        assert_eq!(send(f.decide(SECOND / 2, &ask(1, 1))), (0, SECOND / 2));
        // At 1 s instance 1 sees instance 0's send at 0, counted from 0 (not from 1 s).
        assert_eq!(send(f.decide(SECOND, &ask(3, 1))), (0, MINUTE + SECOND / 2));
        assert_eq!(send(f.decide(2 * SECOND, &ask(2, 1))), (0, 2 * MINUTE + SECOND / 2));
    }

    #[test]
    fn shared_requests_with_local_tokens_multiply_the_token_limit() {
        let limits = Limits {
            rpm: Some(100),
            tpm: Some(100),
            ..Limits::default()
        };
        let mut f = fleet(2, limits, Sharing::RpmShared, 0);
        assert_eq!(send(f.decide(0, &ask(0, 80))), (0, 0));
        assert_eq!(
            send(f.decide(0, &ask(1, 80))),
            (0, 0),
            "TPM is local: 160 > 100 admitted"
        );
        let mut f = fleet(2, limits, Sharing::Shared, 0);
        assert_eq!(send(f.decide(0, &ask(0, 80))), (0, 0));
        assert_eq!(send(f.decide(0, &ask(1, 80))), (0, MINUTE));
    }

    #[test]
    fn ends_and_withdrawals_free_what_the_others_counted() {
        let limits = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut f = fleet(2, limits, Sharing::Shared, 0);
        assert_eq!(send(f.decide(0, &ask(0, 1))), (0, 0));
        // Instance 1 sees the slot taken and has nothing out: asked again at the next event.
        assert_eq!(f.decide(0, &ask(1, 1)), Decision::Defer);
        f.on_outcome(SECOND, &ask(0, 1), 0, 0, 0, &Outcome::Ok);
        assert_eq!(send(f.decide(SECOND, &ask(1, 1))), (0, SECOND));
    }

    #[test]
    fn an_idle_instance_waiting_on_the_others_is_asked_again_when_it_can_see_more() {
        let limits = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut f = fleet(2, limits, Sharing::Shared, SECOND);
        assert_eq!(send(f.decide(0, &ask(0, 1))), (0, 0));
        assert_eq!(f.decide(SECOND, &ask(1, 1)), Decision::Defer, "no event pending");
        f.on_outcome(2 * SECOND, &ask(0, 1), 0, 0, 0, &Outcome::Ok);
        assert_eq!(f.decide(2 * SECOND, &ask(1, 1)), Decision::Later(3 * SECOND));
        assert_eq!(send(f.decide(3 * SECOND, &ask(1, 1))), (0, 3 * SECOND));
    }

    #[test]
    fn litellm_usage_counters_sync_through_the_shared_ledger() {
        let limits = Limits {
            rpm: Some(3),
            ..Limits::default()
        };
        let spec = FleetSpec {
            instances: 2,
            sharing: Sharing::Shared,
            sync_delay: 0,
        };
        let make = || {
            Box::new(LiteLlm::new(
                env(&[0], Some(limits)),
                crate::strategy::litellm::Routing::Usage,
            )) as Box<dyn Strategy>
        };
        let mut f = Fleet::new(vec![make(), make()], spec, TpmCounts::Input);
        // usage-v2 lets rpm − 1 = 2 through a minute, across the fleet.
        assert!(matches!(f.decide(0, &ask(0, 1)), Decision::Send { .. }));
        assert!(matches!(f.decide(0, &ask(1, 1)), Decision::Send { .. }));
        assert!(matches!(f.decide(0, &ask(2, 1)), Decision::GiveUp(_)));
        assert!(matches!(f.decide(0, &ask(3, 1)), Decision::GiveUp(_)));
    }

    /// Issue 26, item 9: flux pods on a ledger seen 1 s late plan with their share of the room
    /// the others may be taking unseen. Two pods, 4 RPM: each sent one at 0 s before seeing
    /// the other; at 1 s each sees the other's send and asks for two more. Together they may
    /// send two: each sends one, then waits. (Before, each saw room for two and sent two: six
    /// in a minute of four, two quota 429s.)
    #[test]
    fn flux_pods_on_a_late_ledger_plan_with_their_share() {
        let spec = FleetSpec {
            instances: 2,
            sharing: Sharing::Shared,
            sync_delay: SECOND,
        };
        let make = || Box::new(crate::strategy::Flux::new(env(&[0], Some(rpm(4))), vec![], 0)) as Box<dyn Strategy>;
        let mut f = Fleet::new(vec![make(), make()], spec, TpmCounts::Input);
        assert_eq!(send(f.decide(0, &ask(0, 1))), (0, 0));
        assert_eq!(send(f.decide(0, &ask(1, 1))), (0, 0));
        // Requests 2 and 4 go to pod 0, 3 and 5 to pod 1, all asked at 1 s.
        let mut in_first_minute = 2;
        for r in 2..6 {
            match f.decide(SECOND, &ask(r, 1)) {
                Decision::Send { at, .. } if at < MINUTE => in_first_minute += 1,
                Decision::Send { .. } | Decision::Later(_) | Decision::Defer => {}
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(in_first_minute, 4, "no more than the limit in the minute");
        // Once each sees the other's second send (2 s) and its copies are taken back (3 s),
        // the minute is full in every pod's view: the next send waits for the window.
        for (t, r) in [(3 * SECOND, 6), (3 * SECOND, 7)] {
            match f.decide(t, &ask(r, 1)) {
                Decision::Send { at, .. } => assert!(at >= MINUTE, "{at}"),
                Decision::Later(_) | Decision::Defer => {}
                d => panic!("{d:?}"),
            }
        }
    }

    #[test]
    fn strategies_that_keep_no_counts_ignore_the_others() {
        let spec = FleetSpec {
            instances: 2,
            sharing: Sharing::Shared,
            sync_delay: 0,
        };
        let make = || Box::new(RoundRobin::new(&env(&[0, 1], None))) as Box<dyn Strategy>;
        let mut f = Fleet::new(vec![make(), make()], spec, TpmCounts::Input);
        // Both instances start at the first key.
        assert_eq!(send(f.decide(0, &ask(0, 1))).0, 0);
        assert_eq!(send(f.decide(0, &ask(1, 1))).0, 0);
        assert_eq!(f.lanes(), 2);
    }
}
