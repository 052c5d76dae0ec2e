//! Per-strategy metrics: outcome counts, 429s by dimension, wait and latency distributions
//! (HDR histograms, constant memory), and the result rows of a run.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::core::ledger::{Dimension, Dims};
use crate::core::time::{Nanos, MICROSECOND, MINUTE, SECOND};
use crate::sim::bound::Bound;

/// 429 responses by dimension (a response with several violated dimensions counts in each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ByDimension {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute.
    pub tpm: u64,
    /// Requests per day.
    pub rpd: u64,
    /// Tokens per day.
    pub tpd: u64,
    /// Concurrency.
    pub concurrency: u64,
    /// Shared-capacity 429s without quota details.
    pub capacity: u64,
    /// 429s for a billing account's spend cap.
    pub spend: u64,
}

impl ByDimension {
    /// Counts a 429 naming `violated` (none: a capacity 429).
    pub fn count(&mut self, violated: Dims) {
        if violated.is_empty() {
            self.capacity += 1;
        }
        for d in violated.iter() {
            match d {
                Dimension::Rpm => self.rpm += 1,
                Dimension::Tpm => self.tpm += 1,
                Dimension::Rpd => self.rpd += 1,
                Dimension::Tpd => self.tpd += 1,
                Dimension::Concurrency => self.concurrency += 1,
            }
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// One strategy's results (the public JSON shape of `run --format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyResult {
    /// Strategy name.
    pub strategy: String,
    /// Strategy kind.
    pub kind: String,
    /// Its retry policy, in short (see [`retry_short`]).
    pub retry: String,
    /// Requests that arrived (= completed + failed + unservable + pending).
    pub requests: u64,
    /// Completed successfully.
    pub completed: u64,
    /// Given up (retries exhausted, keys dead, non-retryable errors).
    pub failed: u64,
    /// Could never fit the limits.
    pub unservable: u64,
    /// Not finished when the simulation stopped.
    pub pending: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// 429 responses by dimension.
    pub rate_limited_by: ByDimension,
    /// Of the 429s, those from which a client not told that an id is re-routed (`routed_to`)
    /// learns that it draws on another model's quota: the first, per pair of model called and
    /// model whose quota the 429 named, to name another model's quota; and, where the run
    /// knows the server's re-routes, the first on a re-route's target to name the target's
    /// own quota (whose sends beside the old id's filled it) — at most one per re-route in
    /// all. No client that was not told can avoid it. Absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub rerouted_first_429s: u64,
    /// Of the 429s, the first per project and model naming only requests per day where the
    /// day was refused for requests spent before the run (`topology.project.X.rpd_used`): no
    /// client sees another's requests of the day, so none can avoid it. Absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub spent_before_429s: u64,
    /// Other error responses (400, 403, 404, 503).
    pub other_errors: u64,
    /// Requests sent (= completed + rate_limited + other_errors + in_flight).
    pub attempts: u64,
    /// Attempts still awaiting their response when the simulation stopped.
    pub in_flight: u64,
    /// Completed requests per minute of the span (a closed batch: the longer of its makespan
    /// and the shortest possible makespan, so it never exceeds the bound).
    pub throughput_per_min: f64,
    /// Input tokens of completed requests per minute of the same span.
    pub input_tokens_per_min: f64,
    /// Arrival to the send of the attempt that succeeded.
    pub wait_ms: Percentiles,
    /// The 99th percentile of the wait over **all** requests, a request never completed
    /// (failed, unservable, pending) counting as waiting forever: `None` when fewer than 99%
    /// completed. Abandoning work cannot lower it, as it lowers `wait_ms.p99` (waits of the
    /// completed only). Not in the JSON (the sweep's CSV and chart use it).
    #[serde(skip)]
    pub wait_all_p99_ms: Option<f64>,
    /// Arrival to completion.
    pub latency_ms: Percentiles,
    /// Time until the last request of a closed batch ended; `null` if it did not end.
    pub makespan_s: Option<f64>,
    /// The most any strategy could complete per minute (see `bound`).
    pub upper_bound_per_min: f64,
    /// Throughput / upper bound.
    pub efficiency: f64,
    /// The most any billing account with a spend cap spent within one spend window, in USD
    /// (absent when no account has a cap; the simulation knows it, `drive` does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_spend_usd: Option<f64>,
    /// Live sessions: how they ended and how full their slots were (absent for requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionMetrics>,
    /// The clairvoyant reference schedule for this strategy's models, and this strategy's
    /// share of it (absent where the scenario has none; see `sim::clairvoyant`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceShare>,
    /// Set when the engine stopped the run because a request was retried at one instant with
    /// nothing changing (a livelock): what it found, naming the strategy and the request. A
    /// command that meets one reports it as an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub livelock: Option<String>,
}

/// A strategy measured against the clairvoyant reference schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceShare {
    /// Requests the reference completes.
    pub completed: u64,
    /// Its makespan (a closed batch it completes), seconds.
    pub makespan_s: Option<f64>,
    /// Its priority: "arrival order" or "smallest first".
    pub order: &'static str,
    /// The strategy's completions over the reference's (may exceed 1: the reference is a
    /// good schedule, not the best).
    pub completed_share: f64,
    /// The reference's makespan over the strategy's (1 = as fast; `null` when either did not
    /// finish the batch).
    pub makespan_share: Option<f64>,
}

impl ReferenceShare {
    /// `result` against reference `r`.
    pub fn of(result: &StrategyResult, r: &crate::sim::clairvoyant::Reference) -> Self {
        let makespan_s = r.makespan.map(|m| round3(m as f64 / SECOND as f64));
        ReferenceShare {
            completed: r.completed,
            makespan_s,
            order: r.order,
            completed_share: if r.completed > 0 {
                round3(result.completed as f64 / r.completed as f64)
            } else {
                0.0
            },
            makespan_share: match (makespan_s, result.makespan_s) {
                // A strategy that gave up on work has a makespan but did not do the batch.
                (Some(best), Some(mine)) if mine > 0.0 && result.failed + result.pending == 0 => {
                    Some(round3(best / mine))
                }
                _ => None,
            },
        }
    }
}

/// How a strategy's Live sessions went (a session workload's `completed` counts sessions the
/// client closed itself; its waits are the waits to connect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SessionMetrics {
    /// Sessions refused for quota: `setupComplete`, then close 1011 (close 1006 when the server
    /// checks at connect); each is also a 429 of `rate_limited`.
    pub closes_1011: u64,
    /// Sessions the server ended at the connection's lifetime (`goAway`, close 1008).
    pub ends_1008: u64,
    /// Sessions the server ended at the session length cap.
    pub ends_cap: u64,
    /// Slot-time the sessions held (from connect to release, within the span) over the slots
    /// the limits give (`null` when some project has no session limit).
    pub slot_utilisation: Option<f64>,
}

