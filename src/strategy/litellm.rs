//! `litellm_shuffle`, `litellm_least_busy`, `litellm_usage`: LiteLLM's Router with each key as
//! one deployment of each model, told the limits of the key's project (as a user writes
//! `rpm`/`tpm` on every deployment). Routing checked against `flux-sim serve` with 1.106.2;
//! cooldowns and error classes re-read from LiteLLM 1.110.2 (PyPI wheel:
//! `router_utils/cooldown_handlers.py`, `litellm_core_utils/exception_mapping_utils.py`,
//! `utils.py`, `constants.py`).
//!
//! Modelled:
//! - `simple-shuffle` (the default): a weighted random pick among deployments not cooling
//!   down, by `rpm` (else `tpm`, else uniformly);
//! - `least-busy`: the fewest requests in flight, ties to the first;
//! - `usage-based-routing-v2`: counters per calendar minute (UTC), RPM counted before the
//!   call and TPM (input + output) after a success; a deployment is skipped when
//!   `rpm_count + 1 >= rpm` (an off-by-one that lets through rpm − 1 a minute) or when its
//!   TPM count plus the request's input tokens exceeds `tpm`; the lowest TPM count wins. Across
//!   a minute boundary the counters start again, so up to twice the limit passes in 60 s;
//! - a deployment's `rpm` is also its `max_parallel_requests` (a request whose pick is at that
//!   many in flight waits for one to end);
//! - error classes: a 429 is a RateLimitError, Gemini's 400 "API key not valid." an
//!   AuthenticationError (401), a 503 a ServiceUnavailableError; a cooldown is considered
//!   for 401, 429 and 5xx (`_is_cooldown_required`);
//! - cooldown, `allowed_fails` not set (its v2 rules, `_should_cooldown_deployment`): a 429
//!   cools the deployment unless it is the only deployment of the model; so does a minute
//!   (calendar, UTC) in which more than half of at least 5 requests failed (not for a lone
//!   deployment), or all of at least 1,000; and any status `should_retry` refuses (401) at
//!   once. A cooldown lasts `cooldown_time` (default 5 s); LiteLLM reads only a `Retry-After`
//!   header, which Gemini never sends;
//! - `allowed_fails` set (its v1 rules, `should_cooldown_based_on_allowed_fails_policy`): a
//!   deployment cools down at its failure number `allowed_fails + 1` counted within
//!   `cooldown_time` of the first;
//! - a request finding every deployment cooling down (or, for usage-based, over its counters)
//!   fails with "No deployments available" instead of waiting;
//! - retries: `num_retries` (default 2) further attempts, at once (the Router sleeps 0 while
//!   other deployments are healthy), or after `retry_after` when it is set.
//!
//! Not modelled: the Router's exponential sleep (0.5 s doubling to 8 s, + up to 0.75 s) when
//! no other deployment is healthy (here such a request fails as "No deployments available");
//! `allowed_fails_policy` per error class; fallbacks across model groups; Redis-shared
//! cooldowns across instances (a fleet shares only usage-based counters); 403/404 (a 404
//! cools a deployment in LiteLLM; the simulation's `Error` lumps both and does not cool).

use super::kind::{KindDef, Param, Params};
use super::retry::RetryPolicy;
use super::{Ask, Decision, Env, GiveUp, Outcome, Peer, Strategy};
use crate::core::ledger::Limits;
use crate::core::rng::{rng, unit, Stream};
use crate::core::time::{Nanos, SECOND};

/// `litellm_shuffle` as the registry (`strategy::KINDS`) knows it.
pub(super) const SHUFFLE: KindDef = KindDef {
    name: "litellm_shuffle",
    help: "LiteLLM Router (1.110.2), simple-shuffle: weighted random by rpm; cooldown_time (5 s) after a 429 or an invalid key; fails when all cool down",
    takes: ROUTER_SETTINGS,
    requires: &[],
    defaults: ROUTER_DEFAULTS,
    // The Router retries on another deployment at once (num_retries 2).
    retry: RetryPolicy::Immediate { max_attempts: 3 },
    live: true,
    rest: true,
    build: |env, spec| Box::new(LiteLlm::with(env, Routing::Shuffle, &spec.kind.params)),
};

