//! The cost of one strategy decision (decide + its outcome) of every built-in strategy at 8,
//! 64, 1,024 and 16,384 keys, one key per project, in a steady state where every budget is
//! about half used. flux's target: its cost at 16,384 keys at most 2x its cost at 8.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flux_sim::core::time::{Nanos, MINUTE};
use flux_sim::scenario::Scenario;
use flux_sim::strategy::{Ask, Decision, Outcome, Strategy};

const STRATEGIES: &str = r#"
[[strategies]]
kind = "round_robin"
[[strategies]]
kind = "fixed_interval"
interval = "INTERVAL"
[[strategies]]
kind = "exact_cooldown"
[[strategies]]
kind = "flux"
[[strategies]]
kind = "gemini_flux"
[[strategies]]
kind = "backoff"
[[strategies]]
kind = "token_bucket"
[[strategies]]
kind = "litellm_shuffle"
[[strategies]]
kind = "litellm_least_busy"
[[strategies]]
kind = "litellm_usage"
[[strategies]]
kind = "gemini_balance"
"#;

/// Strategies that scan every key per decision.
const SCANNERS: [&str; 4] = ["gemini_flux", "litellm_shuffle", "litellm_least_busy", "litellm_usage"];

fn scenario(keys: u64, interval: Nanos) -> Scenario {
    let text = format!(
        "name = \"decision\"\n[models.m]\nrpm = 1000\ntpm = 1000000\nrpd = 100000000\n[topology]\nprojects = {keys}\n\
         [workload]\nkind = \"closed\"\nrequests = 1\nworkers = 1\n\
         input_tokens = {{ dist = \"fixed\", value = 500 }}\noutput_tokens = {{ dist = \"fixed\", value = 10 }}\n{}",
        STRATEGIES.replace("INTERVAL", &format!("{interval}ns"))
    );
    Scenario::parse(&text, Path::new("decision.toml")).expect("valid")
}

/// One decision at `*now` and its outcome; time advances by `step` so that each of the
/// budgets receives about 500 requests a minute (half its RPM).
fn decide_once(s: &mut dyn Strategy, now: &mut Nanos, step: Nanos, id: &mut u64) {
    *now += step;
    *id += 1;
    let ask = Ask {
        request: *id,
        input_tokens: 300 + (*id % 7) * 100,
        output_tokens: 10,
        model: 0,
        attempts: 0,
    };
    if let Decision::Send { key, model, at } = s.decide(*now, &ask) {
        *now = (*now).max(at);
        s.on_outcome(*now, &ask, key, model, at, &Outcome::Ok);
    }
    black_box(());
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision");
    for keys in [8u64, 64, 1024, 16_384] {
        let step = MINUTE / (keys * 500);
        let s = scenario(keys, 2 * keys * step);
        for spec in &s.strategies {
            // The models of gemini-flux and LiteLLM look at every key per decision, as those
            // libraries do: O(keys) by design, so they stop at 1,024 keys.
            if keys > 1024 && SCANNERS.contains(&spec.name.as_str()) {
                continue;
            }
            let mut strategy = s.strategy(spec, s.seed);
            let (mut now, mut id) = (0, 0);
            // Warm up into the steady state: two minutes of traffic.
            while now < 2 * MINUTE {
                decide_once(strategy.as_mut(), &mut now, step, &mut id);
            }
            g.bench_function(BenchmarkId::new(&spec.name, keys), |b| {
                b.iter(|| decide_once(strategy.as_mut(), &mut now, step, &mut id))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
