//! `flux-sim compare`: flux's claim holds on the shipped scenarios (at least 99% of the best
//! other strategy's completed requests, no 429 with the true limits, also when told limits
//! 50% too high, 50% too low or none), and the table in docs/compare.md shows what the command
//! prints.

use std::path::Path;

use flux_sim::scenario::Scenario;
use flux_sim::sim::compare::{compare, contenders};
use flux_sim::sim::metrics::RunResult;

/// The shipped scenarios quick enough for every test run (`large-10m.toml` takes minutes).
const QUICK: [&str; 15] = [
    "dubbing",
    "live-call-centre",
    "fleet",
    "free-tier-2026",
    "live-conversations",
    "live-sessions",
    "oversize",
    "pro-tokens-per-day",
    "quirks",
    "shared-project",
    "serve-bench",
    "spend-cap",
    "large",
    "vertex-dsq",
    "vertex-pt",
];

/// Where the claim is known to fail, and docs/compare.md says why: a fleet whose pods see each
/// other's sends 1 s late cannot avoid every 429; without its fallback model a closed batch's
/// workers wait on requests flux planned for tomorrow (98.6%); a Live loop leaving each session
/// at generationComplete meets 1011s no client can foresee (the server holds the turn).
/// Judged by pace and wait too (issue 26, item 11), more rows fail, each for a cause issue 26
/// names: told wrong limits, flux probes upward slowly or waits longer than the planner (dubbing,
/// free-tier-2026, live-conversations, mixed-rpd, quirks); the spend cap's and provisioned
/// throughput's 429s make flux wait far longer than the best (spend-cap, vertex-pt); Live
/// release delays cost a few 1011s (live-call-centre).
const CLAIM_FAILS: [&str; 11] = [
    "dubbing",
    "fleet",
    "free-tier-2026",
    "live-call-centre",
    "live-conversations",
    "live-sessions",
    "mixed-rpd",
    "pro-tokens-per-day",
    "quirks",
    "spend-cap",
    "vertex-pt",
];

/// Within each group of rows judged against the same bound (`chain[i]`: row i's fallback
/// chain), a strategy that abandoned work (failed or pending) never rates above one that
/// completed at least as much, in done/min or efficiency; no rate exceeds its bound.
pub fn abandoning_never_rates_above(name: &str, result: &RunResult, chain: &[Vec<usize>]) {
    for (i, a) in result.results.iter().enumerate() {
        assert!(
            a.throughput_per_min <= a.upper_bound_per_min && a.efficiency <= 1.0,
            "{name}: {} beats its bound: {a:?}",
            a.strategy
        );
        for (j, b) in result.results.iter().enumerate() {
            if chain[i] != chain[j] || b.failed + b.pending == 0 || a.completed < b.completed {
                continue;
            }
            assert!(
                a.throughput_per_min >= b.throughput_per_min && a.efficiency >= b.efficiency,
                "{name}: {} abandoned {} and completed {}, yet rates above {} ({} completed): \
                 done/min {} vs {}, efficiency {} vs {}",
                b.strategy,
                b.failed + b.pending,
                b.completed,
                a.strategy,
                a.completed,
                b.throughput_per_min,
                a.throughput_per_min,
                b.efficiency,
                a.efficiency
            );
        }
    }
}

fn rows(name: &str) -> String {
    let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
    let run = compare(&s, s.seed, 2);
    let chains: Vec<Vec<usize>> = contenders(&s).into_iter().map(|c| c.fallback).collect();
    abandoning_never_rates_above(name, &run.0, &chains);
    let holds = run.1.holds();
    let table = flux_sim::report::comparison(std::slice::from_ref(&run));
    assert_eq!(
        holds,
        !CLAIM_FAILS.contains(&name),
        "flux's claim on {name} is not what docs/compare.md says:\n{table}"
    );
    table
}

#[test]
fn flux_meets_its_claim_and_the_compare_page_shows_the_commands_output() {
    let page = std::fs::read_to_string("docs/compare.md").unwrap();
    for name in QUICK {
        for line in rows(name)
            .lines()
            .filter(|l| l.starts_with(&format!("| {name} |")) || l.starts_with(&format!("- {name}:")))
        {
            assert!(
                page.lines().any(|r| r == line),
                "docs/compare.md lacks this line of `flux-sim compare scenarios/{name}.toml`:\n{line}"
            );
        }
    }
}

/// `run` judges each strategy against the bound of the models its own fallback chain allows:
/// on oversize (a fallback chain for some) and every scenario quick enough, no strategy that
/// abandoned work rates above one with the same chain that completed as much. Before, the bound
/// pooled every chain's models and `compare` (no chain) ranked round robin (abandoned 374 of
/// 600) at efficiency 0.336 above flux and exact_cooldown (all they could) at 0.019.
#[test]
fn a_strategy_that_abandons_work_never_rates_above_one_that_completes_it() {
    for name in [
        "oversize",
        "pro-tokens-per-day",
        "dubbing",
        "free-tier-2026",
        "quirks",
        "vertex-pt",
    ] {
        let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let out = flux_sim::sim::run::run(&s, &s.strategies, s.seed, None, 2);
        let chains: Vec<Vec<usize>> = s.strategies.iter().map(|c| c.fallback.clone()).collect();
        abandoning_never_rates_above(name, &out, &chains);
    }
    let s = Scenario::load(Path::new("scenarios/oversize.toml")).unwrap();
    let (out, _) = compare(&s, s.seed, 2);
    let row = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap().clone();
    let (rr, flux) = (row("round_robin"), row("flux"));
    assert!(rr.failed > 300, "{rr:?}");
    assert!(flux.efficiency > rr.efficiency, "{flux:?} vs {rr:?}");
    assert!(flux.throughput_per_min > rr.throughput_per_min, "{flux:?} vs {rr:?}");
}

/// Issue 26, item 11: the claim is judged by pace and wait as well as completions. On
/// live-conversations flux told limits 50% too low completes all 150 sessions but at a third of
/// the pace, waiting 11 min at p99 where exact_cooldown waits none: before, the claim marked it
/// ✓ because it counted only completions.
#[test]
fn the_claim_is_judged_by_pace_and_wait_not_only_completions() {
    let s = Scenario::load(Path::new("scenarios/live-conversations.toml")).unwrap();
    let (_, claim) = compare(&s, s.seed, 2);
    let low = claim.flux.iter().find(|v| v.name == "flux, limits -50%").unwrap();
    assert_eq!((low.completed, claim.best_completed), (150, 150));
    assert!(low.pace < 0.5 * claim.best_pace, "{low:?} {claim:?}");
    assert!(!low.holds, "{low:?}");
    let flux = &claim.flux[0];
    assert_eq!(flux.name, "flux");
    assert!(flux.holds && flux.quota_429s == 0, "{flux:?}");
    assert_eq!(flux.wait_against.as_ref().map(|w| w.0.as_str()), Some("exact_cooldown"));
}
