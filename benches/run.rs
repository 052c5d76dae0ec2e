//! The whole `run` as a user waits for it, in simulated requests per second: the scenario
//! loaded from its file, every strategy of the scenario (and `round_robin` alone) on one
//! thread with its upper bound and clairvoyant reference, the result as JSON — on
//! `scenarios/dubbing.toml` and `scenarios/large.toml`. Beside them, in the same group, the
//! bare heap loop of large's job (`examples/bare_loop.rs`): the yardstick the whole run is
//! stated as a share of. `benches/engine.rs` times the engine alone.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flux_sim::report::to_json;
use flux_sim::scenario::Scenario;
use flux_sim::sim::run::{run, select_strategies};

#[path = "../examples/bare_loop.rs"]
mod bare_loop;

/// What `flux-sim run FILE [--strategy …] --threads 1 --format json` does after parsing its
/// arguments.
fn whole_run(path: &Path, names: &[String]) -> String {
    let s = Scenario::load(path).expect("scenario loads");
    let strategies = select_strategies(&s, names).expect("known strategies");
    to_json(&run(&s, &strategies, s.seed, None, 1))
}

fn whole(c: &mut Criterion) {
    for (file, samples) in [("dubbing.toml", 20), ("large.toml", 10)] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(file);
        let s = Scenario::load(&path).expect("scenario loads");
        let mut g = c.benchmark_group(format!("run/{}", s.name));
        g.sample_size(samples)
            .measurement_time(Duration::from_secs(if samples == 10 { 20 } else { 5 }));
        let rr = vec!["round_robin".to_string()];
        for (label, names) in [("all", Vec::new()), ("round_robin", rr)] {
            // Simulated requests: each strategy's, summed.
            let strategies = select_strategies(&s, &names).expect("known strategies");
            let requests: u64 = run(&s, &strategies, s.seed, None, 1)
                .results
                .iter()
                .map(|r| r.requests)
                .sum();
            g.throughput(Throughput::Elements(requests));
            g.bench_with_input(BenchmarkId::from_parameter(label), &names, |b, names| {
                b.iter(|| whole_run(&path, names))
            });
        }
        if s.name == "large" {
            let job = bare_loop::Job::large();
            g.throughput(Throughput::Elements(bare_loop::run(job).requests));
            g.bench_function("bare_loop", |b| b.iter(|| bare_loop::run(job)));
        }
        g.finish();
    }
}

criterion_group!(benches, whole);
criterion_main!(benches);
