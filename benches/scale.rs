//! How the engine's cost per simulated request grows: with the topology (10 to 100,000
//! projects, about 100,000 requests each) and with the run's length (10^5 to 10^7 requests on
//! 1,000 projects). Open Poisson arrivals at 90% of the fleet's RPM, as `large.toml`.
//! Throughput is in simulated requests: a flat line is a cost per request that does not grow.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flux_sim::scenario::Scenario;
use flux_sim::sim::bound::upper_bound;
use flux_sim::sim::engine::simulate;

/// `projects` projects of 1,000 RPM, arrivals at 90% of that for as long as `requests` take.
fn scenario(projects: u64, requests: u64) -> Scenario {
    let per_minute = 900 * projects;
    let ms = (requests * 60_000).div_ceil(per_minute).max(1);
    let text = format!(
        r#"name = "scale"
[server.latency]
ttft = "400ms"
tokens_per_second = 250
jitter = 0.3
[models."gemini-2.5-flash"]
rpm = 1_000
tpm = 1_000_000
[topology]
projects = {projects}
[workload]
kind = "open"
rate = {per_minute}
duration = "{ms}ms"
model = "gemini-2.5-flash"
input_tokens = {{ dist = "lognormal", median = 600, p99 = 6_000 }}
output_tokens = {{ dist = "lognormal", median = 200, p99 = 1_200 }}
[[strategies]]
kind = "round_robin"
retry = {{ policy = "backoff", base = "1s", cap = "60s", jitter = "full", max_attempts = 5 }}
[[strategies]]
kind = "exact_cooldown"
"#
    );
    Scenario::parse(&text, Path::new("scale.toml")).expect("the generated scenario is valid")
}

fn bench(c: &mut Criterion, group: &str, points: &[(u64, u64, u64)], strategies: &[&str]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for &(label, projects, requests) in points {
        let s = scenario(projects, requests);
        let bound = upper_bound(&s, s.seed);
        for spec in s.strategies.iter().filter(|sp| strategies.contains(&sp.name.as_str())) {
            let n = simulate(&s, spec, s.seed, &bound, None).requests;
            g.throughput(Throughput::Elements(n));
            g.bench_with_input(BenchmarkId::new(&spec.name, label), spec, |b, spec| {
                b.iter(|| simulate(&s, spec, s.seed, &bound, None))
            });
        }
    }
    g.finish();
}

fn scale(c: &mut Criterion) {
    let projects: Vec<(u64, u64, u64)> = [10, 100, 1_000, 10_000, 100_000]
        .iter()
        .map(|&p| (p, p, 100_000))
        .collect();
    bench(c, "scale/projects", &projects, &["round_robin", "exact_cooldown"]);
    let requests: Vec<(u64, u64, u64)> = [100_000, 1_000_000, 10_000_000]
        .iter()
        .map(|&n| (n, 1_000, n))
        .collect();
    bench(c, "scale/requests", &requests, &["round_robin", "exact_cooldown"]);
}

criterion_group!(benches, scale);
criterion_main!(benches);
