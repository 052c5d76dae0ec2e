//! Whole-simulation throughput in simulated requests per second, per strategy, on
//! `scenarios/dubbing.toml` and `scenarios/large.toml` (1,000 projects, ~1 M requests): the
//! scenario's strategies and flux.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flux_sim::scenario::Scenario;
use flux_sim::sim::bound::upper_bound;
use flux_sim::sim::engine::simulate;

fn engine(c: &mut Criterion) {
    for (file, samples) in [("dubbing.toml", 20), ("large.toml", 10)] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(file);
        let s = Scenario::load(&path).expect("scenario loads");
        let bound = upper_bound(&s, s.seed);
        let mut g = c.benchmark_group(format!("engine/{}", s.name));
        g.sample_size(samples)
            .measurement_time(Duration::from_secs(if samples == 10 { 20 } else { 5 }));
        // The scenario's strategies, and flux (this project's own).
        let mut specs = s.strategies.clone();
        specs.extend(s.builtin_strategy("flux"));
        for spec in &specs {
            let requests = simulate(&s, spec, s.seed, &bound, None).requests;
            g.throughput(Throughput::Elements(requests));
            g.bench_with_input(BenchmarkId::from_parameter(&spec.name), spec, |b, spec| {
                b.iter(|| simulate(&s, spec, s.seed, &bound, None))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