/// What a recorder counts of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Quota refusals.
    pub refused: u64,
    /// Ended at the lifetime.
    pub lifetime: u64,
    /// Ended at the cap.
    pub cap: u64,
    /// Each admitted session's connect and slot release.
    pub held: Vec<(Nanos, Nanos)>,
}

impl SessionCounts {
    /// Slot-nanoseconds held within `[0, until]`.
    pub fn held_until(&self, until: Nanos) -> u128 {
        self.held
            .iter()
            .map(|&(from, to)| to.min(until).saturating_sub(from) as u128)
            .sum()
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Virtual time simulated (the longest span over strategies).
    pub simulated_seconds: f64,
    /// Settings Google does not document that this run's answer rests on (the scenario's
    /// value or its default), each as `setting = value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assumes: Vec<String>,
    /// The fleet each strategy ran as, when more than one instance (see `[fleet]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// One row per strategy, in the order run.
    pub results: Vec<StrategyResult>,
}

impl RunResult {
    /// The first livelock a strategy of the run met (see [`StrategyResult::livelock`]).
    pub fn livelock(&self) -> Option<&str> {
        self.results.iter().find_map(|r| r.livelock.as_deref())
    }
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// Rounds to 3 decimals so JSON stays readable (deterministically).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Collects one strategy's outcomes.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Requests that arrived.
    pub requests: u64,
    /// Completed.
    pub completed: u64,
    /// Given up.
    pub failed: u64,
    /// Unservable.
    pub unservable: u64,
    /// 429 responses.
    pub rate_limited: u64,
    /// 429s by dimension.
    pub by_dim: ByDimension,
    /// 429s from which a re-route can be learned ([`StrategyResult::rerouted_first_429s`]).
    pub rerouted_first: u64,
    /// The (model called, model whose quota a 429 named) pairs seen, the two different, and
    /// the targets whose own first 429 was seen.
    named_other: Vec<(usize, usize)>,
    /// The server's re-routes, `(id, target)`, where known ([`Recorder::with_routes`]).
    routes: Vec<(usize, usize)>,
    /// 429s for a day spent before the run ([`StrategyResult::spent_before_429s`]).
    pub spent_before: u64,
    /// The (project, quota model) pairs whose day spent before the run a 429 showed.
    spent_seen: Vec<(usize, usize)>,
    /// Other errors.
    pub other_errors: u64,
    /// Attempts sent.
    pub attempts: u64,
    /// Attempts admitted and not yet completed.
    pub in_flight: u64,
    /// Input tokens of completed requests.
    pub completed_input_tokens: u64,
    /// When the last request ended.
    pub last_end: Nanos,
    /// Live sessions' ends and slot time.
    pub sessions: SessionCounts,
    wait: Histogram<u64>,
    latency: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // Microseconds, up to 400 days: any horizon a scenario can reasonably have.
        let h = || Histogram::<u64>::new_with_bounds(1, 400 * 86_400 * 1_000_000, 3).expect("valid bounds");
        Recorder {
            requests: 0,
            completed: 0,
            failed: 0,
            unservable: 0,
            rate_limited: 0,
            by_dim: ByDimension::default(),
            rerouted_first: 0,
            named_other: Vec::new(),
            routes: Vec::new(),
            spent_before: 0,
            spent_seen: Vec::new(),
            other_errors: 0,
            attempts: 0,
            in_flight: 0,
            completed_input_tokens: 0,
            last_end: 0,
            sessions: SessionCounts::default(),
            wait: h(),
            latency: h(),
        }
    }