/// `litellm_least_busy` as the registry (`strategy::KINDS`) knows it.
pub(super) const LEAST_BUSY: KindDef = KindDef {
    name: "litellm_least_busy",
    help: "LiteLLM Router (1.110.2), least-busy: fewest in flight; cooldown_time (5 s) after a 429 or an invalid key",
    takes: ROUTER_SETTINGS,
    requires: &[],
    defaults: ROUTER_DEFAULTS,
    retry: RetryPolicy::Immediate { max_attempts: 3 },
    live: true,
    rest: true,
    build: |env, spec| Box::new(LiteLlm::with(env, Routing::LeastBusy, &spec.kind.params)),
};

/// `litellm_usage` as the registry (`strategy::KINDS`) knows it.
pub(super) const USAGE: KindDef = KindDef {
    name: "litellm_usage",
    help: "LiteLLM Router (1.110.2), usage-based-routing-v2: calendar-minute counters, rpm − 1 a minute; cooldown_time (5 s)",
    takes: ROUTER_SETTINGS,
    requires: &[],
    defaults: ROUTER_DEFAULTS,
    retry: RetryPolicy::Immediate { max_attempts: 3 },
    live: true,
    rest: true,
    build: |env, spec| Box::new(LiteLlm::with(env, Routing::Usage, &spec.kind.params)),
};

/// LiteLLM's cooldown after a 429 (`DEFAULT_COOLDOWN_TIME_SECONDS`).
pub const COOLDOWN: Nanos = 5 * SECOND;

/// The Router's settings a scenario may give a `litellm_*` kind.
const ROUTER_SETTINGS: &[Param] = &[
    Param::CooldownTime,
    Param::AllowedFails,
    Param::NumRetries,
    Param::RetryAfter,
];

/// The Router's defaults: `cooldown_time` 5 s, `allowed_fails` unset, `num_retries` 2
/// (`DEFAULT_MAX_RETRIES`), `retry_after` 0.
const ROUTER_DEFAULTS: Params = Params {
    cooldown: COOLDOWN,
    num_retries: 2,
    ..Params::NONE
};

/// A calendar minute in which more than this share of a deployment's requests failed cools it
/// (`DEFAULT_FAILURE_THRESHOLD_PERCENT`), given at least [`MIN_REQUESTS`] of them.
const FAILURE_SHARE: f64 = 0.5;
/// `DEFAULT_FAILURE_THRESHOLD_MINIMUM_REQUESTS`.
const MIN_REQUESTS: u64 = 5;
/// `SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD`: all of this many failing cools even a lone
/// deployment.
const ALL_FAILED_REQUESTS: u64 = 1000;

/// The retry policy of the Router's `num_retries` and `retry_after`.
pub fn router_retry(params: &Params) -> RetryPolicy {
    let max_attempts = params.num_retries.saturating_add(1);
    match params.retry_after {
        0 => RetryPolicy::Immediate { max_attempts },
        d => RetryPolicy::Backoff {
            base: d,
            cap: d,
            jitter: super::retry::Jitter::None,
            max_attempts,
        },
    }
}

/// Which Router routing strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// `simple-shuffle`.
    Shuffle,
    /// `least-busy`.
    LeastBusy,
    /// `usage-based-routing-v2`.
    Usage,
}

impl Routing {
    /// The kind name in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Shuffle => "litellm_shuffle",
            Routing::LeastBusy => "litellm_least_busy",
            Routing::Usage => "litellm_usage",
        }
    }
}

/// One (key, model) deployment.
#[derive(Debug, Clone, Default)]
struct Deployment {
    limits: Limits,
    cooldown_until: Nanos,
    inflight: u64,
    /// Calendar minute of the counters, and the counters.
    minute: i128,
    rpm_count: u64,
    tpm_count: u64,
    /// Calendar minute of the success and failure counts (the v2 cooldown rules), and them.
    health_minute: i128,
    successes: u64,
    failures: u64,
    /// `allowed_fails`: failures counted since `fails_since` (forgotten `cooldown_time` after).
    fails_since: Nanos,
    fails: u32,
}

