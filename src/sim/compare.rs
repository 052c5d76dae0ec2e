//! `compare`: every built-in strategy with its defaults on a scenario's workload, keys and
//! limits (whatever strategies the scenario lists), and `flux` also told limits 50% too high,
//! 50% too low, or none; then whether flux's claim holds there: at least 99% of the best other
//! strategy's completed requests, and with the true limits no quota 429 (a shared pool's
//! capacity 429s and a spend cap's name no quota; no strategy can avoid them).

use crate::core::ledger::Limits;
use crate::scenario::Scenario;
use crate::sim::metrics::RunResult;
use crate::sim::run::run;
use crate::strategy::{StrategySpec, KINDS};

/// flux told wrong limits: the row name and the factor (`None`: told no limits at all).
pub const FLUX_VARIANTS: [(&str, Option<(u64, u64)>); 3] = [
    ("flux, limits +50%", Some((3, 2))),
    ("flux, limits -50%", Some((1, 2))),
    ("flux, no limits", None),
];

/// What flux must reach: this share of the best other strategy's completed requests.
pub const CLAIM_SHARE: f64 = 0.99;

/// The strategies `compare` runs on `scenario`: every built-in with its defaults, then the
/// flux variants.
pub fn contenders(scenario: &Scenario) -> Vec<StrategySpec> {
    let live = scenario.workload.session.is_some();
    let mut out: Vec<StrategySpec> = KINDS
        .iter()
        .filter(|d| d.live || !live)
        .map(|d| scenario.builtin_strategy(d.name).expect("listed built-in"))
        .collect();
    for (name, factor) in FLUX_VARIANTS {
        let mut spec = scenario.builtin_strategy("flux").expect("built-in");
        spec.name = name.to_string();
        spec.known_limits = scenario
            .models
            .iter()
            .map(|m| Some(factor.map_or(Limits::default(), |(n, d)| scale(m.limits, n, d))))
            .collect();
        out.push(spec);
    }
    out
}

fn scale(l: Limits, n: u64, d: u64) -> Limits {
    // A limit of 0 stays 0 (not available is not a number to get wrong); others stay >= 1.
    let s = |v: Option<u64>| v.map(|v| (v.saturating_mul(n) / d).max(v.min(1)));
    Limits {
        rpm: s(l.rpm),
        tpm: s(l.tpm),
        rpd: s(l.rpd),
        tpd: s(l.tpd),
        concurrent: s(l.concurrent),
    }
}

/// flux's claim on one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The other strategy that completed most (ties: fewer 429s, then the first listed).
    pub best_other: String,
    /// What it completed.
    pub best_completed: u64,
    /// Per flux row (flux itself first): name, completed, 429s, and whether the claim holds
    /// (the share, and for flux with the true limits no quota 429).
    pub flux: Vec<(String, u64, u64, bool)>,
}

impl Claim {
    /// Whether every flux row meets the claim.
    pub fn holds(&self) -> bool {
        self.flux.iter().all(|r| r.3)
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
    let best = result
        .results
        .iter()
        .filter(|r| !is_flux(&r.strategy))
        .fold(None::<&crate::sim::metrics::StrategyResult>, |b, r| match b {
            Some(b)
                if (b.completed, std::cmp::Reverse(b.rate_limited))
                    >= (r.completed, std::cmp::Reverse(r.rate_limited)) =>
            {
                Some(b)
            }
            _ => Some(r),
        })
        .expect("compare runs other strategies");
    let flux = result
        .results
        .iter()
        .filter(|r| is_flux(&r.strategy))
        .map(|r| {
            let share = r.completed as f64 >= CLAIM_SHARE * best.completed as f64;
            // Quota 429s name a dimension; capacity 429s (a full shared pool) and spend-cap
            // 429s name none, and no strategy can avoid those.
            let b = &r.rate_limited_by;
            let clean = r.strategy != "flux" || b.rpm + b.tpm + b.rpd + b.tpd + b.concurrency == 0;
            (r.strategy.clone(), r.completed, r.rate_limited, share && clean)
        })
        .collect();
    Claim {
        best_other: best.strategy.clone(),
        best_completed: best.completed,
        flux,
    }
}