    /// A 429 naming `violated` (none: a capacity 429).
    pub fn rate_limited(&mut self, violated: Dims) {
        self.rate_limited += 1;
        self.by_dim.count(violated);
    }

    /// An empty recorder that knows the server's re-routes whose calls draw on their target's
    /// quota, `(id, target)` (a simulation's scenario; a real server's are not known).
    pub fn with_routes(routes: Vec<(usize, usize)>) -> Self {
        Recorder { routes, ..Self::new() }
    }

    /// A 429 naming `violated` of the quota of `quota_model` (when known) for a call to
    /// `asked`: the first one per pair that names another model's quota, and the first on a
    /// known re-route's target naming its own, are how a client not told of a re-route learns
    /// it, at most one per known re-route ([`StrategyResult::rerouted_first_429s`]).
    pub fn rate_limited_on(&mut self, violated: Dims, asked: usize, quota_model: Option<usize>) {
        self.rate_limited(violated);
        let Some(q) = quota_model else {
            return;
        };
        let into = self.routes.iter().filter(|r| r.1 == q).count();
        if (q == asked && into == 0) || self.named_other.contains(&(asked, q)) {
            return;
        }
        let learned = self.named_other.iter().filter(|p| p.1 == q).count();
        self.named_other.push((asked, q));
        if self.routes.is_empty() || learned < into {
            self.rerouted_first += 1;
        }
    }

    /// The 429 just counted ([`Recorder::rate_limited_on`]) refused a day on `project` for
    /// `quota_model` that was spent before the run: the first per pair is a learning one
    /// ([`StrategyResult::spent_before_429s`]).
    pub fn day_spent_before(&mut self, project: usize, quota_model: usize) {
        if !self.spent_seen.contains(&(project, quota_model)) {
            self.spent_seen.push((project, quota_model));
            self.spent_before += 1;
        }
    }

    /// A 429 for the account's spend cap.
    pub fn spend_limited(&mut self) {
        self.rate_limited += 1;
        self.by_dim.spend += 1;
    }

    /// A completed request.
    pub fn completed(&mut self, arrival: Nanos, sent: Nanos, done: Nanos, input_tokens: u64) {
        self.completed += 1;
        self.completed_input_tokens += input_tokens;
        self.wait.saturating_record((sent - arrival) / MICROSECOND);
        self.latency.saturating_record((done - arrival) / MICROSECOND);
        self.last_end = self.last_end.max(done);
    }

    /// The cumulative distribution of waits: (wait in ms, fraction of **all** requests that
    /// completed having waited at most that long), one point per histogram bucket that holds
    /// values. Requests that failed, were unservable or are unfinished never complete, so a
    /// strategy that abandons work never reaches 1.
    pub fn wait_cdf(&self) -> Vec<(f64, f64)> {
        let total = self.requests.max(self.wait.len()).max(1) as f64;
        let mut cum = 0u64;
        self.wait
            .iter_recorded()
            .map(|v| {
                cum += v.count_at_value();
                (
                    round3(self.wait.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0),
                    cum as f64 / total,
                )
            })
            .collect()
    }

