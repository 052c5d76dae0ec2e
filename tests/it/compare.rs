//! `flux-sim compare`: flux's claim holds on the shipped scenarios (at least 99% of the best
//! other strategy's completed requests, no 429 with the true limits, also when told limits
//! 50% too high, 50% too low or none), and the table in docs/compare.md shows what the command
//! prints.

use std::path::Path;

use flux_sim::scenario::Scenario;
use flux_sim::sim::compare::{compare, contenders, judge};
use flux_sim::sim::metrics::RunResult;

/// The shipped scenarios quick enough for every test run: all but `large-10m.toml` (minutes).
const QUICK: [&str; 80] = [
    "across-midnight",
    "buckets-left-full",
    "concurrency-slots-queue",
    "contracts-few-slots",
    "cron-retired-id",
    "cron-retired-told-half",
    "days-spent-before",
    "days-told-half-batch",
    "desk-quotas",
    "dubbing",
    "errors-late",
    "eval-slots-unpublished",
    "fixed-windows",
    "fixed-windows-untold",
    "flaky-light-load",
    "fleet",
    "fleet-late-ledger",
    "fleet-own-ledgers",
    "free-tier-2026",
    "free-tier-2026-12",
    "gateway-buckets",
    "gateway-buckets-told-high",
    "gateway-burst-counted",
    "gateway-counts-refusals",
    "invalid-keys-full-day",
    "invalid-keys-told-half",
    "large",
    "legacy-project-told-half",
    "limits-import",
    "limits-unknown",
    "live-audio-guide",
    "live-call-centre",
    "live-conversations",
    "live-conversations-2026-12",
    "live-hotel-desk-2026",
    "live-interpreter-2026",
    "live-phone-translate-2026",
    "live-phone-translate-calendar",
    "live-reconnect",
    "live-sessions",
    "live-speaking-drills",
    "live-tutor-2026",
    "long-context-reservation",
    "minutes-before-midnight",
    "mixed-rpd",
    "old-config-large-prompts",
    "overloaded-backlog",
    "overloaded-few-slots",
    "overridden-days",
    "oversize",
    "oversized-half-batch",
    "papers-untold-queue",
    "pr-review-backlog",
    "pro-tokens-per-day",
    "probe-ahead-line",
    "project-overrides",
    "quirks",
    "rerouted-paid",
    "rerouted-told-nothing",
    "retired-ids",
    "retired-ids-told-half",
    "retired-two-ids",
    "retired-two-ids-counted",
    "retired-two-ids-evening",
    "retired-two-ids-saturday",
    "serve-bench",
    "shared-project",
    "slots-burst",
    "slots-learned-late",
    "spend-cap",
    "tpd-heavy-tail",
    "tpd-packing-midnight",
    "tpd-told-half-legacy",
    "two-limits-a-day",
    "uncharged-errors",
    "unservable-sizes",
    "vertex-dsq",
    "vertex-dsq-peak",
    "vertex-paygo-tiers",
    "vertex-pt",
];

