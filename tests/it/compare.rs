//! `flux-sim compare`: flux's claim holds on the shipped scenarios (at least 99% of the best
//! other strategy's completed requests, no 429 with the true limits, also when told limits
//! 50% too high, 50% too low or none), and the table in docs/compare.md shows what the command
//! prints.

use std::path::Path;

use flux_sim::scenario::Scenario;
use flux_sim::sim::compare::compare;

/// The shipped scenarios quick enough for every test run (`large-10m.toml` takes minutes).
const QUICK: [&str; 14] = [
    "dubbing",
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
const CLAIM_FAILS: [&str; 3] = ["fleet", "pro-tokens-per-day", "live-sessions"];

fn rows(name: &str) -> String {
    let s = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
    let run = compare(&s, s.seed, 2);
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