    /// The 99th percentile of the wait (microseconds) over every request that arrived, one
    /// never completed counting as waiting forever: the wait of the `⌈0.99 × requests⌉`-th
    /// shortest, `None` when that one never completed.
    pub fn wait_all_p99(&self) -> Option<u64> {
        let requests = self.requests.max(self.wait.len());
        let rank = (99 * requests).div_ceil(100).max(1);
        if rank > self.wait.len() {
            return None;
        }
        let mut seen = 0u64;
        self.wait.iter_recorded().find_map(|v| {
            seen += v.count_at_value();
            (seen >= rank).then(|| self.wait.highest_equivalent(v.value_iterated_to()))
        })
    }

    /// Turns the counts into a result row. `span` is the measured time (makespan of a closed
    /// batch, or the open workload's duration); `until` where the run stopped (the horizon);
    /// `bound` the strategy's upper bound (see [`crate::sim::bound`]); `closed` whether the
    /// workload is a closed batch.
    ///
    /// A closed batch's rates are taken over `max(span, bound.best_span)` when the strategy did
    /// all it could (every request completed or unservable, or as many completed as the bound
    /// allows); over `max(until, bound.best_span)` when it gave up on work or left it pending:
    /// the batch is not done until the horizon. So neither throughput nor efficiency can exceed
    /// the bound, and a strategy that abandons work never rates above one with the same bound
    /// that completes more.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &self,
        strategy: &str,
        kind: &str,
        pending: u64,
        span: Nanos,
        until: Nanos,
        makespan: Option<Nanos>,
        bound: &Bound,
        closed: bool,
    ) -> StrategyResult {
        let (bound_per_min, bound_span) = (bound.per_min, bound.best_span);
        let did_all = (pending == 0 && self.failed == 0) || self.completed >= bound.possible;
        let span = if closed && !did_all { span.max(until) } else { span };
        let minutes = span.max(bound_span).max(1) as f64 / MINUTE as f64;
        let pct = |h: &Histogram<u64>| {
            let ms = |v: u64| round3(v as f64 / 1000.0);
            if h.is_empty() {
                Percentiles::default()
            } else {
                Percentiles {
                    p50: ms(h.value_at_quantile(0.5)),
                    p90: ms(h.value_at_quantile(0.9)),
                    p99: ms(h.value_at_quantile(0.99)),
                    max: ms(h.max()),
                }
            }
        };
        let throughput = self.completed as f64 / minutes;
        StrategyResult {
            strategy: strategy.to_string(),
            kind: kind.to_string(),
            retry: String::new(),
            requests: self.requests,
            completed: self.completed,
            failed: self.failed,
            unservable: self.unservable,
            pending,
            rate_limited: self.rate_limited,
            rate_limited_by: self.by_dim,
            rerouted_first_429s: self.rerouted_first,
            spent_before_429s: self.spent_before,
            other_errors: self.other_errors,
            attempts: self.attempts,
            in_flight: self.in_flight,
            throughput_per_min: round3(throughput),
            input_tokens_per_min: round3(self.completed_input_tokens as f64 / minutes),
            wait_ms: pct(&self.wait),
            wait_all_p99_ms: self.wait_all_p99().map(|v| round3(v as f64 / 1000.0)),
            latency_ms: pct(&self.latency),
            makespan_s: makespan.map(|m| round3(m as f64 / SECOND as f64)),
            upper_bound_per_min: round3(bound_per_min),
            efficiency: if bound_per_min > 0.0 {
                round3(throughput / bound_per_min)
            } else {
                0.0
            },
            peak_spend_usd: None,
            sessions: None,
            reference: None,
            livelock: None,
        }
    }
}

