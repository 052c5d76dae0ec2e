//! Issue 31, item 2: per-day 429s with short delays. Google's per-day 429s say "retry in 36s"
//! (the seconds left in the minute) or `0s`, not the time to Pacific midnight; the server
//! says so by default (`server.quirks.per_day_retry`), and the planners classify a 429 by the
//! quota id QuotaFailure names, never by its delay: whatever the delay, flux and
//! exact_cooldown meet each (project, model)'s per-day 429 once and move on.

use std::path::Path;

use flux_sim::scenario::Scenario;
use flux_sim::sim::engine::AttemptRecord;
use flux_sim::sim::metrics::StrategyResult;
use flux_sim::sim::run::run;

/// `free-tier-2026-12.toml` on `projects` projects with `per_day_retry = mode`, and the
/// planners told no limits at all, so that they meet the per-day 429s themselves.
fn scenario(mode: &str, projects: usize) -> Scenario {
    let text = std::fs::read_to_string("scenarios/free-tier-2026-12.toml")
        .unwrap()
        .replace("projects = 4\n", &format!("projects = {projects}\n"))
        .replace(
            "tpm_counts = \"input\"\n",
            &format!("tpm_counts = \"input\"\n\n[server.quirks]\nper_day_retry = \"{mode}\"\n"),
        );
    let mut text = text;
    for kind in ["exact_cooldown", "flux"] {
        text.push_str(&format!(
            "\n[[strategies]]\nname = \"{kind}, told nothing\"\nkind = \"{kind}\"\nfallback = [\"gemini-3.5-flash-lite\"]\n\
             known_limits = {{ \"gemini-3.6-flash\" = {{}}, \"gemini-3.5-flash-lite\" = {{}} }}\n"
        ));
    }
    Scenario::parse(&text, Path::new("free-tier-2026-12.toml")).unwrap()
}

/// Per strategy, the instants of its per-day 429s on each (project, model).
type PerDay = Vec<(String, (usize, usize), Vec<u64>)>;

fn results(s: &Scenario) -> (Vec<StrategyResult>, PerDay) {
    let mut per_day = PerDay::new();
    let mut sink = |strategy: &str, a: &AttemptRecord| {
        if a.outcome == "rate_limited" && a.violated.per_day() {
            let unit = (a.project, a.model);
            match per_day.iter_mut().find(|(n, u, _)| n == strategy && *u == unit) {
                Some((_, _, ts)) => ts.push(a.time),
                None => per_day.push((strategy.to_string(), unit, vec![a.time])),
            }
        }
    };
    let out = run(s, &s.strategies, s.seed, Some(&mut sink), 2);
    (out.results, per_day)
}

/// Told no limits at all, the planners send until a per-day 429 names the quota and then
/// never again on that (project, model) that day, whatever the 429's delay: every per-day 429
/// they meet on a quota is answered at the instant of the first (sends already under way
/// together), and flux meets one per quota. Before issue 31 the setting did not exist.
#[test]
fn the_planners_never_send_again_on_a_per_day_quota_whatever_its_429_says() {
    // One project: gemini-3.6-flash's 20 and gemini-3.5-flash-lite's 500 a day run out.
    let mut flux_429s = Vec::new();
    for mode in ["next_minute", "0s", "reset"] {
        let s = scenario(mode, 1);
        let (rs, per_day) = results(&s);
        for name in ["exact_cooldown, told nothing", "flux, told nothing"] {
            let r = rs.iter().find(|r| r.strategy == name).unwrap();
            assert_eq!(r.completed, 520, "{mode}: 20 + 500 a day: {r:?}");
            let mine: Vec<_> = per_day.iter().filter(|(n, _, _)| n == name).collect();
            assert!(!mine.is_empty(), "{mode}: {name} met the per-day quotas");
            for (_, unit, ts) in &mine {
                assert!(
                    ts.iter().all(|&t| t == ts[0]),
                    "{mode}: {name} sent again on {unit:?} after its per-day 429: {ts:?}"
                );
            }
            if name.starts_with("flux") {
                assert!(mine.iter().all(|(_, _, ts)| ts.len() == 1), "{mode}: {mine:?}");
                flux_429s.push(r.rate_limited_by.rpd);
            }
        }
        for name in ["exact_cooldown", "flux"] {
            assert!(
                !per_day.iter().any(|(n, _, _)| n == name),
                "{mode}: {name} told the limits never meets one"
            );
        }
    }
    assert_eq!(flux_429s, [2, 2, 2], "flux's per-day 429s do not move with the delay");
}

/// What a per-day 429's delay does to a client that trusts it (`retry_info`, as OmniRoute):
/// back every minute all day under `next_minute`, on its backoff at `0s`, asleep until
/// midnight under `reset` — the figures of docs/pending/31-per-day-429s.md.
#[test]
fn a_client_that_trusts_retry_info_spins_on_a_per_day_429_that_says_36s() {
    let rpd = |mode: &str| {
        let (rs, _) = results(&scenario(mode, 4));
        let r = rs
            .iter()
            .find(|r| r.strategy == "round_robin, honours RetryInfo")
            .unwrap()
            .clone();
        (r.completed, r.rate_limited_by.rpd)
    };
    assert_eq!(rpd("next_minute"), (80, 38_255));
    assert_eq!(rpd("0s"), (80, 76_553));
    assert_eq!(rpd("reset"), (80, 64));
}