/// Where the claim is known to fail, and docs/compare.md ("Where the claim fails, and why")
/// says why: judged by pace and wait as well as completions (issue 26, item 11), flux
/// pays to learn (retired-ids and rerouted-paid where a retired or re-routed model's quota
/// is learnt from one 429, pods with ledgers of their own, two retired ids either of which a
/// target's 429 may name: one more 429 tells which, retired-two-ids-counted, -evening and
/// -saturday), is
/// told no limits where each project has its own (mixed-rpd, project-overrides), or has a
/// batch shorter than learning its limits (overloaded-few-slots, contracts-few-slots), or is
/// told days it has not yet seen where the day's requests run out before its tokens
/// (two-limits-a-day, minutes-before-midnight: the smallest first is the safe order while a
/// told day's tokens may be fewer than told).
/// (pro-tokens-per-day, run without its fallback, holds since flux takes a closed batch
/// smallest first while the day's tokens bind.)
const CLAIM_FAILS: [&str; 10] = [
    "contracts-few-slots",
    "desk-quotas",
    "fleet-own-ledgers",
    "minutes-before-midnight",
    "mixed-rpd",
    "project-overrides",
    "retired-two-ids-counted",
    "retired-two-ids-evening",
    "retired-two-ids-saturday",
    "two-limits-a-day",
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
/// live-interpreter-2026 flux told limits 50% too high completed all 150 sessions but at 74%
/// of the pace (its token ceiling came down one refusal at a time, and each refusal withdrew
/// its planned sessions); counting only completions, the claim would have marked it ✓. It now
/// keeps the pace, so the row is slowed to that 74% here, its completions kept, and judged.
#[test]
fn the_claim_is_judged_by_pace_and_wait_not_only_completions() {
    let s = Scenario::load(Path::new("scenarios/live-interpreter-2026.toml")).unwrap();
    let (mut out, claim) = compare(&s, s.seed, 2);
    let told =
        |c: &flux_sim::sim::compare::Claim| c.flux.iter().find(|v| v.name == "flux, limits +50%").cloned().unwrap();
    assert!(told(&claim).holds, "{claim:?}");
    let row = out
        .results
        .iter_mut()
        .find(|r| r.strategy == "flux, limits +50%")
        .unwrap();
    row.throughput_per_min = 0.742 * claim.best_pace;
    let claim = judge(&out);
    let low = told(&claim);
    assert_eq!((low.completed, claim.best_completed), (150, 150));
    assert!(low.pace < 0.95 * claim.best_pace, "{low:?} {claim:?}");
    assert!(!low.holds, "{low:?}");
    let flux = &claim.flux[0];
    assert_eq!(flux.name, "flux");
    assert!(flux.holds && flux.quota_429s == 0, "{flux:?}");
    assert_eq!(flux.wait_against.as_ref().map(|w| w.0.as_str()), Some("exact_cooldown"));
}

/// Issue 26: flux's wait is judged against a strategy that served the user as well. On
/// free-tier-2026-12 round robin completes as much (80) with a p99 wait of 17.8 s only by
/// failing the other 1,720 requests after quick retries (its wait p99 keeps only the lucky
/// sends); on spend-cap fixed_interval completes all 2,000 with a p99 of 1.9 min at 45% of
/// flux's pace (the batch takes 4.2 h instead of 1.9 h). Neither is the comparison: the
/// quickest strategy that completed as much, failed no more and kept 99% of the fastest other's
/// pace is.
#[test]
fn the_wait_is_judged_against_a_strategy_that_failed_no_more_at_the_same_pace() {
    for (name, not, against) in [
        ("free-tier-2026-12", "round_robin", "exact_cooldown"),
        ("spend-cap", "fixed_interval", "exact_cooldown"),
    ] {
        let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let (out, claim) = compare(&s, s.seed, 2);
        let row = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap().clone();
        let (flux, quick) = (row("flux"), row(not));
        assert!(quick.completed >= flux.completed, "{quick:?}");
        assert!(
            quick.failed > flux.failed || quick.throughput_per_min < 0.99 * claim.best_pace,
            "{name}: {quick:?}"
        );
        let v = &claim.flux[0];
        assert_eq!(
            v.wait_against.as_ref().map(|w| w.0.as_str()),
            Some(against),
            "{name}: {v:?}"
        );
    }
}

/// Issue 26: flux "told limits 50% off" believes each project's own limits 50% off. On
/// mixed-rpd the four projects have quota overrides of 200, 400, 800 and 1,600 requests a
/// day; told the model's default (10,000) ± 50% instead, flux believed 5,000–15,000 on every
/// project, a 7,400% error on the smallest, and no client could tell the projects apart
/// before each one's day ran out (93.2% of exact_cooldown's completions).
#[test]
fn flux_told_limits_50_percent_off_believes_each_projects_own_limits_50_percent_off() {
    let s = Scenario::load(Path::new("scenarios/mixed-rpd.toml")).unwrap();
    let specs = contenders(&s);
    let rpd = |name: &str| {
        let spec = specs.iter().find(|c| c.name == name).unwrap();
        let env = s.strategy_env(spec, s.seed);
        assert!(
            env.believed.iter().all(|&b| b == (name != "flux")),
            "{name}: told, not known"
        );
        (0..env.projects)
            .map(|p| env.limits[p * env.models].rpd)
            .collect::<Vec<_>>()
    };
    assert_eq!(rpd("flux"), [Some(200), Some(400), Some(800), Some(1_600)]);
    assert_eq!(
        rpd("flux, limits +50%"),
        [Some(300), Some(600), Some(1_200), Some(2_400)]
    );
    assert_eq!(rpd("flux, limits -50%"), [Some(100), Some(200), Some(400), Some(800)]);
    assert_eq!(rpd("flux, no limits"), [None; 4]);
}

/// Issue 26: a retired model id re-routed to another model draws on that model's quota, which
/// no client was told; the 429 names the quota's model, and flux then plans the id's sends on
/// that model's budgets. On rerouted-paid (written after the fix, not tuned on) flux told the
/// true limits met 54 quota 429s before, 0 now (its one 429, which names the shared quota, is
/// how a client not told learns the re-route, and is not a quota 429); on retired-ids 38
/// before, 3 once flux read the 429 naming the shared quota, 0 now that it also reads the
/// target's own 429 that the old id's sends explain (that one is the learning 429 there).
#[test]
fn flux_learns_a_re_routed_ids_shared_quota_from_the_429_that_names_it() {
    for (name, most) in [("rerouted-paid", 0), ("retired-ids", 0)] {
        let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let (_, claim) = compare(&s, s.seed, 2);
        let flux = &claim.flux[0];
        assert_eq!(flux.completed, claim.best_completed, "{name}: {flux:?}");
        assert!(flux.quota_429s <= most, "{name}: {flux:?}");
        for v in &claim.flux[1..] {
            assert!(v.quota_429s <= 16, "{name}: {v:?}");
        }
    }
}

/// Issue 26, found at seeds 11 and 14: where a retired id and its target share a quota, the
/// told rows hold. At seed 11 of `retired-two-ids` flux read the old id's retry at 60 s as
/// calendar minutes (the target's send at 0 s explained it) and its target probed the limit
/// the 429 had named: 79-80% of the pace. At seed 14 of `rerouted-paid` told -50% both ids
/// probed the merged day and each admission doubled it: 500 believed where 250 hold, a wait
/// p99 of 30.2 s against exact_cooldown's 11.6 s. At seed 22 of `rerouted-paid` each 429 of
/// the learning kept a refusal the server did not count in the minute: a wait p99 of 8.7 s
/// against exact_cooldown's 3.3 s. At seed 16 of `retired-two-ids`, with a re-route ruled out
/// by known limits alone, a target's 429 was read as the other target's re-route and told
/// -50% fell to 25.47 a minute (86% of the fastest other). (There the row with the true
/// limits meets one quota 429 after an ambiguous first one, which docs/compare.md lists.)
#[test]
fn the_told_rows_hold_where_a_retired_id_shares_its_targets_quota() {
    for (name, seed) in [
        ("retired-two-ids", 11),
        ("retired-two-ids", 16),
        ("rerouted-paid", 14),
        ("rerouted-paid", 22),
    ] {
        let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let (run, claim) = compare(&s, seed, 2);
        assert!(
            claim.flux.iter().filter(|v| v.name != "flux").all(|v| v.holds),
            "{name} at seed {seed}:\n{}",
            flux_sim::report::comparison(&[(run, claim.clone())])
        );
    }
}

/// Issue 27, item 6: `compare`'s table names each strategy's retry, its unservable and pending
/// requests; on a Live scenario it runs only the tools that can open a Live session
/// (gemini-flux, the cookbook's token bucket and gemini-balance cannot), elsewhere every kind.
#[test]
fn compare_shows_what_was_left_and_runs_only_live_tools_on_live_scenarios() {
    let header = flux_sim::report::comparison(&[]);
    assert!(
        header.starts_with("| scenario | strategy | retry | completed | done/min | failed | unservable | pending |"),
        "{header}"
    );
    let rest_only = ["gemini_flux", "token_bucket", "gemini_balance"];
    for name in QUICK {
        let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let names: Vec<String> = contenders(&s).into_iter().map(|c| c.name).collect();
        let live = s.workload.session.is_some();
        for kind in flux_sim::strategy::KINDS {
            assert_eq!(
                names.iter().any(|n| n == kind.name),
                if live { kind.live } else { kind.rest },
                "{name} (Live: {live}): {} {:?}",
                kind.name,
                names
            );
        }
        if live {
            assert!(
                !names.iter().any(|n| rest_only.contains(&n.as_str())),
                "{name}: {names:?}"
            );
        }
    }
}