/// A retry policy in a few words, for tables: `none`, `at once ×5`, `backoff 1s–60s ×5`,
/// `RetryInfo ∞` (unlimited attempts).
pub fn retry_short(p: &crate::strategy::retry::RetryPolicy) -> String {
    use crate::strategy::retry::RetryPolicy;
    let d = crate::core::time::format_duration;
    let n = |m: u32| {
        if m == u32::MAX {
            "∞".to_string()
        } else {
            format!("×{m}")
        }
    };
    match *p {
        RetryPolicy::None => "none".into(),
        RetryPolicy::Immediate { max_attempts } => format!("at once {}", n(max_attempts)),
        RetryPolicy::Backoff {
            base,
            cap,
            max_attempts,
            ..
        } => format!("backoff {}–{} {}", d(base), d(cap), n(max_attempts)),
        RetryPolicy::RetryInfo { max_attempts, .. } => format!("RetryInfo {}", n(max_attempts.unwrap_or(u32::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MILLISECOND;

    /// The p99 over all requests counts one never completed as waiting forever: abandoning
    /// the slowest requests cannot shorten it, as it shortens the p99 of the completed.
    #[test]
    fn the_p99_wait_over_all_requests_counts_abandoned_work_as_never_done() {
        let mut r = Recorder::new();
        r.requests = 200;
        for i in 1..=198u64 {
            r.completed(0, i * MILLISECOND, i * MILLISECOND + 1, 1);
        }
        // 198 of 200 done: the 198th shortest wait (198 ms) is the p99 over all.
        let p99 = r.wait_all_p99().unwrap() as f64 / 1000.0;
        assert!((197.0..=199.0).contains(&p99), "{p99}");
        // 197 of 200 done: the 198th never completed, so the p99 is never reached, though
        // the p99 of the completed (196 ms) is shorter than before.
        let mut fewer = Recorder::new();
        fewer.requests = 200;
        for i in 1..=197u64 {
            fewer.completed(0, i * MILLISECOND, i * MILLISECOND + 1, 1);
        }
        assert_eq!(fewer.wait_all_p99(), None);
        assert!(fewer.wait.value_at_quantile(0.99) < r.wait.value_at_quantile(0.99));
    }

    /// A 429 naming another model's quota counts once per pair of model called and quota
    /// model, apart from the 429s naming the model's own (compare does not hold it against
    /// flux: it is how a client learns a re-route it was not told of).
    #[test]
    fn only_the_first_429_per_pair_naming_another_models_quota_is_the_rerouting_one() {
        let mut r = Recorder::new();
        let mut rpm = Dims::EMPTY;
        rpm.insert(Dimension::Rpm);
        r.rate_limited_on(rpm, 0, Some(0));
        r.rate_limited_on(rpm, 0, None);
        r.rate_limited_on(rpm, 0, Some(1));
        r.rate_limited_on(rpm, 0, Some(1));
        r.rate_limited_on(rpm, 2, Some(1));
        assert_eq!((r.rate_limited, r.by_dim.rpm, r.rerouted_first), (5, 5, 2));
    }

    /// A day spent before the run counts once per project and quota model: the first 429 is
    /// how a client learns of it, a later one is avoidable.
    #[test]
    fn only_the_first_429_per_project_on_a_day_spent_before_is_a_learning_one() {
        let mut r = Recorder::new();
        r.day_spent_before(1, 0);
        r.day_spent_before(1, 0);
        r.day_spent_before(2, 0);
        r.day_spent_before(1, 1);
        assert_eq!(r.spent_before, 3);
    }

    /// Where the run knows the server's re-routes, the first 429 on a target naming its own
    /// quota is the learning one too (the target's sends and the old id's filled it), and no
    /// more such 429s are counted than there are re-routes into that target.
    #[test]
    fn a_targets_own_first_429_counts_once_per_known_re_route() {
        let mut rpm = Dims::EMPTY;
        rpm.insert(Dimension::Rpm);
        // 0 is re-routed to 1; 2 is not re-routed.
        let mut r = Recorder::with_routes(vec![(0, 1)]);
        r.rate_limited_on(rpm, 2, Some(2));
        r.rate_limited_on(rpm, 1, Some(1));
        r.rate_limited_on(rpm, 1, Some(1));
        r.rate_limited_on(rpm, 0, Some(1));
        assert_eq!((r.rate_limited, r.rerouted_first), (4, 1));
        // The old id's 429 first: the target's own later is not counted.
        let mut r = Recorder::with_routes(vec![(0, 1)]);
        r.rate_limited_on(rpm, 0, Some(1));
        r.rate_limited_on(rpm, 1, Some(1));
        assert_eq!(r.rerouted_first, 1);
        // Two ids re-routed to one target: two.
        let mut r = Recorder::with_routes(vec![(0, 1), (2, 1)]);
        r.rate_limited_on(rpm, 1, Some(1));
        r.rate_limited_on(rpm, 0, Some(1));
        r.rate_limited_on(rpm, 2, Some(1));
        assert_eq!(r.rerouted_first, 2);
    }
}