/// The LiteLLM Router.
#[derive(Debug, Clone)]
pub struct LiteLlm {
    env: Env,
    routing: Routing,
    /// Deployment of (key, model) at `key * models + model`.
    deployments: Vec<Deployment>,
    cooldown: Nanos,
    allowed_fails: Option<u32>,
}

impl LiteLlm {
    /// The Router over every key of `env`, routing by `routing`, with its default settings.
    pub fn new(env: Env, routing: Routing) -> Self {
        Self::with(env, routing, &ROUTER_DEFAULTS)
    }

    /// The Router with the settings in `params` (`cooldown_time`, `allowed_fails`).
    pub fn with(env: Env, routing: Routing, params: &Params) -> Self {
        let mut deployments = Vec::new();
        for &p in &env.key_project {
            for m in 0..env.models {
                deployments.push(Deployment {
                    limits: env.limits[p * env.models + m],
                    minute: i128::MIN,
                    health_minute: i128::MIN,
                    ..Deployment::default()
                });
            }
        }
        LiteLlm {
            env,
            routing,
            deployments,
            cooldown: params.cooldown,
            allowed_fails: params.allowed_fails,
        }
    }

    /// Counts a success or a failure of deployment `d` in the calendar minute of `now`.
    fn count(&mut self, d: usize, now: Nanos, failed: bool) {
        let minute = self.env.calendar.minute_start(now);
        let dep = &mut self.deployments[d];
        if dep.health_minute != minute {
            dep.health_minute = minute;
            dep.successes = 0;
            dep.failures = 0;
        }
        if failed {
            dep.failures += 1;
        } else {
            dep.successes += 1;
        }
    }

    /// Whether the failure `outcome` of deployment `d` (already counted) cools it down.
    fn cools(&mut self, d: usize, now: Nanos, outcome: &Outcome) -> bool {
        // `_is_cooldown_required`: 401, 429 and 5xx (the simulation's `Error` is a 403/404).
        if !matches!(
            outcome,
            Outcome::RateLimited { .. } | Outcome::Unservable { .. } | Outcome::InvalidKey | Outcome::Unavailable
        ) {
            return false;
        }
        let cooldown = self.cooldown;
        let dep = &mut self.deployments[d];
        if let Some(allowed) = self.allowed_fails {
            if dep.fails == 0 || now >= dep.fails_since.saturating_add(cooldown) {
                dep.fails_since = now;
                dep.fails = 0;
            }
            dep.fails += 1;
            return dep.fails > allowed;
        }
        let lone = self.env.key_project.len() == 1;
        let total = dep.successes + dep.failures;
        let share = dep.failures as f64 / total.max(1) as f64;
        match outcome {
            Outcome::RateLimited { .. } | Outcome::Unservable { .. } if !lone => true,
            _ if dep.failures == total && total >= ALL_FAILED_REQUESTS => true,
            _ if share > FAILURE_SHARE && total >= MIN_REQUESTS && !lone => true,
            // `should_retry` refuses a 401: cooled at once.
            Outcome::InvalidKey => true,
            _ => false,
        }
    }

    fn settle(&mut self, d: usize, now: Nanos) {
        let minute = self.env.calendar.minute_start(now);
        let dep = &mut self.deployments[d];
        if dep.minute != minute {
            dep.minute = minute;
            dep.rpm_count = 0;
            dep.tpm_count = 0;
        }
    }

    fn weight(l: &Limits) -> Option<u64> {
        l.rpm.or(l.tpm)
    }
}

