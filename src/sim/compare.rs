//! `compare`: every built-in strategy with its defaults on a scenario's workload, keys and
//! limits (whatever strategies the scenario lists), and `flux` also told limits 50% too high,
//! 50% too low, or none; then whether flux's claim holds there, judged by completions and
//! pace: at least 99% of the best other strategy's completed requests and of the best other
//! pace (done/min), 95% told wrong limits or none; a wait p99 at most twice (+1 s) that of the
//! quickest other strategy that served as well (completed as much, failed no more, at the
//! fastest other's pace); and with the true limits no quota 429 (a
//! shared pool's capacity 429s and a spend cap's name no quota, and the first 429 naming a
//! re-routed id's quota is how a client learns a re-route it was not told of).

use crate::core::ledger::Limits;
use crate::scenario::Scenario;
use crate::sim::metrics::{RunResult, StrategyResult};
use crate::sim::run::run;
use crate::strategy::{StrategySpec, KINDS};

/// flux told wrong limits: the row name and the factor (`None`: told no limits at all).
pub const FLUX_VARIANTS: [(&str, Option<(u64, u64)>); 3] = [
    ("flux, limits +50%", Some((3, 2))),
    ("flux, limits -50%", Some((1, 2))),
    ("flux, no limits", None),
];

/// What flux must reach with the true limits: this share of the best other strategy's
/// completed requests, and of the best other pace (done/min).
pub const CLAIM_SHARE: f64 = 0.99;
/// What flux told wrong limits (or none) must reach, in completions and pace.
pub const VARIANT_SHARE: f64 = 0.95;
/// flux's p99 wait may be at most this many times that of the quickest other strategy which
/// served the user as well: completed at least as much, failed no more requests, and kept at
/// least [`CLAIM_SHARE`] of the fastest other's pace...
pub const WAIT_FACTOR: f64 = 2.0;
/// ...plus this (ms), so that waits of a few milliseconds are not judged by their ratio.
pub const WAIT_GRACE_MS: f64 = 1_000.0;

/// The strategies `compare` runs on `scenario`: every built-in with its defaults, then the
/// flux variants.
pub fn contenders(scenario: &Scenario) -> Vec<StrategySpec> {
    let live = scenario.workload.session.is_some();
    let mut out: Vec<StrategySpec> = KINDS
        .iter()
        .filter(|d| d.serves(live))
        .map(|d| scenario.builtin_strategy(d.name).expect("listed built-in"))
        .collect();
    for (name, factor) in FLUX_VARIANTS {
        let mut spec = scenario.builtin_strategy("flux").expect("built-in");
        spec.name = name.to_string();
        match factor {
            // Each project's own limits 50% off (projects with quota overrides differ: told
            // the model's defaults instead, a 200-a-day project would be told 15,000).
            Some(f) => spec.told_scale = Some(f),
            None => spec.known_limits = vec![Some(Limits::default()); scenario.models.len()],
        }
        out.push(spec);
    }
    out
}

/// flux's claim on one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The other strategy that completed most (ties: fewer 429s, then the first listed).
    pub best_other: String,
    /// What it completed.
    pub best_completed: u64,
    /// The other strategy with the best pace (done/min; ties: the first listed).
    pub fastest_other: String,
    /// Its pace (done/min).
    pub best_pace: f64,
    /// Per flux row, flux itself first.
    pub flux: Vec<Verdict>,
}

/// One flux row judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The row's name (`flux`, `flux, limits +50%`, ...).
    pub name: String,
    /// Completed requests.
    pub completed: u64,
    /// done/min.
    pub pace: f64,
    /// Every 429 it met.
    pub rate_limited: u64,
    /// 429s naming a quota dimension (a capacity 429 of a shared pool or a spend cap's names
    /// none), less those first to name a re-routed id's quota
    /// ([`StrategyResult::rerouted_first_429s`]) or to refuse a day spent before the run
    /// ([`StrategyResult::spent_before_429s`]).
    pub quota_429s: u64,
    /// 429s first to name a re-routed id's quota, not among `quota_429s`.
    pub rerouted_first_429s: u64,
    /// 429s first to refuse a day spent before the run, not among `quota_429s`
    /// ([`StrategyResult::spent_before_429s`]).
    pub spent_before_429s: u64,
    /// Its wait p99 (ms).
    pub wait_p99_ms: f64,
    /// The quickest other strategy (smallest wait p99) that completed at least as much, failed
    /// no more and kept [`CLAIM_SHARE`] of the fastest other's pace, and its wait p99 (ms);
    /// `None` when none did.
    pub wait_against: Option<(String, f64)>,
    /// Whether the claim holds for the row: the share of the best completions and the best
    /// pace ([`CLAIM_SHARE`] with the true limits, [`VARIANT_SHARE`] told wrong ones), the
    /// wait p99 within [`WAIT_FACTOR`] × + [`WAIT_GRACE_MS`] of `wait_against`, and with the
    /// true limits no quota 429.
    pub holds: bool,
}

