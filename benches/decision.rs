//! The cost of one strategy decision (decide + its outcome) at 8, 64, 1,024 and 16,384 keys,
//! one key per project, in a steady state where every budget is about half used.

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
name = "gemini-flux"
kind = "exact_cooldown"
compat = "gemini-flux"
"#;

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