impl Strategy for LiteLlm {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        let models = self.env.models;
        let keys = self.env.key_project.len();
        let healthy: Vec<usize> = (0..keys)
            .map(|k| k * models + ask.model)
            .filter(|&d| self.deployments[d].cooldown_until <= now)
            .collect();
        let pick = match self.routing {
            Routing::Shuffle => {
                let weights: Vec<u64> = healthy
                    .iter()
                    .map(|&d| Self::weight(&self.deployments[d].limits).unwrap_or(1))
                    .collect();
                let total: u64 = weights.iter().sum();
                let u = unit(&mut rng(self.env.seed, Stream::Strategy, ask.request, ask.attempts));
                if healthy.is_empty() {
                    None
                } else if total == 0 {
                    Some(healthy[((u * healthy.len() as f64) as usize).min(healthy.len() - 1)])
                } else {
                    let target = (u * total as f64) as u64;
                    let mut acc = 0;
                    healthy
                        .iter()
                        .zip(&weights)
                        .find(|(_, &w)| {
                            acc += w;
                            target < acc
                        })
                        .map(|(&d, _)| d)
                        .or(healthy.last().copied())
                }
            }
            Routing::LeastBusy => healthy.iter().copied().min_by_key(|&d| self.deployments[d].inflight),
            Routing::Usage => {
                let mut best: Option<(u64, usize)> = None;
                for &d in &healthy {
                    self.settle(d, now);
                    let dep = &self.deployments[d];
                    if dep.limits.rpm.is_some_and(|l| dep.rpm_count + 1 >= l)
                        || dep.limits.tpm.is_some_and(|l| dep.tpm_count + ask.input_tokens > l)
                    {
                        continue;
                    }
                    if best.is_none_or(|(t, _)| dep.tpm_count < t) {
                        best = Some((dep.tpm_count, d));
                    }
                }
                best.map(|(_, d)| d)
            }
        };
        let Some(d) = pick else {
            // "No deployments available for selected model".
            return Decision::GiveUp(GiveUp::Exhausted);
        };
        let dep = &mut self.deployments[d];
        if dep.limits.rpm.is_some_and(|l| dep.inflight >= l) {
            // max_parallel_requests: wait for one of its requests to end.
            return Decision::Defer;
        }
        dep.inflight += 1;
        if self.routing == Routing::Usage {
            dep.rpm_count += 1;
        }
        Decision::Send {
            key: d / models,
            model: ask.model,
            at: now,
        }
    }

    /// Only usage-based routing's counters live in Redis across instances (the in-flight counts
    /// and cooldowns stay in each instance here).
    fn observe(&mut self, now: Nanos, peer: &Peer) {
        if self.routing != Routing::Usage {
            return;
        }
        let (key, model, at, requests, tokens) = match *peer {
            Peer::Sent { key, model, at, .. } => (key, model, at, 1, 0),
            Peer::Ended {
                key, model, at, tokens, ..
            } => (key, model, at, 0, tokens),
            Peer::Withdrawn { .. } => return,
        };
        let d = key * self.env.models + model;
        self.settle(d, now);
        let dep = &mut self.deployments[d];
        if self.env.calendar.minute_start(at) == dep.minute {
            dep.rpm_count += requests;
            dep.tpm_count += tokens;
        }
    }

    /// It reads the status code only: an unservable 429 is a 429 to it.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, _: Nanos, outcome: &Outcome) {
        let d = key * self.env.models + model;
        self.deployments[d].inflight = self.deployments[d].inflight.saturating_sub(1);
        match outcome {
            Outcome::Ok => {
                self.count(d, now, false);
                if self.routing == Routing::Usage {
                    self.settle(d, now);
                    self.deployments[d].tpm_count += ask.input_tokens + ask.output_tokens;
                }
            }
            // Any 429 (LiteLLM cannot tell one that no retry cures). Gemini's 400 "API key not
            // valid." is mapped to AuthenticationError (401, in exception_mapping_utils.py),
            // which `should_retry` refuses: cooled at once.
            _ => {
                self.count(d, now, true);
                if self.cools(d, now, outcome) {
                    let until = now + self.cooldown;
                    let dep = &mut self.deployments[d];
                    dep.cooldown_until = dep.cooldown_until.max(until);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Dims;
    use crate::core::time::MINUTE;
    use crate::strategy::tests::env;

    fn ask(request: u64) -> Ask {
        Ask {
            request,
            input_tokens: 10,
            output_tokens: 5,
            model: 0,
            attempts: 0,
        }
    }

    fn key(d: Decision) -> usize {
        match d {
            Decision::Send { key, .. } => key,
            d => panic!("{d:?}"),
        }
    }

    const RL: Outcome = Outcome::RateLimited {
        violated: Dims::EMPTY,
        retry_delay: Some(30 * SECOND),
        quota: Limits::UNLIMITED,
        quota_model: None,
    };

    #[test]
    fn usage_based_v2_lets_through_rpm_minus_one_a_minute_and_twice_across_a_boundary() {
        let limits = Limits {
            rpm: Some(10),
            ..Limits::default()
        };
        let mut s = LiteLlm::new(env(&[0], Some(limits)), Routing::Usage);
        // The scenario starts at 09:00:00: calendar minutes begin at multiples of 60 s.
        let mut sent = 0;
        for i in 0..20 {
            let now = 58 * SECOND + i * 50 * crate::core::time::MILLISECOND;
            match s.decide(now, &ask(i)) {
                Decision::Send { .. } => {
                    sent += 1;
                    s.on_outcome(now, &ask(i), 0, 0, now, &Outcome::Ok);
                }
                Decision::GiveUp(GiveUp::Exhausted) => {}
                d => panic!("{d:?}"),
            }
        }
        // 09:00:58–09:00:59.95: 9 pass (rpm − 1), the rest fail at once.
        assert_eq!(sent, 9);
        // A second later a new calendar minute: 9 more, 18 within 3 s against a limit of 10.
        for i in 0..20 {
            if let Decision::Send { .. } = s.decide(MINUTE + SECOND, &ask(100 + i)) {
                sent += 1;
                s.on_outcome(MINUTE + SECOND, &ask(100 + i), 0, 0, 0, &Outcome::Ok);
            }
        }
        assert_eq!(sent, 18);
    }

    #[test]
    fn a_429_cools_a_deployment_for_5_s_and_all_cooling_fails_the_request() {
        let mut s = LiteLlm::new(env(&[0, 1], None), Routing::LeastBusy);
        assert_eq!(key(s.decide(0, &ask(0))), 0);
        assert_eq!(key(s.decide(0, &ask(1))), 1, "least busy");
        s.on_outcome(SECOND, &ask(0), 0, 0, 0, &RL);
        s.on_outcome(SECOND, &ask(1), 1, 0, 0, &RL);
        // RetryInfo said 30 s; LiteLLM never reads it.
        assert_eq!(s.decide(2 * SECOND, &ask(2)), Decision::GiveUp(GiveUp::Exhausted));
        assert_eq!(key(s.decide(6 * SECOND, &ask(2))), 0);
    }

    /// Issue 33, item 7: LiteLLM cannot tell an unservable 429 from another: it cools the
    /// deployment down just the same.
    #[test]
    fn an_unservable_429_cools_the_deployment_like_any_429() {
        // Two keys: a lone key is never cooled by a 429 (LiteLLM's v2 rules).
        let mut s = LiteLlm::new(env(&[0, 1], None), Routing::LeastBusy);
        assert_eq!(key(s.decide(0, &ask(0))), 0);
        s.on_outcome(SECOND, &ask(0), 0, 0, 0, &Outcome::UNSERVABLE_UNSTATED);
        // Key 0 cools 5 s: the tie between two idle keys goes to key 1 meanwhile.
        assert_eq!(key(s.decide(2 * SECOND, &ask(1))), 1);
        s.on_outcome(2 * SECOND, &ask(1), 1, 0, 0, &Outcome::Ok);
        assert_eq!(key(s.decide(6 * SECOND, &ask(2))), 0);
    }

    #[test]
    fn an_invalid_key_cools_its_deployment_at_once() {
        // LiteLLM maps "API key not valid." to AuthenticationError (401): cooled at once, so
        // least-busy's next pick at the same instant is the other key, not the dead one again.
        for routing in [Routing::LeastBusy, Routing::Usage, Routing::Shuffle] {
            let mut s = LiteLlm::new(env(&[0, 1], None), routing);
            let mut a = ask(0);
            let k = key(s.decide(0, &a));
            s.on_outcome(0, &a, k, 0, 0, &Outcome::InvalidKey);
            a.attempts = 1;
            assert_eq!(key(s.decide(0, &a)), 1 - k, "{routing:?}");
        }
    }

    #[test]
    fn cooldown_rules_follow_the_routers_v2_and_v1_logic() {
        // A lone deployment is not cooled by a 429 (`is_single_deployment_model_group`).
        let mut s = LiteLlm::new(env(&[0], None), Routing::LeastBusy);
        s.decide(0, &ask(0));
        s.on_outcome(0, &ask(0), 0, 0, 0, &RL);
        assert_eq!(key(s.decide(0, &ask(1))), 0);
        // 503s cool a deployment once more than half of at least 5 requests this minute failed.
        let mut s = LiteLlm::new(env(&[0, 1], None), Routing::LeastBusy);
        for i in 0..2 {
            s.on_outcome(i, &ask(i), 0, 0, 0, &Outcome::Unavailable);
            assert_eq!(key(s.decide(i, &ask(10 + i))), 0, "{i} failures");
            s.on_outcome(i, &ask(10 + i), 0, 0, 0, &Outcome::Ok);
        }
        // 2 failures and 2 successes; the 3rd failure makes 3 of 5.
        s.on_outcome(5, &ask(5), 0, 0, 0, &Outcome::Unavailable);
        assert_eq!(key(s.decide(5, &ask(20))), 1, "cooled");
        assert_eq!(key(s.decide(5 + COOLDOWN, &ask(21))), 0, "back after cooldown_time");
        // allowed_fails = 2 and cooldown_time = 60 s: the third failure cools, for 60 s, and
        // an invalid key waits its turn too.
        let p = Params {
            allowed_fails: Some(2),
            cooldown: 60 * SECOND,
            ..ROUTER_DEFAULTS
        };
        let mut s = LiteLlm::with(env(&[0, 1], None), Routing::LeastBusy, &p);
        for i in 0..2 {
            s.on_outcome(i, &ask(i), 0, 0, 0, &Outcome::InvalidKey);
            assert_eq!(key(s.decide(i, &ask(10 + i))), 0);
            s.on_outcome(i, &ask(10 + i), 0, 0, 0, &Outcome::Ok);
        }
        s.on_outcome(2, &ask(2), 0, 0, 0, &Outcome::InvalidKey);
        assert_eq!(key(s.decide(2, &ask(20))), 1);
        s.on_outcome(2, &ask(20), 1, 0, 0, &Outcome::Ok);
        assert_eq!(key(s.decide(61 * SECOND, &ask(21))), 0);
    }

    #[test]
    fn num_retries_and_retry_after_are_the_retry_policy() {
        assert_eq!(
            router_retry(&ROUTER_DEFAULTS),
            RetryPolicy::Immediate { max_attempts: 3 }
        );
        let p = Params {
            num_retries: 5,
            retry_after: 2 * SECOND,
            ..ROUTER_DEFAULTS
        };
        assert_eq!(router_retry(&p).next_delay(1, &RL, 0.9), Some(2 * SECOND));
        assert_eq!(router_retry(&p).next_delay(6, &RL, 0.9), None, "6 attempts in all");
    }

    #[test]
    fn shuffle_weighs_by_rpm_and_rpm_caps_parallel_requests() {
        let mut e = env(&[0, 1], None);
        e.limits = vec![
            Limits {
                rpm: Some(3),
                ..Limits::default()
            },
            Limits {
                rpm: Some(1),
                ..Limits::default()
            },
        ];
        let mut s = LiteLlm::new(e, Routing::Shuffle);
        let mut count = [0u32; 2];
        for i in 0..4000 {
            let k = key(s.decide(0, &ask(i)));
            count[k] += 1;
            s.on_outcome(0, &ask(i), k, 0, 0, &Outcome::Ok);
        }
        let share = count[0] as f64 / 4000.0;
        assert!((0.72..0.78).contains(&share), "rpm 3 : 1 gives 3/4: {count:?}");
        // Key 2 (rpm 1) allows one request in flight: the next pick of it waits.
        let mut deferred = 0;
        for i in 0..20 {
            if s.decide(0, &ask(10_000 + i)) == Decision::Defer {
                deferred += 1;
            }
        }
        assert!(deferred > 0);
    }
}