impl Claim {
    /// Whether every flux row meets the claim.
    pub fn holds(&self) -> bool {
        self.flux.iter().all(|r| r.holds)
    }
}

/// Runs every contender on `scenario` with `seed` on `threads` threads, and judges the claim.
pub fn compare(scenario: &Scenario, seed: u64, threads: usize) -> (RunResult, Claim) {
    let specs = contenders(scenario);
    let result = run(scenario, &specs, seed, None, threads);
    let claim = judge(&result);
    (result, claim)
}

/// The claim, judged on a comparison's rows.
pub fn judge(result: &RunResult) -> Claim {
    let is_flux = |name: &str| name == "flux" || FLUX_VARIANTS.iter().any(|(n, _)| *n == name);
    let others: Vec<&StrategyResult> = result.results.iter().filter(|r| !is_flux(&r.strategy)).collect();
    let best = others
        .iter()
        .copied()
        .fold(None::<&StrategyResult>, |b, r| match b {
            Some(b)
                if (b.completed, std::cmp::Reverse(b.rate_limited))
                    >= (r.completed, std::cmp::Reverse(r.rate_limited)) =>
            {
                Some(b)
            }
            _ => Some(r),
        })
        .expect("compare runs other strategies");
    let fastest = others
        .iter()
        .copied()
        .fold(None::<&StrategyResult>, |b, r| match b {
            Some(b) if b.throughput_per_min >= r.throughput_per_min => Some(b),
            _ => Some(r),
        })
        .expect("compare runs other strategies");
    let flux = result
        .results
        .iter()
        .filter(|r| is_flux(&r.strategy))
        .map(|r| {
            let told_true = r.strategy == "flux";
            let share = if told_true { CLAIM_SHARE } else { VARIANT_SHARE };
            let done = r.completed as f64 >= share * best.completed as f64;
            let pace = r.throughput_per_min >= share * fastest.throughput_per_min;
            // Quota 429s name a dimension; capacity 429s (a full shared pool) and spend-cap
            // 429s name none. The first 429 that names another model's quota for a model
            // called tells a client of a re-route it was not told of, and the first refusing a
            // project's day for requests spent before the run tells of those: none can avoid
            // them.
            let b = &r.rate_limited_by;
            let quota_429s = r
                .rate_limited
                .saturating_sub(b.capacity + b.spend + r.rerouted_first_429s + r.spent_before_429s);
            let clean = !told_true || quota_429s == 0;
            // The wait is compared with a strategy that served the user as well: completed
            // as much, failed no more (a rotator that gives up on a request after a few quick
            // retries keeps only its lucky, quick sends in its wait p99) and kept pace with
            // the fastest other (on a closed batch, spacing every send out — half the pace —
            // evens the waits out while the batch takes twice as long).
            let wait_against = others
                .iter()
                .filter(|o| {
                    o.completed >= r.completed
                        && o.failed <= r.failed
                        && o.throughput_per_min >= CLAIM_SHARE * fastest.throughput_per_min
                })
                .fold(None::<&&StrategyResult>, |b, o| match b {
                    Some(b) if b.wait_ms.p99 <= o.wait_ms.p99 => Some(b),
                    _ => Some(o),
                })
                .map(|o| (o.strategy.clone(), o.wait_ms.p99));
            let wait = wait_against
                .as_ref()
                .is_none_or(|(_, w)| r.wait_ms.p99 <= WAIT_FACTOR * w + WAIT_GRACE_MS);
            Verdict {
                name: r.strategy.clone(),
                completed: r.completed,
                pace: r.throughput_per_min,
                rate_limited: r.rate_limited,
                quota_429s,
                rerouted_first_429s: r.rerouted_first_429s,
                spent_before_429s: r.spent_before_429s,
                wait_p99_ms: r.wait_ms.p99,
                wait_against,
                holds: done && pace && clean && wait,
            }
        })
        .collect();
    Claim {
        best_other: best.strategy.clone(),
        best_completed: best.completed,
        fastest_other: fastest.strategy.clone(),
        best_pace: fastest.throughput_per_min,
        flux,
    }
}
